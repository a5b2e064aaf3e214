// Unit tests of the CLI's formatting and settings helpers.
#include "clients/cli/format.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "clients/cli/settings.h"
#include "clients/cli/token_commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::cli {
namespace {

namespace fs = std::filesystem;

v1::Progress P(int64_t done, int64_t total) {
  v1::Progress p;
  p.set_done(done);
  p.set_total(total);
  return p;
}

TEST(FormatTest, Names) {
  EXPECT_EQ(StateName(v1::TASK_STATE_BUDGET_EXHAUSTED), "budget_exhausted");
  EXPECT_EQ(StateName(v1::TASK_STATE_UNSPECIFIED), "-");
  EXPECT_EQ(PhaseName(v1::PHASE_WAITING_FOR_ENDPOINT), "waiting_for_endpoint");
  EXPECT_EQ(EventKindName(v1::TaskEvent::KIND_STATE_CHANGED), "state_changed");
  EXPECT_EQ(ResumeReasonName(v1::RESUME_REASON_NODE_FAIL), "node_fail");
  v1::Task t;
  t.set_state(v1::TASK_STATE_RUNNING);
  t.set_cancel_requested(true);
  EXPECT_EQ(DisplayState(t), "cancelling");
  t.set_state(v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(DisplayState(t), "cancelled");
}

TEST(FormatTest, Progress) {
  EXPECT_EQ(ProgressText(P(0, 0)), "-");
  EXPECT_EQ(ProgressText(P(42, 0)), "42");
  EXPECT_EQ(ProgressText(P(120, 1000)), "120/1000 12%");
  EXPECT_EQ(ProgressText(P(2000, 1000)), "2000/1000 100%");
  EXPECT_EQ(ProgressBar(P(250, 1000), 20), "[#####---------------]  25%");
  EXPECT_EQ(ProgressBar(P(1000, 1000), 10), "[##########] 100%");
  EXPECT_EQ(ProgressBar(P(0, 0), 4), "[    ] -");
  EXPECT_EQ(ProgressBar(P(7, 0), 4), "[    ] 7");
}

TEST(FormatTest, TimesAndDurations) {
  google::protobuf::Timestamp ts;
  EXPECT_EQ(FormatTimestamp(ts, absl::UTCTimeZone()), "-");
  EXPECT_TRUE(TimestampJson(ts).is_null());
  ts.set_seconds(1'800'000'000);
  EXPECT_EQ(FormatTimestamp(ts, absl::UTCTimeZone()), "2027-01-15 08:00:00");
  EXPECT_EQ(TimestampJson(ts), "2027-01-15T08:00:00Z");
  EXPECT_EQ(FormatSeconds(45), "45s");
  EXPECT_EQ(FormatSeconds(725), "12m05s");
  EXPECT_EQ(FormatSeconds(7380), "2h03m");
  EXPECT_EQ(FormatSeconds(273600), "3d04h");
}

TEST(FormatTest, TableAlignsUtf8AndCutsNothing) {
  Table t({"A", "Bee", "C"});
  t.AddRow({"größe", "x", "last column is not padded"});
  t.AddRow({"z", "", ""});
  EXPECT_EQ(t.Lines(), (std::vector<std::string>{"A      Bee  C",
                                                 "größe  x    last column is not padded", "z"}));
  EXPECT_EQ(Cell(" two\nlines\t"), "two lines");
  EXPECT_EQ(Cell(""), "-");
  EXPECT_EQ(TruncateToWidth("größe", 3), "grö");
  EXPECT_EQ(TruncateToWidth("abc", 0), "abc");
}

TEST(FormatTest, CsvField) {
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(CsvField("two\nlines"), "\"two\nlines\"");
}

TEST(FormatTest, JsonOfInvalidUtf8DoesNotThrow) {
  v1::Task t;
  t.set_name("bad \xff name");
  EXPECT_EQ(nlohmann::json::parse(DumpJson(ToJson(t)))["name"], "bad \xef\xbf\xbd name");
}

TEST(FormatTest, CountsSummary) {
  v1::TaskCounts c;
  EXPECT_EQ(CountsSummary(c), "no tasks");
  c.set_running(2);
  c.set_failed(1);
  EXPECT_EQ(CountsSummary(c), "2 running, 1 failed");
  EXPECT_EQ(TotalTasks(c), 3);
}

TEST(SettingsTest, ParseTimeout) {
  EXPECT_EQ(*ParseTimeout("10s"), absl::Seconds(10));
  EXPECT_EQ(*ParseTimeout("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseTimeout("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseTimeout("2.5"), absl::Milliseconds(2500));
  EXPECT_EQ(ParseTimeout("0").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTimeout("soon").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SettingsTest, ParseSince) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  const absl::TimeZone utc = absl::UTCTimeZone();
  EXPECT_EQ(*ParseSince("6h", now, utc), now - absl::Hours(6));
  EXPECT_EQ(*ParseSince("1d", now, utc), now - absl::Hours(24));
  EXPECT_EQ(*ParseSince("2w", now, utc), now - absl::Hours(24 * 14));
  EXPECT_EQ(*ParseSince("30m", now, utc), now - absl::Minutes(30));
  EXPECT_EQ(*ParseSince("2027-01-15", now, utc), now - absl::Hours(8));
  EXPECT_EQ(*ParseSince("2027-01-15T08:00", now, utc), now);
  EXPECT_EQ(*ParseSince("2027-01-15 08:00:00", now, utc), now);
  EXPECT_EQ(*ParseSince("2027-01-15T08:00:00Z", now, utc), now);
  EXPECT_EQ(*ParseSince("2027-01-15T10:00:00+02:00", now, utc), now);
  absl::TimeZone berlin;
  ASSERT_TRUE(absl::LoadTimeZone("Europe/Berlin", &berlin));
  EXPECT_EQ(*ParseSince("2027-01-15T09:00:00", now, berlin), now);
  EXPECT_EQ(ParseSince("yesterday", now, utc).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSince("6x", now, utc).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SettingsTest, ResolveControllerOrder) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("evalctl_settings_", ::getpid());
  fs::create_directories(dir);
  const std::string file = (dir / "config.yaml").string();
  std::ofstream(file) << "controller: ctl.example.com:443\n";
  EXPECT_EQ(*ResolveController("flag:1", "env:2", file), "flag:1");
  EXPECT_EQ(*ResolveController("", "env:2", file), "env:2");
  EXPECT_EQ(*ResolveController("", "", file), "ctl.example.com:443");
  EXPECT_EQ(*ResolveController("", nullptr, file), "ctl.example.com:443");
  EXPECT_EQ(*ResolveController("", nullptr, (dir / "none.yaml").string()), kDefaultController);
  std::ofstream(file) << "# nothing set\n";
  EXPECT_EQ(*ResolveController("", nullptr, file), kDefaultController);
  std::ofstream(file) << "controller: [a, b\n";
  absl::StatusOr<std::string> bad = ResolveController("", nullptr, file);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), ::testing::StartsWith(file + ":"));
  std::ofstream(file) << "controller:\n  host: x\n";
  EXPECT_THAT(std::string(ResolveController("", nullptr, file).status().message()),
              ::testing::HasSubstr("`controller` must be an address"));
  fs::remove_all(dir);
}

TEST(SettingsTest, TokenLifetimes) {
  EXPECT_EQ(*ParseTtl("never"), absl::InfiniteDuration());
  EXPECT_EQ(*ParseTtl("0"), absl::InfiniteDuration());
  EXPECT_EQ(*ParseTtl("90d"), absl::Hours(24 * 90));
  EXPECT_EQ(*ParseTtl("2W"), absl::Hours(24 * 14));
  EXPECT_EQ(*ParseTtl("12h"), absl::Hours(12));
  EXPECT_EQ(*ParseTtl("1h30m"), absl::Minutes(90));
  for (const char* bad : {"", "5x", "-1h", "d", "1.5d", "-3d"}) {
    absl::StatusOr<absl::Duration> ttl = ParseTtl(bad);
    EXPECT_EQ(ttl.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(ttl.status().message()), ::testing::HasSubstr("--ttl")) << bad;
  }
}

}  // namespace
}  // namespace evalctl::cli
