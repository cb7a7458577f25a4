// tailord: parses flags into a ServerConfig, starts a TailorServer, and stops it gracefully
// on SIGTERM or SIGINT. Nothing else happens here.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/server_config.h"
#include "server/tailor_server.h"
#include "server/version.h"

namespace {
const tailor::server::ServerConfig kDefaults;
}  // namespace

ABSL_FLAG(std::string, listen, kDefaults.listen, "gRPC listen address, host:port (port 0 = any)");
ABSL_FLAG(std::string, metrics_listen, kDefaults.metrics_listen,
          "Prometheus /metrics listen address, host:port (port 0 = any)");
ABSL_FLAG(std::string, data_dir, kDefaults.data_dir, "RocksDB data directory");
ABSL_FLAG(std::string, schema, kDefaults.schema_path,
          "feature schema CSV (name,mean,sd); empty = built-in PersonalLLM schema");
ABSL_FLAG(bool, sync, kDefaults.sync_wal,
          "fsync the write-ahead log before acknowledging feedback (survives power loss)");
ABSL_FLAG(int64_t, block_cache_mb, kDefaults.block_cache_mb, "RocksDB block cache size, MiB");
ABSL_FLAG(int64_t, min_free_disk_mb, kDefaults.min_free_disk_mb,
          "refuse feedback (RESOURCE_EXHAUSTED) while the data directory's disk has less free; "
          "0 = no reserve");
ABSL_FLAG(int64_t, memtable_mb, kDefaults.memtable_mb,
          "RocksDB memtable budget over all column families, MiB");
ABSL_FLAG(int32_t, max_candidates, kDefaults.max_candidates, "most candidates per request");
ABSL_FLAG(int32_t, max_message_bytes, kDefaults.max_message_bytes, "largest gRPC message");
ABSL_FLAG(int32_t, max_metadata_bytes, kDefaults.max_metadata_bytes,
          "largest request metadata (all headers of one call)");
ABSL_FLAG(int32_t, max_concurrent_streams, kDefaults.max_concurrent_streams,
          "most concurrent StreamFeedback streams");
ABSL_FLAG(int32_t, stream_window_events, kDefaults.stream_window_events,
          "feedback events a stream may have read ahead of their acks");
ABSL_FLAG(bool, neighbour_cold_start, kDefaults.neighbour_cold_start,
          "borrow from similar users for users with little feedback");
ABSL_FLAG(double, forget_half_life_pairs, kDefaults.forget_half_life_pairs,
          "preference drift: a user's pair counts half after this many newer pairs of theirs "
          "(0: for ever); a change rebuilds users' states from history at start");
ABSL_FLAG(int32_t, refresh_ms, kDefaults.refresh_ms,
          "period of the background refit of the population prior, neighbour index and trust "
          "(0: fitted once at startup, then frozen)");
ABSL_FLAG(int32_t, max_reference_users, kDefaults.max_reference_users,
          "most established users that cold users borrow from (a seeded sample beyond this); "
          "their HNSW index is changed in place at each refresh");
ABSL_FLAG(int32_t, exact_scan_max_users, kDefaults.exact_scan_max_users,
          "reference sets up to this size are weighed exactly; larger ones via an HNSW index");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM certificate chain for TLS on --listen");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle; clients must present a certificate it signed (mutual TLS)");
ABSL_FLAG(std::string, cluster_tls_ca_file, "",
          "cluster mode with TLS: PEM CA bundle that signed the other shards' certificates; "
          "calls forwarded to them are verified against it and present --tls_cert_file");
ABSL_FLAG(std::string, cluster_nats_ca_file, "",
          "cluster mode: PEM CA bundle that signed the NATS servers' certificates (TLS to NATS)");
ABSL_FLAG(std::string, cluster_nats_cert_file, "",
          "cluster mode: PEM client certificate for NATS servers that verify clients");
ABSL_FLAG(std::string, cluster_nats_key_file, "",
          "cluster mode: PEM key for --cluster_nats_cert_file");
ABSL_FLAG(std::string, cluster_nats_tls_hostname, "",
          "cluster mode: the host name the NATS servers' certificates must name (libnats checks "
          "none otherwise)");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "bearer tokens bound to tenants, one 'TENANT TOKEN [admin]' per line; reloaded on "
          "SIGHUP (empty: no authentication)");
