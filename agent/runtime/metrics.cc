#include "agent/runtime/metrics.h"

#include <algorithm>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "common/task_vocabulary.h"

namespace evalctl::agent {
namespace {

// Slurm commands answer in tens of milliseconds when well, and time out (30 s) when not.
const prometheus::Histogram::BucketBoundaries kSlurmBuckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                               1,    2.5,   5,    10,  30,   60};
// A cycle is one squeue, one sacct, and file reads; more with submissions or a slow Slurm.
const prometheus::Histogram::BucketBoundaries kCycleBuckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                               2.5,  5,     10,   30,  60,   120};

constexpr v1::TaskState kActiveStates[] = {v1::TASK_STATE_PENDING, v1::TASK_STATE_QUEUED,
                                           v1::TASK_STATE_RUNNING, v1::TASK_STATE_RESUMING};
constexpr v1::TaskState kTerminalStates[] = {v1::TASK_STATE_SUCCEEDED, v1::TASK_STATE_FAILED,
                                             v1::TASK_STATE_CANCELLED,
                                             v1::TASK_STATE_BUDGET_EXHAUSTED};

std::string Label(const std::string& enum_name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::StripPrefix(enum_name, prefix));
}
std::string StateLabel(v1::TaskState s) { return Label(v1::TaskState_Name(s), "TASK_STATE_"); }
std::string ReasonLabel(v1::ResumeReason r) {
  return Label(v1::ResumeReason_Name(r), "RESUME_REASON_");
}

// "first_attempt", or the reason of a later attempt.
std::string SubmissionLabel(v1::ResumeReason r) {
  return r == v1::RESUME_REASON_UNSPECIFIED ? "first_attempt" : ReasonLabel(r);
}

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Times one call of the wrapped client and reports it. In real time, not on the runtime's Clock:
// what is measured is how long a real Slurm command (a child process) took.
template <typename Fn>
auto Metered(AgentMetrics* metrics, absl::string_view command, Fn fn) {
  const absl::Time start = absl::Now();
  auto result = fn();
  if constexpr (std::is_same_v<decltype(result), absl::Status>) {
    metrics->SlurmCommand(command, result, absl::Now() - start);
  } else {
    metrics->SlurmCommand(command, result.status(), absl::Now() - start);
  }
  return result;
}

}  // namespace

