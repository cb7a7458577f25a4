// Progress and Parallel: what the benchmarks that drive live servers share — a progress bar on
// stderr (only on a terminal), and a fixed pool of client threads that report the first error.
#ifndef TAILOR_BENCH_PROGRESS_H_
#define TAILOR_BENCH_PROGRESS_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace tailor::bench {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled);
  void Add(int64_t n = 1);

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  std::atomic<int64_t> done_{0};
  std::mutex mu_;
};

// Runs fn(worker) for worker = 0..threads-1, each on its own thread, and returns the first
// error.
template <typename Fn>
absl::Status Parallel(int threads, Fn fn) {
  std::vector<std::thread> pool;
  std::vector<absl::Status> results(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { results[static_cast<size_t>(t)] = fn(t); });
  }
  for (std::thread& thread : pool) thread.join();
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_PROGRESS_H_