ABSL_FLAG(std::string, tenant_quotas_file, "",
          "per-tenant request quotas, one 'TENANT REQUESTS_PER_SECOND [BURST]' per line ('*': "
          "every other tenant); reloaded on SIGHUP (empty: no quotas; needs --auth_tokens_file)");
ABSL_FLAG(std::vector<std::string>, share_knowledge, {},
          "tenants that opt in to sharing one knowledge (population prior, cold-start neighbours, "
          "trust), comma-separated ('*': every tenant); every other tenant's is its own (needs "
          "--auth_tokens_file)");
ABSL_FLAG(bool, evolve_schema, false,
          "when --data_dir was made for another schema, make --schema its next version (features "
          "matched by name or a renamed_from column; users' weights on kept features carry over) "
          "instead of refusing to start");
ABSL_FLAG(bool, require_user_header, false,
          "refuse per-user calls without x-user-id metadata (sharded deployments)");
ABSL_FLAG(int32_t, belief_cache_users, kDefaults.belief_cache_users,
          "users whose serving belief (posterior under the current prior, neighbour blend) is "
          "cached between calls; 0 disables");
ABSL_FLAG(int32_t, belief_cache_mb, kDefaults.belief_cache_mb,
          "memory the belief cache may hold, MiB (most of it cold users' neighbour tracks, which "
          "let a cold user's next pair cost one pass over the reference users)");
ABSL_FLAG(std::string, shard_name, "",
          "name reported as this server's shard in GetServerInfo and CreateCheckpoint answers "
          "(default: the host name)");
ABSL_FLAG(std::string, cluster_nats, "",
          "cluster mode: NATS servers of the JetStream cluster holding the feedback log and "
          "partition map, comma-separated nats:// URLs (empty: a single node, no NATS)");
ABSL_FLAG(int32_t, cluster_partitions, kDefaults.cluster_partitions,
          "cluster mode: partitions of the feedback log (fixed once the log exists)");
ABSL_FLAG(int32_t, cluster_replicas, kDefaults.cluster_replicas,
          "cluster mode: NATS servers storing each log event and the map (1 on a lone server)");
ABSL_FLAG(std::string, cluster_advertise, "",
          "cluster mode: host:port where other shards and clients reach this shard "
          "(default: --shard_name and the gRPC port)");
ABSL_FLAG(int32_t, cluster_exchange_users, kDefaults.cluster_exchange_users,
          "cluster mode: established users this shard lends the others as cold-start neighbours "
          "(a seeded sample; it borrows theirs too); 0 = no exchange");
ABSL_FLAG(int32_t, cluster_exchange_calibration_users, kDefaults.cluster_exchange_calibration_users,
          "cluster mode: users this shard's trust fits held out that it lends the others with its "
          "sample, so each shard fits trust on users across the cluster; 0 = none");
ABSL_FLAG(int32_t, cluster_join_timeout_s, kDefaults.cluster_join_timeout_s,
          "cluster mode: how long startup keeps trying to reach NATS before it gives up");
ABSL_FLAG(int32_t, shutdown_grace_ms, kDefaults.shutdown_grace_ms,
          "on SIGTERM, how long in-flight RPCs may run before being cancelled");

