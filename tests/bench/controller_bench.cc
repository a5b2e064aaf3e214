// Benchmarks 4 and 5: the controller, as a separate process (the real evalctl-controller binary,
// --insecure on a free loopback port, a fresh state directory), driven over gRPC.
//
// A simulated agent opens the agent stream (AgentService.Connect) and registers a cluster. The C++
// client submits invocations of T tasks each (default 10 × 10,000 = 100,000 tasks in the store);
// the controller renders them, commits them and sends the SubmitTask commands down the stream.
// The simulated agent then does what evalctl-agent does:
//   handshake  one CommandResult (OK) per SubmitTask as it arrives, as the agent replies after
//              journaling (the controller sends the next SubmitTasks as answers come back: at
//              most --agent-submit-window are unanswered)
//   events     per task ACCEPTED, SUBMITTED, RUNNING, 2 × PROGRESS, FINISHED (with results), in
//              waves across all tasks (as tracking cycles produce them), 500 per Events message
//              (the agent's events_per_message), written back to back; the controller commits
//              each message in one durable transaction and acknowledges it.
// Figures:
//   5  events/s from the first write to the last acknowledgement; controller RSS (VmRSS, and
//      its peak VmHWM) with all tasks in the store, and again after a restart on the same store.
//   4  GetInvocation of a 10,000-task invocation: median and p95 over gRPC on loopback, from a
//      fresh client process, in the BASIC view (what `evalctl status` reads), side by side with
//      the FULL view (what it read before views existed, and what clients that send no view
//      get), alternating; the SUMMARY view (counts only). `evalctl status <id>` end to end, and,
//      with --baseline-cli, an older `evalctl` binary against the same controller, alternating.
//      The controller never calls Slurm. Baseline: one squeue and one sacct for 10,000 job ids on
//      the local cluster (SlurmCliClient with all ids on one command line) — what a status that
//      asks Slurm costs at the very least.
//
//   controller_bench [--controller=PATH] [--baseline-cli=PATH] [--invocations=10]
//                    [--tasks=10000] [--calls=30] [--no-slurm]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/slurm/slurm_cli_client.h"
#include "clients/cpp/client.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/subprocess.h"
#include "controller/core/controller_core.h"
#include "controller/core/sqlite_store.h"
#include "evalctl/v1/agent_service.grpc.pb.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "tests/bench/bench_util.h"

extern char** environ;

namespace evalctl::bench {
namespace {

using google::protobuf::util::TimeUtil;

#ifndef EVALCTL_CONTROLLER_BIN
#define EVALCTL_CONTROLLER_BIN "evalctl-controller"
#endif
#ifndef EVALCTL_CLI_BIN
#define EVALCTL_CLI_BIN "evalctl"
#endif

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The controller process.
class Controller {
 public:
  Controller(std::string binary, std::string state_dir)
      : binary_(std::move(binary)), state_dir_(std::move(state_dir)) {}
  ~Controller() { Stop(); }

  bool Start() {
    port_ = FreePort();
    const std::string listen = absl::StrCat("127.0.0.1:", port_);
    const std::string log = state_dir_ + "/controller.log";
    std::vector<std::string> args = {binary_, "--insecure", "--listen", listen, "--state-dir",
                                     state_dir_ + "/state"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&pid_, binary_.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      std::cerr << "cannot start " << binary_ << ": " << std::strerror(rc) << "\n";
      pid_ = 0;
      return false;
    }
    auto c = client::Client::Connect({.target = listen, .timeout = absl::Seconds(600)});
    if (!c.ok()) return false;
    client_ = *std::move(c);
    for (absl::Time until = absl::Now() + absl::Seconds(30); absl::Now() < until;) {
      if (client_->ListClusters({}, {.timeout = absl::Seconds(2)}).ok()) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    std::cerr << "the controller did not answer; see " << log << "\n";
    return false;
  }

  void Stop() {
    client_.reset();
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }

  int pid() const { return pid_; }
  int port() const { return port_; }
  client::Client* client() { return client_.get(); }

 private:
  std::string binary_;
  std::string state_dir_;
  pid_t pid_ = 0;
  int port_ = 0;
  std::unique_ptr<client::Client> client_;
};

// The simulated agent: one AgentService.Connect stream.
class SimulatedAgent {
 public:
  struct Received {
    uint64_t command_id;
    std::string task_id;
  };

  bool Connect(int port) {
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::AgentService::NewStub(channel_);
    stream_ = stub_->Connect(&context_);
    v1::AgentMessage reg;
    v1::Register* r = reg.mutable_register_();
    r->set_agent_id("agent-bench-0001");
    r->set_cluster("bench");
    r->set_unix_user("bench");
    r->set_version("bench");
    r->add_capabilities("runtime:none");
    if (!stream_->Write(reg)) return false;
    v1::ControllerMessage msg;
    if (!stream_->Read(&msg) || !msg.has_registered()) return false;
    reader_ = std::thread([this] { ReadLoop(); });
    return true;
  }

