#include "agent/core/journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/sqlite.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::agent {
namespace {

using ::testing::HasSubstr;

FakeClock* TestClock() {
  static FakeClock* clock = new FakeClock();
  return clock;
}

std::string FreshDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/journal_test_" + std::to_string(::getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

v1::AgentEvent Event(const std::string& task_id, v1::TaskState state) {
  v1::AgentEvent e;
  e.mutable_task()->set_task_id(task_id);
  e.mutable_task()->set_state(state);
  return e;
}

TEST(JournalTest, StateDirAndFilesArePrivate) {
  std::string dir = FreshDir("private");
  auto j = Journal::Open(dir, TestClock());
  ASSERT_TRUE(j.ok()) << j.status();
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const char* f : {"/journal.db", "/secrets.db"}) {
    ASSERT_EQ(::stat((dir + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  EXPECT_FALSE((*j)->agent_id().empty());
}

// A second journal on the same state directory (a second agent) is refused with the holder's
// pid; once the first is closed, the directory opens again.
TEST(JournalTest, OneJournalAtATimePerStateDirectory) {
  std::string dir = FreshDir("lock");
  auto first = Journal::Open(dir, TestClock());
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Journal::Open(dir, TestClock());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat("the agent state directory ", dir,
                                     " is in use by another process (pid ", ::getpid(), ")")));
  EXPECT_THAT(second.status().message(), HasSubstr("another --state-dir"));
  first->reset();
  EXPECT_TRUE(Journal::Open(dir, TestClock()).ok());
}

TEST(JournalTest, CommitSequencesSurviveReopenAndAcks) {
  std::string dir = FreshDir("seq");
  std::string agent_id;
  {
    auto j = Journal::Open(dir, TestClock());
    ASSERT_TRUE(j.ok());
    agent_id = (*j)->agent_id();
    JournaledTask t;
    t.status.set_id("inv.0");
    t.status.set_state(v1::TASK_STATE_QUEUED);
    t.submit.set_task_id("inv.0");
    auto events = (*j)->Commit({t}, {Event("inv.0", v1::TASK_STATE_PENDING),
                                     Event("inv.0", v1::TASK_STATE_QUEUED)});
    ASSERT_TRUE(events.ok());
    EXPECT_EQ((*events)[0].sequence(), 1u);
    EXPECT_EQ((*events)[1].sequence(), 2u);
    ASSERT_TRUE((*j)->Ack(1).ok());
    EXPECT_EQ((*j)->outbox_depth(), 1);
  }
  auto j = Journal::Open(dir, TestClock());
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)->agent_id(), agent_id);
  EXPECT_EQ((*j)->last_sequence(), 2u);
  EXPECT_EQ((*j)->acked_sequence(), 1u);
  auto pending = (*j)->Pending(0, 100);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].sequence(), 2u);
  auto tasks = (*j)->LoadTasks();
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ((*tasks)[0].status.state(), v1::TASK_STATE_QUEUED);
  // Acknowledging everything, then new events continue the sequence.
  ASSERT_TRUE((*j)->Ack(2).ok());
  EXPECT_EQ((*j)->outbox_depth(), 0);
  auto more = (*j)->Commit({}, {Event("inv.0", v1::TASK_STATE_RUNNING)});
  ASSERT_TRUE(more.ok());
  EXPECT_EQ((*more)[0].sequence(), 3u);
  EXPECT_FALSE((*j)->Ack(99).ok());
}

// Sequences are never reused: a counter that cannot be read is an error, not a fresh start at 0.
TEST(JournalTest, UnreadableSequenceCounterIsDataLoss) {
  std::string dir = FreshDir("corrupt_meta");
  {
    auto j = Journal::Open(dir, TestClock());
    ASSERT_TRUE(j.ok()) << j.status();
    ASSERT_TRUE((*j)->Commit({}, {Event("inv.0", v1::TASK_STATE_PENDING)}).ok());
  }
  {
    auto db = SqliteDb::Open(dir + "/journal.db");
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)->Exec("UPDATE meta SET value = '12x' WHERE key = 'last_sequence'").ok());
  }
  auto j = Journal::Open(dir, TestClock());
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(j.status().message(),
              ::testing::HasSubstr("last_sequence is not a number: \"12x\""));
}

// Events are stamped with the journal's clock when committed: the outbox's age is on that clock.
TEST(JournalTest, OldestUnackedIsTheCommitTimeOnTheJournalsClock) {
  FakeClock clock;
  auto j = Journal::Open(FreshDir("oldest"), &clock);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)->oldest_unacked(), absl::InfiniteFuture());
  const absl::Time first = clock.Now();
  ASSERT_TRUE((*j)->Commit({}, {Event("inv.0", v1::TASK_STATE_PENDING)}).ok());
  clock.Advance(absl::Minutes(3));
  ASSERT_TRUE((*j)->Commit({}, {Event("inv.0", v1::TASK_STATE_QUEUED)}).ok());
  EXPECT_EQ((*j)->oldest_unacked(), first);
  ASSERT_TRUE((*j)->Ack(1).ok());
  EXPECT_EQ((*j)->oldest_unacked(), first + absl::Minutes(3));
}

TEST(JournalTest, SecretsLiveOnlyInTheSecretStore) {
  std::string dir = FreshDir("secrets");
  auto j = Journal::Open(dir, TestClock());
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE((*j)->PutSecrets("inv.0", {{"HF_TOKEN", "hf_journal_secret"}}).ok());
  auto got = (*j)->GetSecrets("inv.0");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->at("HF_TOKEN"), "hf_journal_secret");
  ASSERT_TRUE((*j)->DeleteSecrets("inv.0").ok());
  EXPECT_TRUE((*j)->GetSecrets("inv.0")->empty());
}

}  // namespace
}  // namespace evalctl::agent
