// Cluster mode's feedback log against a real nats-server (Debian's, JetStream on, a temp store
// directory, a loopback port): appends land once per message id, each partition replays in
// order from any point, the log survives the server's restart, and a log made with another
// partition count is refused.
#include "cluster/feedback_log.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/nats_server.h"
#include "tests/testing/temp_dir.h"

namespace tailor::cluster {
namespace {

class FeedbackLogTest : public ::testing::Test {
 protected:
  FeedbackLogTest() : nats_(dir_.Sub("nats"), testing::FreePort()) {}

  FeedbackLogOptions Options(int partitions = 8) const {
    FeedbackLogOptions options;
    options.url = nats_.url();
    options.partitions = partitions;
    options.replicas = 1;  // one server here; three in a cluster
    return options;
  }

  // partition -> (sequence, payload) in replay order
  static std::vector<std::pair<uint64_t, std::string>> ReplayAll(FeedbackLog& log, int partition,
                                                                 uint64_t after = 0) {
    std::vector<std::pair<uint64_t, std::string>> out;
    const absl::Status replayed =
        log.Replay(partition, after, [&](uint64_t seq, absl::string_view p) {
          out.emplace_back(seq, std::string(p));
          return true;
        });
    EXPECT_TRUE(replayed.ok()) << replayed;
    return out;
  }

  testing::TempDir dir_;
  testing::NatsServer nats_;
};

TEST_F(FeedbackLogTest, AppendsOnceAndReplaysEachPartitionInOrder) {
  absl::StatusOr<std::unique_ptr<FeedbackLog>> log = FeedbackLog::Open(Options());
  ASSERT_TRUE(log.ok()) << log.status();
  std::map<int, std::vector<std::pair<uint64_t, std::string>>> expected;
  for (int i = 0; i < 60; ++i) {
    const std::string user = absl::StrCat("user-", i % 12);
    const int partition = FeedbackLog::PartitionOf("tenant/" + user, 8);
    const std::string payload = absl::StrCat(user, "/event-", i);
    absl::StatusOr<FeedbackLog::Appended> appended =
        (*log)->Append(partition, absl::StrCat("tenant/", user, "/", i), payload);
    ASSERT_TRUE(appended.ok()) << appended.status();
    EXPECT_FALSE(appended->duplicate);
    expected[partition].emplace_back(appended->sequence, payload);
  }
  // A resent event (same message id) is not appended again.
  const int partition = FeedbackLog::PartitionOf("tenant/user-3", 8);
  absl::StatusOr<FeedbackLog::Appended> again =
      (*log)->Append(partition, "tenant/user-3/3", "user-3/event-3");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate);

  size_t total = 0;
  for (int p = 0; p < 8; ++p) {
    EXPECT_EQ(ReplayAll(**log, p), expected[p]) << "partition " << p;
    total += expected[p].size();
  }
  EXPECT_EQ(total, 60u);
  // From the middle: only what follows.
  const auto& some = expected.begin()->second;
  ASSERT_GE(some.size(), 2u);
  const auto tail = ReplayAll(**log, expected.begin()->first, some[0].first);
  EXPECT_EQ(tail, std::vector(some.begin() + 1, some.end()));
  // Stopping early.
  int visited = 0;
  ASSERT_TRUE((*log)
                  ->Replay(expected.begin()->first, 0,
                           [&](uint64_t, absl::string_view) { return ++visited < 1; })
                  .ok());
  EXPECT_EQ(visited, 1);
  EXPECT_FALSE((*log)->Append(8, "x", "y").ok());  // no such partition
}

TEST_F(FeedbackLogTest, TheLogSurvivesTheServersRestart) {
  std::vector<std::pair<uint64_t, std::string>> before;
  {
    absl::StatusOr<std::unique_ptr<FeedbackLog>> log = FeedbackLog::Open(Options());
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE((*log)->Append(5, absl::StrCat("id-", i), absl::StrCat("event-", i)).ok());
    }
    before = ReplayAll(**log, 5);
  }
  nats_.Stop();
  nats_.Start();
  absl::StatusOr<std::unique_ptr<FeedbackLog>> log = FeedbackLog::Open(Options());
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(ReplayAll(**log, 5), before);
  EXPECT_EQ(before.size(), 20u);
  EXPECT_TRUE(ReplayAll(**log, 4).empty());
}

