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
#include "common/wire_limits.h"
#include "controller/config/loader.h"
#include "controller/config/render.h"
#include "google/protobuf/util/time_util.h"

namespace evalctl::controller {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp Ts(absl::Time t) {
  return TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(t));
}

// What an agent sends (ids, names, messages) is written into log lines only through this: a
// hostile agent must not be able to forge log lines or send terminal escapes.
std::string Esc(absl::string_view agent_supplied) { return absl::CHexEscape(agent_supplied); }

bool IsTerminal(v1::TaskState s) {
  return s == v1::TASK_STATE_SUCCEEDED || s == v1::TASK_STATE_FAILED ||
         s == v1::TASK_STATE_CANCELLED || s == v1::TASK_STATE_BUDGET_EXHAUSTED;
}

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

void PutSecrets(const std::vector<std::string>& values, v1::SubmitTask& submit) {
  size_t i = 0;
  for (v1::EnvVar& v : *submit.mutable_job()->mutable_env()) {
    if (v.secret() && i < values.size()) v.set_value(values[i++]);
  }
}

bool SameHost(const v1::Cluster& c, const std::string& host) {
  if (c.name() == host) return true;
  for (const std::string& a : c.aliases()) {
    if (a == host) return true;
  }
  return false;
}

}  // namespace

void ApplyEventToTask(const v1::TaskEvent& event, v1::Task& task) {
  task.set_state(event.state());
  task.set_phase(event.phase());
  task.set_reason(event.reason());
  *task.mutable_progress() = event.progress();
  task.set_elapsed_seconds(event.elapsed_seconds());
  if (event.has_attempt() && event.attempt().number() > 0) {
    bool replaced = false;
    for (v1::Attempt& a : *task.mutable_attempts()) {
      if (a.number() == event.attempt().number()) {
        a = event.attempt();
        replaced = true;
      }
    }
    if (!replaced) *task.add_attempts() = event.attempt();
  }
  if (event.has_results()) *task.mutable_results() = event.results();
  if (IsTerminal(event.state())) task.set_cancel_requested(false);
  *task.mutable_updated_time() = event.time();
}

ControllerCore::ControllerCore(ControllerOptions options, Store* store, Clock* clock,
                               CoreMetrics* metrics)
    : options_(options), store_(store), clock_(clock), metrics_(metrics) {
  static CoreMetrics kNoMetrics;
  if (metrics_ == nullptr) metrics_ = &kNoMetrics;
  // Command ids must not repeat across restarts: a late answer to a command sent before a restart
  // would otherwise match a new one. Start from the clock (microseconds), which only grows.
  absl::MutexLock lock(&mu_);
  next_command_id_ = static_cast<uint64_t>(absl::ToUnixMicros(clock_->Now()));
}

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
  absl::MutexLock lock(&mu_);
  auto agent = Route(spec.execution.hostname, spec.execution.username);
  if (agent.ok()) {
    out.set_cluster(agents_[*agent].cluster.name());
  } else {
    out.add_warnings(std::string(agent.status().message()));
  }
  return out;
}

absl::StatusOr<std::string> ControllerCore::Route(const std::string& hostname,
                                                  const std::string& username) {
  std::string known_disconnected;
  std::vector<std::string> connected;
  for (const auto& [id, a] : agents_) {
    if (a.link != nullptr) {
      connected.push_back(
          absl::StrCat(Esc(a.cluster.name()), " (user ", Esc(a.cluster.unix_user()), ")"));
    }
    if (!SameHost(a.cluster, hostname) || a.cluster.unix_user() != username) continue;
    if (a.link != nullptr) return id;
    known_disconnected = id;
  }
  if (!known_disconnected.empty()) return known_disconnected;
  return absl::UnavailableError(absl::StrCat(
      "no evalctl-agent serves cluster \"", hostname, "\" for user ", username,
      "; connected clusters: ", connected.empty() ? "none" : absl::StrJoin(connected, ", "),
      ". Install one with `evalctl cluster install ", hostname, "`, or check execution.hostname "
      "and execution.username"));
}

