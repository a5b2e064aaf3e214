#include "common/subprocess.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>

#include "common/testing/wait_for.h"
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

TEST(RunSubprocessTest, DieWithParentBehavesLikePosixSpawn) {
  ::setenv("EVALCTL_TEST_INHERITED", "inherited", 1);
  auto r = RunSubprocess(
      {.argv = {"sh", "-c",
                "cat; printf '%s %s ' \"$EVALCTL_TEST_SECRET\" \"$EVALCTL_TEST_INHERITED\"; pwd; "
                "echo err >&2; [ \"$(ps -o pgid= -p $$ | tr -d ' ')\" = $$ ] && exit 3"},
       .env = {{"EVALCTL_TEST_SECRET", "s3cr3t"}},
       .stdin_data = "from stdin\n",
       .working_dir = "/tmp",
       .die_with_parent = true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "from stdin\ns3cr3t inherited /tmp\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  EXPECT_EQ(r->exit_code, 3);  // its own process group
  // SIGPIPE is the default action again (this process may ignore it).
  ::signal(SIGPIPE, SIG_IGN);
  r = RunSubprocess({.argv = {"sh", "-c", "kill -PIPE $$; echo survived"}, .die_with_parent = true});
  ::signal(SIGPIPE, SIG_DFL);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->term_signal, SIGPIPE);

  r = RunSubprocess({.argv = {"sh", "-c", "sleep 30 & sleep 30"},
                     .timeout = absl::Milliseconds(200),
                     .kill_grace = absl::Milliseconds(200),
                     .die_with_parent = true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_LT(r->elapsed, absl::Seconds(5));

  auto missing = RunSubprocess({.argv = {"evalctl-no-such-program"}, .die_with_parent = true});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto bad_dir = RunSubprocess(
      {.argv = {"true"}, .working_dir = "/nonexistent-evalctl-dir", .die_with_parent = true});
  EXPECT_FALSE(bad_dir.ok());
}

// A process that runs a child with RunSubprocess is killed: the child dies with it when
// die_with_parent is set, and lives on (reparented) otherwise.
bool ChildOutlivesKilledParent(bool die_with_parent) {
  const std::string pid_file = ::testing::TempDir() + "/subprocess_orphan_" +
                               std::to_string(::getpid()) + (die_with_parent ? "_dies" : "_lives");
  std::remove(pid_file.c_str());
  const pid_t parent = ::fork();
  if (parent == 0) {
    (void)RunSubprocess({.argv = {"sh", "-c", "echo $$ > '" + pid_file + ".tmp'; mv '" +
                                                  pid_file + ".tmp' '" + pid_file +
                                                  "'; exec sleep 60"},
                         .timeout = absl::Seconds(60),
                         .die_with_parent = die_with_parent});
    ::_exit(0);
  }
  pid_t child = 0;
  testing::WaitFor(
      [&] {
        std::ifstream f(pid_file);
        if (!(f >> child)) child = 0;
        return child != 0;
      },
      absl::Seconds(5));
  EXPECT_GT(child, 0) << "the child never started";
  ::kill(parent, SIGKILL);
  ::waitpid(parent, nullptr, 0);
  // Alive: its /proc entry exists and it is not a zombie waiting for its new parent to reap it.
  auto alive = [&] {
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string pid, comm, state;
    return stat >> pid >> comm >> state && state != "Z" && state != "X";
  };
  const bool lives = child > 0 && testing::StaysTrueFor(alive, absl::Seconds(2));
  if (lives) ::kill(child, SIGKILL);
  std::remove(pid_file.c_str());
  return lives;
}

TEST(RunSubprocessTest, DieWithParentChildDoesNotOutliveAKilledParent) {
  EXPECT_FALSE(ChildOutlivesKilledParent(/*die_with_parent=*/true));
  // Without it the child lives on: what the option is for.
  EXPECT_TRUE(ChildOutlivesKilledParent(/*die_with_parent=*/false));
}

}  // namespace
}  // namespace evalctl
