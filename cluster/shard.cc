#include "cluster/shard.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/stable_hash.h"

namespace tailor::cluster {
namespace {

// Seeds of the keyed digests below (fixed: every shard and release must agree).
constexpr uint64_t kDeletionDigestSeed = 0xde1e7ed;
constexpr uint64_t kMessageIdSeeds[] = {0x1d5eed1, 0x1d5eed2};
// Appends retried after catching up, before giving up on a partition others keep appending to.
constexpr int kAppendAttempts = 8;

uint64_t UserDigest(absl::string_view storage_id) {
  return model::StableHash({storage_id}, kDeletionDigestSeed);
}

// The log's de-duplication id of an event: a 128-bit digest of (user, event), since both are
// arbitrary bytes and a NATS header is not.
std::string MessageId(absl::string_view storage_id, absl::string_view event_id) {
  return absl::StrCat(
      absl::Hex(model::StableHash({storage_id, event_id}, kMessageIdSeeds[0]), absl::kZeroPad16),
      absl::Hex(model::StableHash({storage_id, event_id}, kMessageIdSeeds[1]), absl::kZeroPad16));
}

absl::Status NotOwned(int partition) {
  return absl::AbortedError(
      absl::StrCat("cluster: partition ", partition, " is not owned here; route the call again"));
}

engine::FeedbackResult Duplicate(const storage::records::IdempotencyRecord& seen) {
  engine::FeedbackResult result;
  result.duplicate = true;
  result.user_feedback_count = seen.user_feedback_count();
  result.predicted_chosen_probability = seen.predicted_chosen_probability();
  result.sequence = seen.sequence();
  return result;
}

v1::LogEntry ToEntry(const engine::FeedbackInput& event) {
  v1::LogEntry entry;
  v1::LoggedFeedback* logged = entry.mutable_feedback();
  logged->set_user_id(event.user_id);
  logged->set_event_id(event.event_id);
  logged->set_prompt_id(event.prompt_id);
  logged->set_chosen_id(event.chosen.id);
  logged->mutable_chosen_features()->Add(event.chosen.features.begin(),
                                         event.chosen.features.end());
  logged->set_rejected_id(event.rejected.id);
  logged->mutable_rejected_features()->Add(event.rejected.features.begin(),
                                           event.rejected.features.end());
  logged->set_timestamp_micros(event.timestamp_micros);
  return entry;
}

// The engine's input for a logged event; it points into `logged`.
engine::FeedbackInput FromEntry(const v1::LoggedFeedback& logged) {
  engine::FeedbackInput input;
  input.user_id = logged.user_id();
  input.event_id = logged.event_id();
  input.prompt_id = logged.prompt_id();
  input.chosen.id = logged.chosen_id();
  input.chosen.features = {logged.chosen_features().data(),
                           static_cast<size_t>(logged.chosen_features().size())};
  input.rejected.id = logged.rejected_id();
  input.rejected.features = {logged.rejected_features().data(),
                             static_cast<size_t>(logged.rejected_features().size())};
  input.timestamp_micros = logged.timestamp_micros();
  return input;
}

}  // namespace

struct ClusterShard::Partition {
  std::mutex mu;  // serializes this shard's appends to and applies of the partition
  // The last log sequence applied (or skipped) here; written under mu, read anywhere.
  std::atomic<uint64_t> applied{0};
  bool dirty = false;  // guarded by mu: an append's outcome is unknown, or applying failed
  // guarded by mu: the map revision of the last handoff to another shard applied here; a map
  // read older than that is stale and never makes this shard take the partition back.
  uint64_t fenced_revision = 0;
  std::atomic<Role> role{Role::kNone};
};

ClusterShard::ClusterShard(engine::PreferenceEngine& engine, FeedbackLog& log,
                           PartitionDirectory& directory, ReferenceExchange* exchange,
                           ShardOptions options)
    : engine_(engine),
      log_(log),
      directory_(directory),
      exchange_(exchange),
      options_(std::move(options)),
      partitions_(new Partition[static_cast<size_t>(log.options().partitions)]) {}

ClusterShard::~ClusterShard() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
}

