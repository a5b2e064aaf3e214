#include "controller/core/agent_registry.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/task_vocabulary.h"

namespace evalctl::controller {
namespace {

// What an agent sends (ids, names) is written into log lines and errors only through this.
std::string Esc(absl::string_view agent_supplied) { return absl::CHexEscape(agent_supplied); }

bool SameHost(const v1::Cluster& c, const std::string& host) {
  if (c.name() == host) return true;
  for (const std::string& a : c.aliases()) {
    if (a == host) return true;
  }
  return false;
}

void PutSecrets(const std::vector<std::string>& values, v1::SubmitTask& submit) {
  size_t i = 0;
  for (v1::EnvVar& v : *submit.mutable_job()->mutable_env()) {
    if (v.secret() && i < values.size()) v.set_value(values[i++]);
  }
}

v1::Command CancelCommand(const std::string& task_id) {
  v1::Command cmd;
  cmd.mutable_cancel_task()->set_task_id(task_id);
  return cmd;
}

using Kind = AgentRegistry::Answer::Kind;

}  // namespace

AgentRegistry::AgentRegistry(Options options, Store* store, Clock* clock, CoreMetrics* metrics,
                             FailTaskFn fail_task)
    : options_(options),
      store_(store),
      clock_(clock),
      metrics_(metrics),
      fail_task_(std::move(fail_task)) {
  // Command ids must not repeat across restarts: a late answer to a command sent before a restart
  // would otherwise match a new one. Start from the clock (microseconds), which only grows.
  absl::MutexLock lock(&mu_);
  next_command_id_ = static_cast<uint64_t>(absl::ToUnixMicros(clock_->Now()));
}

// ---------------------------------------------------------------- routing

absl::StatusOr<AgentRegistry::Route> AgentRegistry::RouteTo(const std::string& hostname,
                                                            const std::string& username) {
  absl::MutexLock lock(&mu_);
  const std::pair<const std::string, Agent>* known_disconnected = nullptr;
  std::vector<std::string> connected;
  for (const auto& entry : agents_) {
    const Agent& a = entry.second;
    if (a.link != nullptr) {
      connected.push_back(
          absl::StrCat(Esc(a.cluster.name()), " (user ", Esc(a.cluster.unix_user()), ")"));
    }
    if (!SameHost(a.cluster, hostname) || a.cluster.unix_user() != username) continue;
    if (a.link != nullptr) return Route{entry.first, a.cluster};
    known_disconnected = &entry;
  }
  if (known_disconnected != nullptr) {
    return Route{known_disconnected->first, known_disconnected->second.cluster};
  }
  return absl::UnavailableError(absl::StrCat(
      "no evalctl-agent serves cluster \"", hostname, "\" for user ", username,
      "; connected clusters: ", connected.empty() ? "none" : absl::StrJoin(connected, ", "),
      ". Install one with `evalctl cluster install ", hostname,
      "`, or check execution.hostname "
      "and execution.username"));
}

std::map<std::string, v1::Cluster> AgentRegistry::Clusters() {
  absl::MutexLock lock(&mu_);
  std::map<std::string, v1::Cluster> out;
  for (const auto& [id, a] : agents_) {
    v1::Cluster& c = out[id] = a.cluster;
    c.set_connected(a.link != nullptr);
  }
  return out;
}

std::string AgentRegistry::ClusterName(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  return it == agents_.end() ? agent_id : it->second.cluster.name();
}

// ---------------------------------------------------------------- commands

bool AgentRegistry::CommandLocked(const std::string& agent_id, v1::Command command, Answer answer) {
  const uint64_t id = next_command_id_++;
  command.set_command_id(id);
  pending_[id] = Pending{agent_id, std::move(answer)};
  auto it = agents_.find(agent_id);
  if (it == agents_.end() || it->second.link == nullptr) return false;
  v1::ControllerMessage msg;
  *msg.mutable_command() = std::move(command);
  it->second.outbox.push_back(std::move(msg));
  return true;
}

void AgentRegistry::Flush(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return;
  Agent& agent = it->second;
  // Another thread drains this outbox: it takes what was added here too, in order.
  if (agent.sending_to != nullptr) return;
  while (agent.link != nullptr && !agent.outbox.empty()) {
    std::deque<v1::ControllerMessage> batch;
    batch.swap(agent.outbox);
    AgentLink* link = agent.sending_to = agent.link;
    mu_.Unlock();
    for (v1::ControllerMessage& m : batch) link->Send(std::move(m));
    batch.clear();
    mu_.Lock();
    agent.sending_to = nullptr;
  }
  // Nothing in the outbox outlives its stream: the next stream starts again from the store.
  if (agent.link == nullptr) agent.outbox.clear();
}

void AgentRegistry::QueueSubmitLocked(Agent& agent, const std::string& task_id, Held& held) {
  if (held.queued) return;
  held.queued = true;
  agent.submit_queue.push_back(task_id);
}

void AgentRegistry::HoldSubmissions(
    const std::string& agent_id,
    std::vector<std::pair<std::string, std::vector<std::string>>> tasks) {
  {
    absl::MutexLock lock(&mu_);
    Agent& agent = agents_[agent_id];
    const absl::Time deadline = clock_->Now() + options_.agent_wait;
    for (auto& [task_id, secrets] : tasks) {
      Held& held = agent.held[task_id];
      held = {.secrets = std::move(secrets), .deadline = deadline};
      QueueSubmitLocked(agent, task_id, held);
    }
  }
  PumpSubmits(agent_id);
}

bool AgentRegistry::DropUnsent(const std::string& agent_id, const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  Agent& agent = agents_[agent_id];
  auto it = agent.held.find(task_id);
  if (it == agent.held.end() || it->second.ever_sent) return false;
  agent.held.erase(it);
  return true;
}

void AgentRegistry::Cancel(const std::string& agent_id, const std::string& task_id) {
  {
    absl::MutexLock lock(&mu_);
    Agent& agent = agents_[agent_id];
    if (auto it = agent.held.find(task_id); it != agent.held.end() && !it->second.on_stream) {
      // Behind the SubmitTask that is still to be (re)sent on this stream.
      it->second.cancel_after = true;
      return;
    }
    CommandLocked(agent_id, CancelCommand(task_id), {Kind::kCancel, task_id, nullptr});
  }
  Flush(agent_id);
}

absl::Status AgentRegistry::Resume(const std::string& agent_id, const std::string& task_id) {
  {
    absl::MutexLock lock(&mu_);
    auto agent = agents_.find(agent_id);
    if (agent == agents_.end() || agent->second.link == nullptr) {
      return absl::UnavailableError(absl::StrCat(
          "the agent of cluster ", agent == agents_.end() ? agent_id : agent->second.cluster.name(),
          " is not connected; try again when it is"));
    }
    v1::Command cmd;
    cmd.mutable_resume_task()->set_task_id(task_id);
    CommandLocked(agent_id, std::move(cmd), {Kind::kResume, task_id, nullptr});
  }
  Flush(agent_id);
  return absl::OkStatus();
}

void AgentRegistry::ReadLog(const std::string& agent_id, v1::ReadLog request, LogCallback done) {
  {
    absl::MutexLock lock(&mu_);
    auto agent = agents_.find(agent_id);
    if (agent != agents_.end() && agent->second.link != nullptr) {
      const std::string task_id = request.task_id();
      v1::Command cmd;
      *cmd.mutable_read_log() = std::move(request);
      CommandLocked(agent_id, std::move(cmd), {Kind::kReadLog, task_id, std::move(done)});
      done = nullptr;
    }
  }
  if (done == nullptr) return Flush(agent_id);
  done(absl::UnavailableError(
      "the task's agent is not connected, and logs are read on the cluster; try again when it is"));
}

void AgentRegistry::PumpSubmits(const std::string& agent_id) {
  while (true) {
    // Take what fits in the window.
    std::vector<std::string> taken;
    {
      absl::MutexLock lock(&mu_);
      auto a = agents_.find(agent_id);
      if (a == agents_.end() || a->second.link == nullptr) return;
      Agent& agent = a->second;
      while (agent.submits_taken + agent.submits_on_stream < options_.submit_window &&
             !agent.submit_queue.empty()) {
        std::string id = std::move(agent.submit_queue.front());
        agent.submit_queue.pop_front();
        auto h = agent.held.find(id);
        if (h == agent.held.end() || !h->second.queued) continue;
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
      Agent& agent = agents_[agent_id];
      agent.submits_taken -= static_cast<int>(taken.size());
      for (size_t i = 0; i < taken.size(); ++i) {
        auto h = agent.held.find(taken[i]);
        // Gone meanwhile: cancelled before it was sent, or confirmed by the agent's events.
        if (h == agent.held.end() || h->second.on_stream || h->second.queued) continue;
        Held& u = h->second;
        if (!stored[i].ok() || IsTerminal(stored[i]->task.state()) || stored[i]->accepted) {
          if (!stored[i].ok()) {
            LOG(ERROR) << "task=" << taken[i]
                       << " cannot be read for its agent: " << stored[i].status();
          } else if (u.cancel_after && !IsTerminal(stored[i]->task.state())) {
            // The agent has it already: the cancel needs no SubmitTask before it.
            CommandLocked(agent_id, CancelCommand(taken[i]), {Kind::kCancel, taken[i], nullptr});
          }
          agent.held.erase(h);
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
            agent.held.erase(h);
            continue;
          }
        } else {
          PutSecrets(u.secrets, *cmd.mutable_submit_task());
        }
        CommandLocked(agent_id, std::move(cmd), {Kind::kSubmit, taken[i], nullptr});
        ++agent.submits_on_stream;
        u.on_stream = u.ever_sent = true;
        if (u.cancel_after) {
          u.cancel_after = false;
          CommandLocked(agent_id, CancelCommand(taken[i]), {Kind::kCancel, taken[i], nullptr});
        }
      }
    }
    stored.clear();
    Flush(agent_id);
    for (StoredTask& t : lost_secrets) {
      fail_task_(std::move(t),
                 "the controller restarted before the cluster's agent took the task, and the "
                 "task's secret values are never stored; submit the invocation again");
    }
  }
}

// ---------------------------------------------------------------- the agent's stream

absl::Status AgentRegistry::CheckSole(const v1::Cluster& cluster) {
  absl::MutexLock lock(&mu_);
  return CheckSoleLocked(cluster);
}

absl::Status AgentRegistry::CheckSoleLocked(const v1::Cluster& cluster) {
  for (const auto& [id, a] : agents_) {
    if (id == cluster.agent_id() || a.link == nullptr || a.cluster.name() != cluster.name() ||
        a.cluster.unix_user() != cluster.unix_user()) {
      continue;
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "agent ", Esc(id), " already serves cluster ", Esc(cluster.name()), " for Unix user ",
        Esc(cluster.unix_user()), "; one agent per cluster and user: stop that one first "
        "(evalctl cluster ls shows it), and this one takes over when it connects again"));
  }
  return absl::OkStatus();
}