  void Close() {
    if (!stream_) return;
    stream_->WritesDone();
    context_.TryCancel();
    if (reader_.joinable()) reader_.join();
    (void)stream_->Finish();
    stream_.reset();
  }

  // Waits until `n` SubmitTask commands arrived in all; returns them (and forgets them).
  std::vector<Received> TakeCommands(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    wanted_commands_ = n;
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](SimulatedAgent* a) {
              a->mu_.AssertHeld();  // conditions run under the mutex
              return a->commands_.size() >= a->wanted_commands_;
            },
            this),
        timeout);
    std::vector<Received> out;
    out.swap(commands_);
    return out;
  }

  // Waits until the controller acknowledged `sequence`.
  bool WaitAck(uint64_t sequence, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    wanted_ack_ = sequence;
    return mu_.AwaitWithTimeout(
        absl::Condition(
            +[](SimulatedAgent* a) {
              a->mu_.AssertHeld();
              return a->acked_ >= a->wanted_ack_;
            },
            this),
        timeout);
  }

  bool Write(const v1::AgentMessage& m) {
    absl::MutexLock lock(&write_mu_);
    return stream_->Write(m);
  }
  uint64_t NextSequence() { return ++sequence_; }
  double submit_bytes() {
    absl::MutexLock lock(&mu_);
    return commands_received_ ? submit_bytes_ / commands_received_ : 0;
  }

 private:
  void ReadLoop() {
    v1::ControllerMessage msg;
    while (stream_->Read(&msg)) {
      absl::MutexLock lock(&mu_);
      if (msg.has_events_ack()) {
        acked_ = std::max<uint64_t>(acked_, msg.events_ack().sequence());
      } else if (msg.has_command() && msg.command().has_submit_task()) {
        // Answered at once (the real agent answers after journaling), before it counts as
        // received: when TakeCommands returns, every answer is written.
        v1::AgentMessage answer;
        answer.mutable_command_result()->set_command_id(msg.command().command_id());
        Write(answer);
        commands_.push_back({msg.command().command_id(), msg.command().submit_task().task_id()});
        submit_bytes_ += static_cast<double>(msg.command().submit_task().ByteSizeLong());
        ++commands_received_;
      }
    }
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_;
  std::thread reader_;
  uint64_t sequence_ = 0;  // writer thread only
  absl::Mutex write_mu_;  // one Write at a time (the reader answers SubmitTasks)

  absl::Mutex mu_;
  std::vector<Received> commands_ ABSL_GUARDED_BY(mu_);
  size_t wanted_commands_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t wanted_ack_ ABSL_GUARDED_BY(mu_) = 0;
  double submit_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t commands_received_ ABSL_GUARDED_BY(mu_) = 0;
};

std::string Config(int tasks) {
  std::string yaml =
      "defaults:\n  - execution: slurm/default\n  - deployment: none\n  - _self_\n"
      "execution:\n  hostname: bench\n  username: bench\n  account: acct\n"
      "  output_dir: /var/tmp/evalctl-bench-results\n  container_runtime: none\n"
      "target:\n  api_endpoint: {url: 'http://h:8000/v1/chat/completions', model_id: m}\n"
      "evaluation:\n  tasks:\n";
  for (int i = 0; i < tasks; ++i) {
    absl::StrAppend(&yaml, "    - {name: task-", i, ", command: 'run-eval --task ", i, "'}\n");
  }
  return yaml;
}

google::protobuf::Timestamp Now() {
  return TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(absl::Now()));
}

// The events of one wave for one task, as the agent would make them.
v1::TaskEvent MakeEvent(const std::string& task_id, int wave, int64_t job_id) {
  v1::TaskEvent e;
  e.set_task_id(task_id);
  *e.mutable_time() = Now();
  v1::Attempt* a = e.mutable_attempt();
  a->set_number(1);
  a->set_attempt_id(task_id + ".1");
  if (wave >= 1) {
    a->set_slurm_job_id(std::to_string(job_id));
    a->set_slurm_state("PENDING");
    *a->mutable_submit_time() = Now();
  }
  if (wave >= 2) {
    a->set_slurm_state("RUNNING");
    *a->mutable_start_time() = Now();
    a->set_node_list("node1");
    e.set_phase(v1::PHASE_EVALUATING);
    e.mutable_progress()->set_total(1000);
  }
  switch (wave) {
    case 0:
      e.set_kind(v1::TaskEvent::KIND_ACCEPTED);
      e.set_state(v1::TASK_STATE_PENDING);
      break;
    case 1:
      e.set_kind(v1::TaskEvent::KIND_SUBMITTED);
      e.set_state(v1::TASK_STATE_QUEUED);
      break;
    case 2:
      e.set_kind(v1::TaskEvent::KIND_STATE_CHANGED);
      e.set_state(v1::TASK_STATE_RUNNING);
      break;
    case 3:
    case 4:
      e.set_kind(v1::TaskEvent::KIND_PROGRESS);
      e.set_state(v1::TASK_STATE_RUNNING);
      e.mutable_progress()->set_done(wave == 3 ? 400 : 800);
      e.set_elapsed_seconds(wave == 3 ? 600 : 1200);
      break;
    default: {
      e.set_kind(v1::TaskEvent::KIND_FINISHED);
      e.set_state(v1::TASK_STATE_SUCCEEDED);
      e.set_phase(v1::PHASE_FINISHED);
      e.mutable_progress()->set_done(1000);
      e.set_elapsed_seconds(1500);
      a->set_slurm_state("COMPLETED");
      a->set_exit_code(0);
      a->set_elapsed_seconds(1500);
      *a->mutable_end_time() = Now();
      v1::TaskResults* r = e.mutable_results();
      r->set_results_path("/var/tmp/evalctl-bench-results/" + task_id + "/artifacts/results.yml");
      for (const char* score : {"acc", "acc_norm"}) {
        v1::Score* s = r->add_scores();
        s->set_task(task_id);
        s->set_metric("accuracy");
        s->set_score(score);
        s->set_value(0.5);
        (*s->mutable_stats())["stderr"] = 0.01;
      }
    }
  }
  return e;
}

