// Trust: how much Tailor trusts each source of knowledge about a user — the population, the
// user's own posterior, and the blend of that posterior with similar users — fitted, not
// assumed: by held-out prediction on established users (empirical Bayes), per experience
// level. Real people choose only partly as Bradley–Terry over the features says; a prior,
// neighbour likelihood or blend that trusts the model at face value makes their rankings worse
// than the population's. Here the data decide how far to move from the population.
#ifndef TAILOR_MODEL_TRUST_H_
#define TAILOR_MODEL_TRUST_H_

#include <Eigen/Core>
#include <cstdint>
#include <span>
#include <vector>

#include "model/belief.h"
#include "model/population.h"

namespace tailor::model {

struct ExperienceLevel {
  int min_pairs = 0;       // users with at least this many pairs (and fewer than the next level's)
  SourceWeights fitted;    // the best combination on held-out users
  double population_only;  // population alone, calibrated (log-odds scale)
  double own_only;         // own posterior alone, calibrated
  int calibration_users = 0;
};

struct Trust {
  // The population prior's covariance is multiplied by this for users' own posteriors.
  double prior_scale = 1;
  // Multiplies each neighbour's log-likelihood of the user's pairs.
  double neighbour_temperature = 1;
  // Prior log-odds of the own posterior against the neighbour mixture in the blend.
  double own_log_prior_odds = 0;
  // Ascending min_pairs, the first at 0. Empty: serve the blend as it is.
  std::vector<ExperienceLevel> levels;
  int calibration_users = 0;  // 0: nothing was fitted (defaults)

  // The level for a user with `pairs` pairs (index into levels), or -1 when there are none.
  int LevelFor(uint64_t pairs) const;
};

// Trust before anything is fitted: the blend served as it is, at these settings.
Trust DefaultTrust(double neighbour_temperature, double own_log_prior_odds);

// One established user held out to fit trust: pair differences (z-scored) in the order given,
// split by prompt into pairs to learn from and pairs to predict.
struct CalibrationUser {
  std::vector<Eigen::VectorXd> feedback;
  std::vector<Eigen::VectorXd> held_out;
  int reference_row = -1;  // their own row in the reference set (left out), or -1
};

struct TrustFitOptions {
  // Preference drift: calibration users' own posteriors forget as the served ones do
  // (Posterior::Forget with this `keep` before each pair; 1 = never).
  double forget_keep = 1.0;
  // Candidate values; the best on held-out log loss is chosen.
  std::vector<double> prior_scales = {1, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01};
  std::vector<double> temperatures = {1, 0.5, 0.25, 0.1, 0.05, 0.02};
  std::vector<double> own_log_prior_odds = {-6, -3, 0, 3};
  // Experience levels start at 0 and at each of these pair counts; users give this many pairs
  // when the level is fitted.
  std::vector<int> level_pairs = {1, 2, 4, 8, 16, 32, 64, 128};
  // A level is fitted only on at least this many users; otherwise it takes the level below's.
  int min_users_per_level = 20;
  // The neighbour mixture is weighed over at most this many reference rows (a seeded sample).
  int max_reference_rows = 2000;
  uint64_t seed = 0x7a11;
};

// Fits nothing (DefaultTrust(1, 0), calibration_users 0) unless min_users_per_level users have
// held-out pairs and at least level_pairs[0] pairs to learn from. Otherwise fits prior scale,
// temperature and prior log-odds (each by held-out log loss, in that order),
// then per level the non-negative combination of the three sources with the least held-out log
// loss — the population alone is one of the candidates, so on these users no level predicts
// worse than it. `population` must not have been fitted on `users`; `base` is the prior every
// stored posterior was learned under. Without neighbours (`reference` empty or `neighbours`
// false) the blend is the own posterior.
Trust FitTrust(std::span<const CalibrationUser> users, const Population& population,
               const Population& base, const ReferenceSet& reference, bool neighbours,
               const TrustFitOptions& options = {});

// Held-out log loss of log-odds `logits` (one per pair, the chosen side first) scaled by `a`.
double MeanLogLoss(const Eigen::VectorXd& logits, double a);

}  // namespace tailor::model

#endif  // TAILOR_MODEL_TRUST_H_
