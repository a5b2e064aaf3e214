#include "controller/core/controller_core.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "controller/core/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kConfig[] = R"(defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution:
  hostname: clusterA
  username: alice
  account: acct
  output_dir: /scratch/results
  container_runtime: none
  env_vars:
    evaluation:
      TOKEN: host:MY_TOKEN
target:
  api_endpoint: {url: 'http://h:8000/v1/chat/completions', model_id: m}
evaluation:
  tasks:
    - name: one
      command: echo one
    - name: two
      command: echo two
)";

class RecordingLink : public AgentLink {
 public:
  void Send(v1::ControllerMessage message) override { sent.push_back(std::move(message)); }
  std::vector<v1::ControllerMessage> sent;
  std::vector<v1::Command> Commands(v1::Command::BodyCase kind) const {
    std::vector<v1::Command> out;
    for (const auto& m : sent) {
      if (m.has_command() && m.command().body_case() == kind) out.push_back(m.command());
    }
    return out;
  }
};

class ControllerCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/controller_core_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Reopen();
  }
  void Reopen(int submit_window = 256) {
    core_.reset();
    store_.reset();
    auto s = SqliteStore::Open(dir_ + "/controller.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    core_ = std::make_unique<ControllerCore>(
        ControllerOptions{.agent_wait = absl::Minutes(5), .submit_window = submit_window},
        store_.get(), &clock_);
  }
  // The agent's answer to a command.
  void Answer(const v1::Command& command, absl::StatusCode code = absl::StatusCode::kOk) {
    v1::CommandResult result;
    result.set_command_id(command.command_id());
    result.set_code(static_cast<int>(code));
    core_->AgentCommandResult("agent-a", result);
  }
  // "submit <task>" and "cancel <task>" for each command the link got, in order.
  static std::vector<std::string> Order(const RecordingLink& link) {
    std::vector<std::string> order;
    for (const v1::ControllerMessage& m : link.sent) {
      if (m.command().has_submit_task()) {
        order.push_back("submit " + m.command().submit_task().task_id());
      }
      if (m.command().has_cancel_task()) {
        order.push_back("cancel " + m.command().cancel_task().task_id());
      }
    }
    return order;
  }
  // kConfig with `n` tasks.
  static std::string ConfigWithTasks(int n) {
    std::string yaml(kConfig, std::string(kConfig).find("    - name: one"));
    for (int i = 0; i < n; ++i) absl::StrAppend(&yaml, "    - name: t", i, "\n      command: echo\n");
    return yaml;
  }
  v1::Registered Connect(RecordingLink& link, const std::string& agent_id = "agent-a",
                         const std::string& cluster = "clusterA") {
    v1::Register reg;
    reg.set_agent_id(agent_id);
    reg.set_cluster(cluster);
    reg.add_aliases("login-a");
    reg.set_unix_user("alice");
    reg.set_version("test");
    auto r = core_->AgentConnected(reg, &link);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::Registered();
  }
  absl::StatusOr<v1::SubmitInvocationResponse> Submit(const std::string& request_id,
                                                      const std::string& yaml = kConfig) {
    v1::SubmitInvocationRequest req;
    req.set_request_id(request_id);
    req.mutable_config()->set_yaml(yaml);
    req.mutable_config()->set_file_name("run.yaml");
    (*req.mutable_config()->mutable_environment())["MY_TOKEN"] = "tok_SECRET_value_42";
    return core_->Submit(alice_, req);
  }
  v1::Events TaskEvents(uint64_t first_seq, const std::string& task_id,
                        std::vector<v1::TaskState> states) {
    v1::Events events;
    uint64_t seq = first_seq;
    for (v1::TaskState s : states) {
      v1::AgentEvent* e = events.add_events();
      e->set_sequence(seq++);
      e->mutable_task()->set_kind(v1::TaskEvent::KIND_STATE_CHANGED);
      e->mutable_task()->set_task_id(task_id);
      e->mutable_task()->set_state(s);
      e->mutable_task()->mutable_attempt()->set_number(1);
      e->mutable_task()->mutable_attempt()->set_slurm_job_id("77");
    }
    return events;
  }
  std::string FileBytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<ControllerCore> core_;
  Caller alice_{"alice", false};
  Caller bob_{"bob", false};
};

