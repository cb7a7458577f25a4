#include "server/tailor_server.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cluster/nats_connection.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/log.h"

namespace tailor::server {

absl::StatusOr<model::FeatureSchema> LoadSchema(const std::string& path) {
  if (path.empty()) return model::FeatureSchema::FromCsv(model::DefaultSchemaCsv());
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("--schema: cannot read ", path));
  std::stringstream text;
  text << file.rdbuf();
  absl::StatusOr<model::FeatureSchema> schema = model::FeatureSchema::FromCsv(text.str());
  if (!schema.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--schema ", path, ": ", schema.status().message()));
  }
  return schema;
}

namespace {
// Protobuf's own complaints (e.g. a hostile request's invalid UTF-8, which the services then
// refuse with INVALID_ARGUMENT) go to the server log as structured warnings, not raw stderr.
void ProtobufLog(google::protobuf::LogLevel level, const char* file, int line,
                 const std::string& message) {
  Log(level >= google::protobuf::LOGLEVEL_ERROR ? LogLevel::kWarning : LogLevel::kInfo,
      absl::StrCat("protobuf: ", message, " (", file, ":", line, ")"));
}

// Storage-bound RPC work (commits, exports, deletes) runs here; RocksDB groups concurrent
// commits, so a few threads per core keep the disk busy without oversubscribing the CPU.
constexpr int kWorkThreads = 8;

engine::EngineOptions EngineOptionsFor(const ServerConfig& config) {
  engine::EngineOptions options;
  // With token auth every user id is "tenant/user": GetServerInfo answers per tenant.
  options.count_by_tenant = !config.auth_tokens_file.empty();
  // ... and each tenant's knowledge is its own, but for those that opt in to share.
  options.knowledge_by_tenant = !config.auth_tokens_file.empty();
  options.shared_knowledge_tenants = config.share_knowledge;
  options.refresh_period = absl::Milliseconds(config.refresh_ms);
  if (!config.neighbour_cold_start) options.handover_pairs = 0;
  options.forget_half_life_pairs = config.forget_half_life_pairs;
  options.evolve_schema = config.evolve_schema;
  options.max_reference_users = config.max_reference_users;
  options.exact_scan_max_users = config.exact_scan_max_users;
  options.blend_cache_users = config.belief_cache_users;
  options.blend_cache_bytes = static_cast<size_t>(config.belief_cache_mb) << 20;
  return options;
}
}  // namespace

absl::Status PrefixStatus(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  if (!(in && text << in.rdbuf())) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
  }
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is not PEM"));
  }
  return text.str();
}

// This server's certificate chain and private key (--tls_cert_file, --tls_key_file).
struct CertificateAndKey {
  std::string cert;
  std::string key;
};
absl::StatusOr<CertificateAndKey> ReadCertificateAndKey(const ServerConfig& config) {
  absl::StatusOr<std::string> cert = ReadPem("tls_cert_file", config.tls_cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("tls_key_file", config.tls_key_file);
  if (!key.ok()) return key.status();
  return CertificateAndKey{*std::move(cert), *std::move(key)};
}

// Plaintext, TLS, or mutual TLS, from the --tls_* flags.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const ServerConfig& config) {
  if (config.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  absl::StatusOr<CertificateAndKey> own = ReadCertificateAndKey(config);
  if (!own.ok()) return own.status();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!config.tls_client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem("tls_client_ca_file", config.tls_client_ca_file);
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  options.pem_key_cert_pairs.push_back({own->key, own->cert});
  return grpc::SslServerCredentials(options);
}

// Cluster mode: how this shard calls the others. Plaintext when it serves plaintext; else TLS,
// verifying their certificates against --cluster_tls_ca_file and presenting its own (shards
// that require mutual TLS accept it when their --tls_client_ca_file signed it).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ShardCredentialsFor(
    const ServerConfig& config) {
  if (config.tls_cert_file.empty()) return grpc::InsecureChannelCredentials();
  absl::StatusOr<std::string> ca = ReadPem("cluster_tls_ca_file", config.cluster_tls_ca_file);
  if (!ca.ok()) return ca.status();
  absl::StatusOr<CertificateAndKey> own = ReadCertificateAndKey(config);
  if (!own.ok()) return own.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = *ca;
  options.pem_cert_chain = own->cert;
  options.pem_private_key = own->key;
  return grpc::SslCredentials(options);
}

TailorServer::TailorServer(ServerConfig config) : config_(std::move(config)) {}

