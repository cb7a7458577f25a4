// FeedbackStore: Tailor's durable state in RocksDB — per-user feedback histories, learned
// state, idempotency keys and server metadata — with one atomic WriteBatch per commit.
#ifndef TAILOR_STORAGE_FEEDBACK_STORE_H_
#define TAILOR_STORAGE_FEEDBACK_STORE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tailor/storage/v1/records.pb.h"

namespace rocksdb {
class Cache;
class ColumnFamilyHandle;
class DB;
class Slice;
class Snapshot;
class Statistics;
}  // namespace rocksdb

namespace tailor::storage {

namespace records = ::tailor::storage::v1;

// Bumped when the meaning of stored records changes; a newer format refuses to open.
inline constexpr int kStoreFormatVersion = 1;

struct StoreOptions {
  std::string path;
  // false: a commit returns once it is in the write-ahead log (OS page cache): it survives a
  // process crash (kill -9) but not a power loss or kernel panic.
  // true: each commit also fsyncs the WAL; concurrent commits share one fsync (RocksDB's
  // write-group leader), so throughput under concurrency stays reasonable while every
  // acked event survives power loss.
  bool sync_wal = false;
  // Shared LRU block cache for all column families.
  size_t block_cache_bytes = 128ull << 20;
  // Upper bound on memtable memory across all column families.
  size_t memtable_budget_bytes = 128ull << 20;
  // Writes (commits, checkpoints) are refused with RESOURCE_EXHAUSTED while the data
  // directory's file system has less than this free, and resume by themselves once it has
  // more (checked at most once a second). RocksDB itself must never meet a full disk: the
  // 7.8 release Debian ships aborts on an assertion when a WAL write fails for lack of space.
  // 0 turns the check off.
  uint64_t min_free_bytes = 256ull << 20;
};

// One applied feedback event: its history record and idempotency entry.
struct AppliedEvent {
  records::FeedbackRecord record;
  records::IdempotencyRecord idempotency;
};

// Everything one user's update writes: new events (possibly none) and the resulting state.
struct UserCommit {
  std::string user_id;
  std::vector<AppliedEvent> events;
  records::UserState state;
};

// Cluster mode: how far a shard has applied one partition of the replicated feedback log
// (cluster/feedback_log.h), stored in the same WriteBatch as the state it produced.
struct LogPosition {
  int partition = 0;
  uint64_t sequence = 0;
};

struct DeletedUser {
  bool existed = false;
  uint64_t history_records = 0;
  uint64_t idempotency_keys = 0;
};

// A user's stored data read from one consistent snapshot.
struct UserExport {
  std::optional<records::UserState> state;
  std::vector<records::FeedbackRecord> history;
};

// Upper bounds (seconds) of the commit latency histogram: one WriteBatch to the WAL (and its
// fsync with sync_wal).
inline constexpr std::array<double, 15> kCommitLatencyBounds = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005,   0.01,     0.025,   0.05,   0.1,     0.25,   1.0};

struct StoreStats {
  uint64_t live_sst_bytes = 0;
  uint64_t memtable_bytes = 0;
  uint64_t pending_compaction_bytes = 0;
  uint64_t running_compactions = 0;
  uint64_t stall_micros = 0;
  uint64_t corrupt_records = 0;
  // The data directory's file system: bytes available to tailord, and its size.
  uint64_t disk_free_bytes = 0;
  uint64_t disk_capacity_bytes = 0;
  // Commits by latency: counts per kCommitLatencyBounds bucket (not cumulative), then above
  // the last bound; and the latencies' sum.
  std::array<uint64_t, kCommitLatencyBounds.size() + 1> commit_latency_counts{};
  double commit_latency_seconds_sum = 0;
};

class FeedbackStore {
 public:
  // Opens (creating if needed) the database at options.path. Fails with a clear message if
  // the directory is unusable, locked by another process, or of a newer format.
  static absl::StatusOr<std::unique_ptr<FeedbackStore>> Open(const StoreOptions& options);
  ~FeedbackStore();
  FeedbackStore(const FeedbackStore&) = delete;
  FeedbackStore& operator=(const FeedbackStore&) = delete;

  // Every schema version of the data directory, oldest first (empty: none bound yet), with
  // versions and feature ids filled in for records made before schema versions.
  absl::StatusOr<std::vector<records::SchemaRecord>> SchemaVersions();
  // Makes `schema` the current schema, as version (last + 1, or 1), durably, keeping every
  // earlier version. Returns the version.
  absl::StatusOr<uint32_t> AddSchemaVersion(records::SchemaRecord schema);

  absl::StatusOr<std::optional<records::UserState>> ReadState(absl::string_view user_id);
  absl::StatusOr<std::optional<records::IdempotencyRecord>> FindEvent(absl::string_view user_id,
                                                                      absl::string_view event_id);

