// Authenticator: bearer tokens bound to tenants, read from a tokens file.
//
//   # tenant   token                             [admin]
//   acme       3b1f0c3e7d5a4b0f9e2c6a8d1f4e7b2c
//   acme       9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a  # a second token: rotation without downtime
//   ops        0f1e2d3c4b5a69788796a5b4c3d2e1f0   admin
//
// One grant per line; `#` starts a comment. Tenant names are 1-64 of [A-Za-z0-9_.-]; tokens
// are 16-512 printable characters without spaces. A tenant's users are its own: the same user
// id in two tenants names two users. `admin` grants may also call TailorAdmin.
// Reload() re-reads the file (tailord does on SIGHUP); a file that fails to parse leaves the
// previous tokens in force.
#ifndef TAILOR_SERVER_AUTH_H_
#define TAILOR_SERVER_AUTH_H_

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tailor::server {

// Tenant names: 1-64 characters of [A-Za-z0-9_.-].
bool ValidTenantName(absl::string_view tenant);

// A line of the tokens or quotas file: its whitespace-separated fields, after dropping a `#`
// comment (none: a blank or comment line).
std::vector<absl::string_view> ConfigLineFields(absl::string_view line);

struct Grant {
  std::string tenant;
  bool admin = false;
};

class Authenticator {
 public:
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(std::string path);

  // The grant for an `authorization` header value ("Bearer <token>"); UNAUTHENTICATED with
  // the reason otherwise. An empty value means the header was missing.
  absl::StatusOr<Grant> Authenticate(absl::string_view authorization) const;

  // Re-reads the file; on error keeps the current tokens and returns why.
  absl::Status Reload();
  size_t tokens() const;

  using Table = absl::flat_hash_map<std::string, Grant>;  // token -> grant
  // The tokens file's text; errors name `name` and the line.
  static absl::StatusOr<std::shared_ptr<const Table>> ParseText(absl::string_view text,
                                                                absl::string_view name);

 private:
  explicit Authenticator(std::string path) : path_(std::move(path)) {}
  static absl::StatusOr<std::shared_ptr<const Table>> Parse(const std::string& path);
  std::shared_ptr<const Table> Current() const;

  const std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const Table> table_;  // replaced whole on reload, guarded by mu_
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_AUTH_H_
