#include "engine/live_guard.h"

#include <algorithm>
#include <cmath>

namespace tailor::engine {

LiveGuard::LiveGuard(int levels, double window, Shares prior)
    : decay_(std::pow(0.5, 1.0 / std::max(1.0, window))),
      prior_(prior),
      levels_(static_cast<size_t>(std::max(1, levels))) {}

void LiveGuard::Observe(int level, const std::array<double, kCandidates>& losses) {
  MutexLock lock(&mu_);
  if (level < 0 || level >= static_cast<int>(levels_.size())) return;
  Level& l = levels_[static_cast<size_t>(level)];
  for (int c = 0; c < kCandidates; ++c) {
    l.loss[static_cast<size_t>(c)] =
        decay_ * l.loss[static_cast<size_t>(c)] + losses[static_cast<size_t>(c)];
  }
  l.events = decay_ * l.events + 1;
}

void LiveGuard::Reset() {
  MutexLock lock(&mu_);
  for (Level& level : levels_) level = Level{};
}

LiveGuard::Shares LiveGuard::SharesAt(int level) const {
  MutexLock lock(&mu_);
  if (level < 0 || level >= static_cast<int>(levels_.size())) return prior_;
  const Level& l = levels_[static_cast<size_t>(level)];
  const double best = *std::min_element(l.loss.begin(), l.loss.end());
  Shares shares{};
  double total = 0;
  for (int c = 0; c < kCandidates; ++c) {
    shares[static_cast<size_t>(c)] =
        prior_[static_cast<size_t>(c)] * std::exp(-(l.loss[static_cast<size_t>(c)] - best));
    total += shares[static_cast<size_t>(c)];
  }
  for (double& s : shares) s /= total;
  return shares;
}

double LiveGuard::EvidenceAt(int level) const {
  MutexLock lock(&mu_);
  if (level < 0 || level >= static_cast<int>(levels_.size())) return 0;
  return levels_[static_cast<size_t>(level)].events;
}

}  // namespace tailor::engine
