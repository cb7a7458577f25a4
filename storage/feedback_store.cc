#include "storage/feedback_store.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/statistics.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"
#include "storage/keys.h"

namespace tailor::storage {
namespace {

constexpr char kFormatVersionKey[] = "format_version";
constexpr char kSchemaKey[] = "schema";
constexpr char kPopulationKey[] = "population";
// + big-endian u32 partition: that partition's applied log sequence (big-endian u64).
constexpr char kLogPositionPrefix[] = "log_position/";

std::string LogPositionKey(int partition) {
  return absl::StrCat(kLogPositionPrefix, BigEndian(static_cast<uint32_t>(partition), 4));
}

// rocksdb::Status -> absl::Status, once, at this boundary.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  std::string message = absl::StrCat(context, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsNoSpace())
    return absl::ResourceExhaustedError(absl::StrCat("storage: disk full: ", message));
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsBusy() || s.IsTryAgain()) return absl::UnavailableError(message);
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat(message, " (is another tailord using this data directory?)"));
  }
  return absl::InternalError(message);
}

rocksdb::Slice AsSlice(absl::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// Column family tuning. Tailor's access pattern: point reads of user state (mostly hits)
// and idempotency keys (mostly misses: every new event checks its id), and range scans of
// one user's history (rebuild, export, delete, cold-start warm-up).
rocksdb::ColumnFamilyOptions FamilyOptions(const std::shared_ptr<rocksdb::Cache>& cache,
                                           bool point_lookups, size_t write_buffer_bytes) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  // Index and filter blocks live in the same bounded cache instead of growing unbounded with
  // the data, partitioned into small blocks: a lookup loads one 4 KiB partition of a file's
  // filter, not the whole filter (a megabyte per large file). Whole filters in a cache smaller
  // than the data were loaded and evicted on nearly every idempotency check once the data
  // outgrew the cache: with 100,000 users, feedback cost ten times the CPU
  // (docs/BENCHMARKS.md). The partitions' top-level indexes stay pinned, L0's blocks too,
  // and index and filter blocks are cached with high priority (ahead of data blocks).
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.pin_top_level_index_and_filter = true;
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = point_lookups;
  table.metadata_block_size = 4096;
  table.format_version = 5;
  if (point_lookups) {
    // ~1% false positives: a miss on an unseen event id costs no data-block read.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    table.whole_key_filtering = true;
  }
  rocksdb::ColumnFamilyOptions options;
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  options.write_buffer_size = write_buffer_bytes;
  options.max_write_buffer_number = 3;
  options.level_compaction_dynamic_level_bytes = true;
  // LZ4 is cheap enough for the hot levels; the bottom level holds most of the (mostly
  // cold) history, where zstd's better ratio is worth its CPU.
  options.compression = rocksdb::kLZ4Compression;
  options.bottommost_compression = rocksdb::kZSTD;
  return options;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FeedbackStore>> FeedbackStore::Open(const StoreOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("data_dir: must not be empty");

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.bytes_per_sync = 1 << 20;
  // Keeps the WAL from growing without bound when one family is rarely flushed.
  db_options.max_total_wal_size = 256ull << 20;
  auto statistics = rocksdb::CreateDBStatistics();
  statistics->set_stats_level(rocksdb::StatsLevel::kExceptDetailedTimers);
  db_options.statistics = statistics;

  // Half of the cache is kept for index and filter blocks (high priority).
  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes, /*num_shard_bits=*/-1,
                                    /*strict_capacity_limit=*/false, /*high_pri_pool_ratio=*/0.5);
  const size_t per_family = options.memtable_budget_bytes / 8;  // 4 families x ~2 buffers
  db_options.db_write_buffer_size = options.memtable_budget_bytes;

  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, FamilyOptions(cache, true, per_family)},
      {"state", FamilyOptions(cache, true, per_family)},
      {"history", FamilyOptions(cache, false, per_family)},
      {"idempotency", FamilyOptions(cache, true, per_family)},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, families, &handles, &db);
  if (!s.ok()) return FromRocks(s, absl::StrCat("opening data directory ", options.path));

  std::unique_ptr<FeedbackStore> store(
      new FeedbackStore(options, db, std::move(handles), std::move(statistics)));
  if (absl::Status version = store->CheckFormatVersion(); !version.ok()) return version;
  return store;
}

