#include "bench/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tailor::bench {

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled && ::isatty(2)) {}

void Progress::Add(int64_t n) {
  const int64_t done = done_.fetch_add(n) + n;
  if (!enabled_) return;
  const int width = 30;
  const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total_));
  std::lock_guard<std::mutex> lock(mu_);
  std::fprintf(stderr, "\r%-28s [%s%s] %lld/%lld", label_.c_str(),
               std::string(static_cast<size_t>(filled), '#').c_str(),
               std::string(static_cast<size_t>(width - filled), ' ').c_str(),
               static_cast<long long>(done), static_cast<long long>(total_));
  if (done >= total_) std::fprintf(stderr, "\n");
}

}  // namespace tailor::bench
