#include "controller/core/sqlite_store.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/numbers.h"
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
  auto got = (*s)->GetInvocation("0123456789abcdef", {});
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
  auto inv = (*s)->GetInvocation("0123456789abcdef", {});
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(inv->tasks_size(), 1);
  // The BASIC view reads the brief that the migration to version 3 filled in.
  auto basic = (*s)->GetInvocation("0123456789abcdef", {.view = v1::INVOCATION_VIEW_BASIC});
  ASSERT_TRUE(basic.ok()) << basic.status();
  ASSERT_EQ(basic->tasks_size(), 1);
  EXPECT_EQ(basic->tasks(0).id(), t.task.id());
  EXPECT_EQ(basic->tasks(0).state(), v1::TASK_STATE_PENDING);
  // The migration to version 4 counted the tasks by state; the counts follow changes from then on.
  auto counts = (*s)->CountTasksByState();
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, (std::map<v1::TaskState, int64_t>{{v1::TASK_STATE_PENDING, 1}}));
  StoredTask running = (*unaccepted)[0];
  running.task.set_state(v1::TASK_STATE_RUNNING);
  ASSERT_TRUE((*s)->UpdateTask(running, nullptr).ok());
  ASSERT_TRUE((*s)->UpdateTask(running, nullptr).ok());  // no change of state, no change of count
  counts = (*s)->CountTasksByState();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(*counts, (std::map<v1::TaskState, int64_t>{{v1::TASK_STATE_PENDING, 0},
                                                       {v1::TASK_STATE_RUNNING, 1}}));
}

// An invocation of `n` tasks, each with two attempts (the second one submitted), results, and
// state i % 3: pending, running, succeeded.
NewInvocation InvocationWithHistory(int n) {
  NewInvocation inv;
  inv.owner = "alice";
  inv.request_id = "r1";
  inv.invocation.set_id("0123456789abcdef");
  inv.invocation.set_resolved_config("execution:\n  hostname: a\n");
  inv.invocation.set_run_dir("/scratch/0123456789abcdef");
  const v1::TaskState states[] = {v1::TASK_STATE_PENDING, v1::TASK_STATE_RUNNING,
                                  v1::TASK_STATE_SUCCEEDED};
  for (int i = 0; i < n; ++i) {
    StoredTask t = MakeTask("0123456789abcdef", i);
    t.task.set_name("task-" + std::to_string(i));
    t.task.set_state(states[i % 3]);
    t.task.set_phase(v1::PHASE_EVALUATING);
    t.task.set_reason("reason " + std::to_string(i));
    t.task.mutable_progress()->set_done(i);
    t.task.mutable_progress()->set_total(100);
    t.task.set_elapsed_seconds(60 * i);
    t.task.set_run_dir("/scratch/0123456789abcdef/task-" + std::to_string(i));
    v1::Attempt* first = t.task.add_attempts();
    first->set_number(1);
    first->set_slurm_job_id(std::to_string(1000 + i));
    v1::Attempt* second = t.task.add_attempts();
    second->set_number(2);
    second->set_slurm_job_id(std::to_string(2000 + i));
    v1::Score* score = t.task.mutable_results()->add_scores();
    score->set_score("acc");
    score->set_value(0.5);
    inv.tasks.push_back(std::move(t));
  }
  return inv;
}

std::string FreshPath(const std::string& name) {
  std::string path = ::testing::TempDir() + "/" + name + "_" + std::to_string(::getpid()) + ".db";
  std::filesystem::remove(path);
  return path;
}

