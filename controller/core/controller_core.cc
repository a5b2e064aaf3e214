#include "controller/core/controller_core.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/task_vocabulary.h"
#include "common/wire_limits.h"
#include "controller/config/loader.h"
#include "controller/config/render.h"

namespace evalctl::controller {
namespace {

// What an agent sends (ids, names, messages) is written into log lines only through this: a
// hostile agent must not be able to forge log lines or send terminal escapes.
std::string Esc(absl::string_view agent_supplied) { return absl::CHexEscape(agent_supplied); }

config::LoadRequest ToLoadRequest(const v1::ConfigSource& src) {
  config::LoadRequest req;
  req.yaml = src.yaml();
  req.file_name = src.file_name().empty() ? "config.yaml" : src.file_name();
  req.overrides.assign(src.overrides().begin(), src.overrides().end());
  req.task_filter.assign(src.task_filter().begin(), src.task_filter().end());
  for (const auto& [k, v] : src.environment()) req.environment[k] = v;
  for (const v1::ConfigFile& f : src.group_files()) req.user_groups[f.path()] = f.content();
  return req;
}

constexpr size_t kMaxConfigBytes = 1 << 20;
constexpr int kMaxOverrides = 1000;
constexpr int kMaxEnvironment = 1000;
constexpr int kMaxGroupFiles = 256;

absl::Status CheckConfigSize(const v1::ConfigSource& src) {
  size_t total = src.yaml().size();
  for (const auto& f : src.group_files()) total += f.content().size();
  if (total > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the configuration is ", total,
                                                   " bytes; the limit is ", kMaxConfigBytes));
  }
  if (src.overrides_size() > kMaxOverrides || src.environment_size() > kMaxEnvironment ||
      src.group_files_size() > kMaxGroupFiles) {
    return absl::InvalidArgumentError("too many overrides, environment variables or group files");
  }
  return absl::OkStatus();
}

v1::RenderedJob ToProto(const config::RenderedTaskJob& job, bool redact) {
  v1::RenderedJob out;
  out.set_script(job.script);
  out.set_run_dir(job.run_dir);
  out.set_job_name_prefix(job.job_name_prefix);
  out.set_partition(job.partition);
  for (const config::JobEnv& e : job.env) {
    v1::EnvVar* v = out.add_env();
    v->set_name(e.name);
    v->set_secret(e.secret);
    v->set_value(e.secret && redact ? "<secret>" : e.value);
  }
  return out;
}

v1::ResumePolicy PolicyOf(const config::Execution& e) {
  v1::ResumePolicy p;
  p.set_max_walltime_seconds(e.max_walltime_seconds.value_or(0));
  p.set_max_attempts(e.max_attempts.value_or(0));
  return p;
}

// Moves the secret values out of `submit` (in the order of its env), leaving the names: what the
// store keeps. PutSecrets puts them back.
// A task's SubmitTask must fit the agent stream (common/wire_limits.h): refused here, naming the
// task, rather than sent and refused by the agent after every reconnect.
absl::Status CheckTaskSize(const v1::SubmitTask& submit, const config::TaskSpec& task) {
  const size_t bytes = submit.ByteSizeLong();
  if (bytes <= wire::kMaxSubmitTaskBytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "evaluation.tasks[", task.index, "] (", task.name, "): its job is ", bytes,
      " bytes (script, environment and nemo_evaluator_config), over the ",
      wire::kMaxSubmitTaskBytes >> 20, " MiB an agent takes; make its values smaller"));
}

std::vector<std::string> TakeSecrets(v1::SubmitTask& submit) {
  std::vector<std::string> values;
  for (v1::EnvVar& v : *submit.mutable_job()->mutable_env()) {
    if (!v.secret()) continue;
    values.push_back(std::move(*v.mutable_value()));
    v.clear_value();
  }
  return values;
}

}  // namespace

