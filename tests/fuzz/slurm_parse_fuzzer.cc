// Fuzz target: the parsers of Slurm's command-line output (agent/slurm/slurm_parse.h), which the
// agent runs on whatever sbatch, squeue, sacct and scontrol print. The same text goes to each
// parser (the corpus has real output of each tool), in UTC and in a fixed offset zone; jobs that
// parse are merged as FindByName merges them, and the building blocks get every field.
//
// The parsers promise never to crash on any input; they also promise some shapes, checked here.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/slurm/slurm_parse.h"

namespace {

// An invariant of the code under test does not hold: libFuzzer reports it as a crash.
void Require(bool condition) {
  if (!condition) std::abort();
}

bool IsDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace agent = evalctl::agent;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<std::string> id = agent::ParseSbatchOutput(input);
  if (id.ok()) Require(IsDigits(*id));

  for (absl::TimeZone tz : {absl::UTCTimeZone(), absl::FixedTimeZone(-5 * 3600)}) {
    agent::ParsedJobs queue = agent::ParseSqueue(input, tz);
    agent::ParsedJobs accounting = agent::ParseSacct(input, tz);
    for (const agent::JobInfo& job : accounting.jobs) Require(job.restarts >= 0);
    std::vector<agent::JobInfo> merged =
        agent::MergeQueueIntoAccounting(accounting.jobs, queue.jobs);
    Require(merged.size() <= accounting.jobs.size() + queue.jobs.size());

    absl::StatusOr<agent::JobInfo> shown = agent::ParseScontrolShowJob(input, "", tz);
    if (shown.ok()) {
      Require(!shown->job_id.empty());
      // Asking for the job found first finds a job with that id.
      absl::StatusOr<agent::JobInfo> again = agent::ParseScontrolShowJob(input, shown->job_id, tz);
      Require(again.ok() && again->job_id == shown->job_id);
    }
  }

  // The building blocks, on every `|`, space or `=` separated field.
  for (absl::string_view field : absl::StrSplit(input, absl::ByAnyChar("|\n ="))) {
    (void)agent::ParseSlurmTime(field, absl::UTCTimeZone());
    std::optional<int64_t> elapsed = agent::ParseSlurmElapsed(field);
    if (elapsed) Require(*elapsed >= 0);
    std::string state = agent::NormalizeJobState(field);
    (void)agent::IsEndedState(state);
  }
  return 0;
}
