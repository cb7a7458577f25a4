// EchoServer: the trivial gRPC server `tailor-bench load` measures Tailor against. It answers
// RankResponses with the candidates in the order given (same message sizes, no work), on the
// callback API like tailord, in the benchmark's own process.
#ifndef TAILOR_BENCH_ECHO_SERVER_H_
#define TAILOR_BENCH_ECHO_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "tailor/bench/v1/echo.grpc.pb.h"

namespace tailor::bench {

class EchoServer {
 public:
  // Serves on `address` (port 0 = any); the chosen port is port().
  static absl::StatusOr<std::unique_ptr<EchoServer>> Start(const std::string& address);
  ~EchoServer();
  int port() const { return port_; }

 private:
  class Service final : public v1::Echo::CallbackService {
    grpc::ServerUnaryReactor* RankResponses(grpc::CallbackServerContext* context,
                                            const tailor::v1::RankResponsesRequest* request,
                                            tailor::v1::RankResponsesResponse* response) override;
  };
  Service service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_ECHO_SERVER_H_
