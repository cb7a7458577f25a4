// PartitionDirectory: cluster mode's shared directory in a JetStream KV bucket (replicated
// like the log): the partition map (which shard owns each partition of the feedback log,
// changed only by compare-and-set on the key's revision) and each shard's address. Two keys,
// read with direct gets: listing keys would need a consumer, slow while a server is down.
#ifndef TAILOR_CLUSTER_PARTITION_DIRECTORY_H_
#define TAILOR_CLUSTER_PARTITION_DIRECTORY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tailor/cluster/v1/cluster.pb.h"

struct __kvStore;

namespace tailor::cluster {

class NatsConnection;

struct DirectoryOptions {
  std::string bucket = "TAILOR_CLUSTER";
  int replicas = 3;  // as the log's
};

// The partition map as read, with the KV revision a compare-and-set must name.
struct MapVersion {
  v1::PartitionMap map;
  uint64_t revision = 0;  // 0: there is no map yet
};

class PartitionDirectory {
 public:
  // Creates the bucket if it does not exist.
  static absl::StatusOr<std::unique_ptr<PartitionDirectory>> Open(
      const DirectoryOptions& options, std::shared_ptr<NatsConnection> nats);
  ~PartitionDirectory();
  PartitionDirectory(const PartitionDirectory&) = delete;
  PartitionDirectory& operator=(const PartitionDirectory&) = delete;

  absl::StatusOr<MapVersion> ReadMap();
  // Writes `map` if the stored one is still at `revision` (0: if there is none): else ABORTED
  // and nothing changes. Returns the new revision.
  absl::StatusOr<uint64_t> CompareAndSetMap(const v1::PartitionMap& map, uint64_t revision);

  // Records (or replaces) a shard's address under its name.
  absl::Status RegisterShard(const std::string& name, const v1::ShardRecord& record);
  absl::Status ForgetShard(const std::string& name);
  absl::StatusOr<std::map<std::string, v1::ShardRecord>> Shards();

 private:
  // `key`'s revision (0: absent), and its value parsed into `value` unless that is null.
  absl::StatusOr<uint64_t> Get(const char* key, google::protobuf::Message* value);
  // Writes `value` if `key` is still at `revision` (0: absent); else ABORTED. The new revision.
  absl::StatusOr<uint64_t> Put(const char* key, const google::protobuf::Message& value,
                               uint64_t revision);
  // Read, change, compare-and-set the shard addresses, again while others change them.
  absl::Status ChangeShards(absl::FunctionRef<void(v1::ShardDirectory&)> change);
  PartitionDirectory(std::shared_ptr<NatsConnection> nats, __kvStore* kv);
  std::shared_ptr<NatsConnection> nats_;
  __kvStore* kv_;
};

}  // namespace tailor::cluster

#endif  // TAILOR_CLUSTER_PARTITION_DIRECTORY_H_