absl::Status AgentRegistry::Connected(v1::Cluster cluster, AgentLink* link, uint64_t last_applied,
                                      const std::vector<StoredTask>& unaccepted,
                                      const std::vector<StoredTask>& cancelling) {
  const std::string agent_id = cluster.agent_id();
  std::vector<LogCallback> failed_reads;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckSoleLocked(cluster));
    Agent& a = agents_[agent_id];
    if (a.link != nullptr && a.link != link) {
      LOG(WARNING) << "agent=" << Esc(agent_id) << " connected again; the older stream is replaced";
    }
    a.cluster = std::move(cluster);
    a.link = link;
    a.last_applied = last_applied;
    a.outbox.clear();
    ReportConnectedLocked();
    // Commands that never got an answer are dropped here and resent below from the store; log
    // reads in flight fail (the reader asks again).
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.agent_id != agent_id) {
        ++it;
        continue;
      }
      if (it->second.answer.log_done) failed_reads.push_back(std::move(it->second.answer.log_done));
      it = pending_.erase(it);
    }
    // Every task the agent has not confirmed goes through the window again, in the store's
    // order, then those held for a submission the store read may not have seen yet.
    a.submit_queue.clear();
    a.submits_on_stream = 0;
    for (auto& [task_id, u] : a.held) u.queued = u.on_stream = false;
    for (const StoredTask& t : unaccepted) {
      if (IsTerminal(t.task.state())) continue;
      auto h = a.held.find(t.task.id());
      if (h == a.held.end()) {
        // From before a controller restart: no secret values are held for it. The window fails
        // it if its job needs some.
        h = a.held.emplace(t.task.id(), Held{.deadline = clock_->Now() + options_.agent_wait})
                .first;
      }
      QueueSubmitLocked(a, t.task.id(), h->second);
    }
    for (auto& [task_id, u] : a.held) QueueSubmitLocked(a, task_id, u);
    for (const StoredTask& t : cancelling) {
      if (auto h = a.held.find(t.task.id()); h != a.held.end()) {
        h->second.cancel_after = true;  // behind its SubmitTask
        continue;
      }
      CommandLocked(agent_id, CancelCommand(t.task.id()), {Kind::kCancel, t.task.id(), nullptr});
    }
  }
  for (auto& done : failed_reads) done(absl::UnavailableError("the agent reconnected; read again"));
  Flush(agent_id);
  PumpSubmits(agent_id);
  return absl::OkStatus();
}

