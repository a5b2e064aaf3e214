// FakeSlurm: a stateful in-memory Slurm cluster behind SlurmClient, driven by a FakeClock, for
// unit tests and benchmarks of the agent. No processes, no sleeps.
//
//   FakeClock clock;
//   FakeSlurm slurm(&clock, {.default_plan = {.pending_for = absl::Seconds(2),
//                                             .run_for = absl::Minutes(5)}});
//   ASSIGN_OR_RETURN(std::string id, slurm.Submit({.script_path = "/r/job.sh", .job_name = "t1"}));
//   clock.Advance(absl::Seconds(3));        // the job is RUNNING now
//   slurm.PreemptJob(id, /*requeue=*/true);  // PENDING again, same id, Restarts=1
//   EXPECT_EQ(slurm.calls().queue, 0);
//
// Jobs move PENDING → RUNNING → (COMPLETED | FAILED | TIMEOUT | ...) as the clock passes the
// times of their plan (FakeJobPlan); state is computed from the clock on every call, with exact
// transition times, so a large Advance() is fine. Test hooks end, preempt or requeue a job at the
// current time, take slurmctld or slurmdbd "down", delay accounting, and reject submissions.
//
// What each method reports mirrors SlurmCliClient on Slurm 22.05, so that code tested against the
// fake works against the real thing:
//   - Queue (squeue): pending/running jobs and ended ones until `min_job_age` after their end;
//     no exit code, restarts 0 (squeue -o has neither). A COMPLETING phase of `completing_for`
//     after each end, including the end of a run that was requeued (then PENDING again).
//   - Accounting (sacct -X -D): a record per run; a record is invisible until `accounting_lag`
//     after its submission (so right after a requeue the newest visible record is the ended run);
//     the exit code modulo 128 (the 22.05 bug, unless disabled); CANCELLED shows exit 0:0.
//   - Show (scontrol): the whole exit code and Restarts; NOT_FOUND after min_job_age.
//   - Dependencies `afterany:`, `afterok:`, `afternotok:`, `after:` (several ids with ':', several
//     clauses with ','). A dependency on an unknown (e.g. purged) job counts as satisfied, as in
//     Slurm; an afterok whose parent failed leaves the job PENDING with DependencyNeverSatisfied.
//   - Cancel of unknown or ended jobs is not an error.
//
// Thread-safe: every method takes an internal lock; the clock is only read.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/slurm/slurm_client.h"
#include "common/clock.h"

namespace evalctl::agent {

// How one run of a job goes when nothing intervenes.
struct FakeJobPlan {
  // From submission (or requeue eligibility, or the dependency being satisfied) to start.
  absl::Duration pending_for = absl::Seconds(1);
  // From start to end. absl::InfiniteDuration(): runs until a hook ends it.
  absl::Duration run_for = absl::Seconds(10);
  // State at the end: COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...
  std::string final_state = "COMPLETED";
  int exit_code = 0;
  int signal = 0;
};

struct FakeSlurmOptions {
  FakeJobPlan default_plan;
  // An ended job stays in Queue/Show this long (slurm.conf MinJobAge).
  absl::Duration min_job_age = absl::Seconds(30);
  // Queue/Show report COMPLETING this long after a run's end (also before a requeued job is
  // PENDING again).
  absl::Duration completing_for = absl::ZeroDuration();
  // A run's record is absent from Accounting until this long after its submission.
  absl::Duration accounting_lag = absl::ZeroDuration();
  // A requeued job is eligible again after this (cred_expire + 1 s; 121 s in a default Slurm).
  absl::Duration requeue_delay = absl::Seconds(11);
  // Accounting reports exit codes modulo 128, like sacct in Slurm 22.05.
  bool accounting_exit_code_modulo_128 = true;
  std::string partition = "debug";
  std::string node_list = "node1";
  int64_t first_job_id = 1;
};

class FakeSlurm : public SlurmClient {
 public:
  explicit FakeSlurm(Clock* clock, FakeSlurmOptions options = {});

  // SlurmClient.
  absl::StatusOr<std::string> Submit(const SubmitRequest& request) override;
  absl::StatusOr<std::vector<JobInfo>> Queue(const std::vector<std::string>& job_ids) override;
  absl::StatusOr<std::vector<JobInfo>> Accounting(const std::vector<std::string>& job_ids) override;
  absl::StatusOr<std::vector<JobInfo>> FindByName(const std::vector<std::string>& names,
                                                  absl::Time since) override;
  absl::StatusOr<JobInfo> Show(const std::string& job_id) override;
  absl::Status Cancel(const std::vector<std::string>& job_ids) override;

  // --- plans
  // Plan of jobs submitted from now on (unless SetPlanForName matches).
  void SetDefaultPlan(const FakeJobPlan& plan);
  // Plan of jobs submitted from now on with this exact name.
  void SetPlanForName(const std::string& name, const FakeJobPlan& plan);
  // Replaces the plan of the job's current run (times still count from its submission/start).
  // NOT_FOUND for an unknown job, FAILED_PRECONDITION when the run has ended.
  absl::Status SetPlan(const std::string& job_id, const FakeJobPlan& plan);

