// Fuzz target: the configuration a user submits, as the controller reads it.
//
// Input: a YAML document, optionally followed by a line `#@overrides` and then one Hydra override
// per line (`execution.partition=gpu`, `++evaluation.tasks.0.env_vars.X=host:Y`). The document
// alone goes to LoadYaml; document and overrides go to LoadInvocation (with a fixed user
// environment), and every task of a config that loads is rendered (RenderTaskJob, or
// RenderSharedJob for execution.shared_deployment), as ControllerCore::Plan does.
//
// Errors are expected; only crashes, leaks, sanitizer reports and broken invariants count.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "controller/config/loader.h"
#include "controller/config/node.h"
#include "controller/config/render.h"

namespace {

constexpr absl::string_view kOverridesMarker = "\n#@overrides\n";

// An invariant of the code under test does not hold: libFuzzer reports it as a crash.
void Require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);

  namespace config = evalctl::config;
  config::LoadRequest request;
  request.file_name = "fuzz.yaml";
  const size_t marker = input.find(kOverridesMarker);
  request.yaml = std::string(input.substr(0, marker));
  if (marker != absl::string_view::npos) {
    for (absl::string_view line :
         absl::StrSplit(input.substr(marker + kOverridesMarker.size()), '\n', absl::SkipEmpty())) {
      request.overrides.emplace_back(line);
    }
  }
  request.environment = {{"HF_TOKEN", "hf_fuzz_token"}, {"USER", "fuzz"}};

  absl::StatusOr<config::Node> node = config::LoadYaml(request.yaml, request.file_name);
  if (node.ok()) {
    // What was read can be written and read again.
    absl::StatusOr<config::Node> again = config::LoadYaml(config::ToYaml(*node), "again.yaml");
    Require(again.ok());
    (void)config::Lookup(*node, "execution.partition");
  }

  (void)config::ReferencedEnvironment(request);
  absl::StatusOr<config::InvocationSpec> spec = config::LoadInvocation(request);
  if (!spec.ok()) return 0;

  const std::string run_dir =
      config::InvocationRunDir(spec->execution, "20261126_130405", "3f2a9c01d4e5b677");
  if (spec->execution.shared_deployment) {
    (void)config::RenderSharedJob(*spec, "3f2a9c01d4e5b677", run_dir);
    return 0;
  }
  for (const config::TaskSpec& task : spec->tasks) {
    (void)config::RenderTaskJob(*spec, task, "3f2a9c01d4e5b677", run_dir);
  }
  return 0;
}
