#include "common/task_vocabulary.h"

#include "google/protobuf/util/time_util.h"

namespace evalctl {

using google::protobuf::util::TimeUtil;

bool IsTerminal(v1::TaskState state) {
  return state == v1::TASK_STATE_SUCCEEDED || state == v1::TASK_STATE_FAILED ||
         state == v1::TASK_STATE_CANCELLED || state == v1::TASK_STATE_BUDGET_EXHAUSTED;
}

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  return TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(t));
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMillis(TimeUtil::TimestampToMilliseconds(t));
}

}  // namespace evalctl
