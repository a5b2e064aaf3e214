#include "controller/service/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

#include "controller/core/controller_core.h"
#include "controller/core/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace evalctl::controller {
namespace {

using ::testing::DoubleNear;
using ::testing::Optional;

constexpr char kConfig[] = R"(defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution:
  hostname: clusterA
  username: alice
  account: acct
  output_dir: /scratch/results
  container_runtime: none
target:
  api_endpoint: {url: 'http://h:8000/v1/chat/completions', model_id: m}
evaluation:
  tasks:
    - name: one
      command: echo one
    - name: two
      command: echo two
)";

using Labels = std::map<std::string, std::string>;

// The value of one series in a Collect(): a counter's or gauge's value, a histogram's sample
// count. nullopt when the family or the series is absent.
std::optional<double> Value(const prometheus::Registry& registry, const std::string& name,
                            const Labels& labels = {}) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      Labels got;
      for (const prometheus::ClientMetric::Label& l : m.label) got[l.name] = l.value;
      if (got != labels) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return m.counter.value;
        case prometheus::MetricType::Gauge:
          return m.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(m.histogram.sample_count);
        default:
          return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

// The sum of a histogram's samples; nullopt when the family or the series is absent.
std::optional<double> Sum(const prometheus::Registry& registry, const std::string& name,
                          const Labels& labels = {}) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name || family.type != prometheus::MetricType::Histogram) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      Labels got;
      for (const prometheus::ClientMetric::Label& l : m.label) got[l.name] = l.value;
      if (got == labels) return m.histogram.sample_sum;
    }
  }
  return std::nullopt;
}

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp out;
  out.set_seconds(absl::ToUnixSeconds(t));
  return out;
}

class NullLink : public AgentLink {
 public:
  void Send(v1::ControllerMessage) override {}
};

class ControllerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/controller_metrics_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Open(&metrics_);
  }
  // (Re)opens the store and the core, reporting to `metrics`.
  void Open(ControllerMetrics* metrics) {
    core_.reset();
    store_.reset();
    auto s = SqliteStore::Open(dir_ + "/controller.db", metrics);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    core_ = std::make_unique<ControllerCore>(ControllerOptions{}, store_.get(), &clock_, metrics);
  }
  std::string SubmitTwoTasks(const std::string& request_id = "req-1") {
    v1::SubmitInvocationRequest req;
    req.set_request_id(request_id);
    req.mutable_config()->set_yaml(kConfig);
    auto submitted = core_->Submit({"alice", false}, req);
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    return submitted.ok() ? submitted->invocation().id() : "";
  }
  double Tasks(const std::string& state) {
    return Value(registry_, "evalctl_controller_tasks", {{"state", state}}).value_or(-1);
  }
  double Finished(const std::string& state, const std::string& reason) {
    return Value(registry_, "evalctl_controller_tasks_finished_total",
                 {{"state", state}, {"reason", reason}})
        .value_or(-1);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Connect(AgentLink* link, const std::string& agent_id = "agent-a") {
    v1::Register reg;
    reg.set_agent_id(agent_id);
    reg.set_cluster("clusterA");
    reg.set_unix_user("alice");
    auto r = core_->AgentConnected(reg, link);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  v1::AgentEvent Event(uint64_t sequence, const std::string& task_id, v1::TaskEvent::Kind kind,
                       v1::TaskState state, int attempt,
                       v1::ResumeReason reason = v1::RESUME_REASON_UNSPECIFIED) {
    v1::AgentEvent e;
    e.set_sequence(sequence);
    v1::TaskEvent* t = e.mutable_task();
    t->set_kind(kind);
    t->set_task_id(task_id);
    t->set_state(state);
    t->mutable_attempt()->set_number(attempt);
    t->mutable_attempt()->set_resume_reason(reason);
    return e;
  }

  prometheus::Registry registry_;
  ControllerMetrics metrics_{registry_, "1.2.3"};
  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<ControllerCore> core_;
};

TEST_F(ControllerMetricsTest, BuildInfoAndEnumSeriesExistFromTheStart) {
  EXPECT_THAT(Value(registry_, "evalctl_controller_build_info", {{"version", "1.2.3"}}),
              Optional(1.0));
  // Outcomes: every (terminal state, reason) pair from the start, and no other.
  for (const auto& [state, reason] :
       std::vector<std::pair<std::string, std::string>>{{"succeeded", "completed"},
                                                        {"failed", "exit_code"},
                                                        {"failed", "out_of_memory"},
                                                        {"failed", "deadline"},
                                                        {"failed", "results_unreadable"},
                                                        {"failed", "slurm_rejected"},
                                                        {"failed", "not_delivered"},
                                                        {"failed", "agent_refused"},
                                                        {"failed", "other"},
                                                        {"cancelled", "requested"},
                                                        {"cancelled", "cancelled_in_slurm"},
                                                        {"budget_exhausted", "timeout"},
                                                        {"budget_exhausted", "preempted"},
                                                        {"budget_exhausted", "node_fail"},
                                                        {"budget_exhausted", "boot_fail"},
                                                        {"budget_exhausted", "other"}}) {
    EXPECT_EQ(Finished(state, reason), 0.0) << state << " " << reason;
  }
  int outcome_series = 0;
  for (const prometheus::MetricFamily& family : registry_.Collect()) {
    if (family.name == "evalctl_controller_tasks_finished_total") {
      outcome_series = static_cast<int>(family.metric.size());
    }
  }
  EXPECT_EQ(outcome_series, 16);
  for (const char* state : {"pending", "queued", "running", "resuming", "succeeded", "failed",
                            "cancelled", "budget_exhausted"}) {
    EXPECT_EQ(Tasks(state), 0.0) << state;
  }
  for (const char* operation :
       {"create_invocation", "update_task", "apply_agent_events", "upsert_agent"}) {
    EXPECT_THAT(Value(registry_, "evalctl_controller_store_commit_duration_seconds",
                      {{"operation", operation}}),
                Optional(0.0))
        << operation;
  }
  EXPECT_THAT(Value(registry_, "evalctl_controller_watcher_max_lag_events"), Optional(0.0));
  for (const char* reason :
       {"timeout", "preempted", "node_fail", "boot_fail", "slurm_requeue", "manual"}) {
    EXPECT_THAT(Value(registry_, "evalctl_controller_resumes_total", {{"reason", reason}}),
                Optional(0.0))
        << reason;
  }
  EXPECT_THAT(Value(registry_, "evalctl_controller_invocations_submitted_total"), Optional(0.0));
  EXPECT_THAT(Value(registry_, "evalctl_controller_watchers_open"), Optional(0.0));
}

TEST_F(ControllerMetricsTest, CoreReportsSubmissionsOutcomesResumesAgentsAndAppliedEvents) {
  NullLink link;
  Connect(&link);
  EXPECT_THAT(Value(registry_, "evalctl_controller_agents_connected", {{"cluster", "clusterA"}}),
              Optional(1.0));

  v1::SubmitInvocationRequest req;
  req.set_request_id("req-1");
  req.mutable_config()->set_yaml(kConfig);
  auto submitted = core_->Submit({"alice", false}, req);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  // A retry with the same request id is a duplicate, not a new invocation.
  ASSERT_TRUE(core_->Submit({"alice", false}, req).ok());
  EXPECT_THAT(Value(registry_, "evalctl_controller_invocations_submitted_total"), Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_controller_tasks_submitted_total"), Optional(2.0));

  const std::string t0 = submitted->invocation().tasks(0).id();
  const std::string t1 = submitted->invocation().tasks(1).id();
  v1::Events events;
  *events.add_events() = Event(1, t0, v1::TaskEvent::KIND_SUBMITTED, v1::TASK_STATE_QUEUED, 1);
  *events.add_events() = Event(2, t0, v1::TaskEvent::KIND_RESUMED, v1::TASK_STATE_QUEUED, 2,
                               v1::RESUME_REASON_PREEMPTED);
  *events.add_events() = Event(3, t0, v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_SUCCEEDED, 2);
  *events.add_events() = Event(4, t1, v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_FAILED, 1);
  events.mutable_events(3)->mutable_task()->mutable_attempt()->set_slurm_job_id("12");
  events.mutable_events(3)->mutable_task()->mutable_attempt()->set_slurm_state("OUT_OF_MEMORY");
  ASSERT_TRUE(core_->AgentEvents("agent-a", events).ok());
  // A replay (the agent reconnected before the acknowledgement) changes nothing.
  ASSERT_TRUE(core_->AgentEvents("agent-a", events).ok());

  EXPECT_THAT(Value(registry_, "evalctl_controller_events_applied_total"), Optional(4.0));
  EXPECT_THAT(Value(registry_, "evalctl_controller_event_apply_duration_seconds"), Optional(1.0));
  EXPECT_EQ(Finished("succeeded", "completed"), 1.0);
  EXPECT_EQ(Finished("failed", "out_of_memory"), 1.0);
  EXPECT_EQ(Finished("failed", "exit_code"), 0.0);
  EXPECT_THAT(Value(registry_, "evalctl_controller_resumes_total", {{"reason", "preempted"}}),
              Optional(1.0));

  // An ending event repeated for a task that is already terminal is not a second outcome.
  v1::Events again;
  *again.add_events() = Event(5, t1, v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_FAILED, 1);
  ASSERT_TRUE(core_->AgentEvents("agent-a", again).ok());
  EXPECT_EQ(Finished("failed", "out_of_memory"), 1.0);
  EXPECT_EQ(Finished("failed", "slurm_rejected"), 0.0);
  EXPECT_THAT(Value(registry_, "evalctl_controller_events_applied_total"), Optional(5.0));

  core_->AgentDisconnected("agent-a", &link);
  EXPECT_THAT(Value(registry_, "evalctl_controller_agents_connected", {{"cluster", "clusterA"}}),
              Optional(0.0));
}

TEST_F(ControllerMetricsTest, ReconnectingAgentIsCountedOnce) {
  NullLink first, second;
  Connect(&first);
  Connect(&second);  // a new stream replaces the old one
  EXPECT_THAT(Value(registry_, "evalctl_controller_agents_connected", {{"cluster", "clusterA"}}),
              Optional(1.0));
  core_->AgentDisconnected("agent-a", &first);  // the old stream's end does not count
  EXPECT_THAT(Value(registry_, "evalctl_controller_agents_connected", {{"cluster", "clusterA"}}),
              Optional(1.0));
}

TEST_F(ControllerMetricsTest, CancelBeforeDeliveryIsACancelledOutcome) {
  // A known agent that is disconnected: tasks wait for it, undelivered.
  NullLink link;
  Connect(&link);
  core_->AgentDisconnected("agent-a", &link);
  v1::SubmitInvocationRequest req;
  req.set_request_id("req-1");
  req.mutable_config()->set_yaml(kConfig);
  auto submitted = core_->Submit({"alice", false}, req);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ASSERT_TRUE(core_->Cancel({"alice", false}, submitted->invocation().id()).ok());
  EXPECT_EQ(Finished("cancelled", "requested"), 2.0);
  core_->RefreshMetrics();
  EXPECT_EQ(Tasks("cancelled"), 2.0);
  EXPECT_EQ(Tasks("pending"), 0.0);
}

TEST_F(ControllerMetricsTest, RpcObservationsAndWatchers) {
  {
    RpcObservation rpc(&metrics_, "evalctl.v1.EvalService", "GetTask");
    rpc.Done(grpc::StatusCode::NOT_FOUND);
    rpc.Done(grpc::StatusCode::OK);  // ignored: an RPC ends once
  }
  RpcObservation(nullptr, "evalctl.v1.EvalService", "GetTask").Done(grpc::StatusCode::OK);
  RpcObservation(&metrics_, "evalctl.v1.AgentService", "Connect").Done(grpc::StatusCode::CANCELLED);
  EXPECT_THAT(Value(registry_, "grpc_server_handled_total",
                    {{"grpc_service", "evalctl.v1.EvalService"},
                     {"grpc_method", "GetTask"},
                     {"grpc_code", "NotFound"}}),
              Optional(1.0));
  EXPECT_EQ(Value(registry_, "grpc_server_handled_total",
                  {{"grpc_service", "evalctl.v1.EvalService"},
                   {"grpc_method", "GetTask"},
                   {"grpc_code", "OK"}}),
            std::nullopt);
  EXPECT_THAT(Value(registry_, "grpc_server_handled_total",
                    {{"grpc_service", "evalctl.v1.AgentService"},
                     {"grpc_method", "Connect"},
                     {"grpc_code", "Canceled"}}),
              Optional(1.0));
  EXPECT_THAT(Value(registry_, "grpc_server_handling_seconds",
                    {{"grpc_service", "evalctl.v1.EvalService"}, {"grpc_method", "GetTask"}}),
              Optional(1.0));

  const uint64_t first = metrics_.WatcherOpened(0);
  const uint64_t second = metrics_.WatcherOpened(0);
  metrics_.WatcherClosed(second);
  EXPECT_THAT(Value(registry_, "evalctl_controller_watchers_open"), Optional(1.0));
  metrics_.WatcherClosed(first);
  EXPECT_THAT(Value(registry_, "evalctl_controller_watchers_open"), Optional(0.0));
}

TEST_F(ControllerMetricsTest, TasksByStateFollowTheStoreAcrossARestartAndAManualResume) {
  NullLink link;
  Connect(&link);
  const std::string inv = SubmitTwoTasks();
  ASSERT_FALSE(inv.empty());
  core_->RefreshMetrics();
  EXPECT_EQ(Tasks("pending"), 2.0);
  EXPECT_EQ(Tasks("running"), 0.0);

  v1::Events events;
  *events.add_events() =
      Event(1, inv + ".0", v1::TaskEvent::KIND_SUBMITTED, v1::TASK_STATE_QUEUED, 1);
  *events.add_events() =
      Event(2, inv + ".0", v1::TaskEvent::KIND_STATE_CHANGED, v1::TASK_STATE_RUNNING, 1);
  *events.add_events() =
      Event(3, inv + ".1", v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_FAILED, 1);
  ASSERT_TRUE(core_->AgentEvents("agent-a", events).ok());
  core_->RefreshMetrics();
  EXPECT_EQ(Tasks("pending"), 0.0);
  EXPECT_EQ(Tasks("queued"), 0.0);
  EXPECT_EQ(Tasks("running"), 1.0);
  EXPECT_EQ(Tasks("failed"), 1.0);

  // A restarted controller reads the same counts from the store, before any new event.
  core_->AgentDisconnected("agent-a", &link);
  prometheus::Registry fresh_registry;
  ControllerMetrics fresh(fresh_registry, "1.2.3");
  Open(&fresh);
  core_->RefreshMetrics();
  EXPECT_THAT(Value(fresh_registry, "evalctl_controller_tasks", {{"state", "running"}}),
              Optional(1.0));
  EXPECT_THAT(Value(fresh_registry, "evalctl_controller_tasks", {{"state", "failed"}}),
              Optional(1.0));
  EXPECT_THAT(Value(fresh_registry, "evalctl_controller_tasks", {{"state", "pending"}}),
              Optional(0.0));

  // A failed task resumed by a user leaves the failed count.
  Connect(&link);
  v1::Events resumed;
  *resumed.add_events() = Event(4, inv + ".1", v1::TaskEvent::KIND_RESUMED, v1::TASK_STATE_QUEUED,
                                2, v1::RESUME_REASON_MANUAL);
  ASSERT_TRUE(core_->AgentEvents("agent-a", resumed).ok());
  core_->RefreshMetrics();
  EXPECT_THAT(Value(fresh_registry, "evalctl_controller_tasks", {{"state", "failed"}}),
              Optional(0.0));
  EXPECT_THAT(Value(fresh_registry, "evalctl_controller_tasks", {{"state", "queued"}}),
              Optional(1.0));
  EXPECT_THAT(Value(fresh_registry, "evalctl_controller_resumes_total", {{"reason", "manual"}}),
              Optional(1.0));
  core_->AgentDisconnected("agent-a", &link);
  Open(&metrics_);  // the fixture's metrics outlive the core again
}

TEST_F(ControllerMetricsTest, QueueWaitAndRunTimeOncePerAttemptByCluster) {
  NullLink link;
  Connect(&link);
  const std::string inv = SubmitTwoTasks();
  const absl::Time t0 = absl::FromUnixSeconds(1800000000);
  auto attempt_event = [&](uint64_t seq, const std::string& task, v1::TaskEvent::Kind kind,
                           v1::TaskState state, int number, const std::string& slurm_state,
                           absl::Time submit, absl::Time start, absl::Time end) {
    v1::AgentEvent e = Event(seq, task, kind, state, number);
    v1::Attempt* a = e.mutable_task()->mutable_attempt();
    a->set_slurm_job_id(std::to_string(100 + number));
    a->set_slurm_state(slurm_state);
    if (submit != absl::InfinitePast()) *a->mutable_submit_time() = Ts(submit);
    if (start != absl::InfinitePast()) *a->mutable_start_time() = Ts(start);
    if (end != absl::InfinitePast()) *a->mutable_end_time() = Ts(end);
    return e;
  };
  const absl::Time none = absl::InfinitePast();
  const std::string t = inv + ".0";
  v1::Events events;
  *events.add_events() = attempt_event(1, t, v1::TaskEvent::KIND_SUBMITTED, v1::TASK_STATE_QUEUED,
                                       1, "PENDING", t0, none, none);
  *events.add_events() =
      attempt_event(2, t, v1::TaskEvent::KIND_STATE_CHANGED, v1::TASK_STATE_RUNNING, 1, "RUNNING",
                    t0, t0 + absl::Seconds(30), none);
  *events.add_events() = attempt_event(3, t, v1::TaskEvent::KIND_PROGRESS, v1::TASK_STATE_RUNNING,
                                       1, "RUNNING", t0, t0 + absl::Seconds(30), none);
  ASSERT_TRUE(core_->AgentEvents("agent-a", events).ok());
  const Labels cluster = {{"cluster", "clusterA"}};
  EXPECT_THAT(Value(registry_, "evalctl_controller_attempt_queue_wait_seconds", cluster),
              Optional(1.0));
  EXPECT_THAT(Sum(registry_, "evalctl_controller_attempt_queue_wait_seconds", cluster),
              Optional(DoubleNear(30, 0.001)));
  EXPECT_THAT(Value(registry_, "evalctl_controller_attempt_run_seconds", cluster), Optional(0.0));

  // The attempt times out after 60 s and is resumed; the second attempt starts 5 s after its
  // sbatch, ends at once, and the task succeeds. Replays change nothing.
  v1::Events more;
  *more.add_events() =
      attempt_event(4, t, v1::TaskEvent::KIND_STATE_CHANGED, v1::TASK_STATE_RESUMING, 1, "TIMEOUT",
                    t0, t0 + absl::Seconds(30), t0 + absl::Seconds(90));
  *more.add_events() = attempt_event(5, t, v1::TaskEvent::KIND_RESUMED, v1::TASK_STATE_QUEUED, 2,
                                     "PENDING", t0 + absl::Seconds(95), none, none);
  more.mutable_events(1)->mutable_task()->mutable_attempt()->set_resume_reason(
      v1::RESUME_REASON_TIMEOUT);
  *more.add_events() =
      attempt_event(6, t, v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_SUCCEEDED, 2, "COMPLETED",
                    t0 + absl::Seconds(95), t0 + absl::Seconds(100), t0 + absl::Seconds(100));
  ASSERT_TRUE(core_->AgentEvents("agent-a", more).ok());
  ASSERT_TRUE(core_->AgentEvents("agent-a", more).ok());
  EXPECT_THAT(Value(registry_, "evalctl_controller_attempt_queue_wait_seconds", cluster),
              Optional(2.0));
  EXPECT_THAT(Sum(registry_, "evalctl_controller_attempt_queue_wait_seconds", cluster),
              Optional(DoubleNear(35, 0.001)));
  EXPECT_THAT(Value(registry_, "evalctl_controller_attempt_run_seconds", cluster), Optional(2.0));
  EXPECT_THAT(Sum(registry_, "evalctl_controller_attempt_run_seconds", cluster),
              Optional(DoubleNear(60, 0.001)));
  EXPECT_THAT(Value(registry_, "evalctl_controller_resumes_total", {{"reason", "timeout"}}),
              Optional(1.0));
  EXPECT_EQ(Finished("succeeded", "completed"), 1.0);

  // A job cancelled while it waited (Slurm sets its start to its end) neither waited nor ran.
  v1::Events cancelled;
  *cancelled.add_events() =
      attempt_event(7, inv + ".1", v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_CANCELLED, 1,
                    "CANCELLED", t0, t0 + absl::Seconds(50), t0 + absl::Seconds(50));
  ASSERT_TRUE(core_->AgentEvents("agent-a", cancelled).ok());
  EXPECT_THAT(Value(registry_, "evalctl_controller_attempt_queue_wait_seconds", cluster),
              Optional(2.0));
  EXPECT_THAT(Value(registry_, "evalctl_controller_attempt_run_seconds", cluster), Optional(2.0));
  // Nobody asked evalctl to cancel it: it was cancelled in Slurm.
  EXPECT_EQ(Finished("cancelled", "cancelled_in_slurm"), 1.0);
}

TEST_F(ControllerMetricsTest, EveryStoreWriteTransactionIsTimed) {
  auto commits = [&](const std::string& operation) {
    return Value(registry_, "evalctl_controller_store_commit_duration_seconds",
                 {{"operation", operation}})
        .value_or(-1);
  };
  NullLink link;
  Connect(&link);  // upsert_agent
  EXPECT_EQ(commits("upsert_agent"), 1.0);
  const std::string inv = SubmitTwoTasks();  // create_invocation
  EXPECT_EQ(commits("create_invocation"), 1.0);
  v1::Events events;
  *events.add_events() =
      Event(1, inv + ".0", v1::TaskEvent::KIND_SUBMITTED, v1::TASK_STATE_QUEUED, 1);
  ASSERT_TRUE(core_->AgentEvents("agent-a", events).ok());  // apply_agent_events
  EXPECT_EQ(commits("apply_agent_events"), 1.0);
  EXPECT_EQ(commits("update_task"), 0.0);
  ASSERT_TRUE(core_->Cancel({"alice", false}, inv).ok());  // update_task, once per task
  EXPECT_EQ(commits("update_task"), 2.0);
  EXPECT_THAT(Value(registry_, "evalctl_controller_event_apply_duration_seconds"), Optional(1.0));
}

TEST_F(ControllerMetricsTest, OutcomesTheControllerDecides) {
  // The agent refuses a task: failed/agent_refused. The other waits for the agent, which does not
  // come back within agent_wait: failed/not_delivered.
  NullLink link;
  Connect(&link);
  const std::string inv = SubmitTwoTasks();
  auto stored = store_->UnacceptedTasks("agent-a");
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 2u);
  // Command ids start from the clock; the first SubmitTask got the smallest.
  const uint64_t first_command = static_cast<uint64_t>(absl::ToUnixMicros(clock_.Now()));
  v1::CommandResult refused;
  refused.set_command_id(first_command);
  refused.set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  refused.set_message("run_dir is not writable");
  core_->AgentCommandResult("agent-a", refused);
  EXPECT_EQ(Finished("failed", "agent_refused"), 1.0);

  core_->AgentDisconnected("agent-a", &link);
  clock_.Advance(ControllerOptions{}.agent_wait + absl::Seconds(1));
  core_->Tick();
  EXPECT_EQ(Finished("failed", "not_delivered"), 1.0);
  core_->RefreshMetrics();
  EXPECT_EQ(Tasks("failed"), 2.0);
}

TEST_F(ControllerMetricsTest, CancelRequestedThroughEvalctlIsRequested) {
  NullLink link;
  Connect(&link);
  const std::string inv = SubmitTwoTasks();
  v1::Events accepted;
  *accepted.add_events() =
      Event(1, inv + ".0", v1::TaskEvent::KIND_SUBMITTED, v1::TASK_STATE_QUEUED, 1);
  *accepted.add_events() =
      Event(2, inv + ".1", v1::TaskEvent::KIND_SUBMITTED, v1::TASK_STATE_QUEUED, 1);
  ASSERT_TRUE(core_->AgentEvents("agent-a", accepted).ok());
  ASSERT_TRUE(core_->Cancel({"alice", false}, inv).ok());  // the agent has them: a request
  EXPECT_EQ(Finished("cancelled", "requested"), 0.0);
  v1::Events ended;
  *ended.add_events() =
      Event(3, inv + ".0", v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_CANCELLED, 1);
  ended.mutable_events(0)->mutable_task()->mutable_attempt()->set_slurm_job_id("5");
  ended.mutable_events(0)->mutable_task()->mutable_attempt()->set_slurm_state("CANCELLED");
  ASSERT_TRUE(core_->AgentEvents("agent-a", ended).ok());
  EXPECT_EQ(Finished("cancelled", "requested"), 1.0);
  EXPECT_EQ(Finished("cancelled", "cancelled_in_slurm"), 0.0);
}

TEST(EndReasonTest, FromTheEndingsStructuredFields) {
  auto ending = [](v1::TaskState state, const std::string& job, const std::string& slurm_state,
                   std::optional<int> exit_code = std::nullopt) {
    v1::TaskEvent e;
    e.set_kind(v1::TaskEvent::KIND_FINISHED);
    e.set_state(state);
    e.set_reason("free text that must never matter");
    e.mutable_attempt()->set_number(1);
    e.mutable_attempt()->set_slurm_job_id(job);
    e.mutable_attempt()->set_slurm_state(slurm_state);
    if (exit_code) e.mutable_attempt()->set_exit_code(*exit_code);
    return e;
  };
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_SUCCEEDED, "1", "COMPLETED"), false),
            EndReason::kCompleted);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_FAILED, "1", "FAILED", 1), false),
            EndReason::kExitCode);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_FAILED, "1", "OUT_OF_MEMORY"), false),
            EndReason::kOutOfMemory);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_FAILED, "1", "DEADLINE"), false),
            EndReason::kDeadline);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_FAILED, "1", "COMPLETED"), false),
            EndReason::kResultsUnreadable);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_FAILED, "", ""), false), EndReason::kSlurmRejected);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_FAILED, "1", "SOMETHING_NEW"), false),
            EndReason::kOther);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_CANCELLED, "1", "CANCELLED"), true),
            EndReason::kRequested);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_CANCELLED, "", ""), true), EndReason::kRequested);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_CANCELLED, "1", "CANCELLED by 1000"), false),
            EndReason::kCancelledInSlurm);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_BUDGET_EXHAUSTED, "1", "TIMEOUT"), false),
            EndReason::kTimeout);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_BUDGET_EXHAUSTED, "1", "FAILED", 123), false),
            EndReason::kTimeout);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_BUDGET_EXHAUSTED, "1", "PREEMPTED"), false),
            EndReason::kPreempted);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_BUDGET_EXHAUSTED, "1", "NODE_FAIL"), false),
            EndReason::kNodeFail);
  EXPECT_EQ(EndReasonOf(ending(v1::TASK_STATE_BUDGET_EXHAUSTED, "1", "BOOT_FAIL"), false),
            EndReason::kBootFail);
  // Every reason is one of its state's: the label set stays what the metrics pre-declare.
  for (v1::TaskState state : {v1::TASK_STATE_SUCCEEDED, v1::TASK_STATE_FAILED,
                              v1::TASK_STATE_CANCELLED, v1::TASK_STATE_BUDGET_EXHAUSTED}) {
    for (const char* slurm : {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "X", ""}) {
      const EndReason r = EndReasonOf(ending(state, "1", slurm), false);
      std::vector<EndReason> allowed = EndReasonsOf(state);
      EXPECT_NE(std::find(allowed.begin(), allowed.end(), r), allowed.end())
          << v1::TaskState_Name(state) << " " << slurm << " " << EndReasonName(r);
    }
  }
}

