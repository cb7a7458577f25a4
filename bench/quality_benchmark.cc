#include "bench/quality_benchmark.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/catalogue_requests.h"
#include "bench/progress.h"
#include "bench/report_format.h"
#include "bench/scratch_dir.h"
#include "bench/tailord_process.h"
#include "client/tailor_client.h"

namespace tailor::bench {
absl::StatusOr<QualityReport> RunQualityBenchmark(const Catalogue& catalogue,
                                                  const std::string& name,
                                                  const QualityOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  std::mt19937_64 rng(options.seed);
  const int d = catalogue.features();
  absl::StatusOr<PromptSplit> split = SplitPrompts(catalogue, options.train_fraction, rng);
  if (!split.ok()) return split.status();
  const std::vector<int>& train = split->train;
  const std::vector<int>& test = split->test;
  const std::vector<CandidateList> raw = RawCandidates(catalogue);

  // Two servers on a fresh data dir each: Tailor as shipped, and the own-posterior baseline.
  absl::StatusOr<std::unique_ptr<ScratchDir>> scratch = ScratchDir::Create();
  if (!scratch.ok()) return scratch.status();
  const std::string& dir = (*scratch)->path();
  if (absl::Status s = WriteSchema(catalogue, dir + "/schema.csv"); !s.ok()) return s;
  auto start_server = [&](const std::string& sub, bool neighbours) {
    return std::make_unique<TailordProcess>(
        options.tailord_binary,
        std::vector<std::string>{
            "--data_dir=" + dir + "/" + sub, "--schema=" + dir + "/schema.csv", "--refresh_ms=500",
            "--shutdown_grace_ms=200",
            absl::StrCat("--max_candidates=", std::max(64, catalogue.responses())),
            absl::StrCat("--neighbour_cold_start=", neighbours)});
  };
  std::unique_ptr<TailordProcess> tailor = start_server("tailor", true);
  std::unique_ptr<TailordProcess> own = start_server("own", false);
  if (!tailor->WaitUntilServing() || !own->WaitUntilServing()) {
    return absl::UnavailableError("tailord did not start: " + tailor->log() + own->log());
  }
  auto client_for = [](const TailordProcess& process) {
    client::ClientOptions o;
    o.target = process.target();
    o.deadline = absl::Seconds(30);
    return std::make_unique<client::TailorClient>(o);
  };

  // 1. The historical population streams in (to both servers).
  std::vector<std::vector<v1::FeedbackEvent>> history(
      static_cast<size_t>(options.historical_users));
  for (int u = 0; u < options.historical_users; ++u) {
    const Eigen::VectorXd w = SampleDirichlet(d, options.alpha, rng);
    const int pairs = std::uniform_int_distribution<int>(options.min_pairs, options.max_pairs)(rng);
    for (int i = 0; i < pairs; ++i) {
      history[static_cast<size_t>(u)].push_back(
          Event(raw, RandomComparison(catalogue, w, train, rng), absl::StrCat("hist-", u),
                absl::StrCat("h", u, "-", i)));
    }
  }
  Progress ingest("historical users", options.historical_users, options.progress);
  absl::Status streamed = Parallel(options.threads, [&](int t) -> absl::Status {
    auto tc = client_for(*tailor);
    auto oc = client_for(*own);
    std::vector<v1::FeedbackEvent> batch;
    for (int u = t; u < options.historical_users; u += options.threads) {
      const auto& events = history[static_cast<size_t>(u)];
      batch.insert(batch.end(), events.begin(), events.end());
      if (batch.size() >= 2000 || u + options.threads >= options.historical_users) {
        for (auto* c : {tc.get(), oc.get()}) {
          auto acks = c->StreamFeedback(batch);
          if (!acks.ok()) {
            return absl::Status(acks.status().code(),
                                absl::StrCat("historical feedback: ", acks.status().message()));
          }
        }
        batch.clear();
      }
      ingest.Add();
    }
    return absl::OkStatus();
  });
  if (!streamed.ok()) return streamed;
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // > 2 refresh periods

  QualityReport report;
  auto record_knowledge = [&](const char* when) -> absl::Status {
    absl::StatusOr<v1::ServerInfo> info = client_for(*tailor)->GetServerInfo();
    if (!info.ok()) return info.status();
    report.knowledge.push_back(absl::StrCat(when, ": ", DescribeKnowledge(info->knowledge())));
    return absl::OkStatus();
  };
  if (absl::Status s = record_knowledge("after the history"); !s.ok()) return s;

  // 2. Test users at each k.
  report.catalogue = name;
  report.prompts = static_cast<int>(catalogue.scores.size());
  report.responses = catalogue.responses();
  report.features = d;
  report.reference_name = catalogue.reference_name;
  Progress testing("test users", static_cast<int64_t>(options.ks.size()) * options.test_users,
                   options.progress);
  for (int k : options.ks) {
    QualityRow row;
    row.k = k;
    std::mutex row_mu;
    absl::Status measured = Parallel(options.threads, [&](int t) -> absl::Status {
      auto tc = client_for(*tailor);
      auto oc = client_for(*own);
      QualityRow local;
      for (int u = t; u < options.test_users; u += options.threads) {
        std::mt19937_64 user_rng(options.seed * 1000003 + static_cast<uint64_t>(k) * 7919 +
                                 static_cast<uint64_t>(u));
        const Eigen::VectorXd w = SampleDirichlet(d, options.alpha, user_rng);
        const std::string id = absl::StrCat("k", k, "-u", u);
        for (int i = 0; i < k; ++i) {
          const Comparison c = RandomComparison(catalogue, w, train, user_rng);
          for (auto [client, prefix] :
               {std::pair{tc.get(), "rand-"}, std::pair{oc.get(), "own-"}}) {
            auto ack = client->SubmitFeedback(
                Event(raw, c, prefix + id, absl::StrCat(prefix, id, "-", i)));
            if (!ack.ok()) {
              return absl::Status(
                  ack.status().code(),
                  absl::StrCat("feedback of ", prefix, id, " on prompt ", c.prompt, " (", c.chosen,
                               " over ", c.rejected, "): ", ack.status().message()));
            }
          }
          const int prompt =
              train[std::uniform_int_distribution<size_t>(0, train.size() - 1)(user_rng)];
          v1::SuggestComparisonRequest ask;
          ask.set_user_id("sugg-" + id);
          *ask.mutable_candidates() = raw[static_cast<size_t>(prompt)];
          auto pair = tc->Suggest(ask);
          if (!pair.ok()) {
            return absl::Status(pair.status().code(), absl::StrCat("suggest on prompt ", prompt,
                                                                   ": ", pair.status().message()));
          }
          const Comparison answer =
              Answer(catalogue, w, prompt, std::stoi(pair->first_id().substr(1)),
                     std::stoi(pair->second_id().substr(1)));
          auto ack =
              tc->SubmitFeedback(Event(raw, answer, "sugg-" + id, absl::StrCat("s", id, "-", i)));
          if (!ack.ok()) {
            return absl::Status(ack.status().code(),
                                absl::StrCat("feedback of sugg-", id, " on suggested pair ",
                                             pair->first_id(), "/", pair->second_id(),
                                             " of prompt ", prompt, ": ", ack.status().message()));
          }
        }
        for (int e = 0; e < options.eval_prompts; ++e) {
          const int prompt =
              test[std::uniform_int_distribution<size_t>(0, test.size() - 1)(user_rng)];
          v1::RankResponsesRequest request;
          *request.mutable_candidates() = raw[static_cast<size_t>(prompt)];
          for (auto [client, user, score] :
               {std::tuple{tc.get(), "rand-" + id, &local.random},
                std::tuple{tc.get(), "sugg-" + id, &local.suggested},
                std::tuple{oc.get(), "own-" + id, &local.own},
                std::tuple{tc.get(), "never-seen-" + id, &local.population}}) {
            request.set_user_id(user);
            auto ranked = client->Rank(request);
            if (!ranked.ok()) return ranked.status();
            ScoreRanking(catalogue, w, prompt, RankingOf(*ranked), *score);
          }
          const Eigen::VectorXd truth = catalogue.scores[static_cast<size_t>(prompt)] * w;
          std::vector<int> oracle(static_cast<size_t>(catalogue.responses()));
          std::iota(oracle.begin(), oracle.end(), 0);
          std::stable_sort(oracle.begin(), oracle.end(),
                           [&](int a, int b) { return truth[a] > truth[b]; });
          ScoreRanking(catalogue, w, prompt, oracle, local.oracle);
        }
        testing.Add();
      }
      std::lock_guard<std::mutex> lock(row_mu);
      row.random.Add(local.random);
      row.suggested.Add(local.suggested);
      row.own.Add(local.own);
      row.population.Add(local.population);
      row.oracle.Add(local.oracle);
      return absl::OkStatus();
    });
    if (!measured.ok()) return measured;
    report.rows.push_back(row);
  }
  if (absl::Status s = record_knowledge("at the end"); !s.ok()) return s;
  tailor.reset();
  own.reset();
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

std::string ReportMarkdown(const QualityReport& r) {
  std::string out = absl::StrFormat(
      "catalogue %s: %d prompts x %d responses x %d features; held-out pairwise accuracy / "
      "top-1 (pick = the user's true favourite)\n\n"
      "| k | Tailor, random pairs | Tailor, suggested pairs | own posterior only | population "
      "only | oracle |\n|---|---|---|---|---|---|\n",
      r.catalogue, r.prompts, r.responses, r.features);
  for (const QualityRow& row : r.rows) {
    auto cell = [](const QualityScore& s) {
      return absl::StrFormat("%.3f / %.3f", s.pairwise_accuracy(), s.top1());
    };
    absl::StrAppendFormat(&out, "| %d | %s | %s | %s | %s | %s |\n", row.k, cell(row.random),
                          cell(row.suggested), cell(row.own), cell(row.population),
                          cell(row.oracle));
  }
  absl::StrAppend(&out,
                  "\nmean true reward of the pick / regret vs the user's favourite\n\n"
                  "| k | Tailor, random | Tailor, suggested | own only | population | "
                  "oracle |\n|---|---|---|---|---|---|\n");
  for (const QualityRow& row : r.rows) {
    auto cell = [](const QualityScore& s) {
      return absl::StrFormat("%.3f / %.3f", s.mean_pick_reward(), s.mean_regret());
    };
    absl::StrAppendFormat(&out, "| %d | %s | %s | %s | %s | %s |\n", row.k, cell(row.random),
                          cell(row.suggested), cell(row.own), cell(row.population),
                          cell(row.oracle));
  }
  if (!r.reference_name.empty()) {
    absl::StrAppendFormat(&out,
                          "\nwin rate of the pick against %s (ties count half)\n\n"
                          "| k | Tailor, random | Tailor, suggested | own only | population | "
                          "oracle |\n|---|---|---|---|---|---|\n",
                          r.reference_name);
    for (const QualityRow& row : r.rows) {
      auto cell = [](const QualityScore& s) {
        return absl::StrFormat("%.3f", s.win_rate_vs_reference());
      };
      absl::StrAppendFormat(&out, "| %d | %s | %s | %s | %s | %s |\n", row.k, cell(row.random),
                            cell(row.suggested), cell(row.own), cell(row.population),
                            cell(row.oracle));
    }
  }
  absl::StrAppend(&out, "\nwhat the Tailor server fitted\n\n");
  for (const std::string& k : r.knowledge) absl::StrAppend(&out, "- ", k, "\n");
  absl::StrAppendFormat(&out, "\n(%.0f s)\n", r.seconds);
  return out;
}

std::string SeedSpreadMarkdown(const std::vector<QualityReport>& runs,
                               const std::vector<uint64_t>& seeds) {
  std::string seed_list;
  for (uint64_t seed : seeds) absl::StrAppend(&seed_list, seed_list.empty() ? "" : ", ", seed);
  std::string out = absl::StrFormat(
      "spread across %zu seeds (%s): mean ± standard deviation of held-out pairwise accuracy "
      "/ top-1\n\n| k | Tailor, random pairs | Tailor, suggested pairs | own posterior only | "
      "population only |\n|---|---|---|---|---|\n",
      runs.size(), seed_list);
  if (runs.empty()) return out;
  auto spread = [&](size_t row, auto score) {
    std::vector<double> pairwise;
    std::vector<double> top1;
    for (const QualityReport& run : runs) {
      const QualityScore& s = score(run.rows[row]);
      pairwise.push_back(s.pairwise_accuracy());
      top1.push_back(s.top1());
    }
    auto stats = [](const std::vector<double>& v) {
      double mean = 0;
      for (double x : v) mean += x;
      mean /= static_cast<double>(v.size());
      double squares = 0;
      for (double x : v) squares += (x - mean) * (x - mean);
      const double sd = v.size() > 1 ? std::sqrt(squares / static_cast<double>(v.size() - 1)) : 0;
      return absl::StrFormat("%.3f ± %.3f", mean, sd);
    };
    return absl::StrCat(stats(pairwise), " / ", stats(top1));
  };
  for (size_t row = 0; row < runs[0].rows.size(); ++row) {
    absl::StrAppendFormat(
        &out, "| %d | %s | %s | %s | %s |\n", runs[0].rows[row].k,
        spread(row, [](const QualityRow& r) -> const QualityScore& { return r.random; }),
        spread(row, [](const QualityRow& r) -> const QualityScore& { return r.suggested; }),
        spread(row, [](const QualityRow& r) -> const QualityScore& { return r.own; }),
        spread(row, [](const QualityRow& r) -> const QualityScore& { return r.population; }));
  }
  return out;
}

std::string ReportJson(const QualityReport& r) {
  auto score = [](const QualityScore& s) {
    return absl::StrFormat(
        R"({"pairwise_accuracy": %.4f, "top1": %.4f, "mean_pick_reward": %.4f, "mean_regret": %.4f, "win_rate_vs_reference": %s, "prompts": %.0f})",
        s.pairwise_accuracy(), s.top1(), s.mean_pick_reward(), s.mean_regret(),
        s.reference_prompts > 0 ? absl::StrFormat("%.4f", s.win_rate_vs_reference()) : "null",
        s.prompts);
  };
  std::string out = absl::StrFormat(
      R"({"catalogue": "%s", "prompts": %d, "responses": %d, "features": %d, "seconds": %.1f, "rows": [)",
      r.catalogue, r.prompts, r.responses, r.features, r.seconds);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const QualityRow& row = r.rows[i];
    absl::StrAppendFormat(
        &out,
        R"(%s{"k": %d, "tailor_random": %s, "tailor_suggested": %s, "own_only": %s, "population": %s, "oracle": %s})",
        i == 0 ? "" : ", ", row.k, score(row.random), score(row.suggested), score(row.own),
        score(row.population), score(row.oracle));
  }
  return out + "]}\n";
}

std::string ReportSvg(const QualityReport& r) {
  const std::vector<std::pair<PlotSeries, QualityScore QualityRow::*>> lines = {
      {{"Tailor, suggested pairs", "#1f77b4"}, &QualityRow::suggested},
      {{"Tailor, random pairs", "#2ca02c"}, &QualityRow::random},
      {{"own posterior only", "#ff7f0e"}, &QualityRow::own},
      {{"population only", "#7f7f7f"}, &QualityRow::population}};
  std::vector<int> ks;
  for (const QualityRow& row : r.rows) ks.push_back(row.k);
  std::vector<PlotSeries> series;
  PlotPanel top1{absl::StrCat("top-1 (", r.catalogue, ")"), {}, std::pair{0.0, 1.0}};
  PlotPanel pairwise{
      absl::StrCat("pairwise accuracy (", r.catalogue, ")"), {}, std::pair{0.5, 1.0}};
  for (const auto& [line, field] : lines) {
    series.push_back(line);
    top1.values.emplace_back();
    pairwise.values.emplace_back();
    for (const QualityRow& row : r.rows) {
      top1.values.back().push_back((row.*field).top1());
      pairwise.values.back().push_back((row.*field).pairwise_accuracy());
    }
  }
  return LinePanelsSvg(ks, series, {top1, pairwise});
}

}  // namespace tailor::bench