std::string OutcomeLabel(const absl::Status& status) {
  if (status.ok()) return "ok";
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

AgentMetrics::AgentMetrics(prometheus::Registry& registry, const std::string& version)
    : slurm_commands_(prometheus::BuildCounter()
                          .Name("evalctl_agent_slurm_commands_total")
                          .Help("Slurm commands run, by command and outcome.")
                          .Register(registry)),
      slurm_duration_(prometheus::BuildHistogram()
                          .Name("evalctl_agent_slurm_command_duration_seconds")
                          .Help("Duration of Slurm commands, by command.")
                          .Register(registry)),
      slurm_unreachable_(prometheus::BuildGauge()
                             .Name("evalctl_agent_slurm_unreachable_seconds")
                             .Help("Seconds since Slurm stopped answering; 0 while it answers.")
                             .Register(registry)
                             .Add({})),
      cycle_duration_(prometheus::BuildHistogram()
                          .Name("evalctl_agent_cycle_duration_seconds")
                          .Help("Duration of one tracking cycle.")
                          .Register(registry)
                          .Add({}, kCycleBuckets)),
      cycle_interval_(prometheus::BuildGauge()
                          .Name("evalctl_agent_cycle_interval_seconds")
                          .Help("Current interval between tracking cycles (adaptive).")
                          .Register(registry)
                          .Add({})),
      tracked_jobs_(prometheus::BuildGauge()
                        .Name("evalctl_agent_tracked_jobs")
                        .Help("Slurm jobs the last tracking cycle followed, by what Slurm said of "
                              "them (queued, running, ended, unknown).")
                        .Register(registry)),
      tasks_(prometheus::BuildGauge()
                 .Name("evalctl_agent_tasks")
                 .Help("Active (non-terminal) tasks of this agent, by state.")
                 .Register(registry)),
      task_unchanged_(prometheus::BuildGauge()
                          .Name("evalctl_agent_task_oldest_unchanged_seconds")
                          .Help("Per state: seconds since the least recently changed active task "
                                "changed state, phase or progress; 0 without tasks.")
                          .Register(registry)),
      outbox_events_(prometheus::BuildGauge()
                         .Name("evalctl_agent_outbox_events")
                         .Help("Events committed but not yet acknowledged by the controller.")
                         .Register(registry)
                         .Add({})),
      outbox_age_(prometheus::BuildGauge()
                      .Name("evalctl_agent_outbox_oldest_unacked_age_seconds")
                      .Help("Age of the oldest unacknowledged event; 0 when the outbox is empty.")
                      .Register(registry)
                      .Add({})),
      stream_connected_(prometheus::BuildGauge()
                            .Name("evalctl_agent_stream_connected")
                            .Help("1 while the stream to the controller is registered, else 0.")
                            .Register(registry)
                            .Add({})),
      stream_reconnects_(
          prometheus::BuildCounter()
              .Name("evalctl_agent_stream_reconnects_total")
              .Help("Times the agent redialled the controller (its stream ended or did not open).")
              .Register(registry)
              .Add({})),
      submissions_(prometheus::BuildCounter()
                       .Name("evalctl_agent_submissions_total")
                       .Help("Attempts submitted to Slurm, by reason: first_attempt or the "
                             "resume reason.")
                       .Register(registry)),
      resumes_(prometheus::BuildCounter()
                   .Name("evalctl_agent_resumes_total")
                   .Help("Attempts that followed an earlier one, by reason.")
                   .Register(registry)),
      tasks_finished_(prometheus::BuildCounter()
                          .Name("evalctl_agent_tasks_finished_total")
                          .Help("Tasks that reached a terminal state, by that state.")
                          .Register(registry)) {
  prometheus::BuildGauge()
      .Name("evalctl_agent_build_info")
      .Help("Always 1; the version label says which evalctl-agent runs.")
      .Register(registry)
      .Add({{"version", version}})
      .Set(1);
  // Series of bounded enums exist from the start, so that rate() and increase() see the first one.
  for (v1::TaskState s : kActiveStates) {
    tasks_.Add({{"state", StateLabel(s)}});
    task_unchanged_.Add({{"state", StateLabel(s)}});
  }
  for (v1::TaskState s : kTerminalStates) tasks_finished_.Add({{"state", StateLabel(s)}});
  for (const char* state : {"queued", "running", "ended", "unknown"}) {
    tracked_jobs_.Add({{"state", state}});
  }
  submissions_.Add({{"reason", SubmissionLabel(v1::RESUME_REASON_UNSPECIFIED)}});
  for (int r = v1::ResumeReason_MIN + 1; r <= v1::ResumeReason_MAX; ++r) {
    if (!v1::ResumeReason_IsValid(r)) continue;
    const auto reason = static_cast<v1::ResumeReason>(r);
    resumes_.Add({{"reason", ReasonLabel(reason)}});
    if (reason != v1::RESUME_REASON_SLURM_REQUEUE) {
      submissions_.Add({{"reason", SubmissionLabel(reason)}});
    }
  }
}

void AgentMetrics::SlurmCommand(absl::string_view command, const absl::Status& status,
                                absl::Duration duration) {
  const std::string c(command);
  slurm_commands_.Add({{"command", c}, {"outcome", OutcomeLabel(status)}}).Increment();
  slurm_duration_.Add({{"command", c}}, kSlurmBuckets).Observe(absl::ToDoubleSeconds(duration));
}

void AgentMetrics::SetSlurmUnreachable(absl::Duration for_how_long) {
  slurm_unreachable_.Set(absl::ToDoubleSeconds(for_how_long));
}

void AgentMetrics::CycleFinished(absl::Duration took, absl::Duration next_interval,
                                 const TrackedJobs& jobs) {
  cycle_duration_.Observe(absl::ToDoubleSeconds(took));
  cycle_interval_.Set(absl::ToDoubleSeconds(next_interval));
  tracked_jobs_.Add({{"state", "queued"}}).Set(jobs.queued);
  tracked_jobs_.Add({{"state", "running"}}).Set(jobs.running);
  tracked_jobs_.Add({{"state", "ended"}}).Set(jobs.ended);
  tracked_jobs_.Add({{"state", "unknown"}}).Set(jobs.unknown);
}

void AgentMetrics::TasksLoaded(const std::vector<JournaledTask>& tasks) {
  absl::MutexLock lock(&mu_);
  for (const JournaledTask& t : tasks) {
    const v1::Task& s = t.status;
    if (IsTerminal(s.state())) continue;
    active_[s.id()] = {s.state(),
                       ToTime(s.has_updated_time() ? s.updated_time() : s.created_time())};
  }
}

void AgentMetrics::RefreshTasks(absl::Time now) {
  std::map<v1::TaskState, std::pair<int, absl::Duration>> by_state;
  for (v1::TaskState s : kActiveStates) by_state[s] = {0, absl::ZeroDuration()};
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, a] : active_) {
      auto& [count, oldest] = by_state[a.state];
      ++count;
      oldest = std::max(oldest, now - a.changed);
    }
  }
  for (const auto& [state, v] : by_state) {
    tasks_.Add({{"state", StateLabel(state)}}).Set(v.first);
    task_unchanged_.Add({{"state", StateLabel(state)}}).Set(absl::ToDoubleSeconds(v.second));
  }
}

