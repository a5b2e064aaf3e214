// Invocation and task identifiers, as in NeMo Evaluator Launcher.
//
// An invocation id is 16 lowercase hex characters; a task id is `<invocation id>.<index>`; an
// attempt id is `<task id>.<attempt number>`. Users may type any unique prefix; ParseIdPrefix tells
// which kind a prefix names. Thread-safe.
#pragma once

#include <optional>
#include <string>


#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace evalctl {

inline constexpr size_t kInvocationIdLength = 16;

// A fresh random invocation id.
std::string NewInvocationId();

std::string TaskId(absl::string_view invocation_id, int index);
std::string AttemptId(absl::string_view task_id, int attempt);

bool IsValidInvocationId(absl::string_view id);

struct IdPrefix {
  // Lowercased prefix of the invocation id (the whole id when `task_index` is set).
  std::string invocation;
  // Set when the text names a task (`<invocation>.<index>`).
  std::optional<int> task_index;
};

// Accepts `3f2a`, `3f2a9c01d4e5b677` and `3f2a9c01d4e5b677.2` (case-insensitive). A task index
// needs the full invocation id, as the index is not a prefix of anything.
absl::StatusOr<IdPrefix> ParseIdPrefix(absl::string_view text);

}  // namespace evalctl
