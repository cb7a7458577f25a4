// The PersonalLLM simulator's protocol pieces, shared by tailor-bench and the engine's
// statistical tests: users answer comparisons by their true weights, and a ranking is scored
// on held-out prompts by pairwise accuracy and top-1 (pick == the user's true favourite).
#ifndef TAILOR_BENCH_SIMULATOR_H_
#define TAILOR_BENCH_SIMULATOR_H_

#include <Eigen/Core>
#include <random>
#include <span>
#include <vector>

#include "bench/synthetic_catalogue.h"

namespace tailor::bench {

struct Comparison {
  int prompt = 0;
  int chosen = 0;
  int rejected = 1;
};

// A random prompt from `prompts` and two random responses with different scores, oriented by
// the user's true utility (the higher one is chosen), as in the PersonalLLM reference study.
// Every prompt in `prompts` must have at least two distinct responses.
Comparison RandomComparison(const Catalogue& catalogue, const Eigen::VectorXd& w,
                            std::span<const int> prompts, std::mt19937_64& rng);

// Orients a given pair of responses of `prompt` by the user's true utility.
Comparison Answer(const Catalogue& catalogue, const Eigen::VectorXd& w, int prompt, int a, int b);

// Running means of held-out quality.
struct QualityScore {
  double pairwise_correct = 0;
  double pairwise_total = 0;
  double top1_correct = 0;
  double prompts = 0;
  double pick_reward = 0;  // summed true utility of the top pick
  double regret = 0;       // summed (best true utility - pick's true utility)
  // Against the catalogue's reference response, where it has one: the pick's true utility is
  // higher (1), equal (0.5) or lower (0).
  double reference_wins = 0;
  double reference_prompts = 0;
  double win_rate_vs_reference() const {
    return reference_prompts > 0 ? reference_wins / reference_prompts : 0;
  }
  double pairwise_accuracy() const {
    return pairwise_total > 0 ? pairwise_correct / pairwise_total : 0;
  }
  double top1() const { return prompts > 0 ? top1_correct / prompts : 0; }
  double mean_pick_reward() const { return prompts > 0 ? pick_reward / prompts : 0; }
  double mean_regret() const { return prompts > 0 ? regret / prompts : 0; }
  void Add(const QualityScore& other);
};

// Scores one ranking (response indices, best first) of `prompt` against the user's truth:
// every pair of responses whose true utilities differ, and whether the first is the favourite.
void ScoreRanking(const Catalogue& catalogue, const Eigen::VectorXd& w, int prompt,
                  std::span<const int> ranking, QualityScore& score);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_SIMULATOR_H_