bool ControllerCore::SendCommand(const std::string& agent_id, v1::Command command,
                                 PendingCommand pending) {
  uint64_t id = next_command_id_++;
  command.set_command_id(id);
  pending_[id] = std::move(pending);
  auto it = agents_.find(agent_id);
  if (it == agents_.end() || it->second.link == nullptr) return false;
  v1::ControllerMessage msg;
  *msg.mutable_command() = std::move(command);
  it->second.link->Send(std::move(msg));
  return true;
}

void ControllerCore::QueueSubmitLocked(const std::string& agent_id, const std::string& task_id,
                                       Undelivered& held) {
  if (held.queued) return;
  held.queued = true;
  agents_[agent_id].submit_queue.push_back(task_id);
}

void ControllerCore::PumpSubmits(const std::string& agent_id) {
  while (true) {
    // Take what fits in the window.
    std::vector<std::string> taken;
    {
      absl::MutexLock lock(&mu_);
      auto a = agents_.find(agent_id);
      if (a == agents_.end() || a->second.link == nullptr) return;
      AgentState& agent = a->second;
      auto& held = undelivered_[agent_id];
      while (agent.submits_taken + agent.submits_on_stream < options_.submit_window &&
             !agent.submit_queue.empty()) {
        std::string id = std::move(agent.submit_queue.front());
        agent.submit_queue.pop_front();
        auto h = held.find(id);
        if (h == held.end() || !h->second.queued) continue;
        h->second.queued = false;
        ++agent.submits_taken;
        taken.push_back(std::move(id));
      }
    }
    if (taken.empty()) return;
    // Read them back from the store, without the lock.
    std::vector<absl::StatusOr<StoredTask>> stored;
    stored.reserve(taken.size());
    for (const std::string& id : taken) stored.push_back(store_->GetTask(id));
    std::vector<StoredTask> lost_secrets;
    {
      absl::MutexLock lock(&mu_);
      AgentState& agent = agents_[agent_id];
      auto& held = undelivered_[agent_id];
      agent.submits_taken -= static_cast<int>(taken.size());
      for (size_t i = 0; i < taken.size(); ++i) {
        auto h = held.find(taken[i]);
        // Gone meanwhile: cancelled before it was sent, or confirmed by the agent's events.
        if (h == held.end() || h->second.on_stream || h->second.queued) continue;
        Undelivered& u = h->second;
        if (!stored[i].ok() || IsTerminal(stored[i]->task.state()) || stored[i]->accepted) {
          if (!stored[i].ok()) {
            LOG(ERROR) << "task=" << taken[i] << " cannot be read for its agent: "
                       << stored[i].status();
          } else if (u.cancel_after && !IsTerminal(stored[i]->task.state())) {
            // The agent has it already: the cancel needs no SubmitTask before it.
            v1::Command cancel;
            cancel.mutable_cancel_task()->set_task_id(taken[i]);
            SendCommand(agent_id, std::move(cancel),
                        {agent_id, taken[i], CommandKind::kCancel, nullptr});
          }
          held.erase(h);
          continue;
        }
        // Disconnected meanwhile: the reconnect queues it again.
        if (agent.link == nullptr) continue;
        v1::Command cmd;
        *cmd.mutable_submit_task() = std::move(stored[i]->submit);
        if (u.secrets.empty()) {
          // Read back after a controller restart: its secret values are gone.
          bool has_secret = false;
          for (const v1::EnvVar& v : cmd.submit_task().job().env()) has_secret |= v.secret();
          if (has_secret) {
            lost_secrets.push_back(*std::move(stored[i]));
            held.erase(h);
            continue;
          }
        } else {
          PutSecrets(u.secrets, *cmd.mutable_submit_task());
        }
        SendCommand(agent_id, std::move(cmd),
                    {agent_id, taken[i], CommandKind::kSubmit, nullptr});
        ++agent.submits_on_stream;
        u.on_stream = u.ever_sent = true;
        if (u.cancel_after) {
          u.cancel_after = false;
          v1::Command cancel;
          cancel.mutable_cancel_task()->set_task_id(taken[i]);
          SendCommand(agent_id, std::move(cancel),
                      {agent_id, taken[i], CommandKind::kCancel, nullptr});
        }
      }
    }
    for (StoredTask& t : lost_secrets) {
      (void)FailTask(std::move(t),
                     "the controller restarted before the cluster's agent took the task, and the "
                     "task's secret values are never stored; submit the invocation again",
                     EndReason::kNotDelivered);
    }
  }
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
  const absl::Time now = clock_->Now();
  const std::string id = NewInvocationId();
  const std::string run_dir = config::InvocationRunDir(
      spec.execution, absl::FormatTime("%Y%m%d_%H%M%S", now, absl::LocalTimeZone()), id);

  std::string agent_id;
  v1::Cluster cluster;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(agent_id, Route(spec.execution.hostname, spec.execution.username));
    cluster = agents_[agent_id].cluster;
  }

  NewInvocation inv;
  inv.owner = caller.user;
  inv.request_id = request.request_id();
  v1::Invocation& record = inv.invocation;
  record.set_id(id);
  record.set_owner(caller.user);
  *record.mutable_created_time() = Ts(now);
  record.set_cluster(cluster.name());
  record.set_hostname(spec.execution.hostname);
  record.set_username(spec.execution.username);
  record.set_run_dir(run_dir);
  record.set_resolved_config(spec.resolved_yaml);

  // The secret values of each task's job, in the order of inv.tasks; the store gets the jobs
  // without them. One copy of each rendered job exists: it goes to the store, then to the agent.
  std::vector<std::vector<std::string>> secrets;
  for (const config::TaskSpec& ts : spec.tasks) {
    ASSIGN_OR_RETURN(config::RenderedTaskJob job, config::RenderTaskJob(spec, ts, id, run_dir));
    v1::SubmitTask submit;
    submit.set_task_id(TaskId(id, ts.index));
    submit.set_invocation_id(id);
    submit.set_name(ts.name);
    *submit.mutable_job() = ToProto(job, /*redact=*/false);
    *submit.mutable_resume_policy() = PolicyOf(spec.execution);
    submit.set_owner(caller.user);
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
    *t.mutable_created_time() = Ts(now);
    *t.mutable_updated_time() = Ts(now);
    *t.mutable_resume_policy() = submit.resume_policy();
    stored.submit = std::move(submit);
    inv.tasks.push_back(std::move(stored));
  }
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
  {
    // The rendered jobs are in the store now; the window reads them back from there.
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < inv.tasks.size(); ++i) {
      Undelivered& held = undelivered_[agent_id][inv.tasks[i].task.id()];
      held = {.secrets = std::move(secrets[i]), .deadline = now + options_.agent_wait};
      QueueSubmitLocked(agent_id, inv.tasks[i].task.id(), held);
    }
  }
  std::vector<StoredTask>().swap(inv.tasks);
  PumpSubmits(agent_id);
  NotifyListeners();
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
    filter.since = absl::FromUnixMillis(TimeUtil::TimestampToMilliseconds(request.since()));
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
  absl::MutexLock lock(&mu_);
  std::set<std::string> seen;
  for (const auto& [id, a] : agents_) {
    v1::Cluster c = a.cluster;
    c.set_connected(a.link != nullptr);
    *out.add_clusters() = c;
    seen.insert(id);
  }
  if (known.ok()) {
    for (const AgentRecord& r : *known) {
      if (seen.count(r.cluster.agent_id())) continue;
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
    bool undelivered = false;
    {
      absl::MutexLock lock(&mu_);
      // Never written to an agent's stream (waiting for the window, or the agent has been away
      // since the submission): nothing runs anywhere. A SubmitTask already sent may be with the
      // agent, even when it has not answered yet: then the agent cancels it, like any task it
      // holds.
      auto& pending = undelivered_[t.agent_id];
      if (auto it = pending.find(t.task.id());
          !t.accepted && it != pending.end() && !it->second.ever_sent) {
        pending.erase(it);
        undelivered = true;
      }
    }
    v1::TaskEvent event;
    event.set_kind(undelivered ? v1::TaskEvent::KIND_FINISHED : v1::TaskEvent::KIND_STATE_CHANGED);
    event.set_task_id(t.task.id());
    *event.mutable_time() = Ts(clock_->Now());
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
    if (!undelivered) {
      absl::MutexLock lock(&mu_);
      auto& pending = undelivered_[t.agent_id];
      if (auto it = pending.find(t.task.id()); it != pending.end() && !it->second.on_stream) {
        // Behind the SubmitTask that is still to be (re)sent on this stream.
        it->second.cancel_after = true;
      } else {
        v1::Command cmd;
        cmd.mutable_cancel_task()->set_task_id(t.task.id());
        SendCommand(t.agent_id, std::move(cmd),
                    {t.agent_id, t.task.id(), CommandKind::kCancel, nullptr});
      }
    }
    *out.add_tasks() = t.task;
  }
  NotifyListeners();
  return out;
}