absl::StatusOr<std::unique_ptr<ClusterShard>> ClusterShard::Start(engine::PreferenceEngine& engine,
                                                                  FeedbackLog& log,
                                                                  PartitionDirectory& directory,
                                                                  ReferenceExchange* exchange,
                                                                  ShardOptions options) {
  if (options.name.empty()) return absl::InvalidArgumentError("cluster: a shard needs a name");
  std::unique_ptr<ClusterShard> shard(
      new ClusterShard(engine, log, directory, exchange, std::move(options)));
  absl::StatusOr<std::map<int, uint64_t>> positions = engine.store().ReadLogPositions();
  if (!positions.ok()) return positions.status();
  if (positions->empty() && engine.Stats().users > 0) {
    return absl::FailedPreconditionError(
        "cluster: this data directory holds users but no log positions: it was made by a single "
        "node, and cluster mode materializes its data from the log. Start cluster mode on an "
        "empty data directory");
  }
  for (const auto& [partition, sequence] : *positions) {
    if (partition < 0 || partition >= shard->partition_count()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cluster: this data directory has partition ", partition,
                       " but the log has ", shard->partition_count()));
    }
    shard->partitions_[static_cast<size_t>(partition)].applied = sequence;
  }
  v1::ShardRecord record;
  record.set_address(shard->options_.address);
  record.set_registered_micros(absl::ToUnixMicros(absl::Now()));
  if (absl::Status s = directory.RegisterShard(shard->options_.name, record); !s.ok()) return s;
  if (absl::Status s = shard->Follow(/*slow=*/true); !s.ok()) return s;
  shard->loop_ = std::thread([s = shard.get()] { s->Loop(); });
  return shard;
}

absl::StatusOr<ClusterShard::Owner> ClusterShard::OwnerOf(absl::string_view storage_id) const {
  Owner owner;
  owner.partition = FeedbackLog::PartitionOf(storage_id, partition_count());
  std::lock_guard<std::mutex> lock(view_mu_);
  if (map_.revision == 0) {
    return absl::UnavailableError(
        "cluster: there is no partition map yet; assign the partitions with 'tailorctl cluster "
        "rebalance'");
  }
  const v1::Assignment& assignment = map_.map.assignments(owner.partition);
  owner.shard = assignment.owner();
  if (owner.shard.empty()) {
    return absl::UnavailableError(absl::StrCat("cluster: partition ", owner.partition,
                                               " has no owner; see 'tailorctl cluster status'"));
  }
  if (owner.shard == options_.name) {
    if (partitions_[static_cast<size_t>(owner.partition)].role != Role::kOwned) {
      return absl::UnavailableError(absl::StrCat("cluster: partition ", owner.partition,
                                                 " is being taken over here; retry shortly"));
    }
    owner.local = true;
    owner.address = options_.address;
    return owner;
  }
  auto shard = shards_.find(owner.shard);
  if (shard == shards_.end() || shard->second.address().empty()) {
    return absl::UnavailableError(absl::StrCat("cluster: partition ", owner.partition,
                                               " is owned by shard '", owner.shard,
                                               "', whose address is unknown"));
  }
  owner.address = shard->second.address();
  return owner;
}

