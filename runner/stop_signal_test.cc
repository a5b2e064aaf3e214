#include "runner/stop_signal.h"

#include "gtest/gtest.h"

namespace evalctl::runner {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);
constexpr absl::Duration kWindow = absl::Seconds(1);

TEST(StopSignalTest, SignalRepeatedWithinTheWindowIsTheSameStop) {
  StopSignal stop;
  EXPECT_TRUE(stop.RequestBySignal("received SIGTERM", kT0, kWindow));
  EXPECT_FALSE(stop.RequestBySignal("received SIGTERM", kT0 + absl::Milliseconds(4), kWindow));
  EXPECT_TRUE(stop.requested());
  EXPECT_EQ(stop.request_count(), 1);
  EXPECT_EQ(stop.reason(), "received SIGTERM");
}

TEST(StopSignalTest, SignalAfterTheWindowMeansHurry) {
  StopSignal stop;
  EXPECT_TRUE(stop.RequestBySignal("received SIGUSR1", kT0, kWindow));
  EXPECT_TRUE(stop.RequestBySignal("received SIGTERM", kT0 + kWindow, kWindow));
  EXPECT_EQ(stop.request_count(), 2);
  EXPECT_EQ(stop.reason(), "received SIGUSR1");
}

TEST(StopSignalTest, PlainRequestsAlwaysCount) {
  StopSignal stop;
  stop.Request("first");
  stop.Request("second");
  EXPECT_EQ(stop.request_count(), 2);
  EXPECT_EQ(stop.reason(), "first");
}

}  // namespace
}  // namespace evalctl::runner
