#include "server/server_config.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/auth.h"

namespace tailor::server {
namespace {

// host:port with a numeric port in [0, 65535]; IPv6 hosts in brackets ([::1]:50051).
absl::Status CheckAddress(absl::string_view flag, absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": must be host:port, got '", address, "'"));
  }
  int port = -1;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": port must be a number in 0..65535, got '", address, "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(absl::string_view flag, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": must be in ", low, "..", high, ", got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ServerConfig::Validate() const {
  if (!tenant_quotas_file.empty() && auth_tokens_file.empty()) {
    return absl::InvalidArgumentError(
        "--tenant_quotas_file: needs --auth_tokens_file (quotas are per tenant, and without "
        "tokens there are no tenants)");
  }
  if (evolve_schema && !cluster_nats.empty()) {
    return absl::InvalidArgumentError(
        "--evolve_schema: not in cluster mode (the shards and the replicated log would have to "
        "change schema together; that is not built)");
  }
  if (!share_knowledge.empty() && auth_tokens_file.empty()) {
    return absl::InvalidArgumentError(
        "--share_knowledge: needs --auth_tokens_file (without tokens there are no tenants, and "
        "every user shares one knowledge)");
  }
  for (const std::string& tenant : share_knowledge) {
    if (tenant != "*" && !ValidTenantName(tenant)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--share_knowledge: '", tenant,
          "' is not a tenant name (1-64 characters of [A-Za-z0-9_.-]) or '*' (every tenant)"));
    }
  }
  if (!(forget_half_life_pairs == 0 ||
        (forget_half_life_pairs >= 1 && forget_half_life_pairs <= 1e9))) {
    return absl::InvalidArgumentError(
        "--forget_half_life_pairs: must be 0 (never forget) or between 1 and 1e9 pairs");
  }
  if (tls_cert_file.empty() != tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file, --tls_key_file: give both (TLS) or neither (plaintext)");
  }
  if (!tls_client_ca_file.empty() && tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca_file: needs --tls_cert_file and --tls_key_file (mTLS is TLS too)");
  }
  for (absl::Status s : {
           CheckAddress("listen", listen),
           CheckAddress("metrics_listen", metrics_listen),
           data_dir.empty() ? absl::InvalidArgumentError("--data_dir: must not be empty")
                            : absl::OkStatus(),
           CheckRange("block_cache_mb", block_cache_mb, 8, 1 << 20),
           CheckRange("memtable_mb", memtable_mb, 8, 1 << 16),
           CheckRange("min_free_disk_mb", min_free_disk_mb, 0, 1 << 24),
           CheckRange("max_candidates", max_candidates, 2, 4096),
           CheckRange("max_message_bytes", max_message_bytes, 1 << 12, 256 << 20),
           CheckRange("max_metadata_bytes", max_metadata_bytes, 1 << 10, 1 << 20),
           CheckRange("max_concurrent_streams", max_concurrent_streams, 1, 1 << 20),
           CheckRange("stream_window_events", stream_window_events, 1, 4096),
           CheckRange("refresh_ms", refresh_ms, 0, 86400000),
           CheckRange("max_reference_users", max_reference_users, 0, 100000000),
           CheckRange("exact_scan_max_users", exact_scan_max_users, 0, 100000000),
           CheckRange("belief_cache_users", belief_cache_users, 0, 100000000),
           CheckRange("belief_cache_mb", belief_cache_mb, 1, 1 << 20),
           CheckRange("shutdown_grace_ms", shutdown_grace_ms, 0, 600000),
           shard_name.size() > 64
               ? absl::InvalidArgumentError("--shard_name: must be at most 64 bytes")
               : absl::OkStatus(),
       }) {
    if (!s.ok()) return s;
  }
  if (!cluster_nats.empty()) {
    if (cluster_partitions < 1 || cluster_partitions > 4096) {
      return absl::InvalidArgumentError("--cluster_partitions: must be 1..4096");
    }
    if (cluster_replicas < 1 || cluster_replicas > 5) {
      return absl::InvalidArgumentError("--cluster_replicas: must be 1..5 (JetStream's limit)");
    }
    if (cluster_exchange_users < 0) {
      return absl::InvalidArgumentError("--cluster_exchange_users: must be 0 or more");
    }
    if (cluster_exchange_calibration_users < 0) {
      return absl::InvalidArgumentError("--cluster_exchange_calibration_users: must be 0 or more");
    }
    if (!tls_cert_file.empty() && cluster_tls_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--cluster_tls_ca_file: cluster mode with --tls_cert_file needs the CA that signed the "
          "other shards' certificates (calls are forwarded between shards over TLS)");
    }
    if (!cluster_tls_ca_file.empty() && tls_cert_file.empty()) {
      return absl::InvalidArgumentError(
          "--cluster_tls_ca_file: needs --tls_cert_file and --tls_key_file (shards that serve "
          "plaintext forward in plaintext)");
    }
    if (cluster_nats_cert_file.empty() != cluster_nats_key_file.empty()) {
      return absl::InvalidArgumentError(
          "--cluster_nats_cert_file, --cluster_nats_key_file: give both or neither");
    }
    if (cluster_nats_ca_file.empty() &&
        (!cluster_nats_cert_file.empty() || !cluster_nats_tls_hostname.empty())) {
      return absl::InvalidArgumentError(
          "--cluster_nats_ca_file: TLS to NATS (a client certificate or host name) needs the CA "
          "that signed the NATS servers' certificates");
    }
  } else if (!cluster_tls_ca_file.empty() || !cluster_nats_ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        cluster_tls_ca_file.empty() ? "--cluster_nats_ca_file" : "--cluster_tls_ca_file",
        ": only in cluster mode (--cluster_nats)"));
  }
  return absl::OkStatus();
}

}  // namespace tailor::server
