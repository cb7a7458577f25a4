// User state is derivable from history: an engine opened on a store whose state records are
// missing, unreadable or of another format rebuilds them from the history, and serves the
// same user as before. With forgetting (preference drift), the rebuilt state is the online
// one, and states learned with another half-life are rebuilt.
#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/preference_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tailor::engine {
namespace {

TEST(EngineRebuildTest, MissingOrUnreadableStatesAreRebuiltFromHistory) {
  testing::TempDir dir;
  storage::StoreOptions options;
  options.path = dir.Sub("db");
  const model::FeatureSchema schema = *model::FeatureSchema::FromCsv(model::DefaultSchemaCsv());
  EngineOptions engine_options;
  engine_options.refresh_period = absl::ZeroDuration();
  std::vector<storage::records::UserState> states_before;
  {
    auto store = storage::FeedbackStore::Open(options);
    ASSERT_TRUE(store.ok());
    auto engine = PreferenceEngine::Open(schema, **store, engine_options);
    ASSERT_TRUE(engine.ok());
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0, 3);
    for (int u = 0; u < 3; ++u) {
      for (int i = 0; i < 20; ++i) {
        std::vector<float> a(10), b(10);
        for (int j = 0; j < 10; ++j) {
          a[j] = normal(rng);
          b[j] = normal(rng);
        }
        FeedbackInput event{
            absl::StrCat(u, "-", i), absl::StrCat("user-", u), "", {"a", a}, {"b", b}, 0};
        ASSERT_TRUE((*engine)->RecordFeedback(event).ok());
      }
      states_before.push_back(*(*store)->ReadState(absl::StrCat("user-", u)).value());
    }
    // Damage: user-0's state is deleted, user-1's is garbage, user-2's has another format.
    storage::UserCommit garbage;
    garbage.user_id = "user-1";
    garbage.state.set_format_version(1);
    garbage.state.add_mean(1.0);  // wrong dimension
    ASSERT_TRUE((*store)->Commit(garbage).ok());
    storage::UserCommit future;
    future.user_id = "user-2";
    future.state = *(*store)->ReadState("user-2").value();
    future.state.set_format_version(99);
    ASSERT_TRUE((*store)->Commit(future).ok());
  }
  {
    // user-0: remove the state record only, keeping its history.
    auto store = storage::FeedbackStore::Open(options);
    ASSERT_TRUE(store.ok());
    auto exported = (*store)->ExportUser("user-0");
    ASSERT_TRUE(exported.ok());
    ASSERT_TRUE((*store)->DeleteUser("user-0").ok());
    storage::UserCommit history_only;
    history_only.user_id = "user-0";
    for (const auto& record : exported->history) {
      storage::AppliedEvent& event = history_only.events.emplace_back();
      event.record = record;
      event.idempotency.set_sequence(record.sequence());
    }
    ASSERT_TRUE((*store)->Commit(history_only).ok());  // an empty state...
    ASSERT_TRUE((*store)->DeleteUser("nobody").ok());
  }
  auto store = storage::FeedbackStore::Open(options);
  ASSERT_TRUE(store.ok());
  auto engine = PreferenceEngine::Open(schema, **store, engine_options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->Stats().users, 3u);
  EXPECT_EQ((*engine)->Stats().feedback_events, 60u);
  EXPECT_GE((*engine)->Stats().rebuilt_states, 3u);
  for (int u = 0; u < 3; ++u) {
    const std::string user = absl::StrCat("user-", u);
    auto state = (*store)->ReadState(user);
    ASSERT_TRUE(state.ok() && state->has_value()) << user;
    EXPECT_EQ((*state)->feedback_count(), 20u) << user;
    EXPECT_EQ((*state)->format_version(), 1u) << user;
    // Replaying the same pairs in the same order gives the same posterior, up to the float
    // rounding of the in-memory form between pairs (~1e-7 relative; tolerance 1e-5).
    const auto& before = states_before[static_cast<size_t>(u)];
    ASSERT_EQ((*state)->mean_size(), before.mean_size());
    for (int i = 0; i < before.mean_size(); ++i) {
      EXPECT_NEAR((*state)->mean(i), before.mean(i), 1e-5) << user << " w[" << i << "]";
    }
    for (int i = 0; i < before.covariance_size(); ++i) {
      EXPECT_NEAR((*state)->covariance(i), before.covariance(i), 1e-5) << user;
    }
    EXPECT_EQ((*engine)->GetUser(user)->feedback_count, 20u);
  }
}

