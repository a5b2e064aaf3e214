// Fuzz target: results.yml as the agent reads it from a task's artifacts (ParseResults in
// agent/core/run_files.h). The file is written by the evaluation harness inside the user's job, so
// it is untrusted input to the agent.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent/core/run_files.h"
#include "google/protobuf/stubs/logging.h"

namespace {

// An invariant of the code under test does not hold: libFuzzer reports it as a crash.
void Require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // An invariant below reports bad UTF-8; protobuf's own log line about it is noise.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<evalctl::v1::TaskResults> results = evalctl::agent::ParseResults(yaml);
  if (!results.ok()) return 0;
  // Only finite numbers are kept; what was read goes into the controller's events.
  for (const evalctl::v1::Score& score : results->scores()) {
    Require(std::isfinite(score.value()));
    for (const auto& [name, value] : score.stats()) Require(std::isfinite(value));
  }
  // The results travel to the controller in a TaskEvent: what is serialized must parse back
  // (string fields hold valid UTF-8 only).
  std::string wire;
  Require(results->SerializeToString(&wire));
  evalctl::v1::TaskResults back;
  Require(back.ParseFromString(wire));
  return 0;
}
