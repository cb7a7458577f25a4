#include "cluster/reference_exchange.h"

#include <nats/nats.h>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cluster/nats_connection.h"
#include "model/stable_hash.h"
#include "tailor/cluster/v1/cluster.pb.h"

namespace tailor::cluster {
namespace {

constexpr uint64_t kSubjectSeed = 0x5eb1ec7;

template <typename Fit>
void WritePopulation(const model::Population& population, Fit& fit) {
  for (double m : population.mean) fit.add_mean(m);
  for (Eigen::Index i = 0; i < population.cov.size(); ++i) {
    fit.add_covariance(population.cov.data()[i]);
  }
  fit.set_users(population.users);
}

// A fit as read, or nothing when it is empty or malformed.
std::optional<model::Population> ReadPopulation(
    const google::protobuf::RepeatedField<double>& mean,
    const google::protobuf::RepeatedField<double>& covariance, uint64_t users) {
  const int n = mean.size();
  if (users == 0 || n == 0 || covariance.size() != n * n) return std::nullopt;
  model::Population population;
  population.mean = Eigen::Map<const Eigen::VectorXd>(mean.data(), n);
  population.cov = Eigen::Map<const Eigen::MatrixXd>(covariance.data(), n, n);
  population.users = users;
  return population;
}

}  // namespace

std::string ReferenceExchange::SubjectOf(const std::string& shard) const {
  // Shard names are free text; a subject token may not be.
  return absl::StrCat(options_.subject_prefix, ".",
                      absl::Hex(model::StableHash({shard}, kSubjectSeed), absl::kZeroPad16));
}

absl::StatusOr<std::unique_ptr<ReferenceExchange>> ReferenceExchange::Open(
    const ExchangeOptions& options, std::shared_ptr<NatsConnection> nats) {
  jsErrCode code = static_cast<jsErrCode>(0);
  jsStreamInfo* info = nullptr;
  natsStatus s = js_GetStreamInfo(&info, nats->js(), options.stream.c_str(), nullptr, &code);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(info);
  } else if (s == NATS_NOT_FOUND) {
    const std::string wildcard = absl::StrCat(options.subject_prefix, ".*");
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = options.stream.c_str();
    config.Description = "Tailor: each shard's sample of established users, for cold start";
    const char* subjects[] = {wildcard.c_str()};
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = options.replicas;
    config.AllowRollup = true;
    s = js_AddStream(nullptr, nats->js(), &config, nullptr, &code);
    if (s != NATS_OK) return FromNats(s, code, "create stream " + options.stream);
  } else {
    return FromNats(s, code, "stream info of " + options.stream);
  }
  return std::unique_ptr<ReferenceExchange>(new ReferenceExchange(options, std::move(nats)));
}