absl::StatusOr<std::unique_ptr<TailorServer>> TailorServer::Start(const ServerConfig& config) {
  if (absl::Status valid = config.Validate(); !valid.ok()) return valid;
  google::protobuf::SetLogHandler(&ProtobufLog);
  absl::StatusOr<model::FeatureSchema> schema = LoadSchema(config.schema_path);
  if (!schema.ok()) return schema.status();

  std::unique_ptr<TailorServer> server(new TailorServer(config));
  // Security settings first: a bad token or certificate file fails before anything opens.
  if (!config.auth_tokens_file.empty()) {
    absl::StatusOr<std::unique_ptr<Authenticator>> auth =
        Authenticator::FromFile(config.auth_tokens_file);
    if (!auth.ok()) return PrefixStatus("--auth_tokens_file: ", auth.status());
    server->auth_ = *std::move(auth);
  }
  if (!config.tenant_quotas_file.empty()) {
    absl::StatusOr<std::unique_ptr<TenantQuotas>> quotas =
        TenantQuotas::FromFile(config.tenant_quotas_file);
    if (!quotas.ok()) return PrefixStatus("--tenant_quotas_file: ", quotas.status());
    server->quotas_ = *std::move(quotas);
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentialsFor(config);
  if (!credentials.ok()) return credentials.status();
  if (!config.cluster_nats.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> shards = ShardCredentialsFor(config);
    if (!shards.ok()) return shards.status();
    server->shard_credentials_ = *std::move(shards);
  }

  // Metrics first: a large data directory takes a while to load, and its progress shows there
  // (tailor_starting, tailor_startup_users_loaded) instead of a port that does not answer.
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Start(config.metrics_listen);
  if (!metrics.ok()) return metrics.status();
  server->metrics_ = *std::move(metrics);
  server->metrics_->SetStarting(true);

  storage::StoreOptions store_options;
  store_options.path = config.data_dir;
  store_options.sync_wal = config.sync_wal;
  store_options.block_cache_bytes = static_cast<size_t>(config.block_cache_mb) << 20;
  store_options.memtable_budget_bytes = static_cast<size_t>(config.memtable_mb) << 20;
  store_options.min_free_bytes = static_cast<uint64_t>(config.min_free_disk_mb) << 20;
  absl::StatusOr<std::unique_ptr<storage::FeedbackStore>> store =
      storage::FeedbackStore::Open(store_options);
  if (!store.ok()) return store.status();
  server->store_ = *std::move(store);

  absl::StatusOr<std::unique_ptr<engine::PreferenceEngine>> engine =
      engine::PreferenceEngine::Create(*std::move(schema), *server->store_,
                                       EngineOptionsFor(config));
  if (!engine.ok()) return engine.status();
  server->engine_ = *std::move(engine);
  if (const std::string& change = server->engine_->schema_history().change(); !change.empty()) {
    Log(LogLevel::kInfo,
        absl::StrCat("--evolve_schema: ", change, "; every user is rebuilt from history under it"));
  }

  server->queue_ = std::make_unique<WorkQueue>(kWorkThreads);
  server->metrics_->Watch(*server->engine_, *server->queue_);
  server->service_ = std::make_unique<TailorService>(
      *server->engine_, *server->queue_, *server->metrics_, server->config_, server->auth_.get(),
      server->quotas_.get(), server->ready_);
  server->admin_ = std::make_unique<TailorAdminService>(
      *server->engine_, *server->queue_, *server->metrics_, server->config_, server->auth_.get(),
      server->quotas_.get(), server->ready_);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, *credentials, &server->grpc_port_);
  builder.RegisterService(server->service_.get());
  builder.RegisterService(server->admin_.get());
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, config.max_metadata_bytes);
  server->grpc_server_ = builder.BuildAndStart();
  if (server->grpc_server_ == nullptr || server->grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--listen: cannot serve gRPC on ", config.listen,
                                               " (address in use or not local?)"));
  }
  // Probes may ask for the server ("") or name a service: NOT_SERVING while the users load
  // (calls are refused UNAVAILABLE meanwhile), then SERVING until shutdown.
  grpc::HealthCheckServiceInterface* health = server->grpc_server_->GetHealthCheckService();
  const std::array<const char*, 3> names = {"", v1::Tailor::service_full_name(),
                                            v1::TailorAdmin::service_full_name()};
  for (const char* service : names) health->SetServingStatus(service, false);
  Log(LogLevel::kInfo, absl::StrCat("tailord loading users grpc_port=", server->grpc_port_,
                                    " metrics_port=", server->metrics_->port(),
                                    " (health NOT_SERVING, calls UNAVAILABLE until loaded)"));
  if (absl::Status loaded = server->engine_->Load(); !loaded.ok()) return loaded;
  if (!config.cluster_nats.empty()) {
    // NATS may still be starting, or electing its JetStream leaders: keep trying for a while
    // (NOT_SERVING meanwhile) rather than exit at once.
    const absl::Time give_up = absl::Now() + absl::Seconds(config.cluster_join_timeout_s);
    for (absl::Duration pause = absl::Milliseconds(250);;
         pause = std::min(2 * pause, absl::Seconds(5))) {
      absl::Status joined = server->JoinCluster();
      if (joined.ok()) break;
      if (absl::Now() + pause > give_up) return PrefixStatus("--cluster_nats: ", joined);
      Log(LogLevel::kWarning,
          absl::StrCat("cluster: cannot join yet, retrying: ", joined.message()));
      absl::SleepFor(pause);
    }
  }
  server->ready_ = true;
  server->metrics_->SetStarting(false);
  for (const char* service : names) health->SetServingStatus(service, true);
  return server;
}

