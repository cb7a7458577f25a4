// ClusterShard: one tailord in cluster mode. It materializes the partitions of the feedback log
// (cluster/feedback_log.h) that the partition map (cluster/partition_directory.h) gives it into
// its engine, and is the only way its engine is written:
//
// - Feedback for a partition it owns is appended to the log, conditional on the partition's
//   last sequence being the last one this shard applied, and then applied with that sequence
//   recorded in the same RocksDB write. So the shard's state is always a prefix of the log, an
//   ack means "in the replicated log and applied", and a writer that missed anything (an old
//   owner after a move) cannot append: its append is refused, it catches up, and it learns
//   from the new owner's handoff entry that the partition moved.
// - On start it replays each owned partition's tail after its stored position (everything, on
//   an empty disk) before it serves.
// - A background loop follows the map: a partition assigned to it is caught up and taken over
//   (a handoff entry appended); a partition moving to it is caught up while the old owner
//   still serves, then the map flipped by compare-and-set; a partition it lost is dropped.
// - Deleting a user appends a deletion entry (a keyed digest, not the id) and erases the
//   user's events from the log.
// - Every exchange period it publishes a sample of its established users and borrows the
//   other shards' as cold-start neighbours (cluster/reference_exchange.h).
#ifndef TAILOR_CLUSTER_SHARD_H_
#define TAILOR_CLUSTER_SHARD_H_

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cluster/feedback_log.h"
#include "cluster/partition_directory.h"
#include "cluster/reference_exchange.h"
#include "engine/preference_engine.h"

namespace tailor::cluster {

struct ShardOptions {
  std::string name;     // unique in the cluster
  std::string address;  // host:port where other shards and clients reach its gRPC API
  // How often the partition map is read: a moved partition's old owner may serve reads (never
  // acks writes) for up to about this long after the move.
  absl::Duration map_poll = absl::Milliseconds(100);
  // How often the shard addresses and each owned partition's lag are read.
  absl::Duration slow_poll = absl::Seconds(2);
  // Cold start across shards (cluster/reference_exchange.h): how often this shard publishes
  // a sample of its established users and reads the others' (0: never), and the sample's
  // size.
  absl::Duration exchange_period = absl::Seconds(30);
  int exchange_users = 100000;
  // Trust across shards: at most this many of the users this shard's trust fits held out are
  // lent with the sample (0: none; the others then fit trust from their own users only).
  int exchange_calibration_users = 400;
  // Told of what fails in the background (following the map, catching up a partition being
  // taken, the exchange): a new failure at once, the same one again at most once a minute.
  // tailord logs them. Called on the shard's own thread.
  std::function<void(const absl::Status&)> report;
};

// Upper bounds (seconds) of the log append latency histogram.
inline constexpr std::array<double, 12> kAppendLatencyBounds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};

struct ClusterStats {
  int partitions = 0;
  int owned = 0;
  int receiving = 0;  // moving here, catching up
  uint64_t map_revision = 0;
  uint64_t partitions_taken = 0;    // partitions taken over by this shard
  uint64_t partitions_dropped = 0;  // partitions this shard gave up
  uint64_t replayed_entries = 0;    // log entries applied by catching up
  // Owned partition -> entries in the log it has not applied (as of the last slow poll).
  std::map<int, uint64_t> lag;
  int unowned = 0;  // partitions the map gives to no shard
  // Other shards' established users this shard borrows as cold-start neighbours, and the
  // exchanges that failed (NATS unreachable).
  uint64_t borrowed_references = 0;
  uint64_t borrowed_calibration_users = 0;  // other shards' users this shard fits trust on
  uint64_t exchange_failures = 0;
  // Appends by latency: counts per kAppendLatencyBounds bucket (not cumulative), then above.
  std::array<uint64_t, kAppendLatencyBounds.size() + 1> append_latency_counts{};
  double append_latency_seconds_sum = 0;
};

class ClusterShard {
 public:
  // Reads the map, drops partitions it no longer owns, catches up the ones it owns, registers
  // its address, and starts following the map. `engine`, `log`, `directory` and `exchange`
  // (null: no cold start across shards) must outlive the shard.
  static absl::StatusOr<std::unique_ptr<ClusterShard>> Start(engine::PreferenceEngine& engine,
                                                             FeedbackLog& log,
                                                             PartitionDirectory& directory,
                                                             ReferenceExchange* exchange,
                                                             ShardOptions options);
  ~ClusterShard();
  ClusterShard(const ClusterShard&) = delete;
  ClusterShard& operator=(const ClusterShard&) = delete;