absl::Status ClusterShard::Apply(int partition, uint64_t sequence, absl::string_view payload) {
  Partition& part = partitions_[static_cast<size_t>(partition)];
  const storage::LogPosition position{partition, sequence};
  v1::LogEntry entry;
  if (!entry.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError(absl::StrCat("cluster: log entry ", sequence, " of partition ",
                                            partition, " cannot be decoded"));
  }
  switch (entry.entry_case()) {
    case v1::LogEntry::kFeedback: {
      const engine::FeedbackInput input = FromEntry(entry.feedback());
      absl::StatusOr<engine::FeedbackResult> result =
          std::move(engine_.RecordFeedbackBatch({&input, 1}, position).front());
      // Invalid input was refused before it was appended; should a newer release refuse what
      // an older one accepted, the entry is skipped like a duplicate.
      if (!result.ok() && result.status().code() != absl::StatusCode::kInvalidArgument) {
        return result.status();
      }
      break;
    }
    case v1::LogEntry::kDeletion: {
      for (const std::string& user_id : engine_.UserIds()) {
        if (FeedbackLog::PartitionOf(user_id, partition_count()) != partition ||
            UserDigest(user_id) != entry.deletion().user_digest()) {
          continue;
        }
        if (absl::StatusOr<storage::DeletedUser> d = engine_.DeleteUser(user_id, position);
            !d.ok()) {
          return d.status();
        }
      }
      break;
    }
    case v1::LogEntry::kHandoff:
      if (entry.handoff().owner() != options_.name) {
        part.fenced_revision = std::max(part.fenced_revision, entry.handoff().map_revision());
        if (part.role == Role::kOwned) part.role = Role::kNone;
      }
      break;
    case v1::LogEntry::ENTRY_NOT_SET:
      // A kind of entry this release does not know, so written by a newer one (during a
      // rolling upgrade). Skipping it could silently drop acknowledged feedback: the partition
      // stops here until this shard runs a release that knows it.
      return absl::FailedPreconditionError(
          absl::StrCat("cluster: log entry ", sequence, " of partition ", partition,
                       " is of a kind this release does not know (written by a newer release); "
                       "upgrade this shard to apply it"));
  }
  part.applied = sequence;
  replayed_entries_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ClusterShard::CatchUpLocked(int partition) {
  Partition& part = partitions_[static_cast<size_t>(partition)];
  absl::Status applied;
  const absl::Status replayed =
      log_.Replay(partition, part.applied, [&](uint64_t sequence, absl::string_view payload) {
        applied = Apply(partition, sequence, payload);
        return applied.ok();
      });
  if (!applied.ok() || !replayed.ok()) {
    part.dirty = true;
    return applied.ok() ? replayed : applied;
  }
  part.dirty = false;
  return absl::OkStatus();
}

absl::StatusOr<FeedbackLog::Appended> ClusterShard::AppendLocked(int partition,
                                                                 absl::string_view message_id,
                                                                 absl::string_view payload) {
  Partition& part = partitions_[static_cast<size_t>(partition)];
  const Role before = part.role;
  for (int attempt = 0; attempt < kAppendAttempts; ++attempt) {
    const auto started = std::chrono::steady_clock::now();
    absl::StatusOr<FeedbackLog::Appended> appended =
        log_.Append(partition, message_id, payload, part.applied.load());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const auto bucket = static_cast<size_t>(
        std::lower_bound(kAppendLatencyBounds.begin(), kAppendLatencyBounds.end(), seconds) -
        kAppendLatencyBounds.begin());
    append_latency_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
    append_latency_nanos_.fetch_add(static_cast<uint64_t>(seconds * 1e9),
                                    std::memory_order_relaxed);
    if (appended.ok()) return appended;
    if (appended.status().code() != absl::StatusCode::kAborted) {
      part.dirty = true;  // it may have been appended all the same
      return appended.status();
    }
    // Another shard appended first: apply what it wrote, then try again.
    if (absl::Status s = CatchUpLocked(partition); !s.ok()) return s;
    if (before == Role::kOwned && part.role != Role::kOwned) {
      return absl::AbortedError(
          absl::StrCat("cluster: partition ", partition, " was handed to another shard"));
    }
  }
  return absl::UnavailableError(absl::StrCat("cluster: partition ", partition, ": ",
                                             kAppendAttempts,
                                             " appends in a row lost to other writers; retry"));
}

absl::Status ClusterShard::ReadyToWriteLocked(int partition) {
  Partition& part = partitions_[static_cast<size_t>(partition)];
  if (part.role != Role::kOwned) return NotOwned(partition);
  if (part.dirty) {
    if (absl::Status s = CatchUpLocked(partition); !s.ok()) return s;
    if (part.role != Role::kOwned) return NotOwned(partition);
  }
  return absl::OkStatus();
}

absl::StatusOr<engine::FeedbackResult> ClusterShard::RecordFeedback(
    const engine::FeedbackInput& event) {
  const int partition = FeedbackLog::PartitionOf(event.user_id, partition_count());
  Partition& part = partitions_[static_cast<size_t>(partition)];
  std::lock_guard<std::mutex> lock(part.mu);
  if (absl::Status s = ReadyToWriteLocked(partition); !s.ok()) return s;
  if (absl::Status s = engine_.CheckFeedback(event); !s.ok()) return s;
  auto seen = [&]() { return engine_.store().FindEvent(event.user_id, event.event_id); };
  absl::StatusOr<std::optional<storage::records::IdempotencyRecord>> before = seen();
  if (!before.ok()) return before.status();
  if (before->has_value()) return Duplicate(**before);

  // The time is fixed now, so that every replay applies the same event.
  engine::FeedbackInput fixed = event;
  if (fixed.timestamp_micros == 0) fixed.timestamp_micros = absl::ToUnixMicros(absl::Now());
  absl::StatusOr<FeedbackLog::Appended> appended = AppendLocked(
      partition, MessageId(event.user_id, event.event_id), ToEntry(fixed).SerializeAsString());
  if (!appended.ok()) {
    return appended.status().code() == absl::StatusCode::kAborted ? NotOwned(partition)
                                                                  : appended.status();
  }
  if (appended->duplicate) {
    // Appended by an earlier attempt whose outcome was lost: catching up applies that copy.
    if (absl::Status s = CatchUpLocked(partition); !s.ok()) return s;
    absl::StatusOr<std::optional<storage::records::IdempotencyRecord>> after = seen();
    if (!after.ok()) return after.status();
    if (after->has_value()) return Duplicate(**after);
    engine::FeedbackResult erased;  // deleted with its user since
    erased.duplicate = true;
    return erased;
  }
  absl::StatusOr<engine::FeedbackResult> result = std::move(
      engine_.RecordFeedbackBatch({&fixed, 1}, storage::LogPosition{partition, appended->sequence})
          .front());
  if (!result.ok()) {
    part.dirty = true;  // in the log, not applied: the next write catches up first
    return result.status();
  }
  part.applied = appended->sequence;
  return result;
}

absl::StatusOr<storage::DeletedUser> ClusterShard::DeleteUser(absl::string_view storage_id) {
  const int partition = FeedbackLog::PartitionOf(storage_id, partition_count());
  Partition& part = partitions_[static_cast<size_t>(partition)];
  std::lock_guard<std::mutex> lock(part.mu);
  if (absl::Status s = ReadyToWriteLocked(partition); !s.ok()) return s;
  // Where the user's events are in the log: their history says.
  std::vector<uint64_t> sequences;
  absl::Status scanned =
      engine_.store().ScanHistory(storage_id, [&](const storage::records::FeedbackRecord& r) {
        if (r.log_sequence() != 0) sequences.push_back(r.log_sequence());
        return true;
      });
  if (!scanned.ok()) return scanned;

  v1::LogEntry entry;
  entry.mutable_deletion()->set_user_digest(UserDigest(storage_id));
  const int64_t now = absl::ToUnixMicros(absl::Now());
  absl::StatusOr<FeedbackLog::Appended> appended =
      AppendLocked(partition, absl::StrCat("delete-", absl::Hex(UserDigest(storage_id)), "-", now),
                   entry.SerializeAsString());
  if (!appended.ok()) {
    return appended.status().code() == absl::StatusCode::kAborted ? NotOwned(partition)
                                                                  : appended.status();
  }
  absl::StatusOr<storage::DeletedUser> deleted =
      engine_.DeleteUser(storage_id, storage::LogPosition{partition, appended->sequence});
  if (!deleted.ok()) {
    part.dirty = true;
    return deleted.status();
  }
  part.applied = appended->sequence;
  exchange_due_ = true;  // the user leaves the sample other shards borrow from

  // Nothing here (a repeated delete, perhaps after an erase failed): look in the log itself.
  if (sequences.empty()) {
    absl::Status searched = log_.Replay(partition, 0, [&](uint64_t sequence, absl::string_view p) {
      v1::LogEntry logged;
      if (logged.ParseFromArray(p.data(), static_cast<int>(p.size())) && logged.has_feedback() &&
          logged.feedback().user_id() == storage_id) {
        sequences.push_back(sequence);
      }
      return true;
    });
    if (!searched.ok()) return searched;
  }
  for (uint64_t sequence : sequences) {
    absl::Status erased = log_.Erase(sequence);
    if (!erased.ok() && erased.code() != absl::StatusCode::kNotFound) {
      return absl::UnavailableError(absl::StrCat(
          "cluster: the user is deleted here, but erasing their events from the log failed (",
          erased.message(), "); call DeleteUser again to finish"));
    }
  }
  return deleted;
}

absl::Status ClusterShard::TakeOver(int partition, uint64_t map_revision) {
  Partition& part = partitions_[static_cast<size_t>(partition)];
  std::lock_guard<std::mutex> lock(part.mu);
  if (absl::Status s = CatchUpLocked(partition); !s.ok()) return s;
  if (part.fenced_revision > map_revision) {
    return absl::AbortedError(absl::StrCat("cluster: partition ", partition,
                                           " was handed on after map revision ", map_revision));
  }
  v1::LogEntry entry;
  entry.mutable_handoff()->set_owner(options_.name);
  entry.mutable_handoff()->set_map_revision(map_revision);
  absl::StatusOr<FeedbackLog::Appended> appended =
      AppendLocked(partition, absl::StrCat("handoff-", options_.name, "-", map_revision),
                   entry.SerializeAsString());
  if (!appended.ok()) return appended.status();
  if (!appended->duplicate) {
    part.applied = appended->sequence;
    if (absl::Status s = engine_.store().WriteLogPosition({partition, appended->sequence});
        !s.ok()) {
      return s;
    }
  }
  part.role = Role::kOwned;
  partitions_taken_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ClusterShard::Drop(const std::vector<int>& partitions) {
  if (partitions.empty()) return absl::OkStatus();
  std::vector<std::vector<std::string>> users(static_cast<size_t>(partition_count()));
  for (std::string& user_id : engine_.UserIds()) {
    users[static_cast<size_t>(FeedbackLog::PartitionOf(user_id, partition_count()))].push_back(
        std::move(user_id));
  }
  for (int partition : partitions) {
    Partition& part = partitions_[static_cast<size_t>(partition)];
    std::lock_guard<std::mutex> lock(part.mu);
    part.role = Role::kNone;
    for (const std::string& user_id : users[static_cast<size_t>(partition)]) {
      if (absl::StatusOr<storage::DeletedUser> d = engine_.DeleteUser(user_id); !d.ok()) {
        return d.status();
      }
    }
    if (absl::Status s = engine_.store().WriteLogPosition({partition, 0}); !s.ok()) return s;
    part.applied = 0;
    part.dirty = false;
    partitions_dropped_.fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

absl::Status ClusterShard::Follow(bool slow) {
  absl::StatusOr<MapVersion> read = directory_.ReadMap();
  if (!read.ok()) return read.status();
  MapVersion version = *std::move(read);
  if (slow) {
    absl::StatusOr<std::map<std::string, v1::ShardRecord>> shards = directory_.Shards();
    if (!shards.ok()) return shards.status();
    std::lock_guard<std::mutex> lock(view_mu_);
    shards_ = *std::move(shards);
  }
  if (version.revision != 0 && version.map.assignments_size() != partition_count()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cluster: the partition map has ", version.map.assignments_size(),
                     " partitions but the log has ", partition_count()));
  }
  {
    std::lock_guard<std::mutex> lock(view_mu_);
    map_ = version;
  }
  if (version.revision == 0) return absl::OkStatus();

  absl::Status status;
  std::vector<int> lost;
  std::map<int, uint64_t> lag;
  for (int p = 0; p < partition_count(); ++p) {
    Partition& part = partitions_[static_cast<size_t>(p)];
    const v1::Assignment& assignment = version.map.assignments(p);
    if (assignment.owner() == options_.name) {
      if (part.role != Role::kOwned) status.Update(TakeOver(p, version.revision));
    } else if (assignment.moving_to() == options_.name) {
      part.role = Role::kReceiving;
      {
        std::lock_guard<std::mutex> lock(part.mu);
        if (absl::Status s = CatchUpLocked(p); !s.ok()) {
          status.Update(s);
          continue;
        }
      }
      absl::StatusOr<uint64_t> last = log_.LastSequence(p);
      if (!last.ok()) {
        status.Update(last.status());
        continue;
      }
      if (part.applied < *last) continue;  // more arrived meanwhile: the next pass goes on
      // Caught up: flip the map, then fence the old owner off with a handoff entry.
      v1::PartitionMap next = version.map;
      next.mutable_assignments(p)->set_owner(options_.name);
      next.mutable_assignments(p)->clear_moving_to();
      absl::StatusOr<uint64_t> revision = directory_.CompareAndSetMap(next, version.revision);
      if (!revision.ok()) {
        if (revision.status().code() != absl::StatusCode::kAborted)
          status.Update(revision.status());
        break;  // the map changed: the next pass reads it again
      }
      version = {std::move(next), *revision};
      {
        std::lock_guard<std::mutex> lock(view_mu_);
        map_ = version;
      }
      status.Update(TakeOver(p, version.revision));
    } else if (part.role != Role::kNone || part.applied > 0) {
      lost.push_back(p);
    }
    if (slow && part.role != Role::kNone) {
      absl::StatusOr<uint64_t> last = log_.LastSequence(p);
      if (last.ok()) lag[p] = *last > part.applied ? *last - part.applied : 0;
    }
  }
  status.Update(Drop(lost));
  if (slow) {
    std::lock_guard<std::mutex> lock(view_mu_);
    lag_ = std::move(lag);
  }
  return status;
}

absl::Status ClusterShard::Exchange() {
  const std::vector<engine::ExternalReference> mine =
      engine_.ReferenceSample(options_.exchange_users, options_.name + "/");
  if (absl::Status s = exchange_->Publish(
          options_.name, ++exchange_generation_, mine, engine_.LocalPopulations(),
          engine_.CalibrationSample(options_.exchange_calibration_users, options_.name + "/"));
      !s.ok()) {
    return s;
  }
  std::set<std::string> shards;
  {
    std::lock_guard<std::mutex> lock(view_mu_);
    for (const auto& [name, record] : shards_) shards.insert(name);
  }
  absl::StatusOr<ReferenceExchange::Samples> others = exchange_->Read(options_.name, shards);
  if (!others.ok()) return others.status();
  borrowed_references_ = others->references.size();
  borrowed_calibration_users_ = others->calibration.size();
  engine_.SetExternalReferences(std::make_shared<const std::vector<engine::ExternalReference>>(
      std::move(others->references)));
  engine_.SetExternalPopulations(std::move(others->populations));
  engine_.SetExternalCalibration(
      std::make_shared<const std::vector<engine::ExternalCalibrationUser>>(
          std::move(others->calibration)));
  return absl::OkStatus();
}

void ClusterShard::Loop() {
  auto last_slow = std::chrono::steady_clock::now();
  auto last_exchange = std::chrono::steady_clock::now() - std::chrono::hours(24);
  const auto slow_period = absl::ToChronoMilliseconds(options_.slow_poll);
  std::unique_lock<std::mutex> lock(stop_mu_);
  while (!stop_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.map_poll),
                            [this] { return stopping_; })) {
    lock.unlock();
    const auto now = std::chrono::steady_clock::now();
    const bool slow = now - last_slow >= slow_period;
    if (slow) last_slow = now;
    // A failed pass (NATS unreachable, a map conflict, a partition that cannot be caught up)
    // is retried at the next one; what it leaves undone shows in Stats(), and why is reported.
    if (absl::Status s = Follow(slow); !s.ok()) Report(s);
    if (exchange_ != nullptr && options_.exchange_period > absl::ZeroDuration() &&
        (exchange_due_.exchange(false) ||
         now - last_exchange >= absl::ToChronoMilliseconds(options_.exchange_period))) {
      last_exchange = now;
      if (absl::Status s = Exchange(); !s.ok()) {
        Report(s);
        exchange_failures_.fetch_add(1, std::memory_order_relaxed);
        exchange_due_ = true;
      }
    }
    lock.lock();
  }
}

