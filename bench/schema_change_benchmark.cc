#include "bench/schema_change_benchmark.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/catalogue_requests.h"
#include "bench/progress.h"
#include "bench/scratch_dir.h"
#include "bench/tailord_process.h"
#include "client/tailor_client.h"

namespace tailor::bench {
namespace {

// Methods measured at each stage.
enum Method { kEvolved, kStartedOver, kKept, kPopulation, kOracle, kMethods };

// One tailord and a client per thread.
struct Server {
  std::unique_ptr<TailordProcess> process;
  std::vector<CandidateList> raw;  // candidates in this server's schema
};

std::unique_ptr<client::TailorClient> ClientFor(const TailordProcess& process) {
  client::ClientOptions o;
  o.target = process.target();
  o.deadline = absl::Seconds(60);
  return std::make_unique<client::TailorClient>(o);
}

absl::Status Stop(TailordProcess& process) {
  process.Signal(SIGTERM);
  std::optional<int> code = process.WaitForExit(60000);
  if (code != 0) return absl::InternalError("tailord did not stop cleanly: " + process.log());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SchemaChangeReport> RunSchemaChangeBenchmark(const Catalogue& catalogue,
                                                            const std::string& name,
                                                            const SchemaChangeOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const int d = catalogue.features();
  if (d < 2) return absl::InvalidArgumentError("the catalogue needs at least 2 reward models");
  std::vector<int> all(static_cast<size_t>(d));
  std::iota(all.begin(), all.end(), 0);
  std::vector<int> old_features = all, new_features = all;
  if (options.scenario == "add_feature") {
    old_features.pop_back();
  } else if (options.scenario == "remove_feature") {
    new_features.erase(new_features.begin());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--scenario: '", options.scenario, "' is not add_feature or remove_feature"));
  }
  std::mt19937_64 rng(options.seed);
  absl::StatusOr<PromptSplit> split = SplitPrompts(catalogue, options.train_fraction, rng);
  if (!split.ok()) return split.status();
  const std::vector<int>& train = split->train;
  const std::vector<int>& test = split->test;

  absl::StatusOr<std::unique_ptr<ScratchDir>> scratch = ScratchDir::Create();
  if (!scratch.ok()) return scratch.status();
  const std::string& dir = (*scratch)->path();
  for (auto [file, features] :
       {std::pair{"/old.csv", &old_features}, std::pair{"/new.csv", &new_features}}) {
    if (absl::Status s = WriteSchema(catalogue, dir + file, *features); !s.ok()) return s;
  }
  auto start = [&](const std::string& data, const char* schema, bool evolve,
                   const std::vector<int>& features) -> absl::StatusOr<Server> {
    Server server;
    server.raw = RawCandidates(catalogue, features);
    std::vector<std::string> args = {
        "--data_dir=" + dir + "/" + data, absl::StrCat("--schema=", dir, schema),
        "--refresh_ms=500", "--shutdown_grace_ms=200",
        absl::StrCat("--max_candidates=", std::max(64, catalogue.responses()))};
    if (evolve) args.push_back("--evolve_schema");
    server.process = std::make_unique<TailordProcess>(options.tailord_binary, args);
    if (!server.process->WaitUntilServing(600000)) {
      return absl::UnavailableError("tailord did not start: " + server.process->log());
    }
    return server;
  };

  // Users weigh every reward model of the catalogue, the old schema's or not.
  std::vector<Eigen::VectorXd> historical, testers;
  for (int u = 0; u < options.historical_users; ++u) {
    historical.push_back(SampleDirichlet(d, options.alpha, rng));
  }
  for (int u = 0; u < options.test_users; ++u) {
    testers.push_back(SampleDirichlet(d, options.alpha, rng));
  }
  // Streams `pairs(u)` random pairs of each of `users` to `servers` (ids prefix + u; event ids
  // from `first`).
  auto feed = [&](const std::vector<Eigen::VectorXd>& users, const std::string& prefix, auto pairs,
                  int first, uint64_t seed, const std::vector<Server*>& servers) -> absl::Status {
    return Parallel(options.threads, [&](int t) -> absl::Status {
      std::vector<std::unique_ptr<client::TailorClient>> clients;
      for (Server* s : servers) clients.push_back(ClientFor(*s->process));
      for (size_t u = static_cast<size_t>(t); u < users.size();
           u += static_cast<size_t>(options.threads)) {
        std::mt19937_64 user_rng(seed * 1000003 + u);
        const int n = pairs(user_rng);
        std::vector<Comparison> comparisons;
        for (int i = 0; i < n; ++i) {
          comparisons.push_back(RandomComparison(catalogue, users[u], train, user_rng));
        }
        for (size_t s = 0; s < servers.size(); ++s) {
          std::vector<v1::FeedbackEvent> events;
          for (int i = 0; i < n; ++i) {
            events.push_back(Event(servers[s]->raw, comparisons[static_cast<size_t>(i)],
                                   absl::StrCat(prefix, u), absl::StrCat("e", first + i)));
          }
          absl::StatusOr<std::vector<v1::FeedbackAck>> acks = clients[s]->StreamFeedback(events);
          if (!acks.ok()) return acks.status();
        }
      }
      return absl::OkStatus();
    });
  };
  const auto wait_for_refresh = [] { std::this_thread::sleep_for(std::chrono::seconds(2)); };

  // Per test user: pairwise accuracy and top-1 of each method, on the same held-out prompts
  // at every stage (paired).
  struct Scores {
    std::vector<std::vector<double>> pairwise, top1;  // [method][user]
  };
  auto measure = [&](Server* evolved, Server* started_over,
                     Server* kept) -> absl::StatusOr<Scores> {
    Scores scores;
    scores.pairwise.assign(kMethods, std::vector<double>(testers.size(), 0));
    scores.top1 = scores.pairwise;
    std::mutex mu;
    absl::Status status = Parallel(options.threads, [&](int t) -> absl::Status {
      const std::array<Server*, kOracle> servers = {evolved, started_over, kept, evolved};
      std::array<std::unique_ptr<client::TailorClient>, kOracle> clients;
      for (int m = 0; m < kOracle; ++m) {
        if (servers[static_cast<size_t>(m)] != nullptr) {
          clients[static_cast<size_t>(m)] = ClientFor(*servers[static_cast<size_t>(m)]->process);
        }
      }
      for (size_t u = static_cast<size_t>(t); u < testers.size();
           u += static_cast<size_t>(options.threads)) {
        std::mt19937_64 eval_rng(options.seed * 7919 + u);
        std::array<QualityScore, kMethods> score;
        for (int e = 0; e < options.eval_prompts; ++e) {
          const int prompt =
              test[std::uniform_int_distribution<size_t>(0, test.size() - 1)(eval_rng)];
          for (int m = 0; m < kOracle; ++m) {
            if (clients[static_cast<size_t>(m)] == nullptr) continue;
            v1::RankResponsesRequest request;
            request.set_user_id(m == kPopulation ? absl::StrCat("never-seen-", u)
                                                 : absl::StrCat("test-", u));
            *request.mutable_candidates() =
                servers[static_cast<size_t>(m)]->raw[static_cast<size_t>(prompt)];
            absl::StatusOr<v1::RankResponsesResponse> ranked =
                clients[static_cast<size_t>(m)]->Rank(request);
            if (!ranked.ok()) return ranked.status();
            ScoreRanking(catalogue, testers[u], prompt, RankingOf(*ranked),
                         score[static_cast<size_t>(m)]);
          }
          const Eigen::VectorXd truth = catalogue.scores[static_cast<size_t>(prompt)] * testers[u];
          std::vector<int> oracle(static_cast<size_t>(catalogue.responses()));
          std::iota(oracle.begin(), oracle.end(), 0);
          std::stable_sort(oracle.begin(), oracle.end(),
                           [&](int a, int b) { return truth[a] > truth[b]; });
          ScoreRanking(catalogue, testers[u], prompt, oracle, score[kOracle]);
        }
        std::lock_guard<std::mutex> lock(mu);
        for (int m = 0; m < kMethods; ++m) {
          scores.pairwise[static_cast<size_t>(m)][u] =
              score[static_cast<size_t>(m)].pairwise_accuracy();
          scores.top1[static_cast<size_t>(m)][u] = score[static_cast<size_t>(m)].top1();
        }
      }
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    return scores;
  };
  SchemaChangeReport report;
  report.catalogue = name;
  report.scenario = options.scenario;
  for (int f : old_features) {
    report.old_features.push_back(catalogue.feature_names[static_cast<size_t>(f)]);
  }
  for (int f : new_features) {
    report.new_features.push_back(catalogue.feature_names[static_cast<size_t>(f)]);
  }
  auto add_row = [&](std::string stage, int k, const Scores& s, bool after) {
    SchemaChangeRow row;
    row.stage = std::move(stage);
    row.k = k;
    row.evolved_pairwise = Summarize(s.pairwise[kEvolved]);
    row.evolved_top1 = Summarize(s.top1[kEvolved]);
    row.population_pairwise = Summarize(s.pairwise[kPopulation]);
    row.oracle_pairwise = Summarize(s.pairwise[kOracle]);
    const MeanSe none;
    row.started_over_pairwise = after ? Summarize(s.pairwise[kStartedOver]) : none;
    row.started_over_top1 = after ? Summarize(s.top1[kStartedOver]) : none;
    row.kept_pairwise = after ? Summarize(s.pairwise[kKept]) : none;
    row.kept_top1 = after ? Summarize(s.top1[kKept]) : none;
    row.evolved_minus_started_over =
        after ? PairedDifference(s.pairwise[kEvolved], s.pairwise[kStartedOver]) : none;
    row.evolved_minus_kept =
        after ? PairedDifference(s.pairwise[kEvolved], s.pairwise[kKept]) : none;
    report.rows.push_back(row);
  };

  // 1. Before the change: the history and the test users' first pairs, under the old schema.
  absl::StatusOr<Server> evolving = start("evolving", "/old.csv", false, old_features);
  if (!evolving.ok()) return evolving.status();
  std::uniform_int_distribution<int> history_pairs(options.min_pairs, options.max_pairs);
  if (absl::Status s = feed(historical, "hist-", history_pairs, 0, 1, {&*evolving}); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          feed(testers, "test-", [&](std::mt19937_64&) { return options.history_pairs; }, 0, 2,
               {&*evolving});
      !s.ok()) {
    return s;
  }
  wait_for_refresh();
  absl::StatusOr<Scores> before = measure(&*evolving, nullptr, nullptr);
  if (!before.ok()) return before.status();
  add_row("before the change (old schema)", -1, *before, false);

  // 2. The change: the directory evolves; a copy keeps the old schema; a new directory starts
  // over with the new one.
  if (absl::Status s = Stop(*evolving->process); !s.ok()) return s;
  std::filesystem::copy(dir + "/evolving", dir + "/kept", std::filesystem::copy_options::recursive);
  absl::StatusOr<Server> evolved = start("evolving", "/new.csv", true, new_features);
  if (!evolved.ok()) return evolved.status();
  for (absl::string_view line : absl::StrSplit(evolved->process->log(), '\n')) {
    if (line.find("--evolve_schema: ") != std::string::npos) {
      report.change = std::string(line.substr(line.find("--evolve_schema: ") + 17));
    }
  }
  absl::StatusOr<Server> kept = start("kept", "/old.csv", false, old_features);
  if (!kept.ok()) return kept.status();
  absl::StatusOr<Server> started_over = start("started-over", "/new.csv", false, new_features);
  if (!started_over.ok()) return started_over.status();
  wait_for_refresh();
  absl::StatusOr<Scores> at_restart = measure(&*evolved, &*started_over, &*kept);
  if (!at_restart.ok()) return at_restart.status();
  add_row("at restart (new schema)", 0, *at_restart, true);

  // 3. Pairs after the change: the historical users' (teaching the population the new
  // schema), then the test users', measured after each step of ks.
  const std::vector<Server*> after = {&*evolved, &*started_over, &*kept};
  if (absl::Status s = feed(
          historical, "hist-", [&](std::mt19937_64&) { return options.historical_pairs_after; },
          1000, 3, after);
      !s.ok()) {
    return s;
  }
  int given = 0;
  for (int k : options.ks) {
    if (k <= given) continue;
    const int more = k - given;
    if (absl::Status s = feed(
            testers, "test-", [&](std::mt19937_64&) { return more; }, 1000 + given,
            4 + static_cast<uint64_t>(k), after);
        !s.ok()) {
      return s;
    }
    given = k;
    wait_for_refresh();
    absl::StatusOr<Scores> scores = measure(&*evolved, &*started_over, &*kept);
    if (!scores.ok()) return scores.status();
    add_row(absl::StrCat("after ", k, k == 1 ? " pair" : " pairs"), k, *scores, true);
  }
  for (Server* s : after) {
    if (absl::Status stopped = Stop(*s->process); !stopped.ok()) return stopped;
  }
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

std::string SchemaChangeMarkdown(const SchemaChangeReport& report) {
  const auto cell = [](const MeanSe& v) {
    return v.n == 0 ? std::string("—") : absl::StrFormat("%.4f ± %.4f", v.mean, v.se);
  };
  const auto signed_cell = [](const MeanSe& v) {
    return v.n == 0 ? std::string("—") : absl::StrFormat("%+.4f ± %.4f", v.mean, v.se);
  };
  std::string out =
      absl::StrFormat("## Schema change: %s on %s\n\nOld schema (%zu): %s. New schema (%zu): %s.\n",
                      report.scenario, report.catalogue, report.old_features.size(),
                      absl::StrJoin(report.old_features, ", "), report.new_features.size(),
                      absl::StrJoin(report.new_features, ", "));
  if (!report.change.empty()) absl::StrAppend(&out, "tailord: ", report.change, "\n");
  absl::StrAppend(
      &out,
      "\nHeld-out pairwise accuracy of the test users (mean ± standard error over users); "
      "differences are paired per user.\n\n"
      "| stage | evolved | started over | old schema kept | population | oracle | evolved − "
      "started over | evolved − kept |\n|---|---|---|---|---|---|---|---|\n");
  for (const SchemaChangeRow& r : report.rows) {
    absl::StrAppend(&out, "| ", r.stage, " | ", cell(r.evolved_pairwise), " | ",
                    cell(r.started_over_pairwise), " | ", cell(r.kept_pairwise), " | ",
                    cell(r.population_pairwise), " | ", cell(r.oracle_pairwise), " | ",
                    signed_cell(r.evolved_minus_started_over), " | ",
                    signed_cell(r.evolved_minus_kept), " |\n");
  }
  absl::StrAppend(&out,
                  "\nTop-1 (the pick is the user's true favourite):\n\n"
                  "| stage | evolved | started over | old schema kept |\n|---|---|---|---|\n");
  for (const SchemaChangeRow& r : report.rows) {
    absl::StrAppend(&out, "| ", r.stage, " | ", cell(r.evolved_top1), " | ",
                    cell(r.started_over_top1), " | ", cell(r.kept_top1), " |\n");
  }
  absl::StrAppend(&out, absl::StrFormat("\n(%.0f s)\n", report.seconds));
  return out;
}

}  // namespace tailor::bench
