#include "controller/core/event_ingest.h"

#include <map>
#include <optional>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/task_vocabulary.h"
#include "controller/core/task_outcome.h"

namespace evalctl::controller {

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

absl::StatusOr<uint64_t> EventIngest::Apply(const std::string& agent_id, const v1::Events& events) {
  absl::MutexLock apply(&mu_);
  std::optional<AgentRegistry::Applying> agent = agents_->BeginApply(agent_id);
  if (!agent) return absl::FailedPreconditionError("agent is not registered");
  const uint64_t last_applied = agent->last_applied;
  std::vector<AppliedEvent> batch;
  std::map<std::string, size_t> index;  // task id → position in batch
  uint64_t highest = last_applied;
  std::optional<v1::ClusterHealth> health;
  int fresh = 0;                                              // events not applied before
  std::vector<std::pair<v1::TaskState, EndReason>> finished;  // endings in this batch
  std::vector<v1::ResumeReason> resumed;                      // resumed attempts in this batch
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
        LOG(WARNING) << "agent=" << absl::CHexEscape(agent_id) << " reported on task "
                     << absl::CHexEscape(ev.task_id()) << ", which it was not given; ignored";
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
    if (t.queue_wait) metrics_->AttemptStarted(agent->cluster, *t.queue_wait);
    if (t.run_time) metrics_->AttemptEnded(agent->cluster, *t.run_time);
  }
  std::vector<std::string> task_ids;
  task_ids.reserve(batch.size());
  for (const AppliedEvent& e : batch) task_ids.push_back(e.task.task.id());
  agents_->Applied(agent_id, highest, health, task_ids);
  if (!batch.empty()) watchers_->Notify();
  return highest;
}

}  // namespace evalctl::controller
