// Parsers for the text that Slurm 22.05's command-line tools print, in the exact formats that
// SlurmCliClient asks for (kSqueueFormat, kSacctFormat, `scontrol show job -o`). Pure functions:
// no processes, no files, no clock. They are fuzz targets, so they never crash and never CHECK on
// their input: a malformed line is skipped with a message in ParsedJobs::problems, a malformed
// field leaves that JobInfo field unset (with a message), and a wholly unusable input is an error.
//
//   ParsedJobs q = ParseSqueue(result.stdout_data);
//   for (const std::string& p : q.problems) LOG(WARNING) << "squeue: " << p;
//
// Times are Slurm's `2026-11-26T13:04:05` in the time zone given (the local one by default, as
// the tools print them; SlurmCliClient sets SLURM_TIME_FORMAT=standard so that this format holds).
// `Unknown`, `None`, `N/A`, `NONE` and empty leave a time unset (absl::InfinitePast()). Predicted
// times are dropped: a PENDING job has no start time and a job that has not ended has no end time,
// even where squeue or scontrol print the scheduler's estimate.
//
// Thread-safe: no shared state.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/slurm/slurm_client.h"

namespace evalctl::agent {

// `squeue -o` format. `|` cannot appear in any field but the job name, which is last, so a name
// containing `|` still parses. %i job id, %T long state, %r reason code, %V submit time,
// %S start time (estimated while PENDING), %e end time (estimated or NONE until the job ends),
// %M time used, %N nodes, %P partition, %j name.
inline constexpr char kSqueueFormat[] = "%i|%T|%r|%V|%S|%e|%M|%N|%P|%j";

// `sacct --format` fields, used with `--parsable2` (| separated, no trailing |). JobName is last
// for the same reason as in kSqueueFormat. ExitCode is the script's exit status modulo 128 in
// Slurm 22.05 (a bug); scontrol has the whole value.
inline constexpr char kSacctFormat[] =
    "JobIDRaw,State,ExitCode,Reason,Submit,Start,End,ElapsedRaw,NodeList,Partition,JobName";

// Jobs read from a multi-line listing, and what was wrong with the lines that were skipped or
// only partly understood (1-based line numbers, with a short excerpt of the line).
struct ParsedJobs {
  std::vector<JobInfo> jobs;
  std::vector<std::string> problems;
};

// `sbatch --parsable` output: `<id>` or `<id>;<cluster>` (with -M), maybe after warning lines.
// Returns the job id; INVALID_ARGUMENT when no line is a job id.
absl::StatusOr<std::string> ParseSbatchOutput(absl::string_view output);

// `squeue -h -o kSqueueFormat` output, one job per line, in the order squeue printed them.
// squeue has no exit code or restart count: those fields stay unset / 0.
ParsedJobs ParseSqueue(absl::string_view output, absl::TimeZone tz = absl::LocalTimeZone());

// `sacct -X -D -n --parsable2 --format=kSacctFormat` output: one JobInfo per job id, in order of
// first appearance. With -D a requeued job has one record per run; the newest record (latest
// Submit, then the later line) is returned and `restarts` counts the older records with the same
// job name. Records with another name are a different job that reused the id (after a Slurm
// state reset) and are ignored.
//
// Observed on 22.05: for the first 2-3 s of a job, slurmdbd may hold a placeholder record with
// JobName `allocation`, an empty Partition, no SubmitLine and a stale State (PENDING while the job
// runs, COMPLETED before the real record arrives). Such a record gets an empty name (unknown),
// which matches any name when counting restarts. Prefer squeue's state while slurmctld still has
// the job.
ParsedJobs ParseSacct(absl::string_view output, absl::TimeZone tz = absl::LocalTimeZone());

// `scontrol show job -o [ID]` output: one `Key=Value ...` line per job. Returns the job whose
// JobId is `job_id` (the first job when `job_id` is empty). NOT_FOUND when no line is that job,
// INVALID_ARGUMENT when the line lacks JobId or JobState.
absl::StatusOr<JobInfo> ParseScontrolShowJob(absl::string_view output,
                                             absl::string_view job_id = "",
                                             absl::TimeZone tz = absl::LocalTimeZone());

// Building blocks, exposed for tests and for FakeSlurm.

// `2026-11-26T13:04:05` → time; Unknown/None/N/A/NONE/empty → InfinitePast(); anything else →
// nullopt.
std::optional<absl::Time> ParseSlurmTime(absl::string_view text, absl::TimeZone tz);

// Elapsed time: `SS`, `MM:SS`, `HH:MM:SS`, `D-HH:MM:SS` (squeue %M, scontrol RunTime) → seconds;
// nullopt for anything else (INVALID, UNLIMITED, garbage).
std::optional<int64_t> ParseSlurmElapsed(absl::string_view text);

// First word, upper case letters and `_` only: `CANCELLED by 0` → `CANCELLED`. Empty when the
// text does not start with a state word.
std::string NormalizeJobState(absl::string_view text);

// True for states in which a job (or an sacct record) has ended: COMPLETED, FAILED, CANCELLED,
// TIMEOUT, PREEMPTED, NODE_FAIL, BOOT_FAIL, OUT_OF_MEMORY, DEADLINE, REVOKED, SPECIAL_EXIT and
// REQUEUED (an sacct record of a run that was requeued). Note that sacct's newest record can be
// PREEMPTED, NODE_FAIL or REQUEUED for a few seconds before the requeued run's record appears:
// check scontrol (Show) before treating those as final.
bool IsEndedState(absl::string_view state);

// Combines the two views of the same jobs (FindByName): every job of `accounting`, with the
// fields squeue knows (state, reason, times, nodes, partition, name) replaced by `queue`'s where
// the job is in both; jobs only in `queue` are added. Sorted by numeric job id.
std::vector<JobInfo> MergeQueueIntoAccounting(std::vector<JobInfo> accounting,
                                              const std::vector<JobInfo>& queue);

}  // namespace evalctl::agent
