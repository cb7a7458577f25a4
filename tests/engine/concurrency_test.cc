// Many threads ranking, suggesting and recording feedback for overlapping users while the
// population refreshes: every applied event is reflected exactly once, histories stay
// contiguous, and (in the ThreadSanitizer build) no data race is reported. Once with one
// knowledge, once with knowledge per tenant (the users in two tenants).
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/preference_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tailor::engine {
namespace {

constexpr int kD = 10;

// The parameter: knowledge per tenant.
class EngineConcurrencyTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Knowledge, EngineConcurrencyTest, ::testing::Values(false, true),
                         [](const auto& param) { return param.param ? "PerTenant" : "Shared"; });

TEST_P(EngineConcurrencyTest, OverlappingUsersEveryEventAppliedExactlyOnce) {
  testing::TempDir dir;
  storage::StoreOptions store_options;
  store_options.path = dir.Sub("db");
  auto store = storage::FeedbackStore::Open(store_options);
  ASSERT_TRUE(store.ok());
  EngineOptions options;
  options.refresh_period = absl::Milliseconds(5);
  options.established_pairs = 5;
  // Cold users look their neighbours up through the HNSW index, rebuilt at every refresh.
  options.exact_scan_max_users = 2;
  options.neighbour_index.near = 2;
  options.neighbour_index.sampled = 2;
  options.knowledge_by_tenant = GetParam();
  // With knowledge per tenant, users alternate between two tenants (groups of 3).
  const auto user_id = [](int u) { return absl::StrCat(u % 2 == 0 ? "a" : "b", "/user-", u); };
  auto engine = PreferenceEngine::Open(*model::FeatureSchema::FromCsv(model::DefaultSchemaCsv()),
                                       **store, options);
  ASSERT_TRUE(engine.ok());

  constexpr int kWriters = 4;
  constexpr int kEventsPerWriter = 400;
  constexpr int kUsers = 6;
  std::atomic<int> applied{0};
  std::atomic<int> duplicates{0};
  std::atomic<bool> writing{true};

  auto features = [](std::mt19937& rng) {
    std::normal_distribution<float> normal(0, 3);
    std::vector<float> f(kD);
    for (float& v : f) v = normal(rng);
    return f;
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kEventsPerWriter; ++i) {
        // Every event is sent twice: once by its writer and once by the next writer, racing.
        for (int copy = 0; copy < 2; ++copy) {
          const int owner = copy == 0 ? t : (t + kWriters - 1) % kWriters;
          std::mt19937 event_rng(owner * 100000 + i);
          const std::vector<float> chosen = features(event_rng);
          const std::vector<float> rejected = features(event_rng);
          FeedbackInput event;
          event.event_id = absl::StrCat("w", owner, "-", i);
          event.user_id = user_id((owner + i) % kUsers);
          event.chosen = {"a", chosen};
          event.rejected = {"b", rejected};
          auto result = (*engine)->RecordFeedback(event);
          ASSERT_TRUE(result.ok()) << result.status();
          (result->duplicate ? duplicates : applied).fetch_add(1);
        }
      }
    });
  }
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      std::vector<std::vector<float>> rows;
      for (int i = 0; i < 8; ++i) rows.push_back(features(rng));
      std::vector<CandidateInput> candidates;
      for (int i = 0; i < 8; ++i) candidates.push_back({absl::StrCat("c", i), rows[i]});
      while (writing.load()) {
        for (int u = 0; u < kUsers; ++u) {
          auto ranked = (*engine)->Rank(user_id(u), candidates, u % 2 == 0);
          ASSERT_TRUE(ranked.ok());
          ASSERT_EQ(ranked->ranked.size(), 8u);
          ASSERT_TRUE((*engine)->Suggest(user_id(u), candidates).ok());
          (void)(*engine)->GetUser(user_id(u));
        }
      }
    });
  }
  for (int t = 0; t < kWriters; ++t) threads[static_cast<size_t>(t)].join();
  writing = false;
  for (size_t t = kWriters; t < threads.size(); ++t) threads[t].join();

  const int total = kWriters * kEventsPerWriter;
  EXPECT_EQ(applied.load(), total);
  EXPECT_EQ(duplicates.load(), total);
  EXPECT_EQ((*engine)->Stats().feedback_events, static_cast<uint64_t>(total));
  EXPECT_EQ((*engine)->Stats().indexed_users, static_cast<uint64_t>(kUsers));
  uint64_t stored = 0;
  for (int u = 0; u < kUsers; ++u) {
    const std::string user = user_id(u);
    uint64_t expected_sequence = 1;
    ASSERT_TRUE((*store)
                    ->ScanHistory(user,
                                  [&](const storage::records::FeedbackRecord& r) {
                                    EXPECT_EQ(r.sequence(), expected_sequence++);
                                    return true;
                                  })
                    .ok());
    const uint64_t count = expected_sequence - 1;
    stored += count;
    EXPECT_EQ((*engine)->GetUser(user)->feedback_count, count);
  }
  EXPECT_EQ(stored, static_cast<uint64_t>(total));
}

}  // namespace
}  // namespace tailor::engine