void ClusterShard::Report(const absl::Status& status) {
  if (!options_.report) return;
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(reported_,
                [&](const auto& r) { return now - r.second >= std::chrono::minutes(1); });
  if (!reported_.try_emplace(status.ToString(), now).second) return;
  options_.report(status);
}

ClusterShard::RoutingTable ClusterShard::Routing() const {
  RoutingTable table;
  std::lock_guard<std::mutex> lock(view_mu_);
  table.map_revision = map_.revision;
  std::map<std::string, int> index;
  for (const auto& [name, record] : shards_) {
    index[name] = static_cast<int>(table.shards.size());
    table.shards.emplace_back(name, record.address());
  }
  if (index.find(options_.name) == index.end()) {  // not registered yet: still reachable
    table.shards.emplace_back(options_.name, options_.address);
    std::sort(table.shards.begin(), table.shards.end());
    index.clear();
    for (size_t i = 0; i < table.shards.size(); ++i) {
      index[table.shards[i].first] = static_cast<int>(i);
    }
  }
  if (map_.revision == 0) return table;
  for (const v1::Assignment& a : map_.map.assignments()) {
    auto owner = index.find(a.owner());
    table.owners.push_back(owner == index.end() || a.owner().empty() ? -1 : owner->second);
  }
  return table;
}

