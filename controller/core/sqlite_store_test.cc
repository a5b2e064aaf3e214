#include "controller/core/sqlite_store.h"

#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"

namespace evalctl::controller {
namespace {

TEST(SqliteStoreTest, MigratesAndRefusesNewerSchemas) {
  std::string path = ::testing::TempDir() + "/store_test_" + std::to_string(::getpid()) + ".db";
  std::filesystem::remove(path);
  {
    auto s = SqliteStore::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
  }
  {
    auto db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec("UPDATE meta SET value = '99' WHERE key = 'schema_version'").ok());
  }
  auto s = SqliteStore::Open(path);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("schema version 99"), std::string::npos);
}

TEST(SqliteStoreTest, RequestIdsAreUniquePerOwner) {
  std::string path = ::testing::TempDir() + "/store_req_" + std::to_string(::getpid()) + ".db";
  std::filesystem::remove(path);
  auto s = SqliteStore::Open(path);
  ASSERT_TRUE(s.ok());
  NewInvocation inv;
  inv.owner = "alice";
  inv.request_id = "r1";
  inv.invocation.set_id("0123456789abcdef");
  ASSERT_TRUE((*s)->CreateInvocation(inv).ok());
  inv.invocation.set_id("1123456789abcdef");
  EXPECT_EQ((*s)->CreateInvocation(inv).code(), absl::StatusCode::kAlreadyExists);
  inv.owner = "bob";
  EXPECT_TRUE((*s)->CreateInvocation(inv).ok());
  EXPECT_EQ(*(*s)->FindRequest("alice", "r1"), std::optional<std::string>("0123456789abcdef"));
  auto m = (*s)->MatchInvocations("01", 10);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->size(), 1u);
}

StoredTask MakeTask(const std::string& invocation_id, int index) {
  StoredTask t;
  t.agent_id = "agent-a";
  t.task.set_id(invocation_id + "." + std::to_string(index));
  t.task.set_invocation_id(invocation_id);
  t.task.set_index(index);
  t.task.set_state(v1::TASK_STATE_PENDING);
  t.submit.set_task_id(t.task.id());
  t.submit.mutable_job()->set_script("#!/bin/bash\necho " + std::to_string(index) + "\n");
  return t;
}

TEST(SqliteStoreTest, StatusUpdatesKeepTheJobAndNeedNoSubmit) {
  std::string path = ::testing::TempDir() + "/store_status_" + std::to_string(::getpid()) + ".db";
  std::filesystem::remove(path);
  auto s = SqliteStore::Open(path);
  ASSERT_TRUE(s.ok());
  NewInvocation inv;
  inv.owner = "alice";
  inv.request_id = "r1";
  inv.invocation.set_id("0123456789abcdef");
  inv.tasks = {MakeTask("0123456789abcdef", 0), MakeTask("0123456789abcdef", 1)};
  ASSERT_TRUE((*s)->CreateInvocation(inv).ok());

  // GetTaskStatus leaves the job out; an update from it keeps the stored job.
  auto status = (*s)->GetTaskStatus("0123456789abcdef.0");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->agent_id, "agent-a");
  EXPECT_FALSE(status->submit.has_job());
  status->accepted = true;
  status->task.set_state(v1::TASK_STATE_RUNNING);
  ASSERT_TRUE((*s)->UpdateTask(*status, nullptr).ok());
  auto full = (*s)->GetTask("0123456789abcdef.0");
  ASSERT_TRUE(full.ok());
  EXPECT_TRUE(full->accepted);
  EXPECT_EQ(full->task.state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(full->submit.job().script(), "#!/bin/bash\necho 0\n");

  // Several events of one task in a batch: the task ends with the last one's state.
  v1::TaskEvent e;
  e.set_task_id("0123456789abcdef.1");
  StoredTask t1 = MakeTask("0123456789abcdef", 1);
  t1.submit.Clear();
  t1.task.set_state(v1::TASK_STATE_QUEUED);
  StoredTask t2 = t1;
  t2.task.set_state(v1::TASK_STATE_SUCCEEDED);
  auto seqs = (*s)->ApplyAgentEvents("agent-a", {{t1, e}, {t2, e}}, 7);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(seqs->size(), 2u);
  auto got = (*s)->GetInvocation("0123456789abcdef", true);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->tasks_size(), 2);
  EXPECT_EQ(got->tasks(1).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(got->counts().succeeded(), 1);
  EXPECT_EQ(got->counts().running(), 1);
  auto tasks = (*s)->TasksOf("0123456789abcdef");
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 2u);
  EXPECT_EQ((*tasks)[1].submit.job().script(), "#!/bin/bash\necho 1\n");

  StoredTask unknown = MakeTask("0123456789abcdef", 9);
  EXPECT_EQ((*s)->UpdateTask(unknown, nullptr).status().code(), absl::StatusCode::kNotFound);
}

TEST(SqliteStoreTest, MigratesVersion1StoresKeepingEveryTasksJob) {
  std::string path = ::testing::TempDir() + "/store_v1_" + std::to_string(::getpid()) + ".db";
  std::filesystem::remove(path);
  StoredTask t = MakeTask("0123456789abcdef", 0);
  {
    // A store as version 1 wrote it: the job in the task row.
    auto db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "CREATE TABLE invocations (id TEXT PRIMARY KEY, owner TEXT NOT NULL, request_id TEXT NOT "
        "NULL, created_ms INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (owner, request_id));"
        "CREATE INDEX invocations_created ON invocations (created_ms);"
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, invocation_id TEXT NOT NULL REFERENCES "
        "invocations (id), idx INTEGER NOT NULL, state INTEGER NOT NULL, agent_id TEXT NOT NULL,"
        "accepted INTEGER NOT NULL, status BLOB NOT NULL, submit BLOB NOT NULL);"
        "CREATE INDEX tasks_invocation ON tasks (invocation_id, idx);"
        "CREATE INDEX tasks_unaccepted ON tasks (agent_id) WHERE accepted = 0;"
        "CREATE TABLE events (sequence INTEGER PRIMARY KEY, invocation_id TEXT NOT NULL, event "
        "BLOB NOT NULL);"
        "CREATE INDEX events_invocation ON events (invocation_id, sequence);"
        "CREATE TABLE agents (agent_id TEXT PRIMARY KEY, cluster BLOB NOT NULL, last_applied "
        "INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO invocations VALUES ('0123456789abcdef', 'alice', 'r1', 0, X'');")
                    .ok());
    auto put = (*db)->Prepare("INSERT INTO tasks VALUES (?, '0123456789abcdef', 0, 1, 'agent-a', "
                              "0, ?, ?)");
    ASSERT_TRUE(put.ok());
    ASSERT_TRUE(put->Bind(1, t.task.id())
                    .BindBlob(2, t.task.SerializeAsString())
                    .BindBlob(3, t.submit.SerializeAsString())
                    .Run()
                    .ok());
  }
  auto s = SqliteStore::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  auto unaccepted = (*s)->UnacceptedTasks("agent-a");
  ASSERT_TRUE(unaccepted.ok()) << unaccepted.status();
  ASSERT_EQ(unaccepted->size(), 1u);
  EXPECT_EQ((*unaccepted)[0].submit.job().script(), "#!/bin/bash\necho 0\n");
  auto inv = (*s)->GetInvocation("0123456789abcdef", true);
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(inv->tasks_size(), 1);
}

}  // namespace
}  // namespace evalctl::controller