TEST_F(ControllerCoreTest, SubmitWithoutAgentListsConnectedClusters) {
  auto r = Submit("req-1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("no evalctl-agent serves cluster \"clusterA\""));
  EXPECT_THAT(r.status().message(), HasSubstr("connected clusters: none"));
}

TEST_F(ControllerCoreTest, SubmitRoutesSendsSecretsToTheAgentOnlyAndIsIdempotent) {
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->duplicate());
  ASSERT_EQ(r->invocation().tasks_size(), 2);
  EXPECT_EQ(r->invocation().cluster(), "clusterA");
  EXPECT_EQ(r->invocation().tasks(0).state(), v1::TASK_STATE_PENDING);
  auto submits = link.Commands(v1::Command::kSubmitTask);
  ASSERT_EQ(submits.size(), 2u);
  bool secret_sent = false;
  for (const v1::EnvVar& v : submits[0].submit_task().job().env()) {
    if (v.secret() && v.value() == "tok_SECRET_value_42") secret_sent = true;
  }
  EXPECT_TRUE(secret_sent);
  EXPECT_THAT(submits[0].submit_task().job().script(), Not(HasSubstr("tok_SECRET_value_42")));

  auto again = Submit("req-1");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate());
  EXPECT_EQ(again->invocation().id(), r->invocation().id());
  EXPECT_EQ(link.Commands(v1::Command::kSubmitTask).size(), 2u);

  // Nothing of the secret in the database files.
  store_.reset();
  core_.reset();
  for (const char* f : {"/controller.db", "/controller.db-wal"}) {
    EXPECT_THAT(FileBytes(dir_ + f), Not(HasSubstr("tok_SECRET_value_42"))) << f;
  }
}

TEST_F(ControllerCoreTest, AliasesRouteToo) {
  RecordingLink link;
  Connect(link);
  std::string yaml = kConfig;
  yaml.replace(yaml.find("hostname: clusterA"), 18, "hostname: login-a ");
  EXPECT_TRUE(Submit("req-alias", yaml).ok());
}

TEST_F(ControllerCoreTest, EventsApplyOnceAndWatchersReplayThem) {
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok());
  const std::string task = r->invocation().tasks(0).id();
  auto ack = core_->AgentEvents("agent-a", TaskEvents(1, task, {v1::TASK_STATE_QUEUED,
                                                                 v1::TASK_STATE_RUNNING}));
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(*ack, 2u);
  // A replay after a reconnect changes nothing.
  ack = core_->AgentEvents("agent-a", TaskEvents(1, task, {v1::TASK_STATE_QUEUED,
                                                            v1::TASK_STATE_RUNNING}));
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(*ack, 2u);
  auto t = core_->GetTask(alice_, task);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->state(), v1::TASK_STATE_RUNNING);
  ASSERT_EQ(t->attempts_size(), 1);
  EXPECT_EQ(t->attempts(0).slurm_job_id(), "77");

  auto scope = core_->ResolveWatch(alice_, r->invocation().id().substr(0, 6));
  ASSERT_TRUE(scope.ok()) << scope.status();
  auto events = core_->EventsAfter(*scope, 0, 100);
  ASSERT_TRUE(events.ok());
  // Two creation events (one per task) and two agent events, exactly once.
  ASSERT_EQ(events->size(), 4u);
  EXPECT_EQ((*events)[3].event().state(), v1::TASK_STATE_RUNNING);
  auto later = core_->EventsAfter(*scope, (*events)[2].sequence(), 100);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->size(), 1u);

  // An agent may report only on its own tasks.
  RecordingLink other;
  Connect(other, "agent-b", "clusterB");
  ASSERT_TRUE(core_->AgentEvents("agent-b", TaskEvents(1, task, {v1::TASK_STATE_FAILED})).ok());
  EXPECT_EQ(core_->GetTask(alice_, task)->state(), v1::TASK_STATE_RUNNING);
}

// One agent per (cluster, Unix user) is connected at a time: a second one is refused, naming the
// first; once that one is gone, the second takes over and new submissions go to it.
TEST_F(ControllerCoreTest, OneAgentPerClusterAndUser) {
  RecordingLink first, second;
  Connect(first, "agent-a");
  v1::Register reg;
  reg.set_agent_id("agent-b");
  reg.set_cluster("clusterA");
  reg.set_unix_user("alice");
  auto refused = core_->AgentConnected(reg, &second);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("agent agent-a already serves cluster clusterA for Unix user alice"));
  core_->AgentDisconnected("agent-a", &first);
  ASSERT_TRUE(core_->AgentConnected(reg, &second).ok());
  auto r = Submit("req-after");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(second.Commands(v1::Command::kSubmitTask).empty());
  EXPECT_TRUE(first.Commands(v1::Command::kSubmitTask).empty());
}

