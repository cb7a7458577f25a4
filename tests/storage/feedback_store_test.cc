#include "storage/feedback_store.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/keys.h"
#include "tests/storage/store_test_util.h"
#include "tests/testing/temp_dir.h"

namespace tailor::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TempDir;

std::unique_ptr<FeedbackStore> OpenStore(const std::string& path) {
  StoreOptions options;
  options.path = path;
  auto store = FeedbackStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

std::vector<uint64_t> Sequences(FeedbackStore& store, const std::string& user) {
  std::vector<uint64_t> sequences;
  EXPECT_TRUE(store
                  .ScanHistory(user,
                               [&](const records::FeedbackRecord& r) {
                                 sequences.push_back(r.sequence());
                                 return true;
                               })
                  .ok());
  return sequences;
}

records::SchemaRecord Schema(const std::string& fingerprint) {
  records::SchemaRecord schema;
  schema.set_fingerprint(fingerprint);
  schema.add_features()->set_name("f0");
  return schema;
}

// Writes raw bytes into one column family, bypassing FeedbackStore (to simulate damage).
void WriteRaw(const std::string& path, const std::string& family, const std::string& key,
              const std::string& value) {
  rocksdb::DBOptions options;
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, {}}, {"state", {}}, {"history", {}}, {"idempotency", {}}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, path, families, &handles, &db).ok());
  int index = family == "default" ? 0 : family == "state" ? 1 : family == "history" ? 2 : 3;
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[index], key, value).ok());
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  ASSERT_TRUE(db->Close().ok());
  delete db;
}

TEST(KeysTest, HistoryKeysSortBySequenceWithinAUser) {
  EXPECT_LT(HistoryKey("u", 255), HistoryKey("u", 256));
  EXPECT_LT(HistoryKey("u", 1), HistoryKey("u", 1ull << 40));
  // A user id that extends another never falls inside the other's range.
  const std::string prefix = UserPrefix("ab");
  EXPECT_FALSE(HistoryKey("abc", 1).starts_with(prefix));
  const std::string key = HistoryKey("user\xff", 42);  // the decoded views point into it
  auto decoded = DecodeUserKey(key);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->user_id, "user\xff");
  EXPECT_EQ(decoded->rest, HistoryKey("", 42).substr(2));  // the big-endian sequence
  EXPECT_FALSE(DecodeUserKey(std::string("\x00\x09short", 7)).has_value());
  EXPECT_EQ(PrefixSuccessor(std::string("a\xff\xff")), "b");
}

TEST(FeedbackStoreTest, CommitThenReadStateEventAndHistoryInOrder) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  // Sequences beyond one byte, committed out of order: the scan still returns them in order.
  for (uint64_t seq : {3u, 1u, 256u, 2u, 255u})
    ASSERT_TRUE(store->Commit(MakeCommit("u", seq)).ok());

  auto state = store->ReadState("u");
  ASSERT_TRUE(state.ok() && state->has_value());
  EXPECT_EQ((*state)->feedback_count(), 255u);  // the last commit's state wins
  EXPECT_THAT(Sequences(*store, "u"), ElementsAre(1, 2, 3, 255, 256));

  auto event = store->FindEvent("u", "ev-u-255");
  ASSERT_TRUE(event.ok() && event->has_value());
  EXPECT_EQ((*event)->sequence(), 255u);
  auto missing = store->FindEvent("u", "ev-u-999");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  auto unknown = store->ReadState("nobody");
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->has_value());
}

TEST(FeedbackStoreTest, CheckpointIntoABadDirectorySaysWhatToFixAndWritesNothing) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(MakeCommit("u", 1)).ok());
  struct Case {
    std::string directory;
    std::string message;
  };
  const std::string existing = dir.Sub("db");
  const std::string orphan = dir.Sub("missing/ckpt");
  for (const Case& c : std::vector<Case>{
           {"relative/ckpt", "directory: must be an absolute path"},
           {existing, "directory: " + existing +
                          " already exists; a checkpoint is written into a new directory"},
           {orphan, "directory: parent directory " + dir.Sub("missing") +
                        " does not exist on the server"}}) {
    absl::StatusOr<uint64_t> made = store->CreateCheckpoint(c.directory);
    ASSERT_FALSE(made.ok()) << c.directory;
    EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument) << c.directory;
    EXPECT_EQ(made.status().message(), c.message);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("missing")));
  absl::StatusOr<uint64_t> made = store->CreateCheckpoint(dir.Sub("ckpt"));
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_TRUE(std::filesystem::exists(dir.Sub("ckpt") + "/CURRENT"));
}

