// A cold user's neighbour blend is carried forward from event to event (the user's neighbour
// track, model/neighbour_track.h) instead of being recomputed from all their pairs. Carried or
// recomputed, the answers must be the same: an engine with the belief cache and one without it
// (every call recomputes from the user's pairs) are fed the same events and must give
// identical predictions and rankings after every event, through the exact scan and through
// the HNSW index. Also: the cache stays within its byte budget.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/preference_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_inputs.h"
#include "tests/testing/temp_dir.h"

namespace tailor::engine {
namespace {

constexpr int kD = 5;

model::FeatureSchema Schema() { return testing::IdentitySchema(kD); }
std::vector<float> RandomFeatures(std::mt19937_64& rng) { return testing::RandomFeatures(kD, rng); }

struct Event {
  std::string user;
  std::string id;
  std::vector<float> chosen;
  std::vector<float> rejected;
};

// `users` users with random tastes, `pairs` events each, answered by their taste.
std::vector<Event> Events(const std::string& prefix, int users, int pairs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Event> events;
  for (int u = 0; u < users; ++u) {
    std::vector<float> taste = RandomFeatures(rng);
    for (int i = 0; i < pairs; ++i) {
      Event e{absl::StrCat(prefix, u), absl::StrCat(prefix, u, "/", i), RandomFeatures(rng),
              RandomFeatures(rng)};
      double margin = 0;
      for (int f = 0; f < kD; ++f) margin += taste[f] * (e.chosen[f] - e.rejected[f]);
      if (margin < 0) std::swap(e.chosen, e.rejected);
      events.push_back(std::move(e));
    }
  }
  return events;
}

absl::StatusOr<FeedbackResult> Record(PreferenceEngine& engine, const Event& e) {
  FeedbackInput input;
  input.event_id = e.id;
  input.user_id = e.user;
  input.chosen = {"c", e.chosen};
  input.rejected = {"r", e.rejected};
  return engine.RecordFeedback(input);
}

class CarriedBlendTest : public ::testing::TestWithParam<bool> {
 protected:
  std::unique_ptr<PreferenceEngine> Engine(const std::string& name, bool cache) {
    storage::StoreOptions store_options;
    store_options.path = dir_.Sub(name);
    stores_.push_back(*storage::FeedbackStore::Open(store_options));
    EngineOptions options;
    options.refresh_period = absl::ZeroDuration();
    if (!cache) options.blend_cache_users = 0;
    if (GetParam()) {  // through the index: a small one, so that it samples and searches
      options.exact_scan_max_users = 50;
      options.neighbour_index.near = 24;
      options.neighbour_index.sampled = 64;
    }
    return *PreferenceEngine::Open(Schema(), *stores_.back(), options);
  }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<storage::FeedbackStore>> stores_;
};

TEST_P(CarriedBlendTest, CarriedTrackAnswersAsRecomputedOne) {
  auto cached = Engine("cached", true);
  auto fresh = Engine("fresh", false);
  for (PreferenceEngine* engine : {cached.get(), fresh.get()}) {
    for (const Event& e : Events("est-", 300, 20, 1)) ASSERT_TRUE(Record(*engine, e).ok());
    engine->RefreshKnowledge();
  }
  EXPECT_EQ(cached->Stats().indexed_users, GetParam() ? 300u : 0u);
  std::mt19937_64 rng(9);
  std::vector<std::vector<float>> features;
  for (int c = 0; c < 6; ++c) features.push_back(RandomFeatures(rng));
  std::vector<CandidateInput> candidates;
  for (int c = 0; c < 6; ++c) candidates.push_back({absl::StrCat("x", c), features[c]});
  int events = 0;
  for (const Event& e : Events("cold-", 3, 40, 2)) {
    absl::StatusOr<FeedbackResult> a = Record(*cached, e);
    absl::StatusOr<FeedbackResult> b = Record(*fresh, e);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->predicted_chosen_probability, b->predicted_chosen_probability) << e.id;
    absl::StatusOr<RankResult> ra = cached->Rank(e.user, candidates, false);
    absl::StatusOr<RankResult> rb = fresh->Rank(e.user, candidates, false);
    ASSERT_TRUE(ra.ok() && rb.ok());
    for (size_t i = 0; i < ra->ranked.size(); ++i) {
      EXPECT_EQ(ra->ranked[i].index, rb->ranked[i].index) << e.id;
      EXPECT_EQ(ra->ranked[i].probability_best, rb->ranked[i].probability_best) << e.id;
    }
    ++events;
  }
  EXPECT_EQ(events, 120);
}

INSTANTIATE_TEST_SUITE_P(ExactAndIndexed, CarriedBlendTest, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "Indexed" : "Exact"; });

// A byte budget smaller than one cold user's blend keeps none of them: every call recomputes,
// and answers as an engine with the default budget does.
TEST(BlendCacheBudgetTest, ATinyBudgetChangesNoAnswer) {
  testing::TempDir dir;
  std::vector<std::unique_ptr<storage::FeedbackStore>> stores;
  std::vector<std::unique_ptr<PreferenceEngine>> engines;
  for (size_t budget : {size_t{256} * 100, EngineOptions().blend_cache_bytes}) {
    storage::StoreOptions store_options;
    store_options.path = dir.Sub(absl::StrCat("db", budget));
    stores.push_back(*storage::FeedbackStore::Open(store_options));
    EngineOptions options;
    options.refresh_period = absl::ZeroDuration();
    options.blend_cache_bytes = budget;  // 100 bytes per stripe, or the default
    engines.push_back(*PreferenceEngine::Open(Schema(), *stores.back(), options));
    for (const Event& e : Events("est-", 40, 20, 1)) ASSERT_TRUE(Record(*engines.back(), e).ok());
    engines.back()->RefreshKnowledge();
  }
  for (const Event& e : Events("cold-", 2, 10, 2)) {
    absl::StatusOr<FeedbackResult> tiny = Record(*engines[0], e);
    absl::StatusOr<FeedbackResult> normal = Record(*engines[1], e);
    ASSERT_TRUE(tiny.ok() && normal.ok());
    EXPECT_EQ(tiny->predicted_chosen_probability, normal->predicted_chosen_probability) << e.id;
  }
}

}  // namespace
}  // namespace tailor::engine
