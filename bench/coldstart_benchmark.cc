#include "bench/coldstart_benchmark.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "absl/strings/str_format.h"
#include "bench/simulator.h"
#include "bench/synthetic_catalogue.h"
#include "model/belief.h"
#include "model/neighbour_track.h"

namespace tailor::bench {
namespace {

constexpr int kD = 10;

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

template <typename F>
double MicrosOf(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
      .count();
}

int Favourite(const Eigen::MatrixXd& scores, const Eigen::VectorXd& w) {
  Eigen::Index best = 0;
  (scores * w).maxCoeff(&best);
  return static_cast<int>(best);
}

}  // namespace

std::vector<ColdStartRow> RunColdStartBenchmark(const ColdStartOptions& options) {
  std::mt19937_64 rng(options.seed);
  const Catalogue catalogue = MakeSyntheticCatalogue(1000, 8, kD, 0.42, rng);
  std::vector<int> prompts(1000);
  for (int p = 0; p < 1000; ++p) prompts[static_cast<size_t>(p)] = p;
  std::vector<ColdStartRow> rows;
  for (const int n : options.populations) {
    model::ReferenceSet reference;
    reference.weights = MakeReferenceWeights(n, kD, 0.05, 3.0, 0.3, rng);
    model::Population population;
    population.mean = reference.weights.colwise().mean().transpose();
    const Eigen::MatrixXd centred = reference.weights.rowwise() - population.mean.transpose();
    population.cov = centred.transpose() * centred / std::max(1, n - 1);
    model::NeighbourIndexOptions index_options = options.index;
    index_options.build_threads = options.build_threads;
    std::unique_ptr<model::NeighbourIndex> index;
    const double build_us = MicrosOf(
        [&] { index = model::NeighbourIndex::Build(reference, population, index_options); });
    std::fprintf(stderr, "population %d: index built in %.1f s\n", n, build_us / 1e6);

    for (const int k : options.ks) {
      ColdStartRow row;
      row.population = n;
      row.k = k;
      row.build_seconds = build_us / 1e6;
      row.index_queries = options.queries;
      row.exact_queries = static_cast<int>(std::clamp(
          options.exact_budget / (static_cast<double>(n) * std::max(k, 1)),
          static_cast<double>(options.min_exact_queries), static_cast<double>(options.queries)));
      const model::NeighbourOptions mix{1.0, 256};
      std::vector<double> exact_us, index_us, next_pair_us;
      int agree = 0, exact_right = 0, index_right = 0, scored = 0;
      for (int q = 0; q < options.queries; ++q) {
        const Eigen::VectorXd truth = SampleDirichlet(kD, 0.05, rng);
        std::vector<Eigen::VectorXd> diffs;
        for (int i = 0; i < k; ++i) {
          const Comparison c = RandomComparison(catalogue, truth, prompts, rng);
          const Eigen::MatrixXd& z = catalogue.scores[static_cast<size_t>(c.prompt)];
          diffs.push_back((z.row(c.chosen) - z.row(c.rejected)).transpose());
        }
        model::NeighbourMixture approx;
        std::mt19937_64 lookup_rng(static_cast<uint64_t>(q));
        index_us.push_back(MicrosOf([&] { approx = index->Mix(diffs, -1, mix, lookup_rng); }));
        if (k > 0) {
          // What a live cold user's next pair costs: their track over the first k - 1 pairs,
          // extended by the k-th (which chooses its near rows again at 4, 8, 16, ...), mixed.
          const std::span<const Eigen::VectorXd> all(diffs);
          const model::NeighbourTrack before =
              model::NeighbourTrack::Start(all.first(static_cast<size_t>(k - 1)), reference,
                                           index.get(), -1, mix, static_cast<uint64_t>(q));
          model::NeighbourMixture next;
          next_pair_us.push_back(MicrosOf([&] {
            model::NeighbourTrack track = before;
            track.Add(all, reference, index.get(), mix);
            next = track.Mixture(reference, mix);
          }));
        }
        if (q >= row.exact_queries) continue;
        model::NeighbourMixture exact;
        exact_us.push_back(
            MicrosOf([&] { exact = model::MixNeighbours(diffs, reference, -1, mix); }));
        for (int e = 0; e < options.eval_prompts; ++e) {
          const Eigen::MatrixXd& z =
              catalogue
                  .scores[static_cast<size_t>(std::uniform_int_distribution<int>(0, 999)(rng))];
          const int best = Favourite(z, truth);
          const int a = Favourite(z, exact.mean);
          const int b = Favourite(z, approx.mean);
          agree += a == b;
          exact_right += a == best;
          index_right += b == best;
          ++scored;
        }
      }
      row.exact_p50_us = Percentile(exact_us, 0.5);
      row.exact_p99_us = Percentile(exact_us, 0.99);
      row.index_p50_us = Percentile(index_us, 0.5);
      row.index_p99_us = Percentile(index_us, 0.99);
      row.next_pair_p50_us = Percentile(next_pair_us, 0.5);
      row.next_pair_p99_us = Percentile(next_pair_us, 0.99);
      row.agreement = 1.0 * agree / std::max(1, scored);
      row.exact_top1 = 1.0 * exact_right / std::max(1, scored);
      row.index_top1 = 1.0 * index_right / std::max(1, scored);
      std::fprintf(stderr, "  k=%d: exact p50 %.0f us, index p50 %.0f us\n", k, row.exact_p50_us,
                   row.index_p50_us);
      rows.push_back(row);
    }
  }
  return rows;
}

std::string ColdStartMarkdown(const std::vector<ColdStartRow>& rows) {
  std::string out =
      "| established users | k | HNSW build s | exact p50 / p99 µs | HNSW p50 / p99 µs | "
      "speed-up (p50) | same pick | top-1 exact | top-1 HNSW | cost (points) | users | k-th "
      "pair on a live track p50 / p99 µs |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const ColdStartRow& r : rows) {
    absl::StrAppendFormat(&out,
                          "| %d | %d | %.1f | %.0f / %.0f | %.0f / %.0f | %.1f× | %.3f | %.3f | "
                          "%.3f | %+.1f | %d | %.0f / %.0f |\n",
                          r.population, r.k, r.build_seconds, r.exact_p50_us, r.exact_p99_us,
                          r.index_p50_us, r.index_p99_us, r.exact_p50_us / r.index_p50_us,
                          r.agreement, r.exact_top1, r.index_top1,
                          100 * (r.exact_top1 - r.index_top1), r.exact_queries, r.next_pair_p50_us,
                          r.next_pair_p99_us);
  }
  return out;
}

}  // namespace tailor::bench