absl::Status CheckRunAs(const Caller& caller, const std::string& unix_user, RunAsPolicy* policy) {
  if (caller.admin || unix_user == caller.user) return absl::OkStatus();
  if (policy != nullptr && policy->Granted(caller.user, unix_user)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "user ", caller.user, " may not run jobs as the Unix user ", unix_user,
      " (execution.username): jobs run as the Unix user of the same name, or as one an admin "
      "granted (an admin runs: evalctl grant add ", caller.user, " ", unix_user, ")"));
}

CoreMetrics* NoMetrics() {
  static CoreMetrics kNoMetrics;
  return &kNoMetrics;
}

ControllerCore::ControllerCore(ControllerOptions options, Store* store, Clock* clock,
                               CoreMetrics* metrics)
    : options_(options),
      store_(store),
      clock_(clock),
      metrics_(metrics != nullptr ? metrics : NoMetrics()),
      agents_({.agent_wait = options.agent_wait, .submit_window = options.submit_window}, store,
              clock, metrics_,
              [this](StoredTask task, const std::string& reason) {
                (void)FailTask(std::move(task), reason, EndReason::kNotDelivered);
              }),
      ingest_(store, clock, metrics_, &agents_, &watchers_) {}

// ---------------------------------------------------------------- access and lookup

