#include "common/subprocess.h"

#include <csignal>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl {
namespace {

using ::testing::HasSubstr;

TEST(RunSubprocessTest, CapturesStdoutStderrAndExitCode) {
  auto r = RunSubprocess({.argv = {"sh", "-c", "echo out; echo err >&2; exit 3"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  EXPECT_FALSE(r->ok());
  EXPECT_THAT(r->Check("probe").message(), HasSubstr("probe exited with status 3: err"));
}

TEST(RunSubprocessTest, ArgumentsAreNotInterpretedByAShell) {
  auto r = RunSubprocess({.argv = {"printf", "%s|", "$(id)", "a b", ";rm -rf /"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "$(id)|a b|;rm -rf /|");
}

TEST(RunSubprocessTest, EnvironmentReachesTheChildOnly) {
  auto r = RunSubprocess({.argv = {"sh", "-c", "printf %s \"$EVALCTL_TEST_SECRET\""},
                          .env = {{"EVALCTL_TEST_SECRET", "s3cr3t value"}}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "s3cr3t value");
}

TEST(RunSubprocessTest, ClearEnvDropsInheritedVariables) {
  ::setenv("EVALCTL_TEST_INHERITED", "1", 1);
  auto r = RunSubprocess({.argv = {"/usr/bin/env"}, .clear_env = true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->stdout_data, ::testing::Not(HasSubstr("EVALCTL_TEST_INHERITED")));
}

TEST(RunSubprocessTest, FeedsStdin) {
  std::string big(300000, 'x');
  auto r = RunSubprocess({.argv = {"wc", "-c"}, .stdin_data = big});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::stoi(r->stdout_data), 300000);
}

TEST(RunSubprocessTest, WorkingDirectory) {
  auto r = RunSubprocess({.argv = {"pwd"}, .working_dir = "/tmp"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "/tmp\n");
}

TEST(RunSubprocessTest, TimeoutKillsTheWholeProcessGroup) {
  auto r = RunSubprocess({.argv = {"sh", "-c", "sleep 30 & sleep 30; echo never"},
                          .timeout = absl::Milliseconds(200),
                          .kill_grace = absl::Milliseconds(200)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->term_signal, SIGTERM);
  EXPECT_LT(r->elapsed, absl::Seconds(5));
  EXPECT_EQ(r->Check("sleeper").code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(RunSubprocessTest, IgnoredTermIsFollowedByKill) {
  auto r = RunSubprocess({.argv = {"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"},
                          .timeout = absl::Milliseconds(100),
                          .kill_grace = absl::Milliseconds(200)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->term_signal, SIGKILL);
}

TEST(RunSubprocessTest, BackgroundGrandchildDoesNotBlockTheCaller) {
  auto r = RunSubprocess({.argv = {"sh", "-c", "(sleep 5 &) ; echo done"},
                          .timeout = absl::Seconds(4)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->stdout_data, "done\n");
}

TEST(RunSubprocessTest, OutputIsCapped) {
  auto r = RunSubprocess({.argv = {"head", "-c", "100000", "/dev/zero"}, .max_output_bytes = 1000});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data.size(), 1000u);
  EXPECT_TRUE(r->truncated);
}

TEST(RunSubprocessTest, MissingProgramIsNotFound) {
  auto r = RunSubprocess({.argv = {"evalctl-no-such-program"}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("evalctl-no-such-program"));
}

}  // namespace
}  // namespace evalctl
