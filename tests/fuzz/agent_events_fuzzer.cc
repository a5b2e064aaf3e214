// Fuzz target: the controller applying what an agent reports (ControllerCore::AgentEvents), over
// a real SqliteStore. Agents are trusted to be ours but run on other machines and speak over the
// network; a bad Events message must never crash the controller or corrupt another agent's tasks.
//
// Input: a serialized evalctl.v1.Events (the corpus was made from text protos with
// `protoc --encode=evalctl.v1.Events`, see tests/fuzz/README.md). A task id `#N` stands for task
// N % 3 of the store's invocations: #0 and #1 belong to the reporting agent `agent-a`, #2 to
// another agent (`agent-b`) whose task must stay as it was. Other task ids are used as they are.
//
// Each input starts from the same store: a template database made once (two agents registered,
// one invocation submitted to each), copied to a fresh file; so a crash reproduces from its input
// alone. Checked after the apply: a replay of the same events changes nothing, and every task,
// invocation, result and event can be read back.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/clock.h"
#include "common/logging.h"
#include "controller/core/controller_core.h"
#include "controller/core/sqlite_store.h"
#include "evalctl/v1/agent_service.pb.h"
#include "google/protobuf/stubs/logging.h"

namespace evalctl::controller {
namespace {

// An invariant of the code under test does not hold (or the fixture cannot be set up): libFuzzer
// reports it as a crash.
void Require(bool condition) {
  if (!condition) std::abort();
}

constexpr char kConfigA[] = R"(defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution:
  hostname: clusterA
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

class DiscardingLink : public AgentLink {
 public:
  void Send(v1::ControllerMessage) override {}
};

v1::Register Registration(const std::string& agent_id, const std::string& cluster) {
  v1::Register reg;
  reg.set_agent_id(agent_id);
  reg.set_cluster(cluster);
  reg.set_unix_user("alice");
  reg.set_version("fuzz");
  return reg;
}

struct Fixture {
  std::string dir;
  std::string template_db;
  std::string db;
  // Task ids: agent-a's two, then agent-b's one.
  std::vector<std::string> tasks;
  std::vector<std::string> invocations;
};

Fixture* MakeFixture() {
  auto* f = new Fixture;
  std::string pattern = (std::filesystem::temp_directory_path() / "agent_events_fuzzer.XXXXXX");
  Require(::mkdtemp(pattern.data()) != nullptr);
  f->dir = pattern;
  f->template_db = f->dir + "/template.db";
  f->db = f->dir + "/controller.db";

  FakeClock clock;
  DiscardingLink link;
  auto store = SqliteStore::Open(f->template_db);
  Require(store.ok());
  ControllerCore core(ControllerOptions{}, store->get(), &clock);
  Require(core.AgentConnected(Registration("agent-a", "clusterA"), &link).ok());
  Require(core.AgentConnected(Registration("agent-b", "clusterB"), &link).ok());
  for (const char* cluster : {"clusterA", "clusterB"}) {
    std::string yaml = kConfigA;
    yaml.replace(yaml.find("hostname: clusterA"), 18, std::string("hostname: ") + cluster);
    if (std::string(cluster) == "clusterB") {
      yaml.resize(yaml.find("    - name: two"));  // one task
    }
    v1::SubmitInvocationRequest req;
    req.set_request_id(cluster);
    req.mutable_config()->set_yaml(yaml);
    req.mutable_config()->set_file_name("run.yaml");
    auto r = core.Submit(Caller{"alice", false}, req);
    Require(r.ok());
    f->invocations.push_back(r->invocation().id());
    for (const v1::Task& t : r->invocation().tasks()) f->tasks.push_back(t.id());
  }
  Require(f->tasks.size() == 3);
  // Closing the last connection checkpoints the WAL into template.db.
  return f;
}

const Fixture& GetFixture() {
  static const Fixture* fixture = MakeFixture();
  return *fixture;
}

void RemoveFixture() { std::filesystem::remove_all(GetFixture().dir); }

// `#N` → a fixture task; anything else unchanged.
void MapTaskIds(const Fixture& f, v1::Events& events) {
  for (v1::AgentEvent& e : *events.mutable_events()) {
    if (!e.has_task()) continue;
    absl::string_view id = e.task().task_id();
    unsigned n = 0;
    if (absl::ConsumePrefix(&id, "#") && absl::SimpleAtoi(id, &n)) {
      e.mutable_task()->set_task_id(f.tasks[n % f.tasks.size()]);
    }
  }
}

int TestOneInput(const uint8_t* data, size_t size) {
  v1::Events events;
  if (!events.ParseFromArray(data, static_cast<int>(size))) return 0;
  const Fixture& f = GetFixture();
  MapTaskIds(f, events);

  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(f.db + suffix);
  std::filesystem::copy_file(f.template_db, f.db);
  FakeClock clock;
  DiscardingLink link;
  auto store = SqliteStore::Open(f.db);
  Require(store.ok());
  ControllerCore core(ControllerOptions{}, store->get(), &clock);
  Require(core.AgentConnected(Registration("agent-a", "clusterA"), &link).ok());
  auto other_before = (*store)->GetTask(f.tasks[2]);
  Require(other_before.ok());

  absl::StatusOr<uint64_t> ack = core.AgentEvents("agent-a", events);
  if (ack.ok()) {
    // A replay (the agent resends after a reconnect) is acknowledged alike and applies nothing.
    const uint64_t logged = (*store)->last_event_sequence();
    absl::StatusOr<uint64_t> again = core.AgentEvents("agent-a", events);
    Require(again.ok() && *again == *ack);
    Require((*store)->last_event_sequence() == logged);
  }

  // agent-b's task is not agent-a's to change.
  auto other_after = (*store)->GetTask(f.tasks[2]);
  Require(other_after.ok());
  Require(other_after->task.state() == other_before->task.state() &&
          other_after->task.attempts_size() == other_before->task.attempts_size() &&
          other_after->task.reason() == other_before->task.reason());

  // Everything reads back.
  const Caller alice{"alice", false};
  for (const std::string& id : f.tasks) Require(core.GetTask(alice, id).ok());
  for (const std::string& id : f.invocations) {
    Require(core.GetInvocation(alice, id).ok());
    (void)core.Results(alice, id);
  }
  auto scope = core.ResolveWatch(alice, "");
  Require(scope.ok());
  Require(core.EventsAfter(*scope, 0, 10000).ok());
  (void)core.Clusters();
  return 0;
}

}  // namespace
}  // namespace evalctl::controller

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  evalctl::logging::SetMinSeverity(evalctl::logging::Severity::kError);
  // Not parsing is an answer here, not news (e.g. "invalid UTF-8 in a string field").
  google::protobuf::SetLogHandler(nullptr);
  (void)evalctl::controller::GetFixture();
  std::atexit(evalctl::controller::RemoveFixture);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return evalctl::controller::TestOneInput(data, size);
}
