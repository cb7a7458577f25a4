// TailorService and TailorAdminService: the tailor.v1 gRPC services on the callback API.
// They validate and translate requests, call the engine, and translate replies; work that
// may block on storage runs on the WorkQueue, never in a reactor callback.
#ifndef TAILOR_SERVER_TAILOR_SERVICE_H_
#define TAILOR_SERVER_TAILOR_SERVICE_H_

#include <atomic>
#include <optional>
#include <string>

#include "cluster/shard.h"
#include "engine/preference_engine.h"
#include "server/auth.h"
#include "server/forwarder.h"
#include "server/metrics.h"
#include "server/quota.h"
#include "server/server_config.h"
#include "server/work_queue.h"
#include "tailor/v1/tailor.grpc.pb.h"

namespace tailor::server {

// absl::Status -> grpc::Status, once, at this boundary (the codes are the same numbers).
grpc::Status ToGrpc(const absl::Status& status);

// Who a call comes from and how it was routed.
struct CallScope {
  std::string tenant;                      // "" without token auth
  TenantQuotas* quotas = nullptr;          // null: no quotas
  bool admin = true;                       // may call TailorAdmin
  std::optional<std::string> routed_user;  // the x-user-id metadata, if sent
  bool require_routed_user = false;
  Metrics* metrics = nullptr;  // counts routing refusals, when set
  // Cluster mode: what a forwarded call takes along, and whether this call was forwarded.
  ForwardedCall forward;
  bool forwarded = false;

  // The user's id in storage and the engine: tenants never share one.
  std::string StorageId(absl::string_view user_id) const;
  // INVALID_ARGUMENT if the x-user-id metadata disagrees with the message's user id (or is
  // missing where required).
  absl::Status CheckRouting(absl::string_view user_id) const;
};

// Authenticates a call (when `auth` is set), takes one request from its tenant's quota (when
// `quotas` is set: else RESOURCE_EXHAUSTED) and reads its routing header. UNAVAILABLE until
// the server is `ready` (its users loaded). Routing refusals and quota refusals are counted in
// `metrics` (when set), apart from other bad input.
absl::StatusOr<CallScope> Admit(const grpc::CallbackServerContext* context,
                                const Authenticator* auth, TenantQuotas* quotas,
                                const ServerConfig& config, Metrics* metrics, bool ready);

// Every method is registered raw (bytes in, bytes out) and parsed in server/message_parsing.h,
// so unparsable input gets INVALID_ARGUMENT "<field>: <rule>" (gRPC's own answer would be
// UNIMPLEMENTED with no message) and a stream answers an unparsable event with a REJECTED ack.
using TailorRawService = v1::Tailor::WithRawCallbackMethod_RankResponses<
    v1::Tailor::WithRawCallbackMethod_SubmitFeedback<
        v1::Tailor::WithRawCallbackMethod_StreamFeedback<
            v1::Tailor::WithRawCallbackMethod_SuggestComparison<
                v1::Tailor::WithRawCallbackMethod_GetUser<
                    v1::Tailor::WithRawCallbackMethod_ExportUser<
                        v1::Tailor::WithRawCallbackMethod_DeleteUser<
                            v1::Tailor::WithRawCallbackMethod_GetServerInfo<
                                v1::Tailor::Service>>>>>>>>;
using TailorAdminRawService =
    v1::TailorAdmin::WithRawCallbackMethod_CreateCheckpoint<v1::TailorAdmin::Service>;

// How one unary call finishes (defined in the .cc).
struct CallRecord;

class TailorService final : public TailorRawService {
 public:
  // `auth` and `quotas` may be null (no authentication; no quotas). Calls are refused
  // UNAVAILABLE until `ready`. `cluster` (null on a single node) must be set before `ready`,
  // and outlive the service.
  TailorService(engine::PreferenceEngine& engine, WorkQueue& queue, Metrics& metrics,
                const ServerConfig& config, const Authenticator* auth, TenantQuotas* quotas,
                const std::atomic<bool>& ready);
  // `shards`: the credentials calls forwarded to other shards are made with.
  void SetCluster(cluster::ClusterShard* cluster, std::shared_ptr<grpc::ChannelCredentials> shards);

  // Cluster mode: where a user's call is served. nullopt = here (always, on a single node);
  // else the owner's address, to forward to. UNAVAILABLE when the partition has no owner,
  // or when a forwarded call reaches a shard that does not own it either.
  absl::StatusOr<std::optional<std::string>> OwnerAddress(const CallScope& scope,
                                                          const std::string& storage_id) const;
  Forwarder* forwarder() { return forwarder_.get(); }

