#include "clients/cli/format.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace evalctl::cli {
namespace {

// Enum value names without their prefix, lowercased: TASK_STATE_RUNNING → running.
std::string EnumWord(const std::string& full, absl::string_view prefix) {
  absl::string_view word = full;
  if (word.empty() || absl::EndsWith(word, "_UNSPECIFIED")) return "-";
  absl::ConsumePrefix(&word, prefix);
  return absl::AsciiStrToLower(word);
}

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

bool IsSet(const google::protobuf::Timestamp& ts) { return ts.seconds() != 0 || ts.nanos() != 0; }

}  // namespace

std::string StateName(v1::TaskState state) {
  return EnumWord(v1::TaskState_Name(state), "TASK_STATE_");
}

std::string PhaseName(v1::Phase phase) { return EnumWord(v1::Phase_Name(phase), "PHASE_"); }

std::string EventKindName(v1::TaskEvent::Kind kind) {
  return EnumWord(v1::TaskEvent::Kind_Name(kind), "KIND_");
}

std::string ResumeReasonName(v1::ResumeReason reason) {
  return EnumWord(v1::ResumeReason_Name(reason), "RESUME_REASON_");
}

std::string DisplayState(const v1::Task& task) {
  if (task.cancel_requested() && !IsTerminal(task.state())) return "cancelling";
  return StateName(task.state());
}

std::string ProgressText(const v1::Progress& progress) {
  if (progress.total() > 0) {
    const int64_t pct = std::clamp<int64_t>(progress.done() * 100 / progress.total(), 0, 100);
    return absl::StrCat(progress.done(), "/", progress.total(), " ", pct, "%");
  }
  if (progress.done() > 0) return absl::StrCat(progress.done());
  return "-";
}

std::string ProgressBar(const v1::Progress& progress, int width) {
  if (progress.total() <= 0) {
    return absl::StrCat("[", std::string(width, ' '), "] ",
                        progress.done() > 0 ? absl::StrCat(progress.done()) : std::string("-"));
  }
  const double fraction = std::clamp(
      static_cast<double>(progress.done()) / static_cast<double>(progress.total()), 0.0, 1.0);
  const int filled = static_cast<int>(fraction * width);
  return absl::StrFormat("[%s%s] %3d%%", std::string(filled, '#'), std::string(width - filled, '-'),
                         static_cast<int>(fraction * 100));
}

std::string FormatTimestamp(const google::protobuf::Timestamp& ts, absl::TimeZone tz) {
  if (!IsSet(ts)) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", ToTime(ts), tz);
}

nlohmann::json TimestampJson(const google::protobuf::Timestamp& ts) {
  if (!IsSet(ts)) return nullptr;
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", ToTime(ts), absl::UTCTimeZone());
}

std::string FormatSeconds(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 60) return absl::StrCat(seconds, "s");
  if (seconds < 3600) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  if (seconds < 86400) return absl::StrFormat("%dh%02dm", seconds / 3600, seconds % 3600 / 60);
  return absl::StrFormat("%dd%02dh", seconds / 86400, seconds % 86400 / 3600);
}

std::string CountsSummary(const v1::TaskCounts& c) {
  std::vector<std::string> parts;
  auto add = [&](int n, absl::string_view word) {
    if (n > 0) parts.push_back(absl::StrCat(n, " ", word));
  };
  add(c.pending(), "pending");
  add(c.queued(), "queued");
  add(c.running(), "running");
  add(c.resuming(), "resuming");
  add(c.succeeded(), "succeeded");
  add(c.failed(), "failed");
  add(c.cancelled(), "cancelled");
  add(c.budget_exhausted(), "budget_exhausted");
  return parts.empty() ? "no tasks" : absl::StrJoin(parts, ", ");
}

int TotalTasks(const v1::TaskCounts& c) {
  return c.pending() + c.queued() + c.running() + c.resuming() + c.succeeded() + c.failed() +
         c.cancelled() + c.budget_exhausted();
}

std::string SlurmJobOf(const v1::Task& task) {
  if (!task.slurm_job_id().empty()) return task.slurm_job_id();
  for (int i = task.attempts_size() - 1; i >= 0; --i) {
    if (!task.attempts(i).slurm_job_id().empty()) return task.attempts(i).slurm_job_id();
  }
  return "-";
}

