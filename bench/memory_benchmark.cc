#include "bench/memory_benchmark.h"

#include <malloc.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "bench/heap.h"
#include "bench/scratch_dir.h"
#include "engine/preference_engine.h"
#include "model/posterior.h"

namespace tailor::bench {
namespace {

model::FeatureSchema Schema(int d) {
  std::string csv = "name,mean,sd\n";
  for (int i = 0; i < d; ++i) absl::StrAppend(&csv, "f", i, ",0,1\n");
  return *model::FeatureSchema::FromCsv(csv);
}

engine::EngineOptions RefreshOnDemand() {
  engine::EngineOptions options;
  options.refresh_period = absl::ZeroDuration();
  return options;
}

// Writes `users` users into a fresh store: established ones as a learned state only (200
// pairs, more than the hand-over), cold ones with `pairs` history records each.
absl::Status Populate(const std::string& path, int d, int users, int pairs) {
  storage::StoreOptions options;
  options.path = path;
  auto store = storage::FeedbackStore::Open(options);
  if (!store.ok()) return store.status();
  auto engine = engine::PreferenceEngine::Open(Schema(d), **store, RefreshOnDemand());
  if (!engine.ok()) return engine.status();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> a(static_cast<size_t>(d)), b(static_cast<size_t>(d));
  for (int u = 0; u < users; ++u) {
    if (pairs == 0) {
      storage::UserCommit commit;
      commit.user_id = absl::StrCat("user-", u);
      model::Posterior posterior(Eigen::VectorXd::Zero(d), Eigen::MatrixXd::Identity(d, d));
      commit.state.set_format_version(1);
      commit.state.set_feedback_count(200);
      for (int i = 0; i < d; ++i) commit.state.add_mean(normal(rng));
      // The form the engine keeps: full covariance up to d = 64, its diagonal above.
      commit.state.set_covariance_is_diagonal(d > 64);
      for (int i = 0; i < d; ++i) {
        for (int j = i; j < (d > 64 ? i + 1 : d); ++j) {
          commit.state.add_covariance(i == j ? 0.05 : 0.0);
        }
      }
      if (absl::Status s = (*store)->Commit(commit); !s.ok()) return s;
      continue;
    }
    for (int i = 0; i < pairs; ++i) {
      for (int j = 0; j < d; ++j) {
        a[static_cast<size_t>(j)] = normal(rng);
        b[static_cast<size_t>(j)] = normal(rng);
      }
      engine::FeedbackInput event{
          absl::StrCat(u, "-", i), absl::StrCat("user-", u), "", {"a", a}, {"b", b}, 0};
      if (auto r = (*engine)->RecordFeedback(event); !r.ok()) return r.status();
    }
  }
  return absl::OkStatus();
}

// Heap growth of opening an engine on the store at `path` (with its reference set and, above
// exact_scan_max_users, its HNSW index), the time it took, and the part of it spent in the
// refresh that builds them.
struct Load {
  double heap_bytes = 0;
  double seconds = 0;
  double refresh_seconds = 0;
};
absl::StatusOr<Load> LoadCost(const std::string& path, int d) {
  ::malloc_trim(0);
  storage::StoreOptions options;
  options.path = path;
  options.block_cache_bytes = 8 << 20;
  auto store = storage::FeedbackStore::Open(options);
  if (!store.ok()) return store.status();
  const double before = HeapBytes();
  const auto start = std::chrono::steady_clock::now();
  auto engine = engine::PreferenceEngine::Open(Schema(d), **store, RefreshOnDemand());
  if (!engine.ok()) return engine.status();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Load{HeapBytes() - before, seconds, (*engine)->Stats().last_refresh_seconds};
}

}  // namespace

absl::StatusOr<MemoryResult> MeasureMemoryPerUser(int dimension, int users_small, int users_large,
                                                  int cold_pairs) {
  absl::StatusOr<std::unique_ptr<ScratchDir>> scratch = ScratchDir::Create();
  if (!scratch.ok()) return scratch.status();
  const std::string& dir = (*scratch)->path();
  MemoryResult result;
  result.dimension = dimension;
  result.users_small = users_small;
  result.users_large = users_large;
  result.cold_pairs = cold_pairs;
  double cost[2][2] = {};
  for (int kind = 0; kind < 2; ++kind) {
    for (int size = 0; size < 2; ++size) {
      const int users = size == 0 ? users_small : users_large;
      const std::string path = absl::StrCat(dir, "/", kind, "-", size);
      // Cold users are fewer (each carries its pairs); a tenth keeps the run short.
      const int n = kind == 0 ? users : users / 10;
      if (absl::Status s = Populate(path, dimension, n, kind == 0 ? 0 : cold_pairs); !s.ok()) {
        return s;
      }
      auto loaded = LoadCost(path, dimension);
      if (!loaded.ok()) return loaded.status();
      cost[kind][size] = loaded->heap_bytes;
      if (kind == 0 && size == 1) {
        result.load_seconds_large = loaded->seconds;
        result.refresh_seconds_large = loaded->refresh_seconds;
      }
    }
  }
  result.bytes_per_established_user =
      (cost[0][1] - cost[0][0]) / static_cast<double>(users_large - users_small);
  result.bytes_per_cold_user =
      (cost[1][1] - cost[1][0]) / static_cast<double>((users_large - users_small) / 10);
  return result;
}

absl::StatusOr<RankLatency> MeasureRankLatency(int d, int established, int cold_users,
                                               int cold_pairs, int calls) {
  absl::StatusOr<std::unique_ptr<ScratchDir>> scratch = ScratchDir::Create();
  if (!scratch.ok()) return scratch.status();
  const std::string& dir = (*scratch)->path();
  if (absl::Status s = Populate(dir + "/db", d, established, 0); !s.ok()) return s;
  storage::StoreOptions options;
  options.path = dir + "/db";
  auto store = storage::FeedbackStore::Open(options);
  if (!store.ok()) return store.status();
  auto engine = engine::PreferenceEngine::Open(Schema(d), **store, RefreshOnDemand());
  if (!engine.ok()) return engine.status();
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  std::vector<float> a(static_cast<size_t>(d)), b(static_cast<size_t>(d));
  for (int u = 0; u < cold_users; ++u) {
    for (int i = 0; i < cold_pairs; ++i) {
      for (int j = 0; j < d; ++j) {
        a[static_cast<size_t>(j)] = normal(rng);
        b[static_cast<size_t>(j)] = normal(rng);
      }
      engine::FeedbackInput event{
          absl::StrCat(u, "-", i), absl::StrCat("cold-", u), "", {"a", a}, {"b", b}, 0};
      if (auto r = (*engine)->RecordFeedback(event); !r.ok()) return r.status();
    }
  }
  // 8 candidates, as the serving stack sends them.
  std::vector<std::vector<float>> rows(8, std::vector<float>(static_cast<size_t>(d)));
  for (auto& row : rows) {
    for (float& v : row) v = normal(rng);
  }
  std::vector<engine::CandidateInput> candidates;
  for (size_t i = 0; i < rows.size(); ++i) candidates.push_back({absl::StrCat("c", i), rows[i]});
  const auto time = [&](const std::string& prefix,
                        int users) -> absl::StatusOr<std::vector<double>> {
    std::vector<double> micros;
    for (int c = 0; c < calls; ++c) {
      const std::string user = absl::StrCat(prefix, c % users);
      const auto start = std::chrono::steady_clock::now();
      auto ranked = (*engine)->Rank(user, candidates, false);
      micros.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
              .count());
      if (!ranked.ok()) return ranked.status();
    }
    std::sort(micros.begin(), micros.end());
    return micros;
  };
  const auto at = [](const std::vector<double>& v, double q) {
    return v[std::min(v.size() - 1,
                      static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5))];
  };
  RankLatency result;
  result.dimension = d;
  absl::StatusOr<std::vector<double>> warm = time("user-", established);
  if (!warm.ok()) return warm.status();
  absl::StatusOr<std::vector<double>> cold = time("cold-", cold_users);
  if (!cold.ok()) return cold.status();
  result.warm_p50_us = at(*warm, 0.5);
  result.warm_p99_us = at(*warm, 0.99);
  result.cold_p50_us = at(*cold, 0.5);
  result.cold_p99_us = at(*cold, 0.99);
  return result;
}

}  // namespace tailor::bench
