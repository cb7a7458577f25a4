// tailorctl cluster …: reads and changes cluster mode's partition map in NATS directly (no
// shard needs to answer), each change by compare-and-set.
#ifndef TAILOR_CLIENT_CLUSTER_COMMANDS_H_
#define TAILOR_CLIENT_CLUSTER_COMMANDS_H_

#include <string>
#include <vector>

#include "cluster/nats_connection.h"

namespace tailor::client {

struct ClusterFlags {
  std::string nats = "nats://127.0.0.1:4222";
  cluster::NatsTls nats_tls;  // plaintext unless a CA is given
  int partitions = 64;        // used while there is no map yet (the log's count)
  int replicas = 3;
  bool json = false;
  int wait_seconds = 120;        // `wait`: how long to wait for moves to finish
  std::string format = "nginx";  // `router-config`: nginx or envoy
  std::string listen = "50051";  // `router-config`: the router's PORT or HOST:PORT
};

// `args`: the words after "cluster". Returns the process exit code.
int ClusterCommand(const std::vector<std::string>& args, const ClusterFlags& flags);

}  // namespace tailor::client

#endif  // TAILOR_CLIENT_CLUSTER_COMMANDS_H_
