// Metrics: tailord's Prometheus registry and the HTTP exposer serving /metrics on its own
// port. Label sets are bounded: no user id or other unbounded value ever becomes a label.
#ifndef TAILOR_SERVER_METRICS_H_
#define TAILOR_SERVER_METRICS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace tailor::server {

class Metrics {
 public:
  // Starts serving /metrics on `listen` (host:port; port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(const std::string& listen);

  prometheus::Registry& registry() { return *registry_; }
  int port() const { return port_; }

 private:
  Metrics(std::shared_ptr<prometheus::Registry> registry,
          std::unique_ptr<prometheus::Exposer> exposer, int port);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_;
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_METRICS_H_
