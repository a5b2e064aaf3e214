#include "agent/slurm/slurm_parse.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace evalctl::agent {
namespace {

constexpr size_t kExcerptChars = 80;
constexpr absl::string_view kSacctPlaceholderName = "allocation";

// A printable excerpt of an input line for problem messages: input may be binary garbage.
std::string Excerpt(absl::string_view line) {
  std::string out;
  for (char c : line.substr(0, kExcerptChars)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  if (line.size() > kExcerptChars) out += "...";
  return out;
}

std::string Problem(size_t line_no, absl::string_view what, absl::string_view line) {
  return absl::StrCat("line ", line_no, ": ", what, ": \"", Excerpt(line), "\"");
}

// Job ids as Slurm prints them: digits, maybe followed by an array (`_3`, `_[1-5]`) or
// heterogeneous (`+0`) suffix. Never empty, never starting with '-'.
bool IsJobId(absl::string_view id) {
  if (id.empty() || id.size() > 64 || !absl::ascii_isdigit(static_cast<unsigned char>(id[0]))) {
    return false;
  }
  for (char c : id) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (!absl::ascii_isdigit(u) && c != '_' && c != '+' && c != '[' && c != ']' && c != '-' &&
        c != ',' && c != '%') {
      return false;
    }
  }
  return true;
}

// COMPLETING: the job has ended and its nodes are being cleaned up; its end time is real.
bool HasEndTime(absl::string_view state) { return IsEndedState(state) || state == "COMPLETING"; }

bool HasStartTime(absl::string_view state) {
  return state != "PENDING" && state != "REQUEUE_HOLD" && state != "REQUEUE_FED";
}

// "None", "(null)" and friends mean "no value" in every Slurm tool.
std::string OptionalText(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (text == "None" || text == "(null)" || text == "None assigned" || text == "N/A" ||
      text == "n/a") {
    return "";
  }
  return std::string(text);
}

// Sets `*out` from a Slurm time; records a problem (and leaves it unset) when malformed.
void SetTime(absl::string_view text, absl::string_view field, absl::TimeZone tz, size_t line_no,
             absl::Time* out, std::vector<std::string>* problems) {
  std::optional<absl::Time> t = ParseSlurmTime(text, tz);
  if (!t.has_value()) {
    problems->push_back(Problem(line_no, absl::StrCat("bad ", field, " time, left unset"), text));
    return;
  }
  *out = *t;
}

// `a:b` → exit code a, signal b; empty leaves both unset.
bool SetExitCode(absl::string_view text, JobInfo* job) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return true;
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(text, ':');
  int code = 0;
  int signal = 0;
  if (!absl::SimpleAtoi(parts.first, &code) || !absl::SimpleAtoi(parts.second, &signal) ||
      code < 0 || signal < 0) {
    return false;
  }
  job->exit_code = code;
  job->signal = signal;
  return true;
}

// Drops the scheduler's predictions, which squeue and scontrol print in the same columns.
void DropPredictedTimes(JobInfo* job) {
  if (!HasStartTime(job->state)) job->start_time = absl::InfinitePast();
  if (!HasEndTime(job->state)) job->end_time = absl::InfinitePast();
}

// Numeric order of job ids ("9" < "10"); non-numeric ids after numeric ones, by text.
bool JobIdLess(const std::string& a, const std::string& b) {
  uint64_t x = 0;
  uint64_t y = 0;
  const bool nx = absl::SimpleAtoi(a, &x);
  const bool ny = absl::SimpleAtoi(b, &y);
  if (nx && ny) return x < y;
  if (nx != ny) return nx;
  return a < b;
}

}  // namespace

std::optional<absl::Time> ParseSlurmTime(absl::string_view text, absl::TimeZone tz) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || text == "Unknown" || text == "None" || text == "N/A" || text == "NONE") {
    return absl::InfinitePast();
  }
  // absl::ParseTime accepts more than this exact shape (signs, wider fields); check it first.
  if (text.size() != 19) return std::nullopt;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool ok = (i == 4 || i == 7)     ? c == '-'
                    : i == 10              ? c == 'T'
                    : (i == 13 || i == 16) ? c == ':'
                                           : absl::ascii_isdigit(static_cast<unsigned char>(c));
    if (!ok) return std::nullopt;
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%S", text, tz, &t, &err)) return std::nullopt;
  return t;
}

