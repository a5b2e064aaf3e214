// Renders the Slurm batch job of a task from a validated InvocationSpec: the script (with its
// #SBATCH options) and the environment of the sbatch process.
//
// The script never holds a secret value. Secrets (EnvVar::Source::kHost) are passed in the sbatch
// process's environment under a group-qualified name (EVALCTL_SECRET_<GROUP>_<NAME>) and exported
// under their own name only inside the step that needs them (deployment or evaluation), with no
// xtrace. Every user-supplied string is shell-quoted. Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/run_layout.h"
#include "controller/config/model.h"

namespace evalctl::config {

// Files the job writes in its run directory for the agent to read. The agent creates the run
// directory and its `logs/` before sbatch (Slurm opens --output=<run_dir>/logs/slurm-%j.log before
// the script runs); the script creates the rest.
// The names are defined once, in common/run_layout.h, which the agent reads by.
// kExitCodeFile (the evaluation step's raw exit code, 0-255) is removed when an attempt starts, so
// it is absent when the evaluation did not end in this attempt (e.g. the deployment failed). A
// shared job keeps a task's `0` from an earlier attempt and does not run it again.
using layout::kExitCodeFile;
using layout::kPhaseFile;
using layout::kPhaseWords;
using layout::kProgressFile;
using layout::kResultsFile;

// Exit codes of the job: common/run_layout.h.
using layout::kExitEndpointTimeout;
using layout::kExitEvalCodeOutOfRange;
using layout::kExitInterrupted;
using layout::kExitServerDied;
using layout::kExitSetupFailed;

struct JobEnv {
  std::string name;
  std::string value;
  bool secret = false;
};

struct RenderedTaskJob {
  // The batch script, #SBATCH options included; the agent adds --job-name and --dependency on
  // sbatch's command line.
  std::string script;
  // Environment of the sbatch process (the job inherits it with --export=ALL): the secrets, as
  // EVALCTL_SECRET_<GROUP>_<NAME> with GROUP `DEP` (deployment) or `EVAL` (`EVAL<task index>` in a
  // shared job, whose tasks may give one name different values). Literals are in the script.
  std::vector<JobEnv> env;
  // `<invocation run dir>/<task dir_name>`.
  std::string run_dir;
  // `<account>-<subproject>.<task dir_name>`; the agent appends `.<attempt id>`.
  std::string job_name_prefix;
  std::string partition;
};

// `<output_dir>/<YYYYmmdd_HHMMSS>-<invocation id>`; `timestamp` is that YYYYmmdd_HHMMSS.
std::string InvocationRunDir(const Execution& execution, absl::string_view timestamp,
                             absl::string_view invocation_id);

// One job for one task. Invalid input (a path that is relative or holds `..`, a value that cannot
// go on an #SBATCH line, a bad variable name, ...) is InvalidArgument naming the key, e.g.
// `execution.mounts.deployment: must be an absolute path, not `data``.
absl::StatusOr<RenderedTaskJob> RenderTaskJob(const InvocationSpec& spec, const TaskSpec& task,
                                              absl::string_view invocation_id,
                                              absl::string_view invocation_run_dir);

// `execution.shared_deployment: true`: one job whose deployment serves every task; the tasks'
// evaluations run one after another in that allocation, each in its own run directory, with its
// own phase, logs and results. `run_dir` of the result is the invocation run dir.
absl::StatusOr<RenderedTaskJob> RenderSharedJob(const InvocationSpec& spec,
                                                absl::string_view invocation_id,
                                                absl::string_view invocation_run_dir);

// Single-quotes `s` for bash: abc → 'abc', it's → 'it'\''s'.
std::string ShellQuote(absl::string_view s);

}  // namespace evalctl::config
