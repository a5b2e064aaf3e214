// `evalctl run --dry-run`: composes, validates and renders a configuration locally, without a
// controller, and prints (or writes) what would be submitted. Secrets are never printed or
// written: the resolved config shows `<secret> from $NAME`, the environment lists names only.
// Thread-compatible.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "controller/config/loader.h"

namespace evalctl::cli {

struct DryRunOptions {
  config::LoadRequest request;
  // When set, writes <dir>/config.yaml and <dir>/<task>/run.sub (and <dir>/<task>/env, names of
  // the job's environment with secrets redacted).
  std::string render_dir;
  // Invocation id and YYYYmmdd_HHMMSS timestamp used in run directories; fresh when empty.
  std::string invocation_id;
  std::string timestamp;
};

// `options.request` comes from client::LoadConfigRequest (clients/cpp/config_source.h), which
// reads the file and its config groups and collects the referenced environment.
absl::Status DryRun(const DryRunOptions& options, std::ostream& out);

}  // namespace evalctl::cli
