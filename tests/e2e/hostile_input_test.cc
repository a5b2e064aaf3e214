// Hostile input against the real evalctl-controller binary (--insecure on 127.0.0.1, no Slurm
// needed): oversized RPCs, YAML built to exhaust the loader, absurd numbers, paths and names meant
// to escape, invalid UTF-8 in string fields, and an agent stream that reports on tasks it was not
// given or replays and reorders its sequence numbers. Each case gets a clear error, nothing of it
// is stored, and the controller serves on.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "evalctl/v1/agent_service.grpc.pb.h"
#include "evalctl/v1/eval_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::testing::HasSubstr;

constexpr char kCluster[] = "hostile-a";

// A valid config for the fake agent's cluster: no deployment, no container, two tasks.
constexpr char kConfig[] = R"(defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution:
  hostname: hostile-a
  username: alice
  account: acct
  output_dir: /scratch/results
  container_runtime: none
target:
  api_endpoint: {url: 'http://h:8000/v1/chat/completions', model_id: m}
evaluation:
  tasks:
    - name: one
      command: echo one
    - name: two
      command: echo two
)";

// An agent speaking the stream protocol directly, so that it can send what a real agent never
// would.
class FakeAgent {
 public:
  FakeAgent(v1::AgentService::Stub* stub, const std::string& agent_id, const std::string& cluster) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stream_ = stub->Connect(&ctx_);
    v1::AgentMessage msg;
    v1::Register* reg = msg.mutable_register_();
    reg->set_agent_id(agent_id);
    reg->set_cluster(cluster);
    reg->set_unix_user("alice");
    reg->set_version("hostile-test");
    reg->add_capabilities("runtime:none");
    stream_->Write(msg);
  }
  ~FakeAgent() {
    if (finished_) return;
    ctx_.TryCancel();
    (void)stream_->Finish();
  }

  // The next message of the controller; false when the stream ended.
  bool Read(v1::ControllerMessage* out) { return stream_->Read(out); }
  // Reads until a message of `kind`, keeping the commands seen on the way.
  bool ReadUntil(v1::ControllerMessage::BodyCase kind, v1::ControllerMessage* out) {
    while (Read(out)) {
      if (out->has_command()) commands.push_back(out->command());
      if (out->body_case() == kind) return true;
    }
    return false;
  }
  bool WaitRegistered() {
    v1::ControllerMessage m;
    return ReadUntil(v1::ControllerMessage::kRegistered, &m);
  }
  // Sends `events` and returns the acknowledged sequence (0 when the stream ended instead).
  uint64_t Send(const v1::Events& events) {
    v1::AgentMessage msg;
    *msg.mutable_events() = events;
    if (!stream_->Write(msg)) return 0;
    v1::ControllerMessage ack;
    return ReadUntil(v1::ControllerMessage::kEventsAck, &ack) ? ack.events_ack().sequence() : 0;
  }
  bool Write(const v1::AgentMessage& msg) { return stream_->Write(msg); }
  grpc::Status Finish() {
    finished_ = true;
    stream_->WritesDone();
    v1::ControllerMessage m;
    while (stream_->Read(&m)) {
    }
    return stream_->Finish();
  }

  std::vector<v1::Command> commands;

 private:
  grpc::ClientContext ctx_;
  bool finished_ = false;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_;
};

// An agent stream that writes raw bytes, so that it can send what is not an AgentMessage at all.
class RawAgent {
 public:
  explicit RawAgent(grpc::Channel* channel) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::internal::RpcMethod method("/evalctl.v1.AgentService/Connect",
                                           grpc::internal::RpcMethod::BIDI_STREAMING);
    stream_.reset(grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::
                      Create(channel, method, &ctx_));
  }
  bool WriteBytes(const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    return stream_->Write(buffer);
  }
  bool Write(const v1::AgentMessage& msg) { return WriteBytes(msg.SerializeAsString()); }
  bool Register(const std::string& agent_id) {
    v1::AgentMessage msg;
    v1::Register* reg = msg.mutable_register_();
    reg->set_agent_id(agent_id);
    reg->set_cluster(kCluster);
    reg->set_unix_user("alice");
    if (!Write(msg)) return false;
    grpc::ByteBuffer reply;
    if (!stream_->Read(&reply)) return false;
    std::vector<grpc::Slice> slices;
    (void)reply.Dump(&slices);
    std::string bytes;
    for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    v1::ControllerMessage parsed;
    return parsed.ParseFromString(bytes) && parsed.has_registered();
  }
  // The stream's status, after reading whatever the controller still sends.
  grpc::Status Finish() {
    grpc::ByteBuffer ignored;
    while (stream_->Read(&ignored)) {
    }
    return stream_->Finish();
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream_;
};

