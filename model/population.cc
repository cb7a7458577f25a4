#include "model/population.h"

#include <Eigen/Cholesky>
#include <cmath>

namespace tailor::model {
namespace {

// Inverse and log-determinant of a symmetric positive definite matrix (Cholesky).
Eigen::MatrixXd InverseSpd(const Eigen::MatrixXd& m, double* log_determinant = nullptr) {
  const Eigen::LLT<Eigen::MatrixXd> llt(m);
  if (log_determinant != nullptr) {
    *log_determinant = 2 * llt.matrixLLT().diagonal().array().log().sum();
  }
  Eigen::MatrixXd inverse = Eigen::MatrixXd::Identity(m.rows(), m.cols());
  llt.solveInPlace(inverse);
  return inverse;
}

}  // namespace

Population BasePrior(int dimension, double variance) {
  Population base;
  base.mean = Eigen::VectorXd::Zero(dimension);
  base.cov = variance * Eigen::MatrixXd::Identity(dimension, dimension);
  return base;
}

PriorInformation InformationOf(const Population& prior) {
  PriorInformation information;
  information.diagonal_precision = prior.cov.diagonal().cwiseInverse();
  information.diagonal_shift = information.diagonal_precision.cwiseProduct(prior.mean);
  if (prior.mean.size() > kMaxFullCovarianceDimension) {
    information.log_determinant = prior.cov.diagonal().array().log().sum();
    return information;
  }
  information.precision = InverseSpd(prior.cov, &information.log_determinant);
  information.shift = information.precision * prior.mean;
  return information;
}

Posterior Reprior(const Posterior& user, const PriorInformation& base,
                  const PriorInformation& prior) {
  if (user.covariance_is_diagonal()) {
    // Diagonal form: the same algebra per coordinate.
    const Eigen::VectorXd user_precision = user.diagonal_covariance().cwiseInverse();
    const Eigen::VectorXd data_precision = (user_precision - base.diagonal_precision).cwiseMax(0.0);
    const Eigen::VectorXd data_shift =
        user_precision.cwiseProduct(user.mean()) - base.diagonal_shift;
    const Eigen::VectorXd precision = data_precision + prior.diagonal_precision;
    const Eigen::VectorXd mean = (data_shift + prior.diagonal_shift).cwiseQuotient(precision);
    return Posterior::FromParts(mean, {}, precision.cwiseInverse(), true);
  }
  // Full posteriors exist only up to kMaxFullCovarianceDimension, where the information
  // carries the full form too.
  const Eigen::MatrixXd user_precision = InverseSpd(user.full_covariance());
  const Eigen::MatrixXd precision = user_precision - base.precision + prior.precision;
  const Eigen::VectorXd shift = user_precision * user.mean() - base.shift + prior.shift;
  Eigen::MatrixXd cov = InverseSpd(precision);
  Eigen::VectorXd mean = cov * shift;
  return Posterior::FromParts(std::move(mean), std::move(cov), {}, false);
}

Posterior Reprior(const Posterior& user, const Population& base, const Population& prior) {
  return Reprior(user, InformationOf(base), InformationOf(prior));
}

Population FitPopulation(std::span<const Posterior> users, const Population& base, int iterations,
                         double ridge, double pseudo_users) {
  if (users.empty()) return base;
  const int d = users[0].dimension();
  Population estimate = base;
  estimate.users = users.size();
  const PriorInformation base_information = InformationOf(base);
  for (int it = 0; it < iterations; ++it) {
    const PriorInformation estimate_information = InformationOf(estimate);
    Eigen::VectorXd mean = Eigen::VectorXd::Zero(d);
    Eigen::MatrixXd second = Eigen::MatrixXd::Zero(d, d);
    for (const Posterior& user : users) {
      const Posterior under = Reprior(user, base_information, estimate_information);
      mean += under.mean();
      second += under.Covariance() + under.mean() * under.mean().transpose();
    }
    // MAP under a conjugate hyperprior worth `pseudo_users` users at the base prior: with few
    // users the prior stays close to the base instead of trusting a handful of vectors.
    const double n = static_cast<double>(users.size());
    mean = (mean + pseudo_users * base.mean) / (n + pseudo_users);
    estimate.mean = mean;
    estimate.cov = (second + pseudo_users * (base.cov + base.mean * base.mean.transpose())) /
                       (n + pseudo_users) -
                   mean * mean.transpose();
    estimate.cov = 0.5 * (estimate.cov + estimate.cov.transpose());
    estimate.cov.diagonal().array() += ridge;
  }
  return estimate;
}

Population PoolPopulations(std::span<const Population> groups) {
  double total = 0;
  for (const Population& g : groups) total += static_cast<double>(g.users);
  if (total == 0) return groups.empty() ? Population{} : groups.front();
  const Eigen::Index d = groups.front().mean.size();
  Population pooled;
  pooled.mean = Eigen::VectorXd::Zero(d);
  pooled.cov = Eigen::MatrixXd::Zero(d, d);
  for (const Population& g : groups) {
    if (g.users > 0) pooled.mean += (static_cast<double>(g.users) / total) * g.mean;
  }
  for (const Population& g : groups) {
    if (g.users == 0) continue;
    const Eigen::VectorXd offset = g.mean - pooled.mean;
    pooled.cov += (static_cast<double>(g.users) / total) * (g.cov + offset * offset.transpose());
  }
  pooled.cov = 0.5 * (pooled.cov + pooled.cov.transpose());
  pooled.users = static_cast<uint64_t>(total);
  return pooled;
}

double LaplaceLogEvidence(const Posterior& posterior, std::span<const Eigen::VectorXd> diffs,
                          const Population& prior, const PriorInformation& information) {
  double log_likelihood = 0;
  for (const Eigen::VectorXd& diff : diffs) {
    const double m = posterior.mean().dot(diff);
    log_likelihood += m >= 0 ? -std::log1p(std::exp(-m)) : m - std::log1p(std::exp(m));
  }
  const Eigen::VectorXd offset = posterior.mean() - prior.mean;
  if (posterior.covariance_is_diagonal()) {
    return log_likelihood -
           0.5 * offset.cwiseAbs2().cwiseProduct(information.diagonal_precision).sum() +
           0.5 * (posterior.diagonal_covariance().array().log().sum() -
                  prior.cov.diagonal().array().log().sum());
  }
  const Eigen::LLT<Eigen::MatrixXd> posterior_factor(posterior.full_covariance());
  const double log_det_posterior = 2 * posterior_factor.matrixLLT().diagonal().array().log().sum();
  return log_likelihood - 0.5 * offset.dot(information.precision * offset) +
         0.5 * (log_det_posterior - information.log_determinant);
}

double LaplaceLogEvidence(const Posterior& posterior, std::span<const Eigen::VectorXd> diffs,
                          const Population& prior) {
  return LaplaceLogEvidence(posterior, diffs, prior, InformationOf(prior));
}

}  // namespace tailor::model
