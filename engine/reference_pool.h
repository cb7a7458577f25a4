// ReferencePool: the established users that cold users borrow from (the neighbour reference
// set) and the HNSW graph over them, carried from one knowledge refresh to the next, so that
// a refresh costs what changed rather than a new graph (45 s at a million users). Each refresh
// offers every established user; the pool keeps a uniform sample of at most `capacity` of them
// (those whose ids hash lowest: a member stays one for as long as the sample would pick it),
// moves the vectors of members whose estimates changed, and publishes a new immutable
// reference set; the graph is shared by the sets and changed in place. Not thread-safe: one
// refresh at a time uses it (the published sets and indexes may be read from any thread).
#ifndef TAILOR_ENGINE_REFERENCE_POOL_H_
#define TAILOR_ENGINE_REFERENCE_POOL_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "model/belief.h"
#include "model/neighbour_graph.h"
#include "model/neighbour_index.h"
#include "model/population.h"

namespace tailor::engine {

// user id -> row of a reference set
using ReferenceRows = absl::flat_hash_map<std::string, int>;

struct ReferencePoolOptions {
  int capacity = 1000000;
  // Whether the set gets a graph at all (off without neighbour cold start), and the size up
  // to which it is weighed exactly instead (no graph).
  bool index = true;
  int exact_scan_max_users = 5000;
  model::NeighbourIndexOptions neighbour_index;
  // A new graph is built instead of the old one changed when the points changed since it was
  // built would exceed this fraction of the set, or when the population has moved more than
  // `rebuild_drift` nats (model::NeighbourGraph::Drift) from the one it whitens by.
  double rebuild_changed_fraction = 1.0;
  double rebuild_drift = 0.5;
};

// What one refresh changed.
struct ReferenceChanges {
  int added = 0;          // users new to the set
  int moved = 0;          // members whose vector changed
  int removed = 0;        // members gone: deleted, no longer offered, or no longer in the sample
  bool rebuilt = false;   // a new graph was built
  int graph_changes = 0;  // points set or removed in the graph in place
};

class ReferencePool {
 public:
  explicit ReferencePool(ReferencePoolOptions options);

  // One refresh: Offer each established user once (their posterior mean), then Update, then
  // Index.
  void Offer(absl::string_view user_id, const Eigen::VectorXd& mean);
  // The set becomes the sample of the users offered since the last Update, in a new
  // reference set (the same one when nothing changed).
  ReferenceChanges Update();
  // Brings the graph up to the set Update made and makes the index over them. `population`
  // whitens a graph built anew, and says whether the old one's whitening is still good.
  void Index(const model::Population& population, ReferenceChanges& changes);

  const std::shared_ptr<const model::ReferenceSet>& reference() const { return set_; }
  const std::shared_ptr<const ReferenceRows>& rows() const { return rows_; }
  // Over reference(), or null when the set is small enough to weigh exactly.
  const std::shared_ptr<const model::NeighbourIndex>& index() const { return index_; }
  // The graph behind index(), or null.
  const model::NeighbourGraph* graph() const { return graph_.get(); }
  // Users offered in the last refresh (all of them, also those outside the sample).
  uint64_t offered() const { return offered_total_; }

 private:
  const ReferencePoolOptions options_;
  std::shared_ptr<const model::ReferenceSet> set_;
  std::shared_ptr<const ReferenceRows> rows_;
  std::vector<uint64_t> hash_;  // per row: the sample's hash of the user's id
  std::shared_ptr<model::NeighbourGraph> graph_;
  std::shared_ptr<const model::NeighbourIndex> index_;
  int graph_rows_ = 0;  // rows the graph has had since it was built
  int64_t changed_since_build_ = 0;
  std::vector<char> dirty_;  // per row: its vector is not yet in the graph

  // This refresh's offers.
  std::vector<char> offered_;  // per row
  std::vector<std::pair<int, Eigen::VectorXd>> moved_;
  struct Newcomer {
    std::string id;
    uint64_t hash = 0;
    Eigen::VectorXd mean;
  };
  std::vector<Newcomer> newcomers_;
  uint64_t offered_total_ = 0;
  uint64_t offering_ = 0;
};

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_REFERENCE_POOL_H_
