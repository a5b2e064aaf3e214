// AgentRuntime over FakeSlurm, connected to a stand-in controller in this process (a real gRPC
// stream on 127.0.0.1): how the controller's commands become Slurm calls and how soon their
// outcome reaches the controller. The agent runs on a FakeClock: the tests move its time on once
// its threads wait for it, so that what happens when is exact and no test sleeps for a schedule.
#include "agent/runtime/agent_runtime.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/runtime/testing/stand_in_controller.h"
#include "agent/slurm/fake_slurm.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/testing/wait_for.h"
#include "common/wire_limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::agent {
namespace {

using ::evalctl::testing::StaysTrueFor;
using ::evalctl::testing::WaitFor;
using ::testing::ElementsAre;
using ::testing::SizeIs;

// FakeSlurm whose view of a cancelled job lags behind, as on a real cluster where squeue has
// already forgotten the job and sacct still shows it PENDING: for `lag` after the first Cancel of
// a job, Queue leaves it out and Accounting shows it as it was before. Records every Cancel call,
// and when (on `clock`) each Queue call came.
class LaggingCancelSlurm : public SlurmClient {
 public:
  LaggingCancelSlurm(SlurmClient* inner, Clock* clock, absl::Duration lag)
      : inner_(inner), clock_(clock), lag_(lag) {}

  absl::StatusOr<std::string> Submit(const SubmitRequest& r) override { return inner_->Submit(r); }
  absl::StatusOr<std::vector<JobInfo>> Queue(const std::vector<std::string>& ids) override {
    auto jobs = inner_->Queue(ids);
    if (!jobs.ok()) return jobs;
    absl::MutexLock lock(&mu_);
    queue_calls_.push_back(clock_->Now());
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
          before_cancel_.try_emplace(j.job_id, Snapshot{j, clock_->Now() + lag_});
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
    return it != before_cancel_.end() && clock_->Now() < it->second.until;
  }

  SlurmClient* inner_;
  Clock* clock_;
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
    auto journal = Journal::Open(root_ + "/agent", &clock_);
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

  // Moves the fake time on in `step`s, each once the agent's core loop and sender wait on the
  // clock again (so they have acted on the step before), until `done` holds or `limit` has passed;
  // whether `done` held.
  bool AdvanceUntil(const std::function<bool()>& done, absl::Duration limit, absl::Duration step) {
    const absl::Time end = clock_.Now() + limit;
    while (true) {
      if (!clock_.AwaitWaiters(kAgentWaiters)) {
        ADD_FAILURE() << "the agent's core loop and sender do not wait on the clock";
        return false;
      }
      if (done()) return true;
      if (clock_.Now() >= end) return false;
      clock_.Advance(step);
    }
  }
  void AdvanceBy(absl::Duration d, absl::Duration step) {
    AdvanceUntil([] { return false; }, d, step);
  }

