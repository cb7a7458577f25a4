// ServerConfig: every setting of tailord, declared once with its default and bounds.
// main.cc fills it from flags; tests fill it directly. Validate() before use.
#ifndef TAILOR_SERVER_SERVER_CONFIG_H_
#define TAILOR_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tailor::server {

struct ServerConfig {
  // gRPC address, host:port. Port 0 picks a free port (see TailorServer::grpc_port()).
  std::string listen = "0.0.0.0:50051";
  // Prometheus /metrics address, host:port; port 0 picks a free port.
  std::string metrics_listen = "0.0.0.0:9464";
  // RocksDB directory; created if missing (its parent must exist).
  std::string data_dir = "./tailor-data";
  // Feature schema CSV (columns name,mean,sd); empty = the built-in PersonalLLM schema.
  std::string schema_path;
  // fsync the WAL before acknowledging feedback (survives power loss; slower).
  bool sync_wal = false;
  // RocksDB block cache.
  int64_t block_cache_mb = 128;
  // Memtables over all column families (writes buffered before a flush to SST files).
  int64_t memtable_mb = 128;
  // Free space kept on the data directory's disk: feedback is refused below it.
  int64_t min_free_disk_mb = 256;
  // Request limits.
  int32_t max_candidates = 64;
  int32_t max_message_bytes = 4 << 20;
  // Largest request metadata (all headers of a call); gRPC's own default.
  int32_t max_metadata_bytes = 8 << 10;
  int32_t max_concurrent_streams = 1024;
  // Feedback events a stream may have read but not yet acknowledged (per-stream memory bound).
  int32_t stream_window_events = 32;
  // Cold start from similar users; off = users are served from the population prior and
  // their own posterior only (the baseline the quality benchmark compares against).
  bool neighbour_cold_start = true;
  // Preference drift: a user's pair counts half after this many newer pairs of theirs (0 =
  // for ever). Changing it rebuilds every user's state from history at the next start.
  double forget_half_life_pairs = 0;
  // Period of the background refit of the population prior and neighbour reference set.
  int32_t refresh_ms = 30000;
  // Established users that cold users may borrow from (a seeded sample beyond this), and the
  // size up to which they are weighed exactly; larger sets go through an HNSW index.
  int32_t max_reference_users = 1000000;
  int32_t exact_scan_max_users = 5000;
  // Users whose serving belief (re-priored posterior, neighbour blend) is cached.
  int32_t belief_cache_users = 16384;
  // ... and the most memory they may hold (cold users' neighbour tracks are most of it).
  int32_t belief_cache_mb = 64;
  // How long SIGTERM waits for in-flight RPCs before cancelling them.
  int32_t shutdown_grace_ms = 5000;
  // The name this server reports as its shard (GetServerInfo, CreateCheckpoint); main.cc
  // defaults it to the host name (a StatefulSet pod's name, e.g. tailor-0).
  std::string shard_name;

  // TLS for the gRPC port: PEM certificate chain and private key (both or neither). With a
  // client CA, clients must present a certificate it signed (mutual TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Cluster mode with TLS: the CA bundle that signed the other shards' certificates. Calls
  // forwarded to another shard verify its certificate against it (for the host of its
  // advertised address) and present this shard's certificate (for shards requiring mTLS).
  std::string cluster_tls_ca_file;
  // Cluster mode: TLS to the NATS servers (cluster::NatsTls); empty CA = plaintext.
  std::string cluster_nats_ca_file;
  std::string cluster_nats_cert_file;
  std::string cluster_nats_key_file;
  std::string cluster_nats_tls_hostname;
  // Bearer tokens bound to tenants (server/auth.h); empty = no authentication, one tenant.
  std::string auth_tokens_file;
  // Per-tenant request quotas (server/quota.h); empty = none. Needs auth_tokens_file.
  std::string tenant_quotas_file;
  // With auth_tokens_file each tenant's knowledge (population prior, neighbours, trust) is its
  // own; the tenants listed here opt in to one knowledge they share ("*": every tenant, as
  // without tenants). Needs auth_tokens_file.
  std::vector<std::string> share_knowledge;
  // A data directory made for another schema: make --schema its next version instead of
  // refusing to start (single node only).
  bool evolve_schema = false;
  // Refuse per-user calls without x-user-id metadata (sharded deployments, where the router
  // hashes that header). A header that disagrees with the message is refused regardless.
  bool require_user_header = false;

  // Cluster mode (cluster/shard.h): NATS servers of the JetStream cluster holding the feedback
  // log and the partition map (comma-separated URLs); empty = a single node, no NATS.
  std::string cluster_nats;
  // Partitions of the log (fixed when the log is created) and the servers storing each event.
  int32_t cluster_partitions = 64;
  int32_t cluster_replicas = 3;
  // Where other shards and clients reach this shard's gRPC API (host:port); empty = the host
  // name (shard_name) and the gRPC port.
  std::string cluster_advertise;
  // Cold start across shards: established users this shard offers the others as neighbours
  // (a seeded sample), and borrows from each of them; 0 = nothing is exchanged.
  int32_t cluster_exchange_users = 100000;
  // Trust across shards: users this shard's trust fits held out (their pairs, under opaque
  // ids) lent to the others with the sample; 0 = none.
  int32_t cluster_exchange_calibration_users = 400;
  // How long startup keeps trying to reach NATS and join before it gives up.
  int32_t cluster_join_timeout_s = 120;

  // Checks every field against its bounds; the error names the flag and the rule.
  absl::Status Validate() const;
};

// Limits that are protocol rules rather than settings.
inline constexpr int kMaxIdBytes = 128;

}  // namespace tailor::server

#endif  // TAILOR_SERVER_SERVER_CONFIG_H_
