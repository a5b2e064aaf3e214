#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace evalctl::logging {
namespace {

Severity InitialSeverity() {
  const char* env = std::getenv("EVALCTL_LOG_LEVEL");
  if (env == nullptr) return Severity::kInfo;
  std::string_view level(env);
  if (level == "debug") return Severity::kDebug;
  if (level == "warning") return Severity::kWarning;
  if (level == "error") return Severity::kError;
  return Severity::kInfo;
}

std::atomic<Severity>& MinSeverity() {
  static std::atomic<Severity> min{InitialSeverity()};
  return min;
}

char Letter(Severity s) {
  switch (s) {
    case Severity::kDebug: return 'D';
    case Severity::kInfo: return 'I';
    case Severity::kWarning: return 'W';
    case Severity::kError: return 'E';
    case Severity::kFatal: return 'F';
  }
  return '?';
}

// Keeps the path from the project root: ".../evalctl/agent/tracker.cc" -> "agent/tracker.cc".
const char* ShortPath(const char* file) {
  static constexpr const char* kRoots[] = {"/common/", "/controller/", "/agent/", "/clients/",
                                           "/tests/"};
  for (const char* root : kRoots) {
    if (const char* p = std::strstr(file, root)) return p + 1;
  }
  return file;
}

}  // namespace

void SetMinSeverity(Severity severity) { MinSeverity().store(severity); }

bool Enabled(Severity severity) { return severity >= MinSeverity().load(); }

LogMessage::LogMessage(Severity severity, const char* file, int line) : severity_(severity) {
  stream_ << Letter(severity)
          << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()) << ' '
          << ShortPath(file) << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string line = stream_.str();
  size_t written = 0;
  while (written < line.size()) {
    ssize_t n = ::write(STDERR_FILENO, line.data() + written, line.size() - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  if (severity_ == Severity::kFatal) std::abort();
}

}  // namespace evalctl::logging
