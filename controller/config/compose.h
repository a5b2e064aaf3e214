// Hydra-style composition: a user YAML file with a `defaults:` list is combined with config groups
// (built-in ones and the user's own) and `-o` overrides into one unresolved tree.
//
//   ComposeInput in{.yaml = text, .file_name = "my.yaml", .overrides = {"execution.walltime=2:00:00"}};
//   ASSIGN_OR_RETURN(Node tree, Compose(in, BuiltinGroups()));
//
// Order, as in Hydra 1.1+ with NEL's root config: the root `default.yaml` (its own values), then
// each entry of the user's defaults list (groups under their package, e.g. deployment/vllm.yaml
// under `deployment:`), `_self_` (the user's file; last when not listed), then overrides in order.
// OmegaConf merge rules (see MergeInto): maps merge, lists and scalars replace, `???` does not
// replace a value.
// Pure functions; thread-safe.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/config/node.h"

namespace evalctl::config {

// Config group files by path relative to a search root: "deployment/vllm.yaml" → content.
using GroupFiles = std::map<std::string, std::string>;

struct ComposeInput {
  std::string yaml;
  std::string file_name;
  std::vector<std::string> overrides;
  // The user's own groups; they shadow built-in files with the same path.
  GroupFiles user_groups;
};

// Merges `overlay` into `base` (OmegaConf.merge semantics): maps merge key by key, lists and
// scalars replace, null replaces anything and anything replaces null, `???` replaces nothing that
// is there (not null, not `{}`), and interpolations are kept as text (they are resolved after
// composition, so `${a}` sees the final value of `a`). MergeTest.AgreesWithOmegaConf compares
// this with OmegaConf 2.2 itself.
//
// Deliberate differences from OmegaConf 2.2 (MergeTest.DeliberateDifferencesFromOmegaConf):
//  * A map merged over an interpolation that refers to a map replaces the interpolation.
//    OmegaConf first copies the referenced map there and merges into the copy; evalctl resolves
//    only after composition, and copying at merge time would freeze the referenced map as it was
//    at that point of the defaults list.
//  * A map merged over a list, or a list over a map, replaces it; OmegaConf raises
//    ConfigTypeError ("Cannot merge DictConfig with ListConfig") without saying where. The schema
//    check then reports the wrong type with the key path and the line that wrote it.
//  * Only an unquoted `???` is the MISSING marker (Node::IsMissing); `'???'` is the string.
//    OmegaConf treats both as MISSING.
void MergeInto(Node& base, const Node& overlay);

absl::StatusOr<Node> Compose(const ComposeInput& input, const GroupFiles& builtin_groups);

// One parsed `-o` override.
struct Override {
  enum class Op { kSet, kAdd, kForce, kDelete };
  Op op = Op::kSet;
  // Dot-separated key path as written (task-name sugar not yet applied).
  std::string key;
  // Null for a delete without value.
  Node value;
  bool has_value = false;
  // The override as the user typed it, for error messages.
  std::string text;
};

// Parses `key=v`, `+key=v`, `++key=v`, `~key`, `~key=v`. The value is read as a YAML flow value
// (so `[a,b]`, `{a: 1}`, `'quoted'`, `null` work); `key=` is the empty string, as in Hydra.
absl::StatusOr<Override> ParseOverride(absl::string_view text);

// Applies one override to the composed tree. NEL's task-name sugar: in
// `evaluation.tasks.<name>.<path>` a non-integer <name> applies to every task with that name.
absl::Status ApplyOverride(Node& root, const Override& override);

}  // namespace evalctl::config