TEST(SqliteStoreTest, ViewsShowTheSameTasksWithLessOfEach) {
  auto s = SqliteStore::Open(FreshPath("store_views"));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->CreateInvocation(InvocationWithHistory(7)).ok());
  // A later update reaches every view.
  auto changed = (*s)->GetTaskStatus("0123456789abcdef.0");
  ASSERT_TRUE(changed.ok());
  changed->task.set_state(v1::TASK_STATE_FAILED);
  changed->task.set_cancel_requested(true);
  changed->task.mutable_attempts(1)->clear_slurm_job_id();
  ASSERT_TRUE((*s)->UpdateTask(*changed, nullptr).ok());

  auto full = (*s)->GetInvocation("0123456789abcdef", {.view = v1::INVOCATION_VIEW_FULL});
  auto basic = (*s)->GetInvocation("0123456789abcdef", {.view = v1::INVOCATION_VIEW_BASIC});
  auto summary = (*s)->GetInvocation("0123456789abcdef", {.view = v1::INVOCATION_VIEW_SUMMARY});
  auto unspecified =
      (*s)->GetInvocation("0123456789abcdef", {.view = v1::INVOCATION_VIEW_UNSPECIFIED});
  ASSERT_TRUE(full.ok() && basic.ok() && summary.ok() && unspecified.ok());

  // Counts: tasks 0 (now failed), 3, 6 pending → 2; 1, 4 running; 2, 5 succeeded.
  for (const v1::Invocation* inv : {&*full, &*basic, &*summary}) {
    EXPECT_EQ(inv->counts().pending(), 2);
    EXPECT_EQ(inv->counts().running(), 2);
    EXPECT_EQ(inv->counts().succeeded(), 2);
    EXPECT_EQ(inv->counts().failed(), 1);
    EXPECT_FALSE(inv->finished());
    EXPECT_EQ(inv->run_dir(), "/scratch/0123456789abcdef");
    EXPECT_TRUE(inv->next_page_token().empty());
  }
  EXPECT_EQ(full->resolved_config(), "execution:\n  hostname: a\n");
  EXPECT_EQ(unspecified->SerializeAsString(), full->SerializeAsString());
  EXPECT_TRUE(basic->resolved_config().empty());
  EXPECT_TRUE(summary->resolved_config().empty());
  EXPECT_EQ(summary->tasks_size(), 0);

  ASSERT_EQ(full->tasks_size(), 7);
  ASSERT_EQ(basic->tasks_size(), 7);
  for (int i = 0; i < 7; ++i) {
    const v1::Task& f = full->tasks(i);
    const v1::Task& b = basic->tasks(i);
    EXPECT_EQ(f.attempt_count(), 2);
    EXPECT_EQ(b.attempt_count(), 2);
    // The newest attempt with a job id.
    const std::string job = std::to_string(i == 0 ? 1000 : 2000 + i);
    EXPECT_EQ(f.slurm_job_id(), job);
    EXPECT_EQ(b.slurm_job_id(), job);
    for (const v1::Task* t : {&f, &b}) {
      EXPECT_EQ(t->id(), "0123456789abcdef." + std::to_string(i));
      EXPECT_EQ(t->invocation_id(), "0123456789abcdef");
      EXPECT_EQ(t->index(), i);
      EXPECT_EQ(t->name(), "task-" + std::to_string(i));
      EXPECT_EQ(t->phase(), v1::PHASE_EVALUATING);
      EXPECT_EQ(t->reason(), "reason " + std::to_string(i));
      EXPECT_EQ(t->progress().done(), i);
      EXPECT_EQ(t->progress().total(), 100);
      EXPECT_EQ(t->elapsed_seconds(), 60 * i);
      EXPECT_EQ(t->cancel_requested(), i == 0);
    }
    EXPECT_EQ(b.state(), f.state());
    EXPECT_EQ(f.attempts_size(), 2);
    EXPECT_EQ(f.results().scores_size(), 1);
    EXPECT_EQ(b.attempts_size(), 0);
    EXPECT_FALSE(b.has_results());
    EXPECT_TRUE(b.run_dir().empty());
  }
}

TEST(SqliteStoreTest, PagesCoverEveryTaskOnceWhileStatesChange) {
  auto s = SqliteStore::Open(FreshPath("store_pages"));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->CreateInvocation(InvocationWithHistory(7)).ok());
  for (v1::InvocationView view : {v1::INVOCATION_VIEW_BASIC, v1::INVOCATION_VIEW_FULL}) {
    std::vector<int> seen;
    InvocationQuery query{.view = view, .limit = 3};
    int pages = 0;
    while (true) {
      auto page = (*s)->GetInvocation("0123456789abcdef", query);
      ASSERT_TRUE(page.ok()) << page.status();
      ++pages;
      EXPECT_LE(page->tasks_size(), 3);
      // The counts are the whole invocation's on every page.
      EXPECT_EQ(page->counts().pending() + page->counts().running() +
                    page->counts().succeeded() + page->counts().failed(),
                7);
      for (const v1::Task& t : page->tasks()) seen.push_back(t.index());
      if (page->next_page_token().empty()) break;
      ASSERT_TRUE(absl::SimpleAtoi(page->next_page_token(), &query.first_index));
      // A task of the next page changes state between the calls.
      auto next = (*s)->GetTaskStatus("0123456789abcdef." + std::to_string(query.first_index));
      ASSERT_TRUE(next.ok());
      next->task.set_state(v1::TASK_STATE_FAILED);
      ASSERT_TRUE((*s)->UpdateTask(*next, nullptr).ok());
    }
    EXPECT_EQ(pages, 3);
    EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
  }
  // A page that ends exactly at the last task has no token; one past the end is empty.
  auto exact = (*s)->GetInvocation("0123456789abcdef",
                                   {.view = v1::INVOCATION_VIEW_BASIC, .first_index = 4, .limit = 3});
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->tasks_size(), 3);
  EXPECT_TRUE(exact->next_page_token().empty());
  auto past = (*s)->GetInvocation("0123456789abcdef",
                                  {.view = v1::INVOCATION_VIEW_BASIC, .first_index = 7});
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(past->tasks_size(), 0);
  EXPECT_EQ(past->counts().failed(), 2);  // tasks 3 and 6, changed between pages
}

}  // namespace
}  // namespace evalctl::controller
