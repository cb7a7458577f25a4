#include "server/forwarder.h"

#include <algorithm>
#include <utility>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/routing_header.h"

namespace tailor::server {
namespace {

std::optional<std::string> Header(const grpc::CallbackServerContext& context,
                                  const std::string& key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

ForwardedCall Forwarder::From(const grpc::CallbackServerContext& context) {
  ForwardedCall call;
  call.authorization = Header(context, "authorization");
  call.routed_user = Header(context, kRoutingHeader);
  call.deadline = context.deadline();
  return call;
}

bool Forwarder::IsForwarded(const grpc::CallbackServerContext& context) {
  return Header(context, kForwardedHeader).has_value();
}

void Forwarder::Prepare(const ForwardedCall& call, grpc::ClientContext& context) const {
  if (call.authorization.has_value()) context.AddMetadata("authorization", *call.authorization);
  if (call.routed_user.has_value()) context.AddMetadata(kRoutingHeader, *call.routed_user);
  context.AddMetadata(kForwardedHeader, shard_name_);
  context.set_deadline(
      std::min(call.deadline, std::chrono::system_clock::now() + std::chrono::seconds(30)));
}

std::shared_ptr<v1::Tailor::Stub> Forwarder::StubFor(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<v1::Tailor::Stub>& stub = stubs_[address];
  if (stub == nullptr) {
    stub = v1::Tailor::NewStub(grpc::CreateChannel(address, credentials_));
  }
  return stub;
}

absl::Status Forwarder::FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status Forwarder::Export(const ForwardedCall& call, const std::string& address,
                               const v1::ExportUserRequest& request,
                               std::vector<v1::ExportUserResponse>& messages) {
  grpc::ClientContext context;
  Prepare(call, context);
  std::unique_ptr<grpc::ClientReader<v1::ExportUserResponse>> reader =
      StubFor(address)->ExportUser(&context, request);
  v1::ExportUserResponse message;
  while (reader->Read(&message)) messages.push_back(std::move(message));
  return FromGrpc(reader->Finish());
}

}  // namespace tailor::server
