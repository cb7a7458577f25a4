#include "client/tailor_client.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/partition_routing.h"
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

std::shared_ptr<const TailorClient::RoutingMap> TailorClient::Map() {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(routing_mu_);
    if (map_ != nullptr && now - map_->read_at < absl::ToChronoNanoseconds(options_.map_refresh)) {
      return map_;
    }
    // One caller reads it; the others use the old map (or `target`) meanwhile.
    if (map_reading_) return map_;
    map_reading_ = true;
  }
  auto fresh = std::make_shared<RoutingMap>();
  fresh->read_at = now;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.deadline));
  Decorate(context, "", -1);
  v1::ServerInfo info;
  const grpc::Status status = stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info);
  const v1::ClusterRouting& routing = info.cluster();
  // A map this client cannot use (another hash, or a shard without a map yet) routes nothing.
  if (status.ok() && info.has_cluster() && routing.partition_hash() == kPartitionHashName &&
      routing.partitions() > 0 && routing.owners_size() == static_cast<int>(routing.partitions())) {
    fresh->partitions = static_cast<int>(routing.partitions());
    fresh->tenant = routing.tenant();
    for (int owner : routing.owners()) {
      fresh->owner_address.push_back(owner >= 0 && owner < routing.shards_size()
                                         ? routing.shards(owner).address()
                                         : std::string());
    }
  }
  std::lock_guard<std::mutex> lock(routing_mu_);
  map_reading_ = false;
  map_ = std::move(fresh);
  return map_;
}

void TailorClient::InvalidateMap() {
  std::lock_guard<std::mutex> lock(routing_mu_);
  map_.reset();
}

v1::Tailor::Stub* TailorClient::StubFor(const std::string& address) {
  std::lock_guard<std::mutex> lock(routing_mu_);
  std::unique_ptr<v1::Tailor::Stub>& stub = owner_stubs_[address];
  if (stub == nullptr) {
    stub = v1::Tailor::NewStub(grpc::CreateChannel(address, CredentialsFor(options_)));
  }
  return stub.get();
}

TailorClient::Route TailorClient::RouteFor(const std::string& user_id, bool direct) {
  Route route;
  route.stub = stub_.get();
  if (!options_.route_to_owner || user_id.empty()) return route;
  std::shared_ptr<const RoutingMap> map = Map();
  if (map == nullptr || map->partitions == 0) return route;
  route.partition = PartitionOf(StorageIdOf(map->tenant, user_id), map->partitions);
  const std::string& address = map->owner_address[static_cast<size_t>(route.partition)];
  if (direct && !address.empty()) {
    route.stub = StubFor(address);
    route.direct = true;
    route.address = address;
  }
  return route;
}

std::string TailorClient::AddressFor(const std::string& user_id) {
  const Route route = RouteFor(user_id, /*direct=*/true);
  return route.direct ? route.address : options_.target;
}

template <typename Attempt>
absl::Status TailorClient::Call(const std::string& user_id, Attempt attempt, int max_attempts) {
  absl::Duration backoff = options_.initial_backoff;
  absl::Status status;
  const int attempts = max_attempts > 0 ? max_attempts : std::max(1, options_.max_attempts);
  bool direct = true;
  for (int i = 0; i < attempts; ++i) {
    const Route route = RouteFor(user_id, direct);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(options_.deadline));
    Decorate(context, user_id, route.partition);
    status = FromGrpc(attempt(context, *route.stub));
    if (status.code() != absl::StatusCode::kUnavailable) return status;
    if (route.direct) {
      // The owner is unreachable from here, or moving: read the map again, and retry this
      // call through `target` at once (a direct failure costs no attempt).
      InvalidateMap();
      direct = false;
      --i;
      continue;
    }
    if (i + 1 == attempts) return status;
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff));
    backoff *= 2;
  }
  return status;
}

void TailorClient::Decorate(grpc::ClientContext& context, const std::string& user_id,
                            int partition) const {
  // Lets a consistent-hash router keep each user on one shard.
  if (!user_id.empty()) context.AddMetadata(kRoutingHeader, EncodeRoutingHeader(user_id));
  // Lets a router configured from the partition map send the call to the owner.
  if (partition >= 0) context.AddMetadata(kPartitionHeader, std::to_string(partition));
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
}

absl::StatusOr<v1::ServerInfo> TailorClient::GetServerInfo() {
  v1::ServerInfo info;
  absl::Status status = Call("", [&](grpc::ClientContext& context, v1::Tailor::Stub& stub) {
    return stub.GetServerInfo(&context, v1::GetServerInfoRequest(), &info);
  });
  if (!status.ok()) return status;
  return info;
}

