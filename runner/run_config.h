// nemo-evaluator's run configuration (the file EVALCTL_RUN_CONFIG names), as far as
// evalctl-runner understands it:
//
//   config:
//     params:
//       limit_samples: 100      -> --limit
//       max_new_tokens: 256     -> --max-tokens
//       temperature: 0.0        -> --temperature
//       top_p: 0.95             -> --top-p
//       parallelism: 16         -> --concurrency
//       request_timeout: 300    -> --request-timeout-s
//       max_retries: 5          -> --max-retries
//
// (a top-level `params:` is read the same way). Other keys are ignored. A flag given on the
// command line wins over the file.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runner/runner.h"

namespace evalctl::runner {

// `flag_given(name)` says whether the command line set the flag (e.g. "--limit").
absl::Status ApplyRunConfig(const std::string& yaml_text,
                            const std::function<bool(const std::string&)>& flag_given,
                            RunnerOptions& options);

}  // namespace evalctl::runner