absl::StatusOr<v1::ResumeInvocationResponse> ControllerCore::Resume(const Caller& caller,
                                                                    const std::string& id) {
  std::string inv;
  ASSIGN_OR_RETURN(std::vector<StoredTask> tasks, ResolveTasks(caller, id, &inv));
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
    absl::MutexLock lock(&mu_);
    auto agent = agents_.find(t.agent_id);
    if (agent == agents_.end() || agent->second.link == nullptr) {
      return absl::UnavailableError(absl::StrCat("the agent of cluster ",
                                                 agent == agents_.end() ? t.agent_id
                                                                        : agent->second.cluster.name(),
                                                 " is not connected; try again when it is"));
    }
    v1::Command cmd;
    cmd.mutable_resume_task()->set_task_id(t.task.id());
    SendCommand(t.agent_id, std::move(cmd), {t.agent_id, t.task.id(), CommandKind::kResume, nullptr});
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
  absl::MutexLock lock(&listeners_mu_);
  int64_t id = next_listener_++;
  listeners_[id] = std::move(notify);
  return id;
}

void ControllerCore::RemoveListener(int64_t id) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.erase(id);
}

void ControllerCore::NotifyListeners() {
  std::vector<std::function<void()>> copy;
  {
    absl::MutexLock lock(&listeners_mu_);
    for (const auto& [id, fn] : listeners_) copy.push_back(fn);
  }
  for (const auto& fn : copy) fn();
}

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
  v1::Command cmd;
  v1::ReadLog* r = cmd.mutable_read_log();
  r->set_task_id(task->id());
  r->set_kind(request.kind() == v1::LOG_KIND_UNSPECIFIED ? v1::LOG_KIND_SLURM : request.kind());
  r->set_attempt(request.attempt());
  r->set_offset(offset);
  r->set_max_bytes(256 << 10);
  r->set_wait_ms(wait_ms);
  {
    absl::MutexLock lock(&mu_);
    auto agent = agents_.find(stored->agent_id);
    if (agent != agents_.end() && agent->second.link != nullptr) {
      SendCommand(stored->agent_id, std::move(cmd),
                  {stored->agent_id, task->id(), CommandKind::kReadLog, std::move(done)});
      return;
    }
  }
  done(absl::UnavailableError(
      "the task's agent is not connected, and logs are read on the cluster; try again when it is"));
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
  *cluster.mutable_last_seen() = Ts(clock_->Now());
  RETURN_IF_ERROR(store_->UpsertAgent(cluster));
  ASSIGN_OR_RETURN(std::optional<AgentRecord> record, store_->GetAgent(reg.agent_id()));
  const uint64_t last_applied = record ? record->last_applied_sequence : 0;

  // What the agent has not confirmed: tasks still held with their secrets, then tasks from before a
  // controller restart (their secrets are gone: those with secrets fail), then pending cancels.
  ASSIGN_OR_RETURN(std::vector<StoredTask> unaccepted, store_->UnacceptedTasks(reg.agent_id()));
  ASSIGN_OR_RETURN(std::vector<StoredTask> cancelling, store_->CancellingTasks(reg.agent_id()));
  std::vector<LogCallback> failed_reads;
  {
    absl::MutexLock lock(&mu_);
    AgentState& a = agents_[reg.agent_id()];
    if (a.link != nullptr && a.link != link) {
      LOG(WARNING) << "agent=" << Esc(reg.agent_id())
                   << " connected again; the older stream is replaced";
    }
    a.cluster = cluster;
    a.link = link;
    a.last_applied = last_applied;
    a.disconnected_at = absl::InfiniteFuture();
    ReportConnectedLocked();
    // Commands that never got an answer are dropped here and resent below from the store; log
    // reads in flight fail (the reader asks again).
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.agent_id != reg.agent_id()) {
        ++it;
        continue;
      }
      if (it->second.log_done) failed_reads.push_back(std::move(it->second.log_done));
      it = pending_.erase(it);
    }
    // Every task the agent has not confirmed goes through the window again, in the store's
    // order, then those held for a submission the store read may not have seen yet.
    auto& held = undelivered_[reg.agent_id()];
    a.submit_queue.clear();
    a.submits_on_stream = 0;
    for (auto& [task_id, u] : held) u.queued = u.on_stream = false;
    for (const StoredTask& t : unaccepted) {
      if (IsTerminal(t.task.state())) continue;
      auto h = held.find(t.task.id());
      if (h == held.end()) {
        // From before a controller restart: no secret values are held for it. The window fails
        // it if its job needs some.
        h = held.emplace(t.task.id(), Undelivered{.deadline = clock_->Now() + options_.agent_wait})
                .first;
      }
      QueueSubmitLocked(reg.agent_id(), t.task.id(), h->second);
    }
    for (auto& [task_id, u] : held) QueueSubmitLocked(reg.agent_id(), task_id, u);
    for (const StoredTask& t : cancelling) {
      if (auto h = held.find(t.task.id()); h != held.end()) {
        h->second.cancel_after = true;  // behind its SubmitTask
        continue;
      }
      v1::Command cmd;
      cmd.mutable_cancel_task()->set_task_id(t.task.id());
      SendCommand(reg.agent_id(), std::move(cmd),
                  {reg.agent_id(), t.task.id(), CommandKind::kCancel, nullptr});
    }
  }
  unaccepted.clear();
  unaccepted.shrink_to_fit();
  for (auto& done : failed_reads) done(absl::UnavailableError("the agent reconnected; read again"));
  PumpSubmits(reg.agent_id());
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
  *event.mutable_time() = Ts(clock_->Now());
  event.set_state(v1::TASK_STATE_FAILED);
  event.set_reason(reason);
  RETURN_IF_ERROR(store_->UpdateTask(task, &event).status());
  metrics_->TaskFinished(v1::TASK_STATE_FAILED, why);
  NotifyListeners();
  return absl::OkStatus();
}