TEST_F(ControllerCoreTest, UsersSeeOnlyTheirOwnInvocations) {
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(core_->GetInvocation(alice_, r->invocation().id()).ok());
  EXPECT_EQ(core_->GetInvocation(bob_, r->invocation().id()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(core_->Cancel(bob_, r->invocation().id()).status().code(),
            absl::StatusCode::kNotFound);
  auto list = core_->List(bob_, {});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->invocations_size(), 0);
  EXPECT_TRUE(core_->GetInvocation(Caller{"root", true}, r->invocation().id()).ok());
}

// The configuration runs as Unix user alice: alice may submit it; bob only with a grant; an admin
// always. The SubmitTask names the Unix user, for the agent to check.
TEST_F(ControllerCoreTest, UsersRunJobsOnlyAsThemselvesUnlessGranted) {
  class Grants : public RunAsPolicy {
   public:
    bool Granted(const std::string& user, const std::string& unix_user) override {
      return granted.count({user, unix_user}) > 0;
    }
    std::set<std::pair<std::string, std::string>> granted;
  } grants;
  core_->set_run_as_policy(&grants);
  RecordingLink link;
  Connect(link);
  v1::SubmitInvocationRequest req;
  req.set_request_id("req-bob");
  req.mutable_config()->set_yaml(kConfig);
  (*req.mutable_config()->mutable_environment())["MY_TOKEN"] = "x";
  auto denied = core_->Submit(bob_, req);
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(),
              HasSubstr("user bob may not run jobs as the Unix user alice (execution.username)"));
  EXPECT_THAT(link.Commands(v1::Command::kSubmitTask), IsEmpty());

  grants.granted.insert({"bob", "alice"});
  auto granted = core_->Submit(bob_, req);
  ASSERT_TRUE(granted.ok()) << granted.status();
  auto submits = link.Commands(v1::Command::kSubmitTask);
  ASSERT_FALSE(submits.empty());
  EXPECT_EQ(submits[0].submit_task().run_as(), "alice");
  EXPECT_EQ(submits[0].submit_task().owner(), "bob");

  // Revoked: bob's resume of his invocation is refused too.
  grants.granted.clear();
  auto resume = core_->Resume(bob_, granted->invocation().id());
  EXPECT_EQ(resume.status().code(), absl::StatusCode::kPermissionDenied);

  req.set_request_id("req-admin");
  EXPECT_TRUE(core_->Submit(Caller{"root", true}, req).ok());
  EXPECT_TRUE(Submit("req-alice").ok());
}

TEST_F(ControllerCoreTest, CancelBeforeDeliveryAndAfter) {
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok());
  const std::string t0 = r->invocation().tasks(0).id();
  const std::string t1 = r->invocation().tasks(1).id();
  // t0 was taken by the agent; t1 was sent but the agent has not answered yet: it may hold it
  // (and be running sbatch), so both are cancelled through the agent, after their SubmitTask.
  ASSERT_TRUE(core_->AgentEvents("agent-a", TaskEvents(1, t0, {v1::TASK_STATE_QUEUED})).ok());
  auto c = core_->Cancel(alice_, r->invocation().id());
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<std::string> order;
  for (const v1::ControllerMessage& m : link.sent) {
    if (m.command().has_submit_task()) order.push_back("submit " + m.command().submit_task().task_id());
    if (m.command().has_cancel_task()) order.push_back("cancel " + m.command().cancel_task().task_id());
  }
  EXPECT_THAT(order, ElementsAre("submit " + t0, "submit " + t1, "cancel " + t0, "cancel " + t1));
  EXPECT_TRUE(core_->GetTask(alice_, t0)->cancel_requested());
  EXPECT_TRUE(core_->GetTask(alice_, t1)->cancel_requested());
  EXPECT_EQ(core_->GetTask(alice_, t1)->state(), v1::TASK_STATE_PENDING);
}