std::optional<int64_t> ParseSlurmElapsed(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || text.size() > 32) return std::nullopt;
  int64_t days = 0;
  if (size_t dash = text.find('-'); dash != absl::string_view::npos) {
    if (!absl::SimpleAtoi(text.substr(0, dash), &days) || days < 0 || days > 1'000'000) {
      return std::nullopt;
    }
    text.remove_prefix(dash + 1);
  }
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  if (parts.size() > 3) return std::nullopt;
  int64_t total = 0;
  for (absl::string_view part : parts) {
    if (part.empty() || part.size() > 9) return std::nullopt;
    for (char c : part) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    }
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) return std::nullopt;
    total = total * 60 + v;
  }
  return days * 86400 + total;
}

std::string NormalizeJobState(absl::string_view text) {
  text = absl::StripLeadingAsciiWhitespace(text);
  std::string state;
  for (char c : text) {
    if ((c >= 'A' && c <= 'Z') || c == '_') {
      state.push_back(c);
    } else {
      break;
    }
  }
  // "CANCELLED+" (sacct truncation marker) and "CANCELLED by 0" both give the word; anything else
  // glued to the word (lower case, digits) makes it no state at all.
  if (state.size() < text.size()) {
    const char next = text[state.size()];
    if (next != ' ' && next != '+' && next != '\t') return "";
  }
  return state;
}

bool IsEndedState(absl::string_view state) {
  static constexpr absl::string_view kEnded[] = {
      "COMPLETED", "FAILED",        "CANCELLED", "TIMEOUT", "PREEMPTED",    "NODE_FAIL",
      "BOOT_FAIL", "OUT_OF_MEMORY", "DEADLINE",  "REVOKED", "SPECIAL_EXIT", "REQUEUED"};
  return std::find(std::begin(kEnded), std::end(kEnded), state) != std::end(kEnded);
}

absl::StatusOr<std::string> ParseSbatchOutput(absl::string_view output) {
  // sbatch may print warnings on stdout before the id ("sbatch: warning: ..."); the id is the
  // last line that is one.
  std::string id;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipWhitespace())) {
    line = absl::StripAsciiWhitespace(line);
    absl::string_view candidate = line.substr(0, line.find(';'));
    bool digits = !candidate.empty() && candidate.size() <= 20;
    for (char c : candidate) digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
    if (digits) id = std::string(candidate);
  }
  if (id.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sbatch --parsable printed no job id: \"", Excerpt(output), "\""));
  }
  return id;
}

ParsedJobs ParseSqueue(absl::string_view output, absl::TimeZone tz) {
  ParsedJobs result;
  size_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    // The name is last and may itself contain '|'.
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits('|', 9));
    if (f.size() != 10) {
      result.problems.push_back(
          Problem(line_no, absl::StrCat("expected 10 '|'-separated fields, got ", f.size()), line));
      continue;
    }
    JobInfo job;
    job.job_id = std::string(absl::StripAsciiWhitespace(f[0]));
    if (!IsJobId(job.job_id)) {
      result.problems.push_back(Problem(line_no, "bad job id", line));
      continue;
    }
    job.state = NormalizeJobState(f[1]);
    if (job.state.empty()) {
      result.problems.push_back(Problem(line_no, "bad job state", line));
      continue;
    }
    job.reason = OptionalText(f[2]);
    SetTime(f[3], "submit", tz, line_no, &job.submit_time, &result.problems);
    SetTime(f[4], "start", tz, line_no, &job.start_time, &result.problems);
    SetTime(f[5], "end", tz, line_no, &job.end_time, &result.problems);
    if (std::optional<int64_t> e = ParseSlurmElapsed(f[6]); e.has_value()) {
      job.elapsed_seconds = *e;
    } else if (absl::StripAsciiWhitespace(f[6]) != "INVALID") {
      result.problems.push_back(Problem(line_no, "bad time used, left 0", f[6]));
    }
    job.node_list = OptionalText(f[7]);
    job.partition = OptionalText(f[8]);
    job.name = std::string(f[9]);
    DropPredictedTimes(&job);
    result.jobs.push_back(std::move(job));
  }
  return result;
}