int AttemptCount(const v1::Task& task) {
  return std::max(task.attempt_count(), task.attempts_size());
}

std::string Cell(absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return "-";
  return absl::StrReplaceAll(value, {{"\r\n", " "}, {"\n", " "}, {"\r", " "}, {"\t", " "}});
}

size_t DisplayWidth(absl::string_view text) {
  size_t n = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

std::string TruncateToWidth(absl::string_view text, size_t width) {
  if (width == 0 || DisplayWidth(text) <= width) return std::string(text);
  size_t columns = 0;
  size_t i = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      if (columns == width) break;
      ++columns;
    }
  }
  return std::string(text.substr(0, i));
}

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::AddRow(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

std::vector<std::string> Table::Lines() const {
  std::vector<size_t> widths(header_.size());
  for (size_t c = 0; c < header_.size(); ++c) widths[c] = DisplayWidth(header_[c]);
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) {
      absl::StrAppend(&out, cells[c]);
      if (c + 1 < cells.size()) {
        out.append(widths[c] - DisplayWidth(cells[c]) + 2, ' ');
      }
    }
    return std::string(absl::StripTrailingAsciiWhitespace(out));
  };
  std::vector<std::string> lines = {line(header_)};
  for (const auto& row : rows_) lines.push_back(line(row));
  return lines;
}

void Table::Print(std::ostream& out) const {
  for (const std::string& l : Lines()) out << l << "\n";
}

Table TaskTable() {
  return Table(
      {"Task ID", "Name", "State", "Phase", "Progress", "Attempts", "Slurm job", "Reason"});
}

void AddTaskRow(Table& table, const v1::Task& task) {
  std::string reason = task.reason();
  if (task.cancel_requested() && !IsTerminal(task.state()) && reason.empty()) {
    reason = "cancel requested";
  }
  table.AddRow({task.id(), Cell(task.name()), DisplayState(task), PhaseName(task.phase()),
                ProgressText(task.progress()), absl::StrCat(AttemptCount(task)), SlurmJobOf(task),
                Cell(reason)});
}

std::string CsvField(absl::string_view value) {
  if (value.find_first_of(",\"\r\n") == absl::string_view::npos) return std::string(value);
  return absl::StrCat("\"", absl::StrReplaceAll(value, {{"\"", "\"\""}}), "\"");
}

