// Population: the prior new users start from — the mean and spread of established users'
// *true* preferences, fitted empirical-Bayes style so that each user's estimation noise is
// not mistaken for disagreement between users.
#ifndef TAILOR_MODEL_POPULATION_H_
#define TAILOR_MODEL_POPULATION_H_

#include <Eigen/Core>
#include <span>

#include "model/posterior.h"

namespace tailor::model {

struct Population {
  Eigen::VectorXd mean;
  Eigen::MatrixXd cov;
  uint64_t users = 0;  // established users it was fitted on (0 = the base prior)
};

// What a user's weights are believed to be before any population exists: N(0, var * I) in
// z-scored feature space.
Population BasePrior(int dimension, double variance);

// A prior in information form: what re-prioring and evidence need of it, computed once per
// prior (per refresh) instead of once per user and call, since inverting is the costly part.
struct PriorInformation {
  // Full form, for posteriors up to kMaxFullCovarianceDimension (empty above it).
  Eigen::MatrixXd precision;  // cov^-1
  Eigen::VectorXd shift;      // cov^-1 mean
  // Diagonal form, for diagonal posteriors: the same per coordinate of diag(cov).
  Eigen::VectorXd diagonal_precision;
  Eigen::VectorXd diagonal_shift;
  double log_determinant = 0;  // log |cov| (of diag(cov) in the diagonal form)
};
PriorInformation InformationOf(const Population& prior);

// Re-expresses a posterior that was learned under `base` as if it had been learned under
// `prior` (Gaussian likelihood approximation): precision = P_user - P_base + P_prior.
Posterior Reprior(const Posterior& user, const PriorInformation& base,
                  const PriorInformation& prior);
Posterior Reprior(const Posterior& user, const Population& base, const Population& prior);

// Fits the population prior to established users' posteriors (each learned under `base`) by
// EM for the hierarchical Gaussian model: every E-step re-priors the users under the current
// estimate; the M-step takes mean(mu_j) and mean(Sigma_j + (mu_j - mean)(mu_j - mean)^T) —
// the spread of posterior means *plus* their remaining uncertainty, which is the spread of
// the true preferences, not of their noisy estimates. `ridge` keeps it positive definite.
// A conjugate hyperprior worth `pseudo_users` users drawn from `base` keeps a prior fitted on a
// handful of users from being trusted as if it were the whole population.
Population FitPopulation(std::span<const Posterior> users, const Population& base,
                         int iterations = 5, double ridge = 1e-3, double pseudo_users = 8);

// The population of several groups' users together, each group summarised by its fitted
// prior and its `users` (the law of total covariance): mean = sum_k n_k m_k / N and
// cov = sum_k n_k (C_k + (m_k - mean)(m_k - mean)^T) / N. Cluster mode pools the shards' fits
// this way, so a shard's prior is fitted from every shard's users, not 1/N of them. Groups
// with no users are ignored; with none at all, the first group is returned.
Population PoolPopulations(std::span<const Population> groups);

// Laplace approximation of log p(pairs | own Gaussian model with prior `prior`), given the
// posterior under that prior: sum_i log sigmoid(mu . diff_i) - (mu - m0)' S0^-1 (mu - m0) / 2
// + (log|Sigma| - log|S0|) / 2. Compared with the neighbour mixture's evidence, it decides how
// much a user's own posterior is trusted over their neighbours.
double LaplaceLogEvidence(const Posterior& posterior, std::span<const Eigen::VectorXd> diffs,
                          const Population& prior, const PriorInformation& information);
double LaplaceLogEvidence(const Posterior& posterior, std::span<const Eigen::VectorXd> diffs,
                          const Population& prior);

}  // namespace tailor::model

#endif  // TAILOR_MODEL_POPULATION_H_