TEST_F(ControllerMetricsTest, WatcherLagIsTheFurthestBehindOpenWatcher) {
  NullLink link;
  Connect(&link);
  SubmitTwoTasks();  // two events in the log
  core_->RefreshMetrics();
  EXPECT_THAT(Value(registry_, "evalctl_controller_watcher_max_lag_events"), Optional(0.0));

  const uint64_t slow = metrics_.WatcherOpened(0);  // replays from the start
  const uint64_t caught_up = metrics_.WatcherOpened(0);
  metrics_.WatcherAt(caught_up, core_->LastEventSequence());
  core_->RefreshMetrics();
  EXPECT_THAT(Value(registry_, "evalctl_controller_watcher_max_lag_events"), Optional(2.0));
  SubmitTwoTasks("req-2");  // two more events nobody has read
  core_->RefreshMetrics();
  EXPECT_THAT(Value(registry_, "evalctl_controller_watcher_max_lag_events"), Optional(4.0));
  metrics_.WatcherAt(slow, 3);
  metrics_.WatcherAt(slow, 1);  // positions only move forward
  core_->RefreshMetrics();
  EXPECT_THAT(Value(registry_, "evalctl_controller_watcher_max_lag_events"), Optional(2.0));
  metrics_.WatcherClosed(caught_up);
  metrics_.WatcherClosed(slow);
  core_->RefreshMetrics();
  EXPECT_THAT(Value(registry_, "evalctl_controller_watcher_max_lag_events"), Optional(0.0));
}

TEST(LabelsTest, EnumAndCodeSpellings) {
  EXPECT_EQ(StateLabel(v1::TASK_STATE_BUDGET_EXHAUSTED), "budget_exhausted");
  EXPECT_EQ(ResumeReasonLabel(v1::RESUME_REASON_SLURM_REQUEUE), "slurm_requeue");
  EXPECT_EQ(GrpcCodeLabel(grpc::StatusCode::DEADLINE_EXCEEDED), "DeadlineExceeded");
  EXPECT_EQ(GrpcCodeLabel(grpc::StatusCode::OK), "OK");
}

}  // namespace
}  // namespace evalctl::controller
