// Builds what `evalctl run` sends from a configuration file on the user's machine: the YAML, the
// user's config groups found next to it, overrides, the task filter and the values of the
// environment variables the configuration references (and only those).
//
//   ConfigFileOptions opts{.path = "my.yaml", .overrides = {"execution.walltime=02:00:00"}};
//   ASSIGN_OR_RETURN(v1::ConfigSource source, BuildConfigSource(opts));   // for the controller
//   ASSIGN_OR_RETURN(config::LoadRequest req, LoadConfigRequest(opts));   // for a local dry run
//
// Config groups: every `*.yaml` below a subdirectory of the config file's directory (Hydra uses
// that directory as its config dir), at most 4 levels deep; `deployment/mine.yaml` is the group
// option `deployment: mine`. `group_dirs` adds more roots; a later root replaces a file an earlier
// one had.
//
// Environment: the names come from config::ReferencedEnvironment (`${oc.env:X}`, `host:X` in the
// file, the overrides and the groups); a variable that is unset is left out. USER is filled from
// the password database when the environment lacks it, since execution.username defaults to it.
//
// Errors: NOT_FOUND, INVALID_ARGUMENT (not a regular file, too large, too many group files),
// PERMISSION_DENIED (cannot read). Thread-safe (reads the process environment).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/config/loader.h"
#include "evalctl/v1/eval_service.pb.h"

namespace evalctl::client {

struct ConfigFileOptions {
  std::string path;
  std::vector<std::string> overrides;
  std::vector<std::string> task_filter;
  // More directories of config groups, after the config file's own directory.
  std::vector<std::string> group_dirs;
};

inline constexpr size_t kMaxConfigBytes = 1 << 20;
inline constexpr size_t kMaxGroupFiles = 256;

absl::StatusOr<config::LoadRequest> LoadConfigRequest(const ConfigFileOptions& options);

absl::StatusOr<evalctl::v1::ConfigSource> BuildConfigSource(const ConfigFileOptions& options);

// The wire form of a request built by LoadConfigRequest.
evalctl::v1::ConfigSource ToConfigSource(const config::LoadRequest& request);

// Fills `request.environment` with the variables the config refers to that are set in this
// process's environment (and only those), plus USER.
void CollectEnvironment(config::LoadRequest& request);

}  // namespace evalctl::client
