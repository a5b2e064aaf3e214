#include "tests/e2e/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "clients/cpp/config_source.h"
#include "common/subprocess.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "common/task_vocabulary.h"

extern char** environ;

namespace evalctl::e2e {
namespace {

using ::evalctl::testing::CommandOutput;
using ::evalctl::testing::Slurm;

constexpr char kAccount[] = "e2e";

// "FooBar_baz" -> "foobar-baz", at most 24 characters.
std::string Slug(absl::string_view text) {
  std::string out;
  for (char c : text) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
    }
  }
  if (out.size() > 24) out.resize(24);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "test" : out;
}

// A YAML double-quoted scalar.
std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out.push_back(c);
    }
  }
  out += "\"";
  return out;
}

absl::Time ParseSlurmTime(absl::string_view text) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime("%Y-%m-%dT%H:%M:%S", text, absl::LocalTimeZone(), &t, &err)) return t;
  return absl::InfinitePast();
}

std::vector<SacctRecord> ParseSacct(const std::string& out) {
  std::vector<SacctRecord> records;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipWhitespace())) {
    std::vector<std::string> cols = absl::StrSplit(line, '|');
    if (cols.size() < 7) continue;
    SacctRecord r;
    r.job_id = cols[0];
    r.name = cols[1];
    r.state = cols[2].substr(0, cols[2].find(' '));
    r.partition = cols[3];
    r.node_list = cols[4];
    r.start = ParseSlurmTime(cols[5]);
    r.end = ParseSlurmTime(cols[6]);
    records.push_back(std::move(r));
  }
  return records;
}

std::vector<SacctRecord> Sacct(std::vector<std::string> selection) {
  std::vector<std::string> argv = {
      "sacct", "-X",          "-D",
      "-n",    "--parsable2", "--format=JobID,JobName%200,State,Partition,NodeList,Start,End"};
  argv.insert(argv.end(), selection.begin(), selection.end());
  auto r = RunSubprocess({.argv = argv,
                          .env = {{"SLURM_TIME_FORMAT", "%Y-%m-%dT%H:%M:%S"}},
                          .timeout = absl::Seconds(30)});
  if (!r.ok() || !r->ok()) {
    ADD_FAILURE() << absl::StrJoin(argv, " ") << ": "
                  << (r.ok() ? r->Check("sacct").ToString() : r.status().ToString());
    return {};
  }
  return ParseSacct(r->stdout_data);
}

void Sleep(absl::Duration d) { absl::SleepFor(d); }

}  // namespace

std::string ShortHostname() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof(buf) - 1);
  std::string h = buf;
  return h.substr(0, h.find('.'));
}

std::string CurrentUser() {
  auto r = RunSubprocess({.argv = {"id", "-un"}, .timeout = absl::Seconds(10)});
  if (r.ok() && r->ok()) return std::string(absl::StripAsciiWhitespace(r->stdout_data));
  const char* user = std::getenv("USER");
  return user != nullptr ? user : "root";
}

// ---------------------------------------------------------------- ChildProcess

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const std::string& log_path,
    const std::vector<std::pair<std::string, std::string>>& env,
    const std::vector<std::string>& unset) {
  if (argv.empty()) return absl::InvalidArgumentError("no program");
  // Everything exec needs is prepared before fork: the child may only make async-signal-safe
  // calls (the test process has gRPC threads).
  std::map<std::string, std::string> merged;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view kv = *e;
    size_t eq = kv.find('=');
    if (eq == absl::string_view::npos) continue;
    merged[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const std::string& name : unset) merged.erase(name);
  for (const auto& [name, value] : env) merged[name] = value;
  std::vector<std::string> env_strings;
  for (const auto& [name, value] : merged) env_strings.push_back(absl::StrCat(name, "=", value));
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argvp;
  for (std::string& s : args) argvp.push_back(s.data());
  argvp.push_back(nullptr);

  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", log_path, ": ", std::strerror(errno)));
  }
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    // Dies with the test process (e.g. when ctest kills it on timeout).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execve(argvp[0], argvp.data(), envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid));
}

ChildProcess::~ChildProcess() {
  if (!reaped_) Kill(SIGKILL);
}

bool ChildProcess::Running() {
  if (reaped_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    reaped_ = true;
    return false;
  }
  return true;
}

void ChildProcess::Kill(int signal) {
  if (reaped_) return;
  ::kill(pid_, signal);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
}

// ---------------------------------------------------------------- commands and Slurm

