#include "model/neighbour_index.h"

// hnswlib's SSE path prefetches the entry after a neighbour list's last one, reading 4 bytes
// past the list when it is full (the value only feeds the prefetch, so it is harmless, but
// AddressSanitizer rightly reports it). Sanitizer builds use the scalar path instead.
#if defined(__SANITIZE_ADDRESS__) && !defined(NO_MANUAL_VECTORIZATION)
#define NO_MANUAL_VECTORIZATION
#endif
#include <hnswlib/hnswlib.h>

#include <Eigen/Cholesky>
#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace tailor::model {

// hnswlib is header-only with non-inline definitions, so it is included in this file only.
struct NeighbourIndex::Graph {
  Graph(int dimension, size_t elements, const NeighbourIndexOptions& options)
      : space(static_cast<size_t>(dimension)),
        hnsw(&space, elements, static_cast<size_t>(options.links),
             static_cast<size_t>(options.build_beam), options.seed) {}
  hnswlib::L2Space space;
  hnswlib::HierarchicalNSW<float> hnsw;
};

NeighbourIndex::NeighbourIndex(const ReferenceSet& reference, NeighbourIndexOptions options)
    : reference_(reference), options_(options) {}

NeighbourIndex::~NeighbourIndex() = default;

std::unique_ptr<NeighbourIndex> NeighbourIndex::Build(const ReferenceSet& reference,
                                                      const Population& population,
                                                      const NeighbourIndexOptions& options) {
  std::unique_ptr<NeighbourIndex> index(new NeighbourIndex(reference, options));
  const auto d = reference.weights.cols();
  index->centre_ = population.mean;
  Eigen::LLT<Eigen::MatrixXd> llt(population.cov);
  if (llt.info() == Eigen::Success) {
    index->whitening_ = llt.matrixL().solve(Eigen::MatrixXd::Identity(d, d));
  } else {
    index->whitening_ =
        population.cov.diagonal().cwiseMax(1e-12).cwiseSqrt().cwiseInverse().asDiagonal();
  }
  const int n = reference.size();
  index->graph_ =
      std::make_unique<Graph>(static_cast<int>(d), static_cast<size_t>(std::max(n, 1)), options);
  std::atomic<int> next{0};
  auto insert = [&] {
    for (int row = next++; row < n; row = next++) {
      const Eigen::VectorXf z = index->Whiten(reference.weights.row(row).transpose());
      index->graph_->hnsw.addPoint(z.data(), static_cast<hnswlib::labeltype>(row));
    }
  };
  // The first point alone, so that concurrent inserts start from a valid entry point.
  if (n > 0) {
    const Eigen::VectorXf z = index->Whiten(reference.weights.row(0).transpose());
    index->graph_->hnsw.addPoint(z.data(), 0);
    next = 1;
  }
  std::vector<std::thread> workers;
  for (int t = 1; t < options.build_threads; ++t) workers.emplace_back(insert);
  insert();
  for (std::thread& worker : workers) worker.join();
  index->graph_->hnsw.setEf(static_cast<size_t>(std::max(options.near, 16)));
  return index;
}

int NeighbourIndex::size() const { return static_cast<int>(graph_->hnsw.cur_element_count); }

Eigen::VectorXf NeighbourIndex::Whiten(const Eigen::VectorXd& w) const {
  return (whitening_ * (w - centre_)).cast<float>();
}

int NeighbourIndex::Counted(int exclude_row, const NeighbourOptions& mix) const {
  const int n = reference_.size();
  const bool excluded = exclude_row >= 0 && exclude_row < n && !mix.IsRemoved(exclude_row);
  return n - static_cast<int>(excluded) - mix.removed_count;
}

std::vector<int> NeighbourIndex::Sample(int exclude_row, const NeighbourOptions& mix,
                                        std::mt19937_64& rng) const {
  const int n = reference_.size();
  std::vector<int> rows;
  if (Counted(exclude_row, mix) <= options_.sampled) {
    for (int row = 0; row < n; ++row) {
      if (row != exclude_row && !mix.IsRemoved(row)) rows.push_back(row);
    }
    return rows;  // few enough to weigh every one
  }
  std::uniform_int_distribution<int> pick(0, n - 1);
  rows.reserve(static_cast<size_t>(options_.sampled));
  while (static_cast<int>(rows.size()) < options_.sampled) {
    const int row = pick(rng);
    if (row != exclude_row && !mix.IsRemoved(row)) rows.push_back(row);  // with replacement
  }
  return rows;
}

std::vector<int> NeighbourIndex::Near(const Eigen::VectorXd& centre, int exclude_row,
                                      const NeighbourOptions& mix) const {
  if (options_.near <= 0 || reference_.size() == 0) return {};
  const Eigen::VectorXf query = Whiten(centre);
  // One more than asked, in case the user themself is among the nearest.
  auto found = graph_->hnsw.searchKnn(query.data(), static_cast<size_t>(options_.near + 1));
  std::vector<int> nearest;  // farthest first
  while (!found.empty()) {
    const int row = static_cast<int>(found.top().second);
    found.pop();
    if (row != exclude_row && !mix.IsRemoved(row)) nearest.push_back(row);
  }
  const size_t keep = std::min(nearest.size(), static_cast<size_t>(options_.near));
  nearest.erase(nearest.begin(), nearest.end() - static_cast<std::ptrdiff_t>(keep));
  return nearest;
}

CandidateRows NeighbourIndex::Split(const std::vector<int>& sample, const Eigen::VectorXd& centre,
                                    int exclude_row, const NeighbourOptions& mix,
                                    bool with_near) const {
  const int counted = Counted(exclude_row, mix);
  CandidateRows out;
  const bool everyone = static_cast<int>(sample.size()) == counted && counted <= options_.sampled;
  if (everyone || !with_near || options_.near <= 0) {
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
  CandidateRows rows = Split(sample, centre_, exclude_row, options, /*with_near=*/false);
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
