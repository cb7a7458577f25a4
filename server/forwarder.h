// Forwarder: cluster mode's one hop. A call for a user whose partition another shard owns is
// made again to that shard, with the caller's credentials and routing header, and marked as
// forwarded so that it is never forwarded twice (shards whose maps disagree for a moment
// answer UNAVAILABLE instead of bouncing the call).
#ifndef TAILOR_SERVER_FORWARDER_H_
#define TAILOR_SERVER_FORWARDER_H_

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server_context.h"
#include "tailor/v1/tailor.grpc.pb.h"

namespace tailor::server {

// Metadata that marks a forwarded call (its value: the forwarding shard's name).
inline constexpr char kForwardedHeader[] = "x-tailor-forwarded-by";

// What a forwarded call carries from the original one.
struct ForwardedCall {
  std::optional<std::string> authorization;
  std::optional<std::string> routed_user;  // the x-user-id header, as sent
  // The original call's deadline (a forwarded call gets at most 30 s from when it is made).
  std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();
};

class Forwarder {
 public:
  // `credentials`: how this shard reaches the others (plaintext, or TLS presenting its own
  // certificate).
  Forwarder(std::string shard_name, std::shared_ptr<grpc::ChannelCredentials> credentials)
      : shard_name_(std::move(shard_name)), credentials_(std::move(credentials)) {}

  // The original call's credentials, routing header and deadline.
  static ForwardedCall From(const grpc::CallbackServerContext& context);
  static bool IsForwarded(const grpc::CallbackServerContext& context);

  // One unary call to the shard at `address`; the owner's status comes back as it is.
  template <typename Request, typename Response>
  absl::Status Unary(const ForwardedCall& call, const std::string& address,
                     grpc::Status (v1::Tailor::Stub::*method)(grpc::ClientContext*, const Request&,
                                                              Response*),
                     const Request& request, Response* response) {
    grpc::ClientContext context;
    Prepare(call, context);
    return FromGrpc((StubFor(address).get()->*method)(&context, request, response));
  }
  // ExportUser: every message of the owner's stream.
  absl::Status Export(const ForwardedCall& call, const std::string& address,
                      const v1::ExportUserRequest& request,
                      std::vector<v1::ExportUserResponse>& messages);

 private:
  void Prepare(const ForwardedCall& call, grpc::ClientContext& context) const;
  std::shared_ptr<v1::Tailor::Stub> StubFor(const std::string& address);
  static absl::Status FromGrpc(const grpc::Status& status);

  const std::string shard_name_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<v1::Tailor::Stub>> stubs_;  // guarded by mu_
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_FORWARDER_H_