FeedbackStore::FeedbackStore(StoreOptions options, rocksdb::DB* db,
                             std::vector<rocksdb::ColumnFamilyHandle*> handles,
                             std::shared_ptr<rocksdb::Statistics> statistics)
    : options_(std::move(options)),
      db_(db),
      handles_(std::move(handles)),
      statistics_(std::move(statistics)) {}

FeedbackStore::~FeedbackStore() {
  for (rocksdb::ColumnFamilyHandle* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
  // Close() waits for background work and syncs the WAL: a clean shutdown needs no recovery.
  db_->Close().PermitUncheckedError();
  delete db_;
}

absl::Status FeedbackStore::CheckFormatVersion() {
  absl::StatusOr<std::optional<std::string>> stored = Get(meta(), kFormatVersionKey);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) {
    rocksdb::WriteOptions write;
    write.sync = true;
    return FromRocks(
        db_->Put(write, meta(), kFormatVersionKey, std::to_string(kStoreFormatVersion)),
        "writing format version");
  }
  int version = 0;
  if (!absl::SimpleAtoi(**stored, &version)) {
    return absl::DataLossError(absl::StrCat("data directory ", options_.path,
                                            ": unreadable format version '", **stored, "'"));
  }
  if (version > kStoreFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", options_.path, " has storage format ", version,
        " but this tailord supports up to ", kStoreFormatVersion, ": upgrade tailord"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> FeedbackStore::Get(rocksdb::ColumnFamilyHandle* family,
                                                              absl::string_view key) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), family, AsSlice(key), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, "read");
  return value;
}

absl::Status FeedbackStore::Corrupt(absl::string_view what, absl::string_view user_id) {
  corrupt_records_.fetch_add(1, std::memory_order_relaxed);
  return absl::DataLossError(absl::StrCat("corrupt ", what, " record for user '", user_id, "'"));
}

namespace {

// meta key of schema version `version`.
std::string SchemaVersionKey(uint32_t version) {
  return absl::StrCat(kSchemaKey, "/v/", BigEndian(version, 4));
}

// Version and ids as a record made before schema versions implies them.
void FillSchemaDefaults(records::SchemaRecord& record) {
  if (record.version() == 0) record.set_version(1);
  for (int i = 0; i < record.features_size(); ++i) {
    if (record.features(i).id() == 0)
      record.mutable_features(i)->set_id(static_cast<uint32_t>(i + 1));
  }
}

}  // namespace

absl::StatusOr<std::vector<records::SchemaRecord>> FeedbackStore::SchemaVersions() {
  std::vector<records::SchemaRecord> versions;
  rocksdb::ReadOptions read;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, meta()));
  const std::string prefix = absl::StrCat(kSchemaKey, "/v/");
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    records::SchemaRecord record;
    if (!record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      corrupt_records_.fetch_add(1, std::memory_order_relaxed);
      return absl::DataLossError("corrupt schema version record in the data directory");
    }
    FillSchemaDefaults(record);
    versions.push_back(std::move(record));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading schema versions");
  if (!versions.empty()) return versions;
  // A directory made before schema versions: its one schema is version 1.
  absl::StatusOr<std::optional<std::string>> stored = Get(meta(), kSchemaKey);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return versions;
  records::SchemaRecord record;
  if (!record.ParseFromString(**stored)) {
    corrupt_records_.fetch_add(1, std::memory_order_relaxed);
    return absl::DataLossError("corrupt schema record in the data directory");
  }
  FillSchemaDefaults(record);
  versions.push_back(std::move(record));
  return versions;
}

