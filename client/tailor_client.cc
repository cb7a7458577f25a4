#include "client/tailor_client.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/routing_header.h"

namespace tailor::client {

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {

std::shared_ptr<grpc::ChannelCredentials> CredentialsFor(const ClientOptions& options) {
  if (!options.tls.has_value()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls->root_ca_pem;
  ssl.pem_cert_chain = options.tls->cert_pem;
  ssl.pem_private_key = options.tls->key_pem;
  return grpc::SslCredentials(ssl);
}

}  // namespace

TailorClient::TailorClient(ClientOptions options)
    : options_(std::move(options)),
      channel_(grpc::CreateChannel(options_.target, CredentialsFor(options_))),
      stub_(v1::Tailor::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)),
      admin_(v1::TailorAdmin::NewStub(channel_)) {}

template <typename Attempt>
absl::Status TailorClient::Call(const std::string& user_id, Attempt attempt, int max_attempts) {
  absl::Duration backoff = options_.initial_backoff;
  absl::Status status;
  const int attempts = max_attempts > 0 ? max_attempts : std::max(1, options_.max_attempts);
  for (int i = 0; i < attempts; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(options_.deadline));
    Decorate(context, user_id);
    status = FromGrpc(attempt(context));
    if (status.code() != absl::StatusCode::kUnavailable || i + 1 == attempts) return status;
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff));
    backoff *= 2;
  }
  return status;
}

void TailorClient::Decorate(grpc::ClientContext& context, const std::string& user_id) const {
  // Lets a consistent-hash router keep each user on one shard.
  if (!user_id.empty()) context.AddMetadata(kRoutingHeader, EncodeRoutingHeader(user_id));
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
}

absl::StatusOr<v1::ServerInfo> TailorClient::GetServerInfo() {
  v1::ServerInfo info;
  absl::Status status = Call("", [&](grpc::ClientContext& context) {
    return stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info);
  });
  if (!status.ok()) return status;
  return info;
}

absl::StatusOr<v1::RankResponsesResponse> TailorClient::Rank(
    const v1::RankResponsesRequest& request) {
  v1::RankResponsesResponse response;
  absl::Status status = Call(request.user_id(), [&](grpc::ClientContext& context) {
    return stub_->RankResponses(&context, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::SuggestComparisonResponse> TailorClient::Suggest(
    const v1::SuggestComparisonRequest& request) {
  v1::SuggestComparisonResponse response;
  absl::Status status = Call(request.user_id(), [&](grpc::ClientContext& context) {
    return stub_->SuggestComparison(&context, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::FeedbackAck> TailorClient::SubmitFeedback(const v1::FeedbackEvent& event) {
  v1::SubmitFeedbackRequest request;
  *request.mutable_event() = event;
  v1::FeedbackAck ack;
  absl::Status status = Call(event.user_id(), [&](grpc::ClientContext& context) {
    return stub_->SubmitFeedback(&context, request, &ack);
  });
  if (!status.ok()) return status;
  return ack;
}

absl::StatusOr<std::vector<v1::FeedbackAck>> TailorClient::StreamFeedback(
    const std::vector<v1::FeedbackEvent>& events,
    const std::function<void(const v1::FeedbackAck&)>& on_ack) {
  std::vector<v1::FeedbackAck> acks;
  acks.reserve(events.size());
  absl::Status status;
  // A stream of one user's events is routed by that user; a mixed stream (one shard, or no
  // router) carries no routing header.
  std::string routed_user = events.empty() ? "" : events.front().user_id();
  for (const v1::FeedbackEvent& event : events) {
    if (event.user_id() != routed_user) routed_user.clear();
  }
  for (int stream_attempt = 0; stream_attempt < std::max(1, options_.max_attempts);
       ++stream_attempt) {
    if (acks.size() == events.size()) break;
    // A stream has no overall deadline (it may carry millions of events); a dead server is
    // noticed through the transport.
    grpc::ClientContext context;
    Decorate(context, routed_user);
    auto stream = stub_->StreamFeedback(&context);
    const size_t first = acks.size();
    // Writer and reader run concurrently so the window of in-flight events stays full.
    std::thread writer([&] {
      for (size_t i = first; i < events.size(); ++i) {
        if (!stream->Write(events[i])) break;
      }
      stream->WritesDone();
    });
    v1::FeedbackAck ack;
    while (acks.size() < events.size() && stream->Read(&ack)) {
      acks.push_back(ack);
      if (on_ack) on_ack(ack);
    }
    writer.join();
    status = FromGrpc(stream->Finish());
    if (status.ok() && acks.size() == events.size()) return acks;
    if (!status.ok() && status.code() != absl::StatusCode::kUnavailable) return status;
  }
  if (acks.size() == events.size()) return acks;
  return status.ok() ? absl::UnavailableError("feedback stream ended before every ack") : status;
}

absl::StatusOr<v1::UserProfile> TailorClient::GetUser(const std::string& user_id) {
  v1::GetUserRequest request;
  request.set_user_id(user_id);
  v1::UserProfile profile;
  absl::Status status = Call(user_id, [&](grpc::ClientContext& context) {
    return stub_->GetUser(&context, request, &profile);
  });
  if (!status.ok()) return status;
  return profile;
}

absl::StatusOr<std::vector<v1::ExportUserResponse>> TailorClient::ExportUser(
    const std::string& user_id) {
  v1::ExportUserRequest request;
  request.set_user_id(user_id);
  std::vector<v1::ExportUserResponse> items;
  absl::Status status = Call(user_id, [&](grpc::ClientContext& context) {
    items.clear();
    auto reader = stub_->ExportUser(&context, request);
    v1::ExportUserResponse item;
    while (reader->Read(&item)) items.push_back(item);
    return reader->Finish();
  });
  if (!status.ok()) return status;
  return items;
}

absl::StatusOr<v1::DeleteUserResponse> TailorClient::DeleteUser(const std::string& user_id) {
  v1::DeleteUserRequest request;
  request.set_user_id(user_id);
  v1::DeleteUserResponse response;
  absl::Status status = Call(user_id, [&](grpc::ClientContext& context) {
    return stub_->DeleteUser(&context, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::CreateCheckpointResponse> TailorClient::CreateCheckpoint(
    const std::string& directory) {
  v1::CreateCheckpointRequest request;
  request.set_directory(directory);
  v1::CreateCheckpointResponse response;
  absl::Status status = Call(
      "",
      [&](grpc::ClientContext& context) {
        return admin_->CreateCheckpoint(&context, request, &response);
      },
      /*max_attempts=*/1);
  if (!status.ok()) return status;
  return response;
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