TEST(FeedbackStoreTest, BelowTheFreeSpaceReserveWritesAreRefusedAndNothingIsStored) {
  TempDir dir;
  StoreOptions options;
  options.path = dir.Sub("db");
  options.min_free_bytes = uint64_t{1} << 62;  // more than any disk has
  auto store = FeedbackStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  const absl::Status committed = (*store)->Commit(MakeCommit("u", 1));
  EXPECT_EQ(committed.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(committed.message()), ::testing::StartsWith("storage: disk full: "));
  auto state = (*store)->ReadState("u");
  ASSERT_TRUE(state.ok());
  EXPECT_FALSE(state->has_value()) << "reads work, and nothing was written";
  EXPECT_EQ((*store)->CreateCheckpoint(dir.Sub("ckpt")).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(FeedbackStoreTest, UsersWithPrefixRelatedIdsStayApart) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  const std::string binary("a\xff\x00z", 4);
  for (const std::string& user : {std::string("a"), std::string("ab"), binary}) {
    for (uint64_t seq = 1; seq <= 3; ++seq) ASSERT_TRUE(store->Commit(MakeCommit(user, seq)).ok());
  }
  EXPECT_THAT(Sequences(*store, "a"), ElementsAre(1, 2, 3));
  EXPECT_THAT(Sequences(*store, binary), ElementsAre(1, 2, 3));
  EXPECT_FALSE(store->FindEvent("a", "b").value().has_value());
}

TEST(FeedbackStoreTest, SameEventIdIsStoredOnce) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(MakeCommit("u", 1)).ok());
  ASSERT_TRUE(store->Commit(MakeCommit("u", 1)).ok());  // a replayed batch
  EXPECT_THAT(Sequences(*store, "u"), ElementsAre(1));
  auto deleted = store->DeleteUser("u");
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->idempotency_keys, 1u);
}

TEST(FeedbackStoreTest, OneBatchCommitsSeveralUsersAtomically) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  std::vector<UserCommit> commits = {MakeCommit("x", 1), MakeCommit("y", 1), MakeCommit("x", 2)};
  commits[0].state.set_feedback_count(1);
  ASSERT_TRUE(store->Commit(commits).ok());
  EXPECT_THAT(Sequences(*store, "x"), ElementsAre(1, 2));
  EXPECT_THAT(Sequences(*store, "y"), ElementsAre(1));
}

TEST(FeedbackStoreTest, ExportReturnsExactlyWhatWasAppended) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  std::vector<records::FeedbackRecord> appended;
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    UserCommit commit = MakeCommit("u", seq);
    appended.push_back(commit.events[0].record);
    ASSERT_TRUE(store->Commit(commit).ok());
  }
  ASSERT_TRUE(store->Commit(MakeCommit("other", 1)).ok());
  auto exported = store->ExportUser("u");
  ASSERT_TRUE(exported.ok()) << exported.status();
  ASSERT_TRUE(exported->state.has_value());
  EXPECT_EQ(exported->state->feedback_count(), 20u);
  ASSERT_EQ(exported->history.size(), appended.size());
  for (size_t i = 0; i < appended.size(); ++i) {
    EXPECT_EQ(exported->history[i].SerializeAsString(), appended[i].SerializeAsString());
  }
  auto nobody = store->ExportUser("nobody");
  ASSERT_TRUE(nobody.ok());
  EXPECT_FALSE(nobody->state.has_value());
  EXPECT_TRUE(nobody->history.empty());
}