// One state change of `task_id` per state, sequences from `first`.
v1::Events StateEvents(uint64_t first, const std::string& task_id,
                       const std::vector<v1::TaskState>& states) {
  v1::Events events;
  uint64_t seq = first;
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

class HostileInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    E2E_ASSERT_OK(env_.StartController());
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
    channel_ = grpc::CreateCustomChannel(env_.controller_address(),
                                         grpc::InsecureChannelCredentials(), args);
    eval_ = v1::EvalService::NewStub(channel_);
    agents_ = v1::AgentService::NewStub(channel_);
  }

  void Prepare(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    ctx->AddMetadata("x-evalctl-user", "alice");
  }

  grpc::Status Submit(const std::string& request_id, const std::string& yaml,
                      const std::vector<std::string>& overrides = {},
                      v1::SubmitInvocationResponse* out = nullptr) {
    v1::SubmitInvocationRequest req;
    req.set_request_id(request_id);
    req.mutable_config()->set_yaml(yaml);
    req.mutable_config()->set_file_name("run.yaml");
    for (const std::string& o : overrides) req.mutable_config()->add_overrides(o);
    v1::SubmitInvocationResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return eval_->SubmitInvocation(&ctx, req, out != nullptr ? out : &resp);
  }

  int InvocationCount() {
    v1::ListInvocationsRequest req;
    req.set_owner("*");
    v1::ListInvocationsResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    grpc::Status s = eval_->ListInvocations(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.invocations_size();
  }

  v1::Task GetTask(const std::string& id) {
    v1::GetTaskRequest req;
    req.set_id(id);
    v1::Task task;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    grpc::Status s = eval_->GetTask(&ctx, req, &task);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return task;
  }

  // The controller process is alive and answers.
  void ExpectServing() {
    EXPECT_TRUE(env_.controller_running());
    v1::ListClustersResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    grpc::Status s = eval_->ListClusters(&ctx, v1::ListClustersRequest(), &resp);
    EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  }

  E2eEnv env_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EvalService::Stub> eval_;
  std::unique_ptr<v1::AgentService::Stub> agents_;
};

TEST_F(HostileInputTest, OversizedRequestsAreRefusedAndTheControllerServesOn) {
  // Past the controller's largest message (8 MiB): refused by gRPC before any handler runs.
  std::string huge = std::string(kConfig) + "# " + std::string(9 << 20, 'x') + "\n";
  grpc::Status s = Submit("huge", huge);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  ExpectServing();
  // Under the message limit but past the configuration's.
  std::string large = std::string(kConfig) + "# " + std::string(3 << 20, 'x') + "\n";
  s = Submit("large", large);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("bytes; the limit is"));
  // Many overrides.
  std::vector<std::string> overrides(100000, "execution.account=x");
  s = Submit("overrides", kConfig, overrides);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(InvocationCount(), 0);
  ExpectServing();
}

TEST_F(HostileInputTest, HostileConfigsAreInvalidArgumentNamingTheKey) {
  std::string bomb = "lol: &a [x, x, x, x, x, x, x, x, x, x]\n";
  std::string prev = "a";
  for (char c = 'b'; c <= 'k'; ++c) {
    const std::string name(1, c);
    bomb += "lol" + name + ": &" + name + " [";
    for (int i = 0; i < 10; ++i) bomb += (i ? ", *" : "*") + prev;
    bomb += "]\n";
    prev = name;
  }
  std::string deep = "x: ";
  for (int i = 0; i < 5000; ++i) deep += "[";
  for (int i = 0; i < 5000; ++i) deep += "]";
  struct Case {
    std::string name;
    std::string yaml;
    std::vector<std::string> overrides;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"alias bomb", bomb, {}, "expands to more than"},
      {"deep nesting", deep, {}, "run.yaml:1:"},
      {"invalid UTF-8 escape", absl::StrReplaceAll(kConfig, {{"echo one", "\"\\uDC00\""}}), {},
       "run.yaml:"},
      {"walltime of 10^12 s", kConfig, {"execution.walltime=277777778:00:00"},
       "execution.walltime: (11574074-02:00:00) is longer than Slurm's largest time limit"},
      {"num_nodes -1", kConfig, {"execution.num_nodes=-1"},
       "execution.num_nodes: must be between 1 and 4096, not -1"},
      {"huge integer", kConfig, {"execution.num_nodes=99999999999999999999999"},
       "execution.num_nodes: must be an integer"},
      {"1e309", kConfig, {"execution.endpoint_readiness_timeout=1e309"},
       "execution.endpoint_readiness_timeout: must be an integer"},
      {"output_dir with ..", kConfig, {"execution.output_dir=/scratch/../../etc"},
       "execution.output_dir: must not contain '..'"},
      {"task name with ..", kConfig, {"evaluation.tasks.0.name=../../etc"},
       "evaluation.tasks.0.name: \"../../etc\" is not a valid task name"},
      {"task name with shell", kConfig, {"evaluation.tasks.0.name='a;touch /tmp/x'"},
       "is not a valid task name"},
      {"mount with ..", kConfig, {"++execution.mounts.evaluation={/data/../..: /data}"},
       "execution.mounts.evaluation"},
      {"newline in an sbatch flag", kConfig,
       {"++execution.sbatch_extra_flags.mem=\"1G\\n#SBATCH --uid=0\""},
       "execution.sbatch_extra_flags.mem"},
      {"sbatch flag name", kConfig, {"++execution.sbatch_extra_flags.--uid=0"},
       "execution.sbatch_extra_flags.--uid: sbatch flag names"},
  };
  // An agent serves the cluster, so that a config the loader let through would be rendered and
  // submitted (and counted below).
  FakeAgent agent(agents_.get(), "agent-a", kCluster);
  ASSERT_TRUE(agent.WaitRegistered());
  int n = 0;
  for (const Case& c : cases) {
    grpc::Status s = Submit(absl::StrCat("bad-", n++), c.yaml, c.overrides);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name << ": "
                                                                  << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.expected)) << c.name;
  }
  EXPECT_EQ(InvocationCount(), 0);
  ExpectServing();
}

