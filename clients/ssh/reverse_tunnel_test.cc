// ReverseTunnel against a real sshd: it comes up, carries bytes, and comes back on the same
// remote port after its SSH connection is killed.
#include "clients/ssh/reverse_tunnel.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "clients/ssh/testing/echo_server.h"
#include "clients/ssh/testing/test_sshd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::ssh {
namespace {

using ::evalctl::ssh::testing::EchoServer;
using ::evalctl::ssh::testing::Eventually;
using ::evalctl::ssh::testing::RoundTrip;
using ::evalctl::ssh::testing::TestSshd;
using ::testing::HasSubstr;

// A port nothing listens on right now.
int UnusedPort() {
  EchoServer probe;
  return probe.port();
}

TEST(ReverseTunnelTest, ReconnectsOnTheSamePortAfterTheConnectionDrops) {
  auto sshd = TestSshd::Start();
  ASSERT_TRUE(sshd.ok()) << sshd.status();
  EchoServer echo;
  absl::Mutex mu;
  std::vector<std::string> events;
  const int remote_port = UnusedPort();
  ReverseTunnel tunnel({.ssh = (*sshd)->Options(),
                        .remote_port = remote_port,
                        .target_host = "127.0.0.1",
                        .target_port = echo.port(),
                        .initial_backoff = absl::Milliseconds(200),
                        .max_backoff = absl::Seconds(1),
                        .on_event = [&](const std::string& line) {
                          absl::MutexLock lock(&mu);
                          events.push_back(line);
                        }});
  std::atomic<bool> stop{false};
  absl::Status result;
  std::thread runner([&] { result = tunnel.Run(nullptr, stop); });

  ASSERT_TRUE(Eventually([&] { return tunnel.up(); }, absl::Seconds(10)));
  auto r = RoundTrip(remote_port, "first");
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) {
    EXPECT_EQ(*r, "first");
  }

  (*sshd)->DropConnections();
  EXPECT_TRUE(Eventually([&] { return tunnel.established() >= 2 && tunnel.up(); },
                        absl::Seconds(15)));
  // The first attempts may find the port still held by the dying session; a retry gets it.
  bool carried = Eventually(
      [&] {
        auto again = RoundTrip(remote_port, "second", absl::Seconds(2));
        return again.ok() && *again == "second";
      },
      absl::Seconds(10));
  EXPECT_TRUE(carried);

  stop = true;
  runner.join();
  EXPECT_TRUE(result.ok()) << result;
  absl::MutexLock lock(&mu);
  ASSERT_GE(events.size(), 3u);
  EXPECT_THAT(events[0], HasSubstr("tunnel up"));
  EXPECT_THAT(events[1], HasSubstr("tunnel down"));
  EXPECT_THAT(events[1], HasSubstr("reconnecting in"));
}

TEST(ReverseTunnelTest, GivesUpOnAHostKeyItCannotTrust) {
  auto sshd = TestSshd::Start();
  ASSERT_TRUE(sshd.ok()) << sshd.status();
  SshOptions options = (*sshd)->Options();
  options.known_hosts_file = (*sshd)->dir() + "/empty_known_hosts";
  ReverseTunnel tunnel({.ssh = options, .remote_port = UnusedPort(), .target_host = "127.0.0.1",
                        .target_port = 1, .on_event = [](const std::string&) {}});
  std::atomic<bool> stop{false};
  absl::Status s = tunnel.Run(nullptr, stop);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(tunnel.established(), 0);
}

}  // namespace
}  // namespace evalctl::ssh
