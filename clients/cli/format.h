// How the `evalctl` CLI shows things: state and phase names, progress, times, aligned tables, CSV
// fields and the JSON form of the API's messages (stable keys in snake_case, enums as lowercase
// words, times as RFC 3339 UTC strings or null, numbers as numbers).
//
//   Table t({"Task ID", "Name", "State"});
//   t.AddRow({task.id(), task.name(), StateName(task.state())});
//   t.Print(out);
//
// Pure functions and a value type; thread-compatible.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/task_vocabulary.h"
#include "evalctl/v1/eval_service.pb.h"
#include "nlohmann/json.hpp"

namespace evalctl::cli {

namespace v1 = ::evalctl::v1;

// "running", "budget_exhausted"; "-" for unspecified.
std::string StateName(v1::TaskState state);
// "evaluating", "waiting_for_endpoint"; "-" for unspecified.
std::string PhaseName(v1::Phase phase);
// "state_changed", "finished", ...
std::string EventKindName(v1::TaskEvent::Kind kind);
// "timeout", "manual"; "-" for unspecified.
std::string ResumeReasonName(v1::ResumeReason reason);

// The state as a user reads it: "cancelling" while a cancel is not yet confirmed.
std::string DisplayState(const v1::Task& task);

// "120/1000 12%", "120" when the total is unknown, "-" when nothing is known.
std::string ProgressText(const v1::Progress& progress);
// "[#####---------------]  25%"; the bar is `width` characters between the brackets.
std::string ProgressBar(const v1::Progress& progress, int width = 20);

// "2026-11-26 13:04:05" in `tz`; "-" for an unset timestamp.
std::string FormatTimestamp(const google::protobuf::Timestamp& ts, absl::TimeZone tz);
// RFC 3339 UTC ("2026-11-26T13:04:05Z"); null for an unset timestamp.
nlohmann::json TimestampJson(const google::protobuf::Timestamp& ts);
// "45s", "12m05s", "2h03m", "3d04h".
std::string FormatSeconds(int64_t seconds);

// "2 running, 1 succeeded"; "no tasks" when all counts are zero.
std::string CountsSummary(const v1::TaskCounts& counts);
int TotalTasks(const v1::TaskCounts& counts);

// The newest attempt's Slurm job id; "-" before the first sbatch. From the task's attempts, or
// from its slurm_job_id in GetInvocation's BASIC view (which has no attempts).
std::string SlurmJobOf(const v1::Task& task);
// How many attempts the task has had (either view, as SlurmJobOf).
int AttemptCount(const v1::Task& task);

// Replaces line breaks and tabs so that a value stays on one table line; "-" for empty.
std::string Cell(absl::string_view value);

// A left-aligned text table; columns are two spaces apart, the last one is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void AddRow(std::vector<std::string> row);
  bool empty() const { return rows_.empty(); }
  // The table as lines, without line breaks.
  std::vector<std::string> Lines() const;
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Display width in terminal columns (UTF-8 code points; every one counts as one column).
size_t DisplayWidth(absl::string_view text);
// At most `width` columns of `text` (UTF-8 aware); `width` 0 leaves it alone.
std::string TruncateToWidth(absl::string_view text, size_t width);

// The status table: Task ID | Name | State | Phase | Progress | Attempts | Slurm job | Reason.
Table TaskTable();
void AddTaskRow(Table& table, const v1::Task& task);

// One field of RFC 4180 CSV, quoted when it needs to be.
std::string CsvField(absl::string_view value);

// j.dump(indent), with invalid UTF-8 (from a log line or a task name) replaced instead of thrown.
std::string DumpJson(const nlohmann::json& j, int indent = -1);

nlohmann::json ToJson(const v1::Attempt& attempt);
nlohmann::json ToJson(const v1::Progress& progress);
nlohmann::json ToJson(const v1::Score& score);
nlohmann::json ToJson(const v1::TaskResults& results);
nlohmann::json ToJson(const v1::Task& task);
nlohmann::json ToJson(const v1::TaskCounts& counts);
// The resolved configuration is left out unless `with_config`.
nlohmann::json ToJson(const v1::Invocation& invocation, bool with_config = false);
nlohmann::json ToJson(const v1::Cluster& cluster);
nlohmann::json ToJson(const v1::TaskScores& scores);
nlohmann::json ToJson(const v1::WatchInvocationResponse& response);

}  // namespace evalctl::cli
