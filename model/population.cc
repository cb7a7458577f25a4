#include "model/population.h"

#include <Eigen/Cholesky>
#include <cmath>

namespace tailor::model {
namespace {

Eigen::MatrixXd Inverse(const Eigen::MatrixXd& m) {
  return m.ldlt().solve(Eigen::MatrixXd::Identity(m.rows(), m.cols()));
}

}  // namespace

Population BasePrior(int dimension, double variance) {
  Population base;
  base.mean = Eigen::VectorXd::Zero(dimension);
  base.cov = variance * Eigen::MatrixXd::Identity(dimension, dimension);
  return base;
}

Posterior Reprior(const Posterior& user, const Population& base, const Population& prior) {
  if (user.covariance_is_diagonal()) {
    // Diagonal form: the same algebra per coordinate.
    const Eigen::VectorXd user_precision = user.diagonal_covariance().cwiseInverse();
    const Eigen::VectorXd base_precision = base.cov.diagonal().cwiseInverse();
    const Eigen::VectorXd prior_precision = prior.cov.diagonal().cwiseInverse();
    const Eigen::VectorXd data_precision = (user_precision - base_precision).cwiseMax(0.0);
    const Eigen::VectorXd data_shift =
        user_precision.cwiseProduct(user.mean()) - base_precision.cwiseProduct(base.mean);
    const Eigen::VectorXd precision = data_precision + prior_precision;
    const Eigen::VectorXd mean =
        (data_shift + prior_precision.cwiseProduct(prior.mean)).cwiseQuotient(precision);
    return Posterior::FromParts(mean, {}, precision.cwiseInverse(), true);
  }
  const Eigen::MatrixXd user_precision = Inverse(user.full_covariance());
  const Eigen::MatrixXd base_precision = Inverse(base.cov);
  const Eigen::MatrixXd prior_precision = Inverse(prior.cov);
  const Eigen::MatrixXd precision = user_precision - base_precision + prior_precision;
  const Eigen::VectorXd shift =
      user_precision * user.mean() - base_precision * base.mean + prior_precision * prior.mean;
  Eigen::LDLT<Eigen::MatrixXd> solver(precision);
  return Posterior(solver.solve(shift),
                   solver.solve(Eigen::MatrixXd::Identity(precision.rows(), precision.cols())));
}

Population FitPopulation(std::span<const Posterior> users, const Population& base, int iterations,
                         double ridge) {
  if (users.empty()) return base;
  const int d = users[0].dimension();
  Population estimate = base;
  estimate.users = users.size();
  for (int it = 0; it < iterations; ++it) {
    Eigen::VectorXd mean = Eigen::VectorXd::Zero(d);
    Eigen::MatrixXd second = Eigen::MatrixXd::Zero(d, d);
    for (const Posterior& user : users) {
      const Posterior under = Reprior(user, base, estimate);
      mean += under.mean();
      second += under.Covariance() + under.mean() * under.mean().transpose();
    }
    const double n = static_cast<double>(users.size());
    mean /= n;
    estimate.mean = mean;
    estimate.cov = second / n - mean * mean.transpose();
    estimate.cov = 0.5 * (estimate.cov + estimate.cov.transpose());
    estimate.cov.diagonal().array() += ridge;
  }
  return estimate;
}

double LaplaceLogEvidence(const Posterior& posterior, std::span<const Eigen::VectorXd> diffs,
                          const Population& prior) {
  double log_likelihood = 0;
  for (const Eigen::VectorXd& diff : diffs) {
    const double m = posterior.mean().dot(diff);
    log_likelihood += m >= 0 ? -std::log1p(std::exp(-m)) : m - std::log1p(std::exp(m));
  }
  const Eigen::VectorXd offset = posterior.mean() - prior.mean;
  if (posterior.covariance_is_diagonal()) {
    const Eigen::VectorXd prior_var = prior.cov.diagonal();
    return log_likelihood - 0.5 * offset.cwiseAbs2().cwiseQuotient(prior_var).sum() +
           0.5 * (posterior.diagonal_covariance().array().log().sum() -
                  prior_var.array().log().sum());
  }
  Eigen::LDLT<Eigen::MatrixXd> prior_solver(prior.cov);
  Eigen::LDLT<Eigen::MatrixXd> posterior_solver(posterior.full_covariance());
  const double log_det_prior = prior_solver.vectorD().array().log().sum();
  const double log_det_posterior = posterior_solver.vectorD().array().log().sum();
  return log_likelihood - 0.5 * offset.dot(prior_solver.solve(offset)) +
         0.5 * (log_det_posterior - log_det_prior);
}

}  // namespace tailor::model
