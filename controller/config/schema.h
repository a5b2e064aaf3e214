// The schema of every configuration key evalctl understands: NEL's execution/slurm/default.yaml,
// its deployment groups and evaluation/task keys, plus evalctl's own execution keys.
//
// ValidateSchema walks a resolved tree and reports every unknown key (naming the nearest known
// one), every value of the wrong type and every required value (`???`) left unset, each with its
// file, line and full key path. Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "controller/config/node.h"

namespace evalctl::config {

// Appends one message per problem to `errors`. With `resolved` false (a composed tree before
// interpolation) only keys and structure are checked; values that are still `${...}` or `???`
// are left for the check after interpolation.
void ValidateSchema(const Node& root, bool resolved, std::vector<std::string>& errors);

// "file:line:col: key.path: message", leaving out what is unknown.
std::string Located(const Node& node, const std::string& path, const std::string& message);

}  // namespace evalctl::config