std::string DumpJson(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json ToJson(const v1::Attempt& a) {
  nlohmann::json j = {
      {"number", a.number()},
      {"attempt_id", a.attempt_id()},
      {"slurm_job_id", a.slurm_job_id()},
      {"slurm_state", a.slurm_state()},
      {"slurm_reason", a.slurm_reason()},
      {"exit_code", nullptr},
      {"signal", nullptr},
      {"submit_time", TimestampJson(a.submit_time())},
      {"start_time", TimestampJson(a.start_time())},
      {"end_time", TimestampJson(a.end_time())},
      {"elapsed_seconds", a.elapsed_seconds()},
      {"node_list", a.node_list()},
      {"resume_reason", a.resume_reason() == v1::RESUME_REASON_UNSPECIFIED
                            ? nlohmann::json(nullptr)
                            : nlohmann::json(ResumeReasonName(a.resume_reason()))},
      {"slurm_restarts", a.slurm_restarts()},
  };
  if (a.has_exit_code()) j["exit_code"] = a.exit_code();
  if (a.has_signal()) j["signal"] = a.signal();
  return j;
}

nlohmann::json ToJson(const v1::Progress& p) {
  nlohmann::json j = {{"done", p.done()}, {"total", p.total()}};
  return j;
}

nlohmann::json ToJson(const v1::Score& s) {
  nlohmann::json stats = nlohmann::json::object();
  for (const auto& [k, v] : s.stats()) stats[k] = v;
  return {{"task", s.task()},
          {"metric", s.metric()},
          {"score", s.score()},
          {"value", s.value()},
          {"stats", stats}};
}

nlohmann::json ToJson(const v1::TaskResults& r) {
  nlohmann::json scores = nlohmann::json::array();
  for (const v1::Score& s : r.scores()) scores.push_back(ToJson(s));
  return {{"results_path", r.results_path()}, {"scores", scores}};
}

nlohmann::json ToJson(const v1::Task& t) {
  nlohmann::json attempts = nlohmann::json::array();
  for (const v1::Attempt& a : t.attempts()) attempts.push_back(ToJson(a));
  return {
      {"id", t.id()},
      {"invocation_id", t.invocation_id()},
      {"index", t.index()},
      {"name", t.name()},
      {"dir_name", t.dir_name()},
      {"state", StateName(t.state())},
      {"phase", t.phase() == v1::PHASE_UNSPECIFIED ? nlohmann::json(nullptr)
                                                   : nlohmann::json(PhaseName(t.phase()))},
      {"reason", t.reason()},
      {"progress", ToJson(t.progress())},
      {"attempts", attempts},
      {"slurm_job_id",
       SlurmJobOf(t) == "-" ? nlohmann::json(nullptr) : nlohmann::json(SlurmJobOf(t))},
      {"elapsed_seconds", t.elapsed_seconds()},
      {"results", ToJson(t.results())},
      {"run_dir", t.run_dir()},
      {"cancel_requested", t.cancel_requested()},
      {"created_time", TimestampJson(t.created_time())},
      {"updated_time", TimestampJson(t.updated_time())},
      {"resume_policy",
       {{"max_walltime_seconds", t.resume_policy().max_walltime_seconds()},
        {"max_attempts", t.resume_policy().max_attempts()}}},
  };
}

nlohmann::json ToJson(const v1::TaskCounts& c) {
  return {{"pending", c.pending()},     {"queued", c.queued()},
          {"running", c.running()},     {"resuming", c.resuming()},
          {"succeeded", c.succeeded()}, {"failed", c.failed()},
          {"cancelled", c.cancelled()}, {"budget_exhausted", c.budget_exhausted()}};
}

nlohmann::json ToJson(const v1::Invocation& inv, bool with_config) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const v1::Task& t : inv.tasks()) tasks.push_back(ToJson(t));
  nlohmann::json j = {
      {"id", inv.id()},
      {"owner", inv.owner()},
      {"created_time", TimestampJson(inv.created_time())},
      {"cluster", inv.cluster()},
      {"hostname", inv.hostname()},
      {"username", inv.username()},
      {"run_dir", inv.run_dir()},
      {"finished", inv.finished()},
      {"counts", ToJson(inv.counts())},
      {"tasks", tasks},
  };
  if (with_config) j["resolved_config"] = inv.resolved_config();
  return j;
}

nlohmann::json ToJson(const v1::Cluster& c) {
  return {
      {"name", c.name()},
      {"aliases", std::vector<std::string>(c.aliases().begin(), c.aliases().end())},
      {"unix_user", c.unix_user()},
      {"agent_id", c.agent_id()},
      {"agent_version", c.agent_version()},
      {"capabilities", std::vector<std::string>(c.capabilities().begin(), c.capabilities().end())},
      {"connected", c.connected()},
      {"last_seen", TimestampJson(c.last_seen())},
      {"slurm_reachable", c.slurm_reachable()},
      {"slurm_message", c.slurm_message()},
      {"tracked_jobs", c.tracked_jobs()}};
}

nlohmann::json ToJson(const v1::TaskScores& s) {
  nlohmann::json j = ToJson(s.results());
  j["task_id"] = s.task_id();
  j["name"] = s.name();
  j["state"] = StateName(s.state());
  return j;
}

nlohmann::json ToJson(const v1::WatchInvocationResponse& r) {
  const v1::TaskEvent& e = r.event();
  return {{"sequence", r.sequence()},
          {"invocation_id", r.invocation_id()},
          {"overflowed", r.overflowed()},
          {"kind", EventKindName(e.kind())},
          {"task_id", e.task_id()},
          {"time", TimestampJson(e.time())},
          {"state", StateName(e.state())},
          {"phase", e.phase() == v1::PHASE_UNSPECIFIED ? nlohmann::json(nullptr)
                                                       : nlohmann::json(PhaseName(e.phase()))},
          {"reason", e.reason()},
          {"progress", ToJson(e.progress())},
          {"attempt", e.attempt().number() > 0 ? ToJson(e.attempt()) : nlohmann::json(nullptr)},
          {"elapsed_seconds", e.elapsed_seconds()}};
}

}  // namespace evalctl::cli
