// Posterior: a user's Gaussian belief N(mean, cov) over their preference weights under the
// Bradley–Terry model P(a beats b) = sigmoid(w . (x_a - x_b)), updated online one pair at a
// time with an exact one-observation Laplace step in O(d^2).
#ifndef TAILOR_MODEL_POSTERIOR_H_
#define TAILOR_MODEL_POSTERIOR_H_

#include <Eigen/Core>
#include <span>
#include <vector>

namespace tailor::model {

// Above this dimension the covariance is kept diagonal (O(d) memory and update) instead of
// full (O(d^2)); d <= 64 keeps the full matrix.
inline constexpr int kMaxFullCovarianceDimension = 64;

double Sigmoid(double x);

class Posterior {
 public:
  // A prior N(mean, cov). With dimension > kMaxFullCovarianceDimension only the diagonal of
  // `cov` is kept.
  Posterior(Eigen::VectorXd mean, const Eigen::MatrixXd& cov);
  // Rebuilds from stored parts (see covariance_is_diagonal()).
  static Posterior FromParts(Eigen::VectorXd mean, Eigen::MatrixXd full_cov,
                             Eigen::VectorXd diagonal_cov, bool diagonal);

  int dimension() const { return static_cast<int>(mean_.size()); }
  const Eigen::VectorXd& mean() const { return mean_; }
  bool covariance_is_diagonal() const { return diagonal_; }
  // Full covariance (a diagonal one is expanded).
  Eigen::MatrixXd Covariance() const;
  Eigen::VectorXd Variances() const;
  const Eigen::MatrixXd& full_covariance() const { return cov_; }
  const Eigen::VectorXd& diagonal_covariance() const { return diag_; }

  // P(the item with features x_a beats x_b) given diff = x_a - x_b, integrating over the
  // posterior with the probit approximation sigmoid(m / sqrt(1 + pi v / 8)).
  double PredictWin(const Eigen::VectorXd& diff) const;
  // Variance of w . diff under the posterior.
  double Variance(const Eigen::VectorXd& diff) const;

  // Learns from one observation "the item with features x_a beat x_b" (diff = x_a - x_b):
  // the new mean is the exact MAP of prior x likelihood (found by a 1-D Newton solve along
  // cov * diff), the new covariance the inverse Hessian there (Sherman–Morrison).
  void Observe(const Eigen::VectorXd& diff);

  // Forgets on purpose (preference drift): what was learned since the prior N(base_mean,
  // base_cov) is weighed by `keep` (0 < keep <= 1) in information form, so that
  //   precision <- base precision + keep * (precision - base precision)
  //   precision * mean <- base precision * base mean + keep * (same - base's).
  // Before each observation with keep = 2^(-1 / half-life), a pair seen h observations ago
  // counts 2^(-h / half-life): the variance no longer shrinks for ever, so a user whose taste
  // moves is followed again. The result is still "learned under the base prior" (the base's
  // information is untouched), which re-prioring relies on.
  void Forget(double keep, const Eigen::VectorXd& base_mean, const Eigen::MatrixXd& base_cov);

 private:
  Posterior() = default;
  Eigen::VectorXd mean_;
  Eigen::MatrixXd cov_;   // full form
  Eigen::VectorXd diag_;  // diagonal form
  bool diagonal_ = false;
};

// Batch Laplace fit of the same model: MAP of N(prior_mean, prior_cov) x prod sigmoid(w.diff_i)
// by Newton's method, and the inverse Hessian there. The reference the online update is
// checked against.
struct LaplaceFit {
  Eigen::VectorXd mean;
  Eigen::MatrixXd cov;
};
LaplaceFit BatchLaplaceFit(std::span<const Eigen::VectorXd> diffs,
                           const Eigen::VectorXd& prior_mean, const Eigen::MatrixXd& prior_cov,
                           int iterations = 30);

}  // namespace tailor::model

#endif  // TAILOR_MODEL_POSTERIOR_H_
