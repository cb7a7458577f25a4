#include "bench/catalogue_requests.h"

#include <algorithm>
#include <fstream>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tailor::bench {

std::vector<int> FeatureSubset(const Catalogue& catalogue, std::vector<int> features) {
  if (features.empty()) {
    features.resize(static_cast<size_t>(catalogue.features()));
    std::iota(features.begin(), features.end(), 0);
  }
  return features;
}

std::vector<CandidateList> RawCandidates(const Catalogue& catalogue,
                                         const std::vector<int>& features) {
  const std::vector<int> subset = FeatureSubset(catalogue, features);
  std::vector<CandidateList> out(catalogue.scores.size());
  for (size_t p = 0; p < catalogue.scores.size(); ++p) {
    const Eigen::MatrixXd& z = catalogue.scores[p];
    for (Eigen::Index r = 0; r < z.rows(); ++r) {
      v1::Candidate* c = out[p].Add();
      c->set_id(absl::StrCat("r", r));
      for (int b : subset) {
        c->add_features(static_cast<float>(catalogue.raw_mean[b] + catalogue.raw_sd[b] * z(r, b)));
      }
    }
  }
  return out;
}

v1::FeedbackEvent Event(const std::vector<CandidateList>& raw, const Comparison& c,
                        const std::string& user, const std::string& event_id) {
  v1::FeedbackEvent event;
  event.set_event_id(event_id);
  event.set_user_id(user);
  event.set_prompt_id(absl::StrCat("p", c.prompt));
  *event.mutable_chosen() = raw[static_cast<size_t>(c.prompt)][c.chosen];
  *event.mutable_rejected() = raw[static_cast<size_t>(c.prompt)][c.rejected];
  return event;
}

absl::Status WriteSchema(const Catalogue& catalogue, const std::string& path,
                         const std::vector<int>& features) {
  std::ofstream out(path);
  out << "name,mean,sd\n";
  for (int b : FeatureSubset(catalogue, features)) {
    out << absl::StrFormat("%s,%.17g,%.17g\n", catalogue.feature_names[static_cast<size_t>(b)],
                           catalogue.raw_mean[b], catalogue.raw_sd[b]);
  }
  return out ? absl::OkStatus() : absl::InternalError("cannot write " + path);
}

absl::StatusOr<PromptSplit> SplitPrompts(const Catalogue& catalogue, double train_fraction,
                                         std::mt19937_64& rng) {
  std::vector<int> prompts(catalogue.scores.size());
  std::iota(prompts.begin(), prompts.end(), 0);
  std::shuffle(prompts.begin(), prompts.end(), rng);
  const auto split = static_cast<size_t>(train_fraction * static_cast<double>(prompts.size()));
  PromptSplit out{std::vector<int>(prompts.begin(), prompts.begin() + static_cast<long>(split)),
                  std::vector<int>(prompts.begin() + static_cast<long>(split), prompts.end())};
  if (out.train.empty() || out.test.empty()) return absl::InvalidArgumentError("too few prompts");
  return out;
}

std::vector<int> RankingOf(const v1::RankResponsesResponse& response) {
  std::vector<int> order;
  for (const auto& r : response.ranked()) order.push_back(std::stoi(r.id().substr(1)));
  return order;
}

}  // namespace tailor::bench
