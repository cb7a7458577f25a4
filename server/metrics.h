// Metrics: tailord's Prometheus metrics and the HTTP exposer serving /metrics on its own port.
// RPC and feedback counters are recorded as calls finish; engine, RocksDB and process gauges
// are read at scrape time. Label sets are bounded (method, status code, outcome, knowledge
// source, experience bucket): no user id or other unbounded value ever becomes a label.
#ifndef TAILOR_SERVER_METRICS_H_
#define TAILOR_SERVER_METRICS_H_

#include <array>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cluster/shard.h"
#include "engine/preference_engine.h"
#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "tailor/v1/tailor.pb.h"

namespace tailor::server {

class ClusterCollector;
class EngineCollector;
class WorkQueue;

// Why a call's routing header was refused (INVALID_ARGUMENT, counted apart from bad input).
enum class RoutingRefusal { kMissing, kMismatch, kMalformed };

enum class Rpc {
  kRankResponses,
  kSubmitFeedback,
  kStreamFeedback,
  kSuggestComparison,
  kGetUser,
  kExportUser,
  kDeleteUser,
  kGetServerInfo,
  kCreateCheckpoint,
};
inline constexpr int kRpcCount = 9;

// Experience buckets of the live learning curve: how many pairs the user had given before.
inline constexpr int kExperienceBuckets = 6;
int ExperienceBucket(uint64_t pairs_before);
const char* ExperienceLabel(int bucket);

class Metrics {
 public:
  // Starts serving /metrics on `listen` (host:port; port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(const std::string& listen);
  ~Metrics();

  int port() const { return port_; }

  // A finished call: its status, and for unary calls its latency (a stream's duration says
  // nothing about the service; its events' ack latencies do).
  void RecordRpc(Rpc rpc, grpc::StatusCode code, absl::Duration latency);
  // A streamed feedback event: from being read off the stream to its durable outcome.
  void RecordAckLatency(absl::Duration latency);
  void RecordRoutingRefusal(RoutingRefusal reason);
  // Calls and streamed events refused RESOURCE_EXHAUSTED for the tenant's quota.
  void RecordQuotaRefusal(const std::string& tenant, uint64_t requests);
  // Outcome counts, and for applied events the progressive-validation counters.
  void RecordFeedback(const v1::FeedbackAck& ack);
  void RecordRanking(v1::KnowledgeSource source);
  // Each source's prediction of an applied event (engine::PredictionSource order), made
  // before learning from it: live log loss and accuracy per source and experience bucket.
  void RecordSources(uint64_t pairs_before,
                     const std::array<double, engine::kPredictionSources>& p_chosen);
  void StreamOpened() { open_streams_->Increment(); }
  // While the server loads its users (tailor_starting = 1).
  void SetStarting(bool starting) { starting_->Set(starting ? 1 : 0); }
  void StreamClosed() { open_streams_->Decrement(); }

  // Exposes the engine's, the store's and the process's gauges, read at each scrape.
  // Unwatch() before the engine goes away.
  void Watch(engine::PreferenceEngine& engine, const WorkQueue& queue);
  void Unwatch();
  // Cluster mode: the shard's partitions, lag and log appends, read at each scrape; and the
  // calls forwarded to other shards.
  void WatchCluster(const cluster::ClusterShard& shard);
  void UnwatchCluster();
  void RecordForwarded(Rpc rpc);

 private:
  Metrics();

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<EngineCollector> engine_collector_;
  std::shared_ptr<ClusterCollector> cluster_collector_;
  std::array<prometheus::Counter*, kRpcCount> forwarded_{};
  int port_ = 0;

  std::array<std::array<prometheus::Counter*, 17>, kRpcCount> requests_{};
  std::array<prometheus::Histogram*, kRpcCount> latency_{};  // null for StreamFeedback
  prometheus::Histogram* ack_latency_ = nullptr;
  std::array<prometheus::Counter*, 3> routing_refusals_{};             // RoutingRefusal order
  prometheus::Family<prometheus::Counter>* quota_refusals_ = nullptr;  // by tenant
  std::array<prometheus::Counter*, 3> feedback_outcomes_{};  // applied, duplicate, rejected
  std::array<prometheus::Counter*, 3> rankings_{};           // personal, neighbours, population
  prometheus::Gauge* starting_ = nullptr;
  std::array<prometheus::Counter*, kExperienceBuckets> predictions_{};
  std::array<prometheus::Counter*, kExperienceBuckets> predictions_correct_{};
  std::array<prometheus::Counter*, kExperienceBuckets> prediction_log_loss_{};
  // [source][bucket]
  std::array<std::array<prometheus::Counter*, kExperienceBuckets>, engine::kPredictionSources>
      source_log_loss_{};
  std::array<std::array<prometheus::Counter*, kExperienceBuckets>, engine::kPredictionSources>
      source_correct_{};
  prometheus::Gauge* open_streams_ = nullptr;
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_METRICS_H_
