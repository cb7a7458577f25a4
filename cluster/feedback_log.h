// FeedbackLog: cluster mode's replicated feedback log on NATS JetStream (libnats), the source
// of truth that shards materialize into their RocksDB. One JetStream stream holds every
// accepted event, on subject "<prefix>.<partition>"; a user's partition is a stable hash of
// (tenant, user), so one partition's events can be replayed alone (to rebuild a shard, or to
// move a partition). Appends carry a message id, which JetStream de-duplicates within its
// window, so a resent event is appended once.
//
// Appends can be conditional on the partition's last sequence (JetStream's expected last
// subject sequence): a writer that has not applied everything before cannot append, which is
// how cluster/shard.h fences a partition's old owner.
#ifndef TAILOR_CLUSTER_FEEDBACK_LOG_H_
#define TAILOR_CLUSTER_FEEDBACK_LOG_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tailor::cluster {

class NatsConnection;

struct FeedbackLogOptions {
  std::string url = "nats://127.0.0.1:4222";  // one or more, comma-separated
  std::string stream = "TAILOR_FEEDBACK";
  std::string subject_prefix = "tailor.feedback";
  int partitions = 64;
  // Servers each event is stored on (JetStream replicas; 3 in a cluster, 1 on a lone server).
  int replicas = 3;
  // How long JetStream remembers message ids for de-duplication.
  absl::Duration duplicate_window = absl::Minutes(10);
  absl::Duration timeout = absl::Seconds(5);
};

class FeedbackLog {
 public:
  // Connects and creates the stream if it does not exist. An existing stream must have the
  // same subjects (a different partition count would send users elsewhere): else
  // FAILED_PRECONDITION.
  static absl::StatusOr<std::unique_ptr<FeedbackLog>> Open(const FeedbackLogOptions& options);
  // The same on an existing connection (options.url and options.timeout are then unused).
  static absl::StatusOr<std::unique_ptr<FeedbackLog>> Open(const FeedbackLogOptions& options,
                                                           std::shared_ptr<NatsConnection> nats);
  ~FeedbackLog();
  FeedbackLog(const FeedbackLog&) = delete;
  FeedbackLog& operator=(const FeedbackLog&) = delete;

  // The partition of a user (by storage id, "tenant/user"): the same in every process and
  // build.
  static int PartitionOf(absl::string_view storage_id, int partitions);

  struct Appended {
    uint64_t sequence = 0;   // the event's position in the stream
    bool duplicate = false;  // the message id was appended before (within the window)
  };
  // Appends `payload` to `partition` once JetStream has stored it on its replicas. With
  // `expected_last` (0 = the partition is empty), only if that is the partition's last
  // sequence: else ABORTED, and nothing is appended. A duplicate message id is answered with
  // the first append's sequence before any expectation is checked.
  absl::StatusOr<Appended> Append(int partition, absl::string_view message_id,
                                  absl::string_view payload,
                                  std::optional<uint64_t> expected_last = std::nullopt);

  // The partition's last sequence now (0: it has never had an event).
  absl::StatusOr<uint64_t> LastSequence(int partition);

  // Erases one event: JetStream overwrites it on every replica and forgets it. NOT_FOUND if
  // there is no such sequence.
  absl::Status Erase(uint64_t sequence);

  // Calls `visit` with each event of `partition` after stream sequence `after`, in order, up
  // to the partition's last event when the call starts; stops early when `visit` returns
  // false.
  absl::Status Replay(int partition, uint64_t after,
                      absl::FunctionRef<bool(uint64_t sequence, absl::string_view payload)> visit);

  const FeedbackLogOptions& options() const { return options_; }

 private:
  FeedbackLog(FeedbackLogOptions options, std::shared_ptr<NatsConnection> nats);
  std::string SubjectOf(int partition) const;

  const FeedbackLogOptions options_;
  std::shared_ptr<NatsConnection> nats_;
};

}  // namespace tailor::cluster

#endif  // TAILOR_CLUSTER_FEEDBACK_LOG_H_