std::string WriteResultsCommand(const std::string& name, double value) {
  return absl::StrCat(
      "printf '%s\\n' 'results: {tasks: {", name,
      ": {metrics: {accuracy: {scores: {acc: {value: ", value,
      "}}}}}}}' > \"$EVALCTL_RESULTS_DIR/results.yml.tmp\"\n",
      "mv \"$EVALCTL_RESULTS_DIR/results.yml.tmp\" \"$EVALCTL_RESULTS_DIR/results.yml\"\n");
}

std::string SucceedingCommand(const std::string& name, int seconds, double value) {
  return absl::StrCat("echo \"e2e task ", name, " says hello\"\n",
                      "echo 1 > \"$EVALCTL_RESULTS_DIR/progress\"\n", "sleep ", seconds, "\n",
                      "echo 2 > \"$EVALCTL_RESULTS_DIR/progress\"\n",
                      WriteResultsCommand(name, value), "echo \"e2e task ", name, " done\"\n");
}

std::string ProgressingCommand(const std::string& name, int seconds) {
  return absl::StrCat("echo \"e2e task ", name, " starts\"\n", "for i in $(seq 1 ", seconds,
                      "); do\n", "  echo \"$i\" > \"$EVALCTL_RESULTS_DIR/progress\"\n",
                      "  sleep 1\n", "done\n", WriteResultsCommand(name));
}

std::string SecondAttemptFinishes(const std::string& name, const std::string& waiting) {
  return absl::StrCat("if [ -e \"$EVALCTL_RESULTS_DIR/first_attempt_started\" ]; then\n",
                      "  echo \"e2e: a later attempt finds the marker and finishes\"\n",
                      WriteResultsCommand(name), "  exit 0\n", "fi\n",
                      "touch \"$EVALCTL_RESULTS_DIR/first_attempt_started\"\n",
                      "echo \"e2e: ", waiting, "\"\n", "sleep 300\n");
}

std::vector<SacctRecord> SacctByName(const std::string& name, absl::Time since) {
  // --name needs -S: without it sacct only looks from midnight.
  return Sacct(
      {absl::StrCat("--name=", name), "-S",
       absl::FormatTime("%Y-%m-%dT%H:%M:%S", since - absl::Minutes(5), absl::LocalTimeZone())});
}

std::vector<SacctRecord> SacctByJob(const std::string& job_id) {
  return Sacct({absl::StrCat("--jobs=", job_id)});
}

std::vector<SacctRecord> SettledSacctByName(const std::string& name, absl::Time since,
                                            size_t count) {
  static const std::set<std::string> kLive = {"PENDING",    "RUNNING",   "REQUEUED",
                                              "COMPLETING", "SUSPENDED", "CONFIGURING"};
  std::vector<SacctRecord> records;
  ::evalctl::testing::WaitFor(
      [&] {
        records = SacctByName(name, since);
        if (records.size() != count) return false;
        for (const SacctRecord& r : records) {
          if (kLive.count(r.state)) return false;
        }
        return true;
      },
      absl::Seconds(30), ::evalctl::testing::kClusterPoll);
  return records;
}

std::vector<std::string> SqueueByName(const std::string& name) {
  CommandOutput r = Slurm({"squeue", "-h", absl::StrCat("--name=", name), "-o", "%i %T"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipWhitespace())) {
    out.emplace_back(absl::StripAsciiWhitespace(line));
  }
  return out;
}

// ---------------------------------------------------------------- E2eEnv

E2eEnv::E2eEnv() : started_(absl::Now()) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  test_name_ = info != nullptr ? info->name() : "test";
  absl::BitGen gen;
  const std::string tag = absl::StrCat(::getpid(), "-", absl::Uniform<uint32_t>(gen, 0, 1 << 20));
  std::error_code ec;
  const std::string base = "/tmp/evalctl-e2e";
  std::filesystem::create_directories(base, ec);
  root_ = absl::StrCat(base, "/", Slug(test_name_), "-", tag);
  for (const char* sub : {"logs", "configs", "runs"}) {
    std::filesystem::create_directories(absl::StrCat(root_, "/", sub), ec);
    EXPECT_FALSE(ec) << "cannot create " << root_ << "/" << sub << ": " << ec.message();
  }
  subproject_ = absl::StrCat(Slug(test_name_), "-", tag);
  cluster_ = absl::StrCat("e2e-", subproject_);
}

