#include "agent/slurm/slurm_cli_client.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "agent/slurm/slurm_parse.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace evalctl::agent {
namespace {

constexpr size_t kMaxMessageChars = 2000;

// Slurm's diagnostic lines ("sbatch: error: ..."), joined into one message. stderr first; some
// tools print errors on stdout.
std::string SlurmLines(const SubprocessResult& r) {
  absl::string_view text = r.stderr_data;
  if (absl::StripAsciiWhitespace(text).empty()) text = r.stdout_data;
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    lines.emplace_back(absl::StripAsciiWhitespace(line));
  }
  std::string joined = absl::StrJoin(lines, "; ");
  if (joined.size() > kMaxMessageChars) {
    joined = absl::StrCat("...", joined.substr(joined.size() - kMaxMessageChars));
  }
  return joined;
}

// Messages of a Slurm daemon that does not answer (or of the auth layer in front of it): the agent
// retries these for as long as it takes. Lower case.
constexpr absl::string_view kUnavailableMarkers[] = {
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "connection timed out",
    "connection reset",
    "zero bytes were transmitted",
    "communication connection failure",
    "could not establish a configuration source",
    "backup controller in standby mode",
    "problem talking to the database",
    "database is busy",
    "resource temporarily unavailable",
    "temporarily unable to accept job",
    "network is unreachable",
    "no route to host",
    "munge encode failed",
    "munge decode failed",
    "authentication error",
    "slurmctld is not responding",
};

// sbatch rejections that depend on limits/policy rather than on the request itself.
constexpr absl::string_view kPolicyMarkers[] = {
    "violates accounting/qos policy",
    "submit limit",
    "qosmax",
    "assocmax",
};

bool ContainsAny(absl::string_view text, absl::Span<const absl::string_view> markers) {
  const std::string lower = absl::AsciiStrToLower(text);
  for (absl::string_view m : markers) {
    if (absl::StrContains(lower, m)) return true;
  }
  return false;
}

bool InvalidJobId(const SubprocessResult& r) {
  return absl::StrContains(r.stderr_data, "Invalid job id specified");
}

// Job ids go onto command lines: only what Slurm prints as a job id gets there, so an id can
// never become an option ("-u", "--me").
absl::Status ValidateJobIds(const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    bool ok =
        !id.empty() && id.size() <= 64 && absl::ascii_isdigit(static_cast<unsigned char>(id[0]));
    for (char c : id) {
      ok = ok && (absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '+');
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("not a Slurm job id: \"", id, "\""));
  }
  return absl::OkStatus();
}

