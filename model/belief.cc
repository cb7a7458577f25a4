#include "model/belief.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <numeric>

namespace tailor::model {
namespace {

// sum_i log sigmoid(margins(r, i)) for every row r. This is most of an exact neighbour scan's
// cost, so it runs in single precision (see LogSigmoid).
Eigen::VectorXd LogSigmoidRowSums(const Eigen::MatrixXd& margins) {
  return LogSigmoid(margins.cast<float>().array()).rowwise().sum().cast<double>();
}

double BinaryEntropyBits(double p) {
  if (p <= 0 || p >= 1) return 0;
  return -(p * std::log2(p) + (1 - p) * std::log2(1 - p));
}

// A draw from N(mean, cov) given the Cholesky factor (or variances when diagonal).
Eigen::VectorXd Draw(const Posterior& posterior, const Eigen::MatrixXd& factor,
                     std::mt19937_64& rng) {
  const Eigen::VectorXd z = StandardNormals(posterior.dimension(), 1, rng);
  if (posterior.covariance_is_diagonal()) {
    return posterior.mean() + posterior.diagonal_covariance().cwiseSqrt().cwiseProduct(z);
  }
  return posterior.mean() + factor * z;
}

Eigen::MatrixXd CholeskyFactor(const Posterior& posterior) {
  if (posterior.covariance_is_diagonal()) return {};
  Eigen::LLT<Eigen::MatrixXd> llt(posterior.full_covariance());
  if (llt.info() != Eigen::Success) {
    // Numerically indefinite after many updates: fall back to the diagonal's spread.
    return posterior.full_covariance().diagonal().cwiseMax(0.0).cwiseSqrt().asDiagonal();
  }
  return llt.matrixL();
}

}  // namespace

// Box–Muller, as whole-array operations: one 64-bit draw of `rng` gives the two uniforms of a
// pair. std::normal_distribution took ~25 ns a draw, which made the 640 draws of a d = 10
// ranking about 40% of tailord's own CPU under RankResponses load (docs/BENCHMARKS.md).
Eigen::MatrixXd StandardNormals(Eigen::Index rows, Eigen::Index cols, std::mt19937_64& rng) {
  const Eigen::Index count = rows * cols;
  const Eigen::Index pairs = (count + 1) / 2;
  Eigen::ArrayXf radius_uniform(pairs);
  Eigen::ArrayXf angle_uniform(pairs);
  constexpr float kScale = 1.0f / 4294967296.0f;  // 2^-32
  for (Eigen::Index i = 0; i < pairs; ++i) {
    const uint64_t bits = rng();
    // (0, 1]: the logarithm below never sees 0.
    radius_uniform[i] = (static_cast<float>(bits >> 32) + 1.0f) * kScale;
    angle_uniform[i] = static_cast<float>(bits & 0xffffffffu) * kScale;
  }
  const Eigen::ArrayXf radius = (-2.0f * radius_uniform.log()).sqrt();
  const Eigen::ArrayXf angle = angle_uniform * static_cast<float>(2 * M_PI);
  Eigen::MatrixXd z(rows, cols);
  double* out = z.data();
  const Eigen::ArrayXf first = radius * angle.cos();
  const Eigen::ArrayXf second = radius * angle.sin();
  for (Eigen::Index i = 0; i < pairs; ++i) {
    out[2 * i] = first[i];
    if (2 * i + 1 < count) out[2 * i + 1] = second[i];
  }
  return z;
}

NeighbourMixture MixNeighbours(std::span<const Eigen::VectorXd> diffs,
                               const ReferenceSet& reference, int exclude_row,
                               const NeighbourOptions& options, const CandidateRows* candidates) {
  const int n = reference.size();
  NeighbourMixture mixture;
  mixture.mean = Eigen::VectorXd::Zero(reference.weights.cols());
  if (n == 0) return mixture;
  const bool excluded = exclude_row >= 0 && exclude_row < n && !options.IsRemoved(exclude_row);
  const int counted = n - static_cast<int>(excluded) - options.removed_count;

  // The rows to weigh, each with how many reference users it stands for.
  std::vector<int> rows;
  Eigen::VectorXd log_multiplicity;
  if (candidates == nullptr) {
    rows.resize(static_cast<size_t>(n));
    std::iota(rows.begin(), rows.end(), 0);
    log_multiplicity = Eigen::VectorXd::Zero(n);
    if (excluded) log_multiplicity[exclude_row] = -INFINITY;
    if (options.removed != nullptr) {
      for (int j = 0; j < n; ++j) {
        if (options.IsRemoved(j)) log_multiplicity[j] = -INFINITY;
      }
    }
  } else {
    rows = candidates->near;
    rows.insert(rows.end(), candidates->sampled.begin(), candidates->sampled.end());
    log_multiplicity = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(rows.size()));
    if (!candidates->sampled.empty()) {
      const double each =
          static_cast<double>(candidates->rest) / static_cast<double>(candidates->sampled.size());
      log_multiplicity.tail(static_cast<Eigen::Index>(candidates->sampled.size()))
          .setConstant(std::log(each));
    }
  }
  if (rows.empty()) return mixture;
  ReferenceWeights gathered;
  if (candidates != nullptr) gathered = reference.weights(rows, Eigen::all);
  const ReferenceWeights& vectors = candidates == nullptr ? reference.weights : gathered;