E2eEnv::~E2eEnv() {
  // Processes first, so that no agent submits anything after the cancel below.
  client_.reset();
  if (agent_ != nullptr) agent_->Kill(SIGKILL);
  if (controller_ != nullptr) controller_->Kill(SIGKILL);
  CancelSlurmJobs();
  const char* keep = std::getenv("EVALCTL_E2E_KEEP");
  if (::testing::Test::HasFailure()) {
    std::cerr << "e2e: kept " << root_ << " (controller log " << controller_log() << ", agent log "
              << agent_log() << ")\n";
    for (const std::string& log : {controller_log(), agent_log()}) {
      std::string text = ReadFileOrEmpty(log);
      if (text.size() > 6000) text = "..." + text.substr(text.size() - 6000);
      std::cerr << "---- tail of " << log << "\n" << text << "\n";
    }
  } else if (keep != nullptr && *keep != '\0' && std::string(keep) != "0") {
    std::cerr << "e2e: kept " << root_ << " (EVALCTL_E2E_KEEP)\n";
  } else {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
}

void E2eEnv::CancelSlurmJobs() {
  auto r = RunSubprocess({.argv = {"squeue", "-h", "-o", "%i|%j"}, .timeout = absl::Seconds(30)});
  if (!r.ok() || !r->ok()) return;
  std::vector<std::string> ids;
  const std::string prefix = job_name_prefix();
  for (absl::string_view line : absl::StrSplit(r->stdout_data, '\n', absl::SkipWhitespace())) {
    std::vector<std::string> cols = absl::StrSplit(line, absl::MaxSplits('|', 1));
    if (cols.size() == 2 && absl::StartsWith(cols[1], prefix)) ids.push_back(cols[0]);
  }
  if (ids.empty()) return;
  std::vector<std::string> argv = {"scancel"};
  argv.insert(argv.end(), ids.begin(), ids.end());
  (void)RunSubprocess({.argv = argv, .timeout = absl::Seconds(30)});
}

std::string E2eEnv::controller_address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string E2eEnv::job_name_prefix() const {
  return absl::StrCat(kAccount, "-", subproject_, ".");
}

std::string E2eEnv::JobName(const v1::Task& task, int attempt) const {
  return absl::StrCat(job_name_prefix(), task.dir_name(), ".", task.id(), ".", attempt);
}

bool E2eEnv::controller_running() { return controller_ != nullptr && controller_->Running(); }
bool E2eEnv::agent_running() { return agent_ != nullptr && agent_->Running(); }

absl::Status E2eEnv::StartController(const std::vector<std::pair<std::string, std::string>>& env) {
  if (controller_running()) return absl::FailedPreconditionError("the controller runs already");
  controller_env_ = env;
  const std::string listen = absl::StrCat("127.0.0.1:", port_);  // 0 the first time
  const size_t log_offset = ReadFileOrEmpty(controller_log()).size();
  std::vector<std::string> argv = {EVALCTL_CONTROLLER_BIN};
  argv.insert(argv.end(), controller_security_.begin(), controller_security_.end());
  argv.insert(argv.end(),
              {"--listen", listen, "--state-dir", controller_state_dir(), "--agent-wait", "300"});
  auto child = ChildProcess::Start(argv, controller_log(), env);
  if (!child.ok()) return child.status();
  controller_ = *std::move(child);
  // Ready once it logs its port.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (true) {
    const std::string log = ReadFileOrEmpty(controller_log()).substr(log_offset);
    size_t at = log.find("(port ");
    if (at != std::string::npos) {
      size_t end = log.find_first_not_of("0123456789", at + 6);
      int port = 0;
      if (end != std::string::npos && absl::SimpleAtoi(log.substr(at + 6, end - at - 6), &port) &&
          port > 0) {
        if (port_ != 0 && port != port_) {
          return absl::InternalError(
              absl::StrCat("the controller listens on ", port, " instead of ", port_));
        }
        port_ = port;
        break;
      }
    }
    if (!controller_->Running()) {
      return absl::InternalError(absl::StrCat("the controller exited at start; its log: ", log));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the controller did not report its port within 30 s; its log: ", log));
    }
    Sleep(absl::Milliseconds(50));
  }
  return Connect();
}

