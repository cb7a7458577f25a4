#include "model/neighbour_index.h"

#include <algorithm>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace tailor::model {

NeighbourIndex::NeighbourIndex(const ReferenceSet& reference,
                               std::shared_ptr<const NeighbourGraph> graph)
    : reference_(reference), graph_(std::move(graph)) {}

NeighbourIndex::~NeighbourIndex() = default;

std::unique_ptr<NeighbourIndex> NeighbourIndex::Build(const ReferenceSet& reference,
                                                      const Population& population,
                                                      const NeighbourIndexOptions& options) {
  return std::make_unique<NeighbourIndex>(
      reference, NeighbourGraph::Build(reference.weights, population, options));
}

int NeighbourIndex::size() const { return graph_->live(); }

int NeighbourIndex::Counted(int exclude_row, const NeighbourOptions& mix) const {
  const int n = reference_.size();
  const bool excluded = exclude_row >= 0 && exclude_row < n && !mix.IsRemoved(exclude_row);
  return n - static_cast<int>(excluded) - mix.removed_count;
}

std::vector<int> NeighbourIndex::Sample(int exclude_row, const NeighbourOptions& mix,
                                        std::mt19937_64& rng) const {
  const int n = reference_.size();
  std::vector<int> rows;
  if (Counted(exclude_row, mix) <= options().sampled) {
    for (int row = 0; row < n; ++row) {
      if (row != exclude_row && !mix.IsRemoved(row)) rows.push_back(row);
    }
    return rows;  // few enough to weigh every one
  }
  std::uniform_int_distribution<int> pick(0, n - 1);
  rows.reserve(static_cast<size_t>(options().sampled));
  while (static_cast<int>(rows.size()) < options().sampled) {
    const int row = pick(rng);
    if (row != exclude_row && !mix.IsRemoved(row)) rows.push_back(row);  // with replacement
  }
  return rows;
}

std::vector<int> NeighbourIndex::Near(const Eigen::VectorXd& centre, int exclude_row,
                                      const NeighbourOptions& mix) const {
  const int near = options().near;
  if (near <= 0 || reference_.size() == 0) return {};
  // One more than asked, in case the user themself is among the nearest.
  std::vector<int> nearest = graph_->Search(centre, near + 1);  // farthest first
  std::erase_if(nearest, [&](int row) {
    return row >= reference_.size() || row == exclude_row || mix.IsRemoved(row);
  });
  const size_t keep = std::min(nearest.size(), static_cast<size_t>(near));
  nearest.erase(nearest.begin(), nearest.end() - static_cast<std::ptrdiff_t>(keep));
  return nearest;
}

CandidateRows NeighbourIndex::Split(const std::vector<int>& sample, const Eigen::VectorXd& centre,
                                    int exclude_row, const NeighbourOptions& mix,
                                    bool with_near) const {
  const int counted = Counted(exclude_row, mix);
  CandidateRows out;
  const bool everyone = static_cast<int>(sample.size()) == counted && counted <= options().sampled;
  if (everyone || !with_near || options().near <= 0) {
    out.sampled = sample;
    out.rest = counted;
    return out;
  }
  out.near = Near(centre, exclude_row, mix);
  const absl::flat_hash_set<int> near(out.near.begin(), out.near.end());
  // Uniform draws over all rows that missed the near set are uniform draws over the rest.
  for (int row : sample) {
    if (!near.contains(row)) out.sampled.push_back(row);
  }
  out.rest = counted - static_cast<int>(out.near.size());
  return out;
}

CandidateRows NeighbourIndex::Candidates(const Eigen::VectorXd& centre, int exclude_row,
                                         bool with_near, std::mt19937_64& rng) const {
  const NeighbourOptions mix;
  return Split(Sample(exclude_row, mix, rng), centre, exclude_row, mix, with_near);
}

CandidateRows NeighbourIndex::Choose(std::span<const Eigen::VectorXd> diffs, int exclude_row,
                                     const NeighbourOptions& options, std::mt19937_64& rng) const {
  const std::vector<int> sample = Sample(exclude_row, options, rng);
  CandidateRows rows = Split(sample, {}, exclude_row, options, /*with_near=*/false);
  if (diffs.empty()) return rows;  // the likelihood is flat: the sample is the estimate
  const NeighbourMixture rough = MixNeighbours(diffs, reference_, exclude_row, options, &rows);
  return Split(sample, rough.mean, exclude_row, options, /*with_near=*/true);
}

NeighbourMixture NeighbourIndex::Mix(std::span<const Eigen::VectorXd> diffs, int exclude_row,
                                     const NeighbourOptions& options, std::mt19937_64& rng) const {
  const CandidateRows rows = Choose(diffs, exclude_row, options, rng);
  return MixNeighbours(diffs, reference_, exclude_row, options, &rows);
}

}  // namespace tailor::model