constexpr int kWaves = 6;
constexpr int kEventsPerMessage = 500;

struct IngestResult {
  int64_t events = 0;
  double seconds = 0;
};

// Sends every wave for `task_ids`, 500 events per message, then waits for the last ack.
IngestResult SendEvents(SimulatedAgent& agent, const std::vector<std::string>& task_ids,
                        int64_t first_job_id) {
  IngestResult r;
  const double t0 = WallSeconds();
  v1::AgentMessage msg;
  uint64_t last = 0;
  auto flush = [&] {
    if (msg.events().events_size() == 0) return;
    agent.Write(msg);
    msg.Clear();
  };
  for (int wave = 0; wave < kWaves; ++wave) {
    for (size_t i = 0; i < task_ids.size(); ++i) {
      v1::AgentEvent* e = msg.mutable_events()->add_events();
      last = agent.NextSequence();
      e->set_sequence(last);
      *e->mutable_task() = MakeEvent(task_ids[i], wave, first_job_id + static_cast<int64_t>(i));
      ++r.events;
      if (msg.events().events_size() >= kEventsPerMessage) flush();
    }
  }
  flush();
  if (!agent.WaitAck(last, absl::Minutes(30))) std::cout << "  events were not acknowledged\n";
  r.seconds = WallSeconds() - t0;
  return r;
}

// The same work without gRPC: ControllerCore over the real SqliteStore, in this process. Tells the
// core's cost (CPU per event, measured on this thread) apart from the transport's.
struct CoreFigures {
  double handshake_per_s = 0;
  double events_per_s = 0;
  double cpu_us_per_event = 0;
  // ControllerCore::GetInvocation, median ms, per view.
  double get_full_ms = 0;
  double get_basic_ms = 0;
  double get_summary_ms = 0;
};

class CollectingLink : public controller::AgentLink {
 public:
  void Send(v1::ControllerMessage message) override {
    if (message.has_command() && message.command().has_submit_task()) {
      commands.push_back({message.command().command_id(),
                          message.command().submit_task().task_id()});
    }
  }
  std::vector<SimulatedAgent::Received> commands;
};

CoreFigures InProcess(int tasks) {
  CoreFigures out;
  const std::string dir = MakeTempDir("controller-core");
  auto store = controller::SqliteStore::Open(dir + "/controller.db");
  if (!store.ok()) {
    std::cerr << store.status() << "\n";
    return out;
  }
  RealClock clock;
  controller::ControllerCore core({}, store->get(), &clock);
  CollectingLink link;
  v1::Register reg;
  reg.set_agent_id("agent-bench-core");
  reg.set_cluster("bench");
  reg.set_unix_user("bench");
  if (!core.AgentConnected(reg, &link).ok()) return out;
  const controller::Caller caller{"bench", true};
  v1::SubmitInvocationRequest req;
  req.set_request_id("bench-core");
  req.mutable_config()->set_yaml(Config(tasks));
  auto submitted = core.Submit(caller, req);
  if (!submitted.ok()) {
    std::cerr << "in-process Submit: " << submitted.status() << "\n";
    return out;
  }
  // Each answer lets the next SubmitTask out of the window (sent into link.commands).
  const double h0 = WallSeconds();
  size_t answered = 0;
  while (answered < link.commands.size()) {
    v1::CommandResult r;
    r.set_command_id(link.commands[answered++].command_id);
    core.AgentCommandResult(reg.agent_id(), r);
  }
  out.handshake_per_s = static_cast<double>(link.commands.size()) / (WallSeconds() - h0);
  // Every event message first, so that only their application is timed.
  std::vector<v1::Events> messages(1);
  uint64_t seq = 0;
  for (int wave = 0; wave < kWaves; ++wave) {
    for (size_t i = 0; i < link.commands.size(); ++i) {
      if (messages.back().events_size() >= kEventsPerMessage) messages.emplace_back();
      v1::AgentEvent* e = messages.back().add_events();
      e->set_sequence(++seq);
      *e->mutable_task() = MakeEvent(link.commands[i].task_id, wave, static_cast<int64_t>(i));
    }
  }
  const double w0 = WallSeconds();
  const double c0 = ThreadCpuSeconds();
  for (const v1::Events& m : messages) {
    if (auto s = core.AgentEvents(reg.agent_id(), m); !s.ok()) {
      std::cerr << "AgentEvents: " << s.status() << "\n";
      break;
    }
  }
  out.events_per_s = static_cast<double>(seq) / (WallSeconds() - w0);
  out.cpu_us_per_event = (ThreadCpuSeconds() - c0) / static_cast<double>(seq) * 1e6;
  std::vector<double> full, basic, summary;
  v1::GetInvocationRequest get;
  get.set_id(submitted->invocation().id());
  for (int i = 0; i < 10; ++i) {
    for (auto [view, ms] : {std::pair{v1::INVOCATION_VIEW_FULL, &full},
                            std::pair{v1::INVOCATION_VIEW_BASIC, &basic},
                            std::pair{v1::INVOCATION_VIEW_SUMMARY, &summary}}) {
      get.set_view(view);
      const double t0 = WallSeconds();
      auto inv = core.GetInvocation(caller, get);
      ms->push_back((WallSeconds() - t0) * 1e3);
    }
  }
  out.get_full_ms = Median(full);
  out.get_basic_ms = Median(basic);
  out.get_summary_ms = Median(summary);
  std::filesystem::remove_all(dir);
  return out;
}