int main(int argc, char** argv) {
  using tailor::server::Log;
  using tailor::server::LogLevel;
  absl::SetProgramUsageMessage("tailord: the Tailor personalization server");
  absl::ParseCommandLine(argc, argv);

  tailor::server::ServerConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  config.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  config.data_dir = absl::GetFlag(FLAGS_data_dir);
  config.schema_path = absl::GetFlag(FLAGS_schema);
  config.sync_wal = absl::GetFlag(FLAGS_sync);
  config.block_cache_mb = absl::GetFlag(FLAGS_block_cache_mb);
  config.memtable_mb = absl::GetFlag(FLAGS_memtable_mb);
  config.min_free_disk_mb = absl::GetFlag(FLAGS_min_free_disk_mb);
  config.max_candidates = absl::GetFlag(FLAGS_max_candidates);
  config.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  config.max_metadata_bytes = absl::GetFlag(FLAGS_max_metadata_bytes);
  config.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  config.stream_window_events = absl::GetFlag(FLAGS_stream_window_events);
  config.refresh_ms = absl::GetFlag(FLAGS_refresh_ms);
  config.neighbour_cold_start = absl::GetFlag(FLAGS_neighbour_cold_start);
  config.forget_half_life_pairs = absl::GetFlag(FLAGS_forget_half_life_pairs);
  config.max_reference_users = absl::GetFlag(FLAGS_max_reference_users);
  config.exact_scan_max_users = absl::GetFlag(FLAGS_exact_scan_max_users);
  config.belief_cache_users = absl::GetFlag(FLAGS_belief_cache_users);
  config.belief_cache_mb = absl::GetFlag(FLAGS_belief_cache_mb);
  config.shutdown_grace_ms = absl::GetFlag(FLAGS_shutdown_grace_ms);
  config.shard_name = absl::GetFlag(FLAGS_shard_name);
  if (config.shard_name.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) == 0) config.shard_name = host;
  }
  config.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  config.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  config.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  config.cluster_tls_ca_file = absl::GetFlag(FLAGS_cluster_tls_ca_file);
  config.cluster_nats_ca_file = absl::GetFlag(FLAGS_cluster_nats_ca_file);
  config.cluster_nats_cert_file = absl::GetFlag(FLAGS_cluster_nats_cert_file);
  config.cluster_nats_key_file = absl::GetFlag(FLAGS_cluster_nats_key_file);
  config.cluster_nats_tls_hostname = absl::GetFlag(FLAGS_cluster_nats_tls_hostname);
  config.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  config.tenant_quotas_file = absl::GetFlag(FLAGS_tenant_quotas_file);
  config.share_knowledge = absl::GetFlag(FLAGS_share_knowledge);
  config.evolve_schema = absl::GetFlag(FLAGS_evolve_schema);
  config.cluster_nats = absl::GetFlag(FLAGS_cluster_nats);
  config.cluster_partitions = absl::GetFlag(FLAGS_cluster_partitions);
  config.cluster_replicas = absl::GetFlag(FLAGS_cluster_replicas);
  config.cluster_advertise = absl::GetFlag(FLAGS_cluster_advertise);
  config.cluster_join_timeout_s = absl::GetFlag(FLAGS_cluster_join_timeout_s);
  config.cluster_exchange_users = absl::GetFlag(FLAGS_cluster_exchange_users);
  config.cluster_exchange_calibration_users =
      absl::GetFlag(FLAGS_cluster_exchange_calibration_users);
  config.require_user_header = absl::GetFlag(FLAGS_require_user_header);
  if (absl::Status valid = config.Validate(); !valid.ok()) {
    std::fprintf(stderr, "tailord: %s\n", std::string(valid.message()).c_str());
    return 2;
  }

  // Block the stop signals before any thread starts, so every thread inherits the mask and
  // the signals are only ever taken by sigwait() below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = tailor::server::TailorServer::Start(config);
  if (!server.ok()) {
    std::fprintf(stderr, "tailord: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  Log(LogLevel::kInfo, absl::StrCat("tailord ", tailor::kTailorVersion,
                                    " serving grpc_port=", (*server)->grpc_port(), " metrics_port=",
                                    (*server)->metrics_port(), " data_dir=", config.data_dir,
                                    " durability=", config.sync_wal ? "wal+fsync" : "wal",
                                    " tls=", config.tls_cert_file.empty() ? "off" : "on",
                                    " auth=", config.auth_tokens_file.empty() ? "off" : "tokens"));

  int signal_number = 0;
  // SIGHUP re-reads the tokens and quotas files (token rotation); SIGTERM/SIGINT stop.
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    const absl::Status reloaded = (*server)->ReloadTokens();
    Log(reloaded.ok() ? LogLevel::kInfo : LogLevel::kError,
        reloaded.ok() ? "SIGHUP: tokens and quotas reloaded"
                      : absl::StrCat("SIGHUP: ", reloaded.message()));
  }
  Log(LogLevel::kInfo, absl::StrCat("received signal ", signal_number, ", shutting down"));
  (*server)->Shutdown();
  Log(LogLevel::kInfo, "stopped cleanly");
  return 0;
}
