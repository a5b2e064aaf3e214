#include "common/ids.h"

#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace evalctl {
namespace {

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

std::string NewInvocationId() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  absl::MutexLock lock(&mu);
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(*gen));
}

std::string TaskId(absl::string_view invocation_id, int index) {
  return absl::StrCat(invocation_id, ".", index);
}

std::string AttemptId(absl::string_view task_id, int attempt) {
  return absl::StrCat(task_id, ".", attempt);
}

bool IsValidInvocationId(absl::string_view id) {
  if (id.size() != kInvocationIdLength || !IsHex(id)) return false;
  for (char c : id) {
    if (absl::ascii_isupper(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

absl::StatusOr<IdPrefix> ParseIdPrefix(absl::string_view text) {
  std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (lower.empty()) return absl::InvalidArgumentError("empty id");
  IdPrefix out;
  size_t dot = lower.find('.');
  absl::string_view inv = absl::string_view(lower).substr(0, dot);
  if (inv.empty() || inv.size() > kInvocationIdLength || !IsHex(inv)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\" is not an invocation id (16 hex characters, or a prefix of one) or a ",
        "task id (<invocation id>.<index>)"));
  }
  out.invocation = std::string(inv);
  if (dot != std::string::npos) {
    int index = -1;
    if (inv.size() != kInvocationIdLength ||
        !absl::SimpleAtoi(absl::string_view(lower).substr(dot + 1), &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", text, "\" is not a task id: expected <16-hex invocation id>.<index>, e.g. ",
          "3f2a9c01d4e5b677.0"));
    }
    out.task_index = index;
  }
  return out;
}

}  // namespace evalctl