// A task whose job would not fit the agent stream is refused at submission, naming the task;
// nothing is stored or sent.
TEST_F(ControllerCoreTest, ATaskTooLargeForTheAgentIsRefusedAtSubmission) {
  RecordingLink link;
  Connect(link);
  v1::SubmitInvocationRequest req;
  req.set_request_id("req-big");
  req.mutable_config()->set_yaml(kConfig);
  req.mutable_config()->set_file_name("run.yaml");
  (*req.mutable_config()->mutable_environment())["MY_TOKEN"] = std::string(5 << 20, 'x');
  auto r = core_->Submit(alice_, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("evaluation.tasks[0] (one): its job is "));
  EXPECT_THAT(r.status().message(), HasSubstr("over the 4 MiB an agent takes"));
  EXPECT_THAT(link.Commands(v1::Command::kSubmitTask), IsEmpty());
  auto list = core_->List(alice_, {});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->invocations_size(), 0);
}

// Tasks are rendered and written one at a time inside one transaction: a task that fails after
// others were written leaves no trace of the invocation, and the same request can be sent again.
TEST_F(ControllerCoreTest, ATaskThatFailsMidwayLeavesNoPartOfTheInvocation) {
  RecordingLink link;
  Connect(link);
  std::string yaml(kConfig, std::string(kConfig).find("    - name: one"));
  // Five values of 0.9 MiB each: every value is within the interpolation limit, the job is not.
  absl::StrAppend(&yaml, "    - {name: small, command: echo}\n",
                  "    - name: huge\n      command: echo\n      env_vars:\n");
  for (int i = 0; i < 5; ++i) absl::StrAppend(&yaml, "        V", i, ": ${oc.env:BIG}\n");
  v1::SubmitInvocationRequest req;
  req.set_request_id("req-midway");
  req.mutable_config()->set_yaml(yaml);
  (*req.mutable_config()->mutable_environment())["MY_TOKEN"] = "s3cret";
  (*req.mutable_config()->mutable_environment())["BIG"] = std::string(900 << 10, 'x');
  auto r = core_->Submit(alice_, req);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("evaluation.tasks[1] (huge): its job is "));
  EXPECT_THAT(link.Commands(v1::Command::kSubmitTask), IsEmpty());
  auto list = core_->List(alice_, {});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->invocations_size(), 0);
  EXPECT_EQ(core_->LastEventSequence(), 0u);

  req.mutable_config()->set_yaml(ConfigWithTasks(2));
  auto again = core_->Submit(alice_, req);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->duplicate());
  EXPECT_EQ(again->invocation().tasks_size(), 2);
}

// A large submission goes to the agent a window at a time: each answer lets the next task out,
// with its secrets; a task still waiting for the window is cancelled at the controller alone.
TEST_F(ControllerCoreTest, SubmissionsFlowThroughABoundedWindow) {
  Reopen(/*submit_window=*/3);
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1", ConfigWithTasks(8));
  ASSERT_TRUE(r.ok()) << r.status();
  auto id = [&](int i) { return r->invocation().tasks(i).id(); };
  EXPECT_THAT(Order(link), ElementsAre("submit " + id(0), "submit " + id(1), "submit " + id(2)));

  // The window refills once half of it is answered, from the store, with the secrets.
  Answer(link.Commands(v1::Command::kSubmitTask)[0]);
  EXPECT_EQ(link.Commands(v1::Command::kSubmitTask).size(), 3u);
  Answer(link.Commands(v1::Command::kSubmitTask)[1]);
  ASSERT_EQ(link.Commands(v1::Command::kSubmitTask).size(), 5u);
  EXPECT_EQ(link.Commands(v1::Command::kSubmitTask)[3].submit_task().task_id(), id(3));
  const v1::SubmitTask fifth = link.Commands(v1::Command::kSubmitTask)[4].submit_task();
  EXPECT_EQ(fifth.task_id(), id(4));
  bool secret = false;
  for (const auto& v : fifth.job().env()) secret |= v.value() == "tok_SECRET_value_42";
  EXPECT_TRUE(secret) << "a task read back from the store gets its secrets again";

  // Tasks 5-7 never left the controller: cancelled at once. Tasks 0-4 went to the agent: it
  // cancels them, after their SubmitTask.
  link.sent.clear();
  auto c = core_->Cancel(alice_, r->invocation().id());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(Order(link), ElementsAre("cancel " + id(0), "cancel " + id(1), "cancel " + id(2),
                                       "cancel " + id(3), "cancel " + id(4)));
  for (int i = 5; i < 8; ++i) {
    EXPECT_EQ(core_->GetTask(alice_, id(i))->state(), v1::TASK_STATE_CANCELLED) << i;
  }
  for (const v1::Command& cmd : link.Commands(v1::Command::kCancelTask)) Answer(cmd);
  for (const v1::Command& cmd : link.Commands(v1::Command::kSubmitTask)) Answer(cmd);
  EXPECT_THAT(link.Commands(v1::Command::kSubmitTask), IsEmpty());
}

