// ControllerMetrics: every Prometheus family of evalctl-controller, in one place.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   ControllerMetrics metrics(*registry, "0.1.0");
//   ControllerCore core(options, store, &clock, &metrics);     // CoreMetrics
//   EvalServiceImpl eval(&core, &auth, &pool, &metrics);       // per-RPC metrics
//
// Families (labels have bounded values: cluster names, enum names, gRPC methods and codes):
//   evalctl_controller_build_info{version}               gauge, always 1
//   evalctl_controller_invocations_submitted_total       counter
//   evalctl_controller_tasks_submitted_total             counter
//   evalctl_controller_tasks_finished_total{state}       counter, terminal states
//   evalctl_controller_resumes_total{reason}             counter, from agents' RESUMED events
//   evalctl_controller_agents_connected{cluster}         gauge
//   evalctl_controller_events_applied_total              counter
//   evalctl_controller_event_apply_duration_seconds      histogram, one store transaction
//   evalctl_controller_watchers_open                     gauge
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_code}   counter
//   grpc_server_handling_seconds{grpc_service,grpc_method}          histogram
// The two grpc_server_* families use the names and code spellings of go-grpc-prometheus, so
// existing gRPC dashboards work; for streams the handling time is the stream's lifetime.
//
// Thread-safe (prometheus-cpp metrics are).
#pragma once

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
  void TaskFinished(v1::TaskState state) override;
  void TaskResumed(v1::ResumeReason reason) override;
  void ConnectedAgents(const std::map<std::string, int>& by_cluster) override;
  void EventsApplied(int events, absl::Duration latency) override;

  // gRPC handlers.
  void RpcHandled(absl::string_view service, absl::string_view method, grpc::StatusCode code,
                  absl::Duration duration);
  void WatcherOpened();
  void WatcherClosed();

 private:
  prometheus::Counter& invocations_submitted_;
  prometheus::Counter& tasks_submitted_;
  prometheus::Family<prometheus::Counter>& tasks_finished_;
  prometheus::Family<prometheus::Counter>& resumes_;
  prometheus::Family<prometheus::Gauge>& agents_connected_;
  absl::Mutex clusters_mu_;
  std::set<std::string> clusters_ ABSL_GUARDED_BY(clusters_mu_);
  prometheus::Counter& events_applied_;
  prometheus::Histogram& event_apply_duration_;
  prometheus::Gauge& watchers_open_;
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