void TailorServer::LeaveCluster() {
  cluster_.reset();  // stops following the map first: it uses the others
  exchange_.reset();
  directory_.reset();
  log_.reset();
}

absl::Status TailorServer::JoinCluster() {
  LeaveCluster();  // what an earlier, failed attempt opened
  absl::StatusOr<std::unique_ptr<cluster::NatsConnection>> connected =
      cluster::NatsConnection::Connect(
          config_.cluster_nats, absl::Seconds(5),
          {config_.cluster_nats_ca_file, config_.cluster_nats_cert_file,
           config_.cluster_nats_key_file, config_.cluster_nats_tls_hostname});
  if (!connected.ok()) return connected.status();
  std::shared_ptr<cluster::NatsConnection> nats = *std::move(connected);
  cluster::FeedbackLogOptions log_options;
  log_options.partitions = config_.cluster_partitions;
  log_options.replicas = config_.cluster_replicas;
  absl::StatusOr<std::unique_ptr<cluster::FeedbackLog>> log =
      cluster::FeedbackLog::Open(log_options, nats);
  if (!log.ok()) return log.status();
  log_ = *std::move(log);
  cluster::DirectoryOptions directory_options;
  directory_options.replicas = config_.cluster_replicas;
  absl::StatusOr<std::unique_ptr<cluster::PartitionDirectory>> directory =
      cluster::PartitionDirectory::Open(directory_options, nats);
  if (!directory.ok()) return directory.status();
  directory_ = *std::move(directory);
  if (config_.cluster_exchange_users > 0) {
    cluster::ExchangeOptions exchange_options;
    exchange_options.replicas = config_.cluster_replicas;
    absl::StatusOr<std::unique_ptr<cluster::ReferenceExchange>> exchange =
        cluster::ReferenceExchange::Open(exchange_options, nats);
    if (!exchange.ok()) return exchange.status();
    exchange_ = *std::move(exchange);
  }
  cluster::ShardOptions options;
  options.exchange_users = config_.cluster_exchange_users;
  options.exchange_calibration_users = config_.cluster_exchange_calibration_users;
  // As often as the knowledge is refreshed (which is when borrowed users take effect), at
  // least every 5 s and at most every 5 minutes.
  options.exchange_period =
      std::clamp(absl::Milliseconds(config_.refresh_ms), absl::Seconds(5), absl::Minutes(5));
  options.name = config_.shard_name;
  options.address = config_.cluster_advertise.empty()
                        ? absl::StrCat(config_.shard_name, ":", grpc_port_)
                        : config_.cluster_advertise;
  options.report = [](const absl::Status& status) {
    const absl::string_view message = status.message();
    Log(LogLevel::kWarning,
        absl::StrCat(absl::StartsWith(message, "cluster: ") ? "" : "cluster: ", message, " (",
                     absl::StatusCodeToString(status.code()), ")"));
  };
  Log(LogLevel::kInfo, absl::StrCat("cluster: joining as shard ", options.name, " at ",
                                    options.address, " (catching up owned partitions)"));
  absl::StatusOr<std::unique_ptr<cluster::ClusterShard>> shard =
      cluster::ClusterShard::Start(*engine_, *log_, *directory_, exchange_.get(), options);
  if (!shard.ok()) return shard.status();
  cluster_ = *std::move(shard);
  service_->SetCluster(cluster_.get(), shard_credentials_);
  metrics_->WatchCluster(*cluster_);
  const cluster::ClusterStats stats = cluster_->Stats();
  Log(LogLevel::kInfo,
      absl::StrCat("cluster: shard ", options.name, " owns ", stats.owned, " of ", stats.partitions,
                   " partitions (map revision ", stats.map_revision, ")"));
  return absl::OkStatus();
}

absl::Status TailorServer::ReloadTokens() {
  if (auth_ == nullptr) return absl::FailedPreconditionError("no --auth_tokens_file is in use");
  absl::Status tokens = auth_->Reload();
  if (!tokens.ok()) tokens = PrefixStatus("tokens kept: ", tokens);
  if (quotas_ == nullptr) return tokens;
  absl::Status quotas = quotas_->Reload();
  if (!quotas.ok()) quotas = PrefixStatus("quotas kept: ", quotas);
  return tokens.ok() ? quotas : tokens;
}

void TailorServer::Shutdown() {
  if (grpc_server_ != nullptr) {
    // Load balancers and probes see NOT_SERVING first, so traffic drains elsewhere.
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
    grpc_server_->Shutdown(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(config_.shutdown_grace_ms));
    grpc_server_->Wait();
    grpc_server_.reset();
  }
  queue_.reset();             // runs what is queued: every reactor has finished before this returns
  if (metrics_ != nullptr) {  // no scrape may read the engine or the shard from now on
    metrics_->Unwatch();
    metrics_->UnwatchCluster();
  }
  LeaveCluster();  // before the engine goes
  admin_.reset();
  service_.reset();
  engine_.reset();
  store_.reset();  // closes RocksDB cleanly
  metrics_.reset();
}

TailorServer::~TailorServer() { Shutdown(); }

}  // namespace tailor::server