  Eigen::VectorXd log_weight = log_multiplicity;
  if (!diffs.empty()) {
    Eigen::MatrixXd x(reference.weights.cols(), static_cast<Eigen::Index>(diffs.size()));
    for (size_t i = 0; i < diffs.size(); ++i) x.col(static_cast<Eigen::Index>(i)) = diffs[i];
    log_weight += options.temperature * LogSigmoidRowSums(vectors * x);  // rows x pairs
  }
  if (candidates == nullptr) rows.clear();  // position = row
  return MixtureOfLogWeights(log_weight, rows, reference, counted, options.top_k);
}

Eigen::ArrayXXf LogSigmoid(const Eigen::ArrayXXf& x) {
  return x.min(0.0f) - ((-x.abs()).exp() + 1.0f).log();
}

NeighbourMixture MixtureOfLogWeights(const Eigen::VectorXd& log_weight, std::span<const int> rows,
                                     const ReferenceSet& reference, int counted, int top_k) {
  NeighbourMixture mixture;
  mixture.mean = Eigen::VectorXd::Zero(reference.weights.cols());
  const Eigen::Index m = log_weight.size();
  if (m == 0) return mixture;
  const double top = log_weight.maxCoeff();
  if (!std::isfinite(top)) return mixture;  // no row counts
  // Single-precision exponentials (twice the lanes): relative weights keep ~7 digits, and
  // those below e^-87 of the heaviest, which float flushes to 0, would not move the mean.
  Eigen::VectorXd weight = (log_weight.array() - top).cast<float>().exp().cast<double>();
  const double total = weight.sum();
  weight /= total;
  mixture.log_evidence = top + std::log(total) - std::log(std::max(1, counted));
  const auto row_of = [&](Eigen::Index i) {
    return rows.empty() ? static_cast<int>(i) : rows[static_cast<size_t>(i)];
  };
  if (rows.empty()) {
    mixture.mean = reference.weights.transpose() * weight;
  } else {
    // Rows below 1e-12 of the total change the mean by less than that: not worth a read.
    for (Eigen::Index i = 0; i < m; ++i) {
      if (weight[i] > 1e-12) {
        mixture.mean += weight[i] * reference.weights.row(row_of(i)).transpose();
      }
    }
  }

  // The heaviest top_k: selected in linear time, then sorted (ties by position, so the order
  // is deterministic).
  std::vector<Eigen::Index> order(static_cast<size_t>(m));
  std::iota(order.begin(), order.end(), 0);
  const auto heavier = [&](Eigen::Index a, Eigen::Index b) {
    return weight[a] > weight[b] || (weight[a] == weight[b] && a < b);
  };
  const auto k = std::min<Eigen::Index>(top_k, m);
  if (k <= 0) return mixture;
  std::nth_element(order.begin(), order.begin() + k - 1, order.end(), heavier);
  std::sort(order.begin(), order.begin() + k, heavier);
  double kept = 0;
  for (Eigen::Index i = 0; i < k; ++i) kept += weight[order[static_cast<size_t>(i)]];
  for (Eigen::Index i = 0; i < k; ++i) {
    const Eigen::Index r = order[static_cast<size_t>(i)];
    if (weight[r] > 0) mixture.top.emplace_back(row_of(r), weight[r] / kept);
  }
  return mixture;
}

