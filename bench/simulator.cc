#include "bench/simulator.h"

#include <cmath>

namespace tailor::bench {

Comparison Answer(const Catalogue& catalogue, const Eigen::VectorXd& w, int prompt, int a, int b) {
  const Eigen::VectorXd utility = catalogue.scores[static_cast<size_t>(prompt)] * w;
  return utility[b] > utility[a] ? Comparison{prompt, b, a} : Comparison{prompt, a, b};
}

Comparison RandomComparison(const Catalogue& catalogue, const Eigen::VectorXd& w,
                            std::span<const int> prompts, std::mt19937_64& rng) {
  const int responses = catalogue.responses();
  for (;;) {
    const int prompt = prompts[std::uniform_int_distribution<size_t>(0, prompts.size() - 1)(rng)];
    const int a = std::uniform_int_distribution<int>(0, responses - 1)(rng);
    int b = std::uniform_int_distribution<int>(0, responses - 2)(rng);
    if (b >= a) ++b;
    // Real catalogues hold identical responses (HANNA has tied human scores); nobody can be
    // asked to choose between two copies of the same thing, so draw again.
    const Eigen::MatrixXd& z = catalogue.scores[static_cast<size_t>(prompt)];
    if ((z.row(a) - z.row(b)).cwiseAbs().maxCoeff() > 0) return Answer(catalogue, w, prompt, a, b);
  }
}

void QualityScore::Add(const QualityScore& other) {
  pairwise_correct += other.pairwise_correct;
  pairwise_total += other.pairwise_total;
  top1_correct += other.top1_correct;
  prompts += other.prompts;
  pick_reward += other.pick_reward;
  regret += other.regret;
  reference_wins += other.reference_wins;
  reference_prompts += other.reference_prompts;
}

void ScoreRanking(const Catalogue& catalogue, const Eigen::VectorXd& w, int prompt,
                  std::span<const int> ranking, QualityScore& score) {
  const Eigen::VectorXd utility = catalogue.scores[static_cast<size_t>(prompt)] * w;
  const int n = static_cast<int>(ranking.size());
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      const double better = utility[ranking[static_cast<size_t>(i)]];
      const double worse = utility[ranking[static_cast<size_t>(j)]];
      if (std::abs(better - worse) <= 1e-12) continue;  // a tie has no right answer
      score.pairwise_total += 1;
      score.pairwise_correct += better > worse ? 1 : 0;
    }
  }
  score.prompts += 1;
  score.top1_correct += utility[ranking[0]] >= utility.maxCoeff() - 1e-12 ? 1 : 0;
  score.pick_reward += utility[ranking[0]];
  score.regret += utility.maxCoeff() - utility[ranking[0]];
  if (catalogue.reference_response >= 0) {
    const double pick = utility[ranking[0]];
    const double reference = utility[catalogue.reference_response];
    score.reference_wins += std::abs(pick - reference) <= 1e-12 ? 0.5 : (pick > reference ? 1 : 0);
    score.reference_prompts += 1;
  }
}

}  // namespace tailor::bench
