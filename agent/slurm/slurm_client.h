// SlurmClient: everything the agent asks of Slurm, behind one small interface.
//
// SlurmCliClient (slurm_cli_client.h) runs sbatch/squeue/sacct/scancel/scontrol as child
// processes; FakeSlurm (fake_slurm.h) is a stateful in-memory cluster for unit tests. Callers batch:
// one Queue() and one Accounting() call per tracking cycle for all jobs, however many.
//
// Error codes follow the retry rule: slurmctld or slurmdbd not answering → UNAVAILABLE (the agent
// keeps trying and never fails a task because of it); a rejected submission (bad partition,
// account, ...) → INVALID_ARGUMENT or FAILED_PRECONDITION with Slurm's message.
// Implementations are thread-safe.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace evalctl::agent {

// One job as Slurm reports it. Fields a source does not know stay empty / unset.
struct JobInfo {
  std::string job_id;
  std::string name;
  // Base state word: PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT,
  // PREEMPTED, NODE_FAIL, BOOT_FAIL, OUT_OF_MEMORY, DEADLINE, REQUEUED, SUSPENDED, ...
  // ("CANCELLED by 0" → "CANCELLED").
  std::string state;
  std::string reason;
  // Exit status of the batch script and the signal that ended it. sacct reports the status
  // modulo 128 (Slurm 22.05); scontrol reports it whole.
  std::optional<int> exit_code;
  std::optional<int> signal;
  // Times Slurm requeued the job (scontrol Restarts=, or the count of older sacct -D records).
  int restarts = 0;
  absl::Time submit_time = absl::InfinitePast();
  absl::Time start_time = absl::InfinitePast();
  absl::Time end_time = absl::InfinitePast();
  int64_t elapsed_seconds = 0;
  std::string node_list;
  std::string partition;
};

struct SubmitRequest {
  // The batch script file (already written in the run directory).
  std::string script_path;
  std::string job_name;
  // Working directory of sbatch itself (the job's --chdir is in the script).
  std::string working_dir;
  // `afterany:<id>` etc.; empty for none.
  std::string dependency;
  // Environment of the sbatch process; the job inherits it (--export=ALL). May hold secrets:
  // never put on a command line or logged.
  std::vector<std::pair<std::string, std::string>> env;
};

class SlurmClient {
 public:
  virtual ~SlurmClient() = default;

  // sbatch --parsable; returns the job id.
  virtual absl::StatusOr<std::string> Submit(const SubmitRequest& request) = 0;

  // squeue for these job ids (jobs slurmctld still holds, including recently finished ones up to
  // MinJobAge). Unknown ids are simply absent.
  virtual absl::StatusOr<std::vector<JobInfo>> Queue(const std::vector<std::string>& job_ids) = 0;

  // sacct for these job ids, one JobInfo per job (the newest record; `restarts` counts the older
  // ones). A job slurmdbd has not seen yet is absent.
  virtual absl::StatusOr<std::vector<JobInfo>> Accounting(
      const std::vector<std::string>& job_ids) = 0;

  // Jobs with these names, from squeue and sacct (for adopting a job submitted just before a
  // crash). Searches jobs submitted since `since`.
  virtual absl::StatusOr<std::vector<JobInfo>> FindByName(const std::vector<std::string>& names,
                                                          absl::Time since) = 0;

  // scontrol show job: the authoritative exit code while slurmctld still knows the job.
  // NOT_FOUND once it was purged.
  virtual absl::StatusOr<JobInfo> Show(const std::string& job_id) = 0;

  // scancel; ids Slurm no longer knows are not an error.
  virtual absl::Status Cancel(const std::vector<std::string>& job_ids) = 0;
};

}  // namespace evalctl::agent
