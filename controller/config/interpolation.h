// OmegaConf-style interpolation over a composed configuration tree.
//
// Supported, as OmegaConf 2.2 does it: `${a.b.c}` and `${a.list.0}` (absolute), `${.x}` and
// `${..x}` (relative to the node's map), interpolation inside strings (`/data/${deployment.port}`),
// `\${` for a literal `${`, and the resolvers `oc.env:VAR[,default]`, `oc.select:key[,default]`
// and NEL's `select_not_null:key[,default]` (falls back also when the key is null). A whole-value
// interpolation keeps the referenced value's type (a map stays a map); inside a string, `null`
// reads as `None`.
//
// Secret rule (DESIGN.md): a value read from the user's environment by `oc.env` is marked secret,
// and so is every value built from it (Node::secret(), Node::env_sources()).
//
// Thread-safe: pure function over its arguments.
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "controller/config/node.h"

namespace evalctl::config {

// The user's environment as the client sent it: only these variables are visible to `oc.env`.
using Environment = std::map<std::string, std::string>;

// Resolves every interpolation in `root` in place. Errors are INVALID_ARGUMENT and name the file,
// line, key path and the interpolation (unknown key, `???` value, unset variable, cycle).
absl::Status ResolveAll(Node& root, const Environment& environment);

}  // namespace evalctl::config
