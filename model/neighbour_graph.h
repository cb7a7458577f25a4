// NeighbourGraph: the HNSW graph (hnswlib) behind a NeighbourIndex, over reference users'
// weight vectors whitened by the population, one point per reference row. It outlives the
// reference sets it serves: a refresh moves the points of users whose estimates changed,
// adds the new users' and removes the gone ones', at a cost proportional to what changed,
// instead of building a new graph. Searches and changes may run at the same time.
#ifndef TAILOR_MODEL_NEIGHBOUR_GRAPH_H_
#define TAILOR_MODEL_NEIGHBOUR_GRAPH_H_

#include <Eigen/Core>
#include <memory>
#include <span>
#include <vector>

#include "model/belief.h"
#include "model/population.h"

namespace tailor::model {

struct NeighbourIndexOptions {
  // HNSW graph degree and build-time beam width.
  int links = 16;
  int build_beam = 100;
  // Reference users returned by the graph search (the search beam is at least this wide).
  int near = 256;
  // Uniform draws from the reference users: alone they estimate the mixture while the
  // likelihood is flat; those outside the near set stand for the tail.
  int sampled = 1024;
  // Threads that insert into the graph while building; the result is deterministic with 1.
  int build_threads = 1;
  uint64_t seed = 100;
};

class NeighbourGraph {
 public:
  // A graph of every row of `weights`, whitened by `population`.
  static std::shared_ptr<NeighbourGraph> Build(const ReferenceWeights& weights,
                                               const Population& population,
                                               const NeighbourIndexOptions& options);
  ~NeighbourGraph();
  NeighbourGraph(const NeighbourGraph&) = delete;
  NeighbourGraph& operator=(const NeighbourGraph&) = delete;

  // Puts each of `rows` at its vector in `weights`: inserted when the row is new to the graph
  // (or was removed), moved when it is there. The whitening stays the one built with.
  void Set(const ReferenceWeights& weights, std::span<const int> rows);
  // Rows that are no longer to be found (a later Set brings a row back).
  void Remove(std::span<const int> rows);

  // Up to `k` rows closest to `centre` (unwhitened), farthest first. Rows set after the
  // caller's reference set was taken may be among them: callers drop rows they do not have.
  std::vector<int> Search(const Eigen::VectorXd& centre, int k) const;

  // Rows in the graph (set and not removed).
  int live() const;
  // How far `population` has moved from the one the graph whitens by:
  // KL(population || built with), in nats. Large values make the whitened distances poor.
  double Drift(const Population& population) const;
  const NeighbourIndexOptions& options() const { return options_; }

 private:
  struct Hnsw;
  NeighbourGraph(const Population& population, const NeighbourIndexOptions& options, int capacity);
  Eigen::VectorXf Whiten(const Eigen::VectorXd& w) const;

  const NeighbourIndexOptions options_;
  const Population built_with_;
  Eigen::MatrixXd whitening_;  // L^-1 for population covariance L L^T
  // The graph and a reader-writer lock: searches hold it shared; changes hold it exclusively,
  // one point at a time, so that a long refresh never stalls a search for long (hnswlib's
  // searches take no locks of their own and may not overlap its updates).
  std::unique_ptr<Hnsw> hnsw_;
};

}  // namespace tailor::model

#endif  // TAILOR_MODEL_NEIGHBOUR_GRAPH_H_
