#include "clients/cli/settings.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace evalctl::cli {

std::string UserConfigPath() {
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/evalctl/config.yaml");
  }
  std::string home;
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') {
    home = h;
  } else if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_dir != nullptr) {
    home = pw->pw_dir;
  }
  return home.empty() ? std::string() : absl::StrCat(home, "/.config/evalctl/config.yaml");
}

absl::StatusOr<std::string> ResolveController(const std::string& flag, const char* env,
                                              const std::string& config_path) {
  if (!flag.empty()) return flag;
  if (env != nullptr && *env != '\0') return std::string(env);
  std::error_code ec;
  if (config_path.empty() || !std::filesystem::exists(config_path, ec)) {
    return std::string(kDefaultController);
  }
  // yaml-cpp reports problems by exceptions; none may leave this function.
  try {
    const YAML::Node root = YAML::LoadFile(config_path);
    if (!root.IsDefined() || root.IsNull()) return std::string(kDefaultController);
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": expected a mapping with a `controller:` key"));
    }
    const YAML::Node controller = root["controller"];
    if (!controller.IsDefined() || controller.IsNull()) return std::string(kDefaultController);
    if (!controller.IsScalar() || controller.Scalar().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ":", controller.Mark().line + 1,
                       ": `controller` must be an address such as host:50051"));
    }
    return controller.Scalar();
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ":", e.mark.line + 1, ": ", e.msg));
  }
}

absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text) {
  absl::Duration d;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad duration \"", text, "\"; use e.g. 10s, 1m30s, 500ms or seconds"));
  }
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the timeout must be positive, not \"", text, "\""));
  }
  return d;
}

absl::StatusOr<absl::Time> ParseSince(absl::string_view raw, absl::Time now, absl::TimeZone tz) {
  const std::string text(absl::StripAsciiWhitespace(raw));
  // An age: a number and one unit.
  if (!text.empty() && absl::ascii_isdigit(static_cast<unsigned char>(text[0]))) {
    const char unit = absl::ascii_tolower(static_cast<unsigned char>(text.back()));
    int64_t n = 0;
    if (absl::SimpleAtoi(absl::string_view(text).substr(0, text.size() - 1), &n) && n >= 0) {
      switch (unit) {
        case 's':
          return now - absl::Seconds(n);
        case 'm':
          return now - absl::Minutes(n);
        case 'h':
          return now - absl::Hours(n);
        case 'd':
          return now - absl::Hours(24 * n);
        case 'w':
          return now - absl::Hours(24 * 7 * n);
        default:
          break;
      }
    }
  }
  absl::Time t;
  std::string err;
  // With an offset or Z first, then local forms.
  for (const char* format : {"%Y-%m-%d%ET%H:%M:%E*S%Ez", "%Y-%m-%d %H:%M:%E*S%Ez"}) {
    if (absl::ParseTime(format, text, &t, &err)) return t;
  }
  for (const char* format : {"%Y-%m-%d%ET%H:%M:%E*S", "%Y-%m-%d %H:%M:%E*S", "%Y-%m-%d%ET%H:%M",
                             "%Y-%m-%d %H:%M", "%Y-%m-%d"}) {
    if (absl::ParseTime(format, text, tz, &t, &err)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bad --since \"", raw,
                   "\"; use an age (30m, 6h, 1d, 2w) or an ISO date or time "
                   "(2026-11-26, 2026-11-26T13:04:05Z)"));
}

}  // namespace evalctl::cli
