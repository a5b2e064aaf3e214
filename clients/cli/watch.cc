// The streaming commands: `watch` and `run` (submit, and with --wait the live table).
#include <algorithm>
#include <functional>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "clients/cli/commands.h"
#include "clients/cli/format.h"
#include "common/status_macros.h"

namespace evalctl::cli {
namespace {

using EventHandler = std::function<absl::Status(const v1::WatchInvocationResponse&)>;

// Follows WatchInvocation until the controller ends the stream. A stream that drops after it
// delivered something is reopened after the last sequence seen, with backoff; a controller that
// cannot be reached at the start is an error at once.
absl::Status FollowEvents(client::Client& client, const std::string& id, uint64_t after,
                          const ReconnectPolicy& policy, const Io& io,
                          const EventHandler& on_event) {
  bool delivered_once = false;
  int failures = 0;
  absl::Duration backoff = policy.initial_backoff;
  while (true) {
    v1::WatchInvocationRequest request;
    request.set_id(id);
    request.set_after_sequence(after);
    absl::Status status;
    bool received = false;
    absl::StatusOr<std::unique_ptr<client::WatchStream>> stream = client.WatchInvocation(request);
    if (stream.ok()) {
      v1::WatchInvocationResponse response;
      while ((*stream)->Next(&response)) {
        received = true;
        after = std::max(after, response.sequence());
        if (absl::Status s = on_event(response); !s.ok()) {
          (*stream)->Cancel();
          return s;
        }
      }
      status = (*stream)->Finish();
      if (status.ok()) return status;
    } else {
      status = stream.status();
    }
    if (received) {
      delivered_once = true;
      failures = 0;
      backoff = policy.initial_backoff;
    }
    if (status.code() != absl::StatusCode::kUnavailable || !delivered_once) return status;
    if (++failures > policy.max_attempts) {
      return Annotate(status, absl::StrCat("the event stream dropped and ", policy.max_attempts,
                                           " attempts to resume it failed"));
    }
    io.err << "evalctl: event stream interrupted (" << status.message()
           << "); resuming after event " << after << " in " << absl::FormatDuration(backoff)
           << "\n";
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
}

std::string TimeOf(const google::protobuf::Timestamp& ts, const Io& io) {
  if (ts.seconds() == 0 && ts.nanos() == 0) {
    return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::Now(), io.tz);
  }
  return FormatTimestamp(ts, io.tz);
}

std::string StateAndPhase(v1::TaskState state, v1::Phase phase) {
  std::string out = StateName(state);
  if (phase != v1::PHASE_UNSPECIFIED && !IsTerminal(state)) {
    absl::StrAppend(&out, "/", PhaseName(phase));
  }
  return out;
}

// One event on one line:
//   <time>  <task id>  <kind>  <state>[/<phase>]  [progress P]  [attempt N]  [job J]  [reason: R]
std::string EventLine(const v1::WatchInvocationResponse& r, const Io& io) {
  const v1::TaskEvent& e = r.event();
  std::vector<std::string> parts = {TimeOf(e.time(), io), e.task_id(), EventKindName(e.kind()),
                                    StateAndPhase(e.state(), e.phase())};
  if (ProgressText(e.progress()) != "-") {
    parts.push_back(absl::StrCat("progress ", ProgressText(e.progress())));
  }
  if (e.attempt().number() > 0) parts.push_back(absl::StrCat("attempt ", e.attempt().number()));
  if (!e.attempt().slurm_job_id().empty()) {
    parts.push_back(absl::StrCat("job ", e.attempt().slurm_job_id()));
  }
  if (!e.reason().empty()) parts.push_back(absl::StrCat("reason: ", Cell(e.reason())));
  return absl::StrJoin(parts, "  ");
}

std::string SnapshotLine(const v1::Task& t, const Io& io) {
  std::vector<std::string> parts = {TimeOf({}, io), t.id(), "snapshot",
                                    StateAndPhase(t.state(), t.phase())};
  if (ProgressText(t.progress()) != "-") {
    parts.push_back(absl::StrCat("progress ", ProgressText(t.progress())));
  }
  if (AttemptCount(t) > 0) parts.push_back(absl::StrCat("attempt ", AttemptCount(t)));
  if (SlurmJobOf(t) != "-") parts.push_back(absl::StrCat("job ", SlurmJobOf(t)));
  if (!t.reason().empty()) parts.push_back(absl::StrCat("reason: ", Cell(t.reason())));
  return absl::StrJoin(parts, "  ");
}

// Re-reads the watched tasks after the controller dropped events for this watcher.
absl::StatusOr<std::vector<v1::Task>> ReadTasks(client::Client& client, const std::string& id) {
  std::vector<v1::Task> tasks;
  if (id.find('.') != std::string::npos) {
    v1::GetTaskRequest get;
    get.set_id(id);
    ASSIGN_OR_RETURN(tasks.emplace_back(), client.GetTask(get));
    return tasks;
  }
  ASSIGN_OR_RETURN(v1::Invocation inv, ReadInvocation(client, id, v1::INVOCATION_VIEW_BASIC));
  for (v1::Task& t : *inv.mutable_tasks()) tasks.push_back(std::move(t));
  return tasks;
}

// The table `run --wait` keeps up to date: redrawn in place on a terminal, one line per visible
// change otherwise.
class LiveTable {
 public:
  LiveTable(const Io& io, std::string invocation_id)
      : io_(io), invocation_id_(std::move(invocation_id)) {}

