#include "model/neighbour_graph.h"

// hnswlib's SSE path prefetches the entry after a neighbour list's last one, reading 4 bytes
// past the list when it is full (the value only feeds the prefetch, so it is harmless, but
// AddressSanitizer rightly reports it). Sanitizer builds use the scalar path instead.
#if defined(__SANITIZE_ADDRESS__) && !defined(NO_MANUAL_VECTORIZATION)
#define NO_MANUAL_VECTORIZATION
#endif
#include <hnswlib/hnswlib.h>
#include <pthread.h>

#include <Eigen/Cholesky>
#include <Eigen/LU>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <shared_mutex>
#include <thread>

namespace tailor::model {
namespace {

// Points changed per exclusive hold of the graph: a search waits for at most this many (a
// moved point costs ~0.4 ms at a million users; the lock's hand-over costs far less).
constexpr size_t kChangesPerHold = 1;

enum RowState : char { kAbsent = 0, kLive = 1, kRemoved = 2 };

// A pthread reader-writer lock that lets a waiting writer in before new readers (the default
// would let a steady stream of searches hold a refresh off for good). pthread rather than
// absl::Mutex because ThreadSanitizer sees pthread's synchronisation but not that of
// Debian's Abseil, which is not built with it (engine/mutex.h).
class ReaderWriterLock {
 public:
  ReaderWriterLock() {
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&lock_, &attributes);
    pthread_rwlockattr_destroy(&attributes);
  }
  ~ReaderWriterLock() { pthread_rwlock_destroy(&lock_); }
  ReaderWriterLock(const ReaderWriterLock&) = delete;
  ReaderWriterLock& operator=(const ReaderWriterLock&) = delete;
  void lock() { pthread_rwlock_wrlock(&lock_); }
  void unlock() { pthread_rwlock_unlock(&lock_); }
  void lock_shared() { pthread_rwlock_rdlock(&lock_); }
  void unlock_shared() { pthread_rwlock_unlock(&lock_); }

 private:
  pthread_rwlock_t lock_;
};

}  // namespace

// hnswlib is header-only with non-inline definitions, so it is included in this file only.
// It throws on misuse (a label removed twice, a full graph); the row states below keep every
// call within its contract.
struct NeighbourGraph::Hnsw {
  Hnsw(int dimension, size_t capacity, const NeighbourIndexOptions& options)
      : space(static_cast<size_t>(dimension)),
        graph(&space, capacity, static_cast<size_t>(options.links),
              static_cast<size_t>(options.build_beam), options.seed) {}
  hnswlib::L2Space space;
  hnswlib::HierarchicalNSW<float> graph;
  std::vector<char> state;  // RowState per row
  int live = 0;
  // Guards the three above once the graph is shared (Build fills them before).
  mutable ReaderWriterLock lock;

  void Reserve(size_t rows) {
    if (rows > state.size()) state.resize(rows, kAbsent);
    if (rows > graph.max_elements_) graph.resizeIndex(std::max(rows, graph.max_elements_ * 5 / 4));
  }
};

NeighbourGraph::NeighbourGraph(const Population& population, const NeighbourIndexOptions& options,
                               int capacity)
    : options_(options), built_with_(population) {
  const auto d = population.mean.size();
  Eigen::LLT<Eigen::MatrixXd> llt(population.cov);
  if (llt.info() == Eigen::Success) {
    whitening_ = llt.matrixL().solve(Eigen::MatrixXd::Identity(d, d));
  } else {
    whitening_ = population.cov.diagonal().cwiseMax(1e-12).cwiseSqrt().cwiseInverse().asDiagonal();
  }
  hnsw_ = std::make_unique<Hnsw>(static_cast<int>(d), static_cast<size_t>(std::max(capacity, 1)),
                                 options);
  hnsw_->graph.setEf(static_cast<size_t>(std::max(options.near, 16)));
}

NeighbourGraph::~NeighbourGraph() = default;