  struct Owner {
    int partition = 0;
    bool local = false;  // this shard owns it and has caught up
    std::string shard;
    std::string address;
  };
  // Where a user's calls go. UNAVAILABLE when no shard owns the user's partition (or its
  // owner's address is unknown).
  absl::StatusOr<Owner> OwnerOf(absl::string_view storage_id) const;

  // The partition map as this shard last read it, for clients that route by it.
  struct RoutingTable {
    uint64_t map_revision = 0;  // 0: no map yet (then `owners` is empty)
    std::vector<std::pair<std::string, std::string>> shards;  // (name, address), by name
    std::vector<int> owners;  // per partition, an index into `shards`, or -1
  };
  RoutingTable Routing() const;

  // Feedback for a user whose partition this shard owns: appended, then applied; a resend is
  // a duplicate. ABORTED "cluster: partition N is not owned here" when it is not (any more):
  // route it again.
  absl::StatusOr<engine::FeedbackResult> RecordFeedback(const engine::FeedbackInput& event);
  // Erases the user here and in the log (the same ownership rule).
  absl::StatusOr<storage::DeletedUser> DeleteUser(absl::string_view storage_id);

  int partition_count() const { return log_.options().partitions; }
  const std::string& name() const { return options_.name; }
  ClusterStats Stats() const;

 private:
  enum class Role { kNone, kReceiving, kOwned };
  struct Partition;

  ClusterShard(engine::PreferenceEngine& engine, FeedbackLog& log, PartitionDirectory& directory,
               ReferenceExchange* exchange, ShardOptions options);
  // Publishes this shard's sample and borrows the others' (cold start across shards).
  absl::Status Exchange();
  // OK when this shard owns the partition and has applied all of it (catching up after a
  // failed write first): else ABORTED (not owned) or the catch-up's error. Holds partition.mu.
  absl::Status ReadyToWriteLocked(int partition);
  // Applies the partition's log entries after its applied position. Holds partition.mu.
  absl::Status CatchUpLocked(int partition);
  // Applies one log entry (its position stored with what it changes).
  absl::Status Apply(int partition, uint64_t sequence, absl::string_view payload);
  // Appends `payload` after the partition's applied position, catching up and retrying while
  // others append first. Holds partition.mu. ABORTED if catching up showed another owner.
  absl::StatusOr<FeedbackLog::Appended> AppendLocked(int partition, absl::string_view message_id,
                                                     absl::string_view payload);
  // Catches up and appends a handoff entry naming this shard: from then on it owns the
  // partition and every other writer is fenced off.
  absl::Status TakeOver(int partition, uint64_t map_revision);
  // Forgets every local user of `partitions` and their positions.
  absl::Status Drop(const std::vector<int>& partitions);
  // One pass over the map: takes, receives and drops partitions.
  absl::Status Follow(bool slow);
  void Loop();
  // Passes `status` to options_.report unless the same was passed within the last minute.
  // The loop thread's.
  void Report(const absl::Status& status);

  engine::PreferenceEngine& engine_;
  FeedbackLog& log_;
  PartitionDirectory& directory_;
  ReferenceExchange* const exchange_;
  const ShardOptions options_;
  std::unique_ptr<Partition[]> partitions_;

  mutable std::mutex view_mu_;
  MapVersion map_;                                 // guarded by view_mu_
  std::map<std::string, v1::ShardRecord> shards_;  // guarded by view_mu_
  std::map<int, uint64_t> lag_;                    // guarded by view_mu_

  std::atomic<uint64_t> partitions_taken_{0};
  std::atomic<uint64_t> partitions_dropped_{0};
  std::atomic<uint64_t> replayed_entries_{0};
  std::atomic<uint64_t> borrowed_references_{0};
  std::atomic<uint64_t> borrowed_calibration_users_{0};
  std::atomic<uint64_t> exchange_failures_{0};
  std::atomic<bool> exchange_due_{true};  // a deletion asks for a new sample at once
  uint64_t exchange_generation_ = 0;      // the loop thread's
  std::array<std::atomic<uint64_t>, kAppendLatencyBounds.size() + 1> append_latency_counts_{};
  std::atomic<uint64_t> append_latency_nanos_{0};

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by stop_mu_
  std::thread loop_;
  // What Report passed on in the last minute, and when (the loop thread's).
  std::map<std::string, std::chrono::steady_clock::time_point> reported_;
};

}  // namespace tailor::cluster

#endif  // TAILOR_CLUSTER_SHARD_H_
