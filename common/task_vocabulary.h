// The words both sides of the agent stream use about tasks, in one place: which states are
// terminal, and protobuf timestamps from absl::Time (millisecond precision, as the store and the
// journal keep them).
#pragma once

#include "absl/time/time.h"
#include "evalctl/v1/types.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace evalctl {

// SUCCEEDED, FAILED, CANCELLED or BUDGET_EXHAUSTED: the task does not change again unless resumed.
bool IsTerminal(v1::TaskState state);

google::protobuf::Timestamp ToTimestamp(absl::Time t);
absl::Time FromTimestamp(const google::protobuf::Timestamp& t);

}  // namespace evalctl
