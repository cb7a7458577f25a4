// TailorServer: one running tailord — storage, engine, gRPC services (with health and
// reflection) and the metrics endpoint — started from a validated ServerConfig.
#ifndef TAILOR_SERVER_TAILOR_SERVER_H_
#define TAILOR_SERVER_TAILOR_SERVER_H_

#include <atomic>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/preference_engine.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/server_config.h"
#include "server/tailor_service.h"
#include "storage/feedback_store.h"

namespace tailor::server {

class TailorServer {
 public:
  // Opens storage, loads users, starts serving gRPC and metrics. Health reports SERVING once
  // this returns. Fails with a one-line reason (bad schema file, unusable data dir, port in
  // use, schema mismatch with the data dir).
  static absl::StatusOr<std::unique_ptr<TailorServer>> Start(const ServerConfig& config);
  ~TailorServer();

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_->port(); }

  // Re-reads --auth_tokens_file and --tenant_quotas_file; a file with an error stays in force
  // as it was (the error says which).
  absl::Status ReloadTokens();

  // Reports NOT_SERVING, stops accepting calls, lets in-flight RPCs finish for up to
  // config.shutdown_grace_ms (then cancels them), and closes storage cleanly. Idempotent.
  void Shutdown();

 private:
  // Cluster mode: connects to NATS, opens the log and the map, and catches up this shard.
  absl::Status JoinCluster();
  // Closes what JoinCluster opened (nothing on a single node).
  void LeaveCluster();
  explicit TailorServer(ServerConfig config);

  const ServerConfig config_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<storage::FeedbackStore> store_;
  std::unique_ptr<engine::PreferenceEngine> engine_;
  // Cluster mode only (--cluster_nats): the log, the partition map, and this shard's part.
  std::unique_ptr<cluster::FeedbackLog> log_;
  std::unique_ptr<cluster::PartitionDirectory> directory_;
  std::unique_ptr<cluster::ReferenceExchange> exchange_;  // null with --cluster_exchange_users=0
  std::unique_ptr<cluster::ClusterShard> cluster_;
  // How this shard reaches the others (cluster mode): plaintext or TLS, from the --tls_* flags.
  std::shared_ptr<grpc::ChannelCredentials> shard_credentials_;
  std::unique_ptr<WorkQueue> queue_;
  std::unique_ptr<Authenticator> auth_;   // null without --auth_tokens_file
  std::unique_ptr<TenantQuotas> quotas_;  // null without --tenant_quotas_file
  std::atomic<bool> ready_{false};        // users loaded: calls are admitted
  std::unique_ptr<TailorService> service_;
  std::unique_ptr<TailorAdminService> admin_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int grpc_port_ = 0;
};

// Reads and parses a schema CSV file; an empty path gives the built-in PersonalLLM schema.
absl::StatusOr<model::FeatureSchema> LoadSchema(const std::string& path);

}  // namespace tailor::server

#endif  // TAILOR_SERVER_TAILOR_SERVER_H_
