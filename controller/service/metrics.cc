#include "controller/service/metrics.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace evalctl::controller {
namespace {

// Unary calls take milliseconds; streams (watchers, logs, agents) live for minutes to days.
const prometheus::Histogram::BucketBoundaries kRpcBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1,     2.5,    5,     10,   30,    60,   300, 1800, 3600};
// One SQLite transaction of up to max_events_per_batch events.
const prometheus::Histogram::BucketBoundaries kApplyBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

// Slurm queue waits: seconds on an idle cluster, hours to a day on a busy one.
const prometheus::Histogram::BucketBoundaries kQueueWaitBuckets = {
    1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400};
// Attempt run times: a failing setup ends in seconds; evaluations run minutes to the walltime.
const prometheus::Histogram::BucketBoundaries kRunBuckets = {
    10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800};

std::string EnumLabel(const std::string& name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::StripPrefix(name, prefix));
}

}  // namespace

std::string StateLabel(v1::TaskState state) {
  return EnumLabel(v1::TaskState_Name(state), "TASK_STATE_");
}

std::string ResumeReasonLabel(v1::ResumeReason reason) {
  return EnumLabel(v1::ResumeReason_Name(reason), "RESUME_REASON_");
}

std::string GrpcCodeLabel(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "Canceled";
    case grpc::StatusCode::UNKNOWN:
      return "Unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "InvalidArgument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DeadlineExceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "AlreadyExists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PermissionDenied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "ResourceExhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FailedPrecondition";
    case grpc::StatusCode::ABORTED:
      return "Aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OutOfRange";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "Unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "Internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "Unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "DataLoss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "Unauthenticated";
    default:
      return "Unknown";
  }
}

ControllerMetrics::ControllerMetrics(prometheus::Registry& registry, const std::string& version)
    : invocations_submitted_(prometheus::BuildCounter()
                                 .Name("evalctl_controller_invocations_submitted_total")
                                 .Help("Invocations accepted (duplicate requests not counted).")
                                 .Register(registry)
                                 .Add({})),
      tasks_submitted_(prometheus::BuildCounter()
                           .Name("evalctl_controller_tasks_submitted_total")
                           .Help("Tasks of accepted invocations.")
                           .Register(registry)
                           .Add({})),
      tasks_(prometheus::BuildGauge()
                 .Name("evalctl_controller_tasks")
                 .Help("Tasks in the store, by state (read from the store at each scrape).")
                 .Register(registry)),
      tasks_finished_(prometheus::BuildCounter()
                          .Name("evalctl_controller_tasks_finished_total")
                          .Help("Tasks that reached a terminal state, by that state and why "
                                "(a fixed set of reasons per state).")
                          .Register(registry)),
      resumes_(prometheus::BuildCounter()
                   .Name("evalctl_controller_resumes_total")
                   .Help("Attempts that followed an earlier one, by the reason agents reported.")
                   .Register(registry)),
      queue_wait_(prometheus::BuildHistogram()
                      .Name("evalctl_controller_attempt_queue_wait_seconds")
                      .Help("Time attempts waited in the Slurm queue, from sbatch to the job's "
                            "start, by cluster.")
                      .Register(registry)),
      run_time_(prometheus::BuildHistogram()
                    .Name("evalctl_controller_attempt_run_seconds")
                    .Help("Time attempts ran, from the job's start to its end, by cluster.")
                    .Register(registry)),
      agents_connected_(prometheus::BuildGauge()
                            .Name("evalctl_controller_agents_connected")
                            .Help("Agents with an open stream, by cluster.")
                            .Register(registry)),
      events_applied_(prometheus::BuildCounter()
                          .Name("evalctl_controller_events_applied_total")
                          .Help("Agent events applied (replays of applied events not counted).")
                          .Register(registry)
                          .Add({})),
      event_apply_duration_(prometheus::BuildHistogram()
                                .Name("evalctl_controller_event_apply_duration_seconds")
                                .Help("Store transaction applying one batch of agent events.")
                                .Register(registry)
                                .Add({}, kApplyBuckets)),
      store_commit_(prometheus::BuildHistogram()
                        .Name("evalctl_controller_store_commit_duration_seconds")
                        .Help("Write transactions of the store, BEGIN to COMMIT, by operation.")
                        .Register(registry)),
      watchers_open_(prometheus::BuildGauge()
                         .Name("evalctl_controller_watchers_open")
                         .Help("Open WatchInvocation streams.")
                         .Register(registry)
                         .Add({})),
      watcher_max_lag_(prometheus::BuildGauge()
                           .Name("evalctl_controller_watcher_max_lag_events")
                           .Help("Committed events the furthest-behind open watcher has not yet "
                                 "read and sent (watchers lag, they never drop); 0 without "
                                 "watchers.")
                           .Register(registry)
                           .Add({})),
      rpc_handled_(prometheus::BuildCounter()
                       .Name("grpc_server_handled_total")
                       .Help("RPCs completed on the server, by method and status code.")
                       .Register(registry)),
      rpc_handling_(prometheus::BuildHistogram()
                        .Name("grpc_server_handling_seconds")
                        .Help("Time from the start of an RPC to its status (streams: lifetime).")
                        .Register(registry)) {
  prometheus::BuildGauge()
      .Name("evalctl_controller_build_info")
      .Help("Always 1; the version label says which evalctl-controller runs.")
      .Register(registry)
      .Add({{"version", version}})
      .Set(1);
  // Series of bounded enums exist from the start, so that rate() and increase() see the first one.
  for (int s = v1::TaskState_MIN + 1; s <= v1::TaskState_MAX; ++s) {
    if (!v1::TaskState_IsValid(s)) continue;
    const auto state = static_cast<v1::TaskState>(s);
    tasks_.Add({{"state", StateLabel(state)}});
    for (EndReason reason : EndReasonsOf(state)) {
      tasks_finished_.Add({{"state", StateLabel(state)}, {"reason", EndReasonName(reason)}});
    }
  }
  for (const char* operation : kStoreOperations) {
    store_commit_.Add({{"operation", operation}}, kApplyBuckets);
  }
  for (int r = v1::ResumeReason_MIN + 1; r <= v1::ResumeReason_MAX; ++r) {
    if (v1::ResumeReason_IsValid(r)) {
      resumes_.Add({{"reason", ResumeReasonLabel(static_cast<v1::ResumeReason>(r))}});
    }
  }
}