void AgentMetrics::EventsCommitted(const std::vector<v1::AgentEvent>& events) {
  absl::MutexLock lock(&mu_);
  for (const v1::AgentEvent& e : events) {
    if (!e.has_task()) continue;
    const v1::TaskEvent& ev = e.task();
    const v1::ResumeReason reason = ev.attempt().resume_reason();
    switch (ev.kind()) {
      case v1::TaskEvent::KIND_SUBMITTED:
        // Normally a first attempt; a later one when the agent adopted a job it had submitted
        // without recording it (found by name), which no RESUMED event announces.
        submissions_.Add({{"reason", SubmissionLabel(reason)}}).Increment();
        if (reason != v1::RESUME_REASON_UNSPECIFIED) {
          resumes_.Add({{"reason", ReasonLabel(reason)}}).Increment();
        }
        break;
      case v1::TaskEvent::KIND_RESUMED:
        resumes_.Add({{"reason", ReasonLabel(reason)}}).Increment();
        // Slurm requeues a job itself; every other resume is an sbatch of the agent's.
        if (reason != v1::RESUME_REASON_SLURM_REQUEUE) {
          submissions_.Add({{"reason", SubmissionLabel(reason)}}).Increment();
        }
        break;
      case v1::TaskEvent::KIND_FINISHED:
        if (IsTerminal(ev.state()))
          tasks_finished_.Add({{"state", StateLabel(ev.state())}}).Increment();
        break;
      default:
        break;
    }
    if (IsTerminal(ev.state())) {
      active_.erase(ev.task_id());
    } else if (ev.state() != v1::TASK_STATE_UNSPECIFIED) {
      active_[ev.task_id()] = {ev.state(), ToTime(ev.time())};
    }
  }
}

void AgentMetrics::SetOutbox(int64_t events, absl::Duration oldest_age) {
  outbox_events_.Set(static_cast<double>(events));
  outbox_age_.Set(absl::ToDoubleSeconds(std::max(oldest_age, absl::ZeroDuration())));
}

void AgentMetrics::SetStreamConnected(bool connected) { stream_connected_.Set(connected ? 1 : 0); }

void AgentMetrics::StreamReconnect() { stream_reconnects_.Increment(); }

// ---------------------------------------------------------------- MeteredSlurmClient

absl::StatusOr<std::string> MeteredSlurmClient::Submit(const SubmitRequest& request) {
  return Metered(metrics_, "sbatch", [&] { return slurm_->Submit(request); });
}

absl::StatusOr<std::vector<JobInfo>> MeteredSlurmClient::Queue(
    const std::vector<std::string>& job_ids) {
  return Metered(metrics_, "squeue", [&] { return slurm_->Queue(job_ids); });
}

absl::StatusOr<std::vector<JobInfo>> MeteredSlurmClient::Accounting(
    const std::vector<std::string>& job_ids) {
  return Metered(metrics_, "sacct", [&] { return slurm_->Accounting(job_ids); });
}

absl::StatusOr<std::vector<JobInfo>> MeteredSlurmClient::FindByName(
    const std::vector<std::string>& names, absl::Time since) {
  return Metered(metrics_, "find_by_name", [&] { return slurm_->FindByName(names, since); });
}

absl::StatusOr<JobInfo> MeteredSlurmClient::Show(const std::string& job_id) {
  return Metered(metrics_, "scontrol", [&] { return slurm_->Show(job_id); });
}

absl::Status MeteredSlurmClient::Cancel(const std::vector<std::string>& job_ids) {
  return Metered(metrics_, "scancel", [&] { return slurm_->Cancel(job_ids); });
}

}  // namespace evalctl::agent