absl::Status E2eEnv::Connect() {
  // A fresh channel: an old one may sit in gRPC's reconnect backoff after a controller restart.
  client_.reset();
  auto c = NewClient(client_token_, client_tls_);
  if (!c.ok()) return c.status();
  client_ = *std::move(c);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<client::Client>> E2eEnv::NewClient(
    const std::string& token, const client::TlsOptions& tls) const {
  return client::Client::Connect(
      {.target = controller_address(), .token = token, .tls = tls, .timeout = absl::Seconds(20)});
}

std::string E2eEnv::admin_token() const {
  return std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty(admin_token_file())));
}

absl::Status E2eEnv::MakeCerts(const std::string& dir) {
  const std::string into = dir.empty() ? certs_dir() : dir;
  auto r = RunSubprocess(
      {.argv = {EVALCTL_MAKE_CERTS, into, "localhost"}, .timeout = absl::Seconds(60)});
  if (!r.ok()) return r.status();
  if (!r->ok()) return r->Check("make-certs.sh");
  return absl::OkStatus();
}

void E2eEnv::KillController() {
  if (controller_ != nullptr) controller_->Kill(SIGKILL);
}

absl::Status E2eEnv::StartAgent(const std::vector<std::pair<std::string, std::string>>& env) {
  if (agent_running()) return absl::FailedPreconditionError("the agent runs already");
  if (port_ == 0) return absl::FailedPreconditionError("start the controller first");
  agent_env_ = env;
  auto child = ChildProcess::Start(AgentArgv(), agent_log(), env);
  if (!child.ok()) return child.status();
  agent_ = *std::move(child);
  if (!controller_running()) return absl::OkStatus();  // it connects once the controller is back
  return WaitAgentConnected(absl::Seconds(30));
}

std::vector<std::string> E2eEnv::AgentArgv() const {
  std::vector<std::string> argv = {EVALCTL_AGENT_BIN};
  argv.insert(argv.end(), agent_security_.begin(), agent_security_.end());
  argv.insert(argv.end(), {"--controller", controller_address(), "--state-dir", agent_state_dir(),
                           "--cluster", cluster_});
  argv.insert(argv.end(), agent_flags_.begin(), agent_flags_.end());
  return argv;
}

absl::StatusOr<SubprocessResult> E2eEnv::RunSecondAgent(absl::Duration timeout) {
  return RunSubprocess({.argv = AgentArgv(), .env = agent_env_, .timeout = timeout});
}

void E2eEnv::KillAgent() {
  if (agent_ != nullptr) agent_->Kill(SIGKILL);
}

absl::Status E2eEnv::WaitAgentConnected(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (absl::Now() < deadline) {
    if (agent_ == nullptr || !agent_->Running()) {
      return absl::InternalError(
          absl::StrCat("the agent is not running; its log:\n", ReadFileOrEmpty(agent_log())));
    }
    auto clusters = client_->ListClusters({}, {.timeout = absl::Seconds(5)});
    if (clusters.ok()) {
      for (const v1::Cluster& c : clusters->clusters()) {
        if (c.name() == cluster_ && c.connected()) return absl::OkStatus();
      }
      last = clusters->DebugString();
    } else {
      last = clusters.status().ToString();
    }
    Sleep(absl::Milliseconds(200));
  }
  return absl::DeadlineExceededError(absl::StrCat("agent of cluster ", cluster_,
                                                  " not connected within ",
                                                  absl::FormatDuration(timeout), ": ", last));
}