  void Reset(const v1::Invocation& inv) {
    for (const v1::Task& t : inv.tasks()) {
      Row& row = RowFor(t.id());
      row.name = t.name();
      row.state = t.state();
      row.phase = t.phase();
      row.progress = t.progress();
      row.attempts = AttemptCount(t);
      row.job = SlurmJobOf(t) == "-" ? "" : SlurmJobOf(t);
      row.reason = t.reason();
      row.cancel_requested = t.cancel_requested();
    }
  }

  void Apply(const v1::TaskEvent& e) {
    Row& row = RowFor(e.task_id());
    row.state = e.state();
    row.phase = e.phase();
    row.progress = e.progress();
    row.reason = e.reason();
    if (e.attempt().number() > 0) row.attempts = std::max(row.attempts, e.attempt().number());
    if (!e.attempt().slurm_job_id().empty()) row.job = e.attempt().slurm_job_id();
    if (!io_.tty) PrintChange(row, e.time());
  }

  // Terminal: redraws the whole table. Otherwise prints the rows that changed since last time.
  void Render() {
    if (!io_.tty) {
      for (const Row& row : rows_) PrintChange(row, {});
      return;
    }
    std::vector<std::string> lines = {absl::StrCat("Invocation ", invocation_id_, ": ", Summary())};
    // The bar gives up columns first when the terminal is narrow.
    std::vector<std::string> table = TableLines(kBarWidth);
    if (io_.width > 1) {
      size_t widest = 0;
      for (const std::string& l : table) widest = std::max(widest, DisplayWidth(l));
      const int overflow = static_cast<int>(widest) - (io_.width - 1);
      if (overflow > 0) table = TableLines(std::max(kMinBarWidth, kBarWidth - overflow));
    }
    for (std::string& l : table) lines.push_back(std::move(l));
    Redraw(lines);
  }

  // Terminal: replaces the live table by `lines` (the final status table).
  void Replace(const std::vector<std::string>& lines) {
    if (io_.tty) {
      // Nothing is redrawn after this table, so it may wrap: keep it whole.
      Redraw(lines, /*cut=*/false);
    } else {
      for (const std::string& l : lines) io_.out << l << "\n";
    }
  }

 private:
  struct Row {
    std::string id;
    std::string name;
    v1::TaskState state = v1::TASK_STATE_UNSPECIFIED;
    v1::Phase phase = v1::PHASE_UNSPECIFIED;
    v1::Progress progress;
    int attempts = 0;
    std::string job;
    std::string reason;
    bool cancel_requested = false;
  };

  static constexpr int kBarWidth = 20;
  static constexpr int kMinBarWidth = 5;