// Names travel in comma-separated --name lists and in --job-name.
absl::Status ValidateJobName(absl::string_view name, bool in_list) {
  if (name.empty()) return absl::InvalidArgumentError("empty Slurm job name");
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || (in_list && c == ',')) {
      return absl::InvalidArgumentError(absl::StrCat("Slurm job name \"", absl::CEscape(name),
                                                     "\" holds a ",
                                                     c == ',' ? "comma" : "control character"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> Unique(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& s : v) {
    if (seen.insert(s).second) out.push_back(s);
  }
  return out;
}

std::vector<std::vector<std::string>> Chunks(const std::vector<std::string>& v, size_t n) {
  std::vector<std::vector<std::string>> out;
  if (n == 0) n = 1;
  for (size_t i = 0; i < v.size(); i += n) {
    out.emplace_back(v.begin() + i, v.begin() + std::min(v.size(), i + n));
  }
  return out;
}

void LogProblems(absl::string_view what, const ParsedJobs& parsed) {
  for (const std::string& p : parsed.problems) LOG(WARNING) << what << " output: " << p;
}

}  // namespace

absl::Status SlurmCommandError(absl::string_view what, const SubprocessResult& r) {
  const std::string lines = SlurmLines(r);
  const std::string detail = lines.empty() ? "" : absl::StrCat(": ", lines);
  if (r.timed_out) {
    return absl::UnavailableError(
        absl::StrCat(what, " did not finish within ", absl::FormatDuration(r.elapsed), detail));
  }
  const std::string how = r.term_signal != 0 ? absl::StrCat("was killed by signal ", r.term_signal)
                                             : absl::StrCat("exited with status ", r.exit_code);
  if (ContainsAny(lines, kUnavailableMarkers)) {
    return absl::UnavailableError(absl::StrCat(what, " ", how, detail));
  }
  return absl::UnknownError(absl::StrCat(what, " ", how, detail));
}

absl::Status SbatchError(const SubprocessResult& r) {
  absl::Status generic = SlurmCommandError("sbatch", r);
  if (r.timed_out) {
    return absl::UnavailableError(
        absl::StrCat(generic.message(), " (the job may have been submitted)"));
  }
  if (generic.code() == absl::StatusCode::kUnavailable || r.term_signal != 0) return generic;
  const std::string lines = SlurmLines(r);
  if (ContainsAny(lines, kPolicyMarkers)) return absl::FailedPreconditionError(lines);
  if (absl::StrContains(lines, "error:") || absl::StrContains(lines, "fatal:") ||
      absl::StrContains(lines, "unrecognized option") ||
      absl::StrContains(lines, "invalid option")) {
    return absl::InvalidArgumentError(lines);
  }
  return generic;
}

SlurmCliClient::SlurmCliClient(SlurmCliOptions options) : options_(std::move(options)) {}

absl::StatusOr<SubprocessResult> SlurmCliClient::Run(
    std::vector<std::string> argv, bool parses_times,
    const std::vector<std::pair<std::string, std::string>>& extra_env,
    const std::string& working_dir) const {
  SubprocessOptions sp;
  const std::string what = argv.empty() ? "" : argv[0];
  sp.argv = std::move(argv);
  sp.env.insert(sp.env.end(), options_.env.begin(), options_.env.end());
  sp.env.insert(sp.env.end(), extra_env.begin(), extra_env.end());
  // Last, so that nothing can change the time format the parsers expect. Not for sbatch: its
  // environment becomes the job's (--export=ALL), and its output has no times.
  if (parses_times) sp.env.emplace_back("SLURM_TIME_FORMAT", "standard");
  sp.working_dir = working_dir;
  sp.timeout = options_.timeout;
  // A Slurm command never outlives the agent: an sbatch left running by a killed agent could
  // submit its job after the restarted agent looked the name up and submitted it again.
  sp.die_with_parent = true;
  absl::StatusOr<SubprocessResult> r = RunSubprocess(sp);
  if (!r.ok()) {
    // A missing binary is a broken installation, not a passing outage.
    if (r.status().code() == absl::StatusCode::kNotFound ||
        r.status().code() == absl::StatusCode::kInvalidArgument) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot run ", what, ": ", r.status().message()));
    }
    return absl::UnavailableError(absl::StrCat("cannot run ", what, ": ", r.status().message()));
  }
  return r;
}

std::vector<std::string> SlurmCliClient::SbatchArgv(const SubmitRequest& request) const {
  std::vector<std::string> argv = {options_.sbatch, "--parsable", "--export=ALL",
                                   absl::StrCat("--job-name=", request.job_name)};
  if (!request.dependency.empty()) {
    argv.push_back(absl::StrCat("--dependency=", request.dependency));
  }
  // sbatch would read a script path starting with '-' as an option.
  argv.push_back(absl::StartsWith(request.script_path, "-")
                     ? absl::StrCat("./", request.script_path)
                     : request.script_path);
  return argv;
}

absl::StatusOr<std::string> SlurmCliClient::Submit(const SubmitRequest& request) {
  if (request.script_path.empty()) return absl::InvalidArgumentError("no batch script given");
  RETURN_IF_ERROR(ValidateJobName(request.job_name, /*in_list=*/false));
  for (char c : request.dependency) {
    if (static_cast<unsigned char>(c) <= 0x20) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad dependency \"", absl::CEscape(request.dependency), "\""));
    }
  }
  ASSIGN_OR_RETURN(SubprocessResult r, Run(SbatchArgv(request), /*parses_times=*/false, request.env,
                                           request.working_dir));
  if (!r.ok()) return SbatchError(r);
  absl::StatusOr<std::string> id = ParseSbatchOutput(r.stdout_data);
  if (!id.ok()) {
    // sbatch said it succeeded, so the job probably exists: not a rejection.
    return absl::UnknownError(absl::StrCat(id.status().message(), "; stderr: ", SlurmLines(r)));
  }
  return id;
}

