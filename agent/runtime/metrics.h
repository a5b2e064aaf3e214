// AgentMetrics: every Prometheus family of evalctl-agent, in one place; and MeteredSlurmClient,
// a SlurmClient decorator that counts and times each Slurm command.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   AgentMetrics metrics(*registry, "0.1.0");
//   SlurmCliClient cli(options);
//   MeteredSlurmClient slurm(&cli, &metrics);
//   AgentRuntime runtime(agent_options, &slurm, journal.get(), &clock, &metrics);
//
// Families (labels have bounded values: command names, status codes, enum names):
//   evalctl_agent_build_info{version}                              gauge, always 1
//   evalctl_agent_slurm_commands_total{command,outcome}            counter
//   evalctl_agent_slurm_command_duration_seconds{command}          histogram
//   evalctl_agent_slurm_unreachable_seconds                        gauge, 0 while Slurm answers
//   evalctl_agent_cycle_duration_seconds                           histogram, one tracking cycle
//   evalctl_agent_cycle_interval_seconds                           gauge, until the next cycle
//   evalctl_agent_tracked_jobs{state}                              gauge, jobs of the last cycle
//   evalctl_agent_tasks{state}                                     gauge, active tasks
//   evalctl_agent_task_oldest_unchanged_seconds{state}             gauge (see below)
//   evalctl_agent_outbox_events                                    gauge, not yet acknowledged
//   evalctl_agent_outbox_oldest_unacked_age_seconds                gauge, 0 when empty
//   evalctl_agent_stream_connected                                 gauge, 0 or 1
//   evalctl_agent_stream_reconnects_total                          counter, redials
//   evalctl_agent_submissions_total{reason}                        counter, attempts Slurm took
//   evalctl_agent_resumes_total{reason}                            counter
//   evalctl_agent_tasks_finished_total{state}                      counter, terminal states
// `command` is sbatch, squeue, sacct, scontrol, scancel, or find_by_name (squeue and sacct by
// job name); `outcome` is ok or the lower-case status code (unavailable, deadline_exceeded,
// invalid_argument, not_found, ...). tracked_jobs' `state` is what Slurm said of each job in the
// last cycle: queued, running, ended (in that cycle) or unknown (not shown yet, or Slurm did not
// answer). submissions_total's `reason` is first_attempt, or the resume reason of the attempt
// (timeout, preempted, node_fail, boot_fail, manual; Slurm's own requeues are no submission).
// task_oldest_unchanged_seconds is, per state, the time since the least recently changed active
// task last changed (state, phase or progress): what a "task stuck" alert needs.
//
// Thread-safe.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/core/journal.h"
#include "agent/core/task_manager.h"
#include "agent/slurm/slurm_client.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace evalctl::agent {

class AgentMetrics {
 public:
  AgentMetrics(prometheus::Registry& registry, const std::string& version);

  // One Slurm command (MeteredSlurmClient).
  void SlurmCommand(absl::string_view command, const absl::Status& status, absl::Duration duration);
  // How long Slurm has not answered (zero while it does).
  void SetSlurmUnreachable(absl::Duration for_how_long);

  // One tracking cycle, the interval until the next one, and the jobs it tracked by state.
  void CycleFinished(absl::Duration took, absl::Duration next_interval, const TrackedJobs& jobs);

  // Active tasks: seeded from the journal at start, then kept up to date from the committed
  // events (EventsCommitted). RefreshTasks sets the task gauges as of `now`.
  void TasksLoaded(const std::vector<JournaledTask>& tasks);
  void RefreshTasks(absl::Time now);

  // Events the TaskManager committed: submissions, resumes, endings, task states.
  void EventsCommitted(const std::vector<v1::AgentEvent>& events);

  // The outbox: unacknowledged events and the age of the oldest (zero when empty).
  void SetOutbox(int64_t events, absl::Duration oldest_age);

  void SetStreamConnected(bool connected);
  void StreamReconnect();

 private:
  struct Active {
    v1::TaskState state;
    absl::Time changed;
  };

  prometheus::Family<prometheus::Counter>& slurm_commands_;
  prometheus::Family<prometheus::Histogram>& slurm_duration_;
  prometheus::Gauge& slurm_unreachable_;
  prometheus::Histogram& cycle_duration_;
  prometheus::Gauge& cycle_interval_;
  prometheus::Family<prometheus::Gauge>& tracked_jobs_;
  prometheus::Family<prometheus::Gauge>& tasks_;
  prometheus::Family<prometheus::Gauge>& task_unchanged_;
  prometheus::Gauge& outbox_events_;
  prometheus::Gauge& outbox_age_;
  prometheus::Gauge& stream_connected_;
  prometheus::Counter& stream_reconnects_;
  prometheus::Family<prometheus::Counter>& submissions_;
  prometheus::Family<prometheus::Counter>& resumes_;
  prometheus::Family<prometheus::Counter>& tasks_finished_;

  absl::Mutex mu_;
  std::map<std::string, Active> active_ ABSL_GUARDED_BY(mu_);  // task id → state, last change
};

// Counts and times every call of the wrapped client. Thread-safe as the wrapped client is.
class MeteredSlurmClient : public SlurmClient {
 public:
  MeteredSlurmClient(SlurmClient* slurm, AgentMetrics* metrics)
      : slurm_(slurm), metrics_(metrics) {}

  absl::StatusOr<std::string> Submit(const SubmitRequest& request) override;
  absl::StatusOr<std::vector<JobInfo>> Queue(const std::vector<std::string>& job_ids) override;
  absl::StatusOr<std::vector<JobInfo>> Accounting(const std::vector<std::string>& job_ids) override;
  absl::StatusOr<std::vector<JobInfo>> FindByName(const std::vector<std::string>& names,
                                                  absl::Time since) override;
  absl::StatusOr<JobInfo> Show(const std::string& job_id) override;
  absl::Status Cancel(const std::vector<std::string>& job_ids) override;

 private:
  SlurmClient* slurm_;
  AgentMetrics* metrics_;
};

// "ok", or the lower-case name of the status code ("unavailable", "not_found", ...).
std::string OutcomeLabel(const absl::Status& status);

}  // namespace evalctl::agent
