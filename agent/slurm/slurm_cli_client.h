// SlurmCliClient: the SlurmClient that runs Slurm's own command-line tools (sbatch, squeue, sacct,
// scontrol, scancel) on this host, each as a child process without a shell and with a timeout.
//
//   SlurmCliClient slurm({.env = {{"SLURM_CONF", "/etc/slurm/slurm.conf"}}});
//   ASSIGN_OR_RETURN(std::string id, slurm.Submit({.script_path = script, .job_name = name,
//                                                  .env = {{"HF_TOKEN", token}}}));
//   ASSIGN_OR_RETURN(std::vector<JobInfo> queued, slurm.Queue(ids));   // one squeue per 500 ids
//
// Commands (formats in slurm_parse.h):
//   Submit      sbatch --parsable --export=ALL --job-name=NAME [--dependency=DEP] SCRIPT
//               (request.env only in sbatch's environment, never on its command line)
//   Queue       squeue -h -t all --jobs=ID,... -o kSqueueFormat
//   Accounting  sacct -X -D -n --parsable2 --jobs=ID,... --format=kSacctFormat
//   FindByName  squeue -h -t all --name=N,... -o ...  and  sacct -X -D -n --parsable2 --name=N,...
//               -S SINCE --format=...
//   Show        scontrol show job -o ID
//   Cancel      scancel ID ...
// Every child gets SIGKILL when the agent dies (SubprocessOptions::die_with_parent): a killed
// agent leaves no sbatch behind that could submit after the restarted agent has looked the job
// up by name. Every child gets Options::env; sbatch also the request's env. The query commands get
// SLURM_TIME_FORMAT=standard on top, so that times parse whatever the environment says.
//
// Errors: slurmctld/slurmdbd not answering (connection refused, "Unable to contact slurm
// controller", socket timeouts, a missing configuration source) and a command that outlives the
// timeout → UNAVAILABLE. sbatch rejecting the job (invalid partition, node, dependency, time
// spec, unreadable script, ...) → INVALID_ARGUMENT; a policy/limit rejection (QOS, association,
// submit limits) → FAILED_PRECONDITION; the message is Slurm's own error lines. A Slurm binary
// that cannot be run → FAILED_PRECONDITION. Anything else → UNKNOWN with the command's stderr.
// An sbatch that timed out or failed in an unknown way may still have submitted the job: use
// FindByName before submitting again.
//
// Thread-safe: the options are immutable and every call is independent.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/slurm/slurm_client.h"
#include "common/subprocess.h"

namespace evalctl::agent {

struct SlurmCliOptions {
  // The binaries: a name looked up in PATH, or a path.
  std::string sbatch = "sbatch";
  std::string squeue = "squeue";
  std::string sacct = "sacct";
  std::string scontrol = "scontrol";
  std::string scancel = "scancel";
  // Timeout of each child process (then SIGTERM, SIGKILL after 2 s).
  absl::Duration timeout = absl::Seconds(30);
  // Ids (or names) per squeue/sacct/scancel command; longer lists take several commands, so that
  // a command line stays bounded.
  size_t max_ids_per_command = 500;
  // Set in every child's environment, e.g. SLURM_CONF.
  std::vector<std::pair<std::string, std::string>> env;
  // When set, FindByName sees only this user's jobs (squeue/sacct --user): a job that another
  // user named like one of ours is never adopted.
  std::string user;
};

class SlurmCliClient : public SlurmClient {
 public:
  explicit SlurmCliClient(SlurmCliOptions options = {});

  absl::StatusOr<std::string> Submit(const SubmitRequest& request) override;
  absl::StatusOr<std::vector<JobInfo>> Queue(const std::vector<std::string>& job_ids) override;
  absl::StatusOr<std::vector<JobInfo>> Accounting(const std::vector<std::string>& job_ids) override;
  absl::StatusOr<std::vector<JobInfo>> FindByName(const std::vector<std::string>& names,
                                                  absl::Time since) override;
  absl::StatusOr<JobInfo> Show(const std::string& job_id) override;
  absl::Status Cancel(const std::vector<std::string>& job_ids) override;

  // The argv of the sbatch command for `request` (no environment), for tests and logs.
  std::vector<std::string> SbatchArgv(const SubmitRequest& request) const;

 private:
  // Runs one command; OK with the result when the child ran (whatever its exit status), else
  // the mapped error of starting it or of its timeout.
  // `parses_times`: the output has times (SLURM_TIME_FORMAT=standard is set).
  absl::StatusOr<SubprocessResult> Run(
      std::vector<std::string> argv, bool parses_times,
      const std::vector<std::pair<std::string, std::string>>& extra_env = {},
      const std::string& working_dir = "") const;

  absl::StatusOr<std::vector<JobInfo>> SqueueByName(const std::vector<std::string>& names);
  absl::StatusOr<std::vector<JobInfo>> SacctByName(const std::vector<std::string>& names,
                                                   absl::Time since);

  const SlurmCliOptions options_;
};

// How a failed Slurm command maps to a status (exposed for tests): `what` names the command.
// Connection problems and timeouts → UNAVAILABLE, anything else → UNKNOWN; both carry the
// command's stderr.
absl::Status SlurmCommandError(absl::string_view what, const SubprocessResult& result);

// The same for sbatch, which also knows rejections: INVALID_ARGUMENT or FAILED_PRECONDITION.
absl::Status SbatchError(const SubprocessResult& result);

}  // namespace evalctl::agent
