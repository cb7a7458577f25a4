#include "server/tailor_service.h"

#include "server/version.h"

namespace tailor::server {

TailorService::TailorService(engine::PreferenceEngine& engine, const ServerConfig& config)
    : engine_(engine), config_(config) {}

grpc::ServerUnaryReactor* TailorService::GetServerInfo(grpc::CallbackServerContext* context,
                                                       const v1::GetServerInfoRequest*,
                                                       v1::ServerInfo* response) {
  response->set_version(kTailorVersion);
  v1::Schema* schema = response->mutable_schema();
  for (const model::FeatureSpec& spec : engine_.schema().features()) {
    v1::Feature* feature = schema->add_features();
    feature->set_name(spec.name);
    feature->set_mean(spec.mean);
    feature->set_sd(spec.sd);
  }
  schema->set_fingerprint(engine_.schema().fingerprint());
  v1::Limits* limits = response->mutable_limits();
  limits->set_max_candidates(static_cast<uint32_t>(config_.max_candidates));
  limits->set_max_id_bytes(kMaxIdBytes);
  limits->set_max_message_bytes(static_cast<uint32_t>(config_.max_message_bytes));
  limits->set_max_concurrent_streams(static_cast<uint32_t>(config_.max_concurrent_streams));
  const engine::EngineStats stats = engine_.Stats();
  response->set_users(stats.users);
  response->set_established_users(stats.established_users);
  response->set_feedback_events(stats.feedback_events);
  response->set_durability(engine_.store().sync_wal() ? "wal+fsync" : "wal");
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace tailor::server
