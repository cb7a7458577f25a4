// LiveGuard: the safety net behind the fitted trust. Every arriving pair is predicted, before
// Tailor learns from it, by each combination it could serve at the user's experience level —
// the fitted one, the population alone and the own posterior alone — and each level serves a
// mixture of the three weighted by exp(-cumulative log loss) (an exponentially weighted
// average forecaster, i.e. Bayesian model averaging over the combinations). For log loss such
// a probability mixture is never worse than the best combination by more than ln(1 / prior
// share) nats in total; Tailor mixes the combinations' preference vectors rather than their
// probabilities (one vector ranks consistently), which keeps the bound only approximately.
// Losses decay with a half-life of `window` events per level, so a refit that starts
// predicting badly loses its share within about that many events. The engine starts the fitted
// combination at 0.98 and the others at 0.01 each: the fitted one can lose at most 0.02 nats to
// the best, and either other takes over after ln(100) = 4.6 nats of excess loss at a level.
#ifndef TAILOR_ENGINE_LIVE_GUARD_H_
#define TAILOR_ENGINE_LIVE_GUARD_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/mutex.h"

namespace tailor::engine {

class LiveGuard {
 public:
  enum Candidate { kFitted = 0, kPopulation = 1, kOwn = 2 };
  static constexpr int kCandidates = 3;
  using Shares = std::array<double, kCandidates>;

  // `levels`: experience levels tracked; `window`: events per level after which a loss counts
  // half; `prior`: each candidate's share before any evidence.
  LiveGuard(int levels, double window, Shares prior);

  // Each candidate's log loss on one pair at `level` (before learning from it).
  void Observe(int level, const std::array<double, kCandidates>& losses);
  Shares SharesAt(int level) const;
  // Forgets all evidence: the candidates have changed (a refit).
  void Reset();
  // Decayed events seen at `level`.
  double EvidenceAt(int level) const;

 private:
  struct Level {
    std::array<double, kCandidates> loss{};
    double events = 0;
  };
  const double decay_;
  const Shares prior_;
  mutable Mutex mu_;
  std::vector<Level> levels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_LIVE_GUARD_H_
