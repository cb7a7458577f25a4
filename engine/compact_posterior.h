// CompactPosterior: how the engine keeps a user's posterior in memory between requests — the
// mean and the packed upper-triangle covariance (or its diagonal) as floats in one allocation,
// about 260 bytes at d = 10 instead of ~900 as Eigen doubles. Unpacked to a model::Posterior
// (doubles) for every computation; float rounding (~1e-7 relative) is far below the
// posterior's own uncertainty.
#ifndef TAILOR_ENGINE_COMPACT_POSTERIOR_H_
#define TAILOR_ENGINE_COMPACT_POSTERIOR_H_

#include <cstdint>
#include <memory>

#include "model/posterior.h"

namespace tailor::engine {

class CompactPosterior {
 public:
  explicit CompactPosterior(const model::Posterior& posterior);
  CompactPosterior(const CompactPosterior& other);
  CompactPosterior& operator=(const CompactPosterior& other);
  CompactPosterior(CompactPosterior&&) noexcept = default;
  CompactPosterior& operator=(CompactPosterior&&) noexcept = default;

  model::Posterior Unpack() const;
  Eigen::VectorXd Mean() const;
  int dimension() const { return dimension_; }

 private:
  size_t size() const;

  std::unique_ptr<float[]> values_;  // mean, then covariance (packed upper triangle or diagonal)
  uint16_t dimension_ = 0;
  bool diagonal_ = false;
};

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_COMPACT_POSTERIOR_H_
