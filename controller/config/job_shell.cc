#include "controller/config/job_shell.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/run_layout.h"
#include "controller/config/render.h"

namespace evalctl::config {

std::string ResolveJobTokens(absl::string_view text) {
  return absl::StrReplaceAll(
      text, {{"@PHASE_FILE@", layout::kPhaseFile},
             {"@EXIT_CODE_FILE@", layout::kExitCodeFile},
             {"@EXIT_SETUP@", absl::StrCat(layout::kExitSetupFailed)},
             {"@EXIT_SERVER_DIED@", absl::StrCat(layout::kExitServerDied)},
             {"@EXIT_TIMEOUT@", absl::StrCat(layout::kExitEndpointTimeout)},
             {"@EXIT_INTERRUPTED@", absl::StrCat(layout::kExitInterrupted)},
             {"@EXIT_OUT_OF_RANGE@", absl::StrCat(layout::kExitEvalCodeOutOfRange)}});
}

std::string JobShellBlock(bool deploy) {
  std::string out;
  // The drivers go into a variable each, without their file's final newline.
  if (deploy) {
    absl::StrAppend(
        &out, "EVALCTL_SERVER_DRIVER=", ShellQuote(absl::StripSuffix(ServerDriver(), "\n")), "\n");
  }
  absl::StrAppend(&out, "EVALCTL_EVAL_DRIVER=", ShellQuote(absl::StripSuffix(EvalDriver(), "\n")),
                  "\n\n", ResolveJobTokens(JobLibrary()));
  if (deploy) absl::StrAppend(&out, "\n", ResolveJobTokens(JobDeployLibrary()));
  absl::StrAppend(&out, "\n");
  return out;
}

}  // namespace evalctl::config
