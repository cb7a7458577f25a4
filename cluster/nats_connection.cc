#include "cluster/nats_connection.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tailor::cluster {
namespace {

constexpr int kReadBatch = 256;

}  // namespace

absl::Status FromNats(natsStatus status, jsErrCode code, absl::string_view what) {
  if (status == NATS_OK) return absl::OkStatus();
  std::string text = absl::StrCat("nats: ", what, ": ", natsStatus_GetText(status));
  if (code != 0) absl::StrAppend(&text, " (JetStream error ", static_cast<int>(code), ")");
  if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0') {
    absl::StrAppend(&text, ": ", last);
  }
  switch (status) {
    case NATS_TIMEOUT:
      return absl::DeadlineExceededError(text);
    case NATS_NO_SERVER:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_RESPONDERS:
      return absl::UnavailableError(text);
    default:
      return absl::InternalError(text);
  }
}

absl::StatusOr<std::unique_ptr<NatsConnection>> NatsConnection::Connect(const std::string& url,
                                                                        absl::Duration timeout,
                                                                        const NatsTls& tls) {
  std::unique_ptr<NatsConnection> nats(new NatsConnection());
  nats->timeout_ = timeout;
  const auto timeout_ms = absl::ToInt64Milliseconds(timeout);
  // libnats takes a list of servers apart from a single URL.
  const std::vector<std::string> urls = absl::StrSplit(url, ',', absl::SkipWhitespace());
  std::vector<const char*> servers;
  for (const std::string& u : urls) servers.push_back(u.c_str());
  natsStatus s = natsOptions_Create(&nats->options_);
  if (s == NATS_OK) {
    s = natsOptions_SetServers(nats->options_, servers.data(), static_cast<int>(servers.size()));
  }
  if (s == NATS_OK) s = natsOptions_SetTimeout(nats->options_, timeout_ms);
  // Keep trying while a server of the cluster is down or restarting, without limit: a shard
  // must never give up on its log.
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(nats->options_, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(nats->options_, 250);
  if (s == NATS_OK && !tls.ca_file.empty()) {
    s = natsOptions_SetSecure(nats->options_, true);
    if (s == NATS_OK)
      s = natsOptions_LoadCATrustedCertificates(nats->options_, tls.ca_file.c_str());
    if (s != NATS_OK)
      return FromNats(s, static_cast<jsErrCode>(0), "read the NATS CA " + tls.ca_file);
    if (!tls.cert_file.empty()) {
      s = natsOptions_LoadCertificatesChain(nats->options_, tls.cert_file.c_str(),
                                            tls.key_file.c_str());
      if (s != NATS_OK) {
        return FromNats(s, static_cast<jsErrCode>(0),
                        "read the NATS client certificate " + tls.cert_file);
      }
    }
    if (!tls.hostname.empty()) {
      s = natsOptions_SetExpectedHostname(nats->options_, tls.hostname.c_str());
    }
  }
  if (s == NATS_OK) s = natsConnection_Connect(&nats->connection_, nats->options_);
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), "connect to " + url);
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = timeout_ms;
  s = natsConnection_JetStream(&nats->js_, nats->connection_, &js_options);
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), "JetStream context");
  return nats;
}

absl::Status NatsConnection::Read(
    const std::string& stream, const std::string& filter, uint64_t after, uint64_t end,
    absl::FunctionRef<bool(uint64_t sequence, absl::string_view payload)> visit) {
  if (end <= after) return absl::OkStatus();
  jsSubOptions sub_options;
  jsSubOptions_Init(&sub_options);
  sub_options.Stream = stream.c_str();
  sub_options.Config.DeliverPolicy = js_DeliverByStartSequence;
  sub_options.Config.OptStartSeq = after + 1;
  sub_options.Config.AckPolicy = js_AckNone;
  sub_options.Config.FilterSubject = filter.c_str();
  sub_options.Config.InactiveThreshold = absl::ToInt64Nanoseconds(absl::Minutes(1));
  sub_options.Config.Replicas = 1;
  sub_options.Config.MemoryStorage = true;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsSubscription* sub = nullptr;
  natsStatus s = js_PullSubscribe(&sub, js_, filter.c_str(), nullptr, nullptr, &sub_options, &code);
  if (s != NATS_OK) return FromNats(s, code, "consumer for " + filter);
  absl::Status result;
  uint64_t at = after;
  bool more = true;
  while (more && at < end) {
    natsMsgList list{nullptr, 0};
    s = natsSubscription_Fetch(&list, sub, kReadBatch, absl::ToInt64Milliseconds(timeout_), &code);
    if (s != NATS_OK) {
      result = FromNats(s, code, "read " + filter);
      break;
    }
    for (int i = 0; i < list.Count && more; ++i) {
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, list.Msgs[i]) != NATS_OK) {
        result = absl::InternalError(absl::StrCat("nats: read ", filter, ": no metadata"));
        more = false;
        break;
      }
      at = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
      if (at > end) {
        more = false;  // appended after the read started
        break;
      }
      more = visit(at, absl::string_view(natsMsg_GetData(list.Msgs[i]),
                                         static_cast<size_t>(natsMsg_GetDataLength(list.Msgs[i]))));
    }
    natsMsgList_Destroy(&list);
    if (!result.ok()) break;
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return result;
}

absl::Status NatsConnection::DeleteStream(const std::string& stream) {
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_DeleteStream(js_, stream.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) return absl::NotFoundError("nats: no stream " + stream);
  return FromNats(s, code, "delete stream " + stream);
}

NatsConnection::~NatsConnection() {
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (connection_ != nullptr) natsConnection_Destroy(connection_);
  if (options_ != nullptr) natsOptions_Destroy(options_);
}

}  // namespace tailor::cluster