absl::Status ControllerCore::CheckAccess(const Caller& caller, const std::string& invocation_id) {
  if (caller.admin) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string owner, store_->InvocationOwner(invocation_id));
  if (owner != caller.user) {
    // Not revealing that someone else's invocation exists.
    return absl::NotFoundError(absl::StrCat("no invocation ", invocation_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ControllerCore::ResolveInvocation(const Caller& caller,
                                                              const std::string& text) {
  ASSIGN_OR_RETURN(IdPrefix prefix, ParseIdPrefix(text));
  ASSIGN_OR_RETURN(std::vector<std::string> ids, store_->MatchInvocations(prefix.invocation, 50));
  std::vector<std::string> visible;
  for (const std::string& id : ids) {
    if (CheckAccess(caller, id).ok()) visible.push_back(id);
  }
  if (visible.empty()) {
    return absl::NotFoundError(absl::StrCat("no invocation matches ", text,
                                            " (evalctl ls runs lists yours)"));
  }
  if (visible.size() > 1) {
    visible.resize(std::min<size_t>(visible.size(), 5));
    return absl::InvalidArgumentError(absl::StrCat(
        text, " is ambiguous: it matches ", absl::StrJoin(visible, ", "), ", ...; type more of it"));
  }
  return visible[0];
}

absl::StatusOr<std::vector<StoredTask>> ControllerCore::ResolveTasks(const Caller& caller,
                                                                     const std::string& id,
                                                                     std::string* invocation_id) {
  ASSIGN_OR_RETURN(IdPrefix prefix, ParseIdPrefix(id));
  ASSIGN_OR_RETURN(*invocation_id, ResolveInvocation(caller, prefix.invocation));
  if (!prefix.task_index) return store_->TasksOf(*invocation_id);
  ASSIGN_OR_RETURN(StoredTask t, store_->GetTask(TaskId(*invocation_id, *prefix.task_index)));
  return std::vector<StoredTask>{std::move(t)};
}

// ---------------------------------------------------------------- plan and submit

absl::StatusOr<v1::PlanInvocationResponse> ControllerCore::Plan(const Caller& caller,
                                                                const v1::ConfigSource& config) {
  (void)caller;
  RETURN_IF_ERROR(CheckConfigSize(config));
  ASSIGN_OR_RETURN(config::InvocationSpec spec, config::LoadInvocation(ToLoadRequest(config)));
  const std::string id = NewInvocationId();
  const std::string run_dir = config::InvocationRunDir(
      spec.execution, absl::FormatTime("%Y%m%d_%H%M%S", clock_->Now(), absl::LocalTimeZone()), id);
  v1::PlanInvocationResponse out;
  out.set_resolved_config(spec.resolved_yaml);
  for (const std::string& w : spec.warnings) out.add_warnings(w);
  for (const config::TaskSpec& task : spec.tasks) {
    ASSIGN_OR_RETURN(config::RenderedTaskJob job, config::RenderTaskJob(spec, task, id, run_dir));
    v1::PlannedTask* p = out.add_tasks();
    p->set_index(task.index);
    p->set_name(task.name);
    p->set_dir_name(task.dir_name);
    *p->mutable_job() = ToProto(job, /*redact=*/true);
    *p->mutable_resume_policy() = PolicyOf(spec.execution);
  }
  auto agent = agents_.RouteTo(spec.execution.hostname, spec.execution.username);
  if (agent.ok()) {
    out.set_cluster(agent->cluster.name());
  } else {
    out.add_warnings(std::string(agent.status().message()));
  }
  return out;
}

absl::StatusOr<v1::SubmitInvocationResponse> ControllerCore::Submit(
    const Caller& caller, const v1::SubmitInvocationRequest& request) {
  if (request.request_id().empty() || request.request_id().size() > 128) {
    return absl::InvalidArgumentError("request_id must be set (1 to 128 characters)");
  }
  RETURN_IF_ERROR(CheckConfigSize(request.config()));
  ASSIGN_OR_RETURN(std::optional<std::string> existing,
                   store_->FindRequest(caller.user, request.request_id()));
  if (existing) {
    v1::SubmitInvocationResponse out;
    ASSIGN_OR_RETURN(*out.mutable_invocation(), store_->GetInvocation(*existing, {}));
    out.set_duplicate(true);
    return out;
  }
  ASSIGN_OR_RETURN(config::InvocationSpec spec,
                   config::LoadInvocation(ToLoadRequest(request.config())));
  if (spec.execution.shared_deployment) {
    return absl::UnimplementedError(
        "execution.shared_deployment: true renders with `evalctl run --dry-run`, but agents do "
        "not run shared jobs yet; set it to false to submit");
  }
  RETURN_IF_ERROR(CheckRunAs(caller, spec.execution.username, run_as_));
  const absl::Time now = clock_->Now();
  const std::string id = NewInvocationId();
  const std::string run_dir = config::InvocationRunDir(
      spec.execution, absl::FormatTime("%Y%m%d_%H%M%S", now, absl::LocalTimeZone()), id);

  ASSIGN_OR_RETURN(AgentRegistry::Route route,
                   agents_.RouteTo(spec.execution.hostname, spec.execution.username));
  const std::string& agent_id = route.agent_id;
  const v1::Cluster& cluster = route.cluster;

  NewInvocation inv;
  inv.owner = caller.user;
  inv.request_id = request.request_id();
  v1::Invocation& record = inv.invocation;
  record.set_id(id);
  record.set_owner(caller.user);
  *record.mutable_created_time() = ToTimestamp(now);
  record.set_cluster(cluster.name());
  record.set_hostname(spec.execution.hostname);
  record.set_username(spec.execution.username);
  record.set_run_dir(run_dir);
  record.set_resolved_config(spec.resolved_yaml);

  // The secret values of each task's job, in the order of spec.tasks; the store gets the jobs
  // without them. Each task is rendered inside the store's transaction and written at once, so
  // one rendered job at a time is in memory; the window reads them back for the agent.
  std::vector<std::vector<std::string>> secrets;
  secrets.reserve(spec.tasks.size());
  size_t next = 0;
  inv.next_task = [&]() -> absl::StatusOr<std::optional<StoredTask>> {
    if (next == spec.tasks.size()) return std::nullopt;
    const config::TaskSpec& ts = spec.tasks[next++];
    ASSIGN_OR_RETURN(config::RenderedTaskJob job, config::RenderTaskJob(spec, ts, id, run_dir));
    v1::SubmitTask submit;
    submit.set_task_id(TaskId(id, ts.index));
    submit.set_invocation_id(id);
    submit.set_name(ts.name);
    *submit.mutable_job() = ToProto(job, /*redact=*/false);
    *submit.mutable_resume_policy() = PolicyOf(spec.execution);
    submit.set_owner(caller.user);
    submit.set_run_as(spec.execution.username);
    RETURN_IF_ERROR(CheckTaskSize(submit, ts));
    secrets.push_back(TakeSecrets(submit));

    StoredTask stored;
    stored.agent_id = agent_id;
    v1::Task& t = stored.task;
    t.set_id(submit.task_id());
    t.set_invocation_id(id);
    t.set_index(ts.index);
    t.set_name(ts.name);
    t.set_dir_name(ts.dir_name);
    t.set_state(v1::TASK_STATE_PENDING);
    t.set_run_dir(job.run_dir);
    *t.mutable_created_time() = ToTimestamp(now);
    *t.mutable_updated_time() = ToTimestamp(now);
    *t.mutable_resume_policy() = submit.resume_policy();
    stored.submit = std::move(submit);
    return stored;
  };
  absl::Status created = store_->CreateInvocation(inv);
  if (absl::IsAlreadyExists(created)) {
    // A concurrent retry with the same request id won the race.
    ASSIGN_OR_RETURN(existing, store_->FindRequest(caller.user, request.request_id()));
    if (existing) {
      v1::SubmitInvocationResponse out;
      ASSIGN_OR_RETURN(*out.mutable_invocation(), store_->GetInvocation(*existing, {}));
      out.set_duplicate(true);
      return out;
    }
  }
  RETURN_IF_ERROR(created);
  metrics_->InvocationSubmitted(static_cast<int>(spec.tasks.size()));
  LOG(INFO) << "invocation=" << id << " owner=" << caller.user << " tasks=" << spec.tasks.size()
            << " cluster=" << Esc(cluster.name()) << " agent=" << Esc(agent_id);
  // The rendered jobs are in the store now; the window reads them back from there.
  std::vector<std::pair<std::string, std::vector<std::string>>> held;
  held.reserve(spec.tasks.size());
  for (size_t i = 0; i < spec.tasks.size(); ++i) {
    held.emplace_back(TaskId(id, spec.tasks[i].index), std::move(secrets[i]));
  }
  agents_.HoldSubmissions(agent_id, std::move(held));
  watchers_.Notify();
  v1::SubmitInvocationResponse out;
  ASSIGN_OR_RETURN(*out.mutable_invocation(), store_->GetInvocation(id, {}));
  return out;
}

// ---------------------------------------------------------------- reads

absl::StatusOr<v1::Invocation> ControllerCore::GetInvocation(const Caller& caller,
                                                             const std::string& id) {
  v1::GetInvocationRequest request;
  request.set_id(id);
  return GetInvocation(caller, request);
}

absl::StatusOr<v1::Invocation> ControllerCore::GetInvocation(
    const Caller& caller, const v1::GetInvocationRequest& request) {
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size must not be negative");
  InvocationQuery query{.view = request.view(), .limit = request.page_size()};
  if (!request.page_token().empty() &&
      (!absl::SimpleAtoi(request.page_token(), &query.first_index) || query.first_index < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token \"", absl::CHexEscape(request.page_token()),
                     "\" is not one that GetInvocation returned"));
  }
  ASSIGN_OR_RETURN(std::string inv, ResolveInvocation(caller, request.id()));
  return store_->GetInvocation(inv, query);
}

absl::StatusOr<v1::Task> ControllerCore::GetTask(const Caller& caller, const std::string& id) {
  ASSIGN_OR_RETURN(IdPrefix prefix, ParseIdPrefix(id));
  if (!prefix.task_index) {
    return absl::InvalidArgumentError(
        absl::StrCat(id, " is not a task id; task ids look like <invocation id>.<index>"));
  }
  std::string inv;
  ASSIGN_OR_RETURN(std::vector<StoredTask> tasks, ResolveTasks(caller, id, &inv));
  return tasks.at(0).task;
}

absl::StatusOr<v1::ListInvocationsResponse> ControllerCore::List(
    const Caller& caller, const v1::ListInvocationsRequest& request) {
  ListFilter filter;
  filter.limit = request.page_size() <= 0 ? 50 : std::min(request.page_size(), 1000);
  filter.owner = caller.user;
  if (!request.owner().empty()) {
    if (!caller.admin && request.owner() != caller.user) {
      return absl::PermissionDeniedError("only admins can list other users' invocations");
    }
    filter.owner = request.owner() == "*" ? "" : request.owner();
  } else if (caller.admin) {
    filter.owner = "";
  }
  if (request.has_since()) {
    filter.since = FromTimestamp(request.since());
  }
  filter.before_id = request.page_token();
  ASSIGN_OR_RETURN(std::vector<v1::Invocation> invs, store_->ListInvocations(filter));
  v1::ListInvocationsResponse out;
  for (v1::Invocation& inv : invs) {
    if (request.states_size() > 0) {
      const v1::TaskCounts& c = inv.counts();
      bool any = false;
      for (int s : request.states()) {
        switch (s) {
          case v1::TASK_STATE_PENDING: any |= c.pending() > 0; break;
          case v1::TASK_STATE_QUEUED: any |= c.queued() > 0; break;
          case v1::TASK_STATE_RUNNING: any |= c.running() > 0; break;
          case v1::TASK_STATE_RESUMING: any |= c.resuming() > 0; break;
          case v1::TASK_STATE_SUCCEEDED: any |= c.succeeded() > 0; break;
          case v1::TASK_STATE_FAILED: any |= c.failed() > 0; break;
          case v1::TASK_STATE_CANCELLED: any |= c.cancelled() > 0; break;
          case v1::TASK_STATE_BUDGET_EXHAUSTED: any |= c.budget_exhausted() > 0; break;
          default: break;
        }
      }
      if (!any) continue;
    }
    *out.add_invocations() = std::move(inv);
  }
  if (static_cast<int>(invs.size()) == filter.limit && !invs.empty()) {
    out.set_next_page_token(invs.back().id());
  }
  return out;
}

absl::StatusOr<v1::GetResultsResponse> ControllerCore::Results(const Caller& caller,
                                                               const std::string& id) {
  std::string inv;
  ASSIGN_OR_RETURN(std::vector<StoredTask> tasks, ResolveTasks(caller, id, &inv));
  v1::GetResultsResponse out;
  for (const StoredTask& t : tasks) {
    v1::TaskScores* s = out.add_tasks();
    s->set_task_id(t.task.id());
    s->set_name(t.task.name());
    s->set_state(t.task.state());
    *s->mutable_results() = t.task.results();
  }
  return out;
}

v1::ListClustersResponse ControllerCore::Clusters() {
  v1::ListClustersResponse out;
  auto known = store_->ListAgents();
  std::map<std::string, v1::Cluster> live = agents_.Clusters();
  for (auto& [id, c] : live) *out.add_clusters() = std::move(c);
  if (known.ok()) {
    for (const AgentRecord& r : *known) {
      if (live.count(r.cluster.agent_id())) continue;
      v1::Cluster c = r.cluster;
      c.set_connected(false);
      *out.add_clusters() = c;
    }
  }
  return out;
}

// ---------------------------------------------------------------- cancel and resume

absl::StatusOr<v1::CancelInvocationResponse> ControllerCore::Cancel(const Caller& caller,
                                                                    const std::string& id) {
  std::string inv;
  ASSIGN_OR_RETURN(std::vector<StoredTask> tasks, ResolveTasks(caller, id, &inv));
  v1::CancelInvocationResponse out;
  for (StoredTask& t : tasks) {
    if (IsTerminal(t.task.state())) {
      *out.add_tasks() = t.task;
      continue;
    }
    // Never written to an agent's stream (waiting for the window, or the agent has been away
    // since the submission): nothing runs anywhere. A SubmitTask already sent may be with the
    // agent, even when it has not answered yet: then the agent cancels it, like any task it holds.
    const bool undelivered = !t.accepted && agents_.DropUnsent(t.agent_id, t.task.id());
    v1::TaskEvent event;
    event.set_kind(undelivered ? v1::TaskEvent::KIND_FINISHED : v1::TaskEvent::KIND_STATE_CHANGED);
    event.set_task_id(t.task.id());
    *event.mutable_time() = ToTimestamp(clock_->Now());
    if (undelivered) {
      t.task.set_state(v1::TASK_STATE_CANCELLED);
      t.task.set_reason("cancelled before it reached the cluster");
    } else {
      t.task.set_cancel_requested(true);
    }
    event.set_state(t.task.state());
    event.set_phase(t.task.phase());
    event.set_reason(t.task.reason());
    *event.mutable_progress() = t.task.progress();
    RETURN_IF_ERROR(store_->UpdateTask(t, &event).status());
    if (undelivered) metrics_->TaskFinished(v1::TASK_STATE_CANCELLED, EndReason::kRequested);
    if (!undelivered) agents_.Cancel(t.agent_id, t.task.id());
    *out.add_tasks() = t.task;
  }
  watchers_.Notify();
  return out;
}

absl::StatusOr<v1::ResumeInvocationResponse> ControllerCore::Resume(const Caller& caller,
                                                                    const std::string& id) {
  std::string inv;
  ASSIGN_OR_RETURN(std::vector<StoredTask> tasks, ResolveTasks(caller, id, &inv));
  // A grant revoked since the submission stops resumes too.
  ASSIGN_OR_RETURN(v1::Invocation record,
                   store_->GetInvocation(inv, {.view = v1::INVOCATION_VIEW_SUMMARY}));
  RETURN_IF_ERROR(CheckRunAs(caller, record.username(), run_as_));
  const bool single = absl::StrContains(id, '.');
  v1::ResumeInvocationResponse out;
  for (StoredTask& t : tasks) {
    v1::TaskState s = t.task.state();
    if (s != v1::TASK_STATE_FAILED && s != v1::TASK_STATE_CANCELLED &&
        s != v1::TASK_STATE_BUDGET_EXHAUSTED) {
      std::string why = absl::StrCat("it is ", v1::TaskState_Name(s),
                                     "; only failed, cancelled or budget-exhausted tasks resume");
      if (single) return absl::FailedPreconditionError(absl::StrCat("task ", t.task.id(), ": ", why));
      v1::SkippedTask* skipped = out.add_skipped();
      skipped->set_task_id(t.task.id());
      skipped->set_reason(why);
      continue;
    }
    if (!t.accepted) {
      std::string why = "it never reached its cluster; submit the invocation again";
      if (single) return absl::FailedPreconditionError(absl::StrCat("task ", t.task.id(), ": ", why));
      v1::SkippedTask* skipped = out.add_skipped();
      skipped->set_task_id(t.task.id());
      skipped->set_reason(why);
      continue;
    }
    RETURN_IF_ERROR(agents_.Resume(t.agent_id, t.task.id()));
    *out.add_resumed() = t.task;
  }
  return out;
}

// ---------------------------------------------------------------- watching

absl::StatusOr<ControllerCore::WatchScope> ControllerCore::ResolveWatch(const Caller& caller,
                                                                        const std::string& id) {
  WatchScope scope;
  if (!caller.admin) scope.owner = caller.user;
  if (id.empty()) return scope;
  ASSIGN_OR_RETURN(IdPrefix prefix, ParseIdPrefix(id));
  ASSIGN_OR_RETURN(scope.invocation_id, ResolveInvocation(caller, prefix.invocation));
  return scope;
}

absl::StatusOr<std::vector<v1::WatchInvocationResponse>> ControllerCore::EventsAfter(
    const WatchScope& scope, uint64_t after, int limit) {
  ASSIGN_OR_RETURN(std::vector<EventRecord> records,
                   store_->EventsAfter(after, scope.invocation_id, limit));
  std::vector<v1::WatchInvocationResponse> out;
  for (EventRecord& r : records) {
    if (!scope.owner.empty() && r.owner != scope.owner) continue;
    v1::WatchInvocationResponse w;
    w.set_sequence(r.sequence);
    w.set_invocation_id(r.invocation_id);
    *w.mutable_event() = std::move(r.event);
    out.push_back(std::move(w));
  }
  // Skipped records still advance the watcher.
  if (out.empty() && !records.empty()) {
    v1::WatchInvocationResponse w;
    w.set_sequence(records.back().sequence);
    out.push_back(std::move(w));
  }
  return out;
}

bool ControllerCore::InvocationFinished(const std::string& invocation_id) {
  auto inv = store_->GetInvocation(invocation_id, {.view = v1::INVOCATION_VIEW_SUMMARY});
  return inv.ok() && inv->finished();
}

uint64_t ControllerCore::LastEventSequence() { return store_->last_event_sequence(); }

void ControllerCore::RefreshMetrics() {
  auto counts = store_->CountTasksByState();
  if (counts.ok()) {
    std::map<v1::TaskState, int64_t> all;
    for (int s = v1::TaskState_MIN + 1; s <= v1::TaskState_MAX; ++s) {
      if (v1::TaskState_IsValid(s)) all[static_cast<v1::TaskState>(s)] = 0;
    }
    for (const auto& [state, n] : *counts) all[state] = n;
    metrics_->TasksByState(all);
  } else {
    LOG(WARNING) << "counting tasks by state: " << counts.status();
  }
  metrics_->EventLogHead(store_->last_event_sequence());
}

int64_t ControllerCore::AddListener(std::function<void()> notify) {
  return watchers_.Add(std::move(notify));
}

void ControllerCore::RemoveListener(int64_t id) { watchers_.Remove(id); }

// ---------------------------------------------------------------- logs

absl::StatusOr<v1::Task> ControllerCore::ResolveTaskForLogs(const Caller& caller,
                                                            const std::string& id) {
  return GetTask(caller, id);
}

void ControllerCore::ReadLog(const Caller& caller, const v1::StreamLogsRequest& request,
                             int64_t offset, int32_t wait_ms, LogCallback done) {
  auto task = GetTask(caller, request.id());
  if (!task.ok()) return done(task.status());
  auto stored = store_->GetTask(task->id());
  if (!stored.ok()) return done(stored.status());
  v1::ReadLog read;
  v1::ReadLog* r = &read;
  r->set_task_id(task->id());
  r->set_kind(request.kind() == v1::LOG_KIND_UNSPECIFIED ? v1::LOG_KIND_SLURM : request.kind());
  r->set_attempt(request.attempt());
  r->set_offset(offset);
  r->set_max_bytes(256 << 10);
  r->set_wait_ms(wait_ms);
  agents_.ReadLog(stored->agent_id, std::move(read), std::move(done));
}

// ---------------------------------------------------------------- agents

absl::StatusOr<v1::Registered> ControllerCore::AgentConnected(const v1::Register& reg,
                                                              AgentLink* link) {
  if (reg.agent_id().empty() || reg.agent_id().size() > 128 || reg.cluster().empty() ||
      reg.unix_user().empty()) {
    return absl::InvalidArgumentError(
        "Register needs agent_id (at most 128 characters), cluster and unix_user");
  }
  v1::Cluster cluster;
  cluster.set_name(reg.cluster());
  for (const std::string& a : reg.aliases()) cluster.add_aliases(a);
  cluster.set_unix_user(reg.unix_user());
  cluster.set_agent_id(reg.agent_id());
  cluster.set_agent_version(reg.version());
  for (const std::string& c : reg.capabilities()) cluster.add_capabilities(c);
  cluster.set_connected(true);
  cluster.set_slurm_reachable(true);
  *cluster.mutable_last_seen() = ToTimestamp(clock_->Now());
  // Checked before the store records this agent as the cluster's; Connected checks again under
  // the registry's lock, which decides.
  RETURN_IF_ERROR(agents_.CheckSole(cluster));
  RETURN_IF_ERROR(store_->UpsertAgent(cluster));
  ASSIGN_OR_RETURN(std::optional<AgentRecord> record, store_->GetAgent(reg.agent_id()));
  const uint64_t last_applied = record ? record->last_applied_sequence : 0;

  // What the agent has not confirmed: tasks still held with their secrets, then tasks from before a
  // controller restart (their secrets are gone: those with secrets fail), then pending cancels.
  ASSIGN_OR_RETURN(std::vector<StoredTask> unaccepted, store_->UnacceptedTasks(reg.agent_id()));
  ASSIGN_OR_RETURN(std::vector<StoredTask> cancelling, store_->CancellingTasks(reg.agent_id()));
  RETURN_IF_ERROR(
      agents_.Connected(std::move(cluster), link, last_applied, unaccepted, cancelling));
  LOG(INFO) << "agent=" << Esc(reg.agent_id()) << " cluster=" << Esc(reg.cluster())
            << " user=" << Esc(reg.unix_user()) << " version=" << Esc(reg.version())
            << " connected; last applied event " << last_applied;
  v1::Registered out;
  out.set_last_applied_sequence(last_applied);
  out.set_heartbeat_interval_seconds(options_.heartbeat_interval_seconds);
  return out;
}

absl::Status ControllerCore::FailTask(StoredTask task, const std::string& reason, EndReason why) {
  task.task.set_state(v1::TASK_STATE_FAILED);
  task.task.set_reason(reason);
  v1::TaskEvent event;
  event.set_kind(v1::TaskEvent::KIND_FINISHED);
  event.set_task_id(task.task.id());
  *event.mutable_time() = ToTimestamp(clock_->Now());
  event.set_state(v1::TASK_STATE_FAILED);
  event.set_reason(reason);
  RETURN_IF_ERROR(store_->UpdateTask(task, &event).status());
  metrics_->TaskFinished(v1::TASK_STATE_FAILED, why);
  watchers_.Notify();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ControllerCore::AgentEvents(const std::string& agent_id,
                                                     const v1::Events& events) {
  return ingest_.Apply(agent_id, events);
}

void ControllerCore::AgentHeartbeat(const std::string& agent_id, const v1::Heartbeat& heartbeat) {
  agents_.Heartbeat(agent_id, heartbeat);
}

void ControllerCore::AgentCommandResult(const std::string& agent_id,
                                        const v1::CommandResult& result) {
  std::optional<AgentRegistry::Answer> answer = agents_.Answered(agent_id, result);
  if (!answer) return;
  absl::Status status = result.code() == 0
                            ? absl::OkStatus()
                            : absl::Status(static_cast<absl::StatusCode>(result.code()),
                                           result.message());
  using Kind = AgentRegistry::Answer::Kind;
  switch (answer->kind) {
    case Kind::kReadLog:
      if (answer->log_done) {
        if (status.ok()) {
          answer->log_done(result.log_chunk());
        } else {
          answer->log_done(status);
        }
      }
      return;
    case Kind::kSubmit:
      if (status.ok()) {
        auto t = store_->GetTaskStatus(answer->task_id);
        if (t.ok() && !t->accepted) {
          t->accepted = true;
          if (absl::Status s = store_->UpdateTask(*t, nullptr).status(); !s.ok()) {
            // The agent's first event marks it accepted too.
            LOG(WARNING) << "task=" << answer->task_id << " accepted, not recorded yet: " << s;
          }
        }
      } else {
        auto t = store_->GetTaskStatus(answer->task_id);
        if (t.ok() && !IsTerminal(t->task.state())) {
          (void)FailTask(*std::move(t),
                         absl::StrCat("the agent could not take the task: ", status.message()),
                         EndReason::kAgentRefused);
        }
      }
      return;
    default:
      if (!status.ok()) {
        LOG(WARNING) << "agent=" << Esc(agent_id) << " task=" << Esc(answer->task_id) << ": "
                     << Esc(status.ToString());
      }
      return;
  }
}

void ControllerCore::AgentDisconnected(const std::string& agent_id, AgentLink* link) {
  agents_.Disconnected(agent_id, link);
}

void ControllerCore::Tick() {
  for (const auto& [agent_id, task_id] : agents_.Tick()) {
    auto t = store_->GetTask(task_id);
    if (!t.ok() || IsTerminal(t->task.state()) || t->accepted) continue;
    (void)FailTask(*std::move(t),
                   absl::StrCat("the agent of cluster ", agents_.ClusterName(agent_id),
                                " did not reconnect within ",
                                absl::FormatDuration(options_.agent_wait),
                                "; the task was never submitted. Submit it again"),
                   EndReason::kNotDelivered);
  }
}

}  // namespace evalctl::controller
