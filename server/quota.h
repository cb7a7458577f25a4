// TenantQuotas: per-tenant request quotas (token buckets), read from a quotas file:
//
//   # tenant   requests/s   [burst]
//   acme       200          400
//   *          50                     # every tenant not listed (absent: unlimited)
//
// One line per tenant; `#` starts a comment. The rate is requests per second (> 0); the burst
// (default: one second's worth, at least 1) is how many may come at once after a quiet spell.
// Every call counts one request, and so does every event of a feedback stream. A tenant over
// its quota gets RESOURCE_EXHAUSTED naming the tenant and the quota; a stream is acked up to
// the last event within the quota and then ends with that status. Quotas are per tailord
// process: behind a router over N shards, a tenant's cluster-wide rate is up to N times this.
// Reload() re-reads the file (tailord does on SIGHUP, with the tokens); a file that fails to
// parse leaves the previous quotas in force, and a tenant's bucket keeps its level.
#ifndef TAILOR_SERVER_QUOTA_H_
#define TAILOR_SERVER_QUOTA_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tailor::server {

struct Quota {
  double rate = 0;   // requests per second
  double burst = 0;  // bucket size
};

class TenantQuotas {
 public:
  static absl::StatusOr<std::unique_ptr<TenantQuotas>> FromFile(std::string path);
  // The quotas file's text; errors name `name` and the line. Key "*": the default.
  static absl::StatusOr<std::map<std::string, Quota>> ParseText(absl::string_view text,
                                                                absl::string_view name);
  // Quotas from a table already parsed; `path` is what Reload() reads (empty: it fails).
  explicit TenantQuotas(std::map<std::string, Quota> quotas, std::string path = "");

  // Takes up to `requests` from the tenant's bucket as of `now` and returns how many it took
  // (all of them when the tenant has no quota).
  uint64_t TakeUpTo(absl::string_view tenant, uint64_t requests, absl::Time now = absl::Now());
  // Takes one: OK, or RESOURCE_EXHAUSTED naming the tenant and its quota.
  absl::Status Take(absl::string_view tenant, absl::Time now = absl::Now());
  // The status a call over the tenant's quota gets.
  absl::Status Exhausted(absl::string_view tenant) const;

  // Re-reads the file; on error keeps the current quotas and returns why.
  absl::Status Reload();
  size_t quotas() const;

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time last = absl::InfinitePast();
  };
  std::optional<Quota> QuotaOfLocked(absl::string_view tenant) const;

  const std::string path_;
  mutable std::mutex mu_;
  std::map<std::string, Quota> quotas_;                 // guarded by mu_
  std::map<std::string, Bucket, std::less<>> buckets_;  // guarded by mu_
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_QUOTA_H_