absl::StatusOr<uint32_t> FeedbackStore::AddSchemaVersion(records::SchemaRecord schema) {
  absl::StatusOr<std::vector<records::SchemaRecord>> versions = SchemaVersions();
  if (!versions.ok()) return versions.status();
  rocksdb::WriteBatch batch;
  // The versions so far are all kept (a directory made before schema versions gets its
  // version 1 written out now).
  for (const records::SchemaRecord& v : *versions) {
    batch.Put(meta(), SchemaVersionKey(v.version()), v.SerializeAsString());
  }
  const uint32_t version = versions->empty() ? 1 : versions->back().version() + 1;
  schema.set_version(version);
  FillSchemaDefaults(schema);
  const std::string value = schema.SerializeAsString();
  batch.Put(meta(), SchemaVersionKey(version), value);
  batch.Put(meta(), kSchemaKey, value);
  rocksdb::WriteOptions write;
  write.sync = true;
  if (absl::Status s = FromRocks(db_->Write(write, &batch), "writing schema version"); !s.ok()) {
    return s;
  }
  return version;
}

absl::StatusOr<std::optional<records::UserState>> FeedbackStore::ReadState(
    absl::string_view user_id) {
  absl::StatusOr<std::optional<std::string>> value = Get(state(), UserPrefix(user_id));
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::nullopt;
  records::UserState parsed;
  if (!parsed.ParseFromString(**value)) return Corrupt("state", user_id);
  return parsed;
}

absl::StatusOr<std::optional<records::IdempotencyRecord>> FeedbackStore::FindEvent(
    absl::string_view user_id, absl::string_view event_id) {
  absl::StatusOr<std::optional<std::string>> value =
      Get(idempotency(), IdempotencyKey(user_id, event_id));
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::nullopt;
  records::IdempotencyRecord parsed;
  if (!parsed.ParseFromString(**value)) return Corrupt("idempotency", user_id);
  return parsed;
}

absl::Status FeedbackStore::CheckFreeSpace() {
  if (options_.min_free_bytes == 0) return absl::OkStatus();
  const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t checked = free_checked_micros_.load(std::memory_order_relaxed);
  if (now - checked >= 1'000'000 &&
      free_checked_micros_.compare_exchange_strong(checked, now, std::memory_order_relaxed)) {
    struct statvfs fs;
    if (::statvfs(options_.path.c_str(), &fs) == 0) {
      free_bytes_.store(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize,
                        std::memory_order_relaxed);
    }
  }
  const uint64_t free_bytes = free_bytes_.load(std::memory_order_relaxed);
  if (free_bytes >= options_.min_free_bytes) {
    // A write that met a full disk left RocksDB refusing writes until it is resumed.
    if (needs_resume_.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lock(resume_mu_);
      if (needs_resume_.load(std::memory_order_relaxed)) {
        // Busy: RocksDB's own recovery from the error is still running.
        if (const rocksdb::Status resumed = db_->Resume(); !resumed.ok()) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "storage: disk full: space is back, but RocksDB has not resumed writing yet (",
              resumed.ToString(), "); retry shortly"));
        }
        needs_resume_.store(false, std::memory_order_relaxed);
      }
    }
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "storage: disk full: ", free_bytes >> 20, " MiB free in ", options_.path, ", below the ",
      options_.min_free_bytes >> 20,
      " MiB reserve (--min_free_disk_mb); writes resume by themselves once space is freed"));
}

