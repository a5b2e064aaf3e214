// Crashes and outages: the controller or the agent killed with SIGKILL mid-run and restarted on
// the same state directory, and the agent cut off from the controller while its jobs finish.
// Every event must be applied exactly once and every attempt must be exactly one Slurm job.
// Jobs run on node1 (partition debug).
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::evalctl::testing::kClusterPoll;
using ::evalctl::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Checks the controller's event log of an invocation: no event applied twice, one submission per
// attempt, one FINISHED per task (the last event, with the task's final state), and no state
// transition repeated within an attempt.
void ExpectEveryEventAppliedOnce(const std::vector<v1::WatchInvocationResponse>& events,
                                 const v1::Invocation& final_state) {
  std::map<std::string, std::vector<v1::TaskEvent>> by_task;
  uint64_t previous = 0;
  for (const v1::WatchInvocationResponse& r : events) {
    EXPECT_GT(r.sequence(), previous);
    previous = r.sequence();
    by_task[r.event().task_id()].push_back(r.event());
  }
  ASSERT_EQ(by_task.size(), static_cast<size_t>(final_state.tasks_size()));
  for (const v1::Task& task : final_state.tasks()) {
    SCOPED_TRACE(task.id());
    const std::vector<v1::TaskEvent>& list = by_task[task.id()];
    ASSERT_FALSE(list.empty());
    std::set<std::string> seen;
    std::map<int, int> submissions;                   // attempt -> SUBMITTED/RESUMED events
    std::set<std::tuple<int, int, int>> transitions;  // (attempt, from, to)
    int finished = 0;
    v1::TaskState state = v1::TASK_STATE_PENDING;
    for (const v1::TaskEvent& e : list) {
      EXPECT_TRUE(seen.insert(e.SerializeAsString()).second)
          << "event applied twice: " << e.ShortDebugString();
      const int attempt = e.attempt().number();
      if (e.kind() == v1::TaskEvent::KIND_SUBMITTED || e.kind() == v1::TaskEvent::KIND_RESUMED) {
        ++submissions[attempt];
      }
      if (e.kind() == v1::TaskEvent::KIND_FINISHED) ++finished;
      if (e.state() != state) {
        EXPECT_TRUE(transitions.insert({attempt, state, e.state()}).second)
            << "transition " << v1::TaskState_Name(state) << " -> " << v1::TaskState_Name(e.state())
            << " of attempt " << attempt << " seen twice";
        state = e.state();
      }
    }
    for (const auto& [attempt, n] : submissions) {
      EXPECT_EQ(n, 1) << "attempt " << attempt << " submitted " << n << " times";
    }
    EXPECT_EQ(submissions.size(), static_cast<size_t>(task.attempts_size()));
    EXPECT_EQ(finished, 1);
    EXPECT_EQ(list.back().kind(), v1::TaskEvent::KIND_FINISHED);
    EXPECT_EQ(list.back().state(), task.state());
  }
}

// Exactly one Slurm job per attempt of every task, the one the controller names.
void ExpectOneJobPerAttempt(E2eEnv& env, const v1::Invocation& inv) {
  for (const v1::Task& t : inv.tasks()) {
    for (const v1::Attempt& a : t.attempts()) {
      std::vector<SacctRecord> jobs =
          SettledSacctByName(env.JobName(t, a.number()), env.started(), 1);
      ASSERT_EQ(jobs.size(), 1u) << t.id() << " attempt " << a.number();
      EXPECT_EQ(jobs[0].job_id, a.slurm_job_id());
    }
    EXPECT_THAT(SacctByName(env.JobName(t, t.attempts_size() + 1), env.started()), IsEmpty());
  }
}

void ExpectAllSucceeded(const v1::Invocation& inv, int progress) {
  for (const v1::Task& t : inv.tasks()) {
    SCOPED_TRACE(t.id());
    EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
    ASSERT_EQ(t.attempts_size(), 1);
    EXPECT_EQ(t.attempts(0).slurm_state(), "COMPLETED");
    EXPECT_EQ(t.progress().done(), progress);
    EXPECT_EQ(t.results().scores_size(), 1);
  }
}

