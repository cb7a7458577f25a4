// Cluster mode's feedback log against a real nats-server (Debian's, JetStream on, a temp store
// directory, a loopback port): appends land once per message id, each partition replays in
// order from any point, the log survives the server's restart, and a log made with another
// partition count is refused.
#include "cluster/feedback_log.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tailor::cluster {
namespace {

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

bool Accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return ok;
}

// A nats-server child process with JetStream, storing under `store`.
class NatsServer {
 public:
  NatsServer(std::string store, int port) : store_(std::move(store)), port_(port) { Start(); }
  ~NatsServer() { Stop(); }

  void Start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      // Its log goes beside its store, for a failing test's reader.
      const std::string log = store_ + ".log";
      if (std::FILE* out = std::freopen(log.c_str(), "a", stderr)) ::dup2(::fileno(out), 1);
      const std::string port = std::to_string(port_);
      ::execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port.c_str(), "-js", "-sd",
               store_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !Accepts(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  std::string url() const { return absl::StrCat("nats://127.0.0.1:", port_); }

 private:
  std::string store_;
  int port_;
  pid_t pid_ = -1;
};

class FeedbackLogTest : public ::testing::Test {
 protected:
  FeedbackLogTest() : nats_(dir_.Sub("nats"), FreePort()) {}

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
  NatsServer nats_;
};

TEST_F(FeedbackLogTest, AppendsOnceAndReplaysEachPartitionInOrder) {
  absl::StatusOr<std::unique_ptr<FeedbackLog>> log = FeedbackLog::Open(Options());
  ASSERT_TRUE(log.ok()) << log.status();
  std::map<int, std::vector<std::pair<uint64_t, std::string>>> expected;
  for (int i = 0; i < 60; ++i) {
    const std::string user = absl::StrCat("user-", i % 12);
    const int partition = FeedbackLog::PartitionOf("tenant", user, 8);
    const std::string payload = absl::StrCat(user, "/event-", i);
    absl::StatusOr<FeedbackLog::Appended> appended =
        (*log)->Append(partition, absl::StrCat("tenant/", user, "/", i), payload);
    ASSERT_TRUE(appended.ok()) << appended.status();
    EXPECT_FALSE(appended->duplicate);
    expected[partition].emplace_back(appended->sequence, payload);
  }
  // A resent event (same message id) is not appended again.
  const int partition = FeedbackLog::PartitionOf("tenant", "user-3", 8);
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

TEST(FeedbackLogPartitionTest, PartitionsAreStableAndSpread) {
  EXPECT_EQ(FeedbackLog::PartitionOf("t", "alice", 64), FeedbackLog::PartitionOf("t", "alice", 64));
  EXPECT_NE(FeedbackLog::PartitionOf("", "ab", 1 << 20),
            FeedbackLog::PartitionOf("a", "b", 1 << 20));
  std::vector<int> counts(16, 0);
  for (int u = 0; u < 16000; ++u) ++counts[FeedbackLog::PartitionOf("t", absl::StrCat("u", u), 16)];
  for (int c : counts) {
    EXPECT_GT(c, 800);  // 1,000 expected each; ±20% is far beyond chance for a good hash
    EXPECT_LT(c, 1200);
  }
}

TEST(FeedbackLogOpenTest, AnUnreachableServerIsUnavailable) {
  FeedbackLogOptions options;
  options.url = absl::StrCat("nats://127.0.0.1:", FreePort());
  options.timeout = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<FeedbackLog>> log = FeedbackLog::Open(options);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kUnavailable) << log.status();
}

}  // namespace
}  // namespace tailor::cluster
