#include "controller/config/job_shell.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/run_layout.h"

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

}  // namespace evalctl::config
