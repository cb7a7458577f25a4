#include "bench/echo_server.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace tailor::bench {

grpc::ServerUnaryReactor* EchoServer::Service::RankResponses(
    grpc::CallbackServerContext* context, const tailor::v1::RankResponsesRequest* request,
    tailor::v1::RankResponsesResponse* response) {
  for (const tailor::v1::Candidate& c : request->candidates()) {
    tailor::v1::RankedCandidate* out = response->add_ranked();
    out->set_id(c.id());
    out->set_score(0.5);
    out->set_probability_best(0.125);
  }
  response->set_knowledge_source(tailor::v1::KNOWLEDGE_SOURCE_PERSONAL);
  response->set_user_feedback_count(20);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

absl::StatusOr<std::unique_ptr<EchoServer>> EchoServer::Start(const std::string& address) {
  std::unique_ptr<EchoServer> echo(new EchoServer);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &echo->port_);
  builder.RegisterService(&echo->service_);
  echo->server_ = builder.BuildAndStart();
  if (echo->server_ == nullptr || echo->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("echo server: cannot listen on ", address));
  }
  return echo;
}

EchoServer::~EchoServer() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
}

}  // namespace tailor::bench
