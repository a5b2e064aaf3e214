#include "agent/core/run_files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::agent {
namespace {

using ::testing::HasSubstr;

class RunFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/run_files_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/artifacts");
    std::filesystem::create_directories(dir_ + "/.evalctl");
    std::filesystem::create_directories(dir_ + "/logs");
  }
  void Write(const std::string& rel, const std::string& content) {
    std::ofstream(dir_ + "/" + rel) << content;
  }
  std::string dir_;
};

TEST_F(RunFilesTest, PhaseAndProgress) {
  EXPECT_EQ(ReadPhase(dir_), v1::PHASE_UNSPECIFIED);
  Write(".evalctl/phase", "evaluating\n");
  EXPECT_EQ(ReadPhase(dir_), v1::PHASE_EVALUATING);
  Write(".evalctl/phase", "garbage");
  EXPECT_EQ(ReadPhase(dir_), v1::PHASE_UNSPECIFIED);
  Write("artifacts/progress", "42\n");
  EXPECT_EQ(ReadProgress(dir_), 42);
  Write("artifacts/progress", "-3");
  EXPECT_FALSE(ReadProgress(dir_).has_value());
}

TEST_F(RunFilesTest, ResultsInNemoEvaluatorLayout) {
  Write("artifacts/results.yml", R"(results:
  tasks:
    arithmetic:
      metrics:
        accuracy:
          scores:
            acc:
              value: 0.75
              stats: {stderr: 0.03, count: 200}
  groups:
    all:
      metrics:
        accuracy: {scores: {acc: {value: 0.7}}}
)");
  auto r = ReadResults(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->scores_size(), 2);
  EXPECT_EQ(r->scores(0).task(), "arithmetic");
  EXPECT_EQ(r->scores(0).metric(), "accuracy");
  EXPECT_EQ(r->scores(0).score(), "acc");
  EXPECT_DOUBLE_EQ(r->scores(0).value(), 0.75);
  EXPECT_DOUBLE_EQ(r->scores(0).stats().at("count"), 200);
  EXPECT_THAT(r->results_path(), HasSubstr("artifacts/results.yml"));
}

// Found by tests/fuzz: yaml-cpp lets invalid UTF-8 through, and a string field holding it makes
// the event that carries the results unreadable for the controller.
TEST(ParseResultsTest, NamesAreValidUtf8) {
  // A lone lead byte, a truncated sequence, an overlong '/', a surrogate; then valid UTF-8.
  auto r = ParseResults(
      "results:\n  tasks:\n    ar\xEFthmetic:\n      metrics:\n        acc\xE2\x82:\n"
      "          scores:\n            \xC0\xAF-\xED\xA0\x80: {value: 0.5, stats: {k\xFF: 1}}\n"
      "    caf\xC3\xA9:\n      metrics: {m: {scores: {s: {value: 1}}}}\n");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->scores_size(), 2);
  EXPECT_EQ(r->scores(0).task(), "ar\uFFFDthmetic");
  EXPECT_EQ(r->scores(0).metric(), "acc\uFFFD\uFFFD");
  EXPECT_EQ(r->scores(0).score(), "\uFFFD\uFFFD-\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(r->scores(0).stats().count("k\uFFFD"), 1u);
  EXPECT_EQ(r->scores(1).task(), "caf\u00E9");
  std::string wire;
  ASSERT_TRUE(r->SerializeToString(&wire));
  v1::TaskResults back;
  EXPECT_TRUE(back.ParseFromString(wire));
}

TEST_F(RunFilesTest, HostileResultsAreRefused) {
  Write("artifacts/results.yml", "results: [not, a, map]");
  EXPECT_FALSE(ReadResults(dir_).ok());
  Write("artifacts/results.yml", "{{{{");
  EXPECT_THAT(ReadResults(dir_).status().message(), HasSubstr("not valid YAML"));
  // Huge.
  Write("artifacts/results.yml", std::string(5 << 20, '#'));
  EXPECT_EQ(ReadResults(dir_).status().code(), absl::StatusCode::kResourceExhausted);
  // A symlink pointing outside the run directory is not followed.
  std::filesystem::remove(dir_ + "/artifacts/results.yml");
  std::filesystem::create_symlink("/etc/passwd", dir_ + "/artifacts/results.yml");
  EXPECT_EQ(ReadResults(dir_).status().code(), absl::StatusCode::kPermissionDenied);
  std::filesystem::remove(dir_ + "/.evalctl/phase");
  std::filesystem::create_symlink("/etc/hostname", dir_ + "/.evalctl/phase");
  EXPECT_EQ(ReadPhase(dir_), v1::PHASE_UNSPECIFIED);
}