// After a reconnect every unconfirmed task goes through the window again, and a cancel that
// arrives meanwhile follows its task's SubmitTask.
TEST_F(ControllerCoreTest, AReconnectRefillsTheWindowAndKeepsCancelsBehindSubmits) {
  Reopen(/*submit_window=*/2);
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1", ConfigWithTasks(4));
  ASSERT_TRUE(r.ok()) << r.status();
  auto id = [&](int i) { return r->invocation().tasks(i).id(); };
  ASSERT_EQ(link.Commands(v1::Command::kSubmitTask).size(), 2u);
  core_->AgentDisconnected("agent-a", &link);

  RecordingLink again;
  Connect(again);
  EXPECT_THAT(Order(again), ElementsAre("submit " + id(0), "submit " + id(1)));
  // Tasks 0 and 1 went out on both streams: the agent may have them, so their cancels go to it.
  // Tasks 2 and 3 never went out: cancelled here.
  ASSERT_TRUE(core_->Cancel(alice_, r->invocation().id()).ok());
  EXPECT_THAT(Order(again), ElementsAre("submit " + id(0), "submit " + id(1), "cancel " + id(0),
                                        "cancel " + id(1)));
  EXPECT_EQ(core_->GetTask(alice_, id(3))->state(), v1::TASK_STATE_CANCELLED);

  // Dropped again before any answer: the cancels wait behind the SubmitTasks sent anew.
  core_->AgentDisconnected("agent-a", &again);
  RecordingLink third;
  Connect(third);
  EXPECT_THAT(Order(third), ElementsAre("submit " + id(0), "cancel " + id(0), "submit " + id(1),
                                        "cancel " + id(1)));
}

// Tasks submitted while their agent is away were never written to its stream: a cancel ends them
// at once, and the agent does not get them when it comes back.
TEST_F(ControllerCoreTest, CancelWhileTheAgentIsAwayNeverReachesIt) {
  RecordingLink link;
  Connect(link);
  core_->AgentDisconnected("agent-a", &link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok()) << r.status();
  auto c = core_->Cancel(alice_, r->invocation().id());
  ASSERT_TRUE(c.ok()) << c.status();
  for (const v1::Task& t : c->tasks()) {
    EXPECT_EQ(t.state(), v1::TASK_STATE_CANCELLED);
    EXPECT_EQ(t.reason(), "cancelled before it reached the cluster");
  }
  RecordingLink again;
  Connect(again);
  EXPECT_THAT(again.Commands(v1::Command::kSubmitTask), IsEmpty());
  EXPECT_THAT(again.Commands(v1::Command::kCancelTask), IsEmpty());
}