void ControllerMetrics::InvocationSubmitted(int tasks) {
  invocations_submitted_.Increment();
  tasks_submitted_.Increment(tasks);
}

void ControllerMetrics::TaskFinished(v1::TaskState state, EndReason reason) {
  tasks_finished_.Add({{"state", StateLabel(state)}, {"reason", EndReasonName(reason)}})
      .Increment();
}

void ControllerMetrics::AttemptStarted(const std::string& cluster, absl::Duration queue_wait) {
  queue_wait_.Add({{"cluster", cluster}}, kQueueWaitBuckets)
      .Observe(absl::ToDoubleSeconds(queue_wait));
}

void ControllerMetrics::AttemptEnded(const std::string& cluster, absl::Duration run_time) {
  run_time_.Add({{"cluster", cluster}}, kRunBuckets).Observe(absl::ToDoubleSeconds(run_time));
}

void ControllerMetrics::StoreCommitted(absl::string_view operation, absl::Duration latency) {
  store_commit_.Add({{"operation", std::string(operation)}}, kApplyBuckets)
      .Observe(absl::ToDoubleSeconds(latency));
}

void ControllerMetrics::TasksByState(const std::map<v1::TaskState, int64_t>& counts) {
  for (const auto& [state, n] : counts) {
    if (state == v1::TASK_STATE_UNSPECIFIED || !v1::TaskState_IsValid(state)) continue;
    tasks_.Add({{"state", StateLabel(state)}}).Set(static_cast<double>(n));
  }
}

void ControllerMetrics::EventLogHead(uint64_t sequence) {
  uint64_t lag = 0;
  absl::MutexLock lock(&watchers_mu_);
  for (const auto& [id, position] : watcher_positions_) {
    if (position < sequence) lag = std::max(lag, sequence - position);
  }
  watcher_max_lag_.Set(static_cast<double>(lag));
}

void ControllerMetrics::TaskResumed(v1::ResumeReason reason) {
  resumes_.Add({{"reason", ResumeReasonLabel(reason)}}).Increment();
}

void ControllerMetrics::ConnectedAgents(const std::map<std::string, int>& by_cluster) {
  // A cluster absent from `by_cluster` (its agent registered under another name) drops to 0.
  absl::MutexLock lock(&clusters_mu_);
  for (const std::string& cluster : clusters_) {
    if (!by_cluster.count(cluster)) agents_connected_.Add({{"cluster", cluster}}).Set(0);
  }
  for (const auto& [cluster, n] : by_cluster) {
    agents_connected_.Add({{"cluster", cluster}}).Set(n);
    if (clusters_.insert(cluster).second) {
      // The cluster's histograms exist from its first agent on, so that increase() sees the
      // first attempt.
      queue_wait_.Add({{"cluster", cluster}}, kQueueWaitBuckets);
      run_time_.Add({{"cluster", cluster}}, kRunBuckets);
    }
  }
}

void ControllerMetrics::EventsApplied(int events, absl::Duration latency) {
  events_applied_.Increment(events);
  event_apply_duration_.Observe(absl::ToDoubleSeconds(latency));
}

void ControllerMetrics::RpcHandled(absl::string_view service, absl::string_view method,
                                   grpc::StatusCode code, absl::Duration duration) {
  const std::string s(service), m(method);
  rpc_handled_.Add({{"grpc_service", s}, {"grpc_method", m}, {"grpc_code", GrpcCodeLabel(code)}})
      .Increment();
  rpc_handling_.Add({{"grpc_service", s}, {"grpc_method", m}}, kRpcBuckets)
      .Observe(absl::ToDoubleSeconds(duration));
}

uint64_t ControllerMetrics::WatcherOpened(uint64_t position) {
  watchers_open_.Increment();
  absl::MutexLock lock(&watchers_mu_);
  const uint64_t id = next_watcher_++;
  watcher_positions_[id] = position;
  return id;
}

void ControllerMetrics::WatcherAt(uint64_t watcher, uint64_t position) {
  absl::MutexLock lock(&watchers_mu_);
  auto it = watcher_positions_.find(watcher);
  if (it != watcher_positions_.end()) it->second = std::max(it->second, position);
}

void ControllerMetrics::WatcherClosed(uint64_t watcher) {
  watchers_open_.Decrement();
  absl::MutexLock lock(&watchers_mu_);
  watcher_positions_.erase(watcher);
}

RpcObservation::RpcObservation(ControllerMetrics* metrics, absl::string_view service,
                               absl::string_view method)
    : metrics_(metrics), service_(service), method_(method), start_(absl::Now()) {}

void RpcObservation::Done(grpc::StatusCode code) {
  if (metrics_ == nullptr) return;
  metrics_->RpcHandled(service_, method_, code, absl::Now() - start_);
  metrics_ = nullptr;
}

}  // namespace evalctl::controller