void AgentRegistry::Disconnected(const std::string& agent_id, AgentLink* link) {
  std::vector<LogCallback> failed_reads;
  {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end()) return;
    Agent& agent = it->second;
    // The stream's link is about to be destroyed: no drain may still be writing to it.
    const auto drain_left = [&agent, link]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return agent.sending_to != link;
    };
    mu_.Await(absl::Condition(&drain_left));
    if (agent.link != link) return;
    agent.link = nullptr;
    agent.outbox.clear();
    ReportConnectedLocked();
    // Give the held tasks a fresh bounded wait from now.
    for (auto& [task_id, u] : agent.held) u.deadline = clock_->Now() + options_.agent_wait;
    for (auto p = pending_.begin(); p != pending_.end();) {
      if (p->second.agent_id == agent_id && p->second.answer.kind == Kind::kReadLog) {
        if (p->second.answer.log_done) failed_reads.push_back(std::move(p->second.answer.log_done));
        p = pending_.erase(p);
      } else {
        ++p;
      }
    }
  }
  for (auto& done : failed_reads) done(absl::UnavailableError("the agent disconnected"));
  LOG(WARNING) << "agent=" << Esc(agent_id) << " disconnected";
}

void AgentRegistry::Heartbeat(const std::string& agent_id, const v1::Heartbeat& heartbeat) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return;
  *it->second.cluster.mutable_last_seen() = ToTimestamp(clock_->Now());
  it->second.cluster.set_tracked_jobs(heartbeat.tracked_jobs());
}

