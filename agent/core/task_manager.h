// TaskManager: the agent's core. It owns every task the controller gave this agent: submits each
// attempt exactly once, tracks all jobs with one batched squeue and one sacct per cycle, decides
// resumes within the task's budget, honours cancels, and turns every change into an event in the
// journal's outbox.
//
//   TaskManager tm(options, &slurm, journal.get(), &clock);
//   RETURN_IF_ERROR(tm.Recover());        // after start: reconcile the journal with Slurm
//   tm.Accept(submit_task);               // a command from the controller
//   CycleStats s = tm.RunCycle();         // the tracker calls this on its adaptive interval
//
// Resume rule: TIMEOUT, PREEMPTED, NODE_FAIL and BOOT_FAIL end an attempt resumably; the next
// attempt is submitted in the same run directory with --dependency=afterany:<previous job>, unless
// the budget (max_walltime over all attempts, max_attempts) is spent, which ends the task
// BUDGET_EXHAUSTED. FAILED, OUT_OF_MEMORY, DEADLINE and CANCELLED are terminal.
//
// Exactly-once submission: an attempt is journaled with its job name (which carries the attempt
// id) before sbatch and its job id after; Recover() adopts a job found by name instead of
// submitting again.
//
// Slurm not answering never fails a task: the cycle reports the outage and tries again.
//
// Thread-compatible: the agent drives it from one thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/core/journal.h"
#include "agent/slurm/slurm_client.h"
#include "common/clock.h"

namespace evalctl::agent {

struct TaskManagerOptions {
  // A job not yet visible to squeue or sacct this long after its submission is considered lost.
  absl::Duration visibility_grace = absl::Minutes(3);
  // How many sbatch calls may run at once when many tasks arrive together.
  int submit_parallelism = 4;
  // Optional: called after each journal commit with the events it committed (with their
  // sequences), on the thread that drives the TaskManager. For metrics: it must be cheap and must
  // not call back into the TaskManager.
  std::function<void(const std::vector<v1::AgentEvent>&)> on_commit;
};

// The tracked jobs of a cycle by what Slurm said of them: waiting in the queue, running, ended
// (in this cycle), or unknown (not in Slurm's answers yet, a state evalctl does not know, or
// Slurm did not answer).
struct TrackedJobs {
  int queued = 0;
  int running = 0;
  int ended = 0;
  int unknown = 0;
};

struct CycleStats {
  int tracked_jobs = 0;
  // tracked_jobs by state (they add up to it).
  TrackedJobs jobs;
  // Tasks whose state, phase or progress changed in this cycle.
  int changes = 0;
  int slurm_calls = 0;
  bool slurm_reachable = true;
  std::string slurm_error;
};

class TaskManager {
 public:
  TaskManager(TaskManagerOptions options, SlurmClient* slurm, Journal* journal, Clock* clock);

  // Loads the journal and reconciles unfinished submissions with Slurm.
  absl::Status Recover();

  // Takes a task from the controller: journals it (secrets in the secret store), writes its script
  // into the run directory and submits attempt 1. Idempotent by task id.
  absl::Status Accept(const v1::SubmitTask& task);
  // Several tasks at once; submissions run with bounded parallelism.
  std::vector<absl::Status> AcceptBatch(const std::vector<v1::SubmitTask>& tasks);

  // Cancels the current attempt and any successor; no further attempt starts.
  absl::StatusOr<v1::Task> Cancel(const std::string& task_id);
  // Several tasks at once (one result per id, in order): one journal commit, and one
  // SlurmClient::Cancel call with every job id (SlurmCliClient runs one scancel per 500 ids).
  std::vector<absl::StatusOr<v1::Task>> CancelBatch(const std::vector<std::string>& task_ids);

  // Starts a new attempt of a FAILED, CANCELLED or BUDGET_EXHAUSTED task, with a fresh budget.
  absl::StatusOr<v1::Task> Resume(const std::string& task_id, const v1::ResumePolicy* policy);

  // One tracking cycle.
  CycleStats RunCycle();

  // Whether a job has written its phase file since it was last looked at: one lstat for each of
  // at most `max_files` active tasks with a job, taken in turn from where the previous call
  // stopped (so a shared filesystem sees a bounded rate however many jobs there are); no Slurm
  // call. The job script replaces the file at each phase (starting, ..., finished), so the
  // tracker can run its next cycle as soon as a job starts or ends instead of after a backed-off
  // interval. The first look at a task whose file exists reports a change.
  bool PhaseFilesChanged(size_t max_files = 1000);

  // Run directory and job id of an attempt (0 = newest), for log reads.
  absl::StatusOr<std::pair<std::string, std::string>> LogTarget(const std::string& task_id,
                                                                 int attempt) const;

  // Snapshot of a task's status.
  absl::StatusOr<v1::Task> Get(const std::string& task_id) const;
  int active_jobs() const;
  size_t task_count() const { return tasks_.size(); }

 private:
  struct Entry {
    JournaledTask journaled;
    // Secret env values (from the secret store), kept only while the task is active.
    std::map<std::string, std::string> secrets;
    // The phase file as PhaseFilesChanged last saw it (inode and mtime; 0 and 0: absent).
    uint64_t phase_inode = 0;
    int64_t phase_mtime_ns = 0;
  };

  bool IsActive(const v1::Task& t) const;
  v1::Attempt* Current(v1::Task& t);
  std::string JobName(const Entry& e, const v1::Attempt& a) const;

  // Adds a new attempt (without job id) to `e`, not yet journaled.
  void AddAttempt(Entry& e, v1::ResumeReason reason);
  // Journals a new attempt (without job id) for `e`, together with `events`.
  absl::Status StartAttempt(Entry& e, v1::ResumeReason reason,
                            const std::vector<v1::AgentEvent>& events);
  // Runs sbatch for the current, unsubmitted attempt of `e` and journals the result.
  absl::Status SubmitCurrent(Entry& e, const std::string& dependency);
  // Applies what Slurm says about the current attempt.
  bool Apply(Entry& e, const JobInfo& info, std::vector<v1::AgentEvent>& events);
  void Finish(Entry& e, v1::TaskState state, const std::string& reason,
              std::vector<v1::AgentEvent>& events);
  // After a resumable ending: the next attempt, or BUDGET_EXHAUSTED.
  void ResumeOrExhaust(Entry& e, v1::ResumeReason reason, const std::string& why,
                       std::vector<v1::AgentEvent>& events);
  v1::AgentEvent MakeEvent(const Entry& e, v1::TaskEvent::Kind kind) const;
  absl::Status Persist(const std::vector<const Entry*>& entries,
                       const std::vector<v1::AgentEvent>& events);
  absl::Status WriteScript(const Entry& e);
  // OK when the run directory's script is the one WriteScript wrote (its digest is journaled);
  // FAILED_PRECONDITION saying what differs otherwise.
  absl::Status CheckScript(const Entry& e) const;
  std::vector<std::pair<std::string, std::string>> SbatchEnv(const Entry& e) const;

  TaskManagerOptions options_;
  SlurmClient* slurm_;
  Journal* journal_;
  Clock* clock_;
  std::map<std::string, Entry> tasks_;
  // The task PhaseFilesChanged looked at last.
  std::string phase_cursor_;
};

}  // namespace evalctl::agent
