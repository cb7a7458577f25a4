// TailorClient: the C++ client library for tailord — one reused channel, a deadline on every
// call, and retries with backoff on UNAVAILABLE only (never on errors that could mean the
// call already took effect, except where the call is idempotent by its event id).
#ifndef TAILOR_CLIENT_TAILOR_CLIENT_H_
#define TAILOR_CLIENT_TAILOR_CLIENT_H_

#include <memory>
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
};

// grpc::Status -> absl::Status (their codes are the same numbers).
absl::Status FromGrpc(const grpc::Status& status);

class TailorClient {
 public:
  explicit TailorClient(ClientOptions options);

  absl::StatusOr<v1::ServerInfo> GetServerInfo();
  // Serving status of `service` ("" = the whole server) from the standard health service.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
      const std::string& service = "");
  // Service names listed by server reflection.
  absl::StatusOr<std::vector<std::string>> ListServices();

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  // Runs `attempt` (which performs one RPC with the given context) with deadline and retries.
  template <typename Attempt>
  absl::Status Call(const std::string& user_id, Attempt attempt);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Tailor::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace tailor::client

#endif  // TAILOR_CLIENT_TAILOR_CLIENT_H_