absl::Status FeedbackStore::Commit(std::span<const UserCommit> commits,
                                   std::optional<LogPosition> position) {
  if (absl::Status space = CheckFreeSpace(); !space.ok()) return space;
  rocksdb::WriteBatch batch;
  if (position.has_value()) {
    batch.Put(meta(), LogPositionKey(position->partition), BigEndian(position->sequence, 8));
  }
  std::string buffer;
  for (const UserCommit& commit : commits) {
    if (commit.user_id.size() > kMaxEncodedUserIdBytes) {
      return absl::InvalidArgumentError("user_id: too long to store");
    }
    for (const AppliedEvent& event : commit.events) {
      event.record.SerializeToString(&buffer);
      batch.Put(history(), HistoryKey(commit.user_id, event.record.sequence()), buffer);
      event.idempotency.SerializeToString(&buffer);
      batch.Put(idempotency(), IdempotencyKey(commit.user_id, event.record.event_id()), buffer);
    }
    commit.state.SerializeToString(&buffer);
    batch.Put(state(), UserPrefix(commit.user_id), buffer);
  }
  rocksdb::WriteOptions write;
  write.sync = options_.sync_wal;
#if defined(__SANITIZE_THREAD__)
  std::lock_guard<std::mutex> serialize(tsan_write_mu_);
#endif
  const auto started = std::chrono::steady_clock::now();
  const rocksdb::Status written = db_->Write(write, &batch);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(kCommitLatencyBounds.begin(), kCommitLatencyBounds.end(), seconds) -
      kCommitLatencyBounds.begin());
  commit_latency_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  commit_latency_nanos_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  if (written.IsNoSpace()) needs_resume_.store(true, std::memory_order_relaxed);
  return FromRocks(written, "commit");
}

absl::Status FeedbackStore::ForEachInUserRange(
    rocksdb::ColumnFamilyHandle* family, absl::string_view user_id,
    const rocksdb::Snapshot* snapshot,
    absl::FunctionRef<bool(const rocksdb::Slice& key, const rocksdb::Slice& value)> visit) {
  const std::string prefix = UserPrefix(user_id);
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  read.iterate_upper_bound = &upper_slice;  // the scan never reads past this user's range
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, family));
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    if (!visit(it->key(), it->value())) break;
  }
  return FromRocks(it->status(), "user range scan");
}

absl::Status FeedbackStore::ScanHistoryAt(
    absl::string_view user_id, const rocksdb::Snapshot* snapshot,
    absl::FunctionRef<bool(const records::FeedbackRecord&)> visit) {
  records::FeedbackRecord record;
  bool corrupt = false;
  absl::Status scan = ForEachInUserRange(
      history(), user_id, snapshot, [&](const rocksdb::Slice&, const rocksdb::Slice& value) {
        if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          corrupt = true;
          return false;
        }
        return visit(record);
      });
  if (corrupt) return Corrupt("history", user_id);
  return scan;
}

absl::Status FeedbackStore::ScanHistory(
    absl::string_view user_id, absl::FunctionRef<bool(const records::FeedbackRecord&)> visit) {
  return ScanHistoryAt(user_id, nullptr, visit);
}