void ControllerCore::ReportConnectedLocked() {
  std::map<std::string, int> by_cluster;
  for (const auto& [id, a] : agents_) by_cluster[a.cluster.name()] += a.link != nullptr ? 1 : 0;
  metrics_->ConnectedAgents(by_cluster);
}

absl::StatusOr<uint64_t> ControllerCore::AgentEvents(const std::string& agent_id,
                                                     const v1::Events& events) {
  absl::MutexLock apply(&apply_mu_);
  uint64_t last_applied;
  std::string cluster;
  {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end()) return absl::FailedPreconditionError("agent is not registered");
    last_applied = it->second.last_applied;
    cluster = it->second.cluster.name();
    *it->second.cluster.mutable_last_seen() = Ts(clock_->Now());
  }
  std::vector<AppliedEvent> batch;
  std::map<std::string, size_t> index;  // task id → position in batch
  uint64_t highest = last_applied;
  std::optional<v1::ClusterHealth> health;
  int fresh = 0;                          // events not applied before
  std::vector<std::pair<v1::TaskState, EndReason>> finished;  // endings in this batch
  std::vector<v1::ResumeReason> resumed;  // resumed attempts in this batch
  std::vector<AttemptTimes> attempt_times;  // attempts seen starting or ending for the first time
  for (const v1::AgentEvent& e : events.events()) {
    if (e.sequence() <= highest) continue;  // already applied (a replay) or out of order
    highest = e.sequence();
    ++fresh;
    if (e.has_cluster_health()) {
      health = e.cluster_health();
      continue;
    }
    if (!e.has_task()) continue;
    const v1::TaskEvent& ev = e.task();
    StoredTask task;
    if (auto pos = index.find(ev.task_id()); pos != index.end()) {
      task = batch[pos->second].task;
    } else {
      // The status only: an event never changes the SubmitTask (the bulk of a stored task).
      auto stored = store_->GetTaskStatus(ev.task_id());
      if (!stored.ok() || stored->agent_id != agent_id) {
        LOG(WARNING) << "agent=" << Esc(agent_id) << " reported on task " << Esc(ev.task_id())
                     << ", which it was not given; ignored";
        continue;
      }
      task = *std::move(stored);
    }
    const bool was_terminal = IsTerminal(task.task.state());
    const bool cancel_requested = task.task.cancel_requested();
    if (AttemptTimes t = NewAttemptTimes(task.task, ev); t.queue_wait || t.run_time) {
      attempt_times.push_back(t);
    }
    ApplyEventToTask(ev, task.task);
    if (!was_terminal && IsTerminal(task.task.state())) {
      finished.emplace_back(task.task.state(), EndReasonOf(ev, cancel_requested));
    }
    // A later attempt the agent adopted (found by name after an unanswered sbatch) comes as
    // SUBMITTED, with its resume reason, and no RESUMED event.
    if (ev.kind() == v1::TaskEvent::KIND_RESUMED ||
        (ev.kind() == v1::TaskEvent::KIND_SUBMITTED &&
         ev.attempt().resume_reason() != v1::RESUME_REASON_UNSPECIFIED)) {
      resumed.push_back(ev.attempt().resume_reason());
    }
    if (ev.kind() != v1::TaskEvent::KIND_UNSPECIFIED) task.accepted = true;
    batch.push_back({task, ev});
    // Later events of this task in the batch start from this state.
    index[ev.task_id()] = batch.size() - 1;
  }
  if (highest == last_applied) return last_applied;
  const absl::Time apply_start = clock_->Now();
  RETURN_IF_ERROR(store_->ApplyAgentEvents(agent_id, batch, highest).status());
  metrics_->EventsApplied(fresh, clock_->Now() - apply_start);
  for (const auto& [state, why] : finished) metrics_->TaskFinished(state, why);
  for (v1::ResumeReason r : resumed) metrics_->TaskResumed(r);
  for (const AttemptTimes& t : attempt_times) {
    if (t.queue_wait) metrics_->AttemptStarted(cluster, *t.queue_wait);
    if (t.run_time) metrics_->AttemptEnded(cluster, *t.run_time);
  }
  {
    absl::MutexLock lock(&mu_);
    AgentState& a = agents_[agent_id];
    a.last_applied = highest;
    if (health) {
      a.cluster.set_slurm_reachable(health->slurm_reachable());
      a.cluster.set_slurm_message(health->message());
      a.cluster.set_tracked_jobs(health->tracked_jobs());
    }
    for (const AppliedEvent& e : batch) {
      // The agent has the task now: its secrets need not be held any longer.
      undelivered_[agent_id].erase(e.task.task.id());
    }
  }
  if (!batch.empty()) NotifyListeners();
  return highest;
}

