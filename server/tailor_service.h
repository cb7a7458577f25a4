// TailorService: the tailor.v1.Tailor and tailor.v1.TailorAdmin gRPC services on the callback
// API. Validates and translates requests, calls the engine, translates replies.
#ifndef TAILOR_SERVER_TAILOR_SERVICE_H_
#define TAILOR_SERVER_TAILOR_SERVICE_H_

#include "engine/preference_engine.h"
#include "server/server_config.h"
#include "tailor/v1/tailor.grpc.pb.h"

namespace tailor::server {

class TailorService final : public tailor::v1::Tailor::CallbackService {
 public:
  TailorService(engine::PreferenceEngine& engine, const ServerConfig& config);

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;

 private:
  engine::PreferenceEngine& engine_;
  const ServerConfig& config_;
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_TAILOR_SERVICE_H_
