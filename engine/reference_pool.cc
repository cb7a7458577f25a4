#include "engine/reference_pool.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "model/stable_hash.h"

namespace tailor::engine {
namespace {

constexpr uint64_t kSampleSeed = 0x7a11;

// The sample's order: a user's id hashed, then mixed (splitmix64's finaliser) so that the
// high bits, which decide the order, depend on every character of similar ids.
uint64_t SampleHash(absl::string_view user_id) {
  uint64_t z = model::StableHash({user_id}, kSampleSeed);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

ReferencePool::ReferencePool(ReferencePoolOptions options)
    : options_(std::move(options)),
      set_(std::make_shared<model::ReferenceSet>()),
      rows_(std::make_shared<ReferenceRows>()) {}

void ReferencePool::Offer(absl::string_view user_id, const Eigen::VectorXd& mean) {
  ++offering_;
  if (auto found = rows_->find(user_id); found != rows_->end()) {
    const int row = found->second;
    if (offered_.empty()) offered_.assign(static_cast<size_t>(set_->size()), 0);
    offered_[static_cast<size_t>(row)] = 1;
    if (set_->weights.row(row).transpose() != mean) moved_.emplace_back(row, mean);
    return;
  }
  newcomers_.push_back(Newcomer{std::string(user_id), SampleHash(user_id), mean});
}

ReferenceChanges ReferencePool::Update() {
  ReferenceChanges changes;
  const int members = set_->size();
  offered_.resize(static_cast<size_t>(members), 0);
  offered_total_ = offering_;
  offering_ = 0;

  // The sample: the `capacity` offered users whose ids hash lowest (with no capacity, nobody:
  // `stays` and the set's size below see to that).
  uint64_t threshold = std::numeric_limits<uint64_t>::max();
  if (options_.capacity > 0 && offered_total_ > static_cast<uint64_t>(options_.capacity)) {
    std::vector<uint64_t> hashes;
    hashes.reserve(offered_total_);
    for (int row = 0; row < members; ++row) {
      if (offered_[static_cast<size_t>(row)] != 0)
        hashes.push_back(hash_[static_cast<size_t>(row)]);
    }
    for (const Newcomer& newcomer : newcomers_) hashes.push_back(newcomer.hash);
    auto kth = hashes.begin() + (options_.capacity - 1);
    std::nth_element(hashes.begin(), kth, hashes.end());
    threshold = *kth;
  }
  auto stays = [&](int row) {
    return offered_[static_cast<size_t>(row)] != 0 &&
           hash_[static_cast<size_t>(row)] <= threshold && options_.capacity > 0;
  };
  std::erase_if(newcomers_, [&](const Newcomer& n) { return n.hash > threshold; });
  bool any_removed = false;
  for (int row = 0; row < members && !any_removed; ++row) any_removed = !stays(row);

  if (moved_.empty() && newcomers_.empty() && !any_removed) {
    offered_.clear();
    return changes;  // the same set
  }

  auto set = std::make_shared<model::ReferenceSet>(*set_);
  auto rows = std::make_shared<ReferenceRows>(*rows_);
  dirty_.resize(static_cast<size_t>(members), 0);
  for (auto& [row, mean] : moved_) {
    set->weights.row(row) = mean.transpose();
    dirty_[static_cast<size_t>(row)] = 1;
    ++changes.moved;
  }
  // Members that leave: the last row takes each one's place, from the highest row down (so
  // the last row is never one that is about to leave).
  int n = members;
  for (int row = members - 1; row >= 0; --row) {
    if (stays(row)) continue;
    ++changes.removed;
    rows->erase(set->user_ids[static_cast<size_t>(row)]);
    const int last = n - 1;
    if (row != last) {
      set->weights.row(row) = set->weights.row(last);
      set->user_ids[static_cast<size_t>(row)] = std::move(set->user_ids[static_cast<size_t>(last)]);
      hash_[static_cast<size_t>(row)] = hash_[static_cast<size_t>(last)];
      (*rows)[set->user_ids[static_cast<size_t>(row)]] = row;
      dirty_[static_cast<size_t>(row)] = 1;
    }
    --n;
  }
  // Newcomers in id order, so that a set built from scratch does not depend on the order in
  // which they were offered.
  std::sort(newcomers_.begin(), newcomers_.end(),
            [](const Newcomer& a, const Newcomer& b) { return a.id < b.id; });
  const int size =
      std::min(n + static_cast<int>(newcomers_.size()), std::max(options_.capacity, 0));
  set->user_ids.resize(static_cast<size_t>(size));
  set->weights.conservativeResize(size, set->weights.cols() == 0 && !newcomers_.empty()
                                            ? newcomers_.front().mean.size()
                                            : set->weights.cols());
  hash_.resize(static_cast<size_t>(size));
  dirty_.resize(static_cast<size_t>(size), 0);
  for (Newcomer& newcomer : newcomers_) {
    if (n == size) break;
    set->weights.row(n) = newcomer.mean.transpose();
    hash_[static_cast<size_t>(n)] = newcomer.hash;
    dirty_[static_cast<size_t>(n)] = 1;
    (*rows)[newcomer.id] = n;
    set->user_ids[static_cast<size_t>(n)] = std::move(newcomer.id);
    ++n;
    ++changes.added;
  }

  set_ = std::move(set);
  rows_ = std::move(rows);
  index_.reset();
  offered_.clear();
  moved_.clear();
  // Released, not kept: the first refresh offers everyone as a newcomer.
  std::vector<Newcomer>().swap(newcomers_);
  return changes;
}

void ReferencePool::Index(const model::Population& population, ReferenceChanges& changes) {
  const int n = set_->size();
  if (!options_.index || n <= options_.exact_scan_max_users) {
    graph_.reset();
    index_.reset();
    return;
  }
  std::vector<int> dirty;
  for (int row = 0; row < n; ++row) {
    if (dirty_[static_cast<size_t>(row)] != 0) dirty.push_back(row);
  }
  std::vector<int> gone;
  for (int row = n; row < graph_rows_; ++row) gone.push_back(row);
  const int64_t changed = static_cast<int64_t>(dirty.size() + gone.size());
  const bool rebuild = graph_ == nullptr ||
                       static_cast<double>(changed_since_build_ + changed) >
                           options_.rebuild_changed_fraction * static_cast<double>(n) ||
                       graph_->Drift(population) > options_.rebuild_drift;
  if (rebuild) {
    graph_ = model::NeighbourGraph::Build(set_->weights, population, options_.neighbour_index);
    changes.rebuilt = true;
    changed_since_build_ = 0;
  } else if (changed > 0) {
    // Removed first: a row that leaves and comes back with another user is set again after.
    graph_->Remove(gone);
    graph_->Set(set_->weights, dirty);
    changes.graph_changes = static_cast<int>(changed);
    changed_since_build_ += changed;
  }
  graph_rows_ = n;
  std::fill(dirty_.begin(), dirty_.end(), 0);
  if (index_ == nullptr || rebuild || changed > 0) {
    index_ = std::make_shared<model::NeighbourIndex>(*set_, graph_);
  }
}

}  // namespace tailor::engine
