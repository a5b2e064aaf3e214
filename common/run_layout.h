// The contract between a task's job script and the agent that tracks it: the layout of the run
// directory on the cluster's shared filesystem (what the job script, rendered by
// controller/config/render.cc, writes and the agent reads) and what the job's exit codes mean.
// Both sides use these names and numbers, never literals.
//
//   <output_dir>/<YYYYmmdd_HHMMSS>-<invocation>/<task dir>/
//     run.sub                    the batch script
//     logs/slurm-<job>.log       batch script output (--open-mode=append)
//     logs/client-<job>.log      evaluation output
//     logs/server-<i>-<job>-<t>.log  model server output
//     .evalctl/phase             one word of kPhaseWords, replaced atomically
//     .evalctl/eval_exit_code    the evaluation's raw exit code
//     artifacts/                 /results of the harness: progress, cache/, results.yml
//     artifacts/nemo_evaluator_config.yaml  the task's nemo_evaluator_config, written by the job
//                                for the harness (EVALCTL_RUN_CONFIG names it)
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace evalctl::layout {

inline constexpr char kScriptFile[] = "run.sub";
inline constexpr char kPhaseFile[] = ".evalctl/phase";
inline constexpr char kExitCodeFile[] = ".evalctl/eval_exit_code";
inline constexpr char kProgressFile[] = "artifacts/progress";
inline constexpr char kResultsFile[] = "artifacts/results.yml";
// Relative to artifacts/ (which is /results in a container).
inline constexpr char kRunConfigName[] = "nemo_evaluator_config.yaml";
// Words written to kPhaseFile, in order.
inline constexpr const char* kPhaseWords[] = {"starting",   "deploying", "waiting_for_endpoint",
                                              "evaluating", "finishing", "finished"};

// A Slurm job name made of a safe alphabet: every byte outside [A-Za-z0-9._+-] becomes '_'. Job
// names hold the user's execution.account, execution.subproject and task names; the agent passes
// them to `squeue --name=` (a comma-separated list) and reads them from `sacct --parsable2`
// (`|`-separated), so a comma or a bar in them would break every lookup of the agent.
inline std::string SafeJobName(absl::string_view name) {
  std::string out(name);
  for (char& c : out) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '+' || c == '-';
    if (!safe) c = '_';
  }
  return out;
}

// Exit codes of the job. sacct 22.05 shows exit codes modulo 128, so all are below 128.
//   0          the evaluation exited 0 (a shared job: every evaluation did)
//   1-119      the evaluation's own exit code (a shared job: the first non-zero one, in task order)
//   120-123    evalctl's own endings, below
//   125        the evaluation exited with 120-255 (128+N: killed by signal N); see kExitCodeFile
// The script always tears the deployment down before it exits.
inline constexpr int kExitSetupFailed = 120;      // run directory, srun, nodes, secrets, curl
inline constexpr int kExitServerDied = 121;       // a server (or haproxy) step ended before ready
inline constexpr int kExitEndpointTimeout = 122;  // not ready within endpoint_readiness_timeout
// SIGTERM reached the job (cancel, preemption, time limit), the evaluation exited non-zero after
// the pre-timeout USR1 (it saved its state and stopped), or the harness left
// artifacts/.nemo_evaluator_interrupted during this attempt: the evaluation did not finish. The
// agent resumes a job that ends FAILED with this code, like a time-limit ending.
inline constexpr int kExitInterrupted = 123;
inline constexpr int kExitEvalCodeOutOfRange = 125;

// What a job's exit code means, for a task's reason.
inline const char* ExplainExitCode(int code) {
  switch (code) {
    case kExitSetupFailed:
      return "the job script's setup failed (see the Slurm log)";
    case kExitServerDied:
      return "the model server exited before it became ready (see logs/server-*.log)";
    case kExitEndpointTimeout:
      return "the model server did not become ready in time (endpoint_readiness_timeout)";
    case kExitInterrupted:
      return "the job was interrupted";
    case kExitEvalCodeOutOfRange:
      return "the evaluation was killed by a signal or exited with a code >= 120";
    default:
      return nullptr;  // the evaluation's own exit code
  }
}

}  // namespace evalctl::layout
