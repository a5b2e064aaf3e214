// Turns a user's configuration into a validated InvocationSpec: compose (compose.h), check keys,
// resolve interpolations (interpolation.h), check types and rules, expand tasks, merge
// environment variables. The controller calls it for every plan and submit; `evalctl run
// --dry-run` calls it locally.
//
//   LoadRequest req{.yaml = text, .file_name = "my.yaml", .overrides = {...},
//                   .environment = {{"HF_TOKEN", "..."}, {"USER", "alice"}}};
//   ASSIGN_OR_RETURN(InvocationSpec spec, LoadInvocation(req));
//
// Errors are INVALID_ARGUMENT; the message has one line per problem, each with file, line, key
// path, what is wrong and how to fix it. Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/config/catalog.h"
#include "controller/config/compose.h"
#include "controller/config/interpolation.h"
#include "controller/config/model.h"

namespace evalctl::config {

struct LoadRequest {
  std::string yaml;
  std::string file_name = "config.yaml";
  std::vector<std::string> overrides;
  // `-t NAME`: keep only tasks with this name (or dir name `name.N`).
  std::vector<std::string> task_filter;
  // The user's environment variables the config may read (${oc.env:X}, host:X). Secrets.
  Environment environment;
  GroupFiles user_groups;
};

absl::StatusOr<InvocationSpec> LoadInvocation(const LoadRequest& request,
                                              const Catalog& catalog = Catalog::Builtin());

// Names of the environment variables a config refers to (${oc.env:X} and host:X in the file, the
// overrides and the groups), so that a client sends only those. Over-approximates: a reference in
// a group that is not selected is included too.
std::vector<std::string> ReferencedEnvironment(const LoadRequest& request);

// Keys whose values may come from ${oc.env:...} without being secrets: they name things (a user,
// a host, an account, a directory) and must appear in the job script.
bool IsIdentityKey(absl::string_view path);

}  // namespace evalctl::config