// The number of events the agent had to send after each (re)connection, from its log line
// "connected to ...; controller has events up to N, M to send".
std::vector<int> OutboxAtConnect(const std::string& agent_log) {
  std::vector<int> out;
  for (absl::string_view line : absl::StrSplit(agent_log, '\n')) {
    size_t at = line.find(" to send");
    if (line.find("connected to ") == absl::string_view::npos || at == absl::string_view::npos) {
      continue;
    }
    size_t comma = line.rfind(", ", at);
    int n = 0;
    if (comma != absl::string_view::npos &&
        absl::SimpleAtoi(line.substr(comma + 2, at - comma - 2), &n)) {
      out.push_back(n);
    }
  }
  return out;
}

TEST_F(E2eTest, ControllerKilledMidRunAppliesEveryEventOnce) {
  RunConfig config;
  config.tasks.push_back({.name = "one", .command = ProgressingCommand("one", 20)});
  config.tasks.push_back({.name = "two", .command = ProgressingCommand("two", 20)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string id = submitted->id();
  ASSERT_TRUE(WaitFor([&] { return env_.AllRunning(id); }, absl::Seconds(60), kClusterPoll));
  auto before = env_.Get(id);
  E2E_ASSERT_OK(before);

  env_.KillController();
  // The jobs run on and report progress into the agent's outbox meanwhile.
  absl::SleepFor(absl::Seconds(4));
  for (const v1::Task& t : before->tasks()) {
    EXPECT_THAT(SqueueByName(env_.JobName(t, 1)),
                ::testing::ElementsAre(t.attempts(0).slurm_job_id() + " RUNNING"));
  }
  E2E_ASSERT_OK(env_.RestartController());
  // The agent finds the controller again by itself.
  E2E_ASSERT_OK(env_.WaitAgentConnected(absl::Seconds(60)));

  auto finished = env_.WaitFinished(id, absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  ExpectAllSucceeded(*finished, 20);
  for (int i = 0; i < finished->tasks_size(); ++i) {
    EXPECT_EQ(finished->tasks(i).attempts(0).slurm_job_id(),
              before->tasks(i).attempts(0).slurm_job_id());
  }
  auto events = env_.WatchAll(id, 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  ExpectEveryEventAppliedOnce(*events, *finished);
  ExpectOneJobPerAttempt(env_, *finished);
  EXPECT_GE(OutboxAtConnect(ReadFileOrEmpty(env_.agent_log())).size(), 2u);
}

TEST_F(E2eTest, ControllerDownWhileJobsFinishGetsEveryEventOnceAfterwards) {
  RunConfig config;
  config.tasks.push_back({.name = "one", .command = ProgressingCommand("one", 8)});
  config.tasks.push_back({.name = "two", .command = ProgressingCommand("two", 8)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string id = submitted->id();
  ASSERT_TRUE(WaitFor([&] { return env_.AllRunning(id); }, absl::Seconds(60), kClusterPoll));
  auto before = env_.Get(id);
  E2E_ASSERT_OK(before);

  env_.KillController();
  const absl::Time killed = absl::Now();
  // The jobs end while the agent cannot report it.
  for (const v1::Task& t : before->tasks()) {
    const std::string job = t.attempts(0).slurm_job_id();
    EXPECT_TRUE(WaitFor(
        [&] {
          std::vector<SacctRecord> r = SacctByJob(job);
          return r.size() == 1 && r[0].state == "COMPLETED";
        },
        absl::Seconds(60), kClusterPoll))
        << "job " << job;
  }
  absl::SleepFor(killed + absl::Seconds(30) - absl::Now());
  const size_t connections_before = OutboxAtConnect(ReadFileOrEmpty(env_.agent_log())).size();
  E2E_ASSERT_OK(env_.RestartController());
  // After 30 s of failed attempts the agent's backoff may be up to ~30 s.
  E2E_ASSERT_OK(env_.WaitAgentConnected(absl::Seconds(90)));

  auto finished = env_.WaitFinished(id, absl::Minutes(1));
  E2E_ASSERT_OK(finished);
  ExpectAllSucceeded(*finished, 8);
  auto events = env_.WatchAll(id, 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  ExpectEveryEventAppliedOnce(*events, *finished);
  ExpectOneJobPerAttempt(env_, *finished);
  // The endings were held in the outbox and replayed at the reconnection.
  std::vector<int> outbox = OutboxAtConnect(ReadFileOrEmpty(env_.agent_log()));
  ASSERT_GT(outbox.size(), connections_before);
  EXPECT_GE(outbox[connections_before], 2);
}

TEST_F(E2eTest, AgentKilledMidRunReconcilesAndFinishes) {
  RunConfig config;
  config.tasks.push_back({.name = "one", .command = ProgressingCommand("one", 15)});
  config.tasks.push_back({.name = "two", .command = ProgressingCommand("two", 15)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string id = submitted->id();
  ASSERT_TRUE(WaitFor([&] { return env_.AllRunning(id); }, absl::Seconds(60), kClusterPoll));
  auto before = env_.Get(id);
  E2E_ASSERT_OK(before);

  env_.KillAgent();
  // The jobs do not depend on the agent.
  absl::SleepFor(absl::Seconds(3));
  for (const v1::Task& t : before->tasks()) {
    EXPECT_THAT(SqueueByName(env_.JobName(t, 1)),
                ::testing::ElementsAre(t.attempts(0).slurm_job_id() + " RUNNING"));
  }
  E2E_ASSERT_OK(env_.RestartAgent());

  auto finished = env_.WaitFinished(id, absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  ExpectAllSucceeded(*finished, 15);
  for (int i = 0; i < finished->tasks_size(); ++i) {
    EXPECT_EQ(finished->tasks(i).attempts(0).slurm_job_id(),
              before->tasks(i).attempts(0).slurm_job_id());
  }
  ExpectOneJobPerAttempt(env_, *finished);
  auto events = env_.WatchAll(id, 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  ExpectEveryEventAppliedOnce(*events, *finished);
}

// A cancel made while the agent is away waits in the controller and reaches the agent when it
// comes back: the job is cancelled then, and the task ends CANCELLED.
TEST_F(E2eTest, CancelWhileTheAgentIsDownIsDeliveredWhenItReconnects) {
  RunConfig config;
  config.tasks.push_back({.name = "cancelled", .command = "sleep 300"});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string id = submitted->id();
  ASSERT_TRUE(WaitFor([&] { return env_.AllRunning(id); }, absl::Seconds(60), kClusterPoll));
  auto before = env_.Get(id);
  E2E_ASSERT_OK(before);
  const v1::Task& task = before->tasks(0);
  const std::string job = task.attempts(0).slurm_job_id();

  env_.KillAgent();
  CliResult kill = env_.Cli({"kill", id});
  ASSERT_EQ(kill.exit_code, 0) << kill.out << kill.err;
  EXPECT_THAT(kill.out, HasSubstr("Cancel requested for 1 task(s)"));
  auto pending = env_.GetTask(task.id());
  E2E_ASSERT_OK(pending);
  EXPECT_TRUE(pending->cancel_requested());
  // Nobody told Slurm yet.
  absl::SleepFor(absl::Seconds(2));
  EXPECT_THAT(SqueueByName(env_.JobName(task, 1)), ::testing::ElementsAre(job + " RUNNING"));

  E2E_ASSERT_OK(env_.RestartAgent());
  auto cancelled = env_.WaitTask(
      task.id(), [](const v1::Task& t) { return t.state() == v1::TASK_STATE_CANCELLED; },
      absl::Seconds(60));
  E2E_ASSERT_OK(cancelled);
  EXPECT_EQ(cancelled->reason(), "cancelled");
  EXPECT_FALSE(cancelled->cancel_requested());
  ASSERT_EQ(cancelled->attempts_size(), 1);
  EXPECT_EQ(cancelled->attempts(0).slurm_state(), "CANCELLED");
  std::vector<SacctRecord> jobs = SettledSacctByName(env_.JobName(task, 1), env_.started(), 1);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].state, "CANCELLED");
  EXPECT_THAT(SqueueByName(env_.JobName(task, 1)), IsEmpty());
  // The agent stays connected (the resent cancel did not break its stream).
  absl::SleepFor(absl::Seconds(3));
  E2E_ASSERT_OK(env_.WaitAgentConnected(absl::Seconds(1)));
  EXPECT_EQ(OutboxAtConnect(ReadFileOrEmpty(env_.agent_log())).size(), 2u);

  auto finished = env_.Get(id);
  E2E_ASSERT_OK(finished);
  auto events = env_.WatchAll(id, 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  ExpectEveryEventAppliedOnce(*events, *finished);
}

// Puts an `sbatch` first on the agent's PATH that runs `body` (bash); returns the PATH value.
std::string FakeSbatchPath(E2eEnv& env, const std::string& body) {
  const std::string bin = env.root() + "/fake-sbatch";
  std::filesystem::create_directories(bin);
  {
    std::ofstream f(bin + "/sbatch");
    f << "#!/bin/bash\n" << body;
  }
  EXPECT_EQ(::chmod((bin + "/sbatch").c_str(), 0755), 0);
  const char* path = std::getenv("PATH");
  return absl::StrCat(bin, ":", path ? path : "/usr/bin:/bin");
}

// Whether process `pid` still runs (a zombie waiting to be reaped does not).
bool ProcessRuns(int pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string id, comm, state;
  return stat >> id >> comm >> state && state != "Z" && state != "X";
}

// A second agent on the same state directory (a shared $HOME, a second install) refuses to start,
// naming the one that holds it; the first goes on and runs jobs.
TEST_F(E2eTest, SecondAgentOnTheSameStateDirectoryRefusesToStart) {
  auto second = env_.RunSecondAgent();
  E2E_ASSERT_OK(second);
  EXPECT_FALSE(second->timed_out) << "the second agent ran";
  EXPECT_EQ(second->exit_code, 1) << second->stderr_data;
  EXPECT_THAT(second->stderr_data,
              HasSubstr(absl::StrCat("the agent state directory ", env_.agent_state_dir(),
                                     " is in use by another process (pid ", env_.agent_pid(),
                                     ")")));
  RunConfig config;
  config.tasks.push_back({.name = "first", .command = SucceedingCommand("first", 1)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  EXPECT_EQ(finished->tasks(0).state(), v1::TASK_STATE_SUCCEEDED) << finished->tasks(0).reason();
}

// The agent dies after it journaled the attempt but before sbatch reached Slurm: the sbatch dies
// with it (it must not submit later, behind the restarted agent's back), and the restarted agent
// finds no job of that name and submits it, once.
TEST_F(E2eTest, AgentKilledBeforeSbatchSubmitsOnce) {
  // An sbatch that records its pid and waits for a release file, then submits for real: left
  // running by a killed agent, it would submit a second job after the restarted agent's.
  const std::string mark = env_.root() + "/sbatch-started";
  const std::string release = env_.root() + "/sbatch-release";
  const std::string path = FakeSbatchPath(
      env_, absl::StrCat("echo $$ > '", mark, ".tmp'\nmv '", mark, ".tmp' '", mark,
                         "'\nwhile [ ! -e '", release,
                         "' ]; do sleep 0.1; done\nexec /usr/bin/sbatch \"$@\"\n"));
  env_.KillAgent();
  E2E_ASSERT_OK(env_.StartAgent({{"PATH", path}}));

  RunConfig config;
  config.tasks.push_back({.name = "once", .command = SucceedingCommand("once", 2)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  ASSERT_TRUE(
      WaitFor([&] { return std::filesystem::exists(mark); }, absl::Seconds(60), kClusterPoll))
      << "sbatch never ran";
  int sbatch_pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(mark)), &sbatch_pid) &&
              sbatch_pid > 0);
  ASSERT_TRUE(ProcessRuns(sbatch_pid));
  env_.KillAgent();
  // The sbatch the agent was waiting for died with it.
  const bool sbatch_died =
      WaitFor([&] { return !ProcessRuns(sbatch_pid); }, absl::Seconds(10), kClusterPoll);
  if (!sbatch_died) ::kill(sbatch_pid, SIGKILL);
  EXPECT_TRUE(sbatch_died) << "sbatch " << sbatch_pid << " outlived the killed agent";
  const v1::Task& task = submitted->tasks(0);
  // Nothing reached Slurm, and the controller knows of no job.
  absl::SleepFor(absl::Seconds(1));
  EXPECT_THAT(SqueueByName(env_.JobName(task, 1)), IsEmpty());
  auto before = env_.GetTask(task.id());
  E2E_ASSERT_OK(before);
  for (const v1::Attempt& a : before->attempts()) EXPECT_EQ(a.slurm_job_id(), "");

  E2E_ASSERT_OK(env_.StartAgent());
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
  ASSERT_EQ(t.attempts_size(), 1);
  ExpectOneJobPerAttempt(env_, *finished);
  const std::string log = ReadFileOrEmpty(env_.agent_log());
  EXPECT_THAT(log, Not(HasSubstr("adopted job=")));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("submitted task=", t.id(),
                                          " attempt=1 job=", t.attempts(0).slurm_job_id())));
  // Released now, an sbatch that outlived the agent would submit a second job of that name.
  std::ofstream(release).put('\n');
  absl::SleepFor(absl::Seconds(3));
  ExpectOneJobPerAttempt(env_, *finished);
  auto events = env_.WatchAll(submitted->id(), 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  ExpectEveryEventAppliedOnce(*events, *finished);
}

// The agent dies after sbatch submitted the job but before it journaled the job id: the
// restarted agent must find the job by its name and adopt it, not submit a second one.
TEST_F(E2eTest, AgentKilledBetweenSbatchAndJournalAdoptsTheJob) {
  // An sbatch that submits, leaves a mark, and then hangs, so that the agent can be killed at
  // exactly that moment.
  const std::string mark = env_.root() + "/sbatch-done";
  const std::string path = FakeSbatchPath(
      env_,
      absl::StrCat("/usr/bin/sbatch \"$@\"\nrc=$?\ntouch '", mark, "'\nsleep 30\nexit $rc\n"));
  env_.KillAgent();
  E2E_ASSERT_OK(env_.StartAgent({{"PATH", path}}));

  RunConfig config;
  config.tasks.push_back({.name = "adopted", .command = SucceedingCommand("adopted", 3)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  ASSERT_TRUE(
      WaitFor([&] { return std::filesystem::exists(mark); }, absl::Seconds(60), kClusterPoll))
      << "sbatch never ran";
  env_.KillAgent();
  const v1::Task& task = submitted->tasks(0);
  std::vector<std::string> queued;
  ASSERT_TRUE(WaitFor(
      [&] {
        queued = SqueueByName(env_.JobName(task, 1));
        return !queued.empty();
      },
      absl::Seconds(10), kClusterPoll));
  ASSERT_EQ(queued.size(), 1u);
  const std::string job_id = queued[0].substr(0, queued[0].find(' '));

  // The plain sbatch from now on.
  E2E_ASSERT_OK(env_.StartAgent());
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
  ASSERT_EQ(t.attempts_size(), 1);
  EXPECT_EQ(t.attempts(0).slurm_job_id(), job_id);
  ExpectOneJobPerAttempt(env_, *finished);
  EXPECT_THAT(ReadFileOrEmpty(env_.agent_log()),
              HasSubstr(absl::StrCat("adopted job=", job_id, " for task=", t.id())));
  auto events = env_.WatchAll(submitted->id(), 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  ExpectEveryEventAppliedOnce(*events, *finished);
}

}  // namespace
}  // namespace evalctl::e2e