absl::StatusOr<std::vector<JobInfo>> SlurmCliClient::Queue(
    const std::vector<std::string>& job_ids) {
  RETURN_IF_ERROR(ValidateJobIds(job_ids));
  std::vector<JobInfo> jobs;
  for (const std::vector<std::string>& chunk :
       Chunks(Unique(job_ids), options_.max_ids_per_command)) {
    ASSIGN_OR_RETURN(SubprocessResult r,
                     Run({options_.squeue, "-h", "-t", "all",
                          absl::StrCat("--jobs=", absl::StrJoin(chunk, ",")), "-o", kSqueueFormat},
                         /*parses_times=*/true));
    if (!r.ok()) {
      // With a single id squeue asks slurmctld for that job alone and fails once it was purged;
      // with several it filters all jobs and just prints nothing for unknown ones.
      if (!r.timed_out && InvalidJobId(r)) continue;
      return SlurmCommandError("squeue", r);
    }
    ParsedJobs parsed = ParseSqueue(r.stdout_data);
    LogProblems("squeue", parsed);
    for (JobInfo& job : parsed.jobs) jobs.push_back(std::move(job));
  }
  return jobs;
}

absl::StatusOr<std::vector<JobInfo>> SlurmCliClient::Accounting(
    const std::vector<std::string>& job_ids) {
  RETURN_IF_ERROR(ValidateJobIds(job_ids));
  std::vector<JobInfo> jobs;
  // Without -S, `sacct --jobs` searches from the epoch (sacct -v: "time window from Epoch 0").
  for (const std::vector<std::string>& chunk :
       Chunks(Unique(job_ids), options_.max_ids_per_command)) {
    ASSIGN_OR_RETURN(SubprocessResult r, Run({options_.sacct, "-X", "-D", "-n", "--parsable2",
                                              absl::StrCat("--jobs=", absl::StrJoin(chunk, ",")),
                                              absl::StrCat("--format=", kSacctFormat)},
                                             /*parses_times=*/true));
    if (!r.ok()) return SlurmCommandError("sacct", r);
    ParsedJobs parsed = ParseSacct(r.stdout_data);
    LogProblems("sacct", parsed);
    for (JobInfo& job : parsed.jobs) jobs.push_back(std::move(job));
  }
  return jobs;
}

absl::StatusOr<std::vector<JobInfo>> SlurmCliClient::SqueueByName(
    const std::vector<std::string>& names) {
  std::vector<JobInfo> jobs;
  for (const std::vector<std::string>& chunk : Chunks(names, options_.max_ids_per_command)) {
    std::vector<std::string> argv = {options_.squeue, "-h", "-t", "all",
                                     absl::StrCat("--name=", absl::StrJoin(chunk, ",")), "-o",
                                     kSqueueFormat};
    if (!options_.user.empty()) argv.push_back(absl::StrCat("--user=", options_.user));
    ASSIGN_OR_RETURN(SubprocessResult r, Run(argv, /*parses_times=*/true));
    if (!r.ok()) return SlurmCommandError("squeue", r);
    ParsedJobs parsed = ParseSqueue(r.stdout_data);
    LogProblems("squeue", parsed);
    for (JobInfo& job : parsed.jobs) jobs.push_back(std::move(job));
  }
  return jobs;
}

