#include "model/belief.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <numeric>

namespace tailor::model {
namespace {

double LogSigmoid(double x) {
  return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}

double BinaryEntropyBits(double p) {
  if (p <= 0 || p >= 1) return 0;
  return -(p * std::log2(p) + (1 - p) * std::log2(1 - p));
}

// A draw from N(mean, cov) given the Cholesky factor (or variances when diagonal).
Eigen::VectorXd Draw(const Posterior& posterior, const Eigen::MatrixXd& factor,
                     std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  Eigen::VectorXd z(posterior.dimension());
  for (int i = 0; i < z.size(); ++i) z[i] = normal(rng);
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

NeighbourMixture MixNeighbours(std::span<const Eigen::VectorXd> diffs,
                               const ReferenceSet& reference, int exclude_row,
                               const NeighbourOptions& options) {
  const int n = reference.size();
  NeighbourMixture mixture;
  mixture.mean = Eigen::VectorXd::Zero(reference.weights.cols());
  if (n == 0) return mixture;
  Eigen::VectorXd log_weight = Eigen::VectorXd::Zero(n);
  if (!diffs.empty()) {
    Eigen::MatrixXd x(reference.weights.cols(), static_cast<Eigen::Index>(diffs.size()));
    for (size_t i = 0; i < diffs.size(); ++i) x.col(static_cast<Eigen::Index>(i)) = diffs[i];
    const Eigen::MatrixXd margins = reference.weights * x;  // users x pairs
    for (int j = 0; j < n; ++j) {
      double ll = 0;
      for (Eigen::Index i = 0; i < margins.cols(); ++i) ll += LogSigmoid(margins(j, i));
      log_weight[j] = options.temperature * ll;
    }
  }
  if (exclude_row >= 0 && exclude_row < n) log_weight[exclude_row] = -INFINITY;
  const double top = log_weight.maxCoeff();
  Eigen::VectorXd weight = (log_weight.array() - top).exp();
  const double total = weight.sum();
  if (!(total > 0)) return mixture;
  weight /= total;
  const int counted = exclude_row >= 0 && exclude_row < n ? n - 1 : n;
  mixture.log_evidence = top + std::log(total) - std::log(std::max(1, counted));
  mixture.mean = reference.weights.transpose() * weight;

  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const int k = std::min(options.top_k, n);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return weight[a] > weight[b]; });
  double kept = 0;
  for (int i = 0; i < k; ++i) kept += weight[order[static_cast<size_t>(i)]];
  for (int i = 0; i < k; ++i) {
    const int row = order[static_cast<size_t>(i)];
    if (weight[row] > 0) mixture.top.emplace_back(row, weight[row] / kept);
  }
  return mixture;
}

Eigen::VectorXd Belief::Mean() const {
  if (!neighbours.has_value()) return personal.mean();
  return personal_weight * personal.mean() + (1 - personal_weight) * neighbours->mean;
}

double Belief::PredictWin(const Eigen::VectorXd& diff) const {
  const double own = personal.PredictWin(diff);
  if (!neighbours.has_value() || reference == nullptr) return own;
  double mixed = 0;
  for (const auto& [row, w] : neighbours->top) {
    mixed += w * Sigmoid(reference->weights.row(row).dot(diff));
  }
  return personal_weight * own + (1 - personal_weight) * mixed;
}

std::vector<RankedItem> Rank(const Belief& belief, const Eigen::MatrixXd& features, bool explore,
                             int samples, std::mt19937_64& rng) {
  const int n = static_cast<int>(features.rows());
  std::vector<RankedItem> items(static_cast<size_t>(n));
  const Eigen::VectorXd scores = features * belief.Mean();
  for (int i = 0; i < n; ++i) items[static_cast<size_t>(i)] = {i, scores[i], 0.0};

  // Favourite probabilities: the personal part by Monte Carlo, the neighbour part exactly
  // over its heaviest neighbours (each is a point mass).
  const Eigen::MatrixXd factor = CholeskyFactor(belief.personal);
  const bool blended = belief.neighbours.has_value() && belief.reference != nullptr;
  const double own_share = blended ? belief.personal_weight : 1.0;
  Eigen::Index best = 0;
  if (own_share > 0) {
    for (int s = 0; s < samples; ++s) {
      (features * Draw(belief.personal, factor, rng)).maxCoeff(&best);
      items[static_cast<size_t>(best)].probability_best += own_share / samples;
    }
  }
  if (blended) {
    for (const auto& [row, w] : belief.neighbours->top) {
      (features * belief.reference->weights.row(row).transpose()).maxCoeff(&best);
      items[static_cast<size_t>(best)].probability_best += (1 - own_share) * w;
    }
  }

  Eigen::VectorXd order_key = scores;
  if (explore) {
    // Thompson sampling: one draw from the blended belief decides the order.
    std::uniform_real_distribution<double> uniform;
    Eigen::VectorXd draw;
    if (blended && uniform(rng) >= own_share && !belief.neighbours->top.empty()) {
      double u = uniform(rng);
      int row = belief.neighbours->top.back().first;
      for (const auto& [r, w] : belief.neighbours->top) {
        if ((u -= w) <= 0) {
          row = r;
          break;
        }
      }
      draw = belief.reference->weights.row(row).transpose();
    } else {
      draw = Draw(belief.personal, factor, rng);
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
      const double p = belief.PredictWin(diff);
      const double bits = BinaryEntropyBits(p);
      if (bits > best.information_bits) best = {a, b, p, bits};
    }
  }
  return best;
}

}  // namespace tailor::model
