// Trust fitting (model/trust.h) and the live safety net (engine/live_guard.h) on simulated
// users whose truth is known: users who choose by the model get personalization, users whose
// choices the features do not explain get the population. Fixed seeds; tolerances in comments.
#include "model/trust.h"

#include <random>
#include <vector>

#include "engine/live_guard.h"
#include "gtest/gtest.h"
#include "model/population.h"
#include "model/posterior.h"

namespace tailor::model {
namespace {

constexpr int kD = 4;

Eigen::VectorXd Normal(std::mt19937_64& rng, double sd = 1.0) {
  std::normal_distribution<double> normal(0, sd);
  Eigen::VectorXd v(kD);
  for (int i = 0; i < kD; ++i) v[i] = normal(rng);
  return v;
}

// A pair difference oriented as the user chose: by Bradley–Terry on `w` when `by_model`,
// otherwise by a fair coin (a person whose choices the features do not explain).
Eigen::VectorXd Choice(const Eigen::VectorXd& w, bool by_model, std::mt19937_64& rng) {
  const Eigen::VectorXd x = Normal(rng);
  std::uniform_real_distribution<double> uniform;
  const double p = by_model ? Sigmoid(w.dot(x)) : 0.5;
  return uniform(rng) < p ? x : Eigen::VectorXd(-x);
}

struct World {
  std::vector<CalibrationUser> users;
  Population population;
  ReferenceSet reference;
};

// 300 calibration users (24 pairs to learn from, 24 held out) and 600 reference users, all
// with weights N(mean, I).
World MakeWorld(bool by_model, uint64_t seed) {
  std::mt19937_64 rng(seed);
  World world;
  Eigen::VectorXd mean(kD);
  mean << 1.0, -0.5, 0.25, 0.0;
  world.population.mean = mean;
  world.population.cov = Eigen::MatrixXd::Identity(kD, kD);
  world.reference.weights.resize(600, kD);
  for (int j = 0; j < 600; ++j) world.reference.weights.row(j) = (mean + Normal(rng)).transpose();
  for (int u = 0; u < 300; ++u) {
    const Eigen::VectorXd w = mean + Normal(rng);
    CalibrationUser user;
    for (int i = 0; i < 24; ++i) user.feedback.push_back(Choice(w, by_model, rng));
    for (int i = 0; i < 24; ++i) user.held_out.push_back(Choice(w, by_model, rng));
    world.users.push_back(std::move(user));
  }
  return world;
}

TEST(TrustTest, UsersWhoChooseByTheModelArePersonalized) {
  const World world = MakeWorld(/*by_model=*/true, 11);
  const Trust trust =
      FitTrust(world.users, world.population, BasePrior(kD, 1.0), world.reference, true);
  ASSERT_EQ(trust.calibration_users, 300);
  ASSERT_GE(trust.levels.size(), 5u);  // 0, 1, 2, 4, 8, 16 pairs: every level has 300 users
  // The true spread is the population's: no strong shrinkage is called for (grid step 0.5).
  EXPECT_GE(trust.prior_scale, 0.25);
  // From 8 pairs on, most of the served log-odds is the user's own evidence (own + blend
  // outweigh the population term by 3x or more).
  for (const ExperienceLevel& level : trust.levels) {
    if (level.min_pairs < 8) continue;
    EXPECT_GT(level.fitted.own + level.fitted.blend, 3 * level.fitted.population)
        << "level " << level.min_pairs;
  }
}

TEST(TrustTest, UsersWhoseChoicesTheFeaturesDoNotExplainGetThePopulation) {
  const World world = MakeWorld(/*by_model=*/false, 12);
  const Trust trust =
      FitTrust(world.users, world.population, BasePrior(kD, 1.0), world.reference, true);
  ASSERT_GT(trust.calibration_users, 0);
  // Coin-flip choices: every source's log-odds are noise, so the fitted weights stay near 0
  // (their standard error here is about 0.05; 0.25 leaves room for the non-negative fit).
  for (const ExperienceLevel& level : trust.levels) {
    EXPECT_LT(level.fitted.own + level.fitted.blend, 0.25) << "level " << level.min_pairs;
  }
}

TEST(TrustTest, TooFewUsersKeepTheDefaults) {
  World world = MakeWorld(true, 13);
  world.users.resize(10);
  const Trust trust =
      FitTrust(world.users, world.population, BasePrior(kD, 1.0), world.reference, true);
  EXPECT_EQ(trust.calibration_users, 0);
  EXPECT_TRUE(trust.levels.empty());
  EXPECT_EQ(trust.LevelFor(5), -1);
}

TEST(TrustTest, LevelsCoverEveryPairCount) {
  Trust trust;
  for (int at : {0, 1, 2, 4}) trust.levels.push_back(ExperienceLevel{at, {}, 1, 1, 30});
  EXPECT_EQ(trust.LevelFor(0), 0);
  EXPECT_EQ(trust.LevelFor(1), 1);
  EXPECT_EQ(trust.LevelFor(3), 2);
  EXPECT_EQ(trust.LevelFor(1000), 3);  // beyond the last fitted level: the last level
}

TEST(LiveGuardTest, TheCombinationThatPredictsBestTakesOverAndResetForgets) {
  engine::LiveGuard guard(3, 1000, {0.9, 0.05, 0.05});
  EXPECT_NEAR(guard.SharesAt(1)[engine::LiveGuard::kFitted], 0.9, 1e-12);
  // The population predicts 0.1 nats better per event than the fitted combination: after 100
  // events its cumulative advantage is ~10 nats, so its share is above 0.99.
  for (int i = 0; i < 100; ++i) guard.Observe(1, {0.70, 0.60, 0.72});
  const engine::LiveGuard::Shares shares = guard.SharesAt(1);
  EXPECT_GT(shares[engine::LiveGuard::kPopulation], 0.99);
  EXPECT_NEAR(shares[0] + shares[1] + shares[2], 1.0, 1e-12);
  // Other levels are untouched.
  EXPECT_NEAR(guard.SharesAt(2)[engine::LiveGuard::kFitted], 0.9, 1e-12);
  guard.Reset();
  EXPECT_NEAR(guard.SharesAt(1)[engine::LiveGuard::kFitted], 0.9, 1e-12);
}

}  // namespace
}  // namespace tailor::model
