// Secrets on the real cluster. A value from the submitter's environment (`host:VAR`, or
// `${oc.env:VAR}`, in env_vars) reaches the job, in every attempt, and nothing else: not the
// controller's state, not the agent's journal (its 0600 secret store is the one place allowed),
// not the run directory, not a log of either service, not an event, not an answer of the CLI, and
// not the command line of any process (sbatch, srun, the job's shells) while the task runs. Jobs
// run on node1.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"
#include "common/task_vocabulary.h"

namespace evalctl::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Sha256(const std::string& data) {
  auto r = RunSubprocess({.argv = {"sha256sum"}, .stdin_data = data});
  if (!r.ok() || !r->ok()) return "sha256sum failed";
  return r->stdout_data.substr(0, r->stdout_data.find(' '));
}

// `prefix` and 32 random hex digits.
std::string RandomValue(absl::string_view prefix) {
  absl::BitGen gen;
  return absl::StrFormat("%s-%016x%016x", prefix, absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

// A form in which a secret could be written: the value itself, in hex, or in base64.
struct Needle {
  std::string label;
  std::string text;
};

// Every form of `secret` to search for. Base64 depends on where in the encoded data the value
// starts (its offset modulo 3): for each offset, the characters that depend only on the value's
// own bytes (the first group of four may mix in the bytes before it, the last one those after).
std::vector<Needle> NeedlesFor(const std::string& label, const std::string& secret) {
  const std::string hex = absl::BytesToHexString(secret);
  std::vector<Needle> out = {{label, secret},
                             {absl::StrCat(label, " in hex"), hex},
                             {absl::StrCat(label, " in HEX"), absl::AsciiStrToUpper(hex)}};
  for (size_t offset = 0; offset < 3; ++offset) {
    const std::string b64 = absl::Base64Escape(std::string(offset, '\0') + secret);
    const size_t from = offset == 0 ? 0 : 4;
    out.push_back({absl::StrCat(label, " in base64 (offset ", offset, ")"),
                   b64.substr(from, b64.size() - from - 4)});
  }
  return out;
}

// The labels of the needles found in `text`.
std::vector<std::string> Found(absl::string_view text, const std::vector<Needle>& needles) {
  std::vector<std::string> out;
  for (const Needle& n : needles) {
    if (absl::StrContains(text, n.text)) out.push_back(n.label);
  }
  return out;
}

// "path: labels" for every regular file under `dir` (recursively) holding a needle, skipping the
// paths `skip` names; `*scanned` counts the files read.
std::vector<std::string> FilesWithSecrets(const std::string& dir,
                                          const std::vector<Needle>& needles,
                                          const std::function<bool(const std::string&)>& skip,
                                          int* scanned) {
  std::vector<std::string> hits;
  ForEachFile(dir, skip, [&](const std::string& path) {
    ++*scanned;
    std::vector<std::string> labels = Found(ReadFileOrEmpty(path), needles);
    if (!labels.empty()) hits.push_back(absl::StrCat(path, ": ", absl::StrJoin(labels, ", ")));
  });
  return hits;
}

std::vector<std::string> FilesWithSecrets(
    const std::string& dir, const std::vector<Needle>& needles,
    const std::function<bool(const std::string&)>& skip = {}) {
  int scanned = 0;
  std::vector<std::string> hits = FilesWithSecrets(dir, needles, skip, &scanned);
  EXPECT_GT(scanned, 0) << "no file under " << dir;
  return hits;
}

// The agent's secret store and SQLite's companions of it (-wal, -shm, -journal).
bool IsSecretStore(const std::string& path) {
  return absl::StartsWith(std::filesystem::path(path).filename().string(), "secrets.db");
}

// A process seen by the scanner: its pid and its command line (arguments joined by spaces).
struct Sighting {
  pid_t pid = 0;
  std::string argv;
  std::vector<std::string> found;  // needles in it
};

// One line per sighting; command lines cut at `max_chars` (0: whole).
std::string Describe(const std::vector<Sighting>& sightings, size_t max_chars = 0) {
  std::string out;
  for (const Sighting& s : sightings) {
    std::string argv = s.argv;
    if (max_chars > 0 && argv.size() > max_chars) argv = argv.substr(0, max_chars) + "...";
    std::replace(argv.begin(), argv.end(), '\n', ' ');
    absl::StrAppend(&out, "\n  pid ", s.pid, ": ", argv);
    if (!s.found.empty()) absl::StrAppend(&out, "  [", absl::StrJoin(s.found, ", "), "]");
  }
  return out;
}

// Reads /proc/*/cmdline of every process every few milliseconds on a thread of its own, from
// Start() to Stop(): command lines holding a needle, this test's sbatch processes (by the job-name
// prefix in their arguments), the job's processes (by a tag in the task's command, which srun
// and the step's shell carry in their arguments) and every slurmstepd.
class CmdlineScanner {
 public:
  CmdlineScanner(std::vector<Needle> needles, std::string job_name_prefix, std::string job_tag)
      : needles_(std::move(needles)),
        job_name_prefix_(std::move(job_name_prefix)),
        job_tag_(std::move(job_tag)) {}
  ~CmdlineScanner() { Stop(); }
  CmdlineScanner(const CmdlineScanner&) = delete;
  CmdlineScanner& operator=(const CmdlineScanner&) = delete;

  void Start() {
    started_ = absl::Now();
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  // Valid after Stop().
  const std::vector<Sighting>& leaks() const { return leaks_; }
  const std::vector<Sighting>& sbatch() const { return sbatch_; }
  const std::vector<Sighting>& job() const { return job_; }
  const std::vector<Sighting>& stepds() const { return stepds_; }
  int scans() const { return scans_; }
  int processes_read() const { return processes_read_; }
  absl::Duration longest_gap() const { return longest_gap_; }
  absl::Duration mean_gap() const {
    return scans_ > 1 ? (last_scan_ - started_) / (scans_ - 1) : absl::ZeroDuration();
  }

 private:
  void Loop() {
    absl::Time last = absl::Now();
    while (!stop_.load()) {
      ScanOnce();
      const absl::Time now = absl::Now();
      if (scans_++ > 0) longest_gap_ = std::max(longest_gap_, now - last);
      last = last_scan_ = now;
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  void ScanOnce() {
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) return;
    while (const dirent* entry = ::readdir(proc)) {
      int pid = 0;
      if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
      std::string raw = ReadCmdline(pid);
      if (raw.empty()) continue;  // a kernel thread, or gone meanwhile
      ++processes_read_;
      if (!seen_.insert({pid, raw}).second) continue;  // recorded already
      std::string argv = raw;
      while (!argv.empty() && argv.back() == '\0') argv.pop_back();
      std::replace(argv.begin(), argv.end(), '\0', ' ');
      Sighting s{.pid = pid, .argv = argv, .found = Found(raw, needles_)};
      if (!s.found.empty()) leaks_.push_back(s);
      const std::string argv0 = raw.substr(0, raw.find('\0'));
      if (std::filesystem::path(argv0).filename() == "sbatch" &&
          absl::StrContains(raw, job_name_prefix_)) {
        sbatch_.push_back(s);
      }
      if (absl::StrContains(raw, job_tag_)) job_.push_back(s);
      if (absl::StartsWith(raw, "slurmstepd")) stepds_.push_back(s);
    }
    ::closedir(proc);
  }

  static std::string ReadCmdline(int pid) {
    const std::string path = absl::StrCat("/proc/", pid, "/cmdline");
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "";
    std::string out;
    char buf[16384];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > (1 << 20)) break;
    }
    ::close(fd);
    return out;
  }

  const std::vector<Needle> needles_;
  const std::string job_name_prefix_;
  const std::string job_tag_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::set<std::pair<int, std::string>> seen_;
  std::vector<Sighting> leaks_;
  std::vector<Sighting> sbatch_;
  std::vector<Sighting> job_;
  std::vector<Sighting> stepds_;
  int scans_ = 0;
  int processes_read_ = 0;
  absl::Time started_;
  absl::Time last_scan_;
  absl::Duration longest_gap_ = absl::ZeroDuration();
};

TEST(E2eSecretsTest, SecretReachesTheJobAndNothingElse) {
  ::evalctl::testing::RequireCluster();
  if (::testing::Test::HasFatalFailure()) return;
  E2eEnv env;
  // Debug logging: the most the services ever log.
  E2E_ASSERT_OK(env.StartController({{"EVALCTL_LOG_LEVEL", "debug"}}));
  E2E_ASSERT_OK(env.StartAgent({{"EVALCTL_LOG_LEVEL", "debug"}}));

  absl::BitGen gen;
  const std::string secret = absl::StrFormat("e2e-secret-%016x%016x", absl::Uniform<uint64_t>(gen),
                                             absl::Uniform<uint64_t>(gen));
  RunConfig config;
  config.tasks.push_back(
      {.name = "secretive",
       .command = absl::StrCat(
           "if [ -z \"$MY_SECRET\" ]; then echo \"e2e: MY_SECRET is missing\"; exit 4; fi\n",
           "echo \"e2e: secret sha256 $(printf %s \"$MY_SECRET\" | sha256sum | cut -d' ' -f1)\"\n",
           WriteResultsCommand("secretive")),
       .env_vars = {{"MY_SECRET", "host:E2E_SECRET"}}});
  auto path = env.WriteConfig(config);
  E2E_ASSERT_OK(path);

  // Only the CLI's environment has the value.
  CliResult run =
      env.Cli({"run", "--config", *path, "--wait"}, {{"E2E_SECRET", secret}}, absl::Minutes(3));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  const std::string marker = "Submitted invocation ";
  size_t at = run.out.find(marker);
  ASSERT_NE(at, std::string::npos) << run.out;
  const std::string id = run.out.substr(at + marker.size(), 16);

  auto inv = env.Get(id);
  E2E_ASSERT_OK(inv);
  ASSERT_EQ(inv->tasks_size(), 1);
  const v1::Task& task = inv->tasks(0);
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED) << task.reason();

  // The job had it.
  auto eval_log = env.ReadLog(task.id(), v1::LOG_KIND_EVAL);
  E2E_ASSERT_OK(eval_log);
  EXPECT_THAT(*eval_log, HasSubstr(absl::StrCat("e2e: secret sha256 ", Sha256(secret))));
  EXPECT_THAT(*eval_log, ::testing::Not(HasSubstr("MY_SECRET is missing")));

  // The controller's answers and events.
  EXPECT_FALSE(absl::StrContains(inv->SerializeAsString(), secret));
  EXPECT_THAT(inv->resolved_config(), HasSubstr("E2E_SECRET"));
  auto events = env.WatchAll(id, 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  EXPECT_FALSE(events->empty());
  for (const v1::WatchInvocationResponse& r : *events) {
    EXPECT_FALSE(absl::StrContains(r.SerializeAsString(), secret)) << r.ShortDebugString();
  }
  CliResult status = env.Cli({"status", id, "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_FALSE(absl::StrContains(status.out, secret));
  CliResult info = env.Cli({"info", id, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_FALSE(absl::StrContains(info.out, secret));
  EXPECT_FALSE(absl::StrContains(run.out + run.err, secret));

  // Stop both services so that everything they hold is on disk (SQLite WAL included) and their
  // logs are complete.
  env.KillAgent();
  env.KillController();

  // Every file of the test: controller state, agent state (but its secret store), the run
  // directory (script, logs, artifacts), the config and both services' logs.
  auto secret_store = [](const std::string& p) {
    return absl::StrContains(p, "/agent/secrets.db");
  };
  // The scan itself works: a canary file with the value is found.
  const std::string canary = env.root() + "/canary";
  { std::ofstream(canary) << "x" << secret << "x"; }
  EXPECT_THAT(FilesContaining(env.root(), secret, secret_store), ::testing::ElementsAre(canary));
  std::filesystem::remove(canary);
  EXPECT_THAT(FilesContaining(env.root(), secret, secret_store), IsEmpty());
  // And the places named in the design, one by one, so that a failure says which.
  EXPECT_THAT(FilesContaining(env.controller_state_dir(), secret), IsEmpty());
  EXPECT_THAT(FilesContaining(env.agent_state_dir(), secret, secret_store), IsEmpty());
  EXPECT_THAT(FilesContaining(task.run_dir(), secret), IsEmpty());
  EXPECT_FALSE(absl::StrContains(ReadFileOrEmpty(env.controller_log()), secret));
  EXPECT_FALSE(absl::StrContains(ReadFileOrEmpty(env.agent_log()), secret));
  EXPECT_TRUE(std::filesystem::exists(env.agent_state_dir() + "/journal.db"));
  EXPECT_TRUE(std::filesystem::exists(task.run_dir() + "/run.sub"));
  EXPECT_THAT(ReadFileOrEmpty(task.run_dir() + "/run.sub"), HasSubstr("MY_SECRET"));
}

// The task's command: prints the SHA-256 of both secrets (and how many of evalctl's transport
// variables it can see), then by attempt: the first runs past its one-minute time limit (Slurm
// ends it TIMEOUT and the agent resumes it), the second fails (the test resumes it by hand), the
// third succeeds. Markers in the artifacts directory (kept across attempts) tell them apart. The
// first line carries `tag`, so that the scanner recognises the job's processes (srun and the
// step's shell have the command in their arguments). Only shell builtins touch the secrets.
std::string ThreeAttempts(const std::string& tag, const std::string& name) {
  return absl::StrCat(
      "# ", tag, "\n",
      // The batch shell forwards USR1 (--signal=B:USR1@120, which a one-minute job gets at once).
      "trap 'echo \"e2e: got USR1\"' USR1\n",
      "echo \"e2e: A sha256 $(printf %s \"$SECRET_A\" | sha256sum | cut -d' ' -f1)\"\n",
      "echo \"e2e: B sha256 $(printf %s \"$SECRET_B\" | sha256sum | cut -d' ' -f1)\"\n",
      "echo \"e2e: transport variables visible: $(env | grep -c '^EVALCTL_SECRET_')\"\n",
      "if [ -z \"$SECRET_A\" ] || [ -z \"$SECRET_B\" ]; then\n",
      "  echo \"e2e: a secret is missing\"\n", "  exit 4\n", "fi\n",
      "if [ ! -e \"$EVALCTL_RESULTS_DIR/attempt-1\" ]; then\n",
      "  touch \"$EVALCTL_RESULTS_DIR/attempt-1\"\n",
      "  echo \"e2e: attempt 1 runs past its time limit\"\n",
      "  while (( SECONDS < 300 )); do sleep 1; done\n", "  echo \"e2e: was not stopped\"\n",
      "  exit 1\n", "fi\n", "if [ ! -e \"$EVALCTL_RESULTS_DIR/attempt-2\" ]; then\n",
      "  touch \"$EVALCTL_RESULTS_DIR/attempt-2\"\n", "  echo \"e2e: attempt 2 fails\"\n",
      "  exit 3\n", "fi\n", "echo \"e2e: attempt 3 finishes\"\n", WriteResultsCommand(name));
}

// Two secrets, one through `host:` and one through `${oc.env:...}`, in a task resumed twice: once
// by the agent after a TIMEOUT (the secrets it holds in memory) and once by hand after a failure
// (the secrets read back from its secret store). Every attempt gets both; meanwhile no process
// has either in its command line, and afterwards no file of the test but the agent's secret store,
// no answer of the controller and no output of the CLI holds either, as such, in hex or in base64.
TEST(E2eSecretsTest, HostAndOcEnvSecretsSurviveResumesAndLeakNowhere) {
  ::evalctl::testing::RequireCluster();
  if (::testing::Test::HasFatalFailure()) return;
  const absl::Time began = absl::Now();
  E2eEnv env;
  // Temporary files of both services land in the test's directory, which is searched.
  const std::string tmp = env.root() + "/tmp";
  std::filesystem::create_directories(tmp);
  // Debug logging: the most the services ever log.
  const std::vector<std::pair<std::string, std::string>> service_env = {
      {"EVALCTL_LOG_LEVEL", "debug"}, {"TMPDIR", tmp}};
  E2E_ASSERT_OK(env.StartController(service_env));
  E2E_ASSERT_OK(env.StartAgent(service_env));

  const std::string secret_a = RandomValue("e2e-secret-a");
  const std::string secret_b = RandomValue("e2e-secret-b");
  std::vector<Needle> needles = NeedlesFor("secret A", secret_a);
  for (Needle& n : NeedlesFor("secret B", secret_b)) needles.push_back(std::move(n));
  const std::string tag = RandomValue("e2e-job-tag");  // names the job's processes
  const std::string name = "secretive";

  // The scanner also looks for a canary, which a short-lived process of the test carries in its
  // arguments: the scan must catch it.
  const std::string canary_arg = RandomValue("e2e-canary");
  std::vector<Needle> scanned_for = needles;
  scanned_for.push_back({"canary", canary_arg});
  CmdlineScanner scanner(scanned_for, env.job_name_prefix(), tag);
  scanner.Start();
  auto canary_process = RunSubprocess(
      {.argv = {"/bin/sh", "-c", "sleep 0.3", canary_arg}, .timeout = absl::Seconds(10)});
  ASSERT_TRUE(canary_process.ok() && canary_process->ok()) << canary_process.status();

  RunConfig config;
  config.walltime = "00:01:00";
  config.tasks.push_back(
      {.name = name,
       .command = ThreeAttempts(tag, name),
       .env_vars = {{"SECRET_A", "host:E2E_SECRET_A"}, {"SECRET_B", "${oc.env:E2E_SECRET_B}"}}});
  auto path = env.WriteConfig(config);
  E2E_ASSERT_OK(path);
  // Only the CLI's environment has the values.
  const std::vector<std::pair<std::string, std::string>> secrets_env = {{"E2E_SECRET_A", secret_a},
                                                                        {"E2E_SECRET_B", secret_b}};
  CliResult run = env.Cli({"run", "--config", *path}, secrets_env);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  const std::string marker = "Submitted invocation ";
  const size_t at = run.out.find(marker);
  ASSERT_NE(at, std::string::npos) << run.out;
  const std::string id = run.out.substr(at + marker.size(), 16);
  auto submitted = env.Get(id);
  E2E_ASSERT_OK(submitted);
  ASSERT_EQ(submitted->tasks_size(), 1);
  const std::string task_id = submitted->tasks(0).id();

  // Attempt 1 runs into its time limit; the agent resumes the task; attempt 2 fails.
  auto failed = env.WaitTask(
      task_id, [](const v1::Task& t) { return t.attempts_size() >= 2 && IsTerminal(t.state()); },
      absl::Minutes(3));
  E2E_ASSERT_OK(failed);
  ASSERT_EQ(failed->state(), v1::TASK_STATE_FAILED) << failed->DebugString();
  // Resumed by hand: attempt 3 succeeds.
  CliResult resume = env.Cli({"resume", task_id});
  ASSERT_EQ(resume.exit_code, 0) << resume.out << resume.err;
  EXPECT_THAT(resume.out, HasSubstr("Resumed 1 task(s)"));
  auto finished = env.WaitTask(
      task_id, [](const v1::Task& t) { return t.attempts_size() >= 3 && IsTerminal(t.state()); },
      absl::Minutes(1));
  scanner.Stop();
  E2E_ASSERT_OK(finished);
  const v1::Task& task = *finished;
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED) << task.reason();
  ASSERT_EQ(task.attempts_size(), 3) << task.DebugString();
  EXPECT_EQ(task.attempts(0).slurm_state(), "TIMEOUT");
  EXPECT_EQ(task.attempts(1).resume_reason(), v1::RESUME_REASON_TIMEOUT);
  EXPECT_EQ(task.attempts(1).slurm_state(), "FAILED");
  EXPECT_EQ(task.attempts(2).resume_reason(), v1::RESUME_REASON_MANUAL);
  EXPECT_EQ(task.attempts(2).slurm_state(), "COMPLETED");

  // Every attempt had both values, under their own names only.
  const std::vector<std::string> says = {"e2e: attempt 1 runs past its time limit",
                                         "e2e: attempt 2 fails", "e2e: attempt 3 finishes"};
  for (int n = 1; n <= 3; ++n) {
    auto log = env.ReadLog(task_id, v1::LOG_KIND_EVAL, n);
    E2E_ASSERT_OK(log);
    EXPECT_THAT(*log, HasSubstr(absl::StrCat("e2e: A sha256 ", Sha256(secret_a))))
        << "attempt " << n;
    EXPECT_THAT(*log, HasSubstr(absl::StrCat("e2e: B sha256 ", Sha256(secret_b))))
        << "attempt " << n;
    EXPECT_THAT(*log, HasSubstr("e2e: transport variables visible: 0")) << "attempt " << n;
    EXPECT_THAT(*log, HasSubstr(says[n - 1])) << "attempt " << n;
    EXPECT_THAT(*log, ::testing::Not(HasSubstr("secret is missing"))) << "attempt " << n;
    EXPECT_THAT(Found(*log, needles), IsEmpty()) << "attempt " << n;
  }

  // No command line held a value; and the scan saw what it had to see.
  std::cerr << "e2e: command-line scan: " << scanner.scans() << " scans of /proc ("
            << scanner.processes_read() << " command lines read), every "
            << absl::FormatDuration(scanner.mean_gap()) << " on average, longest gap "
            << absl::FormatDuration(scanner.longest_gap()) << "; saw " << scanner.sbatch().size()
            << " sbatch, " << scanner.job().size() << " job and " << scanner.stepds().size()
            << " slurmstepd processes:" << Describe(scanner.sbatch(), 200)
            << Describe(scanner.job(), 200) << Describe(scanner.stepds(), 200) << "\n";
  std::vector<Sighting> leaks;
  std::vector<Sighting> canaries;  // each (pid, command line) the canary was read with
  for (const Sighting& s : scanner.leaks()) {
    (s.found == std::vector<std::string>{"canary"} ? canaries : leaks).push_back(s);
  }
  EXPECT_GE(canaries.size(), 1u) << "the canary process was not seen";
  EXPECT_LE(canaries.size(), 2u) << Describe(canaries);
  EXPECT_TRUE(leaks.empty()) << "command lines with a secret:" << Describe(leaks);
  EXPECT_GT(scanner.scans(), 100);
  for (int n = 1; n <= 3; ++n) {
    const std::string job = task.attempts(n - 1).slurm_job_id();
    auto of_job = [&](const Sighting& s) {
      return absl::StrContains(s.argv, absl::StrCat("[", job, "."));
    };
    EXPECT_TRUE(std::any_of(scanner.stepds().begin(), scanner.stepds().end(), of_job))
        << "no slurmstepd of attempt " << n << " (job " << job << ") seen";
  }
  EXPECT_THAT(scanner.job(), ::testing::Not(IsEmpty())) << "no process of the job seen";
  EXPECT_THAT(scanner.sbatch(), ::testing::Not(IsEmpty())) << "no sbatch process seen";

  // The controller's answers, every event, and what the CLI printed.
  auto inv = env.Get(id);
  E2E_ASSERT_OK(inv);
  EXPECT_THAT(Found(inv->SerializeAsString(), needles), IsEmpty());
  EXPECT_THAT(inv->resolved_config(), HasSubstr("host:E2E_SECRET_A"));
  EXPECT_THAT(inv->resolved_config(), HasSubstr("E2E_SECRET_B"));
  auto events = env.WatchAll(id, 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  int resumed = 0;
  for (const v1::WatchInvocationResponse& r : *events) {
    EXPECT_THAT(Found(r.SerializeAsString(), needles), IsEmpty()) << r.ShortDebugString();
    if (r.event().kind() == v1::TaskEvent::KIND_RESUMED) ++resumed;
  }
  EXPECT_GE(resumed, 1);
  std::vector<std::pair<std::string, CliResult>> outputs = {{"run", run}, {"resume", resume}};
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"status", id, "--json"},
                                             {"info", id, "--json"},
                                             {"info", task_id, "--json"},
                                             {"watch", id, "--json"},
                                             {"logs", task_id}}) {
    CliResult r = env.Cli(args);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ": " << r.err;
    outputs.emplace_back(absl::StrJoin(args, " "), std::move(r));
  }
  for (const auto& [what, r] : outputs) {
    EXPECT_FALSE(r.out.empty()) << what;
    EXPECT_THAT(Found(r.out + r.err, needles), IsEmpty()) << "evalctl " << what;
  }

  // Stop both services so that everything they hold is on disk (SQLite WAL included) and their
  // logs are complete.
  env.KillAgent();
  env.KillController();

  // The file search works: a canary with one value as such and the other in base64 is found.
  const std::string canary = env.root() + "/canary";
  { std::ofstream(canary) << "x" << secret_a << "x" << absl::Base64Escape("y" + secret_b); }
  EXPECT_THAT(
      FilesWithSecrets(env.root(), needles, IsSecretStore),
      ::testing::ElementsAre(absl::StrCat(canary, ": secret A, secret B in base64 (offset 1)")));
  std::filesystem::remove(canary);

  // Every file of the test but the secret store: controller state, agent state, output_dir (run
  // directory: script, logs, artifacts), configs, temporary files and both services' logs.
  EXPECT_THAT(FilesWithSecrets(env.root(), needles, IsSecretStore), IsEmpty());
  // And the places named in the design, one by one, so that a failure says which.
  EXPECT_THAT(FilesWithSecrets(env.controller_state_dir(), needles), IsEmpty());
  EXPECT_THAT(FilesWithSecrets(env.agent_state_dir(), needles, IsSecretStore), IsEmpty());
  EXPECT_THAT(FilesWithSecrets(env.output_dir(), needles), IsEmpty());
  EXPECT_THAT(FilesWithSecrets(task.run_dir(), needles), IsEmpty());
  EXPECT_THAT(Found(ReadFileOrEmpty(env.controller_log()), needles), IsEmpty());
  EXPECT_THAT(Found(ReadFileOrEmpty(env.agent_log()), needles), IsEmpty());
  EXPECT_TRUE(std::filesystem::exists(env.agent_state_dir() + "/journal.db"));
  EXPECT_TRUE(std::filesystem::exists(task.run_dir() + "/run.sub"));
  const std::string script = ReadFileOrEmpty(task.run_dir() + "/run.sub");
  EXPECT_THAT(script, HasSubstr("SECRET_A"));
  EXPECT_THAT(script, HasSubstr("SECRET_B"));
  EXPECT_THAT(script, HasSubstr(tag));
  for (int n = 1; n <= 3; ++n) {
    const std::string job = task.attempts(n - 1).slurm_job_id();
    for (const std::string& log : {absl::StrCat(task.run_dir(), "/logs/slurm-", job, ".log"),
                                   absl::StrCat(task.run_dir(), "/logs/client-", job, ".log")}) {
      EXPECT_TRUE(std::filesystem::exists(log)) << log;
    }
  }

  // The secret store is the owner's alone (SQLite gives its -wal and -shm the same mode).
  int stores = 0;
  for (const auto& entry : std::filesystem::directory_iterator(env.agent_state_dir())) {
    if (!IsSecretStore(entry.path().string())) continue;
    ++stores;
    struct stat st {};
    ASSERT_EQ(::stat(entry.path().c_str(), &st), 0) << entry.path();
    EXPECT_EQ(st.st_mode & 07777, 0600u) << entry.path();
  }
  EXPECT_GE(stores, 1);
  EXPECT_TRUE(std::filesystem::exists(env.agent_state_dir() + "/secrets.db"));
  std::cerr << "e2e: took " << absl::FormatDuration(absl::Now() - began) << "\n";
}

}  // namespace
}  // namespace evalctl::e2e
