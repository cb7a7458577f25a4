#include "engine/user_state.h"

#include <cmath>

#include "Eigen/Cholesky"

namespace tailor::engine {
namespace {

namespace records = storage::v1;
constexpr uint32_t kStateFormatVersion = 1;
// No learned posterior comes near this (weights are over z-scored features and start at the
// base prior's unit variance; learning only shrinks variances): larger values are damage, and
// arithmetic on values near the double range overflows.
constexpr double kMaxMagnitude = 1e6;

bool Plausible(double value) { return std::isfinite(value) && std::abs(value) <= kMaxMagnitude; }

}  // namespace

records::UserState ToState(const model::Posterior& posterior, uint64_t count, int64_t first,
                           int64_t last, double forget_half_life_pairs, uint32_t schema_version) {
  records::UserState state;
  state.set_format_version(kStateFormatVersion);
  state.set_schema_version(schema_version);
  state.set_feedback_count(count);
  for (double m : posterior.mean()) state.add_mean(m);
  state.set_covariance_is_diagonal(posterior.covariance_is_diagonal());
  if (posterior.covariance_is_diagonal()) {
    for (double v : posterior.diagonal_covariance()) state.add_covariance(v);
  } else {
    const Eigen::MatrixXd& cov = posterior.full_covariance();
    for (int i = 0; i < cov.rows(); ++i) {
      for (int j = i; j < cov.cols(); ++j) state.add_covariance(cov(i, j));
    }
  }
  state.set_first_feedback_micros(first);
  state.set_last_feedback_micros(last);
  state.set_forget_half_life_pairs(forget_half_life_pairs);
  return state;
}

std::optional<model::Posterior> FromState(const records::UserState& state, int d) {
  if (state.format_version() != kStateFormatVersion || state.mean_size() != d || d <= 0) {
    return std::nullopt;
  }
  for (double m : state.mean()) {
    if (!Plausible(m)) return std::nullopt;
  }
  for (double c : state.covariance()) {
    if (!Plausible(c)) return std::nullopt;
  }
  Eigen::VectorXd mean(d);
  for (int i = 0; i < d; ++i) mean[i] = state.mean(i);
  if (state.covariance_is_diagonal()) {
    if (state.covariance_size() != d) return std::nullopt;
    Eigen::VectorXd diag(d);
    for (int i = 0; i < d; ++i) {
      diag[i] = state.covariance(i);
      if (!(diag[i] > 0)) return std::nullopt;
    }
    return model::Posterior::FromParts(mean, {}, diag, true);
  }
  // Above kMaxFullCovarianceDimension posteriors are diagonal (model/posterior.h).
  if (d > model::kMaxFullCovarianceDimension || state.covariance_size() != d * (d + 1) / 2) {
    return std::nullopt;
  }
  Eigen::MatrixXd cov(d, d);
  int k = 0;
  for (int i = 0; i < d; ++i) {
    for (int j = i; j < d; ++j) cov(i, j) = cov(j, i) = state.covariance(k++);
  }
  // A covariance must be positive definite (its Cholesky factor is what every use needs).
  if (cov.llt().info() != Eigen::Success) return std::nullopt;
  return model::Posterior::FromParts(mean, cov, {}, false);
}

}  // namespace tailor::engine