absl::StatusOr<v1::RankResponsesResponse> TailorClient::Rank(
    const v1::RankResponsesRequest& request) {
  v1::RankResponsesResponse response;
  absl::Status status =
      Call(request.user_id(), [&](grpc::ClientContext& context, v1::Tailor::Stub& stub) {
        return stub.RankResponses(&context, request, &response);
      });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::SuggestComparisonResponse> TailorClient::Suggest(
    const v1::SuggestComparisonRequest& request) {
  v1::SuggestComparisonResponse response;
  absl::Status status =
      Call(request.user_id(), [&](grpc::ClientContext& context, v1::Tailor::Stub& stub) {
        return stub.SuggestComparison(&context, request, &response);
      });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::FeedbackAck> TailorClient::SubmitFeedback(const v1::FeedbackEvent& event) {
  v1::SubmitFeedbackRequest request;
  *request.mutable_event() = event;
  v1::FeedbackAck ack;
  absl::Status status =
      Call(event.user_id(), [&](grpc::ClientContext& context, v1::Tailor::Stub& stub) {
        return stub.SubmitFeedback(&context, request, &ack);
      });
  if (!status.ok()) return status;
  return ack;
}

absl::StatusOr<std::vector<v1::FeedbackAck>> TailorClient::StreamFeedback(
    const std::vector<v1::FeedbackEvent>& events,
    const std::function<void(const v1::FeedbackAck&)>& on_ack) {
  std::vector<v1::FeedbackAck> acks(events.size());
  if (events.empty()) return acks;
  // One stream per owner ("" = `target`).
  std::map<std::string, std::pair<Route, std::vector<size_t>>> groups;
  for (size_t i = 0; i < events.size(); ++i) {
    const Route route = RouteFor(events[i].user_id(), /*direct=*/true);
    auto& group = groups[route.direct ? route.address : std::string()];
    if (group.second.empty()) group.first = route;
    group.second.push_back(i);
  }
  if (groups.size() == 1) {
    auto& [route, indices] = groups.begin()->second;
    absl::Status status = StreamGroup(events, indices, route, acks, on_ack);
    if (!status.ok()) return status;
    return acks;
  }
  std::vector<absl::Status> statuses(groups.size());
  std::vector<std::thread> streams;
  size_t g = 0;
  for (auto& [address, group] : groups) {
    streams.emplace_back([&, &group = group, g] {
      statuses[g] = StreamGroup(events, group.second, group.first, acks, on_ack);
    });
    ++g;
  }
  for (std::thread& stream : streams) stream.join();
  for (const absl::Status& status : statuses) {
    if (!status.ok()) return status;
  }
  return acks;
}

absl::Status TailorClient::StreamGroup(const std::vector<v1::FeedbackEvent>& events,
                                       const std::vector<size_t>& indices, Route route,
                                       std::vector<v1::FeedbackAck>& acks,
                                       const std::function<void(const v1::FeedbackAck&)>& on_ack) {
  // A stream of one user's events is routed by that user; a mixed stream (one shard, or no
  // router) carries no routing header.
  std::string routed_user = events[indices.front()].user_id();
  for (size_t i : indices) {
    if (events[i].user_id() != routed_user) routed_user.clear();
  }
  if (routed_user.empty()) route.partition = -1;
  const size_t n = indices.size();
  size_t done = 0;
  absl::Status status;
  for (int stream_attempt = 0; stream_attempt < std::max(1, options_.max_attempts);
       ++stream_attempt) {
    if (done == n) break;
    // A stream has no overall deadline (it may carry millions of events); a dead server is
    // noticed through the transport.
    grpc::ClientContext context;
    Decorate(context, routed_user, route.partition);
    auto stream = route.stub->StreamFeedback(&context);
    const size_t first = done;
    // Writer and reader run concurrently so the window of in-flight events stays full.
    std::thread writer([&] {
      for (size_t k = first; k < n; ++k) {
        if (!stream->Write(events[indices[k]])) break;
      }
      stream->WritesDone();
    });
    v1::FeedbackAck ack;
    while (done < n && stream->Read(&ack)) {
      acks[indices[done++]] = ack;
      if (on_ack) {
        std::lock_guard<std::mutex> lock(on_ack_mu_);
        on_ack(ack);
      }
    }
    writer.join();
    status = FromGrpc(stream->Finish());
    if (status.ok() && done == n) return status;
    if (!status.ok() && status.code() != absl::StatusCode::kUnavailable) return status;
    if (route.direct) {  // the rest through `target`, at once
      InvalidateMap();
      route.stub = stub_.get();
      route.direct = false;
      --stream_attempt;
    }
  }
  if (done == n) return absl::OkStatus();
  return status.ok() ? absl::UnavailableError("feedback stream ended before every ack") : status;
}

absl::StatusOr<v1::UserProfile> TailorClient::GetUser(const std::string& user_id) {
  v1::GetUserRequest request;
  request.set_user_id(user_id);
  v1::UserProfile profile;
  absl::Status status = Call(user_id, [&](grpc::ClientContext& context, v1::Tailor::Stub& stub) {
    return stub.GetUser(&context, request, &profile);
  });
  if (!status.ok()) return status;
  return profile;
}

absl::StatusOr<std::vector<v1::ExportUserResponse>> TailorClient::ExportUser(
    const std::string& user_id) {
  v1::ExportUserRequest request;
  request.set_user_id(user_id);
  std::vector<v1::ExportUserResponse> items;
  absl::Status status = Call(user_id, [&](grpc::ClientContext& context, v1::Tailor::Stub& stub) {
    items.clear();
    auto reader = stub.ExportUser(&context, request);
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
  absl::Status status = Call(user_id, [&](grpc::ClientContext& context, v1::Tailor::Stub& stub) {
    return stub.DeleteUser(&context, request, &response);
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
      [&](grpc::ClientContext& context, v1::Tailor::Stub&) {
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
  absl::Status status = Call("", [&](grpc::ClientContext& context, v1::Tailor::Stub&) {
    return health_->Check(&context, request, &response);
  });
  if (!status.ok()) return status;
  return response.status();
}

absl::StatusOr<std::vector<std::string>> TailorClient::ListServices() {
  namespace reflection = grpc::reflection::v1alpha;
  auto stub = reflection::ServerReflection::NewStub(channel_);
  std::vector<std::string> names;
  absl::Status status = Call("", [&](grpc::ClientContext& context, v1::Tailor::Stub&) {
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