absl::StatusOr<UserExport> FeedbackStore::ExportUser(absl::string_view user_id) {
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  UserExport result;
  absl::Status status = [&]() -> absl::Status {
    rocksdb::ReadOptions read;
    read.snapshot = snapshot;
    std::string value;
    rocksdb::Status s = db_->Get(read, state(), UserPrefix(user_id), &value);
    if (s.ok()) {
      records::UserState parsed;
      if (!parsed.ParseFromString(value)) return Corrupt("state", user_id);
      result.state = std::move(parsed);
    } else if (!s.IsNotFound()) {
      return FromRocks(s, "export state");
    }
    return ScanHistoryAt(user_id, snapshot, [&](const records::FeedbackRecord& record) {
      result.history.push_back(record);
      return true;
    });
  }();
  db_->ReleaseSnapshot(snapshot);
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<DeletedUser> FeedbackStore::DeleteUser(absl::string_view user_id,
                                                      std::optional<LogPosition> position) {
  const std::string state_key = UserPrefix(user_id);
  DeletedUser deleted;
  rocksdb::WriteBatch batch;
  if (position.has_value()) {
    batch.Put(meta(), LogPositionKey(position->partition), BigEndian(position->sequence, 8));
  }

  std::string ignored;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), state(), state_key, &ignored);
  if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "delete: read state");
  deleted.existed = s.ok();
  batch.Delete(state(), state_key);

  // Point deletes (not DeleteRange) so the caller learns exactly what was removed; the
  // caller holds the user's lock, so nothing is added to these ranges meanwhile.
  for (const auto& range : {std::pair{history(), &deleted.history_records},
                            std::pair{idempotency(), &deleted.idempotency_keys}}) {
    rocksdb::ColumnFamilyHandle* family = range.first;
    uint64_t* counter = range.second;
    absl::Status scan = ForEachInUserRange(family, user_id, nullptr,
                                           [&](const rocksdb::Slice& key, const rocksdb::Slice&) {
                                             batch.Delete(family, key);
                                             ++*counter;
                                             return true;
                                           });
    if (!scan.ok()) return scan;
  }
  deleted.existed = deleted.existed || deleted.history_records > 0;
  rocksdb::WriteOptions write;
  write.sync = options_.sync_wal;
#if defined(__SANITIZE_THREAD__)
  std::lock_guard<std::mutex> serialize(tsan_write_mu_);
#endif
  if (absl::Status w = FromRocks(db_->Write(write, &batch), "delete"); !w.ok()) return w;
  return deleted;
}

absl::StatusOr<std::map<int, uint64_t>> FeedbackStore::ReadLogPositions() {
  std::map<int, uint64_t> positions;
  const std::string upper = PrefixSuccessor(kLogPositionPrefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read;
  read.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, meta()));
  const size_t prefix = sizeof(kLogPositionPrefix) - 1;
  for (it->Seek(kLogPositionPrefix); it->Valid(); it->Next()) {
    if (it->key().size() != prefix + 4 || it->value().size() != 8) {
      corrupt_records_.fetch_add(1, std::memory_order_relaxed);
      return absl::DataLossError("storage: malformed log position record");
    }
    const auto partition =
        static_cast<int>(FromBigEndian(absl::string_view(it->key().data() + prefix, 4)));
    positions[partition] = FromBigEndian(absl::string_view(it->value().data(), 8));
  }
  if (absl::Status s = FromRocks(it->status(), "log position scan"); !s.ok()) return s;
  return positions;
}

absl::Status FeedbackStore::WriteLogPosition(LogPosition position) {
  if (absl::Status space = CheckFreeSpace(); !space.ok()) return space;
  rocksdb::WriteOptions write;
  write.sync = options_.sync_wal;
  const std::string key = LogPositionKey(position.partition);
  if (position.sequence == 0) return FromRocks(db_->Delete(write, meta(), key), "log position");
  return FromRocks(db_->Put(write, meta(), key, BigEndian(position.sequence, 8)), "log position");
}

absl::Status FeedbackStore::ScanStates(
    absl::FunctionRef<void(absl::string_view, const absl::StatusOr<records::UserState>&)> visit) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), state()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::string_view key(it->key().data(), it->key().size());
    std::optional<DecodedUserKey> decoded = DecodeUserKey(key);
    if (!decoded.has_value() || !decoded->rest.empty()) {
      corrupt_records_.fetch_add(1, std::memory_order_relaxed);
      continue;  // no user id can be recovered from a malformed key
    }
    records::UserState parsed;
    if (parsed.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      visit(decoded->user_id, parsed);
    } else {
      visit(decoded->user_id, Corrupt("state", decoded->user_id));
    }
  }
  return FromRocks(it->status(), "state scan");
}

