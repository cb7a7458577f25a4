#include "engine/compact_posterior.h"

#include <algorithm>

namespace tailor::engine {

size_t CompactPosterior::size() const {
  const size_t d = dimension_;
  return d + (diagonal_ ? d : d * (d + 1) / 2);
}

CompactPosterior::CompactPosterior(const model::Posterior& posterior)
    : dimension_(static_cast<uint16_t>(posterior.dimension())),
      diagonal_(posterior.covariance_is_diagonal()) {
  values_ = std::make_unique<float[]>(size());
  float* out = values_.get();
  const int d = dimension_;
  for (int i = 0; i < d; ++i) *out++ = static_cast<float>(posterior.mean()[i]);
  if (diagonal_) {
    for (int i = 0; i < d; ++i) *out++ = static_cast<float>(posterior.diagonal_covariance()[i]);
  } else {
    const Eigen::MatrixXd& cov = posterior.full_covariance();
    for (int i = 0; i < d; ++i) {
      for (int j = i; j < d; ++j) *out++ = static_cast<float>(cov(i, j));
    }
  }
}

CompactPosterior::CompactPosterior(const CompactPosterior& other)
    : values_(std::make_unique<float[]>(other.size())),
      dimension_(other.dimension_),
      diagonal_(other.diagonal_) {
  std::copy_n(other.values_.get(), size(), values_.get());
}

CompactPosterior& CompactPosterior::operator=(const CompactPosterior& other) {
  if (this != &other) *this = CompactPosterior(other);
  return *this;
}

Eigen::VectorXd CompactPosterior::Mean() const {
  Eigen::VectorXd mean(dimension_);
  for (int i = 0; i < dimension_; ++i) mean[i] = values_[static_cast<size_t>(i)];
  return mean;
}

model::Posterior CompactPosterior::Unpack() const {
  const int d = dimension_;
  const float* in = values_.get() + d;
  if (diagonal_) {
    Eigen::VectorXd diag(d);
    for (int i = 0; i < d; ++i) diag[i] = *in++;
    return model::Posterior::FromParts(Mean(), {}, diag, true);
  }
  Eigen::MatrixXd cov(d, d);
  for (int i = 0; i < d; ++i) {
    for (int j = i; j < d; ++j) cov(i, j) = cov(j, i) = *in++;
  }
  return model::Posterior::FromParts(Mean(), cov, {}, false);
}

}  // namespace tailor::engine