struct Latencies {
  std::vector<double> ms;
  size_t bytes = 0;
  int tasks = 0;
  // One serialization / one parse of the answer (incl. destruction), in this process.
  double serialize_ms = 0;
  double parse_ms = 0;
};

Latencies MeasureGetInvocation(client::Client* c, const std::string& id, int calls,
                               v1::InvocationView view) {
  Latencies out;
  v1::GetInvocationRequest req;
  req.set_id(id);
  req.set_view(view);
  for (int i = 0; i < calls; ++i) {
    const double t0 = WallSeconds();
    auto inv = c->GetInvocation(req, {.timeout = absl::Seconds(120)});
    out.ms.push_back((WallSeconds() - t0) * 1e3);
    if (!inv.ok()) {
      std::cout << "  GetInvocation: " << inv.status() << "\n";
      continue;
    }
    out.bytes = inv->ByteSizeLong();
    out.tasks = inv->tasks_size();
    if (i == 0) {
      // What parsing and serializing the answer costs by itself, in this process.
      const std::string wire = inv->SerializeAsString();
      double t1 = WallSeconds();
      for (int k = 0; k < 5; ++k) (void)inv->SerializeAsString();
      out.serialize_ms = (WallSeconds() - t1) * 1e3 / 5;
      t1 = WallSeconds();
      for (int k = 0; k < 5; ++k) {
        v1::Invocation parsed;
        parsed.ParseFromString(wire);
      }
      out.parse_ms = (WallSeconds() - t1) * 1e3 / 5;
    }
  }
  return out;
}

// --get-client=PORT:ID:CALLS:VIEW: GetInvocation in VIEW (the enum's number) from this fresh
// process (as `evalctl status` is one), one line "GET <ms>" per call after two warm-up calls.
int GetClient(const std::string& spec) {
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  int calls = 0, view = 0;
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[2], &calls) ||
      !absl::SimpleAtoi(parts[3], &view) || !v1::InvocationView_IsValid(view)) {
    return 2;
  }
  auto c = client::Client::Connect(
      {.target = absl::StrCat("127.0.0.1:", parts[0]), .timeout = absl::Seconds(120)});
  if (!c.ok()) return 1;
  v1::GetInvocationRequest req;
  req.set_id(parts[1]);
  req.set_view(static_cast<v1::InvocationView>(view));
  for (int i = 0; i < calls + 2; ++i) {
    const double t0 = WallSeconds();
    auto inv = (*c)->GetInvocation(req);
    const double ms = (WallSeconds() - t0) * 1e3;
    if (!inv.ok()) {
      std::cerr << inv.status() << "\n";
      return 1;
    }
    if (i >= 2) std::cout << "GET " << ms << " " << inv->tasks_size() << std::endl;
    if (i == calls + 1) {
      // The client's own share: parsing (and freeing) the answer, in this fresh process.
      const std::string wire = inv->SerializeAsString();
      std::vector<double> parse;
      for (int k = 0; k < 5; ++k) {
        const double p0 = WallSeconds();
        {
          v1::Invocation parsed;
          parsed.ParseFromString(wire);
        }
        parse.push_back((WallSeconds() - p0) * 1e3);
      }
      std::cout << "PARSE " << Median(parse) << std::endl;
    }
  }
  return 0;
}