TEST(FeedbackStoreTest, DeleteRemovesEveryKeyOfThatUserAndNothingElse) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    ASSERT_TRUE(store->Commit(MakeCommit("gone", seq)).ok());
    ASSERT_TRUE(store->Commit(MakeCommit("gone2", seq)).ok());  // prefix-related neighbour
    ASSERT_TRUE(store->Commit(MakeCommit("kept", seq)).ok());
  }
  auto deleted = store->DeleteUser("gone");
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(deleted->existed);
  EXPECT_EQ(deleted->history_records, 5u);
  EXPECT_EQ(deleted->idempotency_keys, 5u);
  EXPECT_FALSE(store->ReadState("gone").value().has_value());
  EXPECT_TRUE(Sequences(*store, "gone").empty());
  EXPECT_FALSE(store->FindEvent("gone", "ev-gone-1").value().has_value());
  EXPECT_THAT(Sequences(*store, "gone2"), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(Sequences(*store, "kept"), ElementsAre(1, 2, 3, 4, 5));
  int users = 0;
  ASSERT_TRUE(store->ScanStates([&](absl::string_view, const auto&) { ++users; }).ok());
  EXPECT_EQ(users, 2);

  auto again = store->DeleteUser("gone");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->existed);
  EXPECT_EQ(again->history_records, 0u);
}

TEST(FeedbackStoreTest, LogPositionsAreWrittenWithTheStateTheyProducedAndSurviveReopen) {
  TempDir dir;
  {
    auto store = OpenStore(dir.Sub("db"));
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->ReadLogPositions()->empty());
    const UserCommit a = MakeCommit("a", 1);
    const UserCommit b = MakeCommit("b", 1);
    ASSERT_TRUE(store->Commit(std::span(&a, 1), LogPosition{3, 17}).ok());
    ASSERT_TRUE(store->Commit(std::span(&b, 1), LogPosition{300, 18}).ok());
    ASSERT_TRUE(store->Commit(MakeCommit("c", 1)).ok());  // no position: none written
    ASSERT_TRUE(store->DeleteUser("a", LogPosition{3, 19}).ok());
    ASSERT_TRUE(store->WriteLogPosition({7, 5}).ok());
  }
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->ReadLogPositions(), (std::map<int, uint64_t>{{3, 19}, {7, 5}, {300, 18}}));
  ASSERT_TRUE(store->WriteLogPosition({7, 0}).ok());  // forgotten
  EXPECT_EQ(*store->ReadLogPositions(), (std::map<int, uint64_t>{{3, 19}, {300, 18}}));
}

TEST(FeedbackStoreTest, SchemaVersionsAreKeptOldestFirst) {
  TempDir dir;
  {
    auto store = OpenStore(dir.Sub("db"));
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->SchemaVersions()->empty());
    EXPECT_EQ(*store->AddSchemaVersion(Schema("aaaa")), 1u);
  }
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->AddSchemaVersion(Schema("bbbb")), 2u);
  const std::vector<records::SchemaRecord> versions = *store->SchemaVersions();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].fingerprint(), "aaaa");
  EXPECT_EQ(versions[0].version(), 1u);
  EXPECT_EQ(versions[1].fingerprint(), "bbbb");
  EXPECT_EQ(versions[1].version(), 2u);
  EXPECT_EQ(versions[1].features(0).id(), 1u);  // ids filled in: position + 1
}

TEST(FeedbackStoreTest, ADirectoryMadeBeforeSchemaVersionsHoldsVersionOne) {
  TempDir dir;
  { ASSERT_NE(OpenStore(dir.Sub("db")), nullptr); }
  // As a directory made before schema versions stored its schema: the "schema" key only, no
  // version, no feature ids.
  records::SchemaRecord legacy = Schema("aaaa");
  legacy.add_features()->set_name("f1");
  WriteRaw(dir.Sub("db"), rocksdb::kDefaultColumnFamilyName, "schema", legacy.SerializeAsString());
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  std::vector<records::SchemaRecord> versions = *store->SchemaVersions();
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0].version(), 1u);
  EXPECT_EQ(versions[0].features(1).id(), 2u);
  // Its first change keeps it as version 1.
  EXPECT_EQ(*store->AddSchemaVersion(Schema("bbbb")), 2u);
  versions = *store->SchemaVersions();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].fingerprint(), "aaaa");
  // A damaged version record is DATA_LOSS, not a directory without a schema.
  store.reset();
  WriteRaw(dir.Sub("db"), rocksdb::kDefaultColumnFamilyName, std::string("schema/v/\0\0\0\x01", 13),
           "\xff\xff");
  store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->SchemaVersions().status().code(), absl::StatusCode::kDataLoss);
}