absl::Status ReferenceExchange::Publish(
    const std::string& shard, uint64_t generation,
    const std::vector<engine::ExternalReference>& rows,
    const std::vector<engine::GroupPopulation>& populations,
    const std::vector<engine::ExternalCalibrationUser>& calibration) {
  int dimension = rows.empty() ? 0 : static_cast<int>(rows.front().mean.size());
  if (dimension == 0 && !calibration.empty() && !calibration.front().user.feedback.empty()) {
    dimension = static_cast<int>(calibration.front().user.feedback.front().size());
  }
  const bool grouped = std::any_of(rows.begin(), rows.end(), [](const auto& row) {
    return row.group != engine::kAllUsersGroup;
  });
  // Id, floats, and a group name of at most 64 bytes.
  const size_t row_bytes = 48 + 4 * static_cast<size_t>(dimension) + (grouped ? 66 : 0);
  const size_t chunk_bytes = static_cast<size_t>(options_.chunk_bytes);
  const size_t per_chunk = std::max<size_t>(1, chunk_bytes / row_bytes);
  std::vector<v1::ReferenceChunk> chunks(
      std::max<size_t>(1, (rows.size() + per_chunk - 1) / per_chunk));
  for (size_t c = 0; c < chunks.size(); ++c) {
    v1::ReferenceChunk& chunk = chunks[c];
    for (size_t i = c * per_chunk; i < std::min(rows.size(), (c + 1) * per_chunk); ++i) {
      chunk.add_ids(rows[i].id);
      if (grouped) chunk.add_groups(rows[i].group);
      for (Eigen::Index f = 0; f < rows[i].mean.size(); ++f) {
        chunk.add_means(static_cast<float>(rows[i].mean[f]));
      }
    }
  }
  // Calibration users follow in chunks of their own, whole users per chunk.
  size_t filled = chunk_bytes;  // bytes in the last calibration chunk: none open yet
  for (const engine::ExternalCalibrationUser& user : calibration) {
    const size_t pairs = user.user.feedback.size() + user.user.held_out.size();
    const size_t bytes = 48 + 66 + 4 * static_cast<size_t>(dimension) * pairs;
    if (filled + bytes > chunk_bytes) {
      chunks.emplace_back();
      filled = 0;
    }
    filled += bytes;
    v1::CalibrationUser* out = chunks.back().add_calibration_users();
    out->set_id(user.id);
    out->set_group(user.group);
    out->set_feedback_pairs(static_cast<uint32_t>(user.user.feedback.size()));
    out->set_held_out_pairs(static_cast<uint32_t>(user.user.held_out.size()));
    for (const auto* part : {&user.user.feedback, &user.user.held_out}) {
      for (const Eigen::VectorXd& pair : *part) {
        for (Eigen::Index f = 0; f < pair.size(); ++f) {
          out->add_pairs(static_cast<float>(pair[f]));
        }
      }
    }
  }
  // The first chunk carries the population fits.
  for (const engine::GroupPopulation& fit : populations) {
    if (fit.population.users == 0) continue;
    if (fit.group == engine::kAllUsersGroup) {
      for (double m : fit.population.mean) chunks[0].add_population_mean(m);
      for (Eigen::Index i = 0; i < fit.population.cov.size(); ++i) {
        chunks[0].add_population_covariance(fit.population.cov.data()[i]);
      }
      chunks[0].set_population_users(fit.population.users);
    } else {
      v1::GroupPopulationFit* group = chunks[0].add_group_populations();
      group->set_group(fit.group);
      WritePopulation(fit.population, *group);
    }
    if (fit.calibration.users > 0) {
      v1::GroupPopulationFit* without = chunks[0].add_calibration_populations();
      without->set_group(fit.group);
      WritePopulation(fit.calibration, *without);
    }
  }
  const std::string subject = SubjectOf(shard);
  for (size_t c = 0; c < chunks.size(); ++c) {
    v1::ReferenceChunk& chunk = chunks[c];
    chunk.set_shard(shard);
    chunk.set_generation(generation);
    chunk.set_chunk(static_cast<uint32_t>(c));
    chunk.set_chunks(static_cast<uint32_t>(chunks.size()));
    chunk.set_dimension(static_cast<uint32_t>(dimension));
    const std::string payload = chunk.SerializeAsString();
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, payload.data(),
                                  static_cast<int>(payload.size()));
    // The first chunk replaces the shard's older generations.
    if (s == NATS_OK && c == 0) s = natsMsgHeader_Set(msg, JSMsgRollup, JSMsgRollupSubject);
    jsErrCode code = static_cast<jsErrCode>(0);
    jsPubAck* ack = nullptr;
    if (s == NATS_OK) s = js_PublishMsg(&ack, nats_->js(), msg, nullptr, &code);
    natsMsg_Destroy(msg);
    if (ack != nullptr) jsPubAck_Destroy(ack);
    if (s != NATS_OK) return FromNats(s, code, "publish the reference sample");
  }
  return absl::OkStatus();
}

