// tailorctl cluster router-config: a router configuration generated from cluster mode's
// partition map. Clients that know the map (the C++ and Python clients, tailorctl) send each
// call's partition in x-tailor-partition; the router sends such calls to the partition's owner
// and every other call to any shard, which forwards it (one hop). A stale config therefore
// costs hops, never correctness.
#ifndef TAILOR_CLIENT_ROUTER_CONFIG_H_
#define TAILOR_CLIENT_ROUTER_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "tailor/cluster/v1/cluster.pb.h"

namespace tailor::client {

struct RouterConfigInput {
  uint64_t map_revision = 0;
  cluster::v1::PartitionMap map;
  std::map<std::string, cluster::v1::ShardRecord> shards;  // by name
  // The router's listening address: "PORT" or "HOST:PORT".
  std::string listen = "50051";
};

// `format`: "nginx" (a file to include in nginx's http {} block, in place of
// deploy/nginx/tailor.conf) or "envoy" (a complete Envoy bootstrap, static resources).
// FAILED_PRECONDITION without a map or a registered shard; INVALID_ARGUMENT for a format or
// address it cannot use.
absl::StatusOr<std::string> RouterConfig(const RouterConfigInput& input, const std::string& format);

}  // namespace tailor::client

#endif  // TAILOR_CLIENT_ROUTER_CONFIG_H_
