// Partition plans: the partition maps that rebalancing and draining ask for. Pure functions:
// the caller reads the map, plans, and writes the plan by compare-and-set.
//
// A partition changes hands in one of two ways. An unowned one (or one whose owner is no
// longer registered) is given to its new owner directly: that shard catches it up from the log
// before it serves it. An owned one is marked `moving_to` its new owner, which catches up while
// the old owner still serves and then flips the map itself (cluster/shard.h).
#ifndef TAILOR_CLUSTER_PARTITION_PLAN_H_
#define TAILOR_CLUSTER_PARTITION_PLAN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tailor/cluster/v1/cluster.pb.h"

namespace tailor::cluster {

// `current` (empty: no map yet) with `partitions` partitions spread over `shards` (the
// registered ones) minus the draining ones: each gets ⌊P/N⌋ or ⌈P/N⌉, moving as few
// partitions as that allows. FAILED_PRECONDITION when no shard may own partitions.
absl::StatusOr<v1::PartitionMap> Rebalance(const v1::PartitionMap& current, int partitions,
                                           const std::vector<std::string>& shards);

// Marks `shard` draining and rebalances, so everything it owns moves to the others.
absl::StatusOr<v1::PartitionMap> Drain(const v1::PartitionMap& current, int partitions,
                                       const std::vector<std::string>& shards,
                                       const std::string& shard);

}  // namespace tailor::cluster

#endif  // TAILOR_CLUSTER_PARTITION_PLAN_H_
