// Group commit: RecordFeedbackBatch applies a stream's window of events in order and commits
// them in one write. Each event's result must be what RecordFeedback one event at a time gives
// (same predictions, counts and sequences, for several events of one user in one batch too);
// bad input is refused per event without holding back the rest; an event repeated within the
// batch, or already stored, is a duplicate; and what was committed survives a reopen.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/preference_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_inputs.h"
#include "tests/testing/temp_dir.h"

namespace tailor::engine {
namespace {

constexpr int kD = 3;

model::FeatureSchema Schema() { return testing::IdentitySchema(kD); }

struct Owned {  // FeedbackInput points into these
  std::string user, id;
  std::vector<float> chosen, rejected;
};

std::vector<Owned> Events(int users, int pairs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  std::vector<Owned> events;
  for (int i = 0; i < pairs; ++i) {
    for (int u = 0; u < users; ++u) {  // users interleaved, as streams carry them
      Owned e{absl::StrCat("u", u), absl::StrCat("u", u, "/", i), {}, {}};
      for (int f = 0; f < kD; ++f) {
        e.chosen.push_back(normal(rng));
        e.rejected.push_back(normal(rng));
      }
      events.push_back(std::move(e));
    }
  }
  return events;
}

FeedbackInput Input(const Owned& e) {
  FeedbackInput input;
  input.event_id = e.id;
  input.user_id = e.user;
  input.chosen = {"c", e.chosen};
  input.rejected = {"r", e.rejected};
  input.timestamp_micros = 1700000000000000;
  return input;
}

class GroupCommitTest : public ::testing::Test {
 protected:
  std::unique_ptr<PreferenceEngine> Open(const std::string& name) {
    storage::StoreOptions store_options;
    store_options.path = dir_.Sub(name);
    stores_.push_back(*storage::FeedbackStore::Open(store_options));
    EngineOptions options;
    options.refresh_period = absl::ZeroDuration();
    return *PreferenceEngine::Open(Schema(), *stores_.back(), options);
  }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<storage::FeedbackStore>> stores_;
};

TEST_F(GroupCommitTest, BatchAnswersAsOneEventAtATime) {
  auto single = Open("single");
  auto batched = Open("batched");
  const std::vector<Owned> events = Events(5, 24, 1);
  // A few established users first, so cold users borrow from neighbours.
  for (auto* engine : {single.get(), batched.get()}) {
    for (const Owned& e : Events(30, 20, 2)) {
      Owned established = e;
      established.user = "est-" + e.user;
      ASSERT_TRUE(engine->RecordFeedback(Input(established)).ok());
    }
    engine->RefreshKnowledge();
  }
  std::vector<FeedbackResult> expected;
  for (const Owned& e : events) expected.push_back(*single->RecordFeedback(Input(e)));
  size_t at = 0;
  for (size_t size : {1, 7, 32, 3, 50, 27}) {  // 120 events in batches of several sizes
    std::vector<FeedbackInput> batch;
    for (size_t i = 0; i < size; ++i) batch.push_back(Input(events[at + i]));
    const auto results = batched->RecordFeedbackBatch(batch);
    ASSERT_EQ(results.size(), size);
    for (size_t i = 0; i < size; ++i, ++at) {
      ASSERT_TRUE(results[i].ok()) << results[i].status();
      EXPECT_FALSE(results[i]->duplicate);
      EXPECT_EQ(results[i]->user_feedback_count, expected[at].user_feedback_count);
      EXPECT_EQ(results[i]->sequence, expected[at].sequence);
      EXPECT_EQ(results[i]->predicted_chosen_probability, expected[at].predicted_chosen_probability)
          << events[at].id;
    }
  }
  ASSERT_EQ(at, events.size());
  EXPECT_EQ(batched->Stats().feedback_events, single->Stats().feedback_events);
  EXPECT_EQ(batched->Stats().users, single->Stats().users);
  for (int u = 0; u < 5; ++u) {
    const std::string user = absl::StrCat("u", u);
    EXPECT_EQ(batched->GetUser(user)->weight_mean, single->GetUser(user)->weight_mean);
  }
}

TEST_F(GroupCommitTest, BadInputAndDuplicatesAreAnsweredPerEvent) {
  auto engine = Open("db");
  const std::vector<Owned> events = Events(2, 3, 3);
  ASSERT_TRUE(engine->RecordFeedback(Input(events[0])).ok());  // stored before the batch
  Owned identical = events[1];
  identical.id = "identical";
  identical.rejected = identical.chosen;
  Owned short_features = events[1];
  short_features.id = "short";
  short_features.chosen.pop_back();
  const std::vector<FeedbackInput> batch = {
      Input(events[0]),       // already stored
      Input(events[1]),       // applied
      Input(identical),       // refused
      Input(events[2]),       // applied
      Input(short_features),  // refused
      Input(events[1]),       // repeated within the batch
      Input(events[3]),       // applied (user 1's second)
  };
  const auto results = engine->RecordFeedbackBatch(batch);
  ASSERT_EQ(results.size(), batch.size());
  EXPECT_TRUE(results[0].ok() && results[0]->duplicate);
  EXPECT_EQ(results[0]->sequence, 1u);
  EXPECT_TRUE(results[1].ok() && !results[1]->duplicate);
  EXPECT_EQ(results[1]->sequence, 1u);  // user 1's first
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(results[2].status().message(), "rejected.features: "));
  EXPECT_TRUE(results[3].ok() && !results[3]->duplicate);
  EXPECT_EQ(results[3]->sequence, 2u);  // user 0's second
  EXPECT_EQ(results[4].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(results[4].status().message(), "chosen.features: "));
  ASSERT_TRUE(results[5].ok());
  EXPECT_TRUE(results[5]->duplicate);
  EXPECT_EQ(results[5]->sequence, results[1]->sequence);
  EXPECT_EQ(results[5]->predicted_chosen_probability, results[1]->predicted_chosen_probability);
  EXPECT_TRUE(results[6].ok() && !results[6]->duplicate);
  EXPECT_EQ(results[6]->sequence, 2u);
  EXPECT_EQ(engine->Stats().feedback_events, 4u);

  // Everything committed is stored: the histories read back, and a reopened engine agrees.
  EXPECT_EQ(engine->ExportUser("u0")->history.size(), 2u);
  EXPECT_EQ(engine->ExportUser("u1")->history.size(), 2u);
  engine.reset();
  EngineOptions options;
  options.refresh_period = absl::ZeroDuration();
  auto reopened = *PreferenceEngine::Open(Schema(), *stores_.back(), options);
  EXPECT_EQ(reopened->GetUser("u0")->feedback_count, 2u);
  EXPECT_EQ(reopened->GetUser("u1")->feedback_count, 2u);
}

TEST_F(GroupCommitTest, EmptyBatchIsNothing) {
  auto engine = Open("db");
  EXPECT_TRUE(engine->RecordFeedbackBatch({}).empty());
  EXPECT_EQ(engine->Stats().feedback_events, 0u);
}

}  // namespace
}  // namespace tailor::engine