  // The tasks whose state in the agent's journal is `state`.
  int TasksIn(v1::TaskState state) {
    auto tasks = journal_->LoadTasks();
    if (!tasks.ok()) return -1;
    int n = 0;
    for (const JournaledTask& t : *tasks) n += t.status.state() == state ? 1 : 0;
    return n;
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

  // What waits on the clock while the agent is connected and has nothing to do: the core loop
  // (for its next cycle or phase check) and the sender (for news or the next heartbeat).
  static constexpr int kAgentWaiters = 2;

  std::string root_;
  std::string address_;
  FakeClock clock_;
  StandInController controller_{&clock_};
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
    auto journal = Journal::Open(root_ + "/agent", &clock_);
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
  // Sent at connection, with no time passing.
  WaitFor([&] { return controller_.arrivals().size() >= 3; }, absl::Seconds(30));
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
  LaggingCancelSlurm slurm(&fake, &clock_, absl::Milliseconds(500));
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

  // Nothing moves (the jobs pend): the interval doubles up to its maximum. It stops right after a
  // cycle, so that the next is a whole interval away.
  const bool backed_off = AdvanceUntil(
      [&] {
        std::vector<absl::Time> calls = slurm.queue_calls();
        return calls.size() >= 2 && calls.back() - calls[calls.size() - 2] == max_interval;
      },
      absl::Seconds(30), absl::Milliseconds(50));
  ASSERT_TRUE(backed_off) << "the tracking interval never reached its maximum";

  std::vector<v1::Command> cancels;
  for (const std::string& id : task_ids) cancels.push_back(CancelOf(id));
  const absl::Time kill = clock_.Now();
  const std::vector<uint64_t> cancel_ids = controller_.Send(cancels);
  // While no time passes, the agent gathers the cancels as they come: nothing reaches Slurm.
  EXPECT_TRUE(StaysTrueFor([&] { return slurm.cancel_calls().empty(); }, absl::Milliseconds(200)));
  // Once none came for 10 ms, all of them go to one scancel.
  ASSERT_TRUE(AdvanceUntil([&] { return !slurm.cancel_calls().empty(); }, absl::Seconds(1),
                           absl::Milliseconds(5)));
  EXPECT_THAT(slurm.cancel_calls(), ElementsAre(SizeIs(kTasks)));
  ASSERT_TRUE(controller_.WaitResults(cancel_ids, absl::Seconds(10), &results));
  for (const v1::CommandResult& r : results) EXPECT_EQ(r.code(), 0) << r.message();

  // Cycles at the minimum interval see the endings once Slurm shows them (after 500 ms).
  ASSERT_TRUE(AdvanceUntil([&] { return TasksIn(v1::TASK_STATE_CANCELLED) == kTasks; },
                           absl::Seconds(20), absl::Milliseconds(10)))
      << "not every task was cancelled";
  ASSERT_TRUE(WaitFor(
      [&] {
        return controller_.AllReached(task_ids, v1::TASK_STATE_CANCELLED) != absl::InfiniteFuture();
      },
      absl::Seconds(30)))
      << "not every task was reported cancelled";
  const absl::Time all_cancelled = controller_.AllReached(task_ids, v1::TASK_STATE_CANCELLED);
  std::cout << "kill -> every task CANCELLED at the controller: "
            << absl::FormatDuration(all_cancelled - kill)
            << "; scancel calls: " << slurm.cancel_calls().size() << "\n";
  EXPECT_LT(all_cancelled - kill, absl::Milliseconds(1000))
      << "cancelled after " << absl::FormatDuration(all_cancelled - kill);

  // Every scancel named all the jobs: the one at the kill, and the repeats of the cycles that did
  // not see the endings yet (one per 100 ms of Slurm's lag), never one per task.
  std::vector<std::vector<std::string>> calls = slurm.cancel_calls();
  ASSERT_FALSE(calls.empty());
  for (const auto& ids : calls) EXPECT_THAT(ids, SizeIs(kTasks));
  EXPECT_LT(calls.size(), 10u);
}

// A job that starts writes its phase file. The agent checks the files between cycles and runs
// its next cycle at once: the start reaches the controller within a phase check interval although
// the next cycle was 10 s away, and the checks themselves ask Slurm nothing.
TEST_F(AgentRuntimeTest, AJobWritingItsPhaseFileBringsTheNextCycleForward) {
  FakeSlurm fake(&clock_, FakeSlurmOptions{.default_plan = {.pending_for = absl::Seconds(1),
                                                            .run_for = absl::InfiniteDuration()}});
  LaggingCancelSlurm slurm(&fake, &clock_, absl::ZeroDuration());
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
  AdvanceBy(absl::Seconds(2), absl::Milliseconds(50));
  EXPECT_EQ(slurm.queue_calls().size(), cycles);
  EXPECT_EQ(controller_.AllReached({task_id}, v1::TASK_STATE_RUNNING), absl::InfiniteFuture());

  // The job script's first act.
  std::filesystem::create_directories(run_dir + "/.evalctl");
  std::ofstream(run_dir + "/.evalctl/phase") << "starting\n";
  const absl::Time written = clock_.Now();
  ASSERT_TRUE(AdvanceUntil([&] { return slurm.queue_calls().size() > cycles; }, absl::Seconds(6),
                           absl::Milliseconds(50)))
      << "no cycle came before the one due";
  ASSERT_TRUE(WaitFor(
      [&] {
        return controller_.AllReached({task_id}, v1::TASK_STATE_RUNNING) != absl::InfiniteFuture();
      },
      absl::Seconds(30)))
      << "the start was not reported";
  const absl::Time running = controller_.AllReached({task_id}, v1::TASK_STATE_RUNNING);
  std::cout << "phase file written -> RUNNING at the controller: "
            << absl::FormatDuration(running - written) << "\n";
  EXPECT_LE(running - written, options.phase_check_interval);
  EXPECT_EQ(slurm.queue_calls().size(), cycles + 1);
}

// An idle agent sends a heartbeat after each heartbeat interval (15 s, as the stand-in asks)
// without anything to send, and none before.
TEST_F(AgentRuntimeTest, AnIdleAgentHeartbeatsEachInterval) {
  FakeSlurm slurm(&clock_);
  const absl::Time start = clock_.Now();
  StartAgent(&slurm, AgentOptions{});
  for (size_t i = 1; i <= 2; ++i) {
    AdvanceBy(absl::Seconds(15), absl::Seconds(1));
    ASSERT_TRUE(WaitFor([&] { return controller_.heartbeats().size() >= i; }, absl::Seconds(30)))
        << "no heartbeat " << i;
  }
  EXPECT_THAT(controller_.heartbeats(),
              ElementsAre(start + absl::Seconds(15), start + absl::Seconds(30)));
  EXPECT_THAT(controller_.arrivals(), SizeIs(0));
}

}  // namespace
// The agent runs jobs only as its own Unix user: a task for another user is refused (whatever the
// controller decided), is never journaled and never reaches Slurm; one for its user is taken.
TEST_F(AgentRuntimeTest, ATaskForAnotherUnixUserIsRefused) {
  FakeSlurm fake(&clock_, FakeSlurmOptions{});
  StartAgent(&fake, AgentOptions{});
  v1::Command theirs = Submit(0);
  theirs.mutable_submit_task()->set_run_as("bob");
  v1::Command mine = Submit(1);
  mine.mutable_submit_task()->set_run_as("tester");
  std::vector<v1::CommandResult> results;
  ASSERT_TRUE(controller_.WaitResults(controller_.Send({theirs, mine}), absl::Seconds(30),
                                      &results));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].code(), static_cast<int>(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(results[0].message(),
              ::testing::HasSubstr("runs jobs as the Unix user tester, not as bob"));
  EXPECT_EQ(results[1].code(), 0) << results[1].message();
  auto tasks = journal_->LoadTasks();
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ((*tasks)[0].submit.task_id(), mine.submit_task().task_id());
}

}  // namespace evalctl::agent
