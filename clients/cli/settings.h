// Where the `evalctl` CLI's global settings come from, and the parsing of its duration and time
// arguments.
//
//   ASSIGN_OR_RETURN(std::string target,
//                    ResolveController(flag, std::getenv("EVALCTL_CONTROLLER"), UserConfigPath()));
//   ASSIGN_OR_RETURN(absl::Time since, ParseSince("6h", absl::Now(), absl::LocalTimeZone()));
//
// Errors are INVALID_ARGUMENT (a usage or configuration error, exit code 2). Thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace evalctl::cli {

inline constexpr char kDefaultController[] = "127.0.0.1:50051";

// $XDG_CONFIG_HOME/evalctl/config.yaml, else ~/.config/evalctl/config.yaml.
std::string UserConfigPath();

// The controller address: `flag` when given, else `env` ($EVALCTL_CONTROLLER) when set and not
// empty, else `controller:` from the YAML file at `config_path` when it exists, else
// kDefaultController. A config file that does not parse is an error that names it.
absl::StatusOr<std::string> ResolveController(const std::string& flag, const char* env,
                                              const std::string& config_path);

// "10s", "1m30s", "500ms", or a number of seconds ("10", "2.5").
absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text);

// `--since`: an age ("30m", "6h", "1d", "2w") counted back from `now`, or a date or time in ISO
// 8601 ("2026-11-26", "2026-11-26T13:04", "2026-11-26 13:04:05", "2026-11-26T13:04:05Z",
// "2026-11-26T13:04:05+02:00"); without an offset it is a time in `tz`.
absl::StatusOr<absl::Time> ParseSince(absl::string_view text, absl::Time now, absl::TimeZone tz);

}  // namespace evalctl::cli