// A job may replace a directory on the way (artifacts/, .evalctl/, logs/) with a symlink to
// somewhere else; nothing is read through it.
TEST_F(RunFilesTest, SymlinkedDirectoriesAreNotFollowed) {
  const std::string outside = dir_ + "_outside";
  std::filesystem::remove_all(outside);
  std::filesystem::create_directories(outside);
  std::ofstream(outside + "/results.yml") << "results: {tasks: {t: {metrics: {m: {scores: "
                                             "{s: {value: 1}}}}}}}\n";
  std::ofstream(outside + "/progress") << "5\n";
  std::ofstream(outside + "/phase") << "finished\n";
  std::ofstream(outside + "/slurm-7.log") << "private\n";
  for (const char* sub : {"artifacts", ".evalctl", "logs"}) {
    std::filesystem::remove_all(dir_ + "/" + sub);
    std::filesystem::create_directory_symlink(outside, dir_ + "/" + sub);
  }
  EXPECT_EQ(ReadResults(dir_).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(ReadResults(dir_).status().message(), HasSubstr("symbolic link"));
  EXPECT_FALSE(ReadProgress(dir_).has_value());
  EXPECT_EQ(ReadPhase(dir_), v1::PHASE_UNSPECIFIED);
  auto log = ReadLogChunk(LogPath(dir_, v1::LOG_KIND_SLURM, "7"), 0, 100);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ReadRunFile(dir_, "artifacts/../../etc/passwd", 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadLogChunk(dir_ + "/logs/../../passwd", 0, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The run directory itself may be reached through a symlink (a shared filesystem's path).
  const std::string link = dir_ + "_link";
  std::filesystem::remove(link);
  std::filesystem::create_directory_symlink(dir_, link);
  for (const char* sub : {"artifacts", ".evalctl", "logs"}) {
    std::filesystem::remove(dir_ + "/" + sub);
    std::filesystem::create_directories(dir_ + "/" + sub);
  }
  Write("artifacts/progress", "3\n");
  Write("logs/slurm-7.log", "mine\n");
  EXPECT_EQ(ReadProgress(link), 3);
  auto mine = ReadLogChunk(LogPath(link, v1::LOG_KIND_SLURM, "7"), 0, 100);
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_EQ(mine->data(), "mine\n");
  std::filesystem::remove(link);
  std::filesystem::remove_all(outside);
}

TEST_F(RunFilesTest, HostilePhaseAndProgressFiles) {
  Write(".evalctl/phase", std::string(1 << 20, 'x'));
  EXPECT_EQ(ReadPhase(dir_), v1::PHASE_UNSPECIFIED);
  Write(".evalctl/phase", std::string("evaluating\n\0\xff", 13));
  EXPECT_EQ(ReadPhase(dir_), v1::PHASE_UNSPECIFIED);
  for (const char* bad : {"99999999999999999999999", "1e309", "0x10", "12abc", "\xff\xfe", "",
                          "-9223372036854775808"}) {
    Write("artifacts/progress", bad);
    EXPECT_FALSE(ReadProgress(dir_).has_value()) << bad;
  }
  Write("artifacts/progress", std::string(1 << 20, '9'));
  EXPECT_FALSE(ReadProgress(dir_).has_value());
  // A FIFO would block a reader that opened it without O_NONBLOCK.
  std::filesystem::remove(dir_ + "/artifacts/progress");
  ASSERT_EQ(::mkfifo((dir_ + "/artifacts/progress").c_str(), 0600), 0);
  EXPECT_FALSE(ReadProgress(dir_).has_value());
  std::filesystem::remove(dir_ + "/artifacts/results.yml");
  ASSERT_EQ(::mkfifo((dir_ + "/artifacts/results.yml").c_str(), 0600), 0);
  EXPECT_EQ(ReadResults(dir_).status().code(), absl::StatusCode::kPermissionDenied);
}

// Anchors and aliases make a few KB stand for billions of entries; the walk stops early.
TEST(ParseResultsTest, AliasAmplificationIsRefused) {
  std::string stats = "&s {";
  for (int i = 0; i < 2000; ++i) stats += "k" + std::to_string(i) + ": 1, ";
  stats += "last: 1}";
  std::string yaml = "results:\n  tasks:\n    t:\n      metrics:\n        m:\n          scores:\n";
  yaml += "            s0: {value: 1, stats: " + stats + "}\n";
  for (int i = 1; i < 5000; ++i) {
    yaml += "            s" + std::to_string(i) + ": {value: 1, stats: *s}\n";
  }
  ASSERT_LT(yaml.size(), 4u << 20);
  auto r = ParseResults(yaml);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("alias"));

  std::string metrics = "&m {";
  for (int i = 0; i < 3000; ++i) metrics += "m" + std::to_string(i) + ": {}, ";
  metrics += "last: {}}";
  yaml = "results:\n  tasks:\n    t0: {metrics: " + metrics + "}\n";
  for (int i = 1; i < 3000; ++i) yaml += "    t" + std::to_string(i) + ": {metrics: *m}\n";
  r = ParseResults(yaml);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);

  std::string deep = "results: ";
  for (int i = 0; i < 100000; ++i) deep += "[";
  EXPECT_FALSE(ParseResults(deep).ok());
}

TEST_F(RunFilesTest, LogChunksByOffset) {
  Write("logs/slurm-7.log", "hello world\n");
  std::string path = LogPath(dir_, v1::LOG_KIND_SLURM, "7");
  auto c = ReadLogChunk(path, 6, 100);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->data(), "world\n");
  EXPECT_EQ(c->offset(), 6);
  auto tail = ReadLogChunk(path, -6, 100);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->data(), "world\n");
  auto past = ReadLogChunk(path, 1000, 100);
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(past->data(), "");
  auto missing = ReadLogChunk(LogPath(dir_, v1::LOG_KIND_EVAL, "7"), 0, 100);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->data(), "");
  Write("logs/server-0-7-0.log", "srv");
  EXPECT_THAT(LogPath(dir_, v1::LOG_KIND_SERVER, "7"), HasSubstr("server-0-7-0.log"));
}

}  // namespace
}  // namespace evalctl::agent
