// The task catalog: which harness container and command run a named benchmark task.
//
// Loaded from data/catalog.yaml (embedded in the binaries); a task in a user's config is looked up
// by its name or one of its aliases (`hellaswag`, `lm-evaluation-harness.hellaswag`). Immutable
// after loading; thread-safe for reads.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace evalctl::config {

struct CatalogEntry {
  std::string name;
  // Harness image for container runtime `pyxis`; empty when the task has none.
  std::string container;
  // The command that runs the task (EVALCTL_ENDPOINT_URL, EVALCTL_MODEL_ID, EVALCTL_RESULTS_DIR
  // are set); for container runtime `none` it runs directly on the node.
  std::string command;
  std::string endpoint_type = "chat";
  // Container runtimes the task runs under ("pyxis", "none").
  std::vector<std::string> runtimes;
  std::string description;
};

class Catalog {
 public:
  static absl::StatusOr<Catalog> Parse(absl::string_view yaml, absl::string_view file);
  // The embedded catalog (data/catalog.yaml).
  static const Catalog& Builtin();

  const CatalogEntry* Find(absl::string_view name) const;
  std::vector<std::string> Names() const;

 private:
  std::vector<CatalogEntry> entries_;
  // name or alias → index into entries_.
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace evalctl::config
