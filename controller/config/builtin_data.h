// Data files compiled into the binaries: the built-in config groups (data/groups/**.yaml, keyed
// by their path under data/groups, e.g. "deployment/vllm.yaml") and the task catalog
// (data/catalog.yaml). Generated at build time from controller/config/data. Thread-safe.
#pragma once

#include <map>
#include <string>

namespace evalctl::config {

const std::map<std::string, std::string>& BuiltinGroupFiles();
const std::string& BuiltinCatalogYaml();

}  // namespace evalctl::config
