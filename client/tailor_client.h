// TailorClient: the C++ client library for tailord — one reused channel, a deadline on every
// call, and retries with backoff on UNAVAILABLE only (never on errors that could mean the
// call already took effect, except where the call is idempotent by its event id).
#ifndef TAILOR_CLIENT_TAILOR_CLIENT_H_
#define TAILOR_CLIENT_TAILOR_CLIENT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "tailor/v1/tailor.grpc.pb.h"

namespace tailor::client {

struct ClientOptions {
  // gRPC target, e.g. "localhost:50051" or "dns:///tailor.example:50051".
  std::string target = "localhost:50051";
  // Deadline of each attempt.
  absl::Duration deadline = absl::Seconds(2);
  // Total attempts for a call that fails with UNAVAILABLE (1 = no retry).
  int max_attempts = 3;
  absl::Duration initial_backoff = absl::Milliseconds(50);
  // Sent as `authorization: Bearer <token>` on every call when set.
  std::string bearer_token;
  // TLS (PEM contents): the CA that signed the server's certificate (empty = the system's
  // roots), and for mutual TLS this client's certificate chain and key.
  struct Tls {
    std::string root_ca_pem;
    std::string cert_pem;
    std::string key_pem;
  };
  std::optional<Tls> tls;
};

// grpc::Status -> absl::Status (their codes are the same numbers).
absl::Status FromGrpc(const grpc::Status& status);

class TailorClient {
 public:
  explicit TailorClient(ClientOptions options);

  absl::StatusOr<v1::ServerInfo> GetServerInfo();
  absl::StatusOr<v1::RankResponsesResponse> Rank(const v1::RankResponsesRequest& request);
  absl::StatusOr<v1::SuggestComparisonResponse> Suggest(
      const v1::SuggestComparisonRequest& request);
  // Retried on UNAVAILABLE: safe, because the server is idempotent on event_id.
  absl::StatusOr<v1::FeedbackAck> SubmitFeedback(const v1::FeedbackEvent& event);
  // Streams `events` over one StreamFeedback call and returns their acks in order. `on_ack`
  // (may be empty) sees each ack as it arrives. If the stream breaks, the events without an
  // ack are resent on a new stream (up to max_attempts streams): event ids make that safe.
  absl::StatusOr<std::vector<v1::FeedbackAck>> StreamFeedback(
      const std::vector<v1::FeedbackEvent>& events,
      const std::function<void(const v1::FeedbackAck&)>& on_ack = {});
  absl::StatusOr<v1::UserProfile> GetUser(const std::string& user_id);
  // The profile, then every stored event in order.
  absl::StatusOr<std::vector<v1::ExportUserResponse>> ExportUser(const std::string& user_id);
  absl::StatusOr<v1::DeleteUserResponse> DeleteUser(const std::string& user_id);
  // Not retried: a checkpoint directory must not exist yet.
  absl::StatusOr<v1::CreateCheckpointResponse> CreateCheckpoint(const std::string& directory);
  // Serving status of `service` ("" = the whole server) from the standard health service.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
      const std::string& service = "");
  // Service names listed by server reflection.
  absl::StatusOr<std::vector<std::string>> ListServices();

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  // Runs `attempt` (which performs one RPC with the given context) with deadline and retries.
  template <typename Attempt>
  absl::Status Call(const std::string& user_id, Attempt attempt, int max_attempts = 0);
  // Adds the routing header (when `user_id` is set) and the bearer token to a call.
  void Decorate(grpc::ClientContext& context, const std::string& user_id) const;

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Tailor::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  std::unique_ptr<v1::TailorAdmin::Stub> admin_;
};

}  // namespace tailor::client

#endif  // TAILOR_CLIENT_TAILOR_CLIENT_H_
