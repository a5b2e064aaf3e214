// Minimal line logger with the LOG(severity) << ... shape.
//
//   LOG(INFO) << "submitted invocation=" << inv << " task=" << task << " job=" << job_id;
//
// Each statement writes exactly one line to stderr (a single write(2), so lines from different
// threads never interleave):  `I2026-11-26T13:04:05.123Z agent/tracker.cc:88] message`.
// LOG(FATAL) aborts after writing. Thread-safe. Never log secret values.
#pragma once

#include <sstream>
#include <string_view>

namespace evalctl::logging {

enum class Severity { kDebug, kInfo, kWarning, kError, kFatal };

// Lines below this severity are dropped. Default kInfo; EVALCTL_LOG_LEVEL=debug lowers it.
void SetMinSeverity(Severity severity);
bool Enabled(Severity severity);

class LogMessage {
 public:
  LogMessage(Severity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  Severity severity_;
  std::ostringstream stream_;
};

// Swallows the stream expression when a severity is disabled.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace evalctl::logging

#define EVALCTL_LOG_SEVERITY_DEBUG ::evalctl::logging::Severity::kDebug
#define EVALCTL_LOG_SEVERITY_INFO ::evalctl::logging::Severity::kInfo
#define EVALCTL_LOG_SEVERITY_WARNING ::evalctl::logging::Severity::kWarning
#define EVALCTL_LOG_SEVERITY_ERROR ::evalctl::logging::Severity::kError
#define EVALCTL_LOG_SEVERITY_FATAL ::evalctl::logging::Severity::kFatal

#define LOG(severity)                                                      \
  !::evalctl::logging::Enabled(EVALCTL_LOG_SEVERITY_##severity)           \
      ? (void)0                                                            \
      : ::evalctl::logging::Voidify() &                                    \
            ::evalctl::logging::LogMessage(EVALCTL_LOG_SEVERITY_##severity, \
                                           __FILE__, __LINE__)             \
                .stream()

// For programmer invariants only, never for input, network or Slurm failures.
#define CHECK(condition)                                                                   \
  (condition) ? (void)0                                                                    \
              : ::evalctl::logging::Voidify() &                                            \
                    ::evalctl::logging::LogMessage(::evalctl::logging::Severity::kFatal,  \
                                                   __FILE__, __LINE__)                    \
                            .stream()                                                      \
                        << "Check failed: " #condition " "