void ControllerCore::AgentHeartbeat(const std::string& agent_id, const v1::Heartbeat& heartbeat) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return;
  *it->second.cluster.mutable_last_seen() = Ts(clock_->Now());
  it->second.cluster.set_tracked_jobs(heartbeat.tracked_jobs());
}

void ControllerCore::AgentCommandResult(const std::string& agent_id,
                                        const v1::CommandResult& result) {
  PendingCommand pending;
  bool refill = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(result.command_id());
    if (it == pending_.end() || it->second.agent_id != agent_id) return;
    pending = std::move(it->second);
    pending_.erase(it);
    if (pending.kind == CommandKind::kSubmit) {
      AgentState& agent = agents_[agent_id];
      --agent.submits_on_stream;
      // Taken (or refused, and failed below): its secrets need not be held any longer.
      undelivered_[agent_id].erase(pending.task_id);
      // The window refills once half of it has been answered: the store is read in runs of at
      // least half a window, not a task at a time.
      refill = !agent.submit_queue.empty() &&
               2 * (agent.submits_on_stream + agent.submits_taken) <= options_.submit_window;
    }
  }
  if (refill) PumpSubmits(agent_id);
  absl::Status status = result.code() == 0
                            ? absl::OkStatus()
                            : absl::Status(static_cast<absl::StatusCode>(result.code()),
                                           result.message());
  switch (pending.kind) {
    case CommandKind::kReadLog:
      if (pending.log_done) {
        if (status.ok()) {
          pending.log_done(result.log_chunk());
        } else {
          pending.log_done(status);
        }
      }
      return;
    case CommandKind::kSubmit:
      if (status.ok()) {
        auto t = store_->GetTaskStatus(pending.task_id);
        if (t.ok() && !t->accepted) {
          t->accepted = true;
          (void)store_->UpdateTask(*t, nullptr);
        }
      } else {
        auto t = store_->GetTaskStatus(pending.task_id);
        if (t.ok() && !IsTerminal(t->task.state())) {
          (void)FailTask(*std::move(t),
                         absl::StrCat("the agent could not take the task: ", status.message()),
                         EndReason::kAgentRefused);
        }
      }
      return;
    default:
      if (!status.ok()) {
        LOG(WARNING) << "agent=" << Esc(agent_id) << " task=" << Esc(pending.task_id) << ": "
                     << Esc(status.ToString());
      }
      return;
  }
}

