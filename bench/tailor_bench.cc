// tailor-bench: Tailor's benchmarks. Subcommands:
//   diversity   PersonalLLM diversity figures of the synthetic catalogue (no server needed)
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "bench/synthetic_catalogue.h"

ABSL_FLAG(double, rho, 0.42, "correlation between reward models in the synthetic catalogue");
ABSL_FLAG(double, alpha, 0.05, "Dirichlet concentration of user weights");
ABSL_FLAG(int32_t, prompts, 1000, "synthetic prompts");
ABSL_FLAG(int32_t, users, 1000, "simulated users");
ABSL_FLAG(uint64_t, seed, 1, "random seed");

namespace {

constexpr char kUsage[] = R"(tailor-bench [flags] COMMAND
commands:
  diversity   share of prompts whose top response wins a majority of users, and share with
              >= 5 distinct winners, for the synthetic catalogue (PersonalLLM reports ~0.5/~0.6))";

int Diversity() {
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  const auto catalogue = tailor::bench::MakeSyntheticCatalogue(absl::GetFlag(FLAGS_prompts), 8, 10,
                                                               absl::GetFlag(FLAGS_rho), rng);
  std::vector<Eigen::VectorXd> users;
  for (int i = 0; i < absl::GetFlag(FLAGS_users); ++i) {
    users.push_back(tailor::bench::SampleDirichlet(10, absl::GetFlag(FLAGS_alpha), rng));
  }
  const auto d = tailor::bench::MeasureDiversity(catalogue, users);
  std::printf(
      "rho=%.2f alpha=%.3f: top response wins a majority for %.2f of prompts; "
      ">=5 distinct winners for %.2f\n",
      absl::GetFlag(FLAGS_rho), absl::GetFlag(FLAGS_alpha), d.majority_share, d.five_winners_share);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string command = args.size() > 1 ? args[1] : "";
  if (command == "diversity") return Diversity();
  std::fprintf(stderr, "%s\n", kUsage);
  return 64;
}
