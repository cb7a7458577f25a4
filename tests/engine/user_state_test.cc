// Stored user states are not trusted: only a usable posterior of the right size comes back.
#include "engine/user_state.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tailor::engine {
namespace {

storage::v1::UserState Valid() {
  model::Posterior posterior(Eigen::VectorXd::Constant(2, 0.5), Eigen::MatrixXd::Identity(2, 2));
  return ToState(posterior, 3, 10, 20, /*forget_half_life_pairs=*/0, /*schema_version=*/1);
}

TEST(UserStateTest, RoundTrips) {
  auto back = FromState(Valid(), 2);
  ASSERT_TRUE(back.has_value());
  EXPECT_DOUBLE_EQ(back->mean()[0], 0.5);
}

TEST(UserStateTest, RefusesWhatIsNotAUsablePosterior) {
  auto with = [](auto change) {
    storage::v1::UserState s = Valid();
    change(s);
    return s;
  };
  using State = storage::v1::UserState;
  EXPECT_FALSE(FromState(Valid(), 3).has_value()) << "another dimension";
  EXPECT_FALSE(FromState(with([](State& s) { s.set_format_version(2); }), 2).has_value());
  EXPECT_FALSE(FromState(with([](State& s) { s.set_mean(0, NAN); }), 2).has_value());
  EXPECT_FALSE(FromState(with([](State& s) { s.set_covariance(0, INFINITY); }), 2).has_value());
  // Finite but absurd (found by fuzz_storage_records: learning from it overflowed).
  EXPECT_FALSE(FromState(with([](State& s) { s.set_mean(0, -1.8e307); }), 2).has_value());
  EXPECT_FALSE(FromState(with([](State& s) { s.set_covariance(0, 4.7e170); }), 2).has_value());
  EXPECT_FALSE(FromState(with([](State& s) { s.set_covariance(0, -1); }), 2).has_value())
      << "not positive definite";
  EXPECT_FALSE(FromState(with([](State& s) { s.add_covariance(1); }), 2).has_value());
  EXPECT_FALSE(FromState(with([](State& s) {
                           s.set_covariance_is_diagonal(true);
                           s.clear_covariance();
                           s.add_covariance(1);
                           s.add_covariance(0);
                         }),
                         2)
                   .has_value())
      << "a zero variance";
}

}  // namespace
}  // namespace tailor::engine
