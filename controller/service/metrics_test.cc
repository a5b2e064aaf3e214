#include "controller/service/metrics.h"

#include <unistd.h>

#include <filesystem>
#include <optional>

#include "controller/core/controller_core.h"
#include "controller/core/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace evalctl::controller {
namespace {

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
    auto s = SqliteStore::Open(dir_ + "/controller.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    core_ = std::make_unique<ControllerCore>(ControllerOptions{}, store_.get(), &clock_, &metrics_);
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
  for (const char* state : {"succeeded", "failed", "cancelled", "budget_exhausted"}) {
    EXPECT_THAT(Value(registry_, "evalctl_controller_tasks_finished_total", {{"state", state}}),
                Optional(0.0))
        << state;
  }
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
  ASSERT_TRUE(core_->AgentEvents("agent-a", events).ok());
  // A replay (the agent reconnected before the acknowledgement) changes nothing.
  ASSERT_TRUE(core_->AgentEvents("agent-a", events).ok());

  EXPECT_THAT(Value(registry_, "evalctl_controller_events_applied_total"), Optional(4.0));
  EXPECT_THAT(Value(registry_, "evalctl_controller_event_apply_duration_seconds"), Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_controller_tasks_finished_total", {{"state", "succeeded"}}),
              Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_controller_tasks_finished_total", {{"state", "failed"}}),
              Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_controller_resumes_total", {{"reason", "preempted"}}),
              Optional(1.0));

  // An ending event repeated for a task that is already terminal is not a second outcome.
  v1::Events again;
  *again.add_events() = Event(5, t1, v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_FAILED, 1);
  ASSERT_TRUE(core_->AgentEvents("agent-a", again).ok());
  EXPECT_THAT(Value(registry_, "evalctl_controller_tasks_finished_total", {{"state", "failed"}}),
              Optional(1.0));
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
  EXPECT_THAT(Value(registry_, "evalctl_controller_tasks_finished_total", {{"state", "cancelled"}}),
              Optional(2.0));
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

  metrics_.WatcherOpened();
  metrics_.WatcherOpened();
  metrics_.WatcherClosed();
  EXPECT_THAT(Value(registry_, "evalctl_controller_watchers_open"), Optional(1.0));
}

TEST(LabelsTest, EnumAndCodeSpellings) {
  EXPECT_EQ(StateLabel(v1::TASK_STATE_BUDGET_EXHAUSTED), "budget_exhausted");
  EXPECT_EQ(ResumeReasonLabel(v1::RESUME_REASON_SLURM_REQUEUE), "slurm_requeue");
  EXPECT_EQ(GrpcCodeLabel(grpc::StatusCode::DEADLINE_EXCEEDED), "DeadlineExceeded");
  EXPECT_EQ(GrpcCodeLabel(grpc::StatusCode::OK), "OK");
}

}  // namespace
}  // namespace evalctl::controller