  std::vector<std::string> TableLines(int bar_width) const {
    Table table({"Task ID", "Name", "State", "Phase", "Progress", "Attempts", "Slurm job"});
    for (const Row& row : rows_) {
      table.AddRow({row.id, Cell(row.name), State(row), PhaseName(row.phase),
                    ProgressBar(row.progress, bar_width), absl::StrCat(row.attempts),
                    row.job.empty() ? "-" : row.job});
    }
    return table.Lines();
  }

  Row& RowFor(const std::string& id) {
    auto it = index_.find(id);
    if (it != index_.end()) return rows_[it->second];
    index_[id] = rows_.size();
    rows_.push_back(Row{.id = id});
    return rows_.back();
  }

  static std::string State(const Row& row) {
    if (row.cancel_requested && !IsTerminal(row.state)) return "cancelling";
    return StateName(row.state);
  }

  std::string Summary() const {
    std::map<std::string, int> counts;
    for (const Row& row : rows_) ++counts[State(row)];
    std::vector<std::string> parts;
    for (const auto& [state, n] : counts) parts.push_back(absl::StrCat(n, " ", state));
    return absl::StrJoin(parts, ", ");
  }

  void PrintChange(const Row& row, const google::protobuf::Timestamp& time) {
    // Progress is shown in steps of 10% so that a log does not fill with counters.
    const int64_t bucket =
        row.progress.total() > 0 ? row.progress.done() * 10 / row.progress.total() : -1;
    const std::string key = absl::StrCat(State(row), "|", row.phase, "|", bucket, "|", row.attempts,
                                         "|", row.job, "|", row.reason);
    std::string& last = printed_[row.id];
    if (last == key) return;
    last = key;
    std::vector<std::string> parts = {TimeOf(time, io_), row.id, Cell(row.name),
                                      StateAndPhase(row.state, row.phase)};
    if (row.cancel_requested && !IsTerminal(row.state)) parts[3] = "cancelling";
    if (ProgressText(row.progress) != "-") parts.push_back(ProgressText(row.progress));
    if (row.attempts > 0) parts.push_back(absl::StrCat("attempt ", row.attempts));
    if (!row.job.empty()) parts.push_back(absl::StrCat("job ", row.job));
    if (!row.reason.empty()) parts.push_back(absl::StrCat("reason: ", Cell(row.reason)));
    io_.out << absl::StrJoin(parts, "  ") << "\n";
    io_.out.flush();
  }

  void Redraw(const std::vector<std::string>& lines, bool cut = true) {
    // Back to the first line drawn last time, then clear to the end of the screen.
    if (drawn_ > 0) io_.out << "\x1b[" << drawn_ << "F\x1b[J";
    // Lines are cut one column short of the width so that the terminal never wraps them, which
    // would break the count of lines to go back over.
    const size_t width = cut && io_.width > 1 ? static_cast<size_t>(io_.width - 1) : 0;
    for (const std::string& l : lines) io_.out << TruncateToWidth(l, width) << "\n";
    io_.out.flush();
    drawn_ = static_cast<int>(lines.size());
  }

