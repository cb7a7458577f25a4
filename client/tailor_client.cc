#include "client/tailor_client.h"

#include <chrono>
#include <thread>
#include <utility>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace tailor::client {

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

TailorClient::TailorClient(ClientOptions options)
    : options_(std::move(options)),
      channel_(grpc::CreateChannel(options_.target, grpc::InsecureChannelCredentials())),
      stub_(v1::Tailor::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

template <typename Attempt>
absl::Status TailorClient::Call(const std::string& user_id, Attempt attempt) {
  absl::Duration backoff = options_.initial_backoff;
  absl::Status status;
  for (int i = 0; i < std::max(1, options_.max_attempts); ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(options_.deadline));
    // Lets a consistent-hash router keep each user on one shard.
    if (!user_id.empty()) context.AddMetadata("x-user-id", user_id);
    status = FromGrpc(attempt(context));
    if (status.code() != absl::StatusCode::kUnavailable) return status;
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff));
    backoff *= 2;
  }
  return status;
}

absl::StatusOr<v1::ServerInfo> TailorClient::GetServerInfo() {
  v1::ServerInfo info;
  absl::Status status = Call("", [&](grpc::ClientContext& context) {
    return stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info);
  });
  if (!status.ok()) return status;
  return info;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> TailorClient::CheckHealth(
    const std::string& service) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  absl::Status status = Call("", [&](grpc::ClientContext& context) {
    return health_->Check(&context, request, &response);
  });
  if (!status.ok()) return status;
  return response.status();
}

absl::StatusOr<std::vector<std::string>> TailorClient::ListServices() {
  namespace reflection = grpc::reflection::v1alpha;
  auto stub = reflection::ServerReflection::NewStub(channel_);
  std::vector<std::string> names;
  absl::Status status = Call("", [&](grpc::ClientContext& context) {
    names.clear();
    auto stream = stub->ServerReflectionInfo(&context);
    reflection::ServerReflectionRequest request;
    request.set_list_services("");
    reflection::ServerReflectionResponse response;
    if (stream->Write(request) && stream->WritesDone() && stream->Read(&response)) {
      for (const auto& service : response.list_services_response().service()) {
        names.push_back(service.name());
      }
    }
    return stream->Finish();
  });
  if (!status.ok()) return status;
  return names;
}

}  // namespace tailor::client
