// NeighbourTrack: a cold user's neighbour mixture kept current pair by pair. The mixture
// weighs reference user j by prod_i sigmoid(w_j . diff_i)^temperature (model/belief.h); the
// track keeps, for each reference row it weighs, that product's logarithm over the user's
// pairs so far. A new pair then costs one pass over those rows (O(rows × d)) instead of a pass
// per pair the user has given, so a cold user's feedback costs the same at the 100th pair as
// at the first.
//
// The rows weighed are every row of a small reference set (exact), or, through a
// NeighbourIndex, the index's stratified estimate: a uniform sample of the reference users,
// drawn once per user, and the `near` users closest to where the sample's weight lies. The
// near rows are chosen again whenever the pair count reaches a power of two from 4 on (below 4
// pairs the likelihood is too flat for them to matter), weighing all pairs so far; the sample
// keeps its sums. A track started from a user's pairs is identical to one extended pair by
// pair from the same pairs (same seed, same reference set, no removals in between).
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
  // The track of `diffs` over `reference` (through `index` when it is not null): the same as
  // starting with no pairs and adding them one by one. `exclude_row` (or -1) is the user
  // themself; `seed` draws the user's uniform sample (pass the same one for the same user).
  static NeighbourTrack Start(std::span<const Eigen::VectorXd> diffs, const ReferenceSet& reference,
                              const NeighbourIndex* index, int exclude_row,
                              const NeighbourOptions& options, uint64_t seed);

  // Pair counts at which a track through the index chooses its near rows again.
  static bool ChoosesNearAt(int pairs);

  // Adds the user's next pair, diffs.back(); `diffs` holds all of the user's pairs so far
  // (near rows chosen at this count weigh every one). `reference` must be the one the track was
  // started with, and `index` too (or null: then no near rows are chosen at this count).
  void Add(std::span<const Eigen::VectorXd> diffs, const ReferenceSet& reference,
           const NeighbourIndex* index, const NeighbourOptions& options);

  // The mixture the track stands for (MixNeighbours over the same rows); rows marked removed
  // in `options` do not weigh in. options.top_k = 0 leaves NeighbourMixture::top empty.
  NeighbourMixture Mixture(const ReferenceSet& reference, const NeighbourOptions& options) const;

  int pairs() const { return pairs_; }
  // Memory the track holds (the object and its vectors).
  size_t bytes() const;

 private:
  NeighbourTrack() = default;
  // Adds one pair's margins (w . diff for each entry).
  void Accumulate(const Eigen::ArrayXf& margins);
  // Adds `diffs` in order, as Add would one by one, without choosing near rows.
  void AddAll(std::span<const Eigen::VectorXd> diffs, const ReferenceSet& reference);
  // Chooses the near rows around the sample's weighted mean and sums their log-likelihood
  // over `diffs`.
  void ChooseNear(std::span<const Eigen::VectorXd> diffs, const ReferenceSet& reference,
                  const NeighbourIndex& index, const NeighbourOptions& options);

  // Exact: one entry per reference row. Through the index: `rows_` holds the `sampled_`
  // uniform draws, then the near rows. A draw whose row is also near is weighed as near
  // (in_near_); the others stand for exp(log_each_) of the `rest_` rows outside the near set.
  bool exact_ = true;
  bool everyone_ = false;  // the sample is every counted row: no near set needed
  std::vector<int> rows_;
  int sampled_ = 0;
  std::vector<char> in_near_;
  double log_each_ = 0;
  // Per entry: temperature × sum over pairs of log sigmoid(w . diff).
  Eigen::VectorXf log_likelihood_;
  double temperature_ = 1;
  int exclude_row_ = -1;
  int pairs_ = 0;
};

}  // namespace tailor::model

#endif  // TAILOR_MODEL_NEIGHBOUR_TRACK_H_
