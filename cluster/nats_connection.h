// NatsConnection: one connection to a NATS cluster with its JetStream context, shared by the
// feedback log and the partition directory; and libnats' status codes as absl::Status, once,
// at this boundary.
#ifndef TAILOR_CLUSTER_NATS_CONNECTION_H_
#define TAILOR_CLUSTER_NATS_CONNECTION_H_

#include <nats/nats.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tailor::cluster {

// JetStream's "no message found" error (JSNoMessageFoundErr), which libnats 3.4 does not name.
inline constexpr jsErrCode kNoMessageFound = static_cast<jsErrCode>(10037);

// libnats' status (and JetStream error code, 0 if none) as a status naming `what` failed:
// UNAVAILABLE when no server answers, DEADLINE_EXCEEDED on a timeout, else INTERNAL.
absl::Status FromNats(natsStatus status, jsErrCode code, absl::string_view what);

// TLS to the NATS servers. Empty `ca_file`: plaintext. Otherwise each server's certificate
// chain is verified against `ca_file` and, when `hostname` is given, must name it (libnats
// checks no host name otherwise); `cert_file` and `key_file` (both or neither) are presented
// to servers that verify clients.
struct NatsTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string hostname;
};

class NatsConnection {
 public:
  // `url`: one or more servers, comma-separated; the client reconnects to any of them.
  static absl::StatusOr<std::unique_ptr<NatsConnection>> Connect(const std::string& url,
                                                                 absl::Duration timeout,
                                                                 const NatsTls& tls = {});
  ~NatsConnection();
  NatsConnection(const NatsConnection&) = delete;
  NatsConnection& operator=(const NatsConnection&) = delete;

  jsCtx* js() const { return js_; }
  // Calls `visit` with each message of `stream` on subjects matching `filter` (wildcards
  // allowed) after sequence `after`, in order, up to sequence `end`; stops early when `visit`
  // returns false. Reads through an ephemeral pull consumer on one server, in memory: a
  // replicated consumer would need a Raft group of its own, slow to form (seconds while a
  // server of the cluster is down), for a read the caller retries anyway.
  absl::Status Read(const std::string& stream, const std::string& filter, uint64_t after,
                    uint64_t end,
                    absl::FunctionRef<bool(uint64_t sequence, absl::string_view payload)> visit);
  // Deletes a stream and everything in it (a KV bucket B is the stream "KV_B"); NOT_FOUND if
  // there is none. For benchmarks and tests that leave nothing behind.
  absl::Status DeleteStream(const std::string& stream);
  absl::Duration timeout() const { return timeout_; }

 private:
  NatsConnection() = default;
  natsOptions* options_ = nullptr;
  natsConnection* connection_ = nullptr;
  jsCtx* js_ = nullptr;
  absl::Duration timeout_;
};

}  // namespace tailor::cluster

#endif  // TAILOR_CLUSTER_NATS_CONNECTION_H_
