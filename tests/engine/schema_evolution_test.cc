// Schema evolution (EngineOptions::evolve_schema, engine/schema_history.h): a data directory
// with 10 features and established users gets an 11th feature that matters to half of the
// simulated users. The moment the engine restarts under the new schema, personalization on the
// 10 holds (held-out accuracy within 0.005 of before; in fact the same rankings), and as pairs
// carrying the 11th arrive it is learned: better than before it, and better than starting
// over without the history. Removing a feature breaks nothing and loses no history; renames and
// changes of normalisation keep each recorded value read under the version it was recorded in;
// a rebuild from history gives the online state. Fixed seeds; tolerances at the assertions.
#include "model/schema_evolution.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/preference_engine.h"
#include "engine/user_state.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tailor::engine {
namespace {

constexpr int kUsers = 200;
constexpr int kHistoryPairs = 40;
constexpr int kNewPairs = 30;
constexpr int kTestPairs = 60;

// f0..f{n-1}, z-scored already except where `sd` says otherwise; optional extra CSV columns.
model::FeatureSchema Schema(int n, double sd0 = 1, const char* rename3 = nullptr) {
  std::string csv = rename3 != nullptr ? "name,mean,sd,renamed_from\n" : "name,mean,sd\n";
  for (int i = 0; i < n; ++i) {
    const std::string name = (i == 3 && rename3 != nullptr) ? rename3 : absl::StrCat("f", i);
    absl::StrAppend(&csv, name, ",0,", i == 0 ? sd0 : 1.0);
    if (rename3 != nullptr) absl::StrAppend(&csv, ",", i == 3 ? "f3" : "");
    absl::StrAppend(&csv, "\n");
  }
  return *model::FeatureSchema::FromCsv(csv);
}

struct User {
  std::string id;
  Eigen::VectorXd w;  // 11 true weights; w[10] != 0 for half of the users
};

std::vector<float> Features(int n, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = normal(rng);
  return x;
}

double Utility(const User& u, const std::vector<float>& x) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += u.w[static_cast<Eigen::Index>(i)] * x[i];
  return s;
}

class SchemaEvolutionTest : public ::testing::Test {
 protected:
  SchemaEvolutionTest() {
    options_.path = dir_.Sub("db");
    options_.min_free_bytes = 0;
    std::mt19937_64 rng(20261125);
    std::normal_distribution<double> normal(0, 1);
    for (int u = 0; u < kUsers; ++u) {
      User user{absl::StrCat("user-", u), Eigen::VectorXd(11)};
      for (int f = 0; f < 10; ++f) user.w[f] = (f < 3 ? 1.0 : 0.0) + normal(rng);
      user.w[10] = u % 2 == 0 ? (normal(rng) > 0 ? 2.5 : -2.5) : 0.0;
      users_.push_back(user);
    }
  }