std::optional<AgentRegistry::Answer> AgentRegistry::Answered(const std::string& agent_id,
                                                             const v1::CommandResult& result) {
  Answer answer;
  bool refill = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(result.command_id());
    if (it == pending_.end() || it->second.agent_id != agent_id) return std::nullopt;
    answer = std::move(it->second.answer);
    pending_.erase(it);
    if (answer.kind == Kind::kSubmit) {
      Agent& agent = agents_[agent_id];
      --agent.submits_on_stream;
      // Taken (or refused, and failed by the caller): its secrets need not be held any longer.
      agent.held.erase(answer.task_id);
      // The window refills once half of it has been answered: the store is read in runs of at
      // least half a window, not a task at a time.
      refill = !agent.submit_queue.empty() &&
               2 * (agent.submits_on_stream + agent.submits_taken) <= options_.submit_window;
    }
  }
  if (refill) PumpSubmits(agent_id);
  return answer;
}

std::optional<AgentRegistry::Applying> AgentRegistry::BeginApply(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return std::nullopt;
  *it->second.cluster.mutable_last_seen() = ToTimestamp(clock_->Now());
  return Applying{it->second.last_applied, it->second.cluster.name()};
}

void AgentRegistry::Applied(const std::string& agent_id, uint64_t highest,
                            const std::optional<v1::ClusterHealth>& health,
                            const std::vector<std::string>& task_ids) {
  absl::MutexLock lock(&mu_);
  Agent& a = agents_[agent_id];
  a.last_applied = highest;
  if (health) {
    a.cluster.set_slurm_reachable(health->slurm_reachable());
    a.cluster.set_slurm_message(health->message());
    a.cluster.set_tracked_jobs(health->tracked_jobs());
  }
  // The agent has these tasks now: their secrets need not be held any longer.
  for (const std::string& id : task_ids) a.held.erase(id);
}

std::vector<std::pair<std::string, std::string>> AgentRegistry::Tick() {
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, std::string>> expired;  // (agent, task)
  std::vector<std::string> to_pump;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [agent_id, a] : agents_) {
      if (a.link != nullptr) {
        if (!a.submit_queue.empty()) to_pump.push_back(agent_id);
        continue;
      }
      for (auto it = a.held.begin(); it != a.held.end();) {
        if (now >= it->second.deadline) {
          expired.emplace_back(agent_id, it->first);
          it = a.held.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  for (const std::string& agent_id : to_pump) PumpSubmits(agent_id);
  return expired;
}

void AgentRegistry::ReportConnectedLocked() {
  std::map<std::string, int> by_cluster;
  for (const auto& [id, a] : agents_) by_cluster[a.cluster.name()] += a.link != nullptr ? 1 : 0;
  metrics_->ConnectedAgents(by_cluster);
}

}  // namespace evalctl::controller
