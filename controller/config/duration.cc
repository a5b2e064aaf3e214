#include "controller/config/duration.h"

#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace evalctl::config {
namespace {

constexpr int64_t kMinute = 60;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr char kFormats[] =
    "accepted formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS "
    "(e.g. 30, 04:00:00, 120:00:00, 2-12:00:00)";

// The text as it goes into an error message: escaped (no raw newlines in logs) and short.
std::string Shown(absl::string_view text) {
  constexpr size_t kMaxShown = 64;
  std::string escaped = absl::CHexEscape(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) absl::StrAppend(&escaped, "...");
  return escaped;
}

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid Slurm duration \"", Shown(text), "\": ", why, "; ", kFormats));
}

// Decimal digits only, so no sign, space or `0x`; leading zeros are plain base 10.
bool ParseField(absl::string_view field, int64_t* out) {
  if (field.empty()) return false;
  int64_t value = 0;
  for (char c : field) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    int digit = c - '0';
    if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

// *total += value * unit, failing on overflow.
bool AddScaled(int64_t value, int64_t unit, int64_t* total) {
  if (value > (std::numeric_limits<int64_t>::max() - *total) / unit) return false;
  *total += value * unit;
  return true;
}

}  // namespace

bool IsUnlimitedSlurmDuration(absl::string_view text) {
  return absl::EqualsIgnoreCase(text, "UNLIMITED") || absl::EqualsIgnoreCase(text, "INFINITE") ||
         text == "-1";
}

absl::StatusOr<int64_t> ParseSlurmDuration(absl::string_view text) {
  if (text.empty()) return Invalid(text, "it is empty");
  if (IsUnlimitedSlurmDuration(text)) {
    return Invalid(text,
                   "this means \"no time limit\" to Slurm and has no length in seconds; "
                   "give a finite duration (for execution.max_walltime, null means "
                   "unlimited)");
  }

  // Optional `D-` prefix.
  bool has_days = false;
  int64_t days = 0;
  absl::string_view clock = text;
  if (size_t dash = text.find('-'); dash != absl::string_view::npos) {
    if (dash == 0) return Invalid(text, "it must not be negative");
    has_days = true;
    if (!ParseField(text.substr(0, dash), &days)) {
      return Invalid(text, "the day count before '-' must be decimal digits");
    }
    clock = text.substr(dash + 1);
    if (absl::StrContains(clock, '-')) return Invalid(text, "it has more than one '-'");
  }

  std::vector<absl::string_view> parts = absl::StrSplit(clock, ':');
  if (parts.size() > 3) return Invalid(text, "it has more than three ':'-separated fields");
  std::vector<int64_t> values(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!ParseField(parts[i], &values[i])) {
      if (parts[i].empty()) return Invalid(text, "a field is empty");
      bool all_digits = true;
      for (char c : parts[i]) all_digits &= absl::ascii_isdigit(static_cast<unsigned char>(c));
      return Invalid(text, all_digits
                               ? "a field is too large"
                               : "fields must be decimal digits (no signs, spaces or units)");
    }
  }

  // Name the fields by position: with days the clock is H[:M[:S]], without it is M[:S] or H:M:S.
  int64_t hours = 0, minutes = 0, seconds = 0;
  if (has_days) {
    hours = values[0];
    if (values.size() > 1) minutes = values[1];
    if (values.size() > 2) seconds = values[2];
    if (hours > 23) {
      return Invalid(text, absl::StrFormat("hours after a day count must be 0-23 (got %d)", hours));
    }
  } else if (values.size() == 3) {
    hours = values[0];
    minutes = values[1];
    seconds = values[2];
  } else {
    minutes = values[0];
    if (values.size() > 1) seconds = values[1];
  }
  // Only the leading field may exceed its usual range: `90` minutes, `120:00:00` hours.
  bool minutes_lead = !has_days && values.size() < 3;
  if (!minutes_lead && minutes > 59) {
    return Invalid(text, absl::StrFormat("minutes must be 0-59 (got %d)", minutes));
  }
  if (seconds > 59) {
    return Invalid(text, absl::StrFormat("seconds must be 0-59 (got %d)", seconds));
  }

  int64_t total = 0;
  if (!AddScaled(days, kDay, &total) || !AddScaled(hours, kHour, &total) ||
      !AddScaled(minutes, kMinute, &total) || !AddScaled(seconds, 1, &total)) {
    return Invalid(text, "it is too long to count in seconds");
  }
  return total;
}

std::string FormatSlurmDuration(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  int64_t days = seconds / kDay;
  int64_t hours = (seconds % kDay) / kHour;
  int64_t minutes = (seconds % kHour) / kMinute;
  int64_t secs = seconds % kMinute;
  if (days > 0) return absl::StrFormat("%d-%02d:%02d:%02d", days, hours, minutes, secs);
  return absl::StrFormat("%02d:%02d:%02d", hours, minutes, secs);
}

}  // namespace evalctl::config