  // Writes all commits (history records, idempotency keys, states) in one WriteBatch: after a
  // crash either all of it is present or none.
  // With a `position`, the partition's applied log position is written in the same batch.
  absl::Status Commit(std::span<const UserCommit> commits,
                      std::optional<LogPosition> position = std::nullopt);
  absl::Status Commit(const UserCommit& commit) { return Commit(std::span(&commit, 1)); }

  // Cluster mode: the applied position of every partition this store has one for.
  absl::StatusOr<std::map<int, uint64_t>> ReadLogPositions();
  // Sets a partition's applied position (when a log entry changed nothing else), or with
  // sequence 0 forgets it.
  absl::Status WriteLogPosition(LogPosition position);

  // Calls `visit` for each of the user's history records in sequence order until it returns
  // false. A record that cannot be decoded stops the scan with DATA_LOSS (and is counted).
  absl::Status ScanHistory(absl::string_view user_id,
                           absl::FunctionRef<bool(const records::FeedbackRecord&)> visit);

  // State and full history of one user from a single snapshot.
  absl::StatusOr<UserExport> ExportUser(absl::string_view user_id);

  // Removes the user's state, history and idempotency keys in one WriteBatch (with the
  // partition's applied log `position`, if given).
  absl::StatusOr<DeletedUser> DeleteUser(absl::string_view user_id,
                                         std::optional<LogPosition> position = std::nullopt);

  // Visits every user's state record. A record that cannot be decoded is passed as a
  // DATA_LOSS status (and counted) so the caller can rebuild it from history.
  absl::Status ScanStates(absl::FunctionRef<void(absl::string_view user_id,
                                                 const absl::StatusOr<records::UserState>& state)>
                              visit);

  absl::StatusOr<std::optional<records::PopulationSnapshot>> ReadPopulation();
  absl::Status WritePopulation(const records::PopulationSnapshot& snapshot);

  // A consistent on-disk copy of the database in `directory` (which must not exist), taken
  // while serving. Returns the latest sequence number it contains.
  absl::StatusOr<uint64_t> CreateCheckpoint(const std::string& directory);

  StoreStats Stats() const;
  bool sync_wal() const { return options_.sync_wal; }
  const std::string& path() const { return options_.path; }

 private:
  FeedbackStore(StoreOptions options, rocksdb::DB* db,
                std::vector<rocksdb::ColumnFamilyHandle*> handles,
                std::shared_ptr<rocksdb::Statistics> statistics);

  absl::Status CheckFormatVersion();
  // RESOURCE_EXHAUSTED while the file system is below options_.min_free_bytes.
  absl::Status CheckFreeSpace();
  // Visits the keys of `family` in the user's length-prefixed range, in order, at `snapshot`
  // (null = latest), until `visit` returns false.
  absl::Status ForEachInUserRange(
      rocksdb::ColumnFamilyHandle* family, absl::string_view user_id,
      const rocksdb::Snapshot* snapshot,
      absl::FunctionRef<bool(const rocksdb::Slice& key, const rocksdb::Slice& value)> visit);
  absl::Status ScanHistoryAt(absl::string_view user_id, const rocksdb::Snapshot* snapshot,
                             absl::FunctionRef<bool(const records::FeedbackRecord&)> visit);
  absl::StatusOr<std::optional<std::string>> Get(rocksdb::ColumnFamilyHandle* family,
                                                 absl::string_view key);
  absl::Status Corrupt(absl::string_view what, absl::string_view user_id);

  rocksdb::ColumnFamilyHandle* meta() const { return handles_[0]; }
  rocksdb::ColumnFamilyHandle* state() const { return handles_[1]; }
  rocksdb::ColumnFamilyHandle* history() const { return handles_[2]; }
  rocksdb::ColumnFamilyHandle* idempotency() const { return handles_[3]; }

  const StoreOptions options_;
  rocksdb::DB* db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::shared_ptr<rocksdb::Statistics> statistics_;
  std::atomic<uint64_t> corrupt_records_{0};
  // The last free-space measurement and when it was taken (steady clock, microseconds).
  std::atomic<uint64_t> free_bytes_{UINT64_MAX};
  std::array<std::atomic<uint64_t>, kCommitLatencyBounds.size() + 1> commit_latency_counts_{};
  std::atomic<uint64_t> commit_latency_nanos_{0};
  std::atomic<int64_t> free_checked_micros_{INT64_MIN / 2};  // "long ago", without overflow
  // A write met a full disk anyway: RocksDB needs Resume() before it writes again.
  std::atomic<bool> needs_resume_{false};
  std::mutex resume_mu_;
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer builds only: Debian's RocksDB is not instrumented, and its write groups
  // (a leader thread writing other threads' batches) hand off through atomics TSan cannot
  // see. Serializing writes keeps every batch on its own thread, so TSan judges Tailor's
  // own synchronization without false reports from inside RocksDB.
  std::mutex tsan_write_mu_;
#endif
};

}  // namespace tailor::storage

#endif  // TAILOR_STORAGE_FEEDBACK_STORE_H_