// A hostile agent's ids and messages reach the log escaped: no forged lines, no terminal escapes.
TEST_F(ControllerCoreTest, AgentSuppliedStringsAreEscapedInLogLines) {
  const std::string forged = "\nW2026-01-01T00:00:00.000Z forged.cc:1] forged line\x1b[2J\x1b]0;t\x07";
  const std::string agent = "agent-a" + forged;
  RecordingLink link, other;
  ::testing::internal::CaptureStderr();
  {
    v1::Register reg;
    reg.set_agent_id(agent);
    reg.set_cluster("clusterA");
    reg.set_unix_user("alice");
    reg.set_version("v" + forged);
    ASSERT_TRUE(core_->AgentConnected(reg, &link).ok());
    reg.set_agent_id("agent-b");
    reg.set_cluster("clusterB" + forged);
    reg.set_unix_user("bob" + forged);
    ASSERT_TRUE(core_->AgentConnected(reg, &other).ok());
  }
  // A config for a cluster nobody serves: the error lists the connected ones, escaped.
  auto unrouted = Submit("req-0", absl::StrReplaceAll(kConfig, {{"hostname: clusterA",
                                                                 "hostname: clusterC"}}));
  ASSERT_EQ(unrouted.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(unrouted.status().message(),
              HasSubstr(absl::StrCat("clusterB", absl::CHexEscape(forged), " (user bob",
                                     absl::CHexEscape(forged), ")")));
  EXPECT_THAT(unrouted.status().message(), Not(HasSubstr("\x1b")));
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string t0 = r->invocation().tasks(0).id();
  // An event for a task the agent was not given: a warning naming it.
  ASSERT_TRUE(core_->AgentEvents(agent, TaskEvents(1, "no-such-task" + forged,
                                                  {v1::TASK_STATE_RUNNING}))
                  .ok());
  // A failed cancel: a warning with the agent's message.
  ASSERT_TRUE(core_->AgentEvents(agent, TaskEvents(2, t0, {v1::TASK_STATE_QUEUED})).ok());
  ASSERT_TRUE(core_->Cancel(alice_, r->invocation().id()).ok());
  auto cancels = link.Commands(v1::Command::kCancelTask);
  ASSERT_EQ(cancels.size(), 2u);  // both tasks were sent to the agent
  v1::CommandResult result;
  result.set_command_id(cancels[0].command_id());
  result.set_code(static_cast<int>(absl::StatusCode::kInternal));
  result.set_message("scancel failed" + forged);
  core_->AgentCommandResult(agent, result);
  RecordingLink second;  // the same agent connects again: the older stream is replaced
  {
    v1::Register reg;
    reg.set_agent_id(agent);
    reg.set_cluster("clusterA");
    reg.set_unix_user("alice");
    ASSERT_TRUE(core_->AgentConnected(reg, &second).ok());
  }
  core_->AgentDisconnected(agent, &second);
  const std::string log = ::testing::internal::GetCapturedStderr();

  EXPECT_THAT(log, Not(HasSubstr("\x1b"))) << log;
  EXPECT_THAT(log, Not(HasSubstr("\x07"))) << log;
  const std::string escaped = absl::CHexEscape(forged);
  EXPECT_THAT(log, HasSubstr("agent=agent-a" + escaped + " cluster=clusterA user=alice version=v" +
                             escaped + " connected"));
  EXPECT_THAT(log, HasSubstr("agent=agent-b cluster=clusterB" + escaped + " user=bob" + escaped +
                             " version=v" + escaped + " connected"));
  EXPECT_THAT(log, HasSubstr("reported on task no-such-task" + escaped + ", which it was not "
                             "given; ignored"));
  EXPECT_THAT(log, HasSubstr("INTERNAL: scancel failed" + escaped));
  EXPECT_THAT(log, HasSubstr("agent=agent-a" + escaped + " connected again"));
  EXPECT_THAT(log, HasSubstr("agent=agent-a" + escaped + " disconnected"));
  // Every line is one of the logger's own; none is the forged one.
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    ++lines;
    EXPECT_TRUE(line.size() > 5 && std::string("DIWEF").find(line[0]) != std::string::npos &&
                absl::ascii_isdigit(line[1]))
        << "not a log line: " << line;
    EXPECT_FALSE(absl::StartsWith(line, "W2026-01-01T00:00:00.000Z forged.cc")) << line;
  }
  EXPECT_GE(lines, 5);
}

TEST_F(ControllerCoreTest, TasksWaitForADisconnectedAgentThenFail) {
  RecordingLink link;
  Connect(link);
  core_->AgentDisconnected("agent-a", &link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok()) << r.status();  // a known agent: the tasks wait
  clock_.Advance(absl::Minutes(4));
  core_->Tick();
  EXPECT_EQ(core_->GetTask(alice_, r->invocation().tasks(0).id())->state(),
            v1::TASK_STATE_PENDING);
  clock_.Advance(absl::Minutes(2));
  core_->Tick();
  auto t = core_->GetTask(alice_, r->invocation().tasks(0).id());
  EXPECT_EQ(t->state(), v1::TASK_STATE_FAILED);
  EXPECT_THAT(t->reason(), HasSubstr("did not reconnect within 5m"));
}

