// Helpers for tests that drive the real local Slurm cluster (deploy/dev/cluster.sh) with its own
// command-line tools. Every helper fails the test loudly when Slurm does not answer; nothing skips.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/testing/wait_for.h"

namespace evalctl::testing {

// Fails the current test unless SLURM_CONF is set and slurmctld answers.
void RequireCluster();

struct CommandOutput {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a Slurm client command (argv, no shell) with a 30 s timeout.
CommandOutput Slurm(const std::vector<std::string>& argv);

// Submits with `sbatch --parsable` and returns the job id; fails the test on error.
std::string Sbatch(const std::vector<std::string>& options, const std::string& script);

// The first-record State column of `sacct -j ID` (`-D` includes requeued instances), one entry
// per job record (steps excluded); empty while slurmdbd has not seen the job.
std::vector<std::string> SacctStates(const std::string& job_id, bool duplicates = false);

// A field of `scontrol show job -o ID`, e.g. "JobState"; empty when the job is unknown.
std::string ScontrolField(const std::string& job_id, const std::string& field);

// How often a test waiting on the cluster polls (WaitFor, common/testing/wait_for.h): each poll
// may run a Slurm command or ask the controller.
inline constexpr absl::Duration kClusterPoll = absl::Milliseconds(200);

// Cancels jobs at scope exit, so a failing test leaves nothing running.
class JobReaper {
 public:
  JobReaper() = default;
  ~JobReaper();
  JobReaper(const JobReaper&) = delete;
  JobReaper& operator=(const JobReaper&) = delete;
  const std::string& Add(const std::string& job_id);

 private:
  std::vector<std::string> jobs_;
};

}  // namespace evalctl::testing