std::shared_ptr<NeighbourGraph> NeighbourGraph::Build(const ReferenceWeights& weights,
                                                      const Population& population,
                                                      const NeighbourIndexOptions& options) {
  const int n = static_cast<int>(weights.rows());
  std::shared_ptr<NeighbourGraph> built(new NeighbourGraph(population, options, n));
  // Nobody else sees the graph yet: insert without the lock, from several threads if asked
  // (hnswlib's inserts synchronise with one another).
  Hnsw& hnsw = *built->hnsw_;
  hnsw.state.assign(static_cast<size_t>(n), kLive);
  hnsw.live = n;
  std::atomic<int> next{0};
  auto insert = [&] {
    for (int row = next++; row < n; row = next++) {
      const Eigen::VectorXf z = built->Whiten(weights.row(row).transpose());
      hnsw.graph.addPoint(z.data(), static_cast<hnswlib::labeltype>(row));
    }
  };
  // The first point alone, so that concurrent inserts start from a valid entry point.
  if (n > 0) {
    const Eigen::VectorXf z = built->Whiten(weights.row(0).transpose());
    hnsw.graph.addPoint(z.data(), 0);
    next = 1;
  }
  std::vector<std::thread> workers;
  for (int t = 1; t < options.build_threads; ++t) workers.emplace_back(insert);
  insert();
  for (std::thread& worker : workers) worker.join();
  return built;
}

Eigen::VectorXf NeighbourGraph::Whiten(const Eigen::VectorXd& w) const {
  return (whitening_ * (w - built_with_.mean)).cast<float>();
}

void NeighbourGraph::Set(const ReferenceWeights& weights, std::span<const int> rows) {
  for (size_t start = 0; start < rows.size(); start += kChangesPerHold) {
    const size_t end = std::min(rows.size(), start + kChangesPerHold);
    // Whitened outside the lock.
    std::vector<Eigen::VectorXf> points;
    for (size_t i = start; i < end; ++i) points.push_back(Whiten(weights.row(rows[i]).transpose()));
    std::unique_lock lock(hnsw_->lock);
    for (size_t i = start; i < end; ++i) {
      const int row = rows[i];
      hnsw_->Reserve(static_cast<size_t>(row) + 1);
      char& state = hnsw_->state[static_cast<size_t>(row)];
      if (state != kLive) ++hnsw_->live;
      state = kLive;
      // A label already in the graph is moved (and brought back if removed).
      hnsw_->graph.addPoint(points[i - start].data(), static_cast<hnswlib::labeltype>(row));
    }
  }
}

void NeighbourGraph::Remove(std::span<const int> rows) {
  for (size_t start = 0; start < rows.size(); start += kChangesPerHold) {
    std::unique_lock lock(hnsw_->lock);
    for (size_t i = start; i < std::min(rows.size(), start + kChangesPerHold); ++i) {
      const auto row = static_cast<size_t>(rows[i]);
      if (row >= hnsw_->state.size() || hnsw_->state[row] != kLive) continue;
      hnsw_->graph.markDelete(static_cast<hnswlib::labeltype>(row));
      hnsw_->state[row] = kRemoved;
      --hnsw_->live;
    }
  }
}

std::vector<int> NeighbourGraph::Search(const Eigen::VectorXd& centre, int k) const {
  if (k <= 0) return {};
  const Eigen::VectorXf query = Whiten(centre);
  std::shared_lock lock(hnsw_->lock);
  auto found = hnsw_->graph.searchKnn(query.data(), static_cast<size_t>(k));
  std::vector<int> rows;  // farthest first
  rows.reserve(found.size());
  while (!found.empty()) {
    rows.push_back(static_cast<int>(found.top().second));
    found.pop();
  }
  return rows;
}

int NeighbourGraph::live() const {
  std::shared_lock lock(hnsw_->lock);
  return hnsw_->live;
}

double NeighbourGraph::Drift(const Population& population) const {
  // KL(N(m1, S1) || N(m0, S0)) = (tr(S0^-1 S1) + (m0 - m1)' S0^-1 (m0 - m1) - d
  //                               + log det S0 - log det S1) / 2
  const auto d = static_cast<double>(population.mean.size());
  if (population.mean.size() != built_with_.mean.size()) return INFINITY;
  Eigen::LDLT<Eigen::MatrixXd> built(built_with_.cov);
  Eigen::LDLT<Eigen::MatrixXd> now(population.cov);
  if (built.info() != Eigen::Success || now.info() != Eigen::Success) return INFINITY;
  const Eigen::VectorXd shift = built_with_.mean - population.mean;
  const double trace = built.solve(population.cov).trace();
  const double mahalanobis = shift.dot(built.solve(shift));
  const double log_det_built = built.vectorD().array().log().sum();
  const double log_det_now = now.vectorD().array().log().sum();
  const double kl = 0.5 * (trace + mahalanobis - d + log_det_built - log_det_now);
  return std::isfinite(kl) ? std::max(kl, 0.0) : INFINITY;
}

}  // namespace tailor::model
