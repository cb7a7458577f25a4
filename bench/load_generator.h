// LoadGenerator: drives asynchronous gRPC calls (callback API) at a server and measures
// throughput and latency percentiles. Closed loop: `concurrency` calls always in flight, each
// reissued as soon as it completes (saturation). Open loop: calls start on a fixed schedule
// of `rate` per second, and each latency counts from its scheduled start, so a server that
// falls behind is charged for the queueing it causes (no coordinated omission).
#ifndef TAILOR_BENCH_LOAD_GENERATOR_H_
#define TAILOR_BENCH_LOAD_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/support/status.h"

namespace tailor::bench {

struct LoadOptions {
  int connections = 4;   // channels the calls are spread over
  int concurrency = 64;  // calls in flight (closed loop), or the most in flight (open loop)
  absl::Duration warmup = absl::Seconds(1);    // calls started before this are not counted
  absl::Duration duration = absl::Seconds(5);  // measured window after the warm-up
  double rate = 0;                             // calls per second; 0 = closed loop
};

struct LoadResult {
  uint64_t calls = 0;   // completed in the measured window
  uint64_t errors = 0;  // of which failed
  std::string first_error;
  double throughput = 0;  // calls per second
  double p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0;
};

// Starts one call on channel `connection`; must call `done` exactly once when it completes.
using StartCall = std::function<void(int connection, uint64_t index,
                                     std::function<void(const grpc::Status&)> done)>;

LoadResult RunLoad(const LoadOptions& options, const StartCall& start_call);

// Percentile q in [0, 1] of `values` (sorted in place).
double Percentile(std::vector<double>& values, double q);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_LOAD_GENERATOR_H_