TEST(FeedbackStoreTest, StatesSurviveReopenAndScanVisitsEveryUser) {
  TempDir dir;
  {
    auto store = OpenStore(dir.Sub("db"));
    ASSERT_NE(store, nullptr);
    for (int u = 0; u < 50; ++u)
      ASSERT_TRUE(store->Commit(MakeCommit("u" + std::to_string(u), 1)).ok());
  }
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  std::map<std::string, uint64_t> seen;
  ASSERT_TRUE(store
                  ->ScanStates([&](absl::string_view user, const auto& state) {
                    ASSERT_TRUE(state.ok());
                    seen[std::string(user)] = state->feedback_count();
                  })
                  .ok());
  EXPECT_EQ(seen.size(), 50u);
  EXPECT_EQ(seen["u7"], 1u);
}

TEST(FeedbackStoreTest, PopulationSnapshotRoundTrips) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->ReadPopulation().value().has_value());
  records::PopulationSnapshot snapshot;
  snapshot.set_dimension(2);
  snapshot.add_mean(0.25);
  snapshot.add_mean(0.75);
  snapshot.set_users(9);
  ASSERT_TRUE(store->WritePopulation(snapshot).ok());
  auto read = store->ReadPopulation();
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((*read)->SerializeAsString(), snapshot.SerializeAsString());
}

TEST(FeedbackStoreTest, CheckpointWhileOpenCanBeServedFrom) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddSchemaVersion(Schema("aaaa")).ok());
  for (uint64_t seq = 1; seq <= 10; ++seq) ASSERT_TRUE(store->Commit(MakeCommit("u", seq)).ok());
  auto sequence = store->CreateCheckpoint(dir.Sub("backup"));
  ASSERT_TRUE(sequence.ok()) << sequence.status();
  EXPECT_GT(*sequence, 0u);
  ASSERT_TRUE(store->Commit(MakeCommit("u", 11)).ok());           // after the checkpoint
  EXPECT_FALSE(store->CreateCheckpoint(dir.Sub("backup")).ok());  // must not exist yet

  auto restored = OpenStore(dir.Sub("backup"));
  ASSERT_NE(restored, nullptr);
  ASSERT_EQ(restored->SchemaVersions()->size(), 1u);
  EXPECT_EQ(restored->SchemaVersions()->front().fingerprint(), "aaaa");
  EXPECT_EQ(Sequences(*restored, "u").size(), 10u);
  EXPECT_EQ(restored->ReadState("u").value()->feedback_count(), 10u);
}

TEST(FeedbackStoreTest, NewerFormatVersionRefusesToOpen) {
  TempDir dir;
  { ASSERT_NE(OpenStore(dir.Sub("db")), nullptr); }
  WriteRaw(dir.Sub("db"), "default", "format_version", "99");
  StoreOptions options;
  options.path = dir.Sub("db");
  auto store = FeedbackStore::Open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("storage format 99"));
}