absl::StatusOr<std::vector<JobInfo>> SlurmCliClient::SacctByName(
    const std::vector<std::string>& names, absl::Time since) {
  // --name needs -S: without it sacct only looks from midnight today.
  const absl::Time epoch = absl::UnixEpoch();
  const std::string start =
      absl::FormatTime("%Y-%m-%dT%H:%M:%S", std::max(since, epoch), absl::LocalTimeZone());
  std::vector<JobInfo> jobs;
  for (const std::vector<std::string>& chunk : Chunks(names, options_.max_ids_per_command)) {
    std::vector<std::string> argv = {options_.sacct,
                                     "-X",
                                     "-D",
                                     "-n",
                                     "--parsable2",
                                     absl::StrCat("--name=", absl::StrJoin(chunk, ",")),
                                     "-S",
                                     start,
                                     absl::StrCat("--format=", kSacctFormat)};
    if (!options_.user.empty()) argv.push_back(absl::StrCat("--user=", options_.user));
    ASSIGN_OR_RETURN(SubprocessResult r, Run(argv, /*parses_times=*/true));
    if (!r.ok()) return SlurmCommandError("sacct", r);
    ParsedJobs parsed = ParseSacct(r.stdout_data);
    LogProblems("sacct", parsed);
    for (JobInfo& job : parsed.jobs) jobs.push_back(std::move(job));
  }
  return jobs;
}

absl::StatusOr<std::vector<JobInfo>> SlurmCliClient::FindByName(
    const std::vector<std::string>& names, absl::Time since) {
  for (const std::string& name : names) {
    RETURN_IF_ERROR(ValidateJobName(name, /*in_list=*/true));
  }
  const std::vector<std::string> unique = Unique(names);
  if (unique.empty()) return std::vector<JobInfo>();
  ASSIGN_OR_RETURN(std::vector<JobInfo> queued, SqueueByName(unique));
  ASSIGN_OR_RETURN(std::vector<JobInfo> accounted, SacctByName(unique, since));
  // squeue matches names as given; sacct too, but keep only exact matches in case a Slurm version
  // matches differently.
  const std::set<std::string> wanted(unique.begin(), unique.end());
  auto not_wanted = [&wanted](const JobInfo& j) { return wanted.count(j.name) == 0; };
  queued.erase(std::remove_if(queued.begin(), queued.end(), not_wanted), queued.end());
  accounted.erase(std::remove_if(accounted.begin(), accounted.end(), not_wanted), accounted.end());
  return MergeQueueIntoAccounting(std::move(accounted), queued);
}

absl::StatusOr<JobInfo> SlurmCliClient::Show(const std::string& job_id) {
  RETURN_IF_ERROR(ValidateJobIds({job_id}));
  ASSIGN_OR_RETURN(SubprocessResult r,
                   Run({options_.scontrol, "show", "job", "-o", job_id}, /*parses_times=*/true));
  if (!r.ok()) {
    if (!r.timed_out && InvalidJobId(r)) {
      return absl::NotFoundError(
          absl::StrCat("slurmctld no longer knows job ", job_id, ": ", SlurmLines(r)));
    }
    return SlurmCommandError("scontrol show job", r);
  }
  absl::StatusOr<JobInfo> job = ParseScontrolShowJob(r.stdout_data, job_id);
  if (!job.ok() && job.status().code() != absl::StatusCode::kNotFound) {
    return absl::InternalError(job.status().message());
  }
  return job;
}

absl::Status SlurmCliClient::Cancel(const std::vector<std::string>& job_ids) {
  RETURN_IF_ERROR(ValidateJobIds(job_ids));
  for (const std::vector<std::string>& chunk :
       Chunks(Unique(job_ids), options_.max_ids_per_command)) {
    std::vector<std::string> argv = {options_.scancel};
    argv.insert(argv.end(), chunk.begin(), chunk.end());
    ASSIGN_OR_RETURN(SubprocessResult r, Run(std::move(argv), /*parses_times=*/false));
    if (r.ok()) continue;
    // scancel exits 0 for unknown ids in 22.05, but older/newer versions complain; an id Slurm
    // no longer knows, or a job already ending, is not an error.
    bool only_gone = !r.timed_out && r.term_signal == 0;
    int lines = 0;
    for (absl::string_view line : absl::StrSplit(r.stderr_data, '\n', absl::SkipWhitespace())) {
      ++lines;
      only_gone = only_gone && (absl::StrContains(line, "Invalid job id") ||
                                absl::StrContains(line, "already completing or completed"));
    }
    only_gone = only_gone && lines > 0;
    if (!only_gone) return SlurmCommandError("scancel", r);
  }
  return absl::OkStatus();
}

}  // namespace evalctl::agent
