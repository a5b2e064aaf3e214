#include "agent/runtime/metrics.h"

#include <unistd.h>

#include <filesystem>
#include <optional>

#include "agent/core/task_manager.h"
#include "agent/slurm/fake_slurm.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace evalctl::agent {
namespace {

using ::testing::DoubleNear;
using ::testing::Optional;

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

class AgentMetricsTest : public ::testing::Test {
 protected:
  prometheus::Registry registry_;
  AgentMetrics metrics_{registry_, "1.2.3"};
  FakeClock clock_;
};

TEST_F(AgentMetricsTest, MeteredSlurmClientCountsAndTimesEveryCommandByOutcome) {
  FakeSlurm fake(&clock_);
  MeteredSlurmClient slurm(&fake, &metrics_);

  auto id = slurm.Submit({.script_path = "/tmp/run.sub", .job_name = "acct-sub.t.0123.0.1"});
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(fake.JobIdsByName("acct-sub.t.0123.0.1"), std::vector<std::string>{*id});
  fake.SetSubmitError(absl::InvalidArgumentError("sbatch: error: invalid partition specified"));
  auto rejected = slurm.Submit({.script_path = "/tmp/run.sub", .job_name = "x"});
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);

  auto queued = slurm.Queue({*id});
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->size(), 1u);
  EXPECT_TRUE(slurm.Accounting({*id}).ok());
  EXPECT_TRUE(slurm.FindByName({"acct-sub.t.0123.0.1"}, clock_.Now() - absl::Hours(1)).ok());
  EXPECT_EQ(slurm.Show("999").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(slurm.Cancel({*id}).ok());
  fake.SetControllerDown(true);
  EXPECT_EQ(slurm.Queue({*id}).status().code(), absl::StatusCode::kUnavailable);

  auto commands = [&](const std::string& command, const std::string& outcome) {
    return Value(registry_, "evalctl_agent_slurm_commands_total",
                 {{"command", command}, {"outcome", outcome}});
  };
  EXPECT_THAT(commands("sbatch", "ok"), Optional(1.0));
  EXPECT_THAT(commands("sbatch", "invalid_argument"), Optional(1.0));
  EXPECT_THAT(commands("squeue", "ok"), Optional(1.0));
  EXPECT_THAT(commands("squeue", "unavailable"), Optional(1.0));
  EXPECT_THAT(commands("sacct", "ok"), Optional(1.0));
  EXPECT_THAT(commands("find_by_name", "ok"), Optional(1.0));
  EXPECT_THAT(commands("scontrol", "not_found"), Optional(1.0));
  EXPECT_THAT(commands("scancel", "ok"), Optional(1.0));
  EXPECT_EQ(commands("sacct", "unavailable"), std::nullopt);

  auto timed = [&](const std::string& command) {
    return Value(registry_, "evalctl_agent_slurm_command_duration_seconds", {{"command", command}});
  };
  EXPECT_THAT(timed("sbatch"), Optional(2.0));
  EXPECT_THAT(timed("squeue"), Optional(2.0));
  EXPECT_THAT(timed("scontrol"), Optional(1.0));
}

