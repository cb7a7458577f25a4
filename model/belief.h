// Belief: what Tailor believes about one user's preference weights when it ranks — the
// user's own posterior (under the population prior), blended with a likelihood-weighted
// mixture of established users (neighbour cold start) while the user's own evidence is thin.
// Ranking, favourite probabilities, Thompson sampling and comparison suggestions all read it.
#ifndef TAILOR_MODEL_BELIEF_H_
#define TAILOR_MODEL_BELIEF_H_

#include <Eigen/Core>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "model/posterior.h"

namespace tailor::model {

// Established users' weight estimates that new users may borrow from: one row per user, each
// row contiguous, so that weighing a scattered subset of users (the index's candidates, a
// cold user's track) reads one or two cache lines per user instead of one per feature.
using ReferenceWeights = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
struct ReferenceSet {
  std::vector<std::string> user_ids;
  ReferenceWeights weights;  // rows = users, cols = features
  int size() const { return static_cast<int>(weights.rows()); }
};

struct NeighbourMixture {
  Eigen::VectorXd mean;
  // The heaviest neighbours: (row in the reference set, normalised weight), heaviest first.
  std::vector<std::pair<int, double>> top;
  // log p(pairs | "the user is like one of them"): the tempered log-likelihood averaged over
  // the reference users (log-mean-exp). Compared with the own model's evidence for hand-over.
  double log_evidence = 0;
};

struct NeighbourOptions {
  // Multiplies each pair's log-likelihood: < 1 tempers over-confident matches on noisy
  // real-world feedback.
  double temperature = 1.0;
  int top_k = 32;
  // Rows that no longer count (users deleted since the set was built), or null: removed[row]
  // is non-zero for each of them, and `removed_count` says how many there are.
  const std::vector<char>* removed = nullptr;
  int removed_count = 0;
  bool IsRemoved(int row) const { return removed != nullptr && (*removed)[row] != 0; }
};

// A part of the reference set to weigh instead of all of it: rows that carry most of the
// weight (`near`, from a NeighbourIndex) and uniform draws from the `rest` other rows that
// stand for them (each draw counts rest / sampled.size() times).
struct CandidateRows {
  std::vector<int> near;
  std::vector<int> sampled;
  int rest = 0;
};

// Weights each reference user j by prod_i sigmoid(w_j . diff_i)^temperature over the user's
// pairs and returns the weighted mean of their vectors. `exclude_row` (or -1) skips the user
// themself. With no pairs the weights are uniform. With `candidates`, only those rows are
// weighed (a stratified estimate of the same mixture and evidence); `exclude_row` must already
// be left out of them.
NeighbourMixture MixNeighbours(std::span<const Eigen::VectorXd> diffs,
                               const ReferenceSet& reference, int exclude_row,
                               const NeighbourOptions& options,
                               const CandidateRows* candidates = nullptr);

// The mixture from each weighed row's log weight (log multiplicity plus tempered
// log-likelihood; -inf for rows that do not count): the weighted mean of their vectors, the
// top_k heaviest, and the evidence averaged over the `counted` reference users they stand
// for. `rows` maps positions to reference rows; empty means position i is row i.
NeighbourMixture MixtureOfLogWeights(const Eigen::VectorXd& log_weight, std::span<const int> rows,
                                     const ReferenceSet& reference, int counted, int top_k);

// log sigmoid(x) element-wise, as min(x, 0) - log(1 + exp(-|x|)) over whole arrays, which
// Eigen vectorises. Single precision (four lanes where doubles get two): each term's relative
// error stays near 1e-7, far below what decides a neighbour's weight. (log(1 + e) rather than
// log1p(e): e is in (0, 1], so the absolute error stays below 2^-23.)
Eigen::ArrayXXf LogSigmoid(const Eigen::ArrayXXf& x);

enum class KnowledgeSource { kPersonal, kNeighbours, kPopulation };

// The served log-odds of "a beats b" for a user at one experience level is
//   population * (mu_0 . x) + own * (mu_own . x) + blend * (mu_blend . x),   x = z_a - z_b,
// where mu_0 is the population mean, mu_own the user's posterior mean under the (scaled)
// population prior, and mu_blend the evidence-weighted blend of mu_own with the neighbour
// mixture. It is one preference vector, so rankings, probabilities and the profile agree.
struct SourceWeights {
  double population = 0;
  double own = 0;
  double blend = 1;
};

struct Belief {
  explicit Belief(Posterior own) : personal(std::move(own)) {}

  // The user's own posterior under the served prior (or that prior for an unknown user).
  Posterior personal;
  // Share of the personal posterior in the blend with the neighbour mixture; 1 = no neighbours.
  double personal_weight = 1.0;
  std::optional<NeighbourMixture> neighbours;
  const ReferenceSet* reference = nullptr;  // rows that `neighbours->top` refers to
  // The population mean and how the served vector combines it with the own posterior and the
  // blend (model/trust.h); the default serves the blend as it is.
  Eigen::VectorXd population_mean;
  SourceWeights weights;
  KnowledgeSource source = KnowledgeSource::kPopulation;

  // The blend of the own posterior mean and the neighbour mixture mean.
  Eigen::VectorXd BlendMean() const;
  // The served preference vector: weights.population * population mean + weights.own * own
  // mean + weights.blend * BlendMean().
  Eigen::VectorXd Mean() const;
  // P(a beats b) for diff = x_a - x_b: sigmoid(Mean() . diff), calibrated by the fitted weights.
  double PredictWin(const Eigen::VectorXd& diff) const;
  // P(a beats b) with the belief's uncertainty: the own posterior's spread (probit) and the
  // neighbours' disagreement, mixed by the blend. What suggestions maximise the entropy of.
  double OutcomeProbability(const Eigen::VectorXd& diff) const;
};

struct RankedItem {
  int index = 0;     // row of the candidate matrix
  double score = 0;  // predicted reward (blended mean . features)
  double probability_best = 0;
};

// Candidates as rows of `features` (z-scored). Sorted best first. Each candidate's
// probability_best is the probability that the user picks it from these candidates under the
// served model: the Plackett–Luce first choice softmax(scores), which for two candidates is
// exactly PredictWin, is deterministic, and sums to 1. With `explore`, the order follows one
// Thompson draw from the belief instead of its mean (scores and probabilities stay the means').
std::vector<RankedItem> Rank(const Belief& belief, const Eigen::MatrixXd& features, bool explore,
                             std::mt19937_64& rng);

// rows x cols independent N(0, 1) draws (the posterior draws of Rank use them). The uniforms
// behind them have 32 bits, so no draw lies beyond 6.7 sd: immaterial for favourite
// probabilities and Thompson sampling.
Eigen::MatrixXd StandardNormals(Eigen::Index rows, Eigen::Index cols, std::mt19937_64& rng);

struct SuggestedPair {
  int first = 0;
  int second = 1;
  double probability_first = 0.5;
  double information_bits = 1.0;
};
// The pair whose outcome the belief is least sure about (maximum binary entropy), among pairs
// whose features differ; information_bits is -1 if all candidates are identical.
SuggestedPair SuggestPair(const Belief& belief, const Eigen::MatrixXd& features);

}  // namespace tailor::model

#endif  // TAILOR_MODEL_BELIEF_H_
