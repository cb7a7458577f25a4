#include "bench/load_generator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tailor::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Latencies and outcomes of the calls counted, shared by the completion threads.
class Recorder {
 public:
  void Add(double micros, const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    latencies_.push_back(micros);
    if (!status.ok()) {
      if (errors_++ == 0) first_error_ = status.error_message();
    }
  }
  LoadResult Result(double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    LoadResult r;
    r.calls = latencies_.size();
    r.errors = errors_;
    r.first_error = first_error_;
    r.throughput = static_cast<double>(r.calls) / seconds;
    r.p50_us = Percentile(latencies_, 0.5);
    r.p90_us = Percentile(latencies_, 0.9);
    r.p99_us = Percentile(latencies_, 0.99);
    r.p999_us = Percentile(latencies_, 0.999);
    return r;
  }

 private:
  std::mutex mu_;
  std::vector<double> latencies_;
  uint64_t errors_ = 0;
  std::string first_error_;
};

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

}  // namespace

double Percentile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto i = static_cast<size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(i, values.size() - 1)];
}

LoadResult RunLoad(const LoadOptions& options, const StartCall& start_call) {
  Recorder recorder;
  const Clock::time_point start = Clock::now();
  const Clock::time_point measure_from = start + absl::ToChronoNanoseconds(options.warmup);
  const Clock::time_point deadline = measure_from + absl::ToChronoNanoseconds(options.duration);
  std::atomic<uint64_t> next_index{0};
  std::atomic<int> in_flight{0};
  std::mutex done_mu;
  std::condition_variable done_cv;
  // Under the lock, so RunLoad cannot see zero and return while a callback still uses it.
  const auto finished = [&] {
    std::lock_guard<std::mutex> lock(done_mu);
    if (in_flight.fetch_sub(1) == 1) done_cv.notify_all();
  };
  const auto record = [&](Clock::time_point from, Clock::time_point to, const grpc::Status& s) {
    if (from >= measure_from && to <= deadline) recorder.Add(Micros(to - from), s);
  };

  // Closed loop: each slot reissues its call from the completion callback until the end.
  // (Declared at function scope: callbacks use it until the wait below is over.)
  std::function<void(int)> issue = [&](int slot) {
    const Clock::time_point sent = Clock::now();
    start_call(slot % options.connections, next_index++,
               [&, slot, sent](const grpc::Status& status) {
                 const Clock::time_point now = Clock::now();
                 record(sent, now, status);
                 if (now < deadline) {
                   issue(slot);
                 } else {
                   finished();
                 }
               });
  };
  if (options.rate <= 0) {
    in_flight = options.concurrency;
    for (int slot = 0; slot < options.concurrency; ++slot) issue(slot);
  } else {
    // Open loop: calls start on schedule; a full window delays the start, not the clock.
    in_flight = 1;  // the pacer itself, released when it stops
    const auto interval = std::chrono::duration<double>(1.0 / options.rate);
    for (uint64_t k = 0;; ++k) {
      const Clock::time_point scheduled =
          start + std::chrono::duration_cast<Clock::duration>(interval * static_cast<double>(k));
      if (scheduled >= deadline) break;
      std::this_thread::sleep_until(scheduled);
      while (in_flight.load() > options.concurrency) std::this_thread::yield();
      in_flight.fetch_add(1);
      start_call(static_cast<int>(k % static_cast<uint64_t>(options.connections)), next_index++,
                 [&, scheduled](const grpc::Status& status) {
                   record(scheduled, Clock::now(), status);
                   finished();
                 });
    }
    finished();
  }
  std::unique_lock<std::mutex> lock(done_mu);
  done_cv.wait(lock, [&] { return in_flight.load() == 0; });
  return recorder.Result(absl::ToDoubleSeconds(options.duration));
}

}  // namespace tailor::bench