// Protobuf string fields must hold UTF-8: a request or an agent message that breaks this is
// refused whole, and the connection and the controller go on.
TEST_F(HostileInputTest, InvalidUtf8InStringFieldsIsRefused) {
  for (const std::string& yaml :
       {absl::StrReplaceAll(kConfig, {{"echo one", "echo \xFF\xFE"}}),
        absl::StrReplaceAll(kConfig, {{"account: acct", "account: a\xC0\xAF"}})}) {
    grpc::Status s = Submit("utf8", yaml);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  }
  grpc::Status s = Submit("utf8-override", kConfig, {"execution.account=a\xED\xA0\x80"});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(InvocationCount(), 0);
  ExpectServing();

  // An agent whose Register is not UTF-8 is dropped; one that registers properly is served.
  {
    FakeAgent bad(agents_.get(), "agent-\xFF", kCluster);
    EXPECT_FALSE(bad.WaitRegistered());
  }
  FakeAgent agent(agents_.get(), "agent-a", kCluster);
  ASSERT_TRUE(agent.WaitRegistered());
  v1::SubmitInvocationResponse resp;
  s = Submit("good", kConfig, {}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string task = resp.invocation().tasks(0).id();
  ASSERT_EQ(agent.Send(StateEvents(1, task, {v1::TASK_STATE_QUEUED})), 1u);
  // An event with invalid UTF-8 ends that stream; nothing of it is applied.
  v1::AgentMessage msg;
  *msg.mutable_events() = StateEvents(2, task, {v1::TASK_STATE_FAILED});
  msg.mutable_events()->mutable_events(0)->mutable_task()->set_reason("bad \xFF reason");
  // The controller cannot decode it: the stream ends with INVALID_ARGUMENT saying so.
  agent.Write(msg);
  grpc::Status ended = agent.Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ended.error_message();
  EXPECT_THAT(ended.error_message(), HasSubstr("cannot be decoded as an evalctl.v1.AgentMessage"));
  EXPECT_EQ(GetTask(task).state(), v1::TASK_STATE_QUEUED);
  ExpectServing();
  // The agent reconnects and goes on from the last sequence applied.
  FakeAgent again(agents_.get(), "agent-a", kCluster);
  ASSERT_TRUE(again.WaitRegistered());
  EXPECT_EQ(again.Send(StateEvents(2, task, {v1::TASK_STATE_RUNNING})), 2u);
  EXPECT_EQ(GetTask(task).state(), v1::TASK_STATE_RUNNING);
}

TEST_F(HostileInputTest, AgentEventsForForeignTasksReplaysAndReorderingsChangeNothing) {
  FakeAgent owner(agents_.get(), "agent-a", kCluster);
  ASSERT_TRUE(owner.WaitRegistered());
  FakeAgent other(agents_.get(), "agent-b", "hostile-b");
  ASSERT_TRUE(other.WaitRegistered());
  v1::SubmitInvocationResponse resp;
  grpc::Status s = Submit("inv", kConfig, {}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string task = resp.invocation().tasks(0).id();
  const std::string task2 = resp.invocation().tasks(1).id();
  const v1::TaskState initial = GetTask(task).state();

  // Another agent's reports on this task, and on a task that does not exist, are acknowledged
  // (so that the agent moves on) and ignored.
  EXPECT_EQ(other.Send(StateEvents(1, task, {v1::TASK_STATE_FAILED})), 1u);
  EXPECT_EQ(other.Send(StateEvents(2, "ffffffffffffffff.0", {v1::TASK_STATE_FAILED})), 2u);
  EXPECT_EQ(other.Send(StateEvents(3, "", {v1::TASK_STATE_SUCCEEDED})), 3u);
  EXPECT_EQ(GetTask(task).state(), initial);
  EXPECT_EQ(GetTask(task2).state(), initial);

  // The owner's events apply once; a replay changes nothing.
  EXPECT_EQ(owner.Send(StateEvents(1, task, {v1::TASK_STATE_QUEUED, v1::TASK_STATE_RUNNING})), 2u);
  EXPECT_EQ(owner.Send(StateEvents(1, task, {v1::TASK_STATE_QUEUED, v1::TASK_STATE_RUNNING})), 2u);
  v1::Task t = GetTask(task);
  EXPECT_EQ(t.state(), v1::TASK_STATE_RUNNING);
  ASSERT_EQ(t.attempts_size(), 1);
  // An older sequence after a newer one, in one batch or in the next, is dropped.
  v1::Events reordered = StateEvents(10, task, {v1::TASK_STATE_SUCCEEDED});
  *reordered.add_events() = StateEvents(5, task, {v1::TASK_STATE_FAILED}).events(0);
  EXPECT_EQ(owner.Send(reordered), 10u);
  EXPECT_EQ(owner.Send(StateEvents(7, task, {v1::TASK_STATE_CANCELLED})), 10u);
  EXPECT_EQ(GetTask(task).state(), v1::TASK_STATE_SUCCEEDED);
  // The stream stays usable: the other task still moves.
  EXPECT_EQ(owner.Send(StateEvents(11, task2, {v1::TASK_STATE_RUNNING})), 11u);
  EXPECT_EQ(GetTask(task2).state(), v1::TASK_STATE_RUNNING);

  EXPECT_EQ(InvocationCount(), 1);
  ExpectServing();
}

// A message that is not a valid AgentMessage (bytes protobuf cannot decode, a message with no
// known body, a second Register) ends that stream with INVALID_ARGUMENT and one log line; the
// controller serves on and the agent can connect again.
TEST_F(HostileInputTest, InvalidAgentMessagesEndTheStreamWithInvalidArgument) {
  struct Case {
    std::string name;
    bool register_first;
    std::string bytes;
    std::string message;
  };
  v1::AgentMessage second_register;
  second_register.mutable_register_()->set_agent_id("agent-raw");
  second_register.mutable_register_()->set_cluster(kCluster);
  second_register.mutable_register_()->set_unix_user("alice");
  v1::AgentMessage unknown_body;  // field 99 only: none this controller knows
  unknown_body.GetReflection()->MutableUnknownFields(&unknown_body)->AddVarint(99, 1);
  const std::vector<Case> cases = {
      {"garbage before Register", false, "\xff\xff\xff\xff\xff\xff",
       "message 1 on the agent stream (6 bytes) cannot be decoded as an evalctl.v1.AgentMessage"},
      {"garbage after Register", true, "\x0a\xff\xff\xff\xff\x0f",
       "message 2 on the agent stream (6 bytes) cannot be decoded"},
      {"empty message", true, "", "message 2 on the agent stream (0 bytes) is none of register, "
                                  "events, command_result or heartbeat"},
      {"unknown body", true, unknown_body.SerializeAsString(),
       "is none of register, events, command_result or heartbeat"},
      {"second Register", true, second_register.SerializeAsString(),
       "message 2 on the agent stream is a second Register"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RawAgent agent(channel_.get());
    if (c.register_first) {
      ASSERT_TRUE(agent.Register("agent-raw"));
    }
    agent.WriteBytes(c.bytes);
    grpc::Status status = agent.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
    ExpectServing();
  }
  // One warning per refused stream, naming the agent when it had registered.
  const std::string log = ReadFileOrEmpty(env_.controller_log());
  int refused = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "closed: message ")) ++refused;
  }
  EXPECT_EQ(refused, static_cast<int>(cases.size())) << log;
  EXPECT_THAT(log, HasSubstr("(agent=not registered) closed: message 1 on the agent stream"));
  EXPECT_THAT(log, HasSubstr("(agent=agent-raw) closed: message 2 on the agent stream"));

  // A well-behaved agent with the same id is served.
  RawAgent good(channel_.get());
  ASSERT_TRUE(good.Register("agent-raw"));
  v1::AgentMessage heartbeat;
  heartbeat.mutable_heartbeat()->set_tracked_jobs(1);
  EXPECT_TRUE(good.Write(heartbeat));
}

}  // namespace
}  // namespace evalctl::e2e
