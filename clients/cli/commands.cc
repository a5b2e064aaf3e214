// The read-and-act commands: status, ls, logs, kill, resume, info, results, cluster ls.
// `watch` and `run` are in watch.cc.
#include "clients/cli/commands.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "clients/cli/format.h"
#include "common/status_macros.h"

namespace evalctl::cli {
namespace {

constexpr int kMaxPageSize = 1000;

// A `.` in an id means a task, as in NeMo Evaluator Launcher.
bool IsTaskId(const std::string& id) { return id.find('.') != std::string::npos; }

void PrintJson(const nlohmann::json& j, const Io& io) { io.out << DumpJson(j, 2) << "\n"; }

void PrintInvocationHeader(const v1::Invocation& inv, const Io& io) {
  io.out << "Invocation " << inv.id() << "  cluster " << Cell(inv.cluster()) << "  created "
         << FormatTimestamp(inv.created_time(), io.tz) << "  " << TotalTasks(inv.counts())
         << " task(s): " << CountsSummary(inv.counts()) << "\n";
  if (!inv.run_dir().empty()) io.out << "Run dir: " << inv.run_dir() << "\n";
}

void PrintInvocationStatus(const v1::Invocation& inv, const Io& io) {
  PrintInvocationHeader(inv, io);
  Table table = TaskTable();
  for (const v1::Task& t : inv.tasks()) AddTaskRow(table, t);
  io.out << "\n";
  table.Print(io.out);
}

// Paths of an attempt's logs, as the job script writes them (common/run_layout.h).
struct LogPaths {
  std::string slurm;
  std::string eval;
  std::string server;
};
LogPaths LogPathsOf(const std::string& run_dir, const std::string& job) {
  return {absl::StrCat(run_dir, "/logs/slurm-", job, ".log"),
          absl::StrCat(run_dir, "/logs/client-", job, ".log"),
          absl::StrCat(run_dir, "/logs/server-*-", job, "-*.log")};
}

std::string FormatExit(const v1::Attempt& a) {
  if (a.has_signal()) return absl::StrCat("signal ", a.signal());
  if (a.has_exit_code()) return absl::StrCat(a.exit_code());
  return "-";
}

void PrintTaskInfo(const v1::Task& t, const Io& io) {
  io.out << "Task " << t.id() << "  " << Cell(t.name()) << "\n";
  std::string state = DisplayState(t);
  if (t.phase() != v1::PHASE_UNSPECIFIED) absl::StrAppend(&state, " (", PhaseName(t.phase()), ")");
  if (ProgressText(t.progress()) != "-") {
    absl::StrAppend(&state, ", progress ", ProgressText(t.progress()));
  }
  Table fields({"", ""});
  fields.AddRow({"  State", state});
  if (!t.reason().empty()) fields.AddRow({"  Reason", Cell(t.reason())});
  fields.AddRow({"  Run dir", Cell(t.run_dir())});
  fields.AddRow({"  Elapsed", FormatSeconds(t.elapsed_seconds())});
  const v1::ResumePolicy& policy = t.resume_policy();
  fields.AddRow(
      {"  Resume budget",
       absl::StrCat("max walltime ",
                    policy.max_walltime_seconds() > 0 ? FormatSeconds(policy.max_walltime_seconds())
                                                      : std::string("unlimited"),
                    ", max attempts ",
                    policy.max_attempts() > 0 ? absl::StrCat(policy.max_attempts())
                                              : std::string("unlimited"))});
  const std::string results_path = !t.results().results_path().empty()
                                       ? t.results().results_path()
                                       : absl::StrCat(t.run_dir(), "/artifacts/results.yml");
  fields.AddRow({"  Results", results_path});
  // The header row of `fields` is empty; skip it.
  std::vector<std::string> lines = fields.Lines();
  for (size_t i = 1; i < lines.size(); ++i) io.out << lines[i] << "\n";

  if (t.attempts_size() == 0) {
    io.out << "  Attempts: none yet\n";
    return;
  }
  io.out << "  Attempts:\n";
  Table attempts({"    #", "Slurm job", "Slurm state", "Submitted", "Started", "Ended", "Elapsed",
                  "Exit", "Nodes", "Resumed because"});
  for (const v1::Attempt& a : t.attempts()) {
    std::string slurm_state = Cell(a.slurm_state());
    if (!a.slurm_reason().empty()) absl::StrAppend(&slurm_state, " (", Cell(a.slurm_reason()), ")");
    attempts.AddRow({absl::StrCat("    ", a.number()), Cell(a.slurm_job_id()), slurm_state,
                     FormatTimestamp(a.submit_time(), io.tz),
                     FormatTimestamp(a.start_time(), io.tz), FormatTimestamp(a.end_time(), io.tz),
                     FormatSeconds(a.elapsed_seconds()), FormatExit(a), Cell(a.node_list()),
                     ResumeReasonName(a.resume_reason())});
  }
  attempts.Print(io.out);
  io.out << "  Logs:\n";
  for (const v1::Attempt& a : t.attempts()) {
    if (a.slurm_job_id().empty()) continue;
    const LogPaths paths = LogPathsOf(t.run_dir(), a.slurm_job_id());
    io.out << "    attempt " << a.number() << " (job " << a.slurm_job_id() << ")\n"
           << "      slurm   " << paths.slurm << "\n"
           << "      eval    " << paths.eval << "\n"
           << "      server  " << paths.server << "\n";
  }
  io.out << "    read them with: evalctl logs " << t.id() << " --which slurm|eval|server [-f]\n";
}

nlohmann::json TaskInfoJson(const v1::Task& t) {
  nlohmann::json j = ToJson(t);
  for (size_t i = 0; i < j["attempts"].size(); ++i) {
    const v1::Attempt& a = t.attempts(static_cast<int>(i));
    if (a.slurm_job_id().empty()) continue;
    const LogPaths paths = LogPathsOf(t.run_dir(), a.slurm_job_id());
    j["attempts"][i]["logs"] = {
        {"slurm", paths.slurm}, {"eval", paths.eval}, {"server", paths.server}};
  }
  return j;
}

void PrintConfig(const v1::Invocation& inv, const Io& io) {
  io.out << "\nResolved configuration (secrets redacted):\n";
  for (absl::string_view line : absl::StrSplit(inv.resolved_config(), '\n')) {
    if (!line.empty()) io.out << "  " << line << "\n";
  }
}

std::string FormatValue(double v) { return absl::StrFormat("%.4f", v); }

std::string StatOrDash(const v1::Score& s, const std::string& name, bool csv) {
  auto it = s.stats().find(name);
  if (it == s.stats().end()) return csv ? "" : "-";
  return csv ? absl::StrFormat("%.10g", it->second) : FormatValue(it->second);
}

}  // namespace

absl::StatusOr<v1::Invocation> ReadInvocation(client::Client& client, const std::string& id,
                                              v1::InvocationView view, int page_size) {
  v1::GetInvocationRequest get;
  get.set_id(id);
  get.set_view(view);
  get.set_page_size(page_size);
  ASSIGN_OR_RETURN(v1::Invocation inv, client.GetInvocation(get));
  get.set_id(inv.id());  // the prefix, resolved
  while (!inv.next_page_token().empty()) {
    get.set_page_token(inv.next_page_token());
    ASSIGN_OR_RETURN(v1::Invocation page, client.GetInvocation(get));
    for (v1::Task& t : *page.mutable_tasks()) *inv.add_tasks() = std::move(t);
    // The counts of the newest page: closest to the tasks read last.
    *inv.mutable_counts() = page.counts();
    inv.set_finished(page.finished());
    inv.set_next_page_token(page.next_page_token());
  }
  return inv;
}

absl::Status StatusCommand(client::Client& client, const StatusOptions& options, const Io& io) {
  // The table needs the BASIC view only; JSON shows every attempt and result.
  const v1::InvocationView view =
      options.json ? v1::INVOCATION_VIEW_FULL : v1::INVOCATION_VIEW_BASIC;
  std::vector<v1::Invocation> invocations;
  std::vector<v1::Task> tasks;
  if (options.ids.empty()) {
    v1::ListInvocationsRequest list;
    list.set_page_size(std::max(1, options.recent));
    ASSIGN_OR_RETURN(v1::ListInvocationsResponse recent, client.ListInvocations(list));
    for (const v1::Invocation& inv : recent.invocations()) {
      ASSIGN_OR_RETURN(invocations.emplace_back(), ReadInvocation(client, inv.id(), view));
    }
  }
  // Fetch everything first: a bad id fails the command before anything is printed.
  for (const std::string& id : options.ids) {
    if (IsTaskId(id)) {
      v1::GetTaskRequest get;
      get.set_id(id);
      ASSIGN_OR_RETURN(tasks.emplace_back(), client.GetTask(get));
    } else {
      ASSIGN_OR_RETURN(invocations.emplace_back(), ReadInvocation(client, id, view));
    }
  }

  if (options.json) {
    nlohmann::json j = {{"invocations", nlohmann::json::array()},
                        {"tasks", nlohmann::json::array()}};
    for (const v1::Invocation& inv : invocations) j["invocations"].push_back(ToJson(inv));
    for (const v1::Task& t : tasks) j["tasks"].push_back(ToJson(t));
    PrintJson(j, io);
    return absl::OkStatus();
  }
  if (options.ids.empty() && invocations.empty()) {
    io.out << "No invocations yet. Start one with: evalctl run --config FILE\n";
    return absl::OkStatus();
  }
  bool first = true;
  for (const v1::Invocation& inv : invocations) {
    if (!first) io.out << "\n";
    first = false;
    PrintInvocationStatus(inv, io);
  }
  if (!tasks.empty()) {
    if (!first) io.out << "\n";
    Table table = TaskTable();
    for (const v1::Task& t : tasks) AddTaskRow(table, t);
    table.Print(io.out);
  }
  if (options.ids.empty()) {
    io.err << "(the " << invocations.size()
           << " newest invocations; `evalctl ls runs` lists more)\n";
  }
  return absl::OkStatus();
}

absl::Status LsRunsCommand(client::Client& client, const LsRunsOptions& options, const Io& io) {
  if (options.limit <= 0) return absl::InvalidArgumentError("--limit must be at least 1");
  v1::ListInvocationsRequest request;
  request.set_page_size(std::min(options.limit, kMaxPageSize));
  if (options.since) request.mutable_since()->set_seconds(absl::ToUnixSeconds(*options.since));
  std::vector<v1::Invocation> invocations;
  while (static_cast<int>(invocations.size()) < options.limit) {
    ASSIGN_OR_RETURN(v1::ListInvocationsResponse page, client.ListInvocations(request));
    for (v1::Invocation& inv : *page.mutable_invocations()) invocations.push_back(std::move(inv));
    if (page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  if (static_cast<int>(invocations.size()) > options.limit) invocations.resize(options.limit);

  if (options.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const v1::Invocation& inv : invocations) {
      nlohmann::json item = ToJson(inv);
      item.erase("tasks");
      item["num_tasks"] = TotalTasks(inv.counts());
      j.push_back(std::move(item));
    }
    PrintJson(j, io);
    return absl::OkStatus();
  }
  if (invocations.empty()) {
    io.out << "No invocations" << (options.since ? " in that period" : "") << ".\n";
    return absl::OkStatus();
  }
  Table table({"Invocation", "Created", "Cluster", "Tasks", "States"});
  for (const v1::Invocation& inv : invocations) {
    table.AddRow({inv.id(), FormatTimestamp(inv.created_time(), io.tz), Cell(inv.cluster()),
                  absl::StrCat(TotalTasks(inv.counts())), CountsSummary(inv.counts())});
  }
  table.Print(io.out);
  return absl::OkStatus();
}

absl::Status LsTasksCommand(const config::Catalog& catalog, const LsTasksOptions& options,
                            const Io& io) {
  std::vector<std::string> names = catalog.Names();
  std::sort(names.begin(), names.end());
  if (options.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const std::string& name : names) {
      const config::CatalogEntry* e = catalog.Find(name);
      j.push_back({{"name", e->name},
                   {"runtimes", e->runtimes},
                   {"container", e->container},
                   {"endpoint_type", e->endpoint_type},
                   {"description", e->description}});
    }
    PrintJson(j, io);
    return absl::OkStatus();
  }
  Table table({"Name", "Runtimes", "Description"});
  for (const std::string& name : names) {
    const config::CatalogEntry* e = catalog.Find(name);
    table.AddRow({e->name, e->runtimes.empty() ? "-" : absl::StrJoin(e->runtimes, ","),
                  Cell(e->description)});
  }
  table.Print(io.out);
  return absl::OkStatus();
}

absl::Status LogsCommand(client::Client& client, const LogsOptions& options, const Io& io) {
  v1::StreamLogsRequest request;
  request.set_id(options.id);
  request.set_kind(options.kind);
  request.set_follow(options.follow);
  request.set_attempt(options.attempt);
  ASSIGN_OR_RETURN(std::unique_ptr<client::LogStream> stream, client.StreamLogs(request));
  v1::StreamLogsResponse chunk;
  while (stream->Next(&chunk)) {
    io.out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    io.out.flush();
  }
  return stream->Finish();
}

absl::Status KillCommand(client::Client& client, const std::string& id, const Io& io) {
  v1::CancelInvocationRequest request;
  request.set_id(id);
  ASSIGN_OR_RETURN(v1::CancelInvocationResponse response, client.CancelInvocation(request));
  int cancelled = 0;
  for (const v1::Task& t : response.tasks()) {
    if (t.cancel_requested() || t.state() == v1::TASK_STATE_CANCELLED) ++cancelled;
  }
  const int untouched = response.tasks_size() - cancelled;
  io.out << "Cancel requested for " << cancelled << " task(s)";
  if (untouched > 0) io.out << "; " << untouched << " had already finished";
  io.out << ".\n\n";
  Table table = TaskTable();
  for (const v1::Task& t : response.tasks()) AddTaskRow(table, t);
  table.Print(io.out);
  return absl::OkStatus();
}

absl::Status ResumeCommand(client::Client& client, const std::string& id, const Io& io) {
  v1::ResumeInvocationRequest request;
  request.set_id(id);
  ASSIGN_OR_RETURN(v1::ResumeInvocationResponse response, client.ResumeInvocation(request));
  if (response.resumed_size() == 0) {
    io.out << "Nothing to resume.\n";
  } else {
    io.out << "Resumed " << response.resumed_size()
           << " task(s); each starts a new attempt in its run directory:\n\n";
    Table table = TaskTable();
    for (const v1::Task& t : response.resumed()) AddTaskRow(table, t);
    table.Print(io.out);
  }
  if (response.skipped_size() > 0) {
    io.out << "\nSkipped " << response.skipped_size() << " task(s):\n";
    Table skipped({"Task ID", "Why"});
    for (const v1::SkippedTask& s : response.skipped()) {
      skipped.AddRow({s.task_id(), Cell(s.reason())});
    }
    skipped.Print(io.out);
  }
  return absl::OkStatus();
}

absl::Status InfoCommand(client::Client& client, const InfoOptions& options, const Io& io) {
  std::optional<v1::Task> task;
  std::string invocation_id = options.id;
  if (IsTaskId(options.id)) {
    v1::GetTaskRequest get;
    get.set_id(options.id);
    ASSIGN_OR_RETURN(task, client.GetTask(get));
    invocation_id = task->invocation_id();
  }
  ASSIGN_OR_RETURN(v1::Invocation inv,
                   ReadInvocation(client, invocation_id, v1::INVOCATION_VIEW_FULL));

  if (options.json) {
    nlohmann::json j;
    if (task) {
      j["invocation"] = ToJson(inv, /*with_config=*/true);
      j["invocation"].erase("tasks");
      j["task"] = TaskInfoJson(*task);
    } else {
      j["invocation"] = ToJson(inv, /*with_config=*/true);
      nlohmann::json tasks = nlohmann::json::array();
      for (const v1::Task& t : inv.tasks()) tasks.push_back(TaskInfoJson(t));
      j["invocation"]["tasks"] = std::move(tasks);
    }
    PrintJson(j, io);
    return absl::OkStatus();
  }

  Table fields({"", ""});
  fields.AddRow({"Invocation", inv.id()});
  fields.AddRow({"Owner", Cell(inv.owner())});
  fields.AddRow({"Created", FormatTimestamp(inv.created_time(), io.tz)});
  fields.AddRow({"Cluster", absl::StrCat(Cell(inv.cluster()), " (", Cell(inv.hostname()), " as ",
                                         Cell(inv.username()), ")")});
  fields.AddRow({"Run dir", Cell(inv.run_dir())});
  fields.AddRow({"Tasks", absl::StrCat(inv.tasks_size(), ": ", CountsSummary(inv.counts()))});
  std::vector<std::string> lines = fields.Lines();
  for (size_t i = 1; i < lines.size(); ++i) io.out << lines[i] << "\n";
  if (task) {
    io.out << "\n";
    PrintTaskInfo(*task, io);
  } else {
    for (const v1::Task& t : inv.tasks()) {
      io.out << "\n";
      PrintTaskInfo(t, io);
    }
  }
  PrintConfig(inv, io);
  return absl::OkStatus();
}

absl::Status ResultsCommand(client::Client& client, const ResultsOptions& options, const Io& io) {
  v1::GetResultsRequest request;
  request.set_id(options.id);
  ASSIGN_OR_RETURN(v1::GetResultsResponse response, client.GetResults(request));
  switch (options.format) {
    case ResultsFormat::kJson: {
      nlohmann::json tasks = nlohmann::json::array();
      for (const v1::TaskScores& s : response.tasks()) tasks.push_back(ToJson(s));
      PrintJson({{"tasks", tasks}}, io);
      return absl::OkStatus();
    }
    case ResultsFormat::kCsv: {
      io.out << "task_id,name,state,benchmark,metric,score,value,stderr\n";
      for (const v1::TaskScores& t : response.tasks()) {
        for (const v1::Score& s : t.results().scores()) {
          io.out << absl::StrJoin(
                        {CsvField(t.task_id()), CsvField(t.name()), CsvField(StateName(t.state())),
                         CsvField(s.task()), CsvField(s.metric()), CsvField(s.score()),
                         absl::StrFormat("%.10g", s.value()),
                         StatOrDash(s, "stderr", /*csv=*/true)},
                        ",")
                 << "\n";
        }
      }
      return absl::OkStatus();
    }
    case ResultsFormat::kTable:
      break;
  }
  Table table({"Task ID", "Name", "State", "Benchmark", "Metric", "Score", "Value", "Stderr"});
  int without = 0;
  for (const v1::TaskScores& t : response.tasks()) {
    if (t.results().scores_size() == 0) {
      ++without;
      table.AddRow({t.task_id(), Cell(t.name()), StateName(t.state()), "-", "-", "-", "-", "-"});
    }
    for (const v1::Score& s : t.results().scores()) {
      table.AddRow({t.task_id(), Cell(t.name()), StateName(t.state()), Cell(s.task()),
                    Cell(s.metric()), Cell(s.score()), FormatValue(s.value()),
                    StatOrDash(s, "stderr", /*csv=*/false)});
    }
  }
  table.Print(io.out);
  if (without > 0) {
    io.err << "(" << without << " task(s) have no results yet: they have not succeeded, or "
           << "results.yml was not read)\n";
  }
  return absl::OkStatus();
}

absl::Status ClusterLsCommand(client::Client& client, const ClusterLsOptions& options,
                              const Io& io) {
  ASSIGN_OR_RETURN(v1::ListClustersResponse response, client.ListClusters());
  if (options.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const v1::Cluster& c : response.clusters()) j.push_back(ToJson(c));
    PrintJson(j, io);
    return absl::OkStatus();
  }
  if (response.clusters_size() == 0) {
    io.out << "No cluster has an agent connected or recently seen.\n";
    return absl::OkStatus();
  }
  Table table(
      {"Cluster", "Agent", "Slurm", "Unix user", "Version", "Jobs", "Last seen", "Aliases"});
  for (const v1::Cluster& c : response.clusters()) {
    std::string slurm = c.slurm_reachable() ? "ok" : "unreachable";
    if (!c.slurm_message().empty()) absl::StrAppend(&slurm, " (", Cell(c.slurm_message()), ")");
    table.AddRow({c.name(), c.connected() ? "connected" : "disconnected", slurm,
                  Cell(c.unix_user()), Cell(c.agent_version()), absl::StrCat(c.tracked_jobs()),
                  FormatTimestamp(c.last_seen(), io.tz),
                  c.aliases().empty() ? "-" : absl::StrJoin(c.aliases(), ", ")});
  }
  table.Print(io.out);
  return absl::OkStatus();
}

}  // namespace evalctl::cli
