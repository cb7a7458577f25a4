// Cluster mode's partition hash (header-only, so cluster/ uses it without gRPC), part of the
// tailor.v1 contract (see ClusterRouting in tailor.proto): which partition of the feedback log a
// user belongs to. Shards use it to find a user's owner; clients use it with the map from
// GetServerInfo to call the owner directly.
#ifndef TAILOR_PROTO_PARTITION_ROUTING_H_
#define TAILOR_PROTO_PARTITION_ROUTING_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "model/stable_hash.h"

namespace tailor {

// ClusterRouting.partition_hash: names PartitionOf below.
inline constexpr char kPartitionHashName[] = "fnv1a64-0x9a57";
// Sent by clients that know the map (the user's partition, decimal), so that a router
// configured from the map (tailorctl cluster router-config) sends the call to its owner.
inline constexpr char kPartitionHeader[] = "x-tailor-partition";

// "<tenant>/<user_id>", or the user id alone without a tenant (tenant names have no '/').
inline std::string StorageIdOf(absl::string_view tenant, absl::string_view user_id) {
  return tenant.empty() ? std::string(user_id) : absl::StrCat(tenant, "/", user_id);
}

// The user's partition, in [0, partitions): the same in every process, build and language.
inline int PartitionOf(absl::string_view storage_id, int partitions) {
  constexpr uint64_t kPartitionSeed = 0x9a57;
  return static_cast<int>(model::StableHash({storage_id}, kPartitionSeed) %
                          static_cast<uint64_t>(partitions));
}

}  // namespace tailor

#endif  // TAILOR_PROTO_PARTITION_ROUTING_H_