void ControllerCore::AgentDisconnected(const std::string& agent_id, AgentLink* link) {
  std::vector<LogCallback> failed_reads;
  {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end() || it->second.link != link) return;
    it->second.link = nullptr;
    it->second.disconnected_at = clock_->Now();
    ReportConnectedLocked();
    // Give the held tasks a fresh bounded wait from now.
    for (auto& [task_id, u] : undelivered_[agent_id]) {
      u.deadline = clock_->Now() + options_.agent_wait;
    }
    for (auto p = pending_.begin(); p != pending_.end();) {
      if (p->second.agent_id == agent_id && p->second.kind == CommandKind::kReadLog) {
        if (p->second.log_done) failed_reads.push_back(std::move(p->second.log_done));
        p = pending_.erase(p);
      } else {
        ++p;
      }
    }
  }
  for (auto& done : failed_reads) done(absl::UnavailableError("the agent disconnected"));
  LOG(WARNING) << "agent=" << Esc(agent_id) << " disconnected";
}

void ControllerCore::Tick() {
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, std::string>> expired;  // (agent, task)
  std::vector<std::string> connected_agents;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [agent_id, a] : agents_) {
      if (a.link != nullptr && !a.submit_queue.empty()) connected_agents.push_back(agent_id);
    }
    for (auto& [agent_id, held] : undelivered_) {
      auto a = agents_.find(agent_id);
      bool connected = a != agents_.end() && a->second.link != nullptr;
      for (auto it = held.begin(); it != held.end();) {
        if (!connected && now >= it->second.deadline) {
          expired.emplace_back(agent_id, it->first);
          it = held.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  for (const auto& [agent_id, task_id] : expired) {
    auto t = store_->GetTask(task_id);
    if (!t.ok() || IsTerminal(t->task.state()) || t->accepted) continue;
    std::string cluster;
    {
      absl::MutexLock lock(&mu_);
      cluster = agents_[agent_id].cluster.name();
    }
    (void)FailTask(*std::move(t),
                   absl::StrCat("the agent of cluster ", cluster, " did not reconnect within ",
                                absl::FormatDuration(options_.agent_wait),
                                "; the task was never submitted. Submit it again"),
                   EndReason::kNotDelivered);
  }
  for (const std::string& agent_id : connected_agents) PumpSubmits(agent_id);
}

}  // namespace evalctl::controller