  grpc::ServerUnaryReactor* RankResponses(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* reply) override;
  grpc::ServerUnaryReactor* SubmitFeedback(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* reply) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StreamFeedback(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* SuggestComparison(grpc::CallbackServerContext* context,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* reply) override;
  grpc::ServerUnaryReactor* GetUser(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* reply) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* ExportUser(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* DeleteUser(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* reply) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* reply) override;

  // Validates and applies one event for a caller; the ack carries REJECTED + error for
  // invalid input. Blocks on storage: call from the WorkQueue.
  // Cluster mode: `forwarded` (if given) says whether another shard applied it (and counts it
  // in its metrics).
  absl::Status ApplyFeedback(const CallScope& scope, const v1::FeedbackEvent& event,
                             v1::FeedbackAck& ack, bool* forwarded = nullptr);
  // The same for several events, committed together in one durable write (group commit): an
  // ack per event, in order. A non-OK status (a storage fault) means none of them was stored
  // and `acks` is not to be sent.
  absl::Status ApplyFeedbackBatch(const CallScope& scope,
                                  std::span<const v1::FeedbackEvent* const> events,
                                  std::vector<v1::FeedbackAck>& acks,
                                  std::vector<char>* forwarded = nullptr);

  WorkQueue& queue() { return queue_; }
  bool ready() const { return ready_.load(); }
  engine::PreferenceEngine& engine() { return engine_; }
  Metrics& metrics() { return metrics_; }
  std::atomic<int>& open_streams() { return open_streams_; }
  absl::StatusOr<CallScope> Admit(const grpc::CallbackServerContext* context) const {
    return server::Admit(context, auth_, quotas_, config_, &metrics_, ready_.load());
  }

 private:
  // The ack for an event's result (REJECTED + error for invalid input); a non-OK status for a
  // fault that is not the event's (storage), which the caller reports instead.
  absl::Status AckFeedback(const absl::StatusOr<engine::FeedbackResult>& result,
                           v1::FeedbackAck& ack);
  // The typed handlers behind the raw methods; each finishes its call through `call`.
  grpc::ServerUnaryReactor* Rank(const CallRecord& call, grpc::CallbackServerContext* context,
                                 const v1::RankResponsesRequest* request,
                                 v1::RankResponsesResponse* response);
  grpc::ServerUnaryReactor* Submit(const CallRecord& call, grpc::CallbackServerContext* context,
                                   const v1::SubmitFeedbackRequest* request,
                                   v1::FeedbackAck* response);
  grpc::ServerUnaryReactor* Suggest(const CallRecord& call, grpc::CallbackServerContext* context,
                                    const v1::SuggestComparisonRequest* request,
                                    v1::SuggestComparisonResponse* response);
  grpc::ServerUnaryReactor* User(const CallRecord& call, grpc::CallbackServerContext* context,
                                 const v1::GetUserRequest* request, v1::UserProfile* response);
  grpc::ServerUnaryReactor* Delete(const CallRecord& call, grpc::CallbackServerContext* context,
                                   const v1::DeleteUserRequest* request,
                                   v1::DeleteUserResponse* response);
  grpc::ServerUnaryReactor* Info(const CallRecord& call, grpc::CallbackServerContext* context,
                                 const v1::GetServerInfoRequest* request, v1::ServerInfo* response);

  engine::PreferenceEngine& engine_;
  WorkQueue& queue_;
  Metrics& metrics_;
  const ServerConfig& config_;
  const Authenticator* auth_;
  TenantQuotas* quotas_;
  const std::atomic<bool>& ready_;
  std::atomic<int> open_streams_{0};
  cluster::ClusterShard* cluster_ = nullptr;
  std::unique_ptr<Forwarder> forwarder_;
};

class TailorAdminService final : public TailorAdminRawService {
 public:
  TailorAdminService(engine::PreferenceEngine& engine, WorkQueue& queue, Metrics& metrics,
                     const ServerConfig& config, const Authenticator* auth, TenantQuotas* quotas,
                     const std::atomic<bool>& ready);
  grpc::ServerUnaryReactor* CreateCheckpoint(grpc::CallbackServerContext* context,
                                             const grpc::ByteBuffer* request,
                                             grpc::ByteBuffer* reply) override;
  bool ready() const { return ready_.load(); }

 private:
  grpc::ServerUnaryReactor* Checkpoint(const CallRecord& call, grpc::CallbackServerContext* context,
                                       const v1::CreateCheckpointRequest* request,
                                       v1::CreateCheckpointResponse* response);

  engine::PreferenceEngine& engine_;
  WorkQueue& queue_;
  Metrics& metrics_;
  const ServerConfig& config_;
  const Authenticator* auth_;
  TenantQuotas* quotas_;
  const std::atomic<bool>& ready_;
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_TAILOR_SERVICE_H_
