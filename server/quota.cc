#include "server/quota.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "server/auth.h"

namespace tailor::server {
namespace {

absl::StatusOr<std::string> ReadQuotasFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read the quotas file"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::map<std::string, Quota>> TenantQuotas::ParseText(absl::string_view text,
                                                                     absl::string_view name) {
  std::map<std::string, Quota> quotas;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    const std::vector<absl::string_view> fields = ConfigLineFields(line);
    if (fields.empty()) continue;
    const std::string where = absl::StrCat(name, ":", number, ": ");
    if (fields.size() < 2 || fields.size() > 3) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "expected 'TENANT REQUESTS_PER_SECOND [BURST]'"));
    }
    if (fields[0] != "*" && !ValidTenantName(fields[0])) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "tenant must be '*' or 1-64 characters of [A-Za-z0-9_.-]"));
    }
    Quota quota;
    if (!absl::SimpleAtod(fields[1], &quota.rate) || !std::isfinite(quota.rate) ||
        quota.rate <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "requests per second must be a number above 0"));
    }
    quota.burst = std::max(1.0, quota.rate);
    if (fields.size() == 3 && (!absl::SimpleAtod(fields[2], &quota.burst) ||
                               !std::isfinite(quota.burst) || quota.burst < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "burst must be a number of at least 1"));
    }
    if (!quotas.emplace(std::string(fields[0]), quota).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "tenant '", fields[0], "' has a quota already"));
    }
  }
  return quotas;
}

absl::StatusOr<std::unique_ptr<TenantQuotas>> TenantQuotas::FromFile(std::string path) {
  absl::StatusOr<std::string> text = ReadQuotasFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::map<std::string, Quota>> quotas = ParseText(*text, path);
  if (!quotas.ok()) return quotas.status();
  return std::make_unique<TenantQuotas>(*std::move(quotas), std::move(path));
}

TenantQuotas::TenantQuotas(std::map<std::string, Quota> quotas, std::string path)
    : path_(std::move(path)), quotas_(std::move(quotas)) {}

std::optional<Quota> TenantQuotas::QuotaOfLocked(absl::string_view tenant) const {
  auto found = quotas_.find(std::string(tenant));
  if (found == quotas_.end()) found = quotas_.find("*");
  if (found == quotas_.end()) return std::nullopt;
  return found->second;
}

uint64_t TenantQuotas::TakeUpTo(absl::string_view tenant, uint64_t requests, absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::optional<Quota> quota = QuotaOfLocked(tenant);
  if (!quota.has_value()) return requests;
  auto bucket = buckets_.find(tenant);
  if (bucket == buckets_.end()) {
    bucket = buckets_.emplace(std::string(tenant), Bucket{quota->burst, now}).first;
  }
  Bucket& b = bucket->second;
  if (now > b.last) {
    b.tokens = std::min(quota->burst, b.tokens + quota->rate * absl::ToDoubleSeconds(now - b.last));
    b.last = now;
  }
  b.tokens = std::min(b.tokens, quota->burst);  // a reload may have lowered the burst
  const uint64_t taken =
      std::min<uint64_t>(requests, static_cast<uint64_t>(std::max(0.0, std::floor(b.tokens))));
  b.tokens -= static_cast<double>(taken);
  return taken;
}

absl::Status TenantQuotas::Exhausted(absl::string_view tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  const std::optional<Quota> quota = QuotaOfLocked(tenant);
  return absl::ResourceExhaustedError(absl::StrFormat(
      "tenant '%s': over its request quota of %g/s (burst %g); retry later with backoff", tenant,
      quota.has_value() ? quota->rate : 0.0, quota.has_value() ? quota->burst : 0.0));
}

absl::Status TenantQuotas::Take(absl::string_view tenant, absl::Time now) {
  if (TakeUpTo(tenant, 1, now) == 1) return absl::OkStatus();
  return Exhausted(tenant);
}

absl::Status TenantQuotas::Reload() {
  if (path_.empty()) return absl::FailedPreconditionError("quotas were not read from a file");
  absl::StatusOr<std::string> text = ReadQuotasFile(path_);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::map<std::string, Quota>> quotas = ParseText(*text, path_);
  if (!quotas.ok()) return quotas.status();
  std::lock_guard<std::mutex> lock(mu_);
  quotas_ = *std::move(quotas);
  return absl::OkStatus();
}

size_t TenantQuotas::quotas() const {
  std::lock_guard<std::mutex> lock(mu_);
  return quotas_.size();
}

}  // namespace tailor::server
