// TailorClient: the C++ client library for tailord — one reused channel, a deadline on every
// call, and retries with backoff on UNAVAILABLE only (never on errors that could mean the
// call already took effect, except where the call is idempotent by its event id).
#ifndef TAILOR_CLIENT_TAILOR_CLIENT_H_
#define TAILOR_CLIENT_TAILOR_CLIENT_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
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
  // Cluster mode: call each user's owning shard directly, found with the partition map that
  // GetServerInfo returns (ServerInfo.cluster). The map is read on the first call for a user
  // and again every `map_refresh`, and at once after a direct call fails UNAVAILABLE (that
  // call is then retried through `target`). A stale map costs a forwarded hop, never
  // correctness: any shard forwards a call to the owner. Against a single node (no map)
  // every call goes to `target`, as with false. Calls to the owner use the same credentials.
  bool route_to_owner = true;
  absl::Duration map_refresh = absl::Seconds(10);
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
  // Routed to owners (route_to_owner, cluster mode), the events are split into one stream per
  // owning shard, run concurrently: the result is still in input order, while `on_ack` sees
  // each stream's acks as they arrive (one call at a time).
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

  // Where calls for `user_id` go now: the owner's address, or `target` (no map, or routing
  // off). Reads the map if it is due.
  std::string AddressFor(const std::string& user_id);

 private:
  // The partition map as last read (immutable; replaced whole).
  struct RoutingMap {
    std::chrono::steady_clock::time_point read_at;
    int partitions = 0;  // 0: no routing (single node, unknown hash, or the read failed)
    std::string tenant;
    std::vector<std::string> owner_address;  // per partition; "" = no owner
  };
  // Where one call goes.
  struct Route {
    v1::Tailor::Stub* stub = nullptr;
    bool direct = false;  // to an owner, not `target`
    int partition = -1;   // -1: unknown
    std::string address;  // the owner's, when direct
  };
  // `direct` false: to `target` (the partition still computed, for the router's header).
  Route RouteFor(const std::string& user_id, bool direct);
  std::shared_ptr<const RoutingMap> Map();
  void InvalidateMap();
  v1::Tailor::Stub* StubFor(const std::string& address);

  // Runs `attempt(context, stub)` (one RPC) with deadline and retries, routed by `user_id`
  // (empty: to `target`). A direct call that fails UNAVAILABLE is retried through `target`.
  template <typename Attempt>
  absl::Status Call(const std::string& user_id, Attempt attempt, int max_attempts = 0);
  // Adds the routing headers (when `user_id` is set) and the bearer token to a call.
  void Decorate(grpc::ClientContext& context, const std::string& user_id, int partition) const;
  // One stream's worth of StreamFeedback: `events[indices]`, acks stored at the same indices.
  absl::Status StreamGroup(const std::vector<v1::FeedbackEvent>& events,
                           const std::vector<size_t>& indices, Route route,
                           std::vector<v1::FeedbackAck>& acks,
                           const std::function<void(const v1::FeedbackAck&)>& on_ack);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Tailor::Stub> stub_;
  std::mutex routing_mu_;
  std::shared_ptr<const RoutingMap> map_;  // guarded by routing_mu_
  bool map_reading_ = false;               // guarded by routing_mu_
  // Owners' stubs by address, kept for the client's life (a handful of shards).
  std::map<std::string, std::unique_ptr<v1::Tailor::Stub>> owner_stubs_;  // guarded
  std::mutex on_ack_mu_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  std::unique_ptr<v1::TailorAdmin::Stub> admin_;
};

}  // namespace tailor::client

#endif  // TAILOR_CLIENT_TAILOR_CLIENT_H_