absl::StatusOr<std::optional<records::PopulationSnapshot>> FeedbackStore::ReadPopulation() {
  absl::StatusOr<std::optional<std::string>> value = Get(meta(), kPopulationKey);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::nullopt;
  records::PopulationSnapshot parsed;
  if (!parsed.ParseFromString(**value)) {
    corrupt_records_.fetch_add(1, std::memory_order_relaxed);
    return absl::DataLossError("corrupt population snapshot");
  }
  return parsed;
}

absl::Status FeedbackStore::WritePopulation(const records::PopulationSnapshot& snapshot) {
#if defined(__SANITIZE_THREAD__)
  std::lock_guard<std::mutex> serialize(tsan_write_mu_);
#endif
  return FromRocks(
      db_->Put(rocksdb::WriteOptions(), meta(), kPopulationKey, snapshot.SerializeAsString()),
      "writing population snapshot");
}

absl::StatusOr<uint64_t> FeedbackStore::CreateCheckpoint(const std::string& directory) {
  if (absl::Status space = CheckFreeSpace(); !space.ok()) return space;
  // What the caller can fix is said in their terms, before RocksDB (whose errors name its
  // internal temporary directory) is asked.
  namespace fs = std::filesystem;
  const fs::path target(directory);
  std::error_code error;
  if (!target.is_absolute()) {
    return absl::InvalidArgumentError("directory: must be an absolute path");
  }
  if (fs::symlink_status(target, error).type() != fs::file_type::not_found) {
    return absl::InvalidArgumentError(absl::StrCat(
        "directory: ", directory, " already exists; a checkpoint is written into a new directory"));
  }
  const fs::path parent = target.parent_path();
  if (!fs::is_directory(parent, error)) {
    return absl::InvalidArgumentError(absl::StrCat("directory: parent directory ", parent.string(),
                                                   " does not exist on the server"));
  }
  if (::access(parent.c_str(), W_OK | X_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("directory: parent directory ", parent.string(),
                                                   " is not writable by the server"));
  }
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(db_, &raw);
  if (!s.ok()) return FromRocks(s, "checkpoint");
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  uint64_t sequence = 0;
  // log_size_for_flush = 0: always flush memtables first, so the checkpoint needs no WAL
  // replay and starts fast.
  s = checkpoint->CreateCheckpoint(directory, 0, &sequence);
  if (!s.ok()) return FromRocks(s, absl::StrCat("checkpoint into ", directory));
  return sequence;
}

StoreStats FeedbackStore::Stats() const {
  StoreStats stats;
  for (rocksdb::ColumnFamilyHandle* family : handles_) {
    uint64_t value = 0;
    if (db_->GetIntProperty(family, rocksdb::DB::Properties::kLiveSstFilesSize, &value)) {
      stats.live_sst_bytes += value;
    }
    if (db_->GetIntProperty(family, rocksdb::DB::Properties::kCurSizeAllMemTables, &value)) {
      stats.memtable_bytes += value;
    }
    if (db_->GetIntProperty(family, rocksdb::DB::Properties::kEstimatePendingCompactionBytes,
                            &value)) {
      stats.pending_compaction_bytes += value;
    }
  }
  uint64_t running = 0;
  if (db_->GetIntProperty(rocksdb::DB::Properties::kNumRunningCompactions, &running)) {
    stats.running_compactions = running;
  }
  stats.stall_micros = statistics_->getTickerCount(rocksdb::STALL_MICROS);
  stats.corrupt_records = corrupt_records_.load(std::memory_order_relaxed);
  struct statvfs fs;
  if (::statvfs(options_.path.c_str(), &fs) == 0) {
    stats.disk_free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    stats.disk_capacity_bytes = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  }
  for (size_t i = 0; i < commit_latency_counts_.size(); ++i) {
    stats.commit_latency_counts[i] = commit_latency_counts_[i].load(std::memory_order_relaxed);
  }
  stats.commit_latency_seconds_sum =
      static_cast<double>(commit_latency_nanos_.load(std::memory_order_relaxed)) / 1e9;
  return stats;
}

}  // namespace tailor::storage
