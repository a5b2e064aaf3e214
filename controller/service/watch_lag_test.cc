// The watch stream feeds evalctl_controller_watcher_max_lag_events. Over real gRPC on loopback
// (EvalServiceImpl on a SQLite store): a watcher that does not read falls behind the event log,
// it is back at 0 once it has read everything, and events of invocations it does not watch do not
// count against it.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/thread_pool.h"
#include "controller/core/controller_core.h"
#include "controller/core/sqlite_store.h"
#include "controller/service/metrics.h"
#include "controller/service/services.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace evalctl::controller {
namespace {

// An agent link that drops what it is sent: tasks are handed to it and never heard of again.
class NullLink : public AgentLink {
 public:
  void Send(v1::ControllerMessage) override {}
};

// An invocation of `tasks` tasks on clusterA.
std::string Config(int tasks) {
  std::string yaml = R"(defaults:
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
)";
  for (int i = 0; i < tasks; ++i) {
    absl::StrAppend(&yaml, "    - name: task", i, "\n      command: echo ", i, "\n");
  }
  return yaml;
}

class WatchLagTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/watch_lag_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto store = SqliteStore::Open(dir_ + "/controller.db", &metrics_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    core_ = std::make_unique<ControllerCore>(ControllerOptions{}, store_.get(), &clock_, &metrics_);
    v1::Register reg;
    reg.set_agent_id("agent-a");
    reg.set_cluster("clusterA");
    reg.set_unix_user("alice");
    ASSERT_TRUE(core_->AgentConnected(reg, &link_).ok());
    service_ = std::make_unique<EvalServiceImpl>(core_.get(), &auth_, &pool_, &metrics_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    // A small receive window without growth: the server can get only a few events ahead of a
    // client that does not read.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
    stub_ = v1::EvalService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args));
  }
  void TearDown() override {
    server_->Shutdown();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string Submit(const std::string& request_id, int tasks) {
    v1::SubmitInvocationRequest req;
    req.set_request_id(request_id);
    req.mutable_config()->set_yaml(Config(tasks));
    auto submitted = core_->Submit({"alice", false}, req);
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    return submitted.ok() ? submitted->invocation().id() : "";
  }

  struct Watch {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::WatchInvocationResponse>> reader;
  };
  std::unique_ptr<Watch> OpenWatch(const std::string& invocation_id) {
    auto watch = std::make_unique<Watch>();
    watch->context.AddMetadata("x-evalctl-user", "alice");
    watch->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::WatchInvocationRequest req;
    req.set_id(invocation_id);
    watch->reader = stub_->WatchInvocation(&watch->context, req);
    return watch;
  }

  // The gauge as a scrape sees it (the binary runs RefreshMetrics before each scrape).
  double Lag() {
    core_->RefreshMetrics();
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name == "evalctl_controller_watcher_max_lag_events") {
        return family.metric.at(0).gauge.value;
      }
    }
    ADD_FAILURE() << "no evalctl_controller_watcher_max_lag_events";
    return -1;
  }
  // Polls until `done(Lag())` holds or 10 s pass; returns the last value read.
  template <typename Pred>
  double LagUntil(Pred done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    double lag = Lag();
    while (!done(lag) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      lag = Lag();
    }
    return lag;
  }
  double Watchers() {
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name == "evalctl_controller_watchers_open") return family.metric.at(0).gauge.value;
    }
    return -1;
  }

  prometheus::Registry registry_;
  ControllerMetrics metrics_{registry_, "test"};
  std::string dir_;
  FakeClock clock_;
  ThreadPool pool_{4, "watch-lag"};
  InsecureAuthenticator auth_;
  NullLink link_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<ControllerCore> core_;
  std::unique_ptr<EvalServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::EvalService::Stub> stub_;
};

TEST_F(WatchLagTest, AWatcherThatDoesNotReadLagsAndCatchesUpWhenItReads) {
  const std::string id = Submit("big", 2000);
  const uint64_t head = core_->LastEventSequence();
  ASSERT_GE(head, 2000u);
  EXPECT_EQ(Lag(), 0);  // no watchers

  auto watch = OpenWatch(id);
  // The stream is open but nothing is read: the server is stopped by flow control well before
  // the end of the log.
  const double behind = LagUntil([](double lag) { return lag > 0; });
  EXPECT_GT(behind, 0);
  EXPECT_LE(behind, static_cast<double>(head));
  EXPECT_EQ(Watchers(), 1);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_GT(Lag(), 0) << "a watcher that reads nothing cannot have caught up";

  // Read every event there is; the watcher is then at the head.
  v1::WatchInvocationResponse event;
  uint64_t last = 0;
  while (last < head && watch->reader->Read(&event)) last = event.sequence();
  EXPECT_EQ(last, head);
  EXPECT_EQ(LagUntil([](double lag) { return lag == 0; }), 0);

  watch->context.TryCancel();
  (void)watch->reader->Finish();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Watchers() != 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(Watchers(), 0);
  EXPECT_EQ(Lag(), 0);
}

TEST_F(WatchLagTest, EventsOfOtherInvocationsDoNotCountAgainstAWatcher) {
  const std::string watched = Submit("watched", 2);
  auto watch = OpenWatch(watched);
  v1::WatchInvocationResponse event;
  uint64_t last = 0;
  while (last < core_->LastEventSequence() && watch->reader->Read(&event)) {
    last = event.sequence();
  }
  EXPECT_EQ(LagUntil([](double lag) { return lag == 0; }), 0);

  // Another invocation's events wake the watcher, which finds nothing of its own in them.
  Submit("other", 500);
  EXPECT_EQ(LagUntil([](double lag) { return lag == 0; }), 0);

  watch->context.TryCancel();
  (void)watch->reader->Finish();
}

}  // namespace
}  // namespace evalctl::controller
