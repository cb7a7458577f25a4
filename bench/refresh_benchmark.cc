#include "bench/refresh_benchmark.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/heap.h"
#include "bench/synthetic_catalogue.h"
#include "model/neighbour_graph.h"

namespace tailor::bench {
namespace {

constexpr int kD = 10;

template <typename F>
double SecondsOf(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The established users as the engine would offer them.
struct Population {
  std::vector<std::string> ids;
  model::ReferenceWeights means;
  int next_id = 0;

  void Add(const Eigen::MatrixXd& weights) {
    const auto old = means.rows();
    means.conservativeResize(old + weights.rows(), kD);
    means.bottomRows(weights.rows()) = weights;
    for (Eigen::Index i = 0; i < weights.rows(); ++i) ids.push_back(absl::StrCat("u", next_id++));
  }
  void Offer(engine::ReferencePool& pool) const {
    for (size_t i = 0; i < ids.size(); ++i) {
      pool.Offer(ids[i], means.row(static_cast<Eigen::Index>(i)).transpose());
    }
  }
};

model::Population FitOf(const model::ReferenceWeights& weights) {
  model::Population population;
  population.mean = weights.colwise().mean().transpose();
  const Eigen::MatrixXd centred = weights.rowwise() - population.mean.transpose();
  population.cov = centred.transpose() * centred / static_cast<double>(weights.rows() - 1);
  return population;
}

// Recall of each graph's search against the exact `near` nearest rows, whitened by
// `population`, for `queries` cold users' centres.
std::pair<double, double> Recall(const model::ReferenceWeights& weights,
                                 const model::Population& population,
                                 const model::NeighbourGraph& changed,
                                 const model::NeighbourGraph& rebuilt, int near, int queries,
                                 std::mt19937_64& rng) {
  const Eigen::MatrixXd whitening = Eigen::LLT<Eigen::MatrixXd>(population.cov)
                                        .matrixL()
                                        .solve(Eigen::MatrixXd::Identity(kD, kD));
  const Eigen::MatrixXf whitened =
      ((weights.rowwise() - population.mean.transpose()) * whitening.transpose()).cast<float>();
  const int n = static_cast<int>(weights.rows());
  double changed_recall = 0, rebuilt_recall = 0;
  std::vector<int> order(static_cast<size_t>(n));
  for (int q = 0; q < queries; ++q) {
    const Eigen::VectorXd centre = SampleDirichlet(kD, 0.05, rng) * 3.0;
    const Eigen::VectorXf z = (whitening * (centre - population.mean)).cast<float>();
    const Eigen::VectorXf distance = (whitened.rowwise() - z.transpose()).rowwise().squaredNorm();
    for (int i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
    std::partial_sort(order.begin(), order.begin() + near, order.end(),
                      [&](int a, int b) { return distance[a] < distance[b]; });
    const absl::flat_hash_set<int> truth(order.begin(), order.begin() + near);
    auto recall = [&](const model::NeighbourGraph& graph) {
      int found = 0;
      for (int row : graph.Search(centre, near)) found += truth.contains(row);
      return static_cast<double>(found) / near;
    };
    changed_recall += recall(changed) / queries;
    rebuilt_recall += recall(rebuilt) / queries;
  }
  return {changed_recall, rebuilt_recall};
}

}  // namespace

RefreshResult RunRefreshBenchmark(const RefreshOptions& options) {
  std::mt19937_64 rng(options.seed);
  RefreshResult result;
  result.users = options.users;
  Population users;
  users.Add(MakeReferenceWeights(options.users, kD, 0.05, 3.0, 0.3, rng));

  engine::ReferencePool pool(options.pool);
  const double heap_before = HeapBytes();
  engine::ReferenceChanges changes;
  result.first_offer_seconds = SecondsOf([&] {
    users.Offer(pool);
    changes = pool.Update();
  });
  model::Population population = FitOf(pool.reference()->weights);
  result.first_index_seconds = SecondsOf([&] { pool.Index(population, changes); });
  result.heap_bytes_per_user = (HeapBytes() - heap_before) / options.users;
  std::fprintf(stderr, "%d users: first refresh %.1f s + graph %.1f s\n", options.users,
               result.first_offer_seconds, result.first_index_seconds);

  std::normal_distribution<double> noise(0.0, 0.3);
  for (int round = 0; round < options.rounds; ++round) {
    const int n = static_cast<int>(users.ids.size());
    // Estimates that change: a user's posterior mean moves with their new pairs.
    for (int i = 0; i < static_cast<int>(options.moved * n); ++i) {
      const auto row = std::uniform_int_distribution<Eigen::Index>(0, n - 1)(rng);
      for (int j = 0; j < kD; ++j) users.means(row, j) += noise(rng);
    }
    // Users who go (deleted), the last taking each one's place, and users who arrive.
    for (int i = 0; i < static_cast<int>(options.removed * n); ++i) {
      const auto row = std::uniform_int_distribution<Eigen::Index>(
          0, static_cast<Eigen::Index>(users.ids.size()) - 1)(rng);
      const auto last = static_cast<Eigen::Index>(users.ids.size()) - 1;
      users.ids[static_cast<size_t>(row)] = users.ids[static_cast<size_t>(last)];
      users.means.row(row) = users.means.row(last);
      users.ids.pop_back();
      users.means.conservativeResize(last, kD);
    }
    users.Add(MakeReferenceWeights(static_cast<int>(options.added * n), kD, 0.05, 3.0, 0.3, rng));

    RefreshRound r;
    r.offer_seconds = SecondsOf([&] {
      users.Offer(pool);
      r.changes = pool.Update();
    });
    population = FitOf(pool.reference()->weights);
    r.index_seconds = SecondsOf([&] { pool.Index(population, r.changes); });
    std::shared_ptr<model::NeighbourGraph> rebuilt;
    r.rebuild_seconds = SecondsOf([&] {
      rebuilt = model::NeighbourGraph::Build(pool.reference()->weights, population,
                                             options.pool.neighbour_index);
    });
    const model::NeighbourGraph* changed = pool.graph();
    if (changed != nullptr) {
      std::tie(r.recall_changed, r.recall_rebuilt) =
          Recall(pool.reference()->weights, population, *changed, *rebuilt,
                 options.pool.neighbour_index.near, options.queries, rng);
    }
    std::fprintf(stderr,
                 "round %d: +%d ~%d -%d, offer %.2f s, graph %.2f s (%s), rebuild %.1f s, "
                 "recall %.3f / %.3f\n",
                 round + 1, r.changes.added, r.changes.moved, r.changes.removed, r.offer_seconds,
                 r.index_seconds, r.changes.rebuilt ? "rebuilt" : "in place", r.rebuild_seconds,
                 r.recall_changed, r.recall_rebuilt);
    result.rounds.push_back(r);
  }
  return result;
}

std::string RefreshMarkdown(const RefreshOptions& options, const RefreshResult& result) {
  std::string out = absl::StrFormat(
      "%d reference users (d = %d): first refresh %.1f s (offers and set) + %.1f s (graph "
      "built); the pool holds %.0f heap bytes per reference user.\n\n",
      result.users, kD, result.first_offer_seconds, result.first_index_seconds,
      result.heap_bytes_per_user);
  absl::StrAppend(&out,
                  "| round | added / moved / removed | offers and set s | graph s | graph | new "
                  "graph s (baseline) | graph ÷ new graph | recall@",
                  options.pool.neighbour_index.near,
                  " changed / new |\n|---:|---|---:|---:|---|---:|---:|---|\n");
  int round = 0;
  for (const RefreshRound& r : result.rounds) {
    absl::StrAppendFormat(
        &out, "| %d | %d / %d / %d | %.2f | %.2f | %s | %.1f | %.3f | %.3f / %.3f |\n", ++round,
        r.changes.added, r.changes.moved, r.changes.removed, r.offer_seconds, r.index_seconds,
        r.changes.rebuilt ? std::string("rebuilt")
                          : absl::StrCat(r.changes.graph_changes, " points in place"),
        r.rebuild_seconds, r.index_seconds / r.rebuild_seconds, r.recall_changed, r.recall_rebuilt);
  }
  return out;
}

}  // namespace tailor::bench
