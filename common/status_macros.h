// RETURN_IF_ERROR and ASSIGN_OR_RETURN for absl::Status / absl::StatusOr.
//
// Abseil 20220623 has no status macros; these follow the shape of the later Abseil ones so that
// they can become aliases when Abseil provides them.
//
//   RETURN_IF_ERROR(store.Put(task));
//   ASSIGN_OR_RETURN(Task task, store.Get(id));
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#define EVALCTL_STATUS_CONCAT_INNER_(a, b) a##b
#define EVALCTL_STATUS_CONCAT_(a, b) EVALCTL_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status evalctl_status_ = (expr);   \
    if (!evalctl_status_.ok()) {               \
      return evalctl_status_;                  \
    }                                          \
  } while (false)

#define ASSIGN_OR_RETURN(lhs, expr) \
  EVALCTL_ASSIGN_OR_RETURN_IMPL_(EVALCTL_STATUS_CONCAT_(evalctl_statusor_, __LINE__), lhs, expr)

#define EVALCTL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) {                                     \
    return std::move(statusor).status();                    \
  }                                                         \
  lhs = std::move(statusor).value()

namespace evalctl {

// Returns `status` with `context: ` put in front of its message, keeping its code. Use it where an
// error crosses a layer: Annotate(s, "submitting task 3f2a.2 to cluster \"eos\"").
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace evalctl
