// AgentRuntime over FakeSlurm, connected to a stand-in controller in this process (a real gRPC
// stream on 127.0.0.1): how the controller's commands become Slurm calls and how soon their
// outcome reaches the controller.
#include "agent/runtime/agent_runtime.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/runtime/testing/stand_in_controller.h"
#include "agent/slurm/fake_slurm.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/wire_limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::agent {
namespace {

using ::testing::SizeIs;

// FakeSlurm whose view of a cancelled job lags behind, as on a real cluster where squeue has
// already forgotten the job and sacct still shows it PENDING: for `lag` after the first Cancel of
// a job, Queue leaves it out and Accounting shows it as it was before. Records every Cancel call.
class LaggingCancelSlurm : public SlurmClient {
 public:
  LaggingCancelSlurm(SlurmClient* inner, absl::Duration lag) : inner_(inner), lag_(lag) {}

  absl::StatusOr<std::string> Submit(const SubmitRequest& r) override { return inner_->Submit(r); }
  absl::StatusOr<std::vector<JobInfo>> Queue(const std::vector<std::string>& ids) override {
    auto jobs = inner_->Queue(ids);
    if (!jobs.ok()) return jobs;
    absl::MutexLock lock(&mu_);
    queue_calls_.push_back(absl::Now());
    std::vector<JobInfo> out;
    for (JobInfo& j : *jobs) {
      if (!StaleLocked(j.job_id)) out.push_back(std::move(j));
    }
    return out;
  }
  absl::StatusOr<std::vector<JobInfo>> Accounting(const std::vector<std::string>& ids) override {
    auto jobs = inner_->Accounting(ids);
    if (!jobs.ok()) return jobs;
    absl::MutexLock lock(&mu_);
    for (JobInfo& j : *jobs) {
      if (StaleLocked(j.job_id)) j = before_cancel_[j.job_id].info;
    }
    return jobs;
  }
  absl::StatusOr<std::vector<JobInfo>> FindByName(const std::vector<std::string>& names,
                                                  absl::Time since) override {
    return inner_->FindByName(names, since);
  }
  absl::StatusOr<JobInfo> Show(const std::string& id) override { return inner_->Show(id); }
  absl::Status Cancel(const std::vector<std::string>& ids) override {
    auto before = inner_->Accounting(ids);
    {
      absl::MutexLock lock(&mu_);
      cancel_calls_.push_back(ids);
      if (before.ok()) {
        for (const JobInfo& j : *before) {
          before_cancel_.try_emplace(j.job_id, Snapshot{j, absl::Now() + lag_});
        }
      }
    }
    return inner_->Cancel(ids);
  }

  std::vector<std::vector<std::string>> cancel_calls() {
    absl::MutexLock lock(&mu_);
    return cancel_calls_;
  }
  std::vector<absl::Time> queue_calls() {
    absl::MutexLock lock(&mu_);
    return queue_calls_;
  }

 private:
  struct Snapshot {
    JobInfo info;
    absl::Time until;
  };
  bool StaleLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = before_cancel_.find(id);
    return it != before_cancel_.end() && absl::Now() < it->second.until;
  }

  SlurmClient* inner_;
  const absl::Duration lag_;
  absl::Mutex mu_;
  std::map<std::string, Snapshot> before_cancel_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<std::string>> cancel_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> queue_calls_ ABSL_GUARDED_BY(mu_);
};

class AgentRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/agent_runtime_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(root_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.SetMaxReceiveMessageSize(static_cast<int>(wire::kControllerMaxReceiveBytes));
    builder.RegisterService(&controller_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  void TearDown() override {
    stop_ = true;
    if (agent_thread_.joinable()) agent_thread_.join();
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    }
    std::filesystem::remove_all(root_);
  }

  void StartAgent(SlurmClient* slurm, AgentOptions options) {
    auto journal = Journal::Open(root_ + "/agent");
    ASSERT_TRUE(journal.ok()) << journal.status();
    journal_ = *std::move(journal);
    options.controller = address_;
    options.cluster = "test";
    options.unix_user = "tester";
    runtime_ = std::make_unique<AgentRuntime>(options, slurm, journal_.get(), &clock_);
    agent_thread_ = std::thread([this] {
      absl::Status s = runtime_->Run(&stop_);
      EXPECT_TRUE(s.ok()) << s;
    });
    ASSERT_TRUE(controller_.WaitConnected(absl::Seconds(30)));
  }

  v1::Command Submit(int index) {
    v1::Command c;
    v1::SubmitTask* t = c.mutable_submit_task();
    t->set_task_id("00000000000000aa." + std::to_string(index));
    t->set_invocation_id("00000000000000aa");
    t->set_name("task" + std::to_string(index));
    t->mutable_job()->set_script("#!/bin/bash\necho hi\n");
    t->mutable_job()->set_run_dir(root_ + "/runs/task" + std::to_string(index));
    t->mutable_job()->set_job_name_prefix("acct-sub.task" + std::to_string(index));
    return c;
  }
  v1::Command CancelOf(const std::string& task_id) {
    v1::Command c;
    c.mutable_cancel_task()->set_task_id(task_id);
    return c;
  }

  std::string root_;
  std::string address_;
  RealClock clock_;
  StandInController controller_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<AgentRuntime> runtime_;
  std::atomic<bool> stop_{false};
  std::thread agent_thread_;
};