absl::StatusOr<std::string> E2eEnv::WriteConfig(const RunConfig& config) {
  std::string y;
  absl::StrAppend(&y,
                  "defaults:\n  - execution: slurm/default\n  - deployment: none\n  - _self_\n");
  absl::StrAppend(&y, "execution:\n");
  absl::StrAppend(&y, "  hostname: ", Quote(cluster_), "\n");
  absl::StrAppend(&y, "  username: ", Quote(run_as_.empty() ? CurrentUser() : run_as_), "\n");
  absl::StrAppend(&y, "  account: ", kAccount, "\n");
  absl::StrAppend(&y, "  subproject: ", Quote(subproject_), "\n");
  absl::StrAppend(&y, "  output_dir: ", Quote(output_dir()), "\n");
  absl::StrAppend(&y, "  partition: ", config.partition, "\n");
  absl::StrAppend(&y, "  walltime: ", Quote(config.walltime), "\n");
  if (!config.max_walltime.empty()) {
    absl::StrAppend(&y, "  max_walltime: ", Quote(config.max_walltime), "\n");
  }
  if (config.max_attempts) absl::StrAppend(&y, "  max_attempts: ", *config.max_attempts, "\n");
  if (config.pre_timeout_signal_seconds) {
    absl::StrAppend(&y, "  pre_timeout_signal_seconds: ", *config.pre_timeout_signal_seconds, "\n");
  }
  absl::StrAppend(&y, "  container_runtime: none\n");
  absl::StrAppend(&y, "  gres: null\n");
  // Nodes are shared between the tests (exclusive: false); each test names its node.
  absl::StrAppend(&y, "  sbatch_extra_flags:\n    exclusive: false\n");
  if (!config.nodelist.empty()) absl::StrAppend(&y, "    nodelist: ", config.nodelist, "\n");
  absl::StrAppend(&y, "target:\n  api_endpoint:\n");
  absl::StrAppend(&y, "    url: ", Quote(config.endpoint_url), "\n");
  absl::StrAppend(&y, "    model_id: e2e-model\n");
  absl::StrAppend(&y, "evaluation:\n  tasks:\n");
  for (const TaskConfig& t : config.tasks) {
    if (absl::StrContains(t.command, "${")) {
      return absl::InvalidArgumentError(
          absl::StrCat("task ", t.name, ": write $VAR, not ${VAR}, in a command"));
    }
    absl::StrAppend(&y, "    - name: ", Quote(t.name), "\n");
    absl::StrAppend(&y, "      command: |\n");
    for (absl::string_view line : absl::StrSplit(t.command, '\n')) {
      absl::StrAppend(&y, "        ", line, "\n");
    }
    if (!t.env_vars.empty()) {
      absl::StrAppend(&y, "      env_vars:\n");
      for (const auto& [name, value] : t.env_vars) {
        absl::StrAppend(&y, "        ", name, ": ", Quote(value), "\n");
      }
    }
  }
  const std::string path = absl::StrCat(root_, "/configs/run-", ++config_count_, ".yaml");
  std::ofstream f(path);
  f << y;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return path;
}

absl::StatusOr<v1::Invocation> E2eEnv::Submit(const RunConfig& config) {
  absl::StatusOr<std::string> path = WriteConfig(config);
  if (!path.ok()) return path.status();
  absl::StatusOr<v1::ConfigSource> source = client::BuildConfigSource({.path = *path});
  if (!source.ok()) return source.status();
  v1::SubmitInvocationRequest req;
  *req.mutable_config() = *std::move(source);
  auto resp = client_->SubmitInvocation(req);
  if (!resp.ok()) return resp.status();
  return resp->invocation();
}

absl::StatusOr<v1::Invocation> E2eEnv::Get(const std::string& invocation_id) {
  v1::GetInvocationRequest req;
  req.set_id(invocation_id);
  return client_->GetInvocation(req);
}

absl::StatusOr<v1::Task> E2eEnv::GetTask(const std::string& task_id) {
  v1::GetTaskRequest req;
  req.set_id(task_id);
  return client_->GetTask(req);
}

absl::StatusOr<v1::Invocation> E2eEnv::WaitFinished(const std::string& invocation_id,
                                                    absl::Duration timeout) {
  absl::StatusOr<v1::Invocation> inv = absl::UnknownError("never asked");
  const bool finished = ::evalctl::testing::WaitFor(
      [&] {
        inv = Get(invocation_id);
        if (!inv.ok()) return false;
        bool all = inv->tasks_size() > 0;
        for (const v1::Task& t : inv->tasks()) all = all && IsTerminal(t.state());
        return all;
      },
      timeout, absl::Milliseconds(500));
  if (finished) return inv;
  return absl::DeadlineExceededError(absl::StrCat(
      "invocation ", invocation_id, " not finished within ", absl::FormatDuration(timeout),
      "; last: ", inv.ok() ? inv->DebugString() : inv.status().ToString()));
}

absl::StatusOr<v1::Task> E2eEnv::WaitTask(const std::string& task_id,
                                          const std::function<bool(const v1::Task&)>& done,
                                          absl::Duration timeout) {
  absl::StatusOr<v1::Task> task = absl::UnknownError("never asked");
  if (::evalctl::testing::WaitFor(
          [&] {
            task = GetTask(task_id);
            return task.ok() && done(*task);
          },
          timeout, absl::Milliseconds(250))) {
    return task;
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "task ", task_id, ": condition not reached within ", absl::FormatDuration(timeout),
      "; last: ", task.ok() ? task->DebugString() : task.status().ToString()));
}

