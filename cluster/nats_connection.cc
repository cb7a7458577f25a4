#include "cluster/nats_connection.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tailor::cluster {

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
                                                                        absl::Duration timeout) {
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
  if (s == NATS_OK) s = natsConnection_Connect(&nats->connection_, nats->options_);
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), "connect to " + url);
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = timeout_ms;
  s = natsConnection_JetStream(&nats->js_, nats->connection_, &js_options);
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), "JetStream context");
  return nats;
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