Eigen::VectorXd Belief::BlendMean() const {
  if (!neighbours.has_value()) return personal.mean();
  return personal_weight * personal.mean() + (1 - personal_weight) * neighbours->mean;
}

Eigen::VectorXd Belief::Mean() const {
  Eigen::VectorXd mean = weights.own * personal.mean() + weights.blend * BlendMean();
  if (weights.population != 0 && population_mean.size() == mean.size()) {
    mean += weights.population * population_mean;
  }
  return mean;
}

double Belief::PredictWin(const Eigen::VectorXd& diff) const { return Sigmoid(Mean().dot(diff)); }

double Belief::OutcomeProbability(const Eigen::VectorXd& diff) const {
  const double own = personal.PredictWin(diff);
  if (!neighbours.has_value() || reference == nullptr) return own;
  double mixed = 0;
  for (const auto& [row, w] : neighbours->top) {
    mixed += w * Sigmoid(reference->weights.row(row).dot(diff));
  }
  return personal_weight * own + (1 - personal_weight) * mixed;
}

std::vector<RankedItem> Rank(const Belief& belief, const Eigen::MatrixXd& features, bool explore,
                             std::mt19937_64& rng) {
  const int n = static_cast<int>(features.rows());
  std::vector<RankedItem> items(static_cast<size_t>(n));
  const Eigen::VectorXd mean = belief.Mean();
  const Eigen::VectorXd scores = features * mean;
  // Plackett–Luce first choice: softmax of the scores, shifted by the maximum so no term
  // overflows; the largest term is exactly 1, so the sum is at least 1.
  const Eigen::ArrayXd odds = (scores.array() - scores.maxCoeff()).exp();
  const double total = odds.sum();
  for (int i = 0; i < n; ++i) items[static_cast<size_t>(i)] = {i, scores[i], odds[i] / total};

  Eigen::VectorXd order_key = scores;
  if (explore) {
    // Thompson sampling: one draw from the belief, combined as the means are: the own
    // posterior's draw, and for the blend a neighbour drawn by its weight or that same draw.
    const Eigen::MatrixXd factor = CholeskyFactor(belief.personal);
    const Eigen::VectorXd own = Draw(belief.personal, factor, rng);
    Eigen::VectorXd blend = own;
    const bool blended = belief.neighbours.has_value() && belief.reference != nullptr &&
                         !belief.neighbours->top.empty();
    std::uniform_real_distribution<double> uniform;
    if (blended && uniform(rng) >= belief.personal_weight) {
      double u = uniform(rng);
      int row = belief.neighbours->top.back().first;
      for (const auto& [r, w] : belief.neighbours->top) {
        if ((u -= w) <= 0) {
          row = r;
          break;
        }
      }
      blend = belief.reference->weights.row(row).transpose();
    }
    Eigen::VectorXd draw = belief.weights.own * own + belief.weights.blend * blend;
    if (belief.weights.population != 0 && belief.population_mean.size() == draw.size()) {
      draw += belief.weights.population * belief.population_mean;
    }
    order_key = features * draw;
  }
  std::stable_sort(items.begin(), items.end(), [&](const RankedItem& a, const RankedItem& b) {
    return order_key[a.index] > order_key[b.index];
  });
  return items;
}

SuggestedPair SuggestPair(const Belief& belief, const Eigen::MatrixXd& features) {
  SuggestedPair best;
  best.information_bits = -1;  // stays -1 only if every candidate is identical
  const int n = static_cast<int>(features.rows());
  for (int a = 0; a < n; ++a) {
    for (int b = a + 1; b < n; ++b) {
      const Eigen::VectorXd diff = features.row(a) - features.row(b);
      // Identical candidates look like a perfect coin flip, yet their answer teaches nothing.
      if (diff.cwiseAbs().maxCoeff() == 0) continue;
      const double p = belief.OutcomeProbability(diff);
      const double bits = BinaryEntropyBits(p);
      if (bits > best.information_bits) best = {a, b, p, bits};
    }
  }
  return best;
}

}  // namespace tailor::model
