#include "cluster/partition_plan.h"

#include <algorithm>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace tailor::cluster {

absl::StatusOr<v1::PartitionMap> Rebalance(const v1::PartitionMap& current, int partitions,
                                           const std::vector<std::string>& shards) {
  if (current.assignments_size() != 0 && current.assignments_size() != partitions) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cluster: the map has ", current.assignments_size(), " partitions, the log ", partitions));
  }
  const absl::flat_hash_set<std::string> draining(current.draining().begin(),
                                                  current.draining().end());
  const absl::flat_hash_set<std::string> registered(shards.begin(), shards.end());
  std::vector<std::string> eligible;
  for (const std::string& s : shards) {
    if (!draining.contains(s)) eligible.push_back(s);
  }
  std::sort(eligible.begin(), eligible.end());
  eligible.erase(std::unique(eligible.begin(), eligible.end()), eligible.end());
  if (eligible.empty()) {
    return absl::FailedPreconditionError(
        "cluster: no registered shard may own partitions (none is running, or all are "
        "draining)");
  }
  v1::PartitionMap plan = current;
  while (plan.assignments_size() < partitions) plan.add_assignments();

  // Where each partition is headed, and how many each eligible shard is headed to have.
  auto target = [&](int p) -> const std::string& {
    const v1::Assignment& a = plan.assignments(p);
    return a.moving_to().empty() ? a.owner() : a.moving_to();
  };
  std::map<std::string, int> load;
  for (const std::string& s : eligible) load[s] = 0;
  for (int p = 0; p < partitions; ++p) {
    if (auto it = load.find(target(p)); it != load.end()) ++it->second;
  }
  // Quotas: ⌊P/N⌋ each, and one more for the P mod N shards already headed to the most.
  std::vector<std::string> by_load = eligible;
  std::stable_sort(by_load.begin(), by_load.end(),
                   [&](const std::string& a, const std::string& b) { return load[a] > load[b]; });
  const int n = static_cast<int>(eligible.size());
  std::map<std::string, int> quota;
  for (int i = 0; i < n; ++i)
    quota[by_load[static_cast<size_t>(i)]] = partitions / n + (i < partitions % n);

  // Partitions headed to a shard over its quota, a draining one or an unknown one are given
  // to the shard furthest under its quota.
  for (int p = 0; p < partitions; ++p) {
    const std::string headed = target(p);
    auto it = load.find(headed);
    if (it != load.end() && it->second <= quota[headed]) continue;
    if (it != load.end()) --it->second;
    std::string best;
    for (const std::string& s : eligible) {
      if (best.empty() || quota[s] - load[s] > quota[best] - load[best]) best = s;
    }
    ++load[best];
    v1::Assignment* a = plan.mutable_assignments(p);
    if (a->owner().empty() || !registered.contains(a->owner())) {
      a->set_owner(best);  // nobody serves it: the new owner catches up before it does
      a->clear_moving_to();
    } else if (a->owner() == best) {
      a->clear_moving_to();
    } else {
      a->set_moving_to(best);
    }
  }
  return plan;
}

absl::StatusOr<v1::PartitionMap> Drain(const v1::PartitionMap& current, int partitions,
                                       const std::vector<std::string>& shards,
                                       const std::string& shard) {
  v1::PartitionMap marked = current;
  if (std::find(marked.draining().begin(), marked.draining().end(), shard) ==
      marked.draining().end()) {
    marked.add_draining(shard);
  }
  return Rebalance(marked, partitions, shards);
}

}  // namespace tailor::cluster