  // --- things that happen now, to a pending or running job (FAILED_PRECONDITION when it has
  // ended, NOT_FOUND when unknown)
  // Ends FAILED with this exit code (Reason=NonZeroExitCode), or COMPLETED for 0.
  absl::Status FailJob(const std::string& job_id, int exit_code);
  // Ends TIMEOUT (Reason=TimeLimit, exit 0, signal 15).
  absl::Status TimeOutJob(const std::string& job_id);
  // requeue: this run ends PREEMPTED and the job is PENDING again under the same id
  //   (Reason=BeginTime, Restarts+1, eligible after requeue_delay); else the job ends PREEMPTED.
  absl::Status PreemptJob(const std::string& job_id, bool requeue);
  // The same with NODE_FAIL (Reason=NodeDown); requeue unless the job had --no-requeue.
  absl::Status NodeFailJob(const std::string& job_id, bool requeue);
  // `scontrol requeue`: this run ends REQUEUED, the job is PENDING again.
  absl::Status RequeueJob(const std::string& job_id);

  // --- the cluster
  // slurmctld down: Submit, Queue, Show, Cancel and FindByName return UNAVAILABLE.
  void SetControllerDown(bool down);
  // slurmdbd down: Accounting and FindByName return UNAVAILABLE (Submit still works, as in Slurm).
  void SetAccountingDown(bool down);
  void SetAccountingLag(absl::Duration lag);
  // Every Submit fails with `status` until it is set to OK again (e.g. INVALID_ARGUMENT
  // "sbatch: error: invalid partition specified").
  void SetSubmitError(absl::Status status);
  // The next Submit creates the job but returns UNAVAILABLE, as when sbatch times out after
  // slurmctld accepted the job.
  void LoseNextSubmitResponse();

  // --- what happened
  struct CallCounts {
    int submit = 0;      // sbatch
    int queue = 0;       // squeue
    int accounting = 0;  // sacct
    int find_by_name = 0;
    int show = 0;    // scontrol show job
    int cancel = 0;  // scancel
  };
  // Calls per method, failed ones included.
  CallCounts calls() const;
  void ResetCalls();

  struct Submission {
    std::string job_id;  // empty when the submission was rejected
    SubmitRequest request;
    absl::Time time;
  };
  // Every Submit call, in order, with the environment it was given.
  std::vector<Submission> submissions() const;
  // Ids of the jobs with this name, in submission order.
  std::vector<std::string> JobIdsByName(const std::string& name) const;

 private:
  // One run of a job (one sacct record).
  struct Run {
    absl::Time submit;
    absl::Time eligible;  // not before this (requeue BeginTime)
    FakeJobPlan plan;
    absl::Time start = absl::InfinitePast();  // InfinitePast: not started
    absl::Time end = absl::InfinitePast();    // InfinitePast: not ended
    std::string end_state;
    std::string end_reason;
    int exit_code = 0;
    int signal = 0;
    bool started() const { return start != absl::InfinitePast(); }
    bool ended() const { return end != absl::InfinitePast(); }
  };
  struct Dependency {
    std::string type;  // after, afterany, afterok, afternotok
    std::string job_id;
  };
  struct Job {
    std::string id;
    std::string name;
    std::vector<Dependency> dependencies;
    std::vector<Run> runs;  // never empty; the last is the current one
    std::string reason;     // while pending
  };

  // Moves every job forward to `now` (starts and planned ends at their exact times).
  void AdvanceLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When the dependencies of `job` are satisfied: InfinitePast() when there are none or all are,
  // since before the job was submitted; InfiniteFuture() when not (yet); sets `never` when they
  // can no longer be.
  absl::Time DependenciesMetLocked(const Job& job, bool* never) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Job* FindLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job's current run, ready for a hook: NOT_FOUND / FAILED_PRECONDITION otherwise.
  absl::StatusOr<Job*> ActiveJobLocked(const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndRunLocked(Job* job, absl::Time now, const std::string& state, const std::string& reason,
                    int exit_code, int signal, bool requeue) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool PurgedLocked(const Job& job, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobInfo QueueViewLocked(const Job& job, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // false when slurmdbd has no record of the job yet.
  bool AccountingViewLocked(const Job& job, absl::Time now, JobInfo* out) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobInfo ShowViewLocked(const Job& job, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const FakeSlurmOptions options_;

  mutable absl::Mutex mu_;
  FakeJobPlan default_plan_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, FakeJobPlan> plans_by_name_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Job> jobs_ ABSL_GUARDED_BY(mu_);  // by numeric id, so dependencies come first
  int64_t next_id_ ABSL_GUARDED_BY(mu_);
  bool controller_down_ ABSL_GUARDED_BY(mu_) = false;
  bool accounting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration accounting_lag_ ABSL_GUARDED_BY(mu_);
  absl::Status submit_error_ ABSL_GUARDED_BY(mu_);
  bool lose_next_submit_response_ ABSL_GUARDED_BY(mu_) = false;
  CallCounts calls_ ABSL_GUARDED_BY(mu_);
  std::vector<Submission> submissions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace evalctl::agent
