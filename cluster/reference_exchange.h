// ReferenceExchange: cold start across shards. Each shard publishes a sample of its
// established users (opaque ids and posterior means: no user id) to a JetStream stream, and borrows
// every other shard's latest sample as extra cold-start neighbours
// (engine::PreferenceEngine::SetExternalReferences). So the neighbour reference set does not
// shrink to 1/N of the users as shards multiply. The sample also carries the shard's own
// population fit, which the others pool with theirs (SetExternalPopulations), so neither
// does the population the prior is fitted from; and the users its last trust fit held out
// (opaque ids and their pairs as feature differences: no user id, prompt or response id), with
// its population fitted without them, so that trust is fitted across shards too
// (SetExternalCalibration). Everything lent is tagged with its knowledge group and used only
// by that group.
//
// A shard's sample is its subject's newest generation: the first chunk of a generation rolls
// the subject up (JetStream deletes the shard's older messages), and readers take only
// generations whose chunks are all there.
#ifndef TAILOR_CLUSTER_REFERENCE_EXCHANGE_H_
#define TAILOR_CLUSTER_REFERENCE_EXCHANGE_H_

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/knowledge.h"
#include "engine/preference_engine.h"
#include "model/population.h"

namespace tailor::cluster {

class NatsConnection;

struct ExchangeOptions {
  std::string stream = "TAILOR_REFERENCE";
  std::string subject_prefix = "tailor.reference";
  int replicas = 3;
  // Largest message: 512 KiB of rows, under NATS's default 1 MiB payload limit.
  int chunk_bytes = 512 << 10;
};

class ReferenceExchange {
 public:
  static absl::StatusOr<std::unique_ptr<ReferenceExchange>> Open(
      const ExchangeOptions& options, std::shared_ptr<NatsConnection> nats);

  // Replaces `shard`'s sample with `rows` (all of one dimension), its population fits (one
  // per knowledge group) and its calibration users (of the same dimension).
  absl::Status Publish(const std::string& shard, uint64_t generation,
                       const std::vector<engine::ExternalReference>& rows,
                       const std::vector<engine::GroupPopulation>& populations,
                       const std::vector<engine::ExternalCalibrationUser>& calibration = {});
  struct Samples {
    std::vector<engine::ExternalReference> references;
    // One per shard and knowledge group that has fitted one.
    std::vector<engine::GroupPopulation> populations;
    std::vector<engine::ExternalCalibrationUser> calibration;
  };
  // The newest complete sample of each shard in `shards` other than `self`.
  absl::StatusOr<Samples> Read(const std::string& self, const std::set<std::string>& shards);
  // Removes `shard`'s sample (a shard leaving the cluster).
  absl::Status Forget(const std::string& shard);

 private:
  ReferenceExchange(ExchangeOptions options, std::shared_ptr<NatsConnection> nats)
      : options_(std::move(options)), nats_(std::move(nats)) {}
  std::string SubjectOf(const std::string& shard) const;

  const ExchangeOptions options_;
  std::shared_ptr<NatsConnection> nats_;
};

}  // namespace tailor::cluster

#endif  // TAILOR_CLUSTER_REFERENCE_EXCHANGE_H_
