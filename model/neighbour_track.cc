#include "model/neighbour_track.h"

#include <bit>
#include <cmath>
#include <random>

namespace tailor::model {

int NeighbourTrack::RowsChosenAt(int pairs) {
  return pairs <= 0 ? 0 : static_cast<int>(std::bit_floor(static_cast<unsigned>(pairs)));
}

NeighbourTrack NeighbourTrack::Start(std::span<const Eigen::VectorXd> diffs,
                                     const ReferenceSet& reference, const NeighbourIndex* index,
                                     int exclude_row, const NeighbourOptions& options,
                                     uint64_t seed) {
  NeighbourTrack track;
  track.temperature_ = options.temperature;
  track.exclude_row_ = exclude_row;
  const int pairs = static_cast<int>(diffs.size());
  if (index == nullptr) {
    track.log_likelihood_ = Eigen::VectorXf::Zero(reference.size());
  } else {
    track.exact_ = false;
    track.chosen_at_ = RowsChosenAt(pairs);
    std::mt19937_64 rng(seed);
    const CandidateRows chosen = index->Choose(diffs.first(static_cast<size_t>(track.chosen_at_)),
                                               exclude_row, options, rng);
    track.rows_ = chosen.near;
    track.rows_.insert(track.rows_.end(), chosen.sampled.begin(), chosen.sampled.end());
    track.near_ = static_cast<int>(chosen.near.size());
    if (!chosen.sampled.empty()) {
      track.log_each_ =
          std::log(static_cast<double>(chosen.rest) / static_cast<double>(chosen.sampled.size()));
    }
    track.log_likelihood_ = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(track.rows_.size()));
  }
  for (const Eigen::VectorXd& diff : diffs) track.Add(diff, reference);
  return track;
}

bool NeighbourTrack::ExtendsTo(int pairs) const {
  return pairs == pairs_ + 1 && (exact_ || RowsChosenAt(pairs) == chosen_at_);
}

void NeighbourTrack::Add(const Eigen::VectorXd& diff, const ReferenceSet& reference) {
  const Eigen::VectorXd margins =
      exact_ ? Eigen::VectorXd(reference.weights * diff)
             : Eigen::VectorXd(reference.weights(rows_, Eigen::all) * diff);
  log_likelihood_.array() +=
      static_cast<float>(temperature_) * LogSigmoid(margins.cast<float>().array()).col(0);
  ++pairs_;
}

NeighbourMixture NeighbourTrack::Mixture(const ReferenceSet& reference,
                                         const NeighbourOptions& options) const {
  const int n = reference.size();
  Eigen::VectorXd log_weight = log_likelihood_.cast<double>();
  if (!exact_ && near_ < log_weight.size()) {
    log_weight.tail(log_weight.size() - near_).array() += log_each_;
  }
  const auto weighed = [&](Eigen::Index i) {
    return exact_ ? static_cast<int>(i) : rows_[static_cast<size_t>(i)];
  };
  for (Eigen::Index i = 0; i < log_weight.size(); ++i) {
    const int row = weighed(i);
    if (row == exclude_row_ || options.IsRemoved(row)) log_weight[i] = -INFINITY;
  }
  const bool excluded = exclude_row_ >= 0 && exclude_row_ < n && !options.IsRemoved(exclude_row_);
  const int counted = n - static_cast<int>(excluded) - options.removed_count;
  return MixtureOfLogWeights(log_weight, rows_, reference, counted, options.top_k);
}

size_t NeighbourTrack::bytes() const {
  return sizeof(*this) + rows_.capacity() * sizeof(int) +
         static_cast<size_t>(log_likelihood_.size()) * sizeof(float);
}

}  // namespace tailor::model
