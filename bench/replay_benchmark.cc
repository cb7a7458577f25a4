#include "bench/replay_benchmark.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "bench/progress.h"
#include "bench/report_format.h"
#include "bench/scratch_dir.h"
#include "bench/tailord_process.h"
#include "client/feedback_csv.h"
#include "client/tailor_client.h"
#include "model/stable_hash.h"

namespace tailor::bench {
namespace {

// One logged user: their events in file order, and the split by prompt.
struct LoggedUser {
  std::string id;
  std::vector<const v1::FeedbackEvent*> events;
  std::vector<const v1::FeedbackEvent*> pool;      // events whose prompt is in the first half
  std::vector<const v1::FeedbackEvent*> held_out;  // the other half's events
};

// The user's distinct prompts in a seeded order, split into two halves of about equal event
// counts: the first half's events form the feedback pool, the second's are predicted.
void SplitByPrompt(LoggedUser& user, uint64_t seed) {
  absl::flat_hash_map<std::string, int> counts;
  for (const v1::FeedbackEvent* e : user.events) ++counts[e->prompt_id()];
  std::vector<std::string> prompts;
  for (const auto& [prompt, count] : counts) prompts.push_back(prompt);
  std::sort(prompts.begin(), prompts.end(), [&](const std::string& a, const std::string& b) {
    return model::StableHash({user.id, a}, seed) < model::StableHash({user.id, b}, seed);
  });
  absl::flat_hash_map<std::string, bool> in_pool;
  int pooled = 0;
  for (const std::string& prompt : prompts) {
    // Fill the pool until it holds half the events, but always leave a prompt to predict.
    const bool pool =
        pooled * 2 < static_cast<int>(user.events.size()) && &prompt != &prompts.back();
    in_pool[prompt] = pool;
    if (pool) pooled += counts[prompt];
  }
  for (const v1::FeedbackEvent* e : user.events) {
    (in_pool[e->prompt_id()] ? user.pool : user.held_out).push_back(e);
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// --tenants: tenant t's token, and which tenant a user is in.
std::string TenantToken(int tenant) { return absl::StrCat("replay-tenant-token-", tenant); }
constexpr uint64_t kTenantSeed = 0x7e4a47;

v1::FeedbackEvent Renamed(const v1::FeedbackEvent& event, const std::string& user) {
  v1::FeedbackEvent out = event;
  out.set_user_id(user);
  out.set_event_id(absl::StrCat(user, "/", event.event_id()));
  return out;
}

// Per-user accumulation of one method's predictions.
struct UserScore {
  double correct = 0;
  double log_loss = 0;
  int pairs = 0;
};

void Score(double p_first, bool first_is_chosen, UserScore& user, ReplayMethod& pooled) {
  const double p_chosen = first_is_chosen ? p_first : 1 - p_first;
  user.correct += p_chosen > 0.5 ? 1.0 : (p_chosen == 0.5 ? 0.5 : 0.0);
  user.log_loss += -std::log(std::clamp(p_chosen, 1e-9, 1.0));
  user.pairs += 1;
  const int bin =
      std::clamp(static_cast<int>(p_first * ReplayMethod::kBins), 0, ReplayMethod::kBins - 1);
  pooled.bin_pairs[static_cast<size_t>(bin)] += 1;
  pooled.bin_predicted[static_cast<size_t>(bin)] += p_first;
  pooled.bin_observed[static_cast<size_t>(bin)] += first_is_chosen ? 1 : 0;
}

void Append(ReplayMethod& into, const ReplayMethod& from) {
  into.accuracy.insert(into.accuracy.end(), from.accuracy.begin(), from.accuracy.end());
  into.log_loss.insert(into.log_loss.end(), from.log_loss.begin(), from.log_loss.end());
  for (int b = 0; b < ReplayMethod::kBins; ++b) {
    into.bin_pairs[static_cast<size_t>(b)] += from.bin_pairs[static_cast<size_t>(b)];
    into.bin_predicted[static_cast<size_t>(b)] += from.bin_predicted[static_cast<size_t>(b)];
    into.bin_observed[static_cast<size_t>(b)] += from.bin_observed[static_cast<size_t>(b)];
  }
}

// P(first preferred) from a ranking of the two candidates "first" and "second".
absl::StatusOr<double> PredictFirst(client::TailorClient& client, const std::string& user,
                                    const v1::Candidate& first, const v1::Candidate& second) {
  v1::RankResponsesRequest request;
  request.set_user_id(user);
  v1::Candidate* a = request.add_candidates();
  *a = first;
  a->set_id("first");
  v1::Candidate* b = request.add_candidates();
  *b = second;
  b->set_id("second");
  absl::StatusOr<v1::RankResponsesResponse> ranked = client.Rank(request);
  if (!ranked.ok()) return ranked.status();
  for (const v1::RankedCandidate& r : ranked->ranked()) {
    if (r.id() == "first") return r.probability_best();
  }
  return absl::InternalError("ranking lost a candidate");
}

}  // namespace

double ReplayMethod::ExpectedCalibrationError() const {
  double total = 0;
  double error = 0;
  for (int b = 0; b < kBins; ++b) {
    const double n = bin_pairs[static_cast<size_t>(b)];
    if (n == 0) continue;
    total += n;
    error += std::abs(bin_predicted[static_cast<size_t>(b)] - bin_observed[static_cast<size_t>(b)]);
  }
  return total > 0 ? error / total : 0;
}

MeanSe Summarize(const std::vector<double>& values) {
  MeanSe out;
  out.n = static_cast<int>(values.size());
  if (out.n == 0) return out;
  out.mean = std::accumulate(values.begin(), values.end(), 0.0) / out.n;
  if (out.n < 2) return out;
  double squares = 0;
  for (double v : values) squares += (v - out.mean) * (v - out.mean);
  out.se = std::sqrt(squares / (out.n - 1) / out.n);
  return out;
}

MeanSe PairedDifference(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> diff(std::min(a.size(), b.size()));
  for (size_t i = 0; i < diff.size(); ++i) diff[i] = a[i] - b[i];
  return Summarize(diff);
}

absl::StatusOr<ReplayReport> RunReplayBenchmark(const ReplayOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  if (options.folds < 2) return absl::InvalidArgumentError("folds: must be at least 2");
  absl::StatusOr<std::string> text = ReadFile(options.events_path);
  if (!text.ok()) return text.status();
  std::vector<v1::FeedbackEvent> events;
  if (absl::Status s = client::ParseFeedbackCsv(*text, options.events_path, events); !s.ok()) {
    return s;
  }
  text->clear();

  // Users in a seeded order; fold f tests every folds-th of them.
  absl::flat_hash_map<std::string, size_t> index;
  std::vector<LoggedUser> users;
  for (const v1::FeedbackEvent& e : events) {
    auto [it, inserted] = index.try_emplace(e.user_id(), users.size());
    if (inserted) users.push_back(LoggedUser{e.user_id(), {}, {}, {}});
    users[it->second].events.push_back(&e);
  }
  std::sort(users.begin(), users.end(),
            [](const LoggedUser& a, const LoggedUser& b) { return a.id < b.id; });
  std::mt19937_64 rng(options.seed);
  std::shuffle(users.begin(), users.end(), rng);
  for (LoggedUser& user : users) SplitByPrompt(user, options.seed);

  ReplayReport report;
  report.events = options.events_path;
  report.tenants = options.tenants;
  report.users = static_cast<int>(users.size());
  report.folds = options.folds;
  report.folds_run =
      options.max_folds > 0 ? std::min(options.max_folds, options.folds) : options.folds;
  for (int k : options.ks) report.rows.push_back(ReplayRow{k, {}, {}, {}});

  absl::StatusOr<std::unique_ptr<ScratchDir>> scratch = ScratchDir::Create();
  if (!scratch.ok()) return scratch.status();
  if (options.tenants > 0) {
    std::ofstream tokens((*scratch)->Sub("tokens"));
    for (int t = 0; t < options.tenants; ++t) tokens << "t" << t << " " << TenantToken(t) << "\n";
    if (!tokens) return absl::InternalError("cannot write the tokens file");
  }
  for (int fold = 0; fold < report.folds_run; ++fold) {
    std::vector<const LoggedUser*> history;
    std::vector<const LoggedUser*> test;
    for (size_t u = 0; u < users.size(); ++u) {
      const bool is_test = static_cast<int>(u % static_cast<size_t>(options.folds)) == fold;
      if (!is_test) {
        history.push_back(&users[u]);
      } else if (users[u].pool.empty() || users[u].held_out.empty()) {
        report.skipped_users += 1;
      } else {
        test.push_back(&users[u]);
      }
    }
    // Knowledge is refitted only when a server starts (--refresh_ms=0): once the history is
    // in, both servers restart on their data and fit it from the historical users alone, so
    // test users never become anyone's neighbours or part of the population.
    auto start_server = [&](const std::string& name, bool neighbours) {
      std::vector<std::string> args = {
          "--data_dir=" + (*scratch)->Sub(absl::StrCat(name, "-", fold)),
          "--schema=" + options.schema_path, "--refresh_ms=0", "--shutdown_grace_ms=200",
          absl::StrCat("--neighbour_cold_start=", neighbours)};
      if (neighbours) {
        args.insert(args.end(), options.tailord_flags.begin(), options.tailord_flags.end());
      }
      if (options.tenants > 0) args.push_back("--auth_tokens_file=" + (*scratch)->Sub("tokens"));
      return std::make_unique<TailordProcess>(options.tailord_binary, args);
    };
    auto start_both = [&](std::unique_ptr<TailordProcess>& tailor,
                          std::unique_ptr<TailordProcess>& own) -> absl::Status {
      tailor = start_server("tailor", true);
      own = start_server("own", false);
      if (!tailor->WaitUntilServing(300000) || !own->WaitUntilServing(300000)) {
        return absl::UnavailableError("tailord did not start: " + tailor->log() + own->log());
      }
      return absl::OkStatus();
    };
    auto stop = [](std::unique_ptr<TailordProcess>& process) -> absl::Status {
      process->Signal(SIGTERM);
      const std::optional<int> code = process->WaitForExit();
      if (code != 0) {
        return absl::InternalError(absl::StrCat("tailord did not stop cleanly: ", process->log()));
      }
      process.reset();
      return absl::OkStatus();
    };
    std::unique_ptr<TailordProcess> tailor;
    std::unique_ptr<TailordProcess> own;
    if (absl::Status s = start_both(tailor, own); !s.ok()) return s;
    // A client per tenant (one without tenants).
    using Clients = std::vector<std::unique_ptr<client::TailorClient>>;
    auto client_for = [&](const TailordProcess& process) {
      Clients clients;
      for (int t = 0; t < std::max(1, options.tenants); ++t) {
        client::ClientOptions o;
        o.target = process.target();
        o.deadline = absl::Seconds(60);
        if (options.tenants > 0) o.bearer_token = TenantToken(t);
        clients.push_back(std::make_unique<client::TailorClient>(o));
      }
      return clients;
    };
    auto tenant_of = [&](const std::string& user) {
      return options.tenants > 0 ? static_cast<size_t>(model::StableHash({user}, kTenantSeed) %
                                                       static_cast<uint64_t>(options.tenants))
                                 : size_t{0};
    };

    // 1. The historical users' logs stream into both servers.
    Progress ingest(absl::StrCat("fold ", fold + 1, "/", report.folds_run, ": history"),
                    static_cast<int64_t>(history.size()), options.progress);
    absl::Status streamed = Parallel(options.threads, [&](int t) -> absl::Status {
      Clients tc = client_for(*tailor);
      Clients oc = client_for(*own);
      std::vector<std::vector<v1::FeedbackEvent>> batches(tc.size());  // per tenant
      for (size_t u = static_cast<size_t>(t); u < history.size();
           u += static_cast<size_t>(options.threads)) {
        std::vector<v1::FeedbackEvent>& batch = batches[tenant_of(history[u]->id)];
        for (const v1::FeedbackEvent* e : history[u]->events) batch.push_back(*e);
        const bool last = u + static_cast<size_t>(options.threads) >= history.size();
        for (size_t tenant = 0; tenant < batches.size(); ++tenant) {
          if (batches[tenant].empty() || (batches[tenant].size() < 2000 && !last)) continue;
          for (auto* c : {tc[tenant].get(), oc[tenant].get()}) {
            auto acks = c->StreamFeedback(batches[tenant]);
            if (!acks.ok()) return acks.status();
          }
          batches[tenant].clear();
        }
        ingest.Add();
      }
      return absl::OkStatus();
    });
    if (!streamed.ok()) return streamed;
    for (auto* process : {&tailor, &own}) {
      if (absl::Status s = stop(*process); !s.ok()) return s;
    }
    if (absl::Status s = start_both(tailor, own); !s.ok()) return s;

    // 2. Each test user, once per k under a fresh id: k pool events, then every held-out pair.
    Progress testing(absl::StrCat("fold ", fold + 1, "/", report.folds_run, ": test users"),
                     static_cast<int64_t>(test.size() * options.ks.size()), options.progress);
    std::vector<ReplayRow> rows(report.rows.size());
    std::mutex rows_mu;
    absl::Status measured = Parallel(options.threads, [&](int t) -> absl::Status {
      Clients tailor_clients = client_for(*tailor);
      Clients own_clients = client_for(*own);
      for (size_t u = static_cast<size_t>(t); u < test.size();
           u += static_cast<size_t>(options.threads)) {
        const LoggedUser& user = *test[u];
        client::TailorClient* tailor_client = tailor_clients[tenant_of(user.id)].get();
        client::TailorClient* own_client = own_clients[tenant_of(user.id)].get();
        for (size_t r = 0; r < options.ks.size(); ++r) {
          const int k = options.ks[r];
          if (static_cast<int>(user.pool.size()) < k) {
            testing.Add();
            continue;  // not enough of this user's feedback to give k pairs
          }
          const std::string id = absl::StrCat("replay-k", k, "-", user.id);
          std::vector<v1::FeedbackEvent> given;
          for (int i = 0; i < k; ++i)
            given.push_back(Renamed(*user.pool[static_cast<size_t>(i)], id));
          for (auto* c : {tailor_client, own_client}) {
            if (given.empty()) break;
            auto acks = c->StreamFeedback(given);
            if (!acks.ok()) return acks.status();
          }
          ReplayRow local;
          UserScore tailor_score, own_score, population_score;
          for (const v1::FeedbackEvent* e : user.held_out) {
            // Which side comes first is a seeded coin flip, so calibration sees both outcomes.
            const bool first_is_chosen = model::StableHash({e->event_id()}, options.seed) % 2 == 0;
            const v1::Candidate& first = first_is_chosen ? e->chosen() : e->rejected();
            const v1::Candidate& second = first_is_chosen ? e->rejected() : e->chosen();
            for (auto [client, user_id, score, pooled] :
                 {std::tuple{tailor_client, id, &tailor_score, &local.tailor},
                  std::tuple{own_client, id, &own_score, &local.own},
                  std::tuple{tailor_client, "replay-never-seen-" + user.id, &population_score,
                             &local.population}}) {
              absl::StatusOr<double> p = PredictFirst(*client, user_id, first, second);
              if (!p.ok()) return p.status();
              Score(*p, first_is_chosen, *score, *pooled);
            }
          }
          for (auto [score, method] :
               {std::pair{&tailor_score, &local.tailor}, std::pair{&own_score, &local.own},
                std::pair{&population_score, &local.population}}) {
            method->accuracy.push_back(score->correct / score->pairs);
            method->log_loss.push_back(score->log_loss / score->pairs);
          }
          {
            std::lock_guard<std::mutex> lock(rows_mu);
            Append(rows[r].tailor, local.tailor);
            Append(rows[r].own, local.own);
            Append(rows[r].population, local.population);
            if (r == 0) report.held_out_pairs += static_cast<int>(user.held_out.size());
          }
          testing.Add();
        }
      }
      return absl::OkStatus();
    });
    if (!measured.ok()) return measured;
    Clients tc = client_for(*tailor);  // tenant 0's knowledge is described
    Clients oc = client_for(*own);
    for (auto [client, name] :
         {std::pair{tc[0].get(), "Tailor"}, std::pair{oc[0].get(), "own only"}}) {
      absl::StatusOr<v1::ServerInfo> info = client->GetServerInfo();
      if (!info.ok()) return info.status();
      report.knowledge.push_back(
          absl::StrCat("fold ", fold + 1, ", ", name, ": ", DescribeKnowledge(info->knowledge())));
    }
    for (size_t r = 0; r < rows.size(); ++r) {
      Append(report.rows[r].tailor, rows[r].tailor);
      Append(report.rows[r].own, rows[r].own);
      Append(report.rows[r].population, rows[r].population);
    }
  }
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

std::string ReplayMarkdown(const ReplayReport& r) {
  std::string out = absl::StrFormat(
      "%s: %d users, %d-fold over users (%d fold%s run), %d held-out pairs per k (prompts the "
      "user gave no feedback on), %d test users skipped (fewer than two prompts)\n\n",
      r.events, r.users, r.folds, r.folds_run, r.folds_run == 1 ? "" : "s", r.held_out_pairs,
      r.skipped_users);
  if (r.tenants > 0) {
    absl::StrAppend(&out, "Users split by id hash over ", r.tenants,
                    " tenants (token auth); the Tailor server's flags say whether they share "
                    "knowledge.\n\n");
  }
  absl::StrAppend(&out,
                  "Held-out pairwise accuracy, mean over test users ± standard error; differences "
                  "are paired per user (Tailor − baseline)\n\n"
                  "| k | users | population | own posterior only | Tailor | Tailor − population | "
                  "Tailor − own only |\n|---:|---:|---|---|---|---|---|\n");
  auto cell = [](const MeanSe& m) { return absl::StrFormat("%.3f ± %.3f", m.mean, m.se); };
  auto diff = [](const MeanSe& m) { return absl::StrFormat("%+.4f ± %.4f", m.mean, m.se); };
  for (const ReplayRow& row : r.rows) {
    absl::StrAppendFormat(&out, "| %d | %d | %s | %s | %s | %s | %s |\n", row.k,
                          static_cast<int>(row.tailor.accuracy.size()),
                          cell(Summarize(row.population.accuracy)),
                          cell(Summarize(row.own.accuracy)), cell(Summarize(row.tailor.accuracy)),
                          diff(PairedDifference(row.tailor.accuracy, row.population.accuracy)),
                          diff(PairedDifference(row.tailor.accuracy, row.own.accuracy)));
  }
  absl::StrAppend(&out,
                  "\nHeld-out log loss (nats per pair; lower is better)\n\n"
                  "| k | population | own posterior only | Tailor | Tailor − population | Tailor "
                  "− own only |\n|---:|---|---|---|---|---|\n");
  for (const ReplayRow& row : r.rows) {
    absl::StrAppendFormat(&out, "| %d | %s | %s | %s | %s | %s |\n", row.k,
                          cell(Summarize(row.population.log_loss)),
                          cell(Summarize(row.own.log_loss)), cell(Summarize(row.tailor.log_loss)),
                          diff(PairedDifference(row.tailor.log_loss, row.population.log_loss)),
                          diff(PairedDifference(row.tailor.log_loss, row.own.log_loss)));
  }
  absl::StrAppend(&out,
                  "\nExpected calibration error of P(first preferred) (10 equal-width bins)\n\n"
                  "| k | population | own posterior only | Tailor |\n|---:|---|---|---|\n");
  for (const ReplayRow& row : r.rows) {
    absl::StrAppendFormat(
        &out, "| %d | %.4f | %.4f | %.4f |\n", row.k, row.population.ExpectedCalibrationError(),
        row.own.ExpectedCalibrationError(), row.tailor.ExpectedCalibrationError());
  }
  if (!r.rows.empty()) {
    ReplayMethod all;
    for (const ReplayRow& row : r.rows) Append(all, row.tailor);
    absl::StrAppend(&out,
                    "\nReliability of Tailor's P(first preferred), all k pooled\n\n"
                    "| predicted | pairs | mean predicted | observed |\n|---|---:|---:|---:|\n");
    for (int b = 0; b < ReplayMethod::kBins; ++b) {
      const double n = all.bin_pairs[static_cast<size_t>(b)];
      if (n == 0) continue;
      absl::StrAppendFormat(&out, "| %.1f–%.1f | %.0f | %.3f | %.3f |\n",
                            static_cast<double>(b) / ReplayMethod::kBins,
                            static_cast<double>(b + 1) / ReplayMethod::kBins, n,
                            all.bin_predicted[static_cast<size_t>(b)] / n,
                            all.bin_observed[static_cast<size_t>(b)] / n);
    }
  }
  absl::StrAppend(&out, "\nWhat each fold's Tailor server fitted:\n\n");
  for (size_t f = 0; f < r.knowledge.size(); ++f) {
    absl::StrAppendFormat(&out, "- %s\n", r.knowledge[f]);
  }
  absl::StrAppendFormat(&out, "\n(%.0f s)\n", r.seconds);
  return out;
}

std::string ReplayJson(const ReplayReport& r) {
  auto method = [](const ReplayMethod& m) {
    const MeanSe acc = Summarize(m.accuracy);
    const MeanSe loss = Summarize(m.log_loss);
    return absl::StrFormat(
        R"({"accuracy": %.5f, "accuracy_se": %.5f, "log_loss": %.5f, "log_loss_se": %.5f, "ece": %.5f})",
        acc.mean, acc.se, loss.mean, loss.se, m.ExpectedCalibrationError());
  };
  auto diff = [](const MeanSe& m) {
    return absl::StrFormat(R"({"mean": %.5f, "se": %.5f})", m.mean, m.se);
  };
  std::string out = absl::StrFormat(
      R"({"events": "%s", "users": %d, "folds": %d, "folds_run": %d, "skipped_users": %d, "seconds": %.1f, "rows": [)",
      r.events, r.users, r.folds, r.folds_run, r.skipped_users, r.seconds);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const ReplayRow& row = r.rows[i];
    absl::StrAppendFormat(
        &out,
        R"(%s{"k": %d, "users": %d, "tailor": %s, "own_only": %s, "population": %s, "accuracy_vs_population": %s, "accuracy_vs_own": %s, "log_loss_vs_population": %s, "log_loss_vs_own": %s})",
        i == 0 ? "" : ", ", row.k, static_cast<int>(row.tailor.accuracy.size()), method(row.tailor),
        method(row.own), method(row.population),
        diff(PairedDifference(row.tailor.accuracy, row.population.accuracy)),
        diff(PairedDifference(row.tailor.accuracy, row.own.accuracy)),
        diff(PairedDifference(row.tailor.log_loss, row.population.log_loss)),
        diff(PairedDifference(row.tailor.log_loss, row.own.log_loss)));
  }
  return out + "]}\n";
}

std::string ReplaySvg(const ReplayReport& r) {
  const std::vector<std::pair<PlotSeries, ReplayMethod ReplayRow::*>> lines = {
      {{"Tailor", "#2ca02c"}, &ReplayRow::tailor},
      {{"own posterior only", "#ff7f0e"}, &ReplayRow::own},
      {{"population only", "#7f7f7f"}, &ReplayRow::population}};
  std::vector<int> ks;
  for (const ReplayRow& row : r.rows) ks.push_back(row.k);
  std::vector<PlotSeries> series;
  PlotPanel accuracy{"held-out pairwise accuracy", {}, std::nullopt, 3};
  PlotPanel log_loss{"held-out log loss", {}, std::nullopt, 3};
  for (const auto& [line, field] : lines) {
    series.push_back(line);
    accuracy.values.emplace_back();
    log_loss.values.emplace_back();
    for (const ReplayRow& row : r.rows) {
      accuracy.values.back().push_back(Summarize((row.*field).accuracy).mean);
      log_loss.values.back().push_back(Summarize((row.*field).log_loss).mean);
    }
  }
  return LinePanelsSvg(ks, series, {accuracy, log_loss});
}

}  // namespace tailor::bench
