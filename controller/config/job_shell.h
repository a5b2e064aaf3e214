// The fixed shell code of every rendered job: real shell files in controller/config/job/ (read
// there by shellcheck, see job_shell_test.cc), compiled in by cmake/embed_shell.cmake. Each
// function returns the file's bytes as they are, final newline included; @NAME@ tokens (exit
// codes, run-directory files) are replaced by the renderer (render.cc) before use.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace evalctl::config {

// lib.sh: the functions every job uses (logging, phases, steps, signals, teardown).
absl::string_view JobLibrary();
// deploy_lib.sh: the functions of a job with a deployment (readiness wait, instance selection).
absl::string_view JobDeployLibrary();
// server_driver.sh: what each deployment task runs with `bash -c`; $1 = deployment.pre_cmd,
// sourced first; $2 = deployment.command. PROC_ID is NEL's name for the task's rank.
absl::string_view ServerDriver();
// eval_driver.sh: what the evaluation task runs with `bash -c`; $1 = pre_cmd, sourced first;
// $2 = the task's command; $3 = post_cmd, run from an EXIT trap that keeps the exit code. Slurm
// signals every process of a step, so this shell ignores USR1/TERM (the harness gets them
// itself) and waits.
absl::string_view EvalDriver();

// `text` with its @NAME@ tokens replaced: @PHASE_FILE@, @EXIT_CODE_FILE@ (run-directory files)
// and @EXIT_SETUP@, @EXIT_SERVER_DIED@, @EXIT_TIMEOUT@, @EXIT_INTERRUPTED@, @EXIT_OUT_OF_RANGE@
// (the job's exit codes), from common/run_layout.h.
std::string ResolveJobTokens(absl::string_view text);

// What a rendered script holds of this code, as one block: the drivers in EVALCTL_SERVER_DRIVER
// (with a deployment) and EVALCTL_EVAL_DRIVER, then the libraries, tokens resolved.
std::string JobShellBlock(bool deploy);

}  // namespace evalctl::config