ClusterStats ClusterShard::Stats() const {
  ClusterStats stats;
  stats.partitions = partition_count();
  for (int p = 0; p < partition_count(); ++p) {
    const Role role = partitions_[static_cast<size_t>(p)].role;
    if (role == Role::kOwned) ++stats.owned;
    if (role == Role::kReceiving) ++stats.receiving;
  }
  {
    std::lock_guard<std::mutex> lock(view_mu_);
    stats.map_revision = map_.revision;
    stats.lag = lag_;
    if (map_.revision == 0) {
      stats.unowned = stats.partitions;
    } else {
      for (const v1::Assignment& a : map_.map.assignments()) stats.unowned += a.owner().empty();
    }
  }
  stats.partitions_taken = partitions_taken_.load(std::memory_order_relaxed);
  stats.partitions_dropped = partitions_dropped_.load(std::memory_order_relaxed);
  stats.replayed_entries = replayed_entries_.load(std::memory_order_relaxed);
  stats.borrowed_references = borrowed_references_.load(std::memory_order_relaxed);
  stats.borrowed_calibration_users = borrowed_calibration_users_.load(std::memory_order_relaxed);
  stats.exchange_failures = exchange_failures_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < stats.append_latency_counts.size(); ++i) {
    stats.append_latency_counts[i] = append_latency_counts_[i].load(std::memory_order_relaxed);
  }
  stats.append_latency_seconds_sum =
      static_cast<double>(append_latency_nanos_.load(std::memory_order_relaxed)) / 1e9;
  return stats;
}

}  // namespace tailor::cluster
