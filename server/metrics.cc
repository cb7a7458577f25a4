#include "server/metrics.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "prometheus/gauge.h"
#include "server/version.h"

namespace tailor::server {

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(const std::string& listen) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge()
      .Name("tailor_build_info")
      .Help("Always 1; the labels say which build is running.")
      .Register(*registry)
      .Add({{"version", kTailorVersion}})
      .Set(1);

  std::unique_ptr<prometheus::Exposer> exposer;
  // prometheus-cpp (civetweb) reports a bind failure by throwing; convert it here, once.
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics_listen: cannot serve metrics on ", listen, ": ", e.what()));
  }
  exposer->RegisterCollectable(registry);
  const std::vector<int> ports = exposer->GetListeningPorts();
  const int port = ports.empty() ? 0 : ports.front();
  return std::unique_ptr<Metrics>(new Metrics(std::move(registry), std::move(exposer), port));
}

Metrics::Metrics(std::shared_ptr<prometheus::Registry> registry,
                 std::unique_ptr<prometheus::Exposer> exposer, int port)
    : registry_(std::move(registry)), exposer_(std::move(exposer)), port_(port) {}

}  // namespace tailor::server
