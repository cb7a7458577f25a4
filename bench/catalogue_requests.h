// What the benchmarks that replay a catalogue through live tailord servers send: each prompt's
// responses as candidates in the catalogue's raw units (over all its reward models, or a
// subset: a schema that lacks some), feedback events, the matching --schema file, and the
// response order of a ranking.
#ifndef TAILOR_BENCH_CATALOGUE_REQUESTS_H_
#define TAILOR_BENCH_CATALOGUE_REQUESTS_H_

#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/simulator.h"
#include "bench/synthetic_catalogue.h"
#include "tailor/v1/tailor.pb.h"

namespace tailor::bench {

using CandidateList = google::protobuf::RepeatedPtrField<v1::Candidate>;

// The catalogue's features `features` (indices; empty = all, in order).
std::vector<int> FeatureSubset(const Catalogue& catalogue, std::vector<int> features);

// Per prompt: its responses ("r0", "r1", …) with the raw scores of `features`.
std::vector<CandidateList> RawCandidates(const Catalogue& catalogue,
                                         const std::vector<int>& features = {});

v1::FeedbackEvent Event(const std::vector<CandidateList>& raw, const Comparison& c,
                        const std::string& user, const std::string& event_id);

// The tailord --schema for `features` (name, raw mean and sd of each).
absl::Status WriteSchema(const Catalogue& catalogue, const std::string& path,
                         const std::vector<int>& features = {});

// The catalogue's prompts in a seeded order, split into feedback prompts (`train_fraction` of
// them) and held-out prompts; INVALID_ARGUMENT when either would be empty.
struct PromptSplit {
  std::vector<int> train;
  std::vector<int> test;
};
absl::StatusOr<PromptSplit> SplitPrompts(const Catalogue& catalogue, double train_fraction,
                                         std::mt19937_64& rng);

// Response indices of a ranking, best first.
std::vector<int> RankingOf(const v1::RankResponsesResponse& response);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_CATALOGUE_REQUESTS_H_