TEST(FeedbackStoreTest, GarbledRecordsGiveClearErrorsAndAreCounted) {
  TempDir dir;
  {
    auto store = OpenStore(dir.Sub("db"));
    ASSERT_NE(store, nullptr);
    for (uint64_t seq = 1; seq <= 3; ++seq) ASSERT_TRUE(store->Commit(MakeCommit("u", seq)).ok());
  }
  // A truncated history record (its length-delimited field cut short) and garbage state.
  std::string truncated = MakeCommit("u", 2).events[0].record.SerializeAsString();
  truncated.resize(truncated.size() / 2);
  WriteRaw(dir.Sub("db"), "history", HistoryKey("u", 2), truncated);
  WriteRaw(dir.Sub("db"), "state", UserPrefix("u"), std::string("\xff\xff\xff\xff", 4));
  WriteRaw(dir.Sub("db"), "state", std::string("\x00\x50oops", 6), "x");  // malformed key

  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  auto state = store->ReadState("u");
  EXPECT_EQ(state.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(state.status().message()),
              HasSubstr("corrupt state record for user 'u'"));

  std::vector<uint64_t> seen;
  absl::Status scan = store->ScanHistory("u", [&](const records::FeedbackRecord& r) {
    seen.push_back(r.sequence());
    return true;
  });
  EXPECT_EQ(scan.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(seen, ElementsAre(1));
  EXPECT_EQ(store->ExportUser("u").status().code(), absl::StatusCode::kDataLoss);

  int bad_states = 0;
  ASSERT_TRUE(store
                  ->ScanStates([&](absl::string_view user, const auto& s) {
                    if (!s.ok()) {
                      EXPECT_EQ(user, "u");
                      ++bad_states;
                    }
                  })
                  .ok());
  EXPECT_EQ(bad_states, 1);
  // state read, history scan, export (state), scan state, malformed key.
  EXPECT_EQ(store->Stats().corrupt_records, 5u);
}

TEST(FeedbackStoreTest, StatsReportSizes) {
  TempDir dir;
  auto store = OpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  for (uint64_t seq = 1; seq <= 100; ++seq) ASSERT_TRUE(store->Commit(MakeCommit("u", seq)).ok());
  StoreStats stats = store->Stats();
  EXPECT_GT(stats.memtable_bytes, 0u);
  EXPECT_EQ(stats.corrupt_records, 0u);
}

// Child process appends events and reports each acked commit on stdout; the parent SIGKILLs
// it at random moments. After every kill the database must open without repair, contain
// every acked event, and each user's state must agree with its history.
class CrashTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashTest, AckedEventsSurviveSigkill) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  std::mt19937 rng(20261122);
  std::map<std::string, uint64_t> acked;
  auto total_acked = [&acked] {
    uint64_t total = 0;
    for (const auto& [u, last] : acked) total += last;
    return total;
  };
  // 24 kills; more (up to 96) while fewer than 200 events were acked, as when every commit
  // waits for a slow disk's fsync.
  constexpr int kRounds = 24;
  for (int round = 0; round < 4 * kRounds && (round < kRounds || total_acked() < 200); ++round) {
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::execl(CRASH_WRITER_BINARY, CRASH_WRITER_BINARY, db.c_str(), GetParam(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    // Let it write for a random while, then kill it mid-stream. The while starts at its first
    // ack, not at the fork: startup (opening RocksDB, sanitizer runtimes on a loaded machine)
    // can take longer than the whole window, and a writer killed before writing proves little.
    const int kill_after_ms = std::uniform_int_distribution<int>(30, 250)(rng);
    std::string received;
    const auto forked = std::chrono::steady_clock::now();
    std::optional<std::chrono::steady_clock::time_point> first_ack;
    char buffer[4096];
    while (true) {
      const auto now = std::chrono::steady_clock::now();
      if (first_ack ? now - *first_ack >= std::chrono::milliseconds(kill_after_ms)
                    : now - forked >= std::chrono::seconds(60))
        break;
      pollfd pfd{out[0], POLLIN, 0};
      if (::poll(&pfd, 1, 5) > 0) {
        ssize_t n = ::read(out[0], buffer, sizeof(buffer));
        if (n <= 0) break;
        received.append(buffer, static_cast<size_t>(n));
        if (!first_ack && received.find('\n') != std::string::npos)
          first_ack = std::chrono::steady_clock::now();
      }
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ssize_t n;
    while ((n = ::read(out[0], buffer, sizeof(buffer))) > 0)
      received.append(buffer, static_cast<size_t>(n));
    ::close(out[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited on its own, status " << status;

    std::istringstream lines(received);
    std::string user;
    uint64_t seq;
    while (lines >> user >> seq) acked[user] = std::max(acked[user], seq);

    auto store = OpenStore(db);  // never RepairDB: it must open as it is
    ASSERT_NE(store, nullptr) << "round " << round;
    for (const auto& [u, last_acked] : acked) {
      std::vector<uint64_t> sequences = Sequences(*store, u);
      ASSERT_GE(sequences.size(), last_acked)
          << "lost acked events of " << u << " in round " << round;
      for (size_t i = 0; i < sequences.size(); ++i) ASSERT_EQ(sequences[i], i + 1);
      auto state = store->ReadState(u);
      ASSERT_TRUE(state.ok() && state->has_value());
      EXPECT_EQ((*state)->feedback_count(), sequences.size()) << "state disagrees with history";
      EXPECT_TRUE(store->FindEvent(u, "ev-" + u + "-" + std::to_string(sequences.size()))
                      .value()
                      .has_value());
    }
  }
  const uint64_t total = total_acked();
  EXPECT_GT(total, 100u) << "the writer barely ran; the test proved little";
  RecordProperty("acked_events", static_cast<int>(total));
}

INSTANTIATE_TEST_SUITE_P(Durability, CrashTest, ::testing::Values("wal", "sync"));

}  // namespace
}  // namespace tailor::storage