TEST(EngineRebuildTest, ForgettingRebuildsToTheOnlineStateAndAChangedHalfLifeRebuilds) {
  testing::TempDir dir;
  storage::StoreOptions options;
  options.path = dir.Sub("db");
  const model::FeatureSchema schema = *model::FeatureSchema::FromCsv(model::DefaultSchemaCsv());
  auto open = [&](storage::FeedbackStore& store, double half_life) {
    EngineOptions engine_options;
    engine_options.refresh_period = absl::ZeroDuration();
    engine_options.forget_half_life_pairs = half_life;
    auto engine = PreferenceEngine::Open(schema, store, engine_options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return *std::move(engine);
  };
  auto store = *storage::FeedbackStore::Open(options);
  storage::records::UserState online;
  {
    auto engine = open(*store, 8);
    std::mt19937 rng(9);
    std::normal_distribution<float> normal(0, 3);
    for (int i = 0; i < 30; ++i) {
      std::vector<float> a(10), b(10);
      for (int j = 0; j < 10; ++j) {
        a[j] = normal(rng);
        b[j] = normal(rng);
      }
      ASSERT_TRUE(
          engine->RecordFeedback({absl::StrCat("e", i), "ann", "", {"a", a}, {"b", b}, 0}).ok());
    }
    online = *store->ReadState("ann").value();
    EXPECT_EQ(online.forget_half_life_pairs(), 8);
    // 30 pairs with a half-life of 8: (1 - 2^(-30/8)) / (1 - 2^(-1/8)) pairs still count.
    const double keep = std::exp2(-1.0 / 8);
    EXPECT_NEAR(engine->GetUser("ann")->effective_pairs, (1 - std::pow(keep, 30)) / (1 - keep),
                1e-9);
    EXPECT_LT(engine->GetUser("ann")->effective_pairs, 12.0);
  }
  {
    auto engine = open(*store, 8);  // the same half-life: loaded as stored
    EXPECT_EQ(engine->Stats().rebuilt_states, 0u);
  }
  storage::records::UserState remembering;
  {
    auto engine = open(*store, 0);  // no forgetting: rebuilt without it
    EXPECT_EQ(engine->Stats().rebuilt_states, 1u);
    remembering = *store->ReadState("ann").value();
    EXPECT_EQ(remembering.forget_half_life_pairs(), 0);
    EXPECT_EQ(engine->GetUser("ann")->effective_pairs, 30.0);
  }
  auto engine = open(*store, 8);  // and back: rebuilt to exactly the online state
  EXPECT_EQ(engine->Stats().rebuilt_states, 1u);
  const storage::records::UserState rebuilt = *store->ReadState("ann").value();
  ASSERT_EQ(rebuilt.mean_size(), online.mean_size());
  double apart = 0, apart_remembering = 0;
  for (int i = 0; i < online.mean_size(); ++i) {
    apart = std::max(apart, std::abs(rebuilt.mean(i) - online.mean(i)));
    apart_remembering = std::max(apart_remembering, std::abs(remembering.mean(i) - online.mean(i)));
  }
  for (int i = 0; i < online.covariance_size(); ++i) {
    apart = std::max(apart, std::abs(rebuilt.covariance(i) - online.covariance(i)));
  }
  // The same up to the float rounding of the in-memory form between pairs (as above).
  EXPECT_LT(apart, 1e-5);
  EXPECT_GT(apart_remembering, 1e-2);  // forgetting did change the state
}

}  // namespace
}  // namespace tailor::engine