TEST_F(FeedbackLogTest, ALogWithAnotherPartitionCountIsRefused) {
  ASSERT_TRUE(FeedbackLog::Open(Options(8)).ok());
  absl::StatusOr<std::unique_ptr<FeedbackLog>> other = FeedbackLog::Open(Options(16));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("partitions=8"), std::string::npos) << other.status();
}

TEST_F(FeedbackLogTest, AnAppendExpectingAnotherLastSequenceIsRefused) {
  absl::StatusOr<std::unique_ptr<FeedbackLog>> log = FeedbackLog::Open(Options());
  ASSERT_TRUE(log.ok()) << log.status();
  FeedbackLog& l = **log;
  EXPECT_EQ(*l.LastSequence(2), 0u);
  // 0: the partition must be empty.
  absl::StatusOr<FeedbackLog::Appended> first = l.Append(2, "a", "first", 0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*l.LastSequence(2), first->sequence);
  // Another partition's appends do not count.
  ASSERT_TRUE(l.Append(3, "b", "elsewhere").ok());
  absl::StatusOr<FeedbackLog::Appended> stale = l.Append(2, "c", "stale", 0);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted) << stale.status();
  absl::StatusOr<FeedbackLog::Appended> second = l.Append(2, "c", "second", first->sequence);
  ASSERT_TRUE(second.ok()) << second.status();
  // A resend is answered as a duplicate whatever it expects.
  absl::StatusOr<FeedbackLog::Appended> resent = l.Append(2, "a", "first", 0);
  ASSERT_TRUE(resent.ok()) << resent.status();
  EXPECT_TRUE(resent->duplicate);
  EXPECT_EQ(resent->sequence, first->sequence);
  EXPECT_EQ(ReplayAll(l, 2), (std::vector<std::pair<uint64_t, std::string>>{
                                 {first->sequence, "first"}, {second->sequence, "second"}}));
}

TEST_F(FeedbackLogTest, AnErasedEventIsGoneFromReplays) {
  absl::StatusOr<std::unique_ptr<FeedbackLog>> log = FeedbackLog::Open(Options());
  ASSERT_TRUE(log.ok()) << log.status();
  std::vector<uint64_t> sequences;
  for (int i = 0; i < 3; ++i) {
    sequences.push_back(
        (*log)->Append(1, absl::StrCat("e", i), absl::StrCat("event-", i))->sequence);
  }
  ASSERT_TRUE((*log)->Erase(sequences[1]).ok());
  EXPECT_EQ(ReplayAll(**log, 1), (std::vector<std::pair<uint64_t, std::string>>{
                                     {sequences[0], "event-0"}, {sequences[2], "event-2"}}));
  const absl::Status again = (*log)->Erase(sequences[1]);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound) << again;
}

TEST(FeedbackLogPartitionTest, PartitionsAreStableAndSpread) {
  EXPECT_EQ(FeedbackLog::PartitionOf("t/alice", 64), FeedbackLog::PartitionOf("t/alice", 64));
  EXPECT_NE(FeedbackLog::PartitionOf("t/alice", 1 << 20),
            FeedbackLog::PartitionOf("u/alice", 1 << 20));
  std::vector<int> counts(16, 0);
  for (int u = 0; u < 16000; ++u) ++counts[FeedbackLog::PartitionOf(absl::StrCat("t/u", u), 16)];
  for (int c : counts) {
    EXPECT_GT(c, 800);  // 1,000 expected each; ±20% is far beyond chance for a good hash
    EXPECT_LT(c, 1200);
  }
}

TEST(FeedbackLogOpenTest, AnUnreachableServerIsUnavailable) {
  FeedbackLogOptions options;
  options.url = absl::StrCat("nats://127.0.0.1:", testing::FreePort());
  options.timeout = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<FeedbackLog>> log = FeedbackLog::Open(options);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kUnavailable) << log.status();
}

}  // namespace
}  // namespace tailor::cluster
