// ControllerMetrics: every Prometheus family of evalctl-controller, in one place.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   ControllerMetrics metrics(*registry, "0.1.0");
//   ControllerCore core(options, store, &clock, &metrics);     // CoreMetrics
//   EvalServiceImpl eval(&core, &auth, &pool, &metrics);       // per-RPC metrics
//
// Families (labels have bounded values: cluster names, enum names, gRPC methods and codes):
//   evalctl_controller_build_info{version}                  gauge, always 1
//   evalctl_controller_invocations_submitted_total          counter
//   evalctl_controller_tasks_submitted_total                counter
//   evalctl_controller_tasks{state}                         gauge, tasks in the store
//   evalctl_controller_tasks_finished_total{state,reason}   counter, terminal states
//   evalctl_controller_resumes_total{reason}                counter, from agents' events
//   evalctl_controller_attempt_queue_wait_seconds{cluster}  histogram, sbatch to start
//   evalctl_controller_attempt_run_seconds{cluster}         histogram, start to end
//   evalctl_controller_agents_connected{cluster}            gauge
//   evalctl_controller_events_applied_total                 counter
//   evalctl_controller_event_apply_duration_seconds         histogram, one store transaction
//   evalctl_controller_store_commit_duration_seconds{operation}   histogram, every write
//   evalctl_controller_watchers_open                        gauge
//   evalctl_controller_watcher_max_lag_events               gauge (see below)
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_code}   counter
//   grpc_server_handling_seconds{grpc_service,grpc_method}          histogram
// The two grpc_server_* families use the names and code spellings of go-grpc-prometheus, so
// existing gRPC dashboards work; for streams the handling time is the stream's lifetime.
//
// `reason` of tasks_finished_total is a small closed set per state (controller/core/
// task_outcome.h): succeeded/completed; failed/exit_code, out_of_memory, deadline,
// results_unreadable, slurm_rejected, not_delivered, agent_refused, other; cancelled/requested,
// cancelled_in_slurm; budget_exhausted/timeout, preempted, node_fail, boot_fail, other.
// `operation` of store_commit_duration_seconds is create_invocation, update_task,
// apply_agent_events or upsert_agent.
//
// Watchers never drop events: each reads the store's event log from its own position, so a slow
// one lags behind instead. watcher_max_lag_events is, as of the last scrape, how many committed
// events the furthest-behind open watcher has not yet read and written out (0 without watchers):
// the event log's head minus the watcher's position. tasks and watcher_max_lag_events are set
// by ControllerCore::RefreshMetrics, which the binary runs before each scrape.
//
// Thread-safe (prometheus-cpp metrics are).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controller/core/core_metrics.h"
#include "grpcpp/support/status_code_enum.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace evalctl::controller {

class ControllerMetrics : public CoreMetrics {
 public:
  ControllerMetrics(prometheus::Registry& registry, const std::string& version);

  // CoreMetrics.
  void InvocationSubmitted(int tasks) override;
  void TaskFinished(v1::TaskState state, EndReason reason) override;
  void TaskResumed(v1::ResumeReason reason) override;
  void AttemptStarted(const std::string& cluster, absl::Duration queue_wait) override;
  void AttemptEnded(const std::string& cluster, absl::Duration run_time) override;
  void ConnectedAgents(const std::map<std::string, int>& by_cluster) override;
  void EventsApplied(int events, absl::Duration latency) override;
  void StoreCommitted(absl::string_view operation, absl::Duration latency) override;
  void TasksByState(const std::map<v1::TaskState, int64_t>& counts) override;
  void EventLogHead(uint64_t sequence) override;

  // gRPC handlers.
  void RpcHandled(absl::string_view service, absl::string_view method, grpc::StatusCode code,
                  absl::Duration duration);
  // A watcher opened at `position` (the sequence it starts after); returns its id for WatcherAt
  // and WatcherClosed.
  uint64_t WatcherOpened(uint64_t position);
  // The watcher has read and written out every event it may see up to `position`.
  void WatcherAt(uint64_t watcher, uint64_t position);
  void WatcherClosed(uint64_t watcher);

 private:
  prometheus::Counter& invocations_submitted_;
  prometheus::Counter& tasks_submitted_;
  prometheus::Family<prometheus::Gauge>& tasks_;
  prometheus::Family<prometheus::Counter>& tasks_finished_;
  prometheus::Family<prometheus::Counter>& resumes_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& run_time_;
  prometheus::Family<prometheus::Gauge>& agents_connected_;
  absl::Mutex clusters_mu_;
  std::set<std::string> clusters_ ABSL_GUARDED_BY(clusters_mu_);
  prometheus::Counter& events_applied_;
  prometheus::Histogram& event_apply_duration_;
  prometheus::Family<prometheus::Histogram>& store_commit_;
  prometheus::Gauge& watchers_open_;
  prometheus::Gauge& watcher_max_lag_;
  absl::Mutex watchers_mu_;
  uint64_t next_watcher_ ABSL_GUARDED_BY(watchers_mu_) = 1;
  std::map<uint64_t, uint64_t> watcher_positions_ ABSL_GUARDED_BY(watchers_mu_);  // id → position
  prometheus::Family<prometheus::Counter>& rpc_handled_;
  prometheus::Family<prometheus::Histogram>& rpc_handling_;
};

// Measures one RPC from construction to Done() and reports it to `metrics` (which may be null:
// then nothing is recorded). Done() records once; later calls are ignored. Not thread-safe: the
// reactor that owns it calls Done() once, when it finishes.
class RpcObservation {
 public:
  RpcObservation(ControllerMetrics* metrics, absl::string_view service, absl::string_view method);
  void Done(grpc::StatusCode code);

 private:
  ControllerMetrics* metrics_;
  absl::string_view service_;
  absl::string_view method_;
  absl::Time start_;
};

// Lower-case label values of the enums ("succeeded", "budget_exhausted", "preempted", ...) and
// go-grpc-prometheus's gRPC code names ("OK", "NotFound", ...).
std::string StateLabel(v1::TaskState state);
std::string ResumeReasonLabel(v1::ResumeReason reason);
std::string GrpcCodeLabel(grpc::StatusCode code);

}  // namespace evalctl::controller
