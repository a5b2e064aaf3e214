// The layout of a task's run directory on the cluster's shared filesystem: what the job script
// (controller/config/render.cc) writes and the agent reads.
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

}  // namespace evalctl::layout
