#include "server/auth.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tailor::server {
namespace {

bool ValidToken(absl::string_view token) {
  if (token.size() < 16 || token.size() > 512) return false;
  for (char c : token) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

bool ValidTenantName(absl::string_view tenant) {
  if (tenant.empty() || tenant.size() > 64) return false;
  for (char c : tenant) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

std::vector<absl::string_view> ConfigLineFields(absl::string_view line) {
  if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
    line = line.substr(0, hash);
  }
  return absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
}

absl::StatusOr<std::shared_ptr<const Authenticator::Table>> Authenticator::Parse(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read the tokens file"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseText(text.str(), path);
}

absl::StatusOr<std::shared_ptr<const Authenticator::Table>> Authenticator::ParseText(
    absl::string_view text, absl::string_view path) {
  auto table = std::make_shared<Table>();
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    const std::vector<absl::string_view> fields = ConfigLineFields(line);
    if (fields.empty()) continue;
    const std::string where = absl::StrCat(path, ":", number, ": ");
    if (fields.size() < 2 || fields.size() > 3 || (fields.size() == 3 && fields[2] != "admin")) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "expected 'TENANT TOKEN' or 'TENANT TOKEN admin'"));
    }
    if (!ValidTenantName(fields[0])) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "tenant must be 1-64 characters of [A-Za-z0-9_.-]"));
    }
    if (!ValidToken(fields[1])) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "token must be 16-512 printable characters without spaces"));
    }
    Grant grant{std::string(fields[0]), fields.size() == 3};
    if (!table->emplace(std::string(fields[1]), std::move(grant)).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, "the same token appears twice"));
    }
  }
  if (table->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no tokens (an empty file would lock every caller out)"));
  }
  return std::shared_ptr<const Table>(std::move(table));
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(std::string path) {
  std::unique_ptr<Authenticator> auth(new Authenticator(std::move(path)));
  if (absl::Status loaded = auth->Reload(); !loaded.ok()) return loaded;
  return auth;
}

absl::Status Authenticator::Reload() {
  absl::StatusOr<std::shared_ptr<const Table>> table = Parse(path_);
  if (!table.ok()) return table.status();
  std::lock_guard<std::mutex> lock(mu_);
  table_ = *std::move(table);
  return absl::OkStatus();
}

std::shared_ptr<const Authenticator::Table> Authenticator::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_;
}

size_t Authenticator::tokens() const { return Current()->size(); }

absl::StatusOr<Grant> Authenticator::Authenticate(absl::string_view authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError("authorization: missing; send 'Bearer <token>'");
  }
  constexpr absl::string_view kScheme = "Bearer ";
  if (!absl::StartsWithIgnoreCase(authorization, kScheme)) {
    return absl::UnauthenticatedError("authorization: must be 'Bearer <token>'");
  }
  const std::shared_ptr<const Table> table = Current();
  auto it = table->find(authorization.substr(kScheme.size()));
  if (it == table->end()) return absl::UnauthenticatedError("authorization: unknown token");
  return it->second;
}

}  // namespace tailor::server