// Events go to the controller in messages it accepts: three events of 3 MiB each (9 MiB, over the
// controller's 8 MiB limit in one message) arrive, each in a message of its own, instead of one
// message that the controller refuses after every reconnect.
TEST_F(AgentRuntimeTest, EventMessagesStayWithinWhatTheControllerAccepts) {
  {
    auto journal = Journal::Open(root_ + "/agent");
    ASSERT_TRUE(journal.ok()) << journal.status();
    std::vector<v1::AgentEvent> events(3);
    for (int i = 0; i < 3; ++i) {
      events[i].mutable_task()->set_task_id("00000000000000aa." + std::to_string(i));
      events[i].mutable_task()->set_reason(std::string(3 << 20, static_cast<char>('a' + i)));
    }
    ASSERT_TRUE((*journal)->Commit({}, events).ok());
  }
  FakeSlurm slurm(&clock_);
  StartAgent(&slurm, AgentOptions{});
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (controller_.arrivals().size() < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  std::vector<StandInController::Arrival> arrivals = controller_.arrivals();
  ASSERT_EQ(arrivals.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(arrivals[i].event.reason().size(), size_t{3} << 20);
    EXPECT_EQ(arrivals[i].event.reason()[0], 'a' + i);
  }
  stop_ = true;  // before `slurm` goes out of scope
  agent_thread_.join();
}

// A kill of many tasks arrives as one CancelTask per task. The agent gathers them into one
// scancel, and its next tracking cycles come at the minimum interval again, however far it had
// backed off: the cancellations reach the controller within about a second, not after the old
// interval (here 3.2 s) has passed once more.
TEST_F(AgentRuntimeTest, CancelsOfAKillAreOneScancelAndShowQuicklyAfterAQuietSpell) {
  constexpr int kTasks = 20;
  const absl::Duration max_interval = absl::Milliseconds(3200);
  FakeSlurm fake(&clock_, FakeSlurmOptions{.default_plan = {.pending_for = absl::InfiniteDuration(),
                                                            .run_for = absl::InfiniteDuration()}});
  LaggingCancelSlurm slurm(&fake, absl::Milliseconds(500));
  AgentOptions options;
  options.min_interval = absl::Milliseconds(100);
  options.max_interval = max_interval;
  StartAgent(&slurm, options);

  std::vector<v1::Command> submits;
  std::vector<std::string> task_ids;
  for (int i = 0; i < kTasks; ++i) {
    submits.push_back(Submit(i));
    task_ids.push_back(submits.back().submit_task().task_id());
  }
  std::vector<v1::CommandResult> results;
  ASSERT_TRUE(controller_.WaitResults(controller_.Send(submits), absl::Seconds(30), &results));
  for (const v1::CommandResult& r : results) ASSERT_EQ(r.code(), 0) << r.message();

  // Nothing moves (the jobs pend): the interval doubles up to its maximum.
  const absl::Time quiet_deadline = absl::Now() + absl::Seconds(30);
  bool backed_off = false;
  while (!backed_off && absl::Now() < quiet_deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    std::vector<absl::Time> calls = slurm.queue_calls();
    backed_off = calls.size() >= 2 &&
                 calls.back() - calls[calls.size() - 2] >= max_interval - absl::Milliseconds(200);
  }
  ASSERT_TRUE(backed_off) << "the tracking interval never reached its maximum";
  // Right after a cycle, so that the next would be a whole interval away.
  const size_t cycles = slurm.queue_calls().size();
  while (slurm.queue_calls().size() == cycles) absl::SleepFor(absl::Milliseconds(5));
  absl::SleepFor(absl::Milliseconds(50));

  std::vector<v1::Command> cancels;
  for (const std::string& id : task_ids) cancels.push_back(CancelOf(id));
  const absl::Time kill = absl::Now();
  ASSERT_TRUE(controller_.WaitResults(controller_.Send(cancels), absl::Seconds(10), &results));
  for (const v1::CommandResult& r : results) EXPECT_EQ(r.code(), 0) << r.message();

  absl::Time all_cancelled = absl::InfiniteFuture();
  const absl::Time deadline = kill + absl::Seconds(20);
  while (all_cancelled == absl::InfiniteFuture() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    all_cancelled = controller_.AllReached(task_ids, v1::TASK_STATE_CANCELLED);
  }
  ASSERT_NE(all_cancelled, absl::InfiniteFuture()) << "not every task was reported cancelled";
  std::cout << "kill -> every task CANCELLED at the controller: "
            << absl::FormatDuration(absl::Trunc(all_cancelled - kill, absl::Milliseconds(1)))
            << "; scancel calls: " << slurm.cancel_calls().size() << "\n";
  EXPECT_LT(all_cancelled - kill, absl::Milliseconds(2000))
      << "cancelled after " << absl::FormatDuration(all_cancelled - kill);

  // Every scancel named all the jobs: the one at the kill, and the repeats of the cycles that did
  // not see the endings yet (about 3), never one per task.
  std::vector<std::vector<std::string>> calls = slurm.cancel_calls();
  ASSERT_FALSE(calls.empty());
  for (const auto& ids : calls) EXPECT_THAT(ids, SizeIs(kTasks));
  EXPECT_LT(calls.size(), 10u);
}

// A job that starts writes its phase file. The agent checks the files between cycles and runs
// its next cycle at once: the start reaches the controller within about a second although the
// next cycle was 10 s away, and the checks themselves ask Slurm nothing.
TEST_F(AgentRuntimeTest, AJobWritingItsPhaseFileBringsTheNextCycleForward) {
  FakeSlurm fake(&clock_, FakeSlurmOptions{.default_plan = {.pending_for = absl::Seconds(1),
                                                            .run_for = absl::InfiniteDuration()}});
  LaggingCancelSlurm slurm(&fake, absl::ZeroDuration());
  AgentOptions options;
  options.min_interval = absl::Seconds(10);
  options.max_interval = absl::Seconds(60);
  options.phase_check_interval = absl::Milliseconds(200);
  StartAgent(&slurm, options);

  const v1::Command submit = Submit(0);
  const std::string task_id = submit.submit_task().task_id();
  const std::string run_dir = submit.submit_task().job().run_dir();
  std::vector<v1::CommandResult> results;
  ASSERT_TRUE(controller_.WaitResults(controller_.Send({submit}), absl::Seconds(30), &results));
  ASSERT_EQ(results.at(0).code(), 0) << results.at(0).message();
  const size_t cycles = slurm.queue_calls().size();

  // The job runs in Slurm after 1 s but has written nothing: no cycle, no Slurm call.
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(slurm.queue_calls().size(), cycles);
  EXPECT_EQ(controller_.AllReached({task_id}, v1::TASK_STATE_RUNNING), absl::InfiniteFuture());

  // The job script's first act.
  std::filesystem::create_directories(run_dir + "/.evalctl");
  std::ofstream(run_dir + "/.evalctl/phase") << "starting\n";
  const absl::Time written = absl::Now();
  absl::Time running = absl::InfiniteFuture();
  while (running == absl::InfiniteFuture() && absl::Now() < written + absl::Seconds(6)) {
    absl::SleepFor(absl::Milliseconds(20));
    running = controller_.AllReached({task_id}, v1::TASK_STATE_RUNNING);
  }
  ASSERT_NE(running, absl::InfiniteFuture()) << "the start was not reported before the cycle due";
  std::cout << "phase file written -> RUNNING at the controller: "
            << absl::FormatDuration(absl::Trunc(running - written, absl::Milliseconds(1))) << "\n";
  EXPECT_EQ(slurm.queue_calls().size(), cycles + 1);
}

}  // namespace
}  // namespace evalctl::agent