  std::unique_ptr<PreferenceEngine> Open(model::FeatureSchema schema, bool evolve = true) {
    store_.reset();
    store_ = *storage::FeedbackStore::Open(options_);
    EngineOptions options;
    options.refresh_period = absl::ZeroDuration();
    options.evolve_schema = evolve;
    absl::StatusOr<std::unique_ptr<PreferenceEngine>> engine =
        PreferenceEngine::Open(std::move(schema), *store_, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  // `pairs` pairs of `n` features for each user, answered by the user's true weights (on the
  // features that exist), event ids from `first`.
  static void Feed(PreferenceEngine& engine, const std::vector<User>& users, int n, int pairs,
                   int first, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (const User& user : users) {
      for (int i = 0; i < pairs; ++i) {
        std::vector<float> a = Features(n, rng), b = Features(n, rng);
        if (Utility(user, a) < Utility(user, b)) std::swap(a, b);
        FeedbackInput input{absl::StrCat("e", first + i), user.id, "", {"a", a}, {"b", b}, 0};
        ASSERT_TRUE(engine.RecordFeedback(input).ok());
      }
    }
  }

  // Held-out pairwise accuracy over `users` on pairs of `n` features; with `pad`, 10-feature
  // pairs are sent with an 11th value of 0 (its mean: says nothing).
  static double Accuracy(PreferenceEngine& engine, const std::vector<User>& users, int n,
                         bool pad = false) {
    std::mt19937_64 rng(777);
    int right = 0, total = 0;
    for (const User& user : users) {
      for (int i = 0; i < kTestPairs; ++i) {
        std::vector<float> a = Features(n, rng), b = Features(n, rng);
        const bool a_better = Utility(user, a) > Utility(user, b);
        if (pad) {
          a.push_back(0);
          b.push_back(0);
        }
        const CandidateInput candidates[] = {{"a", a}, {"b", b}};
        absl::StatusOr<RankResult> ranked = engine.Rank(user.id, candidates, false);
        EXPECT_TRUE(ranked.ok()) << ranked.status();
        right += (ranked->ranked[0].index == 0) == a_better;
        ++total;
      }
    }
    return static_cast<double>(right) / total;
  }

  std::vector<User> Half(int parity) const {
    std::vector<User> out;
    for (size_t u = 0; u < users_.size(); ++u) {
      if (static_cast<int>(u % 2) == parity) out.push_back(users_[u]);
    }
    return out;
  }

  testing::TempDir dir_;
  storage::StoreOptions options_;
  std::unique_ptr<storage::FeedbackStore> store_;
  std::vector<User> users_;
};

TEST_F(SchemaEvolutionTest, AddingAFeatureKeepsPersonalizationAndLearnsTheNewOne) {
  double before = 0;
  {
    std::unique_ptr<PreferenceEngine> engine = Open(Schema(10));
    Feed(*engine, users_, 10, kHistoryPairs, 0, 1);
    engine->RefreshKnowledge();
    before = Accuracy(*engine, users_, 10);
  }
  // Without the flag a changed schema is refused, and nothing is written.
  store_.reset();
  store_ = *storage::FeedbackStore::Open(options_);
  absl::StatusOr<std::unique_ptr<PreferenceEngine>> refused =
      PreferenceEngine::Open(Schema(11), *store_, EngineOptions{});
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("--evolve_schema"), std::string::npos);
  EXPECT_EQ(store_->SchemaVersions()->size(), 1u);

  std::unique_ptr<PreferenceEngine> engine = Open(Schema(11));
  EXPECT_EQ(engine->schema_history().current_version(), 2u);
  EXPECT_EQ(engine->schema_history().change(), "schema version 2: added f10");
  EXPECT_EQ(engine->Stats().rebuilt_states, static_cast<uint64_t>(kUsers));
  const double at_restart = Accuracy(*engine, users_, 10, /*pad=*/true);
  std::printf("10 features: %.4f; right after adding the 11th: %.4f\n", before, at_restart);
  EXPECT_NEAR(at_restart, before, 0.005);

  // The 11th is learned from pairs that carry it, by the users it matters to.
  const std::vector<User> matters = Half(0);
  const double without = Accuracy(*engine, matters, 11);
  Feed(*engine, users_, 11, kNewPairs, kHistoryPairs, 2);
  engine->RefreshKnowledge();
  const double learned = Accuracy(*engine, matters, 11);
  int signs = 0;
  for (const User& user : matters) {
    signs += (engine->GetUser(user.id)->weight_mean[10] > 0) == (user.w[10] > 0);
  }
  // Starting over (a new data directory, the history thrown away) with the same new pairs.
  testing::TempDir fresh_dir;
  storage::StoreOptions fresh_options = options_;
  fresh_options.path = fresh_dir.Sub("db");
  std::unique_ptr<storage::FeedbackStore> fresh_store =
      *storage::FeedbackStore::Open(fresh_options);
  EngineOptions fresh_engine_options;
  fresh_engine_options.refresh_period = absl::ZeroDuration();
  std::unique_ptr<PreferenceEngine> fresh =
      *PreferenceEngine::Open(Schema(11), *fresh_store, fresh_engine_options);
  Feed(*fresh, users_, 11, kNewPairs, kHistoryPairs, 2);
  fresh->RefreshKnowledge();
  const double started_over = Accuracy(*fresh, matters, 11);
  std::printf(
      "users the 11th matters to, 11-feature pairs: before its pairs %.4f, after %d of them "
      "%.4f (sign of w[10] right for %d/%zu); starting over with those pairs %.4f\n",
      without, kNewPairs, learned, signs, matters.size(), started_over);
  EXPECT_GT(learned, without + 0.05);
  EXPECT_GE(signs, static_cast<int>(0.9 * static_cast<double>(matters.size())));
  EXPECT_GT(learned, started_over + 0.01);
  // Events keep the version they were recorded under.
  absl::StatusOr<UserExport> exported = engine->ExportUser("user-0");
  ASSERT_TRUE(exported.ok());
  ASSERT_EQ(exported->history.size(), static_cast<size_t>(kHistoryPairs + kNewPairs));
  EXPECT_EQ(exported->history.front().chosen_features_size(), 10);
  EXPECT_EQ(std::max<uint32_t>(1, exported->history.front().schema_version()), 1u);
  EXPECT_EQ(exported->history.back().chosen_features_size(), 11);
  EXPECT_EQ(exported->history.back().schema_version(), 2u);
  // Candidates must carry the new schema's features.
  const std::vector<float> ten(10, 0.5f), eleven(11, 0.5f);
  const CandidateInput old_shape[] = {{"a", ten}, {"b", ten}};
  EXPECT_EQ(engine->Rank("user-0", old_shape, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SchemaEvolutionTest, ARebuildGivesTheOnlineStateAcrossVersions) {
  {
    std::unique_ptr<PreferenceEngine> engine = Open(Schema(10));
    Feed(*engine, {users_[0], users_[2]}, 10, 20, 0, 1);
  }
  storage::records::UserState online;
  {
    std::unique_ptr<PreferenceEngine> engine = Open(Schema(11));
    Feed(*engine, {users_[0], users_[2]}, 11, 20, 20, 2);
    online = *store_->ReadState("user-0").value();
    EXPECT_EQ(online.schema_version(), 2u);
    // Mark user-0's state as learned under version 1: the next start rebuilds it.
    storage::records::UserState outdated = online;
    outdated.set_schema_version(1);
    storage::UserCommit commit;
    commit.user_id = "user-0";
    commit.state = outdated;
    ASSERT_TRUE(store_->Commit(commit).ok());
  }
  std::unique_ptr<PreferenceEngine> engine = Open(Schema(11));
  EXPECT_EQ(engine->Stats().rebuilt_states, 1u);
  const storage::records::UserState rebuilt = *store_->ReadState("user-0").value();
  ASSERT_EQ(rebuilt.mean_size(), 11);
  // Same pairs in the same order: the same posterior up to the float rounding of the
  // in-memory form between pairs (tolerance 1e-5, as for every rebuild).
  for (int i = 0; i < 11; ++i) EXPECT_NEAR(rebuilt.mean(i), online.mean(i), 1e-5) << i;
  ASSERT_EQ(rebuilt.covariance_size(), online.covariance_size());
  for (int i = 0; i < online.covariance_size(); ++i) {
    EXPECT_NEAR(rebuilt.covariance(i), online.covariance(i), 1e-5) << i;
  }
}

TEST_F(SchemaEvolutionTest, RemovingAFeatureBreaksNothingAndKeepsEveryEvent) {
  {
    std::unique_ptr<PreferenceEngine> engine = Open(Schema(11));
    Feed(*engine, users_, 11, kHistoryPairs, 0, 1);
  }
  std::unique_ptr<PreferenceEngine> engine = Open(Schema(10));  // f10 retired
  EXPECT_EQ(engine->schema_history().change(), "schema version 2: removed f10");
  engine->RefreshKnowledge();
  EXPECT_EQ(engine->Stats().users, static_cast<uint64_t>(kUsers));
  EXPECT_EQ(engine->Stats().feedback_events, static_cast<uint64_t>(kUsers * kHistoryPairs));
  // Users for whom f10 never mattered are served as well as ever on the rest.
  const double rest = Accuracy(*engine, Half(1), 10);
  std::printf("after removing f10: accuracy of the users it did not matter to %.4f\n", rest);
  EXPECT_GT(rest, 0.8);
  Feed(*engine, {users_[1]}, 10, 5, kHistoryPairs, 3);
  absl::StatusOr<UserExport> exported = engine->ExportUser(users_[1].id);
  ASSERT_TRUE(exported.ok());
  EXPECT_EQ(exported->history.size(), static_cast<size_t>(kHistoryPairs + 5));
  EXPECT_EQ(exported->history.front().chosen_features_size(), 11);  // as recorded
  EXPECT_EQ(exported->profile.weight_mean.size(), 10);
  // And bringing it back restores its id: its old pairs count again.
  engine.reset();
  engine = Open(Schema(11));
  EXPECT_EQ(engine->schema_history().current_version(), 3u);
  EXPECT_EQ(engine->schema_history().current().ids, engine->schema_history().versions()[0].ids);
}

TEST_F(SchemaEvolutionTest, RenamesAndNewNormalisationsReadEachValueUnderItsOwnVersion) {
  {
    std::unique_ptr<PreferenceEngine> engine = Open(Schema(10));
    Feed(*engine, users_, 10, kHistoryPairs, 0, 1);
  }
  // What user-0 is served on pairs given as z-scores, before the change.
  std::mt19937_64 rng(5);
  std::vector<std::vector<float>> z;
  for (int c = 0; c < 6; ++c) z.push_back(Features(10, rng));
  const auto scores = [&](PreferenceEngine& engine, double sd0) {
    std::vector<std::vector<float>> raw = z;
    for (std::vector<float>& x : raw) x[0] = static_cast<float>(x[0] * sd0);
    std::vector<CandidateInput> candidates;
    for (size_t c = 0; c < raw.size(); ++c) candidates.push_back({absl::StrCat(c), raw[c]});
    std::vector<double> out(raw.size());
    absl::StatusOr<RankResult> ranked = engine.Rank("user-0", candidates, false);
    EXPECT_TRUE(ranked.ok()) << ranked.status();
    if (!ranked.ok()) return out;
    for (const RankedCandidate& r : ranked->ranked) out[static_cast<size_t>(r.index)] = r.score;
    return out;
  };
  std::vector<double> before;
  {
    std::unique_ptr<PreferenceEngine> engine = Open(Schema(10));
    before = scores(*engine, 1);
  }
  // f3 is renamed g3, and f0's reward model now reports on a 4x wider scale (sd 4).
  std::unique_ptr<PreferenceEngine> engine = Open(Schema(10, 4, "g3"));
  EXPECT_EQ(engine->schema_history().change(),
            "schema version 2: renamed f3 to g3; renormalised f0");
  EXPECT_EQ(engine->schema_history().current().ids, engine->schema_history().versions()[0].ids);
  // Old events were z-scored with sd 1 and are still; a new candidate 4x wider on f0 is the
  // same z-score, so it is scored as before.
  const std::vector<double> after = scores(*engine, 4);
  for (size_t c = 0; c < before.size(); ++c) EXPECT_NEAR(after[c], before[c], 1e-5) << c;
  // A renamed_from that names nothing is refused.
  engine.reset();
  store_.reset();
  store_ = *storage::FeedbackStore::Open(options_);
  EngineOptions options;
  options.evolve_schema = true;
  model::FeatureSchema bad =
      *model::FeatureSchema::FromCsv("name,mean,sd,renamed_from\nh,0,1,nonexistent\nf1,0,1,\n");
  absl::StatusOr<std::unique_ptr<PreferenceEngine>> refused =
      PreferenceEngine::Open(bad, *store_, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("renamed_from nonexistent"), std::string::npos);
  EXPECT_EQ(store_->SchemaVersions()->size(), 2u);
}

}  // namespace
}  // namespace tailor::engine