ParsedJobs ParseSacct(absl::string_view output, absl::TimeZone tz) {
  ParsedJobs result;
  // All records per job id, in input order; ids in order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, std::vector<JobInfo>> records;
  size_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits('|', 10));
    if (f.size() != 11) {
      result.problems.push_back(
          Problem(line_no, absl::StrCat("expected 11 '|'-separated fields, got ", f.size()), line));
      continue;
    }
    JobInfo job;
    job.job_id = std::string(absl::StripAsciiWhitespace(f[0]));
    // Step records (`12.batch`) only appear without -X; they are not jobs.
    if (job.job_id.find('.') != std::string::npos) continue;
    if (!IsJobId(job.job_id)) {
      result.problems.push_back(Problem(line_no, "bad job id", line));
      continue;
    }
    job.state = NormalizeJobState(f[1]);
    if (job.state.empty()) {
      result.problems.push_back(Problem(line_no, "bad job state", line));
      continue;
    }
    if (!SetExitCode(f[2], &job)) {
      result.problems.push_back(Problem(line_no, "bad exit code, left unset", f[2]));
    }
    job.reason = OptionalText(f[3]);
    SetTime(f[4], "submit", tz, line_no, &job.submit_time, &result.problems);
    SetTime(f[5], "start", tz, line_no, &job.start_time, &result.problems);
    SetTime(f[6], "end", tz, line_no, &job.end_time, &result.problems);
    int64_t elapsed = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(f[7]), &elapsed) && elapsed >= 0) {
      job.elapsed_seconds = elapsed;
    } else if (!absl::StripAsciiWhitespace(f[7]).empty()) {
      result.problems.push_back(Problem(line_no, "bad ElapsedRaw, left 0", f[7]));
    }
    job.node_list = OptionalText(f[8]);
    job.partition = OptionalText(f[9]);
    job.name = std::string(f[10]);
    // For its first seconds slurmdbd can hold a placeholder record: JobName "allocation", no
    // partition, a stale state. The name is unknown then, not "allocation".
    if (job.name == kSacctPlaceholderName && job.partition.empty()) job.name.clear();
    DropPredictedTimes(&job);
    auto [it, inserted] = records.try_emplace(job.job_id);
    if (inserted) order.push_back(job.job_id);
    it->second.push_back(std::move(job));
  }
  for (const std::string& id : order) {
    std::vector<JobInfo>& runs = records[id];
    size_t newest = 0;
    for (size_t i = 1; i < runs.size(); ++i) {
      if (runs[i].submit_time >= runs[newest].submit_time) newest = i;
    }
    int older = 0;
    for (size_t i = 0; i < runs.size(); ++i) {
      const bool same_job =
          runs[i].name == runs[newest].name || runs[i].name.empty() || runs[newest].name.empty();
      if (i != newest && same_job) ++older;
    }
    JobInfo job = std::move(runs[newest]);
    job.restarts = older;
    result.jobs.push_back(std::move(job));
  }
  return result;
}

namespace {

// A token that starts a new `Key=value` pair: an upper-case letter, then letters, digits and the
// punctuation scontrol uses in keys (`AllocNode:Sid`, `CPUs/Task`, `MCS_label`), then '='.
// Anything else continues the previous value (values such as Command or WorkDir may hold spaces).
bool StartsKey(absl::string_view token, absl::string_view* key, absl::string_view* value) {
  size_t eq = token.find('=');
  if (eq == absl::string_view::npos || eq == 0) return false;
  if (!absl::ascii_isupper(static_cast<unsigned char>(token[0]))) return false;
  for (char c : token.substr(0, eq)) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (!absl::ascii_isalnum(u) && c != '_' && c != ':' && c != '/') return false;
  }
  *key = token.substr(0, eq);
  *value = token.substr(eq + 1);
  return true;
}

// Adds the `Key=value` pairs of `text` to `fields`. The first occurrence of a key wins, so text
// in a late free-form value (Comment, Command) cannot override an early field such as JobState.
void AddKeyValues(absl::string_view text, std::map<std::string, std::string>* fields) {
  std::string* current = nullptr;
  for (absl::string_view token : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    absl::string_view key;
    absl::string_view value;
    if (StartsKey(token, &key, &value)) {
      auto [it, inserted] = fields->try_emplace(std::string(key), std::string(value));
      // A repeated key is ignored, and so is its continuation text.
      current = inserted ? &it->second : nullptr;
    } else if (current != nullptr) {
      absl::StrAppend(current, " ", token);
    }
  }
}

