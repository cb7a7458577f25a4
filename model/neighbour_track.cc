#include "model/neighbour_track.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>

#include "absl/container/flat_hash_set.h"

namespace tailor::model {
namespace {

// w_row . diff for each of `rows`, row by row: each reference row is contiguous, so a
// scattered row costs a cache line or two (an indexed-view product goes coefficient by
// coefficient).
Eigen::ArrayXf Margins(const ReferenceSet& reference, std::span<const int> rows,
                       const Eigen::VectorXd& diff) {
  Eigen::ArrayXf margins(static_cast<Eigen::Index>(rows.size()));
  for (size_t i = 0; i < rows.size(); ++i) {
    margins[static_cast<Eigen::Index>(i)] =
        static_cast<float>(reference.weights.row(rows[i]).dot(diff.transpose()));
  }
  return margins;
}

}  // namespace

bool NeighbourTrack::ChoosesNearAt(int pairs) {
  return pairs >= 4 && std::has_single_bit(static_cast<unsigned>(pairs));
}

NeighbourTrack NeighbourTrack::Start(std::span<const Eigen::VectorXd> diffs,
                                     const ReferenceSet& reference, const NeighbourIndex* index,
                                     int exclude_row, const NeighbourOptions& options,
                                     uint64_t seed) {
  NeighbourTrack track;
  track.temperature_ = options.temperature;
  track.exclude_row_ = exclude_row;
  if (index == nullptr) {
    track.log_likelihood_ = Eigen::VectorXf::Zero(reference.size());
  } else {
    track.exact_ = false;
    std::mt19937_64 rng(seed);
    track.rows_ = index->Sample(exclude_row, options, rng);
    track.sampled_ = static_cast<int>(track.rows_.size());
    const int counted = index->Counted(exclude_row, options);
    track.everyone_ = track.sampled_ == counted && counted <= index->options().sampled;
    track.in_near_.assign(track.rows_.size(), 0);
    if (track.sampled_ > 0) {
      track.log_each_ = std::log(static_cast<double>(counted) / track.sampled_);
    }
    track.log_likelihood_ = Eigen::VectorXf::Zero(track.sampled_);
  }
  // The same sums as adding the pairs one at a time; near rows chosen before the last choice
  // would be replaced, so only that one is made.
  size_t last_choice = 0;
  for (size_t i = 1; i <= diffs.size(); ++i) {
    if (ChoosesNearAt(static_cast<int>(i))) last_choice = i;
  }
  if (track.exact_ || track.everyone_ || last_choice == 0) {
    track.AddAll(diffs, reference);
  } else {
    track.AddAll(diffs.first(last_choice), reference);
    track.ChooseNear(diffs.first(last_choice), reference, *index, options);
    track.AddAll(diffs.subspan(last_choice), reference);
  }
  return track;
}

void NeighbourTrack::Add(std::span<const Eigen::VectorXd> diffs, const ReferenceSet& reference,
                         const NeighbourIndex* index, const NeighbourOptions& options) {
  const Eigen::VectorXd& diff = diffs.back();
  Accumulate(exact_ ? Eigen::ArrayXf((reference.weights * diff).cast<float>())
                    : Margins(reference, rows_, diff));
  if (!exact_ && !everyone_ && index != nullptr && ChoosesNearAt(pairs_)) {
    ChooseNear(diffs, reference, *index, options);
  }
}

void NeighbourTrack::Accumulate(const Eigen::ArrayXf& margins) {
  log_likelihood_.array() += static_cast<float>(temperature_) * LogSigmoid(margins).col(0);
  ++pairs_;
}

void NeighbourTrack::AddAll(std::span<const Eigen::VectorXd> diffs, const ReferenceSet& reference) {
  if (diffs.empty()) return;
  if (exact_) {
    for (const Eigen::VectorXd& diff : diffs) {
      Accumulate((reference.weights * diff).cast<float>());
    }
    return;
  }
  // Each scattered row read once for every pair (the reads are the cost), with the dot products
  // Margins computes; then summed pair by pair.
  const auto m = static_cast<Eigen::Index>(rows_.size());
  Eigen::MatrixXf margins(m, static_cast<Eigen::Index>(diffs.size()));
  for (Eigen::Index r = 0; r < m; ++r) {
    const auto row = reference.weights.row(rows_[static_cast<size_t>(r)]);
    for (size_t i = 0; i < diffs.size(); ++i) {
      margins(r, static_cast<Eigen::Index>(i)) = static_cast<float>(row.dot(diffs[i].transpose()));
    }
  }
  for (Eigen::Index i = 0; i < margins.cols(); ++i) {
    Accumulate(Eigen::ArrayXf(margins.col(i)));
  }
}

void NeighbourTrack::ChooseNear(std::span<const Eigen::VectorXd> diffs,
                                const ReferenceSet& reference, const NeighbourIndex& index,
                                const NeighbourOptions& options) {
  // Where the sample's weight lies: its likelihood-weighted mean.
  const auto sample = static_cast<Eigen::Index>(sampled_);
  if (sample == 0) return;
  const Eigen::ArrayXd sample_log = log_likelihood_.head(sample).cast<double>().array();
  const Eigen::ArrayXd weight = (sample_log - sample_log.maxCoeff()).exp();
  Eigen::VectorXd centre = Eigen::VectorXd::Zero(reference.weights.cols());
  for (Eigen::Index i = 0; i < sample; ++i) {
    centre += weight[i] * reference.weights.row(rows_[static_cast<size_t>(i)]).transpose();
  }
  centre /= weight.sum();

  const std::vector<int> near = index.Near(centre, exclude_row_, options);
  rows_.resize(static_cast<size_t>(sampled_));
  rows_.insert(rows_.end(), near.begin(), near.end());
  const absl::flat_hash_set<int> near_set(near.begin(), near.end());
  int outside = 0;
  for (int i = 0; i < sampled_; ++i) {
    in_near_[static_cast<size_t>(i)] = near_set.contains(rows_[static_cast<size_t>(i)]) ? 1 : 0;
    outside += in_near_[static_cast<size_t>(i)] == 0;
  }
  const int rest = index.Counted(exclude_row_, options) - static_cast<int>(near.size());
  log_each_ = outside > 0 ? std::log(static_cast<double>(rest) / outside) : 0;

  // The near rows' log-likelihood of every pair so far, as one product.
  const auto m = static_cast<Eigen::Index>(near.size());
  ReferenceWeights vectors(m, reference.weights.cols());
  for (Eigen::Index i = 0; i < m; ++i)
    vectors.row(i) = reference.weights.row(near[static_cast<size_t>(i)]);
  Eigen::MatrixXd x(reference.weights.cols(), static_cast<Eigen::Index>(diffs.size()));
  for (size_t i = 0; i < diffs.size(); ++i) x.col(static_cast<Eigen::Index>(i)) = diffs[i];
  const Eigen::ArrayXXf margins = (vectors * x).cast<float>().array();
  log_likelihood_.conservativeResize(sample + m);
  log_likelihood_.tail(m) =
      static_cast<float>(temperature_) * LogSigmoid(margins).rowwise().sum().matrix();
}

NeighbourMixture NeighbourTrack::Mixture(const ReferenceSet& reference,
                                         const NeighbourOptions& options) const {
  const int n = reference.size();
  Eigen::VectorXd log_weight = log_likelihood_.cast<double>();
  if (exact_) {
    if (exclude_row_ >= 0 && exclude_row_ < n) log_weight[exclude_row_] = -INFINITY;
    if (options.removed != nullptr) {
      for (int row = 0; row < n; ++row) {
        if (options.IsRemoved(row)) log_weight[row] = -INFINITY;
      }
    }
  } else {
    for (int i = 0; i < sampled_; ++i) {
      log_weight[i] = in_near_[static_cast<size_t>(i)] != 0 ? -INFINITY : log_weight[i] + log_each_;
    }
    if (options.removed != nullptr) {
      for (size_t i = 0; i < rows_.size(); ++i) {
        if (options.IsRemoved(rows_[i])) log_weight[static_cast<Eigen::Index>(i)] = -INFINITY;
      }
    }
  }
  const bool excluded = exclude_row_ >= 0 && exclude_row_ < n && !options.IsRemoved(exclude_row_);
  const int counted = n - static_cast<int>(excluded) - options.removed_count;
  return MixtureOfLogWeights(log_weight, exact_ ? std::span<const int>() : std::span(rows_),
                             reference, counted, options.top_k);
}

size_t NeighbourTrack::bytes() const {
  return sizeof(*this) + rows_.capacity() * sizeof(int) + in_near_.capacity() +
         static_cast<size_t>(log_likelihood_.size()) * sizeof(float);
}

}  // namespace tailor::model
