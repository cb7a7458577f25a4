#include "model/posterior.h"

#include <Eigen/Cholesky>
#include <cmath>
#include <numbers>
#include <utility>

namespace tailor::model {

double Sigmoid(double x) {
  // Branches keep exp() from overflowing for large |x|.
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

Posterior::Posterior(Eigen::VectorXd mean, const Eigen::MatrixXd& cov) : mean_(std::move(mean)) {
  diagonal_ = mean_.size() > kMaxFullCovarianceDimension;
  if (diagonal_) {
    diag_ = cov.diagonal();
  } else {
    cov_ = cov;
  }
}

Posterior Posterior::FromParts(Eigen::VectorXd mean, Eigen::MatrixXd full_cov,
                               Eigen::VectorXd diagonal_cov, bool diagonal) {
  Posterior p;
  p.mean_ = std::move(mean);
  p.diagonal_ = diagonal;
  p.cov_ = std::move(full_cov);
  p.diag_ = std::move(diagonal_cov);
  return p;
}

Eigen::MatrixXd Posterior::Covariance() const {
  if (diagonal_) return diag_.asDiagonal();
  return cov_;
}

Eigen::VectorXd Posterior::Variances() const { return diagonal_ ? diag_ : cov_.diagonal(); }

double Posterior::Variance(const Eigen::VectorXd& diff) const {
  if (diagonal_) return diff.cwiseAbs2().dot(diag_);
  return diff.dot(cov_ * diff);
}

double Posterior::PredictWin(const Eigen::VectorXd& diff) const {
  const double m = mean_.dot(diff);
  const double v = Variance(diff);
  return Sigmoid(m / std::sqrt(1.0 + std::numbers::pi * v / 8.0));
}

void Posterior::Observe(const Eigen::VectorXd& diff) {
  const Eigen::VectorXd s =
      diagonal_ ? Eigen::VectorXd(diag_.cwiseProduct(diff)) : Eigen::VectorXd(cov_ * diff);
  const double v = diff.dot(s);
  if (!(v > 1e-12)) return;  // a zero difference carries no information
  const double m = mean_.dot(diff);
  // The MAP lies on mean + t * s; stationarity in t: t = 1 - sigmoid(m + v t).
  // f(t) = t - 1 + sigmoid(m + v t) is increasing, so Newton from t = 0 converges quickly.
  double t = 0.0;
  for (int i = 0; i < 30; ++i) {
    const double p = Sigmoid(m + v * t);
    const double f = t - 1.0 + p;
    const double step = f / (1.0 + v * p * (1.0 - p));
    t -= step;
    if (std::abs(step) < 1e-12) break;
  }
  mean_ += t * s;
  const double p = Sigmoid(m + v * t);
  const double curvature = p * (1.0 - p);
  // (Sigma^-1 + c x x^T)^-1 = Sigma - c s s^T / (1 + c v)
  const double gain = curvature / (1.0 + curvature * v);
  if (diagonal_) {
    diag_ -= gain * s.cwiseAbs2();
  } else {
    cov_.noalias() -= gain * s * s.transpose();
    cov_ = 0.5 * (cov_ + cov_.transpose());  // keep it exactly symmetric
  }
}

void Posterior::Forget(double keep, const Eigen::VectorXd& base_mean,
                       const Eigen::MatrixXd& base_cov) {
  if (!(keep < 1.0)) return;
  if (diagonal_) {
    const Eigen::ArrayXd base_precision = base_cov.diagonal().array().inverse();
    const Eigen::ArrayXd precision = diag_.array().inverse();
    const Eigen::ArrayXd base_shift = base_precision * base_mean.array();
    const Eigen::ArrayXd shift = precision * mean_.array();
    const Eigen::ArrayXd kept_precision = base_precision + keep * (precision - base_precision);
    const Eigen::ArrayXd kept_shift = base_shift + keep * (shift - base_shift);
    diag_ = kept_precision.inverse().matrix();
    mean_ = (kept_shift / kept_precision).matrix();
    return;
  }
  const Eigen::Index d = mean_.size();
  const Eigen::MatrixXd identity = Eigen::MatrixXd::Identity(d, d);
  const Eigen::MatrixXd base_precision = base_cov.llt().solve(identity);
  const Eigen::MatrixXd precision = cov_.llt().solve(identity);
  const Eigen::MatrixXd kept_precision = base_precision + keep * (precision - base_precision);
  const Eigen::VectorXd kept_shift =
      base_precision * base_mean + keep * (precision * mean_ - base_precision * base_mean);
  const Eigen::LLT<Eigen::MatrixXd> factor(0.5 * (kept_precision + kept_precision.transpose()));
  cov_ = factor.solve(identity);
  cov_ = 0.5 * (cov_ + cov_.transpose());
  mean_ = factor.solve(kept_shift);
}

LaplaceFit BatchLaplaceFit(std::span<const Eigen::VectorXd> diffs,
                           const Eigen::VectorXd& prior_mean, const Eigen::MatrixXd& prior_cov,
                           int iterations) {
  const Eigen::MatrixXd prior_precision =
      prior_cov.ldlt().solve(Eigen::MatrixXd::Identity(prior_cov.rows(), prior_cov.cols()));
  Eigen::VectorXd w = prior_mean;
  Eigen::MatrixXd hessian = prior_precision;
  for (int it = 0; it < iterations; ++it) {
    Eigen::VectorXd gradient = prior_precision * (w - prior_mean);
    hessian = prior_precision;
    for (const Eigen::VectorXd& x : diffs) {
      const double p = Sigmoid(w.dot(x));
      gradient -= (1.0 - p) * x;
      hessian.noalias() += p * (1.0 - p) * x * x.transpose();
    }
    w -= hessian.ldlt().solve(gradient);
  }
  hessian = prior_precision;
  for (const Eigen::VectorXd& x : diffs) {
    const double p = Sigmoid(w.dot(x));
    hessian.noalias() += p * (1.0 - p) * x * x.transpose();
  }
  return {w, hessian.ldlt().solve(Eigen::MatrixXd::Identity(w.size(), w.size()))};
}

}  // namespace tailor::model
