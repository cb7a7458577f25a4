// NeighbourIndex: finds, without scanning every established user, the reference users that
// carry a cold user's neighbour mixture. The mixture weighs reference user j by the
// likelihood of the cold user's pairs; reference users are draws from the population, so the
// heavy ones sit where the cold user's posterior (under the population prior) puts its mass.
// The index is an HNSW graph (model/neighbour_graph.h) over the reference vectors whitened by
// the population covariance, queried with the whitened posterior mean. A uniform sample of the
// remaining users stands for the tail, so the mixture stays unbiased when the likelihood is still
// flat (few pairs) and the near set alone would be too narrow.
#ifndef TAILOR_MODEL_NEIGHBOUR_INDEX_H_
#define TAILOR_MODEL_NEIGHBOUR_INDEX_H_

#include <Eigen/Core>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "model/belief.h"
#include "model/neighbour_graph.h"
#include "model/population.h"

namespace tailor::model {

class NeighbourIndex {
 public:
  // Indexes every row of `reference` in a graph of its own, whitened by `population`. Keeps a
  // pointer to `reference`, which must outlive the index.
  static std::unique_ptr<NeighbourIndex> Build(const ReferenceSet& reference,
                                               const Population& population,
                                               const NeighbourIndexOptions& options);
  // `reference` through `graph`, whose rows are its rows (the graph may hold rows the set does
  // not have yet, or no longer has: they are never returned).
  NeighbourIndex(const ReferenceSet& reference, std::shared_ptr<const NeighbourGraph> graph);
  ~NeighbourIndex();
  NeighbourIndex(const NeighbourIndex&) = delete;
  NeighbourIndex& operator=(const NeighbourIndex&) = delete;

  // The neighbour mixture for a user's pairs, estimated from a part of the reference set:
  // a uniform sample first, whose weighted mean says where the heavy neighbours are; then
  // the `near` users closest to that point (whitened); the sample's draws outside the near
  // set stand for all the others. `exclude_row` (or -1) is the user themself. Thread-safe.
  NeighbourMixture Mix(std::span<const Eigen::VectorXd> diffs, int exclude_row,
                       const NeighbourOptions& options, std::mt19937_64& rng) const;

  // The rows Mix weighs for these pairs: the uniform sample, then the `near` users closest to
  // the sample's weighted mean, and the sample's draws outside them. Thread-safe.
  CandidateRows Choose(std::span<const Eigen::VectorXd> diffs, int exclude_row,
                       const NeighbourOptions& options, std::mt19937_64& rng) const;

  // The rows Mix weighs, given the point to search around (unwhitened). Without `with_near`
  // only the uniform sample is drawn. (No removed rows.)
  CandidateRows Candidates(const Eigen::VectorXd& centre, int exclude_row, bool with_near,
                           std::mt19937_64& rng) const;

  // `sampled` uniform draws (with replacement) from the rows other than `exclude_row` and the
  // removed ones, or all of them (in order) when there are no more than that.
  std::vector<int> Sample(int exclude_row, const NeighbourOptions& mix, std::mt19937_64& rng) const;
  // The `near` rows closest to `centre` (whitened), nearest last, other than `exclude_row` and
  // the removed ones.
  std::vector<int> Near(const Eigen::VectorXd& centre, int exclude_row,
                        const NeighbourOptions& mix) const;
  // Reference users that count: all but `exclude_row` and the removed ones.
  int Counted(int exclude_row, const NeighbourOptions& mix) const;

  // Rows in the graph.
  int size() const;
  const NeighbourIndexOptions& options() const { return graph_->options(); }

 private:
  // The near set around `centre` and the draws of `sample` outside it.
  CandidateRows Split(const std::vector<int>& sample, const Eigen::VectorXd& centre,
                      int exclude_row, const NeighbourOptions& mix, bool with_near) const;

  const ReferenceSet& reference_;
  std::shared_ptr<const NeighbourGraph> graph_;
};

}  // namespace tailor::model

#endif  // TAILOR_MODEL_NEIGHBOUR_INDEX_H_
