// What the controller's metrics say about a task's ending and its attempts, derived from the
// structured fields of the events agents send (never from free text):
//   - EndReason: why a task reached its terminal state, a small closed set (the `reason` label of
//     evalctl_controller_tasks_finished_total, next to the terminal state);
//   - NewAttemptTimes: what an event tells for the first time about its attempt's queue wait
//     (sbatch to start) and run time (start to end).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "evalctl/v1/types.pb.h"

namespace evalctl::controller {

enum class EndReason {
  // SUCCEEDED: the job completed and its results were read.
  kCompleted,
  // FAILED: the job ended FAILED (the evaluation or the job script exited non-zero).
  kExitCode,
  // FAILED: Slurm ended the job OUT_OF_MEMORY.
  kOutOfMemory,
  // FAILED: Slurm ended the job at its DEADLINE.
  kDeadline,
  // FAILED: the job completed but its results.yml could not be read.
  kResultsUnreadable,
  // FAILED: sbatch refused the job (no job id).
  kSlurmRejected,
  // FAILED: the task never reached its agent (it did not reconnect in time, or the controller
  // restarted while it held the task's secrets).
  kNotDelivered,
  // FAILED: the agent could not take the task.
  kAgentRefused,
  // CANCELLED through evalctl (before or after it reached the cluster).
  kRequested,
  // CANCELLED in Slurm, not through evalctl.
  kCancelledInSlurm,
  // BUDGET_EXHAUSTED after an ending of this kind (max_attempts or max_walltime used up).
  kTimeout,
  kPreempted,
  kNodeFail,
  kBootFail,
  // Anything else (an agent newer than this controller, a Slurm state it does not know).
  kOther,
};

// The label value: "completed", "exit_code", "out_of_memory", ..., "other".
std::string EndReasonName(EndReason reason);

// The reasons a task can end with in `terminal` (empty for a non-terminal state).
std::vector<EndReason> EndReasonsOf(v1::TaskState terminal);

// Why the task ended, from the agent's ending event (its state and newest attempt: job id, Slurm
// state, exit code) and whether a cancel had been requested through evalctl before it.
EndReason EndReasonOf(const v1::TaskEvent& ending, bool cancel_requested);

struct AttemptTimes {
  // Set when the event shows the attempt started, and the task before it did not.
  std::optional<absl::Duration> queue_wait;
  // Set when the event shows the attempt ended after it started, and the task before it did not.
  std::optional<absl::Duration> run_time;
};

// Compares the event's attempt with the same attempt of `before` (the task as stored before the
// event). An attempt cancelled while it waited (Slurm then sets its start to its end) neither
// waited to a start nor ran.
AttemptTimes NewAttemptTimes(const v1::Task& before, const v1::TaskEvent& event);

}  // namespace evalctl::controller