TEST_F(ControllerCoreTest, ReconnectResendsHeldTasksWithTheirSecrets) {
  RecordingLink link;
  Connect(link);
  core_->AgentDisconnected("agent-a", &link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok());
  RecordingLink again;
  auto reg = Connect(again);
  EXPECT_EQ(reg.last_applied_sequence(), 0u);
  auto submits = again.Commands(v1::Command::kSubmitTask);
  ASSERT_EQ(submits.size(), 2u);
  bool secret = false;
  for (const auto& v : submits[0].submit_task().job().env()) secret |= v.value() == "tok_SECRET_value_42";
  EXPECT_TRUE(secret);
}

TEST_F(ControllerCoreTest, AfterARestartTasksWithSecretsThatNeverArrivedFail) {
  RecordingLink link;
  Connect(link);
  core_->AgentDisconnected("agent-a", &link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok());
  Reopen();
  RecordingLink again;
  Connect(again);
  EXPECT_TRUE(again.Commands(v1::Command::kSubmitTask).empty());
  auto t = core_->GetTask(alice_, r->invocation().tasks(0).id());
  EXPECT_EQ(t->state(), v1::TASK_STATE_FAILED);
  EXPECT_THAT(t->reason(), HasSubstr("secret values are never stored"));
}

TEST_F(ControllerCoreTest, AgentSequenceSurvivesARestart) {
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok());
  const std::string task = r->invocation().tasks(0).id();
  ASSERT_TRUE(core_->AgentEvents("agent-a", TaskEvents(1, task, {v1::TASK_STATE_QUEUED})).ok());
  Reopen();
  RecordingLink again;
  EXPECT_EQ(Connect(again).last_applied_sequence(), 1u);
}

TEST_F(ControllerCoreTest, BadConfigIsInvalidArgumentWithThePath) {
  RecordingLink link;
  Connect(link);
  std::string yaml = kConfig;
  yaml.replace(yaml.find("output_dir: /scratch/results"), 28, "output_dir: scratch/results ");
  auto r = Submit("req-bad", yaml);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("execution.output_dir"));
}

TEST_F(ControllerCoreTest, PrefixesResolve) {
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok());
  const std::string id = r->invocation().id();
  EXPECT_EQ(core_->GetInvocation(alice_, id.substr(0, 4))->id(), id);
  EXPECT_EQ(core_->GetTask(alice_, id + ".1")->name(), "two");
  EXPECT_EQ(core_->GetInvocation(alice_, "zz").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ControllerCoreTest, GetInvocationViewsAndPages) {
  RecordingLink link;
  Connect(link);
  auto r = Submit("req-1");
  ASSERT_TRUE(r.ok());
  const std::string id = r->invocation().id();
  ASSERT_TRUE(core_->AgentEvents("agent-a", TaskEvents(1, id + ".1", {v1::TASK_STATE_RUNNING})).ok());

  v1::GetInvocationRequest req;
  req.set_id(id.substr(0, 6));
  req.set_view(v1::INVOCATION_VIEW_SUMMARY);
  auto summary = core_->GetInvocation(alice_, req);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->id(), id);
  EXPECT_EQ(summary->tasks_size(), 0);
  EXPECT_EQ(summary->counts().pending(), 1);
  EXPECT_EQ(summary->counts().running(), 1);
  EXPECT_EQ(core_->GetInvocation(bob_, req).status().code(), absl::StatusCode::kNotFound);

  req.set_view(v1::INVOCATION_VIEW_BASIC);
  req.set_page_size(1);
  auto first = core_->GetInvocation(alice_, req);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->tasks_size(), 1);
  EXPECT_EQ(first->tasks(0).name(), "one");
  ASSERT_FALSE(first->next_page_token().empty());
  req.set_page_token(first->next_page_token());
  auto second = core_->GetInvocation(alice_, req);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->tasks_size(), 1);
  EXPECT_EQ(second->tasks(0).name(), "two");
  EXPECT_EQ(second->tasks(0).state(), v1::TASK_STATE_RUNNING);
  EXPECT_EQ(second->tasks(0).slurm_job_id(), "77");
  EXPECT_EQ(second->tasks(0).attempt_count(), 1);
  EXPECT_TRUE(second->next_page_token().empty());

  req.set_page_token("x1");
  EXPECT_EQ(core_->GetInvocation(alice_, req).status().code(), absl::StatusCode::kInvalidArgument);
  req.clear_page_token();
  req.set_page_size(-1);
  EXPECT_EQ(core_->GetInvocation(alice_, req).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace evalctl::controller
