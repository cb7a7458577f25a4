// TailorService and TailorAdminService: the tailor.v1 gRPC services on the callback API.
// They validate and translate requests, call the engine, and translate replies; work that
// may block on storage runs on the WorkQueue, never in a reactor callback.
#ifndef TAILOR_SERVER_TAILOR_SERVICE_H_
#define TAILOR_SERVER_TAILOR_SERVICE_H_

#include <atomic>
#include <optional>
#include <string>

#include "engine/preference_engine.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/server_config.h"
#include "server/work_queue.h"
#include "tailor/v1/tailor.grpc.pb.h"

namespace tailor::server {

// absl::Status -> grpc::Status, once, at this boundary (the codes are the same numbers).
grpc::Status ToGrpc(const absl::Status& status);

// Who a call comes from and how it was routed.
struct CallScope {
  std::string tenant;                      // "" without token auth
  bool admin = true;                       // may call TailorAdmin
  std::optional<std::string> routed_user;  // the x-user-id metadata, if sent
  bool require_routed_user = false;

  // The user's id in storage and the engine: tenants never share one.
  std::string StorageId(absl::string_view user_id) const;
  // INVALID_ARGUMENT if the x-user-id metadata disagrees with the message's user id (or is
  // missing where required).
  absl::Status CheckRouting(absl::string_view user_id) const;
};

// Authenticates a call (when `auth` is set) and reads its routing header.
absl::StatusOr<CallScope> Admit(const grpc::CallbackServerContext* context,
                                const Authenticator* auth, const ServerConfig& config);

class TailorService final : public tailor::v1::Tailor::CallbackService {
 public:
  // `auth` may be null (no authentication).
  TailorService(engine::PreferenceEngine& engine, WorkQueue& queue, Metrics& metrics,
                const ServerConfig& config, const Authenticator* auth);

  grpc::ServerUnaryReactor* RankResponses(grpc::CallbackServerContext* context,
                                          const v1::RankResponsesRequest* request,
                                          v1::RankResponsesResponse* response) override;
  grpc::ServerUnaryReactor* SubmitFeedback(grpc::CallbackServerContext* context,
                                           const v1::SubmitFeedbackRequest* request,
                                           v1::FeedbackAck* response) override;
  grpc::ServerBidiReactor<v1::FeedbackEvent, v1::FeedbackAck>* StreamFeedback(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* SuggestComparison(grpc::CallbackServerContext* context,
                                              const v1::SuggestComparisonRequest* request,
                                              v1::SuggestComparisonResponse* response) override;
  grpc::ServerUnaryReactor* GetUser(grpc::CallbackServerContext* context,
                                    const v1::GetUserRequest* request,
                                    v1::UserProfile* response) override;
  grpc::ServerWriteReactor<v1::ExportUserResponse>* ExportUser(
      grpc::CallbackServerContext* context, const v1::ExportUserRequest* request) override;
  grpc::ServerUnaryReactor* DeleteUser(grpc::CallbackServerContext* context,
                                       const v1::DeleteUserRequest* request,
                                       v1::DeleteUserResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;

  // Validates and applies one event for a caller; the ack carries REJECTED + error for
  // invalid input. Blocks on storage: call from the WorkQueue.
  absl::Status ApplyFeedback(const CallScope& scope, const v1::FeedbackEvent& event,
                             v1::FeedbackAck& ack);

  WorkQueue& queue() { return queue_; }
  engine::PreferenceEngine& engine() { return engine_; }
  Metrics& metrics() { return metrics_; }
  std::atomic<int>& open_streams() { return open_streams_; }
  absl::StatusOr<CallScope> Admit(const grpc::CallbackServerContext* context) const {
    return server::Admit(context, auth_, config_);
  }

 private:
  engine::PreferenceEngine& engine_;
  WorkQueue& queue_;
  Metrics& metrics_;
  const ServerConfig& config_;
  const Authenticator* auth_;
  std::atomic<int> open_streams_{0};
};

class TailorAdminService final : public tailor::v1::TailorAdmin::CallbackService {
 public:
  TailorAdminService(engine::PreferenceEngine& engine, WorkQueue& queue, Metrics& metrics,
                     const ServerConfig& config, const Authenticator* auth);
  grpc::ServerUnaryReactor* CreateCheckpoint(grpc::CallbackServerContext* context,
                                             const v1::CreateCheckpointRequest* request,
                                             v1::CreateCheckpointResponse* response) override;

 private:
  engine::PreferenceEngine& engine_;
  WorkQueue& queue_;
  Metrics& metrics_;
  const ServerConfig& config_;
  const Authenticator* auth_;
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_TAILOR_SERVICE_H_