absl::StatusOr<v1::Task> E2eEnv::WaitAttemptSubmitted(const std::string& task_id, int number,
                                                      absl::Duration timeout) {
  return WaitTask(
      task_id,
      [number](const v1::Task& t) {
        return t.attempts_size() >= number && !t.attempts(number - 1).slurm_job_id().empty();
      },
      timeout);
}

bool E2eEnv::AllRunning(const std::string& invocation_id) {
  auto inv = Get(invocation_id);
  if (!inv.ok()) return false;
  for (const v1::Task& t : inv->tasks()) {
    if (t.state() != v1::TASK_STATE_RUNNING) return false;
  }
  return true;
}

absl::StatusOr<std::vector<v1::WatchInvocationResponse>> E2eEnv::WatchAll(
    const std::string& invocation_id, uint64_t after, absl::Duration timeout) {
  v1::WatchInvocationRequest req;
  req.set_id(invocation_id);
  req.set_after_sequence(after);
  auto stream = client_->WatchInvocation(req, {.timeout = timeout});
  if (!stream.ok()) return stream.status();
  std::vector<v1::WatchInvocationResponse> events;
  v1::WatchInvocationResponse r;
  while ((*stream)->Next(&r)) events.push_back(r);
  absl::Status s = (*stream)->Finish();
  if (!s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("watch ended after ", events.size(), " events: ", s.message()));
  }
  return events;
}

absl::StatusOr<std::string> E2eEnv::ReadLog(const std::string& task_id, v1::LogKind kind,
                                            int attempt) {
  v1::StreamLogsRequest req;
  req.set_id(task_id);
  req.set_kind(kind);
  req.set_attempt(attempt);
  req.set_offset(0);
  req.set_follow(false);
  auto stream = client_->StreamLogs(req, {.timeout = absl::Seconds(30)});
  if (!stream.ok()) return stream.status();
  std::string data;
  v1::StreamLogsResponse r;
  while ((*stream)->Next(&r)) {
    if (r.offset() != static_cast<int64_t>(data.size())) {
      return absl::DataLossError(
          absl::StrCat("log chunk at offset ", r.offset(), " after ", data.size(), " bytes"));
    }
    data += r.data();
  }
  absl::Status s = (*stream)->Finish();
  if (!s.ok()) return s;
  return data;
}

CliResult E2eEnv::Cli(const std::vector<std::string>& args,
                      const std::vector<std::pair<std::string, std::string>>& env,
                      absl::Duration timeout) {
  std::vector<std::string> argv = {EVALCTL_CLI_BIN, "--controller", controller_address()};
  for (const auto& [flag, path] : {std::pair{"--ca-cert", &client_tls_.ca_file},
                                   std::pair{"--client-cert", &client_tls_.cert_file},
                                   std::pair{"--client-key", &client_tls_.key_file}}) {
    if (!path->empty()) argv.insert(argv.end(), {flag, *path});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::pair<std::string, std::string>> cli_env = env;
  if (!client_token_.empty()) cli_env.insert(cli_env.begin(), {"EVALCTL_TOKEN", client_token_});
  CliResult out;
  auto r = RunSubprocess({.argv = argv, .env = cli_env, .timeout = timeout});
  if (!r.ok()) {
    out.err = r.status().ToString();
    return out;
  }
  out.exit_code = r->timed_out ? -1 : r->exit_code;
  out.out = r->stdout_data;
  out.err = r->stderr_data;
  return out;
}

// ---------------------------------------------------------------- helpers

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  std::stringstream buffer;
  buffer << f.rdbuf();
  return buffer.str();
}

void ForEachFile(const std::string& dir, const std::function<bool(const std::string&)>& skip,
                 const std::function<void(const std::string&)>& visit) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string path = it->path().string();
    if (skip && skip(path)) continue;
    visit(path);
  }
  EXPECT_FALSE(ec) << "listing " << dir << ": " << ec.message();
}

std::vector<std::string> FilesContaining(const std::string& dir, const std::string& needle,
                                         const std::function<bool(const std::string&)>& skip) {
  std::vector<std::string> hits;
  ForEachFile(dir, skip, [&](const std::string& path) {
    if (absl::StrContains(ReadFileOrEmpty(path), needle)) hits.push_back(path);
  });
  return hits;
}

const v1::Task* TaskNamed(const v1::Invocation& inv, const std::string& name) {
  for (const v1::Task& t : inv.tasks()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixMillis(google::protobuf::util::TimeUtil::TimestampToMilliseconds(ts));
}

}  // namespace evalctl::e2e