// Runs GetClient in a child process.
std::vector<double> GetFromFreshProcess(int port, const std::string& id, int calls,
                                        v1::InvocationView view, double* parse_ms) {
  std::vector<double> out;
  auto r = RunSubprocess({.argv = {"/proc/self/exe", absl::StrCat("--get-client=", port, ":", id,
                                                                  ":", calls, ":",
                                                                  static_cast<int>(view))},
                          .timeout = absl::Minutes(10)});
  if (!r.ok() || !r->ok()) {
    std::cout << "  fresh client failed: " << (r.ok() ? r->stderr_data : r.status().ToString())
              << "\n";
    return out;
  }
  for (absl::string_view line : absl::StrSplit(r->stdout_data, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    double ms = 0;
    if (f.size() >= 2 && f[0] == "GET" && absl::SimpleAtod(f[1], &ms)) out.push_back(ms);
    if (f.size() >= 2 && f[0] == "PARSE" && absl::SimpleAtod(f[1], &ms)) *parse_ms = ms;
  }
  return out;
}

// `evalctl status ID` as a user runs it: process start, connection, the call, the table.
std::vector<double> CliStatus(const std::string& cli, int port, const std::string& id, int runs) {
  std::vector<double> out;
  for (int i = 0; i < runs; ++i) {
    const double t0 = WallSeconds();
    auto r = RunSubprocess({.argv = {cli, "status", id},
                            .env = {{"EVALCTL_CONTROLLER", absl::StrCat("127.0.0.1:", port)}},
                            .timeout = absl::Minutes(2)});
    const double ms = (WallSeconds() - t0) * 1e3;
    if (!r.ok() || !r->ok()) {
      std::cout << "  evalctl status failed: "
                << (r.ok() ? r->stderr_data.substr(0, 300) : r.status().ToString()) << "\n";
      return {};
    }
    out.push_back(ms);
  }
  return out;
}

int Main(int argc, char** argv) {
  logging::SetMinSeverity(logging::Severity::kWarning);
  if (argc == 2 && absl::string_view(argv[1]).substr(0, 13) == "--get-client=") {
    return GetClient(std::string(argv[1] + 13));
  }
  std::string binary = EVALCTL_CONTROLLER_BIN;
  std::string baseline_cli;
  int invocations = 10, tasks = 10000, calls = 30;
  bool slurm = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--controller=", 0) == 0) {
      binary = a.substr(13);
      continue;
    }
    if (a.rfind("--baseline-cli=", 0) == 0) {
      baseline_cli = a.substr(15);
      continue;
    }
    if (a.rfind("--invocations=", 0) == 0 && absl::SimpleAtoi(a.substr(14), &invocations)) continue;
    if (a.rfind("--tasks=", 0) == 0 && absl::SimpleAtoi(a.substr(8), &tasks)) continue;
    if (a.rfind("--calls=", 0) == 0 && absl::SimpleAtoi(a.substr(8), &calls)) continue;
    if (a == "--no-slurm") {
      slurm = false;
      continue;
    }
    if (a == "--core-only") {  // only the in-process figures (for profilers)
      invocations = 0;
      continue;
    }
    std::cerr << "usage: controller_bench [--controller=PATH] [--baseline-cli=PATH] "
                 "[--invocations=10] [--tasks=10000] [--calls=30] [--no-slurm]\n";
    return 2;
  }
  const int total_tasks = invocations * tasks;
  std::cout << "== 5a. ControllerCore over SqliteStore in this process, " << tasks << " tasks\n";
  const CoreFigures core = InProcess(tasks);
  std::cout << "  handshake " << Fmt(core.handshake_per_s, 0) << " results/s; events "
            << Fmt(core.events_per_s, 0) << "/s, " << Fmt(core.cpu_us_per_event, 1)
            << " µs CPU each; GetInvocation FULL " << Fmt(core.get_full_ms, 1) << " ms, BASIC "
            << Fmt(core.get_basic_ms, 1) << " ms, SUMMARY " << Fmt(core.get_summary_ms, 2)
            << " ms\n";
  if (invocations == 0) return 0;
  std::cout << "== 4/5. controller: " << invocations << " invocations × " << tasks
            << " tasks, simulated agent over gRPC\n";
  const std::string dir = MakeTempDir("controller");
  Controller controller(binary, dir);
  if (!controller.Start()) return 1;
  std::cout << "  controller pid " << controller.pid() << " on 127.0.0.1:" << controller.port()
            << ", RSS at start " << Fmt(RssMiB(controller.pid()), 1) << " MiB\n";
  SimulatedAgent agent;
  if (!agent.Connect(controller.port())) {
    std::cerr << "the simulated agent could not register\n";
    return 1;
  }

  std::vector<std::string> invocation_ids;
  std::vector<double> submit_s, handshake_s;
  IngestResult ingest;
  double ingest_cpu = 0;  // controller CPU seconds while it applied the events
  int64_t next_job = 1000000;
  for (int k = 0; k < invocations; ++k) {
    v1::SubmitInvocationRequest req;
    req.mutable_config()->set_yaml(Config(tasks));
    req.mutable_config()->set_file_name("bench.yaml");
    const double t0 = WallSeconds();
    auto resp = controller.client()->SubmitInvocation(req, {.timeout = absl::Seconds(600)});
    if (!resp.ok()) {
      std::cerr << "SubmitInvocation: " << resp.status() << "\n";
      return 1;
    }
    submit_s.push_back(WallSeconds() - t0);
    invocation_ids.push_back(resp->invocation().id());
    std::vector<SimulatedAgent::Received> commands =
        agent.TakeCommands(static_cast<size_t>(tasks), absl::Minutes(5));
    if (static_cast<int>(commands.size()) != tasks) {
      std::cerr << "received " << commands.size() << " of " << tasks << " SubmitTask commands\n";
      return 1;
    }
    // Handshake: every SubmitTask was answered as it arrived; a marker event whose ack says all
    // answers were handled (the controller handles the stream's messages in order) ends it. Timed
    // from the submission's start.
    const double h0 = t0;
    v1::AgentMessage marker;
    v1::AgentEvent* health = marker.mutable_events()->add_events();
    const uint64_t marker_seq = agent.NextSequence();
    health->set_sequence(marker_seq);
    health->mutable_cluster_health()->set_slurm_reachable(true);
    agent.Write(marker);
    agent.WaitAck(marker_seq, absl::Minutes(30));
    handshake_s.push_back(WallSeconds() - h0);

    std::vector<std::string> task_ids;
    for (const auto& c : commands) task_ids.push_back(c.task_id);
    const double cpu0 = ProcessCpuSecondsOf(controller.pid());
    IngestResult r = SendEvents(agent, task_ids, next_job);
    ingest_cpu += ProcessCpuSecondsOf(controller.pid()) - cpu0;
    next_job += tasks;
    ingest.events += r.events;
    ingest.seconds += r.seconds;
    std::cout << "  invocation " << k + 1 << "/" << invocations << ": submit "
              << Fmt(submit_s.back(), 2) << " s, handshake " << Fmt(handshake_s.back(), 2)
              << " s (" << Fmt(tasks / handshake_s.back(), 0) << " results/s), events "
              << r.events << " in " << Fmt(r.seconds, 2) << " s = "
              << Fmt(static_cast<double>(r.events) / r.seconds, 0) << " events/s, RSS "
              << Fmt(RssMiB(controller.pid()), 1) << " MiB\n";
  }
  const double rss_loaded = RssMiB(controller.pid());
  if (std::getenv("EVALCTL_BENCH_PROBE_TRIM") != nullptr) {  // diagnostic: what malloc_trim frees
    (void)RunSubprocess({.argv = {"gdb", "-p", std::to_string(controller.pid()), "-batch", "-ex",
                                  "call (int) malloc_trim(0)"},
                         .timeout = absl::Seconds(60)});
    std::cout << "  after malloc_trim(0): RSS " << Fmt(RssMiB(controller.pid()), 1) << " MiB\n";
  }
  const double hwm_loaded = RssMiB(controller.pid(), true);
  std::cout << "  SubmitTask size (rendered script and all) " << Fmt(agent.submit_bytes() / 1024, 1)
            << " KiB average\n";

  // 4: GetInvocation of a 10,000-task invocation (the last, all tasks finished with results).
  const std::string inv = invocation_ids.back();
  // From this (long-running, busy) process, for the sizes and the parse and serialize figures.
  Latencies full = MeasureGetInvocation(controller.client(), inv, 3, v1::INVOCATION_VIEW_FULL);
  Latencies basic = MeasureGetInvocation(controller.client(), inv, 3, v1::INVOCATION_VIEW_BASIC);
  Latencies summary =
      MeasureGetInvocation(controller.client(), inv, 3, v1::INVOCATION_VIEW_SUMMARY);
  // The figures: from fresh processes, as `evalctl status` runs; in A B C C B A order, half of the
  // calls each time, so that a change of load on the machine hits every view alike.
  full.ms.clear();
  basic.ms.clear();
  summary.ms.clear();
  double full_parse_ms = 0, basic_parse_ms = 0, summary_parse_ms = 0;
  for (int round = 0; round < 2; ++round) {
    std::vector<std::tuple<v1::InvocationView, Latencies*, double*>> order = {
        {v1::INVOCATION_VIEW_FULL, &full, &full_parse_ms},
        {v1::INVOCATION_VIEW_BASIC, &basic, &basic_parse_ms},
        {v1::INVOCATION_VIEW_SUMMARY, &summary, &summary_parse_ms}};
    if (round == 1) std::reverse(order.begin(), order.end());
    for (auto [view, lat, parse] : order) {
      for (double ms : GetFromFreshProcess(controller.port(), inv, (calls + 1) / 2, view, parse)) {
        lat->ms.push_back(ms);
      }
    }
  }
  if (const char* hold = std::getenv("EVALCTL_BENCH_HOLD_SECONDS"); hold != nullptr) {
    // Diagnostic: time to profile a client against the loaded controller by hand.
    std::cout << "  holding: EVALCTL_CONTROLLER=127.0.0.1:" << controller.port() << " evalctl status "
              << inv << std::endl;
    absl::SleepFor(absl::Seconds(std::atoi(hold)));
  }
  // `evalctl status` end to end, this build's and (with --baseline-cli) an older one, alternating.
  std::vector<double> cli, cli_old;
  for (int i = 0; i < 5; ++i) {
    for (double ms : CliStatus(EVALCTL_CLI_BIN, controller.port(), inv, 1)) cli.push_back(ms);
    if (baseline_cli.empty()) continue;
    for (double ms : CliStatus(baseline_cli, controller.port(), inv, 1)) cli_old.push_back(ms);
  }
  const double rss_after_get = RssMiB(controller.pid());
  for (auto [name, lat, parse] : {std::tuple{"FULL", &full, full_parse_ms},
                                  std::tuple{"BASIC", &basic, basic_parse_ms},
                                  std::tuple{"SUMMARY", &summary, summary_parse_ms}}) {
    std::cout << "  GetInvocation " << name << " (" << lat->tasks << " tasks, "
              << Fmt(static_cast<double>(lat->bytes) / 1024.0, 1)
              << " KiB response): median " << Fmt(Median(lat->ms), 1) << " ms, p95 "
              << Fmt(Percentile(lat->ms, 95), 1) << " ms over " << lat->ms.size()
              << " calls from fresh processes (parsing the answer alone takes " << Fmt(parse, 2)
              << " ms there, " << Fmt(lat->parse_ms, 2) << " ms in this long-running one; "
              << "serializing it " << Fmt(lat->serialize_ms, 2) << " ms)\n";
  }
  std::cout << "  `evalctl status` end to end: median " << Fmt(Median(cli), 1) << " ms over "
            << cli.size() << " runs";
  if (!cli_old.empty()) {
    std::cout << "; " << baseline_cli << ": median " << Fmt(Median(cli_old), 1) << " ms";
  }
  std::cout << "\n";
  agent.Close();

  // Restart on the same store: RSS at rest with every task in the store.
  controller.Stop();
  double rss_restart = -1;
  Latencies get_cold;
  if (controller.Start()) {
    get_cold = MeasureGetInvocation(controller.client(), inv, 5, v1::INVOCATION_VIEW_BASIC);
    rss_restart = RssMiB(controller.pid());
  }
  std::error_code ec;
  const double db_mib =
      static_cast<double>(std::filesystem::file_size(dir + "/state/controller.db", ec)) / 1048576.0;
  controller.Stop();
  std::cout << "  RSS with " << total_tasks << " tasks in the store: " << Fmt(rss_loaded, 1)
            << " MiB after ingest (peak " << Fmt(hwm_loaded, 1) << "), " << Fmt(rss_after_get, 1)
            << " MiB after the GetInvocation calls, " << Fmt(rss_restart, 1)
            << " MiB after a restart and 5 GetInvocation calls; store " << Fmt(db_mib, 0)
            << " MiB on disk\n";

  // Baseline for 4: one squeue and one sacct for 10,000 job ids.
  std::vector<double> slurm_ms;
  if (slurm && SlurmAvailable()) {
    // The newest job ids of the cluster: submit a held job to learn the current id.
    int64_t newest = 10000;
    auto probe = RunSubprocess({.argv = {"sbatch", "--parsable", "--hold", "--output=/dev/null",
                                         "--time=1", "--job-name=bench.probe", "--wrap=true"},
                                .timeout = absl::Seconds(30)});
    if (probe.ok() && probe->ok()) {
      std::string id = probe->stdout_data.substr(0, probe->stdout_data.find_first_of(";\n"));
      (void)RunSubprocess({.argv = {"scancel", id}, .timeout = absl::Seconds(30)});
      int64_t v = 0;
      if (absl::SimpleAtoi(id, &v)) newest = std::max<int64_t>(v, 10000);
    }
    std::vector<std::string> ids;
    for (int64_t j = newest - 9999; j <= newest; ++j) ids.push_back(std::to_string(j));
    agent::SlurmCliClient cli({.max_ids_per_command = ids.size()});
    int found_queue = 0, found_acct = 0;
    for (int i = 0; i < 10; ++i) {
      const double t0 = WallSeconds();
      auto q = cli.Queue(ids);
      auto a = cli.Accounting(ids);
      slurm_ms.push_back((WallSeconds() - t0) * 1e3);
      if (!q.ok() || !a.ok()) {
        std::cout << "  baseline: " << (q.ok() ? a.status() : q.status()) << "\n";
        break;
      }
      found_queue = static_cast<int>(q->size());
      found_acct = static_cast<int>(a->size());
    }
    std::cout << "  baseline squeue + sacct for 10,000 ids (" << ids.front() << "–" << ids.back()
              << "; squeue knows " << found_queue << ", sacct " << found_acct << "): median "
              << Fmt(Median(slurm_ms), 1) << " ms, p95 " << Fmt(Percentile(slurm_ms, 95), 1)
              << " ms\n";
  }

  auto ratio = [](double old_value, double new_value) {
    return Fmt(old_value / new_value, 1) + "x faster";
  };
  Row("4 status",
      absl::StrCat("GetInvocation, ", basic.tasks, " tasks, median ms: BASIC view vs FULL"),
      Fmt(Median(basic.ms), 1), Fmt(Median(full.ms), 1), ratio(Median(full.ms), Median(basic.ms)),
      absl::StrCat("from fresh client processes, ", basic.ms.size(), " calls each, alternating; "
                   "FULL is what status read before views; target <= 50 ms"));
  Row("4 status", absl::StrCat("GetInvocation, ", basic.tasks, " tasks, p95 ms: BASIC vs FULL"),
      Fmt(Percentile(basic.ms, 95), 1), Fmt(Percentile(full.ms, 95), 1),
      ratio(Percentile(full.ms, 95), Percentile(basic.ms, 95)),
      absl::StrCat("responses ", Fmt(static_cast<double>(basic.bytes) / 1024.0, 0), " vs ",
                   Fmt(static_cast<double>(full.bytes) / 1024.0, 0),
                   " KiB; the client's parse alone ", Fmt(basic_parse_ms, 1), " vs ",
                   Fmt(full_parse_ms, 1), " ms; 0 Slurm calls"));
  Row("4 status", "GetInvocation SUMMARY view (counts only), median ms",
      Fmt(Median(summary.ms), 1), Fmt(Median(full.ms), 1),
      ratio(Median(full.ms), Median(summary.ms)),
      absl::StrCat(Fmt(static_cast<double>(summary.bytes), 0), " bytes"));
  if (!slurm_ms.empty()) {
    Row("4 status", "GetInvocation BASIC vs 1 squeue + 1 sacct for 10,000 ids, median ms",
        Fmt(Median(basic.ms), 1), Fmt(Median(slurm_ms), 1),
        ratio(Median(slurm_ms), Median(basic.ms)),
        absl::StrCat("baseline p95 ", Fmt(Percentile(slurm_ms, 95), 1),
                     " ms: what a status that asks Slurm costs at the least"));
  }
  Row("4 status", absl::StrCat("`evalctl status <id>`, ", basic.tasks, " tasks, median ms"),
      Fmt(Median(cli), 1), cli_old.empty() ? "-" : Fmt(Median(cli_old), 1),
      cli_old.empty() ? "-" : ratio(Median(cli_old), Median(cli)),
      absl::StrCat("the CLI end to end: start, connect, call, print the table; 5 runs",
                   cli_old.empty() ? "" : " each, alternating with the --baseline-cli binary"));
  Row("4 status", "GetInvocation BASIC right after a controller restart, median ms",
      Fmt(Median(get_cold.ms), 1), "-", "-", "5 calls; cold page cache not forced");
  Row("5 ingest", absl::StrCat("agent events/s, durable (", ingest.events, " events, 500/message)"),
      Fmt(static_cast<double>(ingest.events) / ingest.seconds, 0), "-", "-",
      absl::StrCat("target >= 20,000; controller CPU ",
                   Fmt(ingest_cpu / static_cast<double>(ingest.events) * 1e6, 1),
                   " µs per event (all threads); one durable SQLite transaction per message"));
  Row("5 ingest", "in-process ControllerCore::AgentEvents, events/s",
      Fmt(core.events_per_s, 0), "-", "-",
      absl::StrCat(Fmt(core.cpu_us_per_event, 1), " µs CPU per event; same events, no gRPC"));
  Row("4 status", "in-process ControllerCore::GetInvocation, BASIC vs FULL, median ms",
      Fmt(core.get_basic_ms, 1), Fmt(core.get_full_ms, 1),
      ratio(core.get_full_ms, core.get_basic_ms),
      absl::StrCat("the store and the core without gRPC; SUMMARY ", Fmt(core.get_summary_ms, 2),
                   " ms"));
  std::vector<double> results_rate;
  for (double s : handshake_s) results_rate.push_back(tasks / s);
  Row("5 ingest", "submission to every SubmitTask answered: tasks/s", Fmt(Median(results_rate), 0),
      "-", "-",
      "median over invocations; SubmitInvocation, the commands through the agent window, one "
      "CommandResult per SubmitTask as it arrives, before the agent's events");
  Row("5 ingest", absl::StrCat("SubmitInvocation of ", tasks, " tasks, s"), Fmt(Median(submit_s), 2),
      "-", "-", "render, commit, send the commands; median over invocations");
  Row("5 ingest", absl::StrCat("controller RSS, ", total_tasks, " tasks in the store, MiB"),
      Fmt(rss_loaded, 1), "-", "-",
      absl::StrCat("target <= 200; peak ", Fmt(hwm_loaded, 1), "; after restart ",
                   Fmt(rss_restart, 1), "; store ", Fmt(db_mib, 0), " MiB"));
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace evalctl::bench

int main(int argc, char** argv) { return evalctl::bench::Main(argc, argv); }
