// Component tests of the `evalctl` commands against the in-process fake EvalService: the tables,
// JSON and CSV they print, ids passed through as typed, streams, exit codes.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/cli/app.h"
#include "clients/cli/commands.h"
#include "clients/cpp/testing/fake_eval_service.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace evalctl::cli {
namespace {

namespace fs = std::filesystem;
using client::testing::FakeEvalServer;
using client::testing::MakeInvocation;
using client::testing::MakeTask;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kInvA[] = "3f2a9c01d4e5b677";
constexpr char kInvB[] = "5b1c9d00aa12e3f4";
const absl::Time kCreatedA = absl::FromUnixSeconds(1'800'000'000);  // 2027-01-15 08:00:00 UTC
const absl::Time kCreatedB = absl::FromUnixSeconds(1'799'900'000);  // 2027-01-14 04:13:20 UTC

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

v1::Attempt MakeAttempt(const std::string& task_id, int number, const std::string& job,
                        const std::string& slurm_state) {
  v1::Attempt a;
  a.set_number(number);
  a.set_attempt_id(absl::StrCat(task_id, ".", number));
  a.set_slurm_job_id(job);
  a.set_slurm_state(slurm_state);
  *a.mutable_submit_time() = Ts(kCreatedA + absl::Minutes(number));
  return a;
}

v1::Score MakeScore(const std::string& task, const std::string& metric, double value,
                    double stderr_value) {
  v1::Score s;
  s.set_task(task);
  s.set_metric(metric);
  s.set_score(metric);
  s.set_value(value);
  (*s.mutable_stats())["stderr"] = stderr_value;
  return s;
}

v1::TaskEvent Event(const std::string& task_id, v1::TaskEvent::Kind kind, v1::TaskState state,
                    int attempt = 0, const std::string& job = "", int64_t done = 0,
                    int64_t total = 0) {
  v1::TaskEvent e;
  e.set_kind(kind);
  e.set_task_id(task_id);
  e.set_state(state);
  *e.mutable_time() = Ts(kCreatedA + absl::Minutes(10));
  if (attempt > 0) {
    e.mutable_attempt()->set_number(attempt);
    e.mutable_attempt()->set_slurm_job_id(job);
  }
  e.mutable_progress()->set_done(done);
  e.mutable_progress()->set_total(total);
  return e;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string a = kInvA;
    v1::Task hellaswag = MakeTask(a, 0, "hellaswag", v1::TASK_STATE_RUNNING);
    hellaswag.set_phase(v1::PHASE_EVALUATING);
    hellaswag.mutable_progress()->set_done(120);
    hellaswag.mutable_progress()->set_total(1000);
    *hellaswag.add_attempts() = MakeAttempt(hellaswag.id(), 1, "4242", "RUNNING");

    v1::Task arc = MakeTask(a, 1, "arc_challenge", v1::TASK_STATE_SUCCEEDED);
    arc.mutable_progress()->set_done(1172);
    arc.mutable_progress()->set_total(1172);
    v1::Attempt arc_attempt = MakeAttempt(arc.id(), 1, "4243", "COMPLETED");
    arc_attempt.set_exit_code(0);
    arc_attempt.set_elapsed_seconds(3725);
    *arc.add_attempts() = arc_attempt;
    *arc.mutable_results()->add_scores() = MakeScore("arc_challenge", "acc", 0.51234, 0.0146);
    *arc.mutable_results()->add_scores() = MakeScore("arc_challenge", "acc_norm", 0.5487, 0.0145);
    arc.mutable_results()->set_results_path(
        "/lustre/evals/20270115_080000-3f2a9c01d4e5b677/arc_challenge/artifacts/results.yml");

    v1::Task gsm8k = MakeTask(a, 2, "gsm8k", v1::TASK_STATE_FAILED);
    gsm8k.set_reason("evaluation exited with code 1");
    *gsm8k.add_attempts() = MakeAttempt(gsm8k.id(), 1, "4244", "TIMEOUT");
    v1::Attempt second = MakeAttempt(gsm8k.id(), 2, "4250", "FAILED");
    second.set_exit_code(1);
    second.set_resume_reason(v1::RESUME_REASON_TIMEOUT);
    *gsm8k.add_attempts() = second;
    service().AddInvocation(MakeInvocation(a, kCreatedA, {hellaswag, arc, gsm8k}));

    v1::Task wino = MakeTask(kInvB, 0, "winogrande, xl", v1::TASK_STATE_SUCCEEDED);
    *wino.mutable_results()->add_scores() = MakeScore("winogrande", "acc", 0.75, 0.012);
    service().AddInvocation(MakeInvocation(kInvB, kCreatedB, {wino}));

    v1::Cluster eos;
    eos.set_name("eos");
    eos.add_aliases("login.eos.example.com");
    eos.set_unix_user("alice");
    eos.set_agent_version("0.1.0");
    eos.set_connected(true);
    eos.set_slurm_reachable(true);
    eos.set_tracked_jobs(3);
    *eos.mutable_last_seen() = Ts(kCreatedA);
    service().AddCluster(eos);

    absl::StatusOr<std::unique_ptr<client::Client>> c =
        client::Client::Connect({.target = server_.address(), .timeout = absl::Seconds(10)});
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = *std::move(c);

    dir_ = fs::temp_directory_path() /
           absl::StrCat("evalctl_cli_test_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    config_path_ = (dir_ / "my.yaml").string();
    std::ofstream(config_path_) << "execution:\n  hostname: login.eos.example.com\n";
  }

  void TearDown() override { fs::remove_all(dir_); }

  client::testing::FakeEvalService& service() { return server_.service(); }
  Io io() { return Io{out_, err_, /*tty=*/false, /*width=*/0, absl::UTCTimeZone()}; }

  int App(std::vector<std::string> args) {
    args.insert(args.begin(), {"evalctl", "--controller", server_.address()});
    return RunApp(args, io());
  }

  // A submission whose tasks end as the events say.
  void PrepareSubmission(bool fail_one) {
    const std::string id = "aaaabbbbccccdddd";
    service().SetNextSubmission(
        MakeInvocation(id, kCreatedA,
                       {MakeTask(id, 0, "hellaswag", v1::TASK_STATE_PENDING),
                        MakeTask(id, 1, "gsm8k", v1::TASK_STATE_PENDING)}),
        {Event(id + ".0", v1::TaskEvent::KIND_SUBMITTED, v1::TASK_STATE_QUEUED, 1, "5001"),
         Event(id + ".1", v1::TaskEvent::KIND_SUBMITTED, v1::TASK_STATE_QUEUED, 1, "5002"),
         Event(id + ".0", v1::TaskEvent::KIND_PROGRESS, v1::TASK_STATE_RUNNING, 1, "5001", 50, 100),
         Event(id + ".0", v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_SUCCEEDED, 1, "5001", 100,
               100),
         Event(id + ".1", v1::TaskEvent::KIND_FINISHED,
               fail_one ? v1::TASK_STATE_FAILED : v1::TASK_STATE_SUCCEEDED, 1, "5002")});
  }

  FakeEvalServer server_;
  std::unique_ptr<client::Client> client_;
  std::ostringstream out_;
  std::ostringstream err_;
  fs::path dir_;
  std::string config_path_;
};

// --- status

TEST_F(CliTest, StatusShowsTheTaskTableOfAnInvocationPrefix) {
  ASSERT_TRUE(StatusCommand(*client_, {.ids = {"3f2a"}}, io()).ok()) << err_.str();
  EXPECT_EQ(out_.str(),
            "Invocation 3f2a9c01d4e5b677  cluster eos  created 2027-01-15 08:00:00  3 task(s): 1 "
            "running, 1 succeeded, 1 failed\n"
            "Run dir: /lustre/evals/20270115_080000-3f2a9c01d4e5b677\n"
            "\n"
            "Task ID             Name           State      Phase       Progress        Attempts  "
            "Slurm job  Reason\n"
            "3f2a9c01d4e5b677.0  hellaswag      running    evaluating  120/1000 12%    1         "
            "4242       -\n"
            "3f2a9c01d4e5b677.1  arc_challenge  succeeded  -           1172/1172 100%  1         "
            "4243       -\n"
            "3f2a9c01d4e5b677.2  gsm8k          failed     -           -               2         "
            "4250       evaluation exited with code 1\n");
  EXPECT_THAT(service().received_ids(), ElementsAre("3f2a"));
  // The table comes from the BASIC view: no attempts, results or configuration on the wire.
  ASSERT_EQ(service().get_requests().size(), 1u);
  EXPECT_EQ(service().get_requests()[0].view(), v1::INVOCATION_VIEW_BASIC);
}

TEST_F(CliTest, ReadInvocationGathersEveryPage) {
  absl::StatusOr<v1::Invocation> inv =
      ReadInvocation(*client_, "3f2a", v1::INVOCATION_VIEW_BASIC, /*page_size=*/2);
  ASSERT_TRUE(inv.ok()) << inv.status();
  ASSERT_EQ(inv->tasks_size(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(inv->tasks(i).index(), i);
  EXPECT_EQ(inv->tasks(2).slurm_job_id(), "4250");
  EXPECT_EQ(inv->tasks(2).attempt_count(), 2);
  EXPECT_EQ(inv->tasks(2).attempts_size(), 0);
  EXPECT_EQ(inv->counts().failed(), 1);
  EXPECT_TRUE(inv->next_page_token().empty());
  // The second page asks for the resolved id, from where the first page ended.
  std::vector<v1::GetInvocationRequest> got = service().get_requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id(), "3f2a");
  EXPECT_EQ(got[1].id(), kInvA);
  EXPECT_EQ(got[1].page_size(), 2);
  EXPECT_EQ(got[1].page_token(), "2");
}

TEST_F(CliTest, StatusPassesTaskIdsAsTyped) {
  ASSERT_TRUE(StatusCommand(*client_, {.ids = {"3F2A9C01D4E5B677.2"}}, io()).ok()) << err_.str();
  EXPECT_THAT(service().received_ids(), ElementsAre("3F2A9C01D4E5B677.2"));
  EXPECT_THAT(out_.str(), StartsWith("Task ID "));
  EXPECT_THAT(out_.str(), HasSubstr("3f2a9c01d4e5b677.2  gsm8k  failed"));
}

TEST_F(CliTest, StatusJson) {
  ASSERT_TRUE(StatusCommand(*client_, {.ids = {"3f2a", "5b1c.0"}, .json = true}, io()).ok());
  nlohmann::json j = nlohmann::json::parse(out_.str());
  ASSERT_EQ(j["invocations"].size(), 1u);
  const nlohmann::json& inv = j["invocations"][0];
  EXPECT_EQ(inv["id"], kInvA);
  EXPECT_EQ(inv["created_time"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(inv["counts"]["running"], 1);
  EXPECT_EQ(inv["tasks"][0]["state"], "running");
  EXPECT_EQ(inv["tasks"][0]["phase"], "evaluating");
  EXPECT_EQ(inv["tasks"][0]["progress"]["done"], 120);
  EXPECT_EQ(inv["tasks"][0]["slurm_job_id"], "4242");
  EXPECT_EQ(inv["tasks"][2]["attempts"][1]["exit_code"], 1);
  EXPECT_EQ(inv["tasks"][2]["attempts"][1]["resume_reason"], "timeout");
  EXPECT_FALSE(inv.contains("resolved_config"));
  ASSERT_EQ(j["tasks"].size(), 1u);
  EXPECT_EQ(j["tasks"][0]["name"], "winogrande, xl");
}

TEST_F(CliTest, StatusWithoutIdsShowsTheNewestInvocations) {
  ASSERT_TRUE(StatusCommand(*client_, {}, io()).ok()) << err_.str();
  const std::string out = out_.str();
  ASSERT_NE(out.find(kInvA), std::string::npos);
  ASSERT_NE(out.find(kInvB), std::string::npos);
  EXPECT_LT(out.find(absl::StrCat("Invocation ", kInvA)),
            out.find(absl::StrCat("Invocation ", kInvB)));
  EXPECT_EQ(service().list_requests().at(0).page_size(), 5);
}

TEST_F(CliTest, StatusOfAnUnknownIdFailsBeforePrinting) {
  absl::Status s = StatusCommand(*client_, {.ids = {"3f2a", "ffff"}}, io());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no invocation matches \"ffff\"");
  EXPECT_EQ(out_.str(), "");
}

// --- ls

TEST_F(CliTest, LsRunsListsNewestFirstWithLimitAndSince) {
  ASSERT_TRUE(LsRunsCommand(*client_, {.limit = 20}, io()).ok());
  EXPECT_EQ(out_.str(),
            "Invocation        Created              Cluster  Tasks  States\n"
            "3f2a9c01d4e5b677  2027-01-15 08:00:00  eos      3      1 running, 1 succeeded, 1 "
            "failed\n"
            "5b1c9d00aa12e3f4  2027-01-14 04:13:20  eos      1      1 succeeded\n");

  out_.str("");
  ASSERT_TRUE(LsRunsCommand(*client_, {.limit = 1}, io()).ok());
  EXPECT_THAT(out_.str(), HasSubstr(kInvA));
  EXPECT_THAT(out_.str(), Not(HasSubstr(kInvB)));

  out_.str("");
  ASSERT_TRUE(
      LsRunsCommand(*client_, {.since = kCreatedA - absl::Hours(1), .json = true}, io()).ok());
  nlohmann::json j = nlohmann::json::parse(out_.str());
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["id"], kInvA);
  EXPECT_EQ(j[0]["num_tasks"], 3);
  EXPECT_EQ(service().list_requests().back().since().seconds(),
            absl::ToUnixSeconds(kCreatedA - absl::Hours(1)));
}

TEST_F(CliTest, LsRunsSinceThroughTheCommandLine) {
  EXPECT_EQ(App({"ls", "runs", "--since", "2027-01-15T00:00:00Z", "--limit", "7"}), kExitOk)
      << err_.str();
  const v1::ListInvocationsRequest r = service().list_requests().back();
  EXPECT_EQ(r.since().seconds(),
            absl::ToUnixSeconds(absl::FromUnixSeconds(1'800'000'000) - absl::Hours(8)));
  EXPECT_EQ(r.page_size(), 7);
  EXPECT_EQ(App({"ls", "runs", "--since", "yesterday"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("evalctl: bad --since \"yesterday\""));
}

TEST_F(CliTest, LsTasksShowsTheCatalog) {
  EXPECT_EQ(App({"ls", "tasks"}), kExitOk);
  EXPECT_THAT(out_.str(), StartsWith("Name "));
  EXPECT_THAT(out_.str(), HasSubstr("Runtimes"));
  EXPECT_THAT(out_.str(), HasSubstr("Description"));
  EXPECT_THAT(out_.str(), ::testing::ContainsRegex("\nhellaswag +[a-z,]*pyxis"));
  out_.str("");
  EXPECT_EQ(App({"ls", "tasks", "--json"}), kExitOk);
  nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_GT(j.size(), 5u);
}

// --- watch

TEST_F(CliTest, WatchPrintsOneLinePerEventUntilTheInvocationFinishes) {
  const std::string t0 = absl::StrCat(kInvA, ".0");
  service().Publish(
      Event(t0, v1::TaskEvent::KIND_PROGRESS, v1::TASK_STATE_RUNNING, 1, "4242", 500, 1000));
  service().Publish(
      Event(t0, v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_SUCCEEDED, 1, "4242", 1000, 1000));
  ASSERT_TRUE(WatchCommand(*client_, {.id = "3f2a"}, io()).ok()) << err_.str();
  EXPECT_EQ(out_.str(),
            "2027-01-15 08:10:00  3f2a9c01d4e5b677.0  progress  running  progress 500/1000 50%  "
            "attempt 1  job 4242\n"
            "2027-01-15 08:10:00  3f2a9c01d4e5b677.0  finished  succeeded  progress 1000/1000 "
            "100%  attempt 1  job 4242\n");
  EXPECT_EQ(service().watch_requests().at(0).id(), "3f2a");
}

TEST_F(CliTest, WatchResumesAfterTheLastSequenceWhenTheStreamDrops) {
  const std::string t0 = absl::StrCat(kInvA, ".0");
  for (int done : {100, 200, 300}) {
    service().Publish(
        Event(t0, v1::TaskEvent::KIND_PROGRESS, v1::TASK_STATE_RUNNING, 1, "4242", done, 1000));
  }
  service().Publish(Event(t0, v1::TaskEvent::KIND_FINISHED, v1::TASK_STATE_SUCCEEDED, 1, "4242"));
  service().DropWatchStreams(1, 2);
  ASSERT_TRUE(
      WatchCommand(
          *client_,
          {.id = kInvA, .json = true, .reconnect = {.initial_backoff = absl::Milliseconds(10)}},
          io())
          .ok())
      << err_.str();
  std::vector<std::string> lines = absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << out_.str();
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(nlohmann::json::parse(lines[i])["sequence"], i + 1);
  }
  ASSERT_EQ(service().watch_requests().size(), 2u);
  EXPECT_EQ(service().watch_requests()[1].after_sequence(), 2u);
  EXPECT_THAT(err_.str(), HasSubstr("resuming after event 2"));
}

TEST_F(CliTest, WatchOfAnUnreachableControllerFailsAtOnce) {
  absl::StatusOr<std::unique_ptr<client::Client>> c = client::Client::Connect(
      {.target = absl::StrCat("127.0.0.1:", client::testing::ClosedLoopbackPort()),
       .timeout = absl::Seconds(5)});
  ASSERT_TRUE(c.ok());
  const absl::Time start = absl::Now();
  absl::Status s = WatchCommand(**c, {.id = kInvA}, io());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("(connection refused)"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// --- logs

TEST_F(CliTest, LogsWritesRawBytesAndPassesTheOptions) {
  const std::string t2 = absl::StrCat(kInvA, ".2");
  service().SetLog(t2, v1::LOG_KIND_SERVER, {"server up\n", std::string("\0\x01\xfe\n", 4)},
                   {"more\n"});
  ASSERT_TRUE(LogsCommand(*client_,
                          {.id = "3f2a9c01d4e5b677.2", .kind = v1::LOG_KIND_SERVER, .attempt = 1},
                          io())
                  .ok())
      << err_.str();
  EXPECT_EQ(out_.str(), std::string("server up\n\0\x01\xfe\n", 14));
  const v1::StreamLogsRequest r = service().log_requests().at(0);
  EXPECT_EQ(r.id(), "3f2a9c01d4e5b677.2");
  EXPECT_EQ(r.kind(), v1::LOG_KIND_SERVER);
  EXPECT_EQ(r.attempt(), 1);
  EXPECT_FALSE(r.follow());

  out_.str("");
  EXPECT_EQ(App({"logs", "3f2a9c01d4e5b677.2", "-f", "--which", "server"}), kExitOk);
  EXPECT_EQ(out_.str(), std::string("server up\n\0\x01\xfe\nmore\n", 19));
  EXPECT_TRUE(service().log_requests().back().follow());
  EXPECT_EQ(service().log_requests().back().attempt(), 0);

  EXPECT_EQ(App({"logs", "3f2a9c01d4e5b677.2", "--which", "stdout"}), kExitUsage);
}

TEST_F(CliTest, LogsOfAnInvocationIdIsTheControllersError) {
  EXPECT_EQ(App({"logs", "3f2a"}), kExitUsage);
  EXPECT_EQ(err_.str(),
            "evalctl: logs belong to a task; \"3f2a\" names an invocation (use "
            "<invocation>.<index>)\n");
}

// --- kill, resume

TEST_F(CliTest, KillCancelsWhatRunsAndReportsTheRest) {
  ASSERT_TRUE(KillCommand(*client_, "3f2a", io()).ok());
  EXPECT_THAT(out_.str(), StartsWith("Cancel requested for 1 task(s); 2 had already finished.\n"));
  EXPECT_THAT(out_.str(), ::testing::ContainsRegex("3f2a9c01d4e5b677.0  hellaswag +cancelled"));
  EXPECT_THAT(out_.str(), ::testing::ContainsRegex("3f2a9c01d4e5b677.1  arc_challenge +succeeded"));
  EXPECT_THAT(service().received_ids(), ElementsAre("3f2a"));
}

TEST_F(CliTest, ResumeStartsFailedTasksAndListsSkippedOnes) {
  ASSERT_TRUE(ResumeCommand(*client_, "3f2a", io()).ok());
  const std::string out = out_.str();
  EXPECT_THAT(out, StartsWith("Resumed 1 task(s)"));
  EXPECT_THAT(out, ::testing::ContainsRegex("3f2a9c01d4e5b677.2  gsm8k +pending .* 3 "));
  EXPECT_THAT(out, HasSubstr("Skipped 2 task(s):"));
  EXPECT_THAT(out, HasSubstr("3f2a9c01d4e5b677.0  still active"));
  EXPECT_THAT(out, HasSubstr("3f2a9c01d4e5b677.1  succeeded"));

  EXPECT_EQ(App({"resume", "3f2a9c01d4e5b677.1"}), kExitError);
  EXPECT_EQ(err_.str(), "evalctl: task 3f2a9c01d4e5b677.1 cannot be resumed: succeeded\n");
}

// --- info

TEST_F(CliTest, InfoShowsDirectoriesAttemptsLogsAndConfig) {
  ASSERT_TRUE(InfoCommand(*client_, {.id = "3f2a9c01d4e5b677.2"}, io()).ok()) << err_.str();
  const std::string out = out_.str();
  EXPECT_THAT(out, HasSubstr("Invocation  3f2a9c01d4e5b677\n"));
  EXPECT_THAT(out, HasSubstr("Cluster     eos (login.eos.example.com as alice)\n"));
  EXPECT_THAT(out, HasSubstr("Run dir     /lustre/evals/20270115_080000-3f2a9c01d4e5b677\n"));
  EXPECT_THAT(out, HasSubstr("Task 3f2a9c01d4e5b677.2  gsm8k\n"));
  EXPECT_THAT(out,
              HasSubstr("  Run dir        /lustre/evals/20270115_080000-3f2a9c01d4e5b677/gsm8k\n"));
  EXPECT_THAT(out, ::testing::ContainsRegex("    1 +4244 +TIMEOUT"));
  EXPECT_THAT(out, ::testing::ContainsRegex("    2 +4250 +FAILED .* 1 +- +timeout"));
  EXPECT_THAT(
      out, HasSubstr("      slurm   "
                     "/lustre/evals/20270115_080000-3f2a9c01d4e5b677/gsm8k/logs/slurm-4250.log\n"));
  EXPECT_THAT(
      out,
      HasSubstr("      eval    "
                "/lustre/evals/20270115_080000-3f2a9c01d4e5b677/gsm8k/logs/client-4244.log\n"));
  EXPECT_THAT(out, HasSubstr("Resolved configuration (secrets redacted):\n  execution:\n"
                             "    hostname: login.eos.example.com\n"));
  EXPECT_THAT(out, Not(HasSubstr("hellaswag")));
  EXPECT_THAT(service().received_ids(), ElementsAre("3f2a9c01d4e5b677.2", kInvA));
}

TEST_F(CliTest, InfoJson) {
  ASSERT_TRUE(InfoCommand(*client_, {.id = "3f2a", .json = true}, io()).ok());
  nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j["invocation"]["resolved_config"], "execution:\n  hostname: login.eos.example.com\n");
  EXPECT_EQ(j["invocation"]["tasks"].size(), 3u);
  EXPECT_EQ(j["invocation"]["tasks"][2]["attempts"][0]["logs"]["slurm"],
            "/lustre/evals/20270115_080000-3f2a9c01d4e5b677/gsm8k/logs/slurm-4244.log");
}

// --- results

TEST_F(CliTest, ResultsTable) {
  ASSERT_TRUE(ResultsCommand(*client_, {.id = "3f2a"}, io()).ok());
  EXPECT_EQ(
      out_.str(),
      "Task ID             Name           State      Benchmark      Metric    Score     Value "
      "  Stderr\n"
      "3f2a9c01d4e5b677.0  hellaswag      running    -              -         -         -   "
      "    -\n"
      "3f2a9c01d4e5b677.1  arc_challenge  succeeded  arc_challenge  acc       acc       "
      "0.5123  0.0146\n"
      "3f2a9c01d4e5b677.1  arc_challenge  succeeded  arc_challenge  acc_norm  acc_norm  "
      "0.5487  0.0145\n"
      "3f2a9c01d4e5b677.2  gsm8k          failed     -              -         -         -   "
      "    -\n");
  EXPECT_THAT(err_.str(), HasSubstr("2 task(s) have no results yet"));
}

TEST_F(CliTest, ResultsCsvQuotesWhereNeeded) {
  ASSERT_TRUE(ResultsCommand(*client_, {.id = "5b1c", .format = ResultsFormat::kCsv}, io()).ok());
  EXPECT_EQ(out_.str(),
            "task_id,name,state,benchmark,metric,score,value,stderr\n"
            "5b1c9d00aa12e3f4.0,\"winogrande, xl\",succeeded,winogrande,acc,acc,0.75,0.012\n");
}

TEST_F(CliTest, ResultsJson) {
  EXPECT_EQ(App({"results", "3f2a.1", "--json"}), kExitOk) << err_.str();
  nlohmann::json j = nlohmann::json::parse(out_.str());
  ASSERT_EQ(j["tasks"].size(), 1u);
  EXPECT_EQ(j["tasks"][0]["task_id"], "3f2a9c01d4e5b677.1");
  EXPECT_EQ(j["tasks"][0]["state"], "succeeded");
  EXPECT_DOUBLE_EQ(j["tasks"][0]["scores"][0]["value"].get<double>(), 0.51234);
  EXPECT_DOUBLE_EQ(j["tasks"][0]["scores"][0]["stats"]["stderr"].get<double>(), 0.0146);
  EXPECT_EQ(App({"results", "3f2a", "--json", "--csv"}), kExitUsage);
}

// --- cluster ls

TEST_F(CliTest, ClusterLs) {
  ASSERT_TRUE(ClusterLsCommand(*client_, {}, io()).ok());
  EXPECT_EQ(out_.str(),
            "Cluster  Agent      Slurm  Unix user  Version  Jobs  Last seen            Aliases\n"
            "eos      connected  ok     alice      0.1.0    3     2027-01-15 08:00:00  "
            "login.eos.example.com\n");
  out_.str("");
  ASSERT_TRUE(ClusterLsCommand(*client_, {.json = true}, io()).ok());
  nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j[0]["name"], "eos");
  EXPECT_EQ(j[0]["connected"], true);
  EXPECT_EQ(j[0]["tracked_jobs"], 3);
}

// --- run

TEST_F(CliTest, RunSubmitsWithAFreshRequestIdAndSaysHowToFollow) {
  PrepareSubmission(/*fail_one=*/false);
  EXPECT_EQ(App({"run", "--config", config_path_, "-o", "execution.walltime=02:00:00", "-t",
                 "hellaswag"}),
            kExitOk)
      << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("Submitted invocation aaaabbbbccccdddd: 2 task(s) on "
                                     "cluster eos\n"));
  EXPECT_THAT(out_.str(), HasSubstr("evalctl watch aaaabbbbccccdddd\n"));
  EXPECT_THAT(out_.str(), HasSubstr("evalctl kill aaaabbbbccccdddd\n"));
  const v1::SubmitInvocationRequest r = service().submissions().at(0);
  EXPECT_THAT(r.request_id(), ::testing::MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                                                      "[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_EQ(r.config().yaml(), "execution:\n  hostname: login.eos.example.com\n");
  EXPECT_THAT(r.config().overrides(), ElementsAre("execution.walltime=02:00:00"));
  EXPECT_THAT(r.config().task_filter(), ElementsAre("hellaswag"));

  // Two runs are two submissions.
  EXPECT_EQ(App({"run", "--config", config_path_}), kExitOk);
  EXPECT_NE(service().submissions().at(1).request_id(), r.request_id());
}

TEST_F(CliTest, RunWaitExitsNonZeroWhenATaskFailed) {
  PrepareSubmission(/*fail_one=*/true);
  EXPECT_EQ(App({"run", "--config", config_path_, "--wait"}), kExitTasksFailed) << err_.str();
  const std::string out = out_.str();
  // Plain line updates, then the final table and the results.
  EXPECT_THAT(out, HasSubstr("aaaabbbbccccdddd.0  hellaswag  queued  attempt 1  job 5001\n"));
  EXPECT_THAT(
      out, HasSubstr("aaaabbbbccccdddd.0  hellaswag  running  50/100 50%  attempt 1  job 5001\n"));
  EXPECT_THAT(out, HasSubstr("Invocation aaaabbbbccccdddd finished: 1 succeeded, 1 failed\n"));
  EXPECT_THAT(out, ::testing::ContainsRegex("aaaabbbbccccdddd.1  gsm8k +failed"));
  EXPECT_THAT(out, HasSubstr("\nResults:\n"));
  EXPECT_THAT(out, Not(HasSubstr("\x1b[")));
  EXPECT_EQ(err_.str(),
            "(2 task(s) have no results yet: they have not succeeded, or results.yml was not "
            "read)\n"
            "evalctl: 1 of 2 task(s) did not succeed: aaaabbbbccccdddd.1 failed\n");
}

TEST_F(CliTest, RunWaitExitsZeroWhenEveryTaskSucceeded) {
  PrepareSubmission(/*fail_one=*/false);
  EXPECT_EQ(App({"run", "--config", config_path_, "--wait"}), kExitOk) << err_.str();
}

TEST_F(CliTest, RunWaitRedrawsInPlaceOnATerminal) {
  PrepareSubmission(/*fail_one=*/true);
  v1::ConfigSource source;
  source.set_yaml("x: 1\n");
  Io tty{out_, err_, /*tty=*/true, /*width=*/90, absl::UTCTimeZone()};
  absl::StatusOr<RunOutcome> outcome =
      RunCommand(*client_, source, {.request_id = "r1", .wait = true}, tty);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_FALSE(outcome->all_succeeded);
  const std::string out = out_.str();
  EXPECT_THAT(out, HasSubstr("\x1b[4F\x1b[J"));  // back over the header, table header and 2 rows
  // The bar shrinks from 20 characters so that the row fits 89 columns.
  EXPECT_THAT(out, ::testing::ContainsRegex(
                       "aaaabbbbccccdddd.0  hellaswag  running  -      \\[#######-------\\]  50%  "
                       "1         5001\n"));
  // The final table is complete, reasons included.
  EXPECT_THAT(out, HasSubstr("Invocation aaaabbbbccccdddd finished: 1 succeeded, 1 failed\n"
                             "Task ID             Name       State      Phase  Progress      "
                             "Attempts  Slurm job  Reason\n"));
  EXPECT_THAT(out, HasSubstr("Invocation aaaabbbbccccdddd: 1 queued, 1 running\n"));
  // Live rows are cut one column short of the terminal's width, so that nothing wraps.
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::StrContains(line, "[#") || absl::StrContains(line, "[-")) {
      EXPECT_LE(line.size(), 89u) << line;
    }
  }
  EXPECT_EQ(service().submissions().at(0).request_id(), "r1");
}

TEST_F(CliTest, RunWithoutAnAgentShowsTheControllersExplanation) {
  EXPECT_EQ(App({"run", "--config", config_path_}), kExitError);
  EXPECT_EQ(err_.str(),
            "evalctl: no agent serves cluster \"login.eos.example.com\"; connected clusters: "
            "(none)\n");
}

// --- errors and help

TEST_F(CliTest, UnreachableControllerIsOneClearLineWithinTheDeadline) {
  const std::string target = absl::StrCat("127.0.0.1:", client::testing::ClosedLoopbackPort());
  const absl::Time start = absl::Now();
  EXPECT_EQ(RunApp({"evalctl", "--controller", target, "--timeout", "5s", "status", "3f2a"}, io()),
            kExitError);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(err_.str(), absl::StrCat("evalctl: cannot reach evalctl-controller at ", target,
                                     " (connection refused); start it or pass --controller / set "
                                     "EVALCTL_CONTROLLER\n"));
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CliTest, ExpiredDeadlineIsAnError) {
  service().SetUnaryDelay(absl::Seconds(5));
  const absl::Time start = absl::Now();
  EXPECT_EQ(App({"--timeout", "300ms", "status", "3f2a"}), kExitError);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(err_.str(), absl::StrCat("evalctl: evalctl-controller at ", server_.address(),
                                     " did not answer within 300ms (deadline exceeded)\n"));
}

TEST_F(CliTest, TokenTravelsAsBearerMetadata) {
  EXPECT_EQ(App({"--token", "tok123", "cluster", "ls"}), kExitOk);
  EXPECT_THAT(service().authorizations(), ElementsAre("Bearer tok123"));
}

TEST_F(CliTest, GlobalFlagsAlsoWorkAfterTheCommand) {
  EXPECT_EQ(RunApp({"evalctl", "status", "3f2a", "--controller", server_.address()}, io()), kExitOk)
      << err_.str();
}

TEST_F(CliTest, UsageErrorsAreOneLineAndExitTwo) {
  EXPECT_EQ(App({"logs"}), kExitUsage);
  EXPECT_EQ(err_.str(), "evalctl: id is required (see `evalctl logs --help`)\n");
  err_.str("");
  EXPECT_EQ(App({"frobnicate"}), kExitUsage);
  const std::string err = err_.str();
  EXPECT_EQ(err, "evalctl: A subcommand is required (see `evalctl --help`)\n");
  err_.str("");
  EXPECT_EQ(App({"run", "--config", (dir_ / "missing.yaml").string()}), kExitUsage);
  EXPECT_EQ(err_.str(),
            absl::StrCat("evalctl: ", (dir_ / "missing.yaml").string(), ": no such file\n"));
  err_.str("");
  EXPECT_EQ(App({"--timeout", "soon", "status"}), kExitUsage);
  EXPECT_THAT(err_.str(), StartsWith("evalctl: bad duration \"soon\""));
  err_.str("");
  EXPECT_EQ(App({"--ca-cert", "/nonexistent/ca.pem", "status"}), kExitUsage);
  EXPECT_EQ(err_.str(), "evalctl: CA certificate /nonexistent/ca.pem: no such file\n");
}

TEST_F(CliTest, EveryCommandHasHelpWithAnExample) {
  const std::vector<std::vector<std::string>> commands = {
      {},       {"run"},  {"status"}, {"ls"},   {"ls", "runs"}, {"ls", "tasks"}, {"watch"},
      {"logs"}, {"kill"}, {"resume"}, {"info"}, {"results"},    {"cluster"},     {"cluster", "ls"}};
  for (std::vector<std::string> args : commands) {
    args.insert(args.begin(), "evalctl");
    args.push_back("--help");
    out_.str("");
    EXPECT_EQ(RunApp(args, io()), kExitOk) << absl::StrJoin(args, " ");
    EXPECT_THAT(out_.str(), HasSubstr("Example:\n  evalctl ")) << absl::StrJoin(args, " ");
  }
}

TEST_F(CliTest, DryRunStillWorksWithoutAController) {
  std::ofstream(config_path_)
      << "execution:\n  hostname: login.eos.example.com\n  account: a\n"
         "  output_dir: /lustre/evals\n"
         "deployment:\n  type: none\n"
         "target:\n  api_endpoint:\n    url: http://m:8000/v1/chat/completions\n"
         "    model_id: m\n"
         "evaluation:\n  tasks:\n    - name: hellaswag\n";
  EXPECT_EQ(RunApp({"evalctl", "--controller", "127.0.0.1:1", "run", "--config", config_path_,
                    "--dry-run"},
                   io()),
            kExitOk)
      << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("# Resolved configuration (secrets redacted)\n"));
  EXPECT_THAT(out_.str(), HasSubstr("#!/bin/bash"));
  EXPECT_TRUE(service().submissions().empty());
}

// Sets an environment variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The complete example of the seed documentation (NEL's Slurm executor page, the YAML block with
// a `defaults:` list and HF_TOKEN), from the repository's copy of that page.
std::string SeedCompleteExample() {
  std::ifstream in(fs::path(EVALCTL_SOURCE_DIR) / "controller/config/testdata/seed/slurm-executor.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  std::string found;
  for (size_t at = doc.find("```yaml\n"); at != std::string::npos;
       at = doc.find("```yaml\n", at + 1)) {
    const size_t start = at + 8;
    const size_t end = doc.find("```", start);
    if (end == std::string::npos) break;
    const std::string block = doc.substr(start, end - start);
    if (absl::StrContains(block, "defaults:") && absl::StrContains(block, "${oc.env:HF_TOKEN}")) {
      EXPECT_TRUE(found.empty()) << "two complete examples in the seed";
      found = block;
    }
  }
  return found;
}

// `evalctl run --dry-run --render-dir DIR` on the seed's complete example, with HF_TOKEN set: the
// files land in DIR (config.yaml, and <task>/run.sub with its sbatch environment listing per task)
// and the token's value is in none of them, nor on stdout or stderr, as text, hex or base64.
TEST_F(CliTest, DryRunRenderDirWritesTheJobsOfTheSeedExampleWithoutTheSecret) {
  const std::string example = SeedCompleteExample();
  ASSERT_THAT(example, HasSubstr("HF_TOKEN: ${oc.env:HF_TOKEN}"));
  std::string token = "hf_";
  std::mt19937_64 rng(std::random_device{}());
  const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  for (int i = 0; i < 34; ++i) token += alphabet[rng() % (sizeof(alphabet) - 1)];
  ScopedEnv hf_token("HF_TOKEN", token);
  ScopedEnv user("USER", "alice");
  const std::string config = (dir_ / "slurm_llama_3_1_8b_instruct.yaml").string();
  std::ofstream(config) << example;
  const fs::path render_dir = dir_ / "rendered";

  ASSERT_EQ(RunApp({"evalctl", "--controller", "127.0.0.1:1", "run", "--config", config,
                    "--dry-run", "--render-dir", render_dir.string()},
                   io()),
            kExitOk)
      << err_.str();
  EXPECT_TRUE(service().submissions().empty());

  // Exactly these files.
  std::set<std::string> files;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(render_dir)) {
    if (e.is_regular_file()) files.insert(fs::relative(e.path(), render_dir).string());
  }
  const std::vector<std::string> tasks = {"hellaswag", "arc_challenge", "winogrande"};
  std::set<std::string> expected = {"config.yaml"};
  for (const std::string& t : tasks) {
    expected.insert(t + "/run.sub");
    expected.insert(t + "/env");
  }
  EXPECT_EQ(files, expected);

  auto read = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  const std::string config_yaml = read(render_dir / "config.yaml");
  EXPECT_THAT(config_yaml, HasSubstr("hf_model_handle: meta-llama/Llama-3.1-8B-Instruct"));
  EXPECT_THAT(config_yaml, HasSubstr("HF_TOKEN: <secret> from $HF_TOKEN"));
  for (const std::string& t : tasks) {
    SCOPED_TRACE(t);
    const std::string script = read(render_dir / t / "run.sub");
    EXPECT_THAT(script, StartsWith("#!/bin/bash\n#SBATCH --time=04:00:00\n"));
    EXPECT_THAT(script, HasSubstr("#SBATCH --account=your_account\n"));
    EXPECT_THAT(script, HasSubstr("#SBATCH --partition=gpu\n"));
    EXPECT_THAT(script, HasSubstr("#SBATCH --gpus-per-node=8\n"));
    EXPECT_THAT(script, HasSubstr(absl::StrCat("/", t, "/logs/slurm-%j.log\n")));
    EXPECT_THAT(script, HasSubstr("vllm serve meta-llama/Llama-3.1-8B-Instruct "));
    // The token travels by name: sbatch's environment, exported in the deployment step.
    EXPECT_THAT(script, HasSubstr("export HF_TOKEN=\"${EVALCTL_SECRET_DEP_HF_TOKEN}\"\n"));
    EXPECT_NE(fs::status(render_dir / t / "run.sub").permissions() & fs::perms::owner_exec,
              fs::perms::none);
    EXPECT_EQ(read(render_dir / t / "env"), "EVALCTL_SECRET_DEP_HF_TOKEN=<secret>\n");
    // Each script is on stdout too.
    EXPECT_THAT(out_.str(), HasSubstr(script));
  }
  EXPECT_THAT(out_.str(), HasSubstr(absl::StrCat("# Written to ", render_dir.string(), "\n")));

  // The token's value, anywhere.
  const std::vector<std::string> forms = {token, absl::BytesToHexString(token),
                                          absl::Base64Escape(token)};
  std::vector<std::pair<std::string, std::string>> outputs = {{"stdout", out_.str()},
                                                              {"stderr", err_.str()}};
  for (const std::string& f : files) outputs.emplace_back(f, read(render_dir / f));
  for (const auto& [name, text] : outputs) {
    for (const std::string& form : forms) {
      EXPECT_THAT(text, Not(HasSubstr(form))) << name << " holds the token";
    }
  }
}

}  // namespace
}  // namespace evalctl::cli