absl::StatusOr<ReferenceExchange::Samples> ReferenceExchange::Read(
    const std::string& self, const std::set<std::string>& shards) {
  jsErrCode code = static_cast<jsErrCode>(0);
  jsStreamInfo* info = nullptr;
  natsStatus s = js_GetStreamInfo(&info, nats_->js(), options_.stream.c_str(), nullptr, &code);
  if (s != NATS_OK) return FromNats(s, code, "stream info of " + options_.stream);
  const uint64_t end = info->State.LastSeq;
  const uint64_t messages = info->State.Msgs;
  jsStreamInfo_Destroy(info);
  Samples out;
  if (messages == 0) return out;

  // shard -> generation -> chunks received
  std::map<std::string, std::map<uint64_t, std::vector<v1::ReferenceChunk>>> received;
  const absl::Status read = nats_->Read(
      options_.stream, absl::StrCat(options_.subject_prefix, ".*"), 0, end,
      [&](uint64_t, absl::string_view payload) {
        v1::ReferenceChunk chunk;
        if (chunk.ParseFromArray(payload.data(), static_cast<int>(payload.size())) &&
            chunk.shard() != self && shards.contains(chunk.shard()) &&
            chunk.means_size() == chunk.ids_size() * static_cast<int>(chunk.dimension()) &&
            (chunk.groups_size() == 0 || chunk.groups_size() == chunk.ids_size())) {
          received[chunk.shard()][chunk.generation()].push_back(std::move(chunk));
        }
        return true;
      });
  if (!read.ok()) return read;
  for (auto& [shard, generations] : received) {
    // The newest generation whose chunks are all there.
    for (auto it = generations.rbegin(); it != generations.rend(); ++it) {
      const std::vector<v1::ReferenceChunk>& chunks = it->second;
      if (chunks.empty() || chunks.size() != chunks.front().chunks()) continue;
      for (const v1::ReferenceChunk& chunk : chunks) {
        const int d = static_cast<int>(chunk.dimension());
        const size_t first_fit = out.populations.size();
        if (std::optional<model::Population> fit = ReadPopulation(
                chunk.population_mean(), chunk.population_covariance(), chunk.population_users())) {
          out.populations.push_back({engine::kAllUsersGroup, *std::move(fit), {}});
        }
        for (const v1::GroupPopulationFit& group : chunk.group_populations()) {
          if (std::optional<model::Population> fit =
                  ReadPopulation(group.mean(), group.covariance(), group.users())) {
            out.populations.push_back({group.group(), *std::move(fit), {}});
          }
        }
        for (const v1::GroupPopulationFit& group : chunk.calibration_populations()) {
          std::optional<model::Population> fit =
              ReadPopulation(group.mean(), group.covariance(), group.users());
          for (size_t i = first_fit; fit.has_value() && i < out.populations.size(); ++i) {
            if (out.populations[i].group == group.group()) out.populations[i].calibration = *fit;
          }
        }
        for (const v1::CalibrationUser& user : chunk.calibration_users()) {
          const size_t feedback = user.feedback_pairs();
          const size_t pairs = feedback + user.held_out_pairs();
          if (d == 0 || static_cast<size_t>(user.pairs_size()) != pairs * static_cast<size_t>(d)) {
            continue;  // malformed: not read
          }
          engine::ExternalCalibrationUser lent{user.id(), user.group(), {}};
          for (size_t i = 0; i < pairs; ++i) {
            Eigen::VectorXd pair(d);
            for (int f = 0; f < d; ++f) pair[f] = user.pairs(static_cast<int>(i) * d + f);
            (i < feedback ? lent.user.feedback : lent.user.held_out).push_back(std::move(pair));
          }
          out.calibration.push_back(std::move(lent));
        }
        for (int r = 0; r < chunk.ids_size(); ++r) {
          engine::ExternalReference row{chunk.ids(r), Eigen::VectorXd(d),
                                        chunk.groups_size() > 0 ? chunk.groups(r) : ""};
          for (int f = 0; f < d; ++f) row.mean[f] = chunk.means(r * d + f);
          out.references.push_back(std::move(row));
        }
      }
      break;
    }
  }
  return out;
}

absl::Status ReferenceExchange::Forget(const std::string& shard) {
  jsOptions options;
  jsOptions_Init(&options);
  const std::string subject = SubjectOf(shard);
  options.Stream.Purge.Subject = subject.c_str();
  jsErrCode code = static_cast<jsErrCode>(0);
  return FromNats(js_PurgeStream(nats_->js(), options_.stream.c_str(), &options, &code), code,
                  "forget the reference sample of " + shard);
}

}  // namespace tailor::cluster
