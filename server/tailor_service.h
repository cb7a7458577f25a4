// TailorService and TailorAdminService: the tailor.v1 gRPC services on the callback API.
// They validate and translate requests, call the engine, and translate replies; work that
// may block on storage runs on the WorkQueue, never in a reactor callback.
#ifndef TAILOR_SERVER_TAILOR_SERVICE_H_
#define TAILOR_SERVER_TAILOR_SERVICE_H_

#include <atomic>

#include "engine/preference_engine.h"
#include "server/metrics.h"
#include "server/server_config.h"
#include "server/work_queue.h"
#include "tailor/v1/tailor.grpc.pb.h"

namespace tailor::server {

// absl::Status -> grpc::Status, once, at this boundary (the codes are the same numbers).
grpc::Status ToGrpc(const absl::Status& status);

class TailorService final : public tailor::v1::Tailor::CallbackService {
 public:
  TailorService(engine::PreferenceEngine& engine, WorkQueue& queue, Metrics& metrics,
                const ServerConfig& config);

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

  // Validates and applies one event; the ack carries REJECTED + error for invalid input.
  // Blocks on storage: call from the WorkQueue.
  absl::Status ApplyFeedback(const v1::FeedbackEvent& event, v1::FeedbackAck& ack);

  WorkQueue& queue() { return queue_; }
  engine::PreferenceEngine& engine() { return engine_; }
  Metrics& metrics() { return metrics_; }
  std::atomic<int>& open_streams() { return open_streams_; }

 private:
  engine::PreferenceEngine& engine_;
  WorkQueue& queue_;
  Metrics& metrics_;
  const ServerConfig& config_;
  std::atomic<int> open_streams_{0};
};

class TailorAdminService final : public tailor::v1::TailorAdmin::CallbackService {
 public:
  TailorAdminService(engine::PreferenceEngine& engine, WorkQueue& queue, Metrics& metrics);
  grpc::ServerUnaryReactor* CreateCheckpoint(grpc::CallbackServerContext* context,
                                             const v1::CreateCheckpointRequest* request,
                                             v1::CreateCheckpointResponse* response) override;

 private:
  engine::PreferenceEngine& engine_;
  WorkQueue& queue_;
  Metrics& metrics_;
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_TAILOR_SERVICE_H_