// Key=value pairs of one `scontrol show job -o` line.
std::map<std::string, std::string> ScontrolFields(absl::string_view line) {
  std::map<std::string, std::string> fields;
  // JobName is free text (it may contain spaces and `Key=`-like words); in every 22.05 line it
  // sits between JobId and UserId, so take it whole when that shape is there.
  constexpr absl::string_view kName = " JobName=";
  constexpr absl::string_view kUser = " UserId=";
  const size_t n = line.find(kName);
  const size_t u = n == absl::string_view::npos ? n : line.find(kUser, n + kName.size());
  if (u == absl::string_view::npos) {
    AddKeyValues(line, &fields);
    return fields;
  }
  AddKeyValues(line.substr(0, n), &fields);
  fields.try_emplace("JobName", std::string(line.substr(n + kName.size(), u - n - kName.size())));
  AddKeyValues(line.substr(u + 1), &fields);
  return fields;
}

}  // namespace

absl::StatusOr<JobInfo> ParseScontrolShowJob(absl::string_view output, absl::string_view job_id,
                                             absl::TimeZone tz) {
  size_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    if (!absl::StartsWith(line, "JobId=")) continue;  // "No jobs in the system", warnings
    std::map<std::string, std::string> f = ScontrolFields(line);
    auto get = [&f](const char* key) -> absl::string_view {
      auto it = f.find(key);
      return it == f.end() ? absl::string_view() : absl::string_view(it->second);
    };
    JobInfo job;
    job.job_id = std::string(absl::StripAsciiWhitespace(get("JobId")));
    if (!IsJobId(job.job_id)) {
      return absl::InvalidArgumentError(absl::StrCat("scontrol show job: line ", line_no,
                                                     ": bad JobId: \"", Excerpt(line), "\""));
    }
    if (!job_id.empty() && job.job_id != job_id) continue;
    job.state = NormalizeJobState(get("JobState"));
    if (job.state.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("scontrol show job: line ", line_no,
                                                     ": no JobState: \"", Excerpt(line), "\""));
    }
    job.name = std::string(get("JobName"));
    job.reason = OptionalText(get("Reason"));
    // Unparsable optional fields stay unset: Show is the authority on the exit code, so a bad
    // value there must not turn into a made-up 0.
    (void)SetExitCode(get("ExitCode"), &job);
    int restarts = 0;
    if (absl::SimpleAtoi(get("Restarts"), &restarts) && restarts >= 0) job.restarts = restarts;
    std::vector<std::string> ignored;
    SetTime(get("SubmitTime"), "submit", tz, line_no, &job.submit_time, &ignored);
    SetTime(get("StartTime"), "start", tz, line_no, &job.start_time, &ignored);
    SetTime(get("EndTime"), "end", tz, line_no, &job.end_time, &ignored);
    if (std::optional<int64_t> e = ParseSlurmElapsed(get("RunTime")); e.has_value()) {
      job.elapsed_seconds = *e;
    }
    job.node_list = OptionalText(get("NodeList"));
    job.partition = OptionalText(get("Partition"));
    DropPredictedTimes(&job);
    return job;
  }
  if (job_id.empty()) {
    return absl::NotFoundError(
        absl::StrCat("scontrol show job printed no job: \"", Excerpt(output), "\""));
  }
  return absl::NotFoundError(absl::StrCat("scontrol show job printed no job ", job_id));
}

std::vector<JobInfo> MergeQueueIntoAccounting(std::vector<JobInfo> accounting,
                                              const std::vector<JobInfo>& queue) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < accounting.size(); ++i) index.emplace(accounting[i].job_id, i);
  for (const JobInfo& q : queue) {
    auto it = index.find(q.job_id);
    if (it == index.end()) {
      index.emplace(q.job_id, accounting.size());
      accounting.push_back(q);
      continue;
    }
    JobInfo& a = accounting[it->second];
    a.name = q.name;
    a.state = q.state;
    a.reason = q.reason;
    a.submit_time = q.submit_time;
    a.start_time = q.start_time;
    a.end_time = q.end_time;
    a.elapsed_seconds = q.elapsed_seconds;
    a.node_list = q.node_list;
    a.partition = q.partition;
  }
  std::sort(accounting.begin(), accounting.end(),
            [](const JobInfo& a, const JobInfo& b) { return JobIdLess(a.job_id, b.job_id); });
  return accounting;
}

}  // namespace evalctl::agent