  const Io& io_;
  std::string invocation_id_;
  std::vector<Row> rows_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> printed_;
  int drawn_ = 0;
};

}  // namespace

absl::Status WatchCommand(client::Client& client, const WatchOptions& options, const Io& io) {
  return FollowEvents(
      client, options.id, options.after_sequence, options.reconnect, io,
      [&](const v1::WatchInvocationResponse& r) -> absl::Status {
        if (r.overflowed()) {
          io.err << "evalctl: this watcher fell behind and the controller dropped events; "
                    "the current state follows\n";
          if (options.id.empty()) return absl::OkStatus();
          ASSIGN_OR_RETURN(std::vector<v1::Task> tasks, ReadTasks(client, options.id));
          for (const v1::Task& t : tasks) {
            if (options.json) {
              nlohmann::json j = ToJson(t);
              j["kind"] = "snapshot";
              io.out << DumpJson(j) << "\n";
            } else {
              io.out << SnapshotLine(t, io) << "\n";
            }
          }
          io.out.flush();
          return absl::OkStatus();
        }
        if (options.json) {
          io.out << DumpJson(ToJson(r)) << "\n";
        } else {
          io.out << EventLine(r, io) << "\n";
        }
        io.out.flush();
        return absl::OkStatus();
      });
}

absl::StatusOr<RunOutcome> RunCommand(client::Client& client, const v1::ConfigSource& source,
                                      const RunOptions& options, const Io& io) {
  v1::SubmitInvocationRequest request;
  request.set_request_id(options.request_id.empty() ? client::NewRequestId() : options.request_id);
  *request.mutable_config() = source;
  ASSIGN_OR_RETURN(v1::SubmitInvocationResponse response, client.SubmitInvocation(request));
  v1::Invocation inv = response.invocation();
  const std::string& id = inv.id();
  io.out << "Submitted invocation " << id << ": " << inv.tasks_size() << " task(s) on cluster "
         << Cell(inv.cluster());
  if (response.duplicate()) io.out << " (already submitted with this request id)";
  io.out << "\n";
  if (!inv.run_dir().empty()) io.out << "Run dir: " << inv.run_dir() << "\n";
  RunOutcome outcome{.invocation_id = id};
  if (!options.wait) {
    io.out << "\nFollow it:   evalctl watch " << id << "\n"
           << "Status:      evalctl status " << id << "\n"
           << "Logs:        evalctl logs " << id << ".0 -f\n"
           << "Results:     evalctl results " << id << "\n"
           << "Cancel it:   evalctl kill " << id << "\n";
    io.out.flush();
    return outcome;
  }

  io.out << "\nWaiting for " << id << " (Ctrl-C stops waiting; the tasks keep running)\n";
  io.out.flush();
  if (inv.tasks_size() == 0) {
    ASSIGN_OR_RETURN(inv, ReadInvocation(client, id, v1::INVOCATION_VIEW_BASIC));
  }
  LiveTable table(io, id);
  table.Reset(inv);
  table.Render();
  absl::Status followed =
      FollowEvents(client, id, 0, options.reconnect, io, [&](const v1::WatchInvocationResponse& r) {
        if (r.overflowed()) {
          ASSIGN_OR_RETURN(v1::Invocation fresh,
                           ReadInvocation(client, id, v1::INVOCATION_VIEW_BASIC));
          table.Reset(fresh);
        } else {
          table.Apply(r.event());
        }
        if (io.tty) table.Render();
        return absl::OkStatus();
      });
  if (!followed.ok()) {
    return Annotate(followed, absl::StrCat("waiting for invocation ", id,
                                           " (it keeps running; see `evalctl status ", id, "`)"));
  }

  // The store is the source of truth for the final states.
  ASSIGN_OR_RETURN(v1::Invocation final_inv, ReadInvocation(client, id, v1::INVOCATION_VIEW_BASIC));
  Table final_table = TaskTable();
  std::vector<std::string> failed;
  for (const v1::Task& t : final_inv.tasks()) {
    AddTaskRow(final_table, t);
    if (t.state() != v1::TASK_STATE_SUCCEEDED) {
      failed.push_back(absl::StrCat(t.id(), " ", StateName(t.state())));
    }
  }
  std::vector<std::string> lines = {
      absl::StrCat("Invocation ", id, " finished: ", CountsSummary(final_inv.counts()))};
  if (!io.tty) lines.insert(lines.begin(), "");
  for (std::string& l : final_table.Lines()) lines.push_back(std::move(l));
  table.Replace(lines);

  io.out << "\nResults:\n";
  RETURN_IF_ERROR(ResultsCommand(client, {.id = id}, io));
  io.out.flush();
  if (!failed.empty()) {
    outcome.all_succeeded = false;
    io.err << "evalctl: " << failed.size() << " of " << final_inv.tasks_size()
           << " task(s) did not succeed: " << absl::StrJoin(failed, ", ") << "\n";
  }
  return outcome;
}

}  // namespace evalctl::cli
