// One-line structured logging to stderr for tailord (Abseil 20220623 has no absl/log).
#ifndef TAILOR_SERVER_LOG_H_
#define TAILOR_SERVER_LOG_H_

#include "absl/strings/string_view.h"

namespace tailor::server {

enum class LogLevel { kInfo, kWarning, kError };

// Writes "<RFC3339 UTC time> <LEVEL> <message>\n" atomically with respect to other calls.
void Log(LogLevel level, absl::string_view message);

}  // namespace tailor::server

#endif  // TAILOR_SERVER_LOG_H_
