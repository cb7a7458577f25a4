// NeighbourTrack: a cold user's neighbour mixture kept current pair by pair. The mixture
// weighs reference user j by prod_i sigmoid(w_j . diff_i)^temperature (model/belief.h); the
// track keeps, for each reference row it weighs, that product's logarithm over the user's
// pairs so far. A new pair then costs one pass over those rows (O(rows × d)) instead of a pass
// per pair the user has given, so a cold user's feedback costs the same at the 100th pair as
// at the first.
//
// The rows weighed are every row of a small reference set (exact), or, with a NeighbourIndex,
// the rows the index picks for the user's pairs: those are chosen again whenever the user's
// pair count reaches a power of two (1, 2, 4, 8, ...), which keeps the near set around where
// the mixture's weight is while costing, amortised, O(rows × d) per pair. A track started
// from a user's pairs is identical to one extended pair by pair from the same pairs.
#ifndef TAILOR_MODEL_NEIGHBOUR_TRACK_H_
#define TAILOR_MODEL_NEIGHBOUR_TRACK_H_

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "model/belief.h"
#include "model/neighbour_index.h"

namespace tailor::model {

class NeighbourTrack {
 public:
  // The track of `diffs` over `reference` (through `index` when it is not null). `exclude_row`
  // (or -1) is the user themself. `seed` seeds the index's uniform sample; the caller passes
  // the same seed for the same user and RowsChosenAt(diffs.size()), so the track is a
  // function of the user's pairs.
  static NeighbourTrack Start(std::span<const Eigen::VectorXd> diffs, const ReferenceSet& reference,
                              const NeighbourIndex* index, int exclude_row,
                              const NeighbourOptions& options, uint64_t seed);

  // The pair count at which the rows weighed for `pairs` pairs were chosen: the largest power
  // of two not above it (0 for none). Exact tracks never choose again.
  static int RowsChosenAt(int pairs);

  // True if adding one pair to this track gives what Start would for the longer list; false
  // when the index's rows are due to be chosen again (then call Start).
  bool ExtendsTo(int pairs) const;
  // Adds one pair (the user's next): one pass over the rows.
  void Add(const Eigen::VectorXd& diff, const ReferenceSet& reference);

  // The mixture the track stands for, as MixNeighbours would give it over the same rows; rows
  // marked removed in `options` do not weigh in.
  NeighbourMixture Mixture(const ReferenceSet& reference, const NeighbourOptions& options) const;

  int pairs() const { return pairs_; }
  // Memory the track holds (the object and its vectors).
  size_t bytes() const;

 private:
  NeighbourTrack() = default;

  // Every row of the reference set, or `rows_`: `near_` rows from the index followed by
  // uniform draws that stand for exp(`log_each_`) rows each.
  bool exact_ = true;
  std::vector<int> rows_;
  int near_ = 0;
  double log_each_ = 0;
  // Per weighed row: temperature × sum over pairs of log sigmoid(w . diff).
  Eigen::VectorXf log_likelihood_;
  double temperature_ = 1;
  int exclude_row_ = -1;
  int pairs_ = 0;
  int chosen_at_ = 0;
};

}  // namespace tailor::model

#endif  // TAILOR_MODEL_NEIGHBOUR_TRACK_H_
