#include "controller/core/task_outcome.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace evalctl::controller {
namespace {

bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Slurm prints "CANCELLED by 1000" in some tools.
bool IsCancelledInSlurm(absl::string_view slurm_state) {
  return absl::StartsWith(slurm_state, "CANCELLED") || slurm_state == "REVOKED";
}

}  // namespace

std::string EndReasonName(EndReason reason) {
  switch (reason) {
    case EndReason::kCompleted:
      return "completed";
    case EndReason::kExitCode:
      return "exit_code";
    case EndReason::kOutOfMemory:
      return "out_of_memory";
    case EndReason::kDeadline:
      return "deadline";
    case EndReason::kResultsUnreadable:
      return "results_unreadable";
    case EndReason::kSlurmRejected:
      return "slurm_rejected";
    case EndReason::kNotDelivered:
      return "not_delivered";
    case EndReason::kAgentRefused:
      return "agent_refused";
    case EndReason::kRequested:
      return "requested";
    case EndReason::kCancelledInSlurm:
      return "cancelled_in_slurm";
    case EndReason::kTimeout:
      return "timeout";
    case EndReason::kPreempted:
      return "preempted";
    case EndReason::kNodeFail:
      return "node_fail";
    case EndReason::kBootFail:
      return "boot_fail";
    case EndReason::kOther:
      return "other";
  }
  return "other";
}

std::vector<EndReason> EndReasonsOf(v1::TaskState terminal) {
  switch (terminal) {
    case v1::TASK_STATE_SUCCEEDED:
      return {EndReason::kCompleted};
    case v1::TASK_STATE_FAILED:
      return {EndReason::kExitCode,          EndReason::kOutOfMemory,   EndReason::kDeadline,
              EndReason::kResultsUnreadable, EndReason::kSlurmRejected, EndReason::kNotDelivered,
              EndReason::kAgentRefused,      EndReason::kOther};
    case v1::TASK_STATE_CANCELLED:
      return {EndReason::kRequested, EndReason::kCancelledInSlurm};
    case v1::TASK_STATE_BUDGET_EXHAUSTED:
      return {EndReason::kTimeout, EndReason::kPreempted, EndReason::kNodeFail,
              EndReason::kBootFail, EndReason::kOther};
    default:
      return {};
  }
}

EndReason EndReasonOf(const v1::TaskEvent& ending, bool cancel_requested) {
  const v1::Attempt& a = ending.attempt();
  const std::string& slurm = a.slurm_state();
  switch (ending.state()) {
    case v1::TASK_STATE_SUCCEEDED:
      return EndReason::kCompleted;
    case v1::TASK_STATE_CANCELLED:
      return !cancel_requested && IsCancelledInSlurm(slurm) ? EndReason::kCancelledInSlurm
                                                            : EndReason::kRequested;
    case v1::TASK_STATE_FAILED:
      if (a.slurm_job_id().empty()) return EndReason::kSlurmRejected;
      if (slurm == "COMPLETED") return EndReason::kResultsUnreadable;
      if (slurm == "OUT_OF_MEMORY") return EndReason::kOutOfMemory;
      if (slurm == "DEADLINE") return EndReason::kDeadline;
      if (slurm == "FAILED" || slurm == "SPECIAL_EXIT") return EndReason::kExitCode;
      return EndReason::kOther;
    case v1::TASK_STATE_BUDGET_EXHAUSTED:
      if (slurm == "TIMEOUT") return EndReason::kTimeout;
      // The job script's "interrupted" exit: the harness stopped at the pre-timeout warning.
      if (slurm == "FAILED" && a.has_exit_code() && a.exit_code() == 123)
        return EndReason::kTimeout;
      if (slurm == "PREEMPTED") return EndReason::kPreempted;
      if (slurm == "NODE_FAIL") return EndReason::kNodeFail;
      if (slurm == "BOOT_FAIL") return EndReason::kBootFail;
      return EndReason::kOther;
    default:
      return EndReason::kOther;
  }
}

AttemptTimes NewAttemptTimes(const v1::Task& before, const v1::TaskEvent& event) {
  AttemptTimes out;
  if (!event.has_attempt() || event.attempt().number() <= 0) return out;
  const v1::Attempt& now = event.attempt();
  const v1::Attempt* was = nullptr;
  for (const v1::Attempt& a : before.attempts()) {
    if (a.number() == now.number()) was = &a;
  }
  const bool started =
      IsSet(now.start_time()) && !(IsCancelledInSlurm(now.slurm_state()) && IsSet(now.end_time()) &&
                                   ToTime(now.end_time()) <= ToTime(now.start_time()));
  if (!started) return out;
  const bool had_start = was != nullptr && IsSet(was->start_time());
  const bool had_end = was != nullptr && IsSet(was->end_time());
  if (!had_start && IsSet(now.submit_time())) {
    out.queue_wait =
        std::max(absl::ZeroDuration(), ToTime(now.start_time()) - ToTime(now.submit_time()));
  }
  if (!had_end && IsSet(now.end_time())) {
    out.run_time =
        std::max(absl::ZeroDuration(), ToTime(now.end_time()) - ToTime(now.start_time()));
  }
  return out;
}

}  // namespace evalctl::controller
