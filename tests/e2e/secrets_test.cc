// A secret from the submitter's environment (`host:E2E_SECRET`) reaches the job and nothing else:
// not the controller's state, not the agent's journal (its secret store is the one place allowed),
// not the run directory, not a log of either service, not an event. Jobs run on node1.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Sha256(const std::string& data) {
  auto r = RunSubprocess({.argv = {"sha256sum"}, .stdin_data = data});
  if (!r.ok() || !r->ok()) return "sha256sum failed";
  return r->stdout_data.substr(0, r->stdout_data.find(' '));
}

TEST(E2eSecretsTest, SecretReachesTheJobAndNothingElse) {
  ::evalctl::testing::RequireCluster();
  if (::testing::Test::HasFatalFailure()) return;
  E2eEnv env;
  // Debug logging: the most the services ever log.
  E2E_ASSERT_OK(env.StartController({{"EVALCTL_LOG_LEVEL", "debug"}}));
  E2E_ASSERT_OK(env.StartAgent({{"EVALCTL_LOG_LEVEL", "debug"}}));

  absl::BitGen gen;
  const std::string secret = absl::StrFormat("e2e-secret-%016x%016x", absl::Uniform<uint64_t>(gen),
                                             absl::Uniform<uint64_t>(gen));
  RunConfig config;
  config.tasks.push_back(
      {.name = "secretive",
       .command = absl::StrCat(
           "if [ -z \"$MY_SECRET\" ]; then echo \"e2e: MY_SECRET is missing\"; exit 4; fi\n",
           "echo \"e2e: secret sha256 $(printf %s \"$MY_SECRET\" | sha256sum | cut -d' ' -f1)\"\n",
           WriteResultsCommand("secretive")),
       .env_vars = {{"MY_SECRET", "host:E2E_SECRET"}}});
  auto path = env.WriteConfig(config);
  E2E_ASSERT_OK(path);

  // Only the CLI's environment has the value.
  CliResult run =
      env.Cli({"run", "--config", *path, "--wait"}, {{"E2E_SECRET", secret}}, absl::Minutes(3));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  const std::string marker = "Submitted invocation ";
  size_t at = run.out.find(marker);
  ASSERT_NE(at, std::string::npos) << run.out;
  const std::string id = run.out.substr(at + marker.size(), 16);

  auto inv = env.Get(id);
  E2E_ASSERT_OK(inv);
  ASSERT_EQ(inv->tasks_size(), 1);
  const v1::Task& task = inv->tasks(0);
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED) << task.reason();

  // The job had it.
  auto eval_log = env.ReadLog(task.id(), v1::LOG_KIND_EVAL);
  E2E_ASSERT_OK(eval_log);
  EXPECT_THAT(*eval_log, HasSubstr(absl::StrCat("e2e: secret sha256 ", Sha256(secret))));
  EXPECT_THAT(*eval_log, ::testing::Not(HasSubstr("MY_SECRET is missing")));

  // The controller's answers and events.
  EXPECT_FALSE(absl::StrContains(inv->SerializeAsString(), secret));
  EXPECT_THAT(inv->resolved_config(), HasSubstr("E2E_SECRET"));
  auto events = env.WatchAll(id, 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  EXPECT_FALSE(events->empty());
  for (const v1::WatchInvocationResponse& r : *events) {
    EXPECT_FALSE(absl::StrContains(r.SerializeAsString(), secret)) << r.ShortDebugString();
  }
  CliResult status = env.Cli({"status", id, "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_FALSE(absl::StrContains(status.out, secret));
  CliResult info = env.Cli({"info", id, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_FALSE(absl::StrContains(info.out, secret));
  EXPECT_FALSE(absl::StrContains(run.out + run.err, secret));

  // Stop both services so that everything they hold is on disk (SQLite WAL included) and their
  // logs are complete.
  env.KillAgent();
  env.KillController();

  // Every file of the test: controller state, agent state (but its secret store), the run
  // directory (script, logs, artifacts), the config and both services' logs.
  auto secret_store = [](const std::string& p) {
    return absl::StrContains(p, "/agent/secrets.db");
  };
  // The scan itself works: a canary file with the value is found.
  const std::string canary = env.root() + "/canary";
  { std::ofstream(canary) << "x" << secret << "x"; }
  EXPECT_THAT(FilesContaining(env.root(), secret, secret_store), ::testing::ElementsAre(canary));
  std::filesystem::remove(canary);
  EXPECT_THAT(FilesContaining(env.root(), secret, secret_store), IsEmpty());
  // And the places named in the design, one by one, so that a failure says which.
  EXPECT_THAT(FilesContaining(env.controller_state_dir(), secret), IsEmpty());
  EXPECT_THAT(FilesContaining(env.agent_state_dir(), secret, secret_store), IsEmpty());
  EXPECT_THAT(FilesContaining(task.run_dir(), secret), IsEmpty());
  EXPECT_FALSE(absl::StrContains(ReadFileOrEmpty(env.controller_log()), secret));
  EXPECT_FALSE(absl::StrContains(ReadFileOrEmpty(env.agent_log()), secret));
  EXPECT_TRUE(std::filesystem::exists(env.agent_state_dir() + "/journal.db"));
  EXPECT_TRUE(std::filesystem::exists(task.run_dir() + "/run.sub"));
  EXPECT_THAT(ReadFileOrEmpty(task.run_dir() + "/run.sub"), HasSubstr("MY_SECRET"));
}

}  // namespace
}  // namespace evalctl::e2e