TEST_F(AgentMetricsTest, CommittedEventsCountSubmissionsResumesEndingsAndTaskStates) {
  const std::string root = ::testing::TempDir() + "/agent_metrics_" + std::to_string(::getpid());
  std::filesystem::remove_all(root);
  auto journal = Journal::Open(root + "/state", &clock_);
  ASSERT_TRUE(journal.ok()) << journal.status();
  FakeSlurm fake(&clock_, {.default_plan = {.pending_for = absl::Seconds(2),
                                            .run_for = absl::InfiniteDuration()}});
  MeteredSlurmClient slurm(&fake, &metrics_);
  TaskManager tm(
      {.on_commit = [&](const std::vector<v1::AgentEvent>& e) { metrics_.EventsCommitted(e); }},
      &slurm, journal->get(), &clock_);
  ASSERT_TRUE(tm.Recover().ok());

  auto task = [&](int index) {
    v1::SubmitTask t;
    t.set_task_id("0123456789abcdef." + std::to_string(index));
    t.set_invocation_id("0123456789abcdef");
    t.set_name("t");
    t.mutable_job()->set_script("#!/bin/bash\necho hi\n");
    t.mutable_job()->set_run_dir(root + "/runs/t" + std::to_string(index));
    t.mutable_job()->set_job_name_prefix("acct-sub.t" + std::to_string(index));
    return t;
  };
  auto job_of = [&](int index) {
    auto t = tm.Get("0123456789abcdef." + std::to_string(index));
    return t->attempts(t->attempts_size() - 1).slurm_job_id();
  };
  ASSERT_TRUE(tm.Accept(task(0)).ok());
  ASSERT_TRUE(tm.Accept(task(1)).ok());
  clock_.Advance(absl::Seconds(5));
  tm.RunCycle();  // both run
  ASSERT_TRUE(fake.TimeOutJob(job_of(0)).ok());
  ASSERT_TRUE(fake.FailJob(job_of(1), 3).ok());
  clock_.Advance(absl::Seconds(5));
  tm.RunCycle();  // task 0 resumes (attempt 2 queued), task 1 failed

  EXPECT_THAT(Value(registry_, "evalctl_agent_submissions_total", {{"reason", "first_attempt"}}),
              Optional(2.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_submissions_total", {{"reason", "timeout"}}),
              Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_submissions_total", {{"reason", "manual"}}),
              Optional(0.0));
  // Slurm's own requeues are no submission of the agent's: no such series.
  EXPECT_EQ(Value(registry_, "evalctl_agent_submissions_total", {{"reason", "slurm_requeue"}}),
            std::nullopt);
  EXPECT_THAT(Value(registry_, "evalctl_agent_resumes_total", {{"reason", "timeout"}}),
              Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_resumes_total", {{"reason", "preempted"}}),
              Optional(0.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_tasks_finished_total", {{"state", "failed"}}),
              Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_tasks_finished_total", {{"state", "succeeded"}}),
              Optional(0.0));

  clock_.Advance(absl::Minutes(10));
  metrics_.RefreshTasks(clock_.Now());
  EXPECT_THAT(Value(registry_, "evalctl_agent_tasks", {{"state", "queued"}}), Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_tasks", {{"state", "running"}}), Optional(0.0));
  EXPECT_THAT(
      Value(registry_, "evalctl_agent_task_oldest_unchanged_seconds", {{"state", "queued"}}),
      Optional(DoubleNear(600, 1)));
  EXPECT_THAT(
      Value(registry_, "evalctl_agent_task_oldest_unchanged_seconds", {{"state", "running"}}),
      Optional(0.0));

  // After a restart the active tasks come from the journal, with their last change.
  prometheus::Registry fresh_registry;
  AgentMetrics fresh(fresh_registry, "1.2.3");
  auto loaded = (*journal)->LoadTasks();
  ASSERT_TRUE(loaded.ok());
  fresh.TasksLoaded(*loaded);
  fresh.RefreshTasks(clock_.Now());
  EXPECT_THAT(Value(fresh_registry, "evalctl_agent_tasks", {{"state", "queued"}}), Optional(1.0));
  EXPECT_THAT(
      Value(fresh_registry, "evalctl_agent_task_oldest_unchanged_seconds", {{"state", "queued"}}),
      Optional(DoubleNear(600, 1)));
  std::filesystem::remove_all(root);
}

TEST_F(AgentMetricsTest, TrackedJobsByWhatSlurmSaysOfThem) {
  for (const char* state : {"queued", "running", "ended", "unknown"}) {
    EXPECT_THAT(Value(registry_, "evalctl_agent_tracked_jobs", {{"state", state}}), Optional(0.0))
        << state;
  }
  const std::string root =
      ::testing::TempDir() + "/agent_metrics_tracked_" + std::to_string(::getpid());
  std::filesystem::remove_all(root);
  auto journal = Journal::Open(root + "/state", &clock_);
  ASSERT_TRUE(journal.ok()) << journal.status();
  FakeSlurm fake(
      &clock_, {.default_plan = {.pending_for = absl::Seconds(10), .run_for = absl::Seconds(20)}});
  TaskManager tm({}, &fake, journal->get(), &clock_);
  ASSERT_TRUE(tm.Recover().ok());
  for (int i = 0; i < 3; ++i) {
    v1::SubmitTask t;
    t.set_task_id("0123456789abcdef." + std::to_string(i));
    t.set_invocation_id("0123456789abcdef");
    t.set_name("t");
    t.mutable_job()->set_script("#!/bin/bash\necho hi\n");
    t.mutable_job()->set_run_dir(root + "/runs/t" + std::to_string(i));
    t.mutable_job()->set_job_name_prefix("acct-sub.t" + std::to_string(i));
    ASSERT_TRUE(tm.Accept(t).ok());
    clock_.Advance(absl::Seconds(4));  // submitted at 0, 4 and 8 s
  }
  auto cycle = [&] {
    CycleStats stats = tm.RunCycle();
    metrics_.CycleFinished(absl::Milliseconds(1), absl::Seconds(1), stats.jobs);
    EXPECT_EQ(stats.jobs.queued + stats.jobs.running + stats.jobs.ended + stats.jobs.unknown,
              stats.tracked_jobs);
  };
  auto jobs = [&](const std::string& state) {
    return Value(registry_, "evalctl_agent_tracked_jobs", {{"state", state}}).value_or(-1);
  };
  // t=12 s: the first job started at 10 s, the others wait until 14 and 18 s.
  cycle();
  EXPECT_EQ(jobs("running"), 1.0);
  EXPECT_EQ(jobs("queued"), 2.0);
  EXPECT_EQ(jobs("ended"), 0.0);
  // t=31 s: the first ended at 30 s (seen ending in this cycle), the others run.
  clock_.Advance(absl::Seconds(19));
  cycle();
  EXPECT_EQ(jobs("ended"), 1.0);
  EXPECT_EQ(jobs("running"), 2.0);
  EXPECT_EQ(jobs("queued"), 0.0);
  // Slurm does not answer: every tracked job is unknown.
  fake.SetControllerDown(true);
  cycle();
  EXPECT_EQ(jobs("unknown"), 2.0);
  EXPECT_EQ(jobs("running"), 0.0);
  std::filesystem::remove_all(root);
}

TEST_F(AgentMetricsTest, GaugesOfTheRuntime) {
  EXPECT_THAT(Value(registry_, "evalctl_agent_build_info", {{"version", "1.2.3"}}), Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_stream_connected"), Optional(0.0));

  metrics_.SetStreamConnected(true);
  metrics_.StreamReconnect();
  metrics_.SetOutbox(42, absl::Seconds(90));
  metrics_.SetSlurmUnreachable(absl::Seconds(30));
  metrics_.CycleFinished(absl::Milliseconds(250), absl::Seconds(4),
                         {.queued = 3, .running = 2, .ended = 1, .unknown = 1});

  EXPECT_THAT(Value(registry_, "evalctl_agent_stream_connected"), Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_stream_reconnects_total"), Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_outbox_events"), Optional(42.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_outbox_oldest_unacked_age_seconds"), Optional(90.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_slurm_unreachable_seconds"), Optional(30.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_cycle_duration_seconds"), Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_cycle_interval_seconds"), Optional(4.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_tracked_jobs", {{"state", "queued"}}), Optional(3.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_tracked_jobs", {{"state", "running"}}),
              Optional(2.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_tracked_jobs", {{"state", "ended"}}), Optional(1.0));
  EXPECT_THAT(Value(registry_, "evalctl_agent_tracked_jobs", {{"state", "unknown"}}),
              Optional(1.0));
  EXPECT_EQ(Value(registry_, "evalctl_agent_tracked_jobs"), std::nullopt);
}

TEST(OutcomeLabelTest, OkOrTheLowerCaseCode) {
  EXPECT_EQ(OutcomeLabel(absl::OkStatus()), "ok");
  EXPECT_EQ(OutcomeLabel(absl::DeadlineExceededError("sacct timed out")), "deadline_exceeded");
  EXPECT_EQ(OutcomeLabel(absl::UnavailableError("x")), "unavailable");
}

}  // namespace
}  // namespace evalctl::agent
