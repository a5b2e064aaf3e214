// evalctl side by side with raw Slurm commands and with a launcher that drives Slurm over SSH,
// one new SSH connection per command (as NeMo Evaluator Launcher does without a ControlMaster),
// all on the local cluster in one run. The real evalctl-controller, evalctl-agent (default
// tracking intervals, 1 s doubling to 30 s) and evalctl CLI; a real sshd on 127.0.0.1 (key auth,
// known_hosts checked) reached with /usr/bin/ssh, ControlMaster off.
//
//   launcher_bench [--sizes=1,10,100,500] [--submit-rounds=2] [--tracked=1000] [--cancel=100]
//                  [--latency-jobs=8] [--quiet-seconds=60] [--gpu-tasks=8]
//                  [--status-sizes=10,100,1000,10000]
//                  [--evalctl-status-10000-ms=X] [--agent-flag=--name=value ...]
//
// Every job it submits carries the name prefix of its harness and is cancelled at the end.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "clients/ssh/testing/test_sshd.h"
#include "common/subprocess.h"
#include "tests/bench/bench_util.h"
#include "tests/e2e/harness.h"

namespace evalctl::bench {
namespace {

namespace v1 = ::evalctl::v1;
using e2e::E2eEnv;

// ---------------------------------------------------------------- helpers

std::vector<int> ParseSizes(const std::string& text) {
  std::vector<int> out;
  for (absl::string_view s : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (absl::SimpleAtoi(s, &v) && v > 0) out.push_back(v);
  }
  return out;
}

bool FlagValue(const std::string& arg, const std::string& name, std::string* value) {
  const std::string prefix = "--" + name + "=";
  if (arg.rfind(prefix, 0) != 0) return false;
  *value = arg.substr(prefix.size());
  return true;
}

// A child whose stdout lines are collected with their arrival time (WallSeconds()).
class LineChild {
 public:
  explicit LineChild(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    std::vector<std::string> args = argv;
    std::vector<char*> argvp;
    for (std::string& s : args) argvp.push_back(s.data());
    argvp.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::setpgid(0, 0);
      ::dup2(fds[1], STDOUT_FILENO);
      int null_fd = ::open("/dev/null", O_RDWR);
      ::dup2(null_fd, STDIN_FILENO);
      ::dup2(null_fd, STDERR_FILENO);
      ::execvp(argvp[0], argvp.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    fd_ = fds[0];
    reader_ = std::thread([this] { Read(); });
  }
  ~LineChild() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (reader_.joinable()) reader_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  LineChild(const LineChild&) = delete;
  LineChild& operator=(const LineChild&) = delete;

  std::vector<std::pair<double, std::string>> Lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  void Read() {
    std::string partial;
    char buf[4096];
    while (true) {
      ssize_t n = ::read(fd_, buf, sizeof(buf));
      if (n <= 0) break;
      const double t = WallSeconds();
      partial.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = partial.find('\n')) != std::string::npos) {
        std::lock_guard<std::mutex> lock(mu_);
        lines_.emplace_back(t, partial.substr(0, nl));
        partial.erase(0, nl + 1);
      }
    }
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::vector<std::pair<double, std::string>> lines_;
};

// A launcher's transport: a new /usr/bin/ssh connection per command to a real sshd on loopback.
class Ssh {
 public:
  bool Start() {
    auto sshd = ssh::testing::TestSshd::Start();
    if (!sshd.ok()) {
      std::cerr << "sshd: " << sshd.status() << "\n";
      return false;
    }
    sshd_ = *std::move(sshd);
    if (!sshd_->WriteKnownHosts(sshd_->dir() + "/known_hosts").ok()) return false;
    const char* conf = std::getenv("SLURM_CONF");
    prefix_ = absl::StrCat("export SLURM_CONF=", conf != nullptr ? conf : "", "; ");
    return true;
  }
  std::vector<std::string> Argv(const std::string& command) const {
    return {"/usr/bin/ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "UserKnownHostsFile=" + sshd_->dir() + "/known_hosts",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            sshd_->client_key(),
            "-p",
            std::to_string(sshd_->port()),
            "127.0.0.1",
            prefix_ + command};
  }
  // One command on one new connection; counts connections.
  absl::StatusOr<SubprocessResult> Run(const std::string& command,
                                       absl::Duration timeout = absl::Seconds(120)) {
    ++connections_;
    return RunSubprocess({.argv = Argv(command), .timeout = timeout});
  }
  int connections() const { return connections_; }
  // The account the connections log in as (never the user running the bench, whose shell
  // startup files are the machine's); jobs sbatch'ed over SSH are its jobs.
  const std::string& user() const { return sshd_->account().name; }
  const ::evalctl::testing::TestAccount& account() const { return sshd_->account(); }

 private:
  std::unique_ptr<ssh::testing::TestSshd> sshd_;
  std::string prefix_;
  std::atomic<int> connections_{0};
};

absl::StatusOr<SubprocessResult> Local(const std::string& command,
                                       absl::Duration timeout = absl::Seconds(300)) {
  return RunSubprocess({.argv = {"bash", "-c", command}, .timeout = timeout});
}

std::string CurrentUser() {
  auto r = Local("id -un", absl::Seconds(10));
  return r.ok() ? std::string(absl::StripAsciiWhitespace(r->stdout_data)) : "root";
}

// "id STATE" per line -> map.
std::map<std::string, std::string> ParseIdState(const std::string& out) {
  std::map<std::string, std::string> m;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipWhitespace())) {
    std::vector<std::string> cols = absl::StrSplit(line, absl::ByAnyChar(" |"), absl::SkipEmpty());
    if (cols.size() >= 2) m[cols[0]] = cols[1];
  }
  return m;
}

// Job ids of `sbatch --parsable` output lines.
std::vector<std::string> ParseIds(const std::string& out) {
  std::vector<std::string> ids;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipWhitespace())) {
    line = absl::StripAsciiWhitespace(line);
    ids.emplace_back(line.substr(0, line.find(';')));
  }
  return ids;
}

// ---------------------------------------------------------------- the bench

class Bench {
 public:
  Bench() : user_(CurrentUser()) {}

  bool Setup(const std::vector<std::string>& agent_flags) {
    if (!SlurmAvailable()) return false;
    if (!ssh_.Start()) return false;
    metrics_port_ = 20000 + static_cast<int>(::getpid() % 20000);
    std::vector<std::string> flags = {"--metrics-listen",
                                      absl::StrCat("127.0.0.1:", metrics_port_)};
    flags.insert(flags.end(), agent_flags.begin(), agent_flags.end());
    env_.set_agent_flags(std::move(flags));
    if (absl::Status s = env_.StartController(); !s.ok()) {
      std::cerr << "controller: " << s << "\n";
      return false;
    }
    if (absl::Status s = env_.StartAgent(); !s.ok()) {
      std::cerr << "agent: " << s << "\n";
      return false;
    }
    prefix_ = env_.job_name_prefix();
    subproject_ = prefix_.substr(4, prefix_.size() - 5);  // "e2e-<subproject>."
    std::filesystem::create_directories(env_.root() + "/base");
    // The cost of one SSH connection that runs nothing.
    std::vector<double> ms;
    for (int i = 0; i < 10; ++i) {
      const double t0 = WallSeconds();
      auto r = ssh_.Run("true");
      if (!r.ok() || !r->ok()) {
        std::cerr << "ssh: " << (r.ok() ? r->Check("ssh").ToString() : r.status().ToString())
                  << "\n";
        return false;
      }
      ms.push_back((WallSeconds() - t0) * 1e3);
    }
    ssh_true_ms_ = Median(ms);
    std::cout << "  one SSH connection running `true`: median " << Fmt(ssh_true_ms_, 1)
              << " ms, p95 " << Fmt(Percentile(ms, 95), 1) << " ms (10 runs)\n";
    Row("0 transport",
        "one SSH connection (/usr/bin/ssh, new connection, key auth) running `true`, ms", "-",
        Fmt(ssh_true_ms_, 1), "-", "the floor of every SSH-per-command operation below");
    return true;
  }

  ~Bench() { CancelEverything(); }

  void CancelEverything() {
    env_.CancelSlurmJobs();
    if (!raw_ids_.empty()) {
      std::vector<std::string> all(raw_ids_.begin(), raw_ids_.end());
      for (size_t i = 0; i < all.size(); i += 500) {
        std::vector<std::string> argv = {"scancel"};
        argv.insert(argv.end(), all.begin() + static_cast<long>(i),
                    all.begin() + static_cast<long>(std::min(all.size(), i + 500)));
        (void)RunSubprocess({.argv = argv, .timeout = absl::Seconds(60)});
      }
    }
  }

  // A config of `n` tasks running `command` (no "${"), with extra #SBATCH flags.
  std::string WriteConfig(const std::string& name, int n, const std::string& command,
                          const std::vector<std::pair<std::string, std::string>>& flags = {}) {
    std::string y = absl::StrCat(
        "defaults:\n  - execution: slurm/default\n  - deployment: none\n  - _self_\n",
        "execution:\n  hostname: \"", env_.cluster(), "\"\n  username: \"", user_,
        "\"\n  account: e2e\n  subproject: \"", subproject_, "\"\n  output_dir: \"",
        env_.output_dir(), "\"\n  partition: debug\n  walltime: \"00:10:00\"\n",
        "  container_runtime: none\n  gres: null\n  sbatch_extra_flags:\n    exclusive: false\n");
    for (const auto& [k, v] : flags) absl::StrAppend(&y, "    ", k, ": \"", v, "\"\n");
    absl::StrAppend(
        &y,
        "target:\n  api_endpoint:\n    url: \"http://127.0.0.1:9/v1/chat/completions\"\n"
        "    model_id: bench\nevaluation:\n  tasks:\n");
    for (int i = 0; i < n; ++i) {
      absl::StrAppend(&y, "    - name: \"", name, "-", i, "\"\n      command: |\n");
      for (absl::string_view line : absl::StrSplit(command, '\n', absl::SkipEmpty())) {
        absl::StrAppend(&y, "        ", line, "\n");
      }
    }
    const std::string path = absl::StrCat(env_.root(), "/configs/", name, ".yaml");
    std::ofstream(path) << y;
    return path;
  }

  // `evalctl run`; the invocation id, or "" on failure.
  std::string CliRun(const std::string& config, double* cli_s = nullptr) {
    const double t0 = WallSeconds();
    e2e::CliResult r = env_.Cli({"run", "-c", config}, {}, absl::Minutes(5));
    if (cli_s != nullptr) *cli_s = WallSeconds() - t0;
    const std::string marker = "Submitted invocation ";
    size_t at = r.out.find(marker);
    if (r.exit_code != 0 || at == std::string::npos) {
      std::cerr << "evalctl run: exit " << r.exit_code << ": " << r.out << r.err << "\n";
      return "";
    }
    at += marker.size();
    return r.out.substr(at, r.out.find(':', at) - at);
  }

  // The baselines' sbatch of `script` as job `prefix_ + name` (the harness cancels its jobs by
  // that prefix), with the flags the agent passes.
  std::string Sbatch(const std::string& name, const std::string& script) const {
    return absl::StrCat("sbatch --parsable --export=ALL --job-name=", prefix_, name, " ", script);
  }

  // A shell loop that submits `scripts` one after another as jobs NAME.b0, NAME.b1, ...
  std::string SbatchLoop(const std::vector<std::string>& scripts, const std::string& name) const {
    std::string loop;
    for (size_t i = 0; i < scripts.size(); ++i) {
      absl::StrAppend(&loop, Sbatch(absl::StrCat(name, ".b", i), scripts[i]), "\n");
    }
    return loop;
  }

  // The baselines' scripts: `evalctl run --dry-run` renders the same jobs into `dir`.
  // Render(), with the scripts' directories and the output directory given to the SSH account,
  // whose jobs write there.
  std::vector<std::string> RenderForSsh(const std::string& config, const std::string& dir) {
    std::vector<std::string> scripts = Render(config, dir);
    for (const std::string& d : {dir, env_.output_dir()}) {
      if (absl::Status s = ::evalctl::testing::GiveTo(ssh_.account(), d); !s.ok())
        std::cerr << s << "\n";
    }
    return scripts;
  }

  std::vector<std::string> Render(const std::string& config, const std::string& dir) {
    e2e::CliResult r =
        env_.Cli({"run", "--dry-run", "-c", config, "--render-dir", dir}, {}, absl::Minutes(2));
    if (r.exit_code != 0) std::cerr << "dry run: " << r.err << "\n";
    std::vector<std::string> scripts;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (e.is_directory() && std::filesystem::exists(e.path() / "run.sub")) {
        scripts.push_back((e.path() / "run.sub").string());
      }
    }
    std::sort(scripts.begin(), scripts.end());
    // The directories the agent creates before its sbatch (Slurm fails a job whose --chdir or
    // --output directory is missing): created here, untimed.
    for (const std::string& script : scripts) {
      std::ifstream f(script);
      std::string line;
      while (std::getline(f, line)) {
        for (const std::string opt : {"#SBATCH --chdir=", "#SBATCH --output="}) {
          if (line.rfind(opt, 0) != 0) continue;
          std::filesystem::path p = line.substr(opt.size());
          if (opt == "#SBATCH --output=") p = p.parent_path();
          std::error_code ec;
          std::filesystem::create_directories(p, ec);
        }
      }
    }
    return scripts;
  }

  struct Counts {
    int tasks = 0, with_job = 0, started = 0, cancelled = 0, terminal = 0;
    std::vector<std::string> jobs;
  };
  Counts Read(const std::string& inv) {
    Counts c;
    v1::GetInvocationRequest req;
    req.set_id(inv);
    req.set_view(v1::INVOCATION_VIEW_BASIC);
    req.set_page_size(10000);
    std::string token;
    do {
      req.set_page_token(token);
      auto r = env_.client().GetInvocation(req);
      if (!r.ok()) return c;
      for (const v1::Task& t : r->tasks()) {
        ++c.tasks;
        if (!t.slurm_job_id().empty()) {
          ++c.with_job;
          c.jobs.push_back(t.slurm_job_id());
        }
        if (t.state() >= v1::TASK_STATE_RUNNING) ++c.started;
        if (t.state() == v1::TASK_STATE_CANCELLED) ++c.cancelled;
        if (t.state() >= v1::TASK_STATE_SUCCEEDED) ++c.terminal;
      }
      token = r->next_page_token();
    } while (!token.empty());
    return c;
  }

  // Polls `done` every `period` seconds for up to `timeout`; seconds since `t0` when it held, -1
  // on timeout.
  static double Until(double t0, double period, double timeout, const std::function<bool()>& done) {
    while (WallSeconds() - t0 < timeout) {
      if (done()) return WallSeconds() - t0;
      absl::SleepFor(absl::Seconds(period));
    }
    return -1;
  }

  // Jobs of `ids` that have started (absent from `squeue -u` or not PENDING), from a listing.
  static int Started(const std::vector<std::string>& ids,
                     const std::map<std::string, std::string>& queue) {
    int n = 0;
    for (const std::string& id : ids) {
      auto it = queue.find(id);
      if (it == queue.end() || it->second != "PENDING") ++n;
    }
    return n;
  }

  void WaitDrained(const std::vector<std::string>& ids) {
    std::set<std::string> mine(ids.begin(), ids.end());
    Until(WallSeconds(), 0.5, 120, [&] {
      auto r = Local("squeue -h -o '%i %T'", absl::Seconds(30));
      if (!r.ok()) return false;
      for (const auto& [id, st] : ParseIdState(r->stdout_data)) {
        if (mine.count(id)) return false;
      }
      return true;
    });
  }

  // ------------------------------------------------------------ 1. submission

  struct Times {
    double submitted = -1, started = -1;
  };

  // evalctl end to end: `evalctl run`, then GetInvocation every 100 ms until every task has a
  // Slurm job and every task is RUNNING or beyond; waits until its jobs have left the queue.
  Times EvalctlRound(const std::string& config, int n, double* cli_s, std::string* inv) {
    Times t;
    const double t0 = WallSeconds();
    *inv = CliRun(config, cli_s);
    if (inv->empty()) return t;
    Counts last;
    Until(t0, 0.1, 600, [&] {
      last = Read(*inv);
      if (t.submitted < 0 && last.with_job == n) t.submitted = WallSeconds() - t0;
      if (t.started < 0 && last.started == n) t.started = WallSeconds() - t0;
      return t.started >= 0;
    });
    WaitDrained(last.jobs);
    return t;
  }

  // A bash loop of sbatch over `scripts`, then squeue -u every second until none is PENDING;
  // waits until its jobs have left the queue.
  Times RawRound(const std::vector<std::string>& scripts, const std::string& name) {
    const std::string loop = SbatchLoop(scripts, name);
    Times t;
    const double r0 = WallSeconds();
    auto r = Local(loop);
    t.submitted = WallSeconds() - r0;
    std::vector<std::string> ids = r.ok() ? ParseIds(r->stdout_data) : std::vector<std::string>{};
    raw_ids_.insert(ids.begin(), ids.end());
    t.started = Until(r0, 1.0, 600, [&] {
      auto q = Local(absl::StrCat("squeue -h -u ", user_, " -o '%i %T'"), absl::Seconds(60));
      return q.ok() && Started(ids, ParseIdState(q->stdout_data)) == static_cast<int>(ids.size());
    });
    WaitDrained(ids);
    return t;
  }

  // The median of the rounds' figures, and their range when there is more than one.
  static std::pair<double, std::string> Summary(const std::vector<double>& v) {
    if (v.size() < 2) return {v.empty() ? -1 : v[0], ""};
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return {Median(v), absl::StrCat(" (", Fmt(*lo, 2), "–", Fmt(*hi, 2), ")")};
  }

  static std::string RoundsNote(int rounds, const std::string& evalctl, const std::string& raw) {
    if (rounds < 2) return "";
    return absl::StrCat("; median of ", rounds,
                        " rounds each, run evalctl, raw, raw, evalctl …: ", "evalctl", evalctl,
                        ", raw", raw);
  }

  void Submit(int n, int rounds) {
    std::cout << "== submit " << n << " task(s)\n";
    const std::string name = absl::StrCat("submit", n);
    const std::string config = WriteConfig(name, n, "echo started\n");
    // evalctl and the raw loop in rounds A B B A …, so that drift in the machine's load (and the
    // cluster's state after the previous side) hits both alike; each on its own rendering.
    std::vector<double> sub[2], start[2];
    std::string inv;
    double cli_s = 0;
    for (int r = 0; r < rounds; ++r) {
      for (int k = 0; k < 2; ++k) {
        const bool evalctl = (k == 0) == (r % 2 == 0);
        Times t;
        if (evalctl) {
          t = EvalctlRound(config, n, &cli_s, &inv);
        } else {
          const std::string dir = absl::StrCat(name, "-raw", r);
          t = RawRound(Render(config, absl::StrCat(env_.root(), "/base/", dir)), dir);
        }
        std::cout << "  round " << r + 1 << " " << (evalctl ? "evalctl" : "raw loop")
                  << ": all submitted " << Fmt(t.submitted, 2) << " s, all started "
                  << Fmt(t.started, 2) << " s\n";
        sub[evalctl ? 0 : 1].push_back(t.submitted);
        start[evalctl ? 0 : 1].push_back(t.started);
      }
    }
    if (inv.empty()) return;
    const auto [submitted, submitted_range] = Summary(sub[0]);
    const auto [started, started_range] = Summary(start[0]);
    const auto [raw_sub, raw_sub_range] = Summary(sub[1]);
    const auto [raw_start, raw_start_range] = Summary(start[1]);
    const std::vector<std::string> ssh_scripts =
        RenderForSsh(config, absl::StrCat(env_.root(), "/base/", name, "-ssh"));
    const std::vector<std::string> one_scripts =
        RenderForSsh(config, absl::StrCat(env_.root(), "/base/", name, "-one"));
    auto sbatch = [&](const std::string& script, int i) {
      return Sbatch(absl::StrCat(name, ".b", i), script);
    };
    // (b) SSH: a new connection per sbatch, then per squeue poll (and sacct, as NEL's status
    // does, when jobs have left the queue).
    double ssh_sub = -1, ssh_start = -1;
    const int conn0 = ssh_.connections();
    {
      const double s0 = WallSeconds();
      std::vector<std::string> ids;
      for (size_t i = 0; i < ssh_scripts.size(); ++i) {
        auto r = ssh_.Run(sbatch(ssh_scripts[i], static_cast<int>(i)));
        if (r.ok() && r->ok()) {
          for (auto& id : ParseIds(r->stdout_data)) ids.push_back(id);
        }
      }
      ssh_sub = WallSeconds() - s0;
      raw_ids_.insert(ids.begin(), ids.end());
      ssh_start = Until(s0, 1.0, 600, [&] {
        auto q = ssh_.Run(absl::StrCat("squeue -h -u ", ssh_.user(), " -o '%i|%T'"));
        if (!q.ok() || !q->ok()) return false;
        auto queue = ParseIdState(q->stdout_data);
        std::vector<std::string> gone;
        for (const auto& id : ids) {
          if (!queue.count(id)) gone.push_back(id);
        }
        if (!gone.empty()) {
          (void)ssh_.Run(
              absl::StrCat("sacct -X -n -P -o JobID,State -j ", absl::StrJoin(gone, ",")));
        }
        return Started(ids, queue) == static_cast<int>(ids.size());
      });
      WaitDrained(ids);
    }
    const int ssh_conns = ssh_.connections() - conn0;
    // (c) SSH, all sbatch in one connection (NEL's `run` with a ControlMaster does this).
    double one_sub = -1;
    {
      std::string all;
      for (size_t i = 0; i < one_scripts.size(); ++i) {
        absl::StrAppend(&all, sbatch(one_scripts[i], static_cast<int>(i)), "; ");
      }
      const double o0 = WallSeconds();
      auto r = ssh_.Run(all);
      one_sub = WallSeconds() - o0;
      std::vector<std::string> ids = r.ok() ? ParseIds(r->stdout_data) : std::vector<std::string>{};
      raw_ids_.insert(ids.begin(), ids.end());
      Until(o0, 1.0, 600, [&] {
        auto q =
            Local(absl::StrCat("squeue -h -u ", ssh_.user(), " -o '%i %T'"), absl::Seconds(60));
        return q.ok() && Started(ids, ParseIdState(q->stdout_data)) == static_cast<int>(ids.size());
      });
      WaitDrained(ids);
    }
    std::cout << "  evalctl: CLI returned " << Fmt(cli_s, 2) << " s, all submitted "
              << Fmt(submitted, 2) << submitted_range << " s, all started " << Fmt(started, 2)
              << started_range << " s; raw loop " << Fmt(raw_sub, 2) << raw_sub_range << " / "
              << Fmt(raw_start, 2) << raw_start_range << " s; SSH per command " << Fmt(ssh_sub, 2)
              << " / " << Fmt(ssh_start, 2) << " s (" << ssh_conns
              << " connections); SSH one connection " << Fmt(one_sub, 2) << " s\n";
    Row("1 submit",
        absl::StrCat(n, " task(s): time to all submitted, s (evalctl | raw sbatch loop)"),
        Fmt(submitted, 2), Fmt(raw_sub, 2), Fmt(raw_sub / submitted, 2),
        absl::StrCat("SSH per command ", Fmt(ssh_sub, 2), " s (", Fmt(ssh_sub / submitted, 2),
                     "x evalctl); SSH, all sbatch in one connection ", Fmt(one_sub, 2),
                     " s; evalctl CLI returned after ", Fmt(cli_s, 2), " s",
                     RoundsNote(rounds, submitted_range, raw_sub_range)));
    Row("1 submit",
        absl::StrCat(n, " task(s): time to all running, s (evalctl | raw + squeue 1 s)"),
        Fmt(started, 2), Fmt(raw_start, 2), Fmt(raw_start / started, 2),
        absl::StrCat("SSH per command + squeue/sacct over SSH every 1 s: ", Fmt(ssh_start, 2),
                     " s (", Fmt(ssh_start / started, 2), "x evalctl), ", ssh_conns,
                     " SSH connections; evalctl: every task RUNNING or beyond at the controller",
                     RoundsNote(rounds, started_range, raw_start_range)));
    if (n == 10 || n == 100) status_invocations_[n] = inv;
  }

  // ------------------------------------------------------------ 2. status

  // `evalctl status <inv>` (median of 5) vs squeue -u + sacct -j <ids>, each on a new SSH
  // connection (median of 5).
  void Status(const std::vector<int>& sizes, double evalctl_10000_ms) {
    std::cout << "== status\n";
    // Job ids that exist: newest first.
    std::vector<std::string> known(raw_ids_.begin(), raw_ids_.end());
    std::sort(known.begin(), known.end(), [](const std::string& a, const std::string& b) {
      return a.size() != b.size() ? a.size() > b.size() : a > b;
    });
    int64_t newest = 0;
    if (!known.empty()) (void)absl::SimpleAtoi(known.front(), &newest);
    for (int n : sizes) {
      std::vector<std::string> ids;
      std::string simulated;
      if (static_cast<int>(known.size()) >= n) {
        ids.assign(known.begin(), known.begin() + n);
      } else {
        for (int64_t j = std::max<int64_t>(1, newest - n + 1); j <= newest; ++j) {
          ids.push_back(std::to_string(j));
        }
        if (ids.empty()) continue;
        simulated =
            absl::StrCat("ids ", ids.front(), "-", ids.back(),
                         " (every id of the cluster up to the newest; fewer exist: ", known.size(),
                         " of them are this run's)");
      }
      std::vector<double> ssh_ms, cli_ms;
      for (int i = 0; i < 5; ++i) {
        const double t0 = WallSeconds();
        auto q = ssh_.Run(absl::StrCat("squeue -h -u ", user_, " -o '%i|%T|%E'"));
        auto a =
            ssh_.Run(absl::StrCat("sacct -X -n -P -o JobID,State -j ", absl::StrJoin(ids, ",")));
        ssh_ms.push_back((WallSeconds() - t0) * 1e3);
        if (!q.ok() || !a.ok() || !q->ok() || !a->ok()) {
          std::cout << "  ssh status failed: "
                    << (a.ok() ? a->stderr_data.substr(0, 300) : a.status().ToString()) << "\n";
        }
      }
      auto it = status_invocations_.find(n);
      if (it != status_invocations_.end()) {
        for (int i = 0; i < 5; ++i) {
          const double t0 = WallSeconds();
          e2e::CliResult r = env_.Cli({"status", it->second});
          if (r.exit_code == 0) cli_ms.push_back((WallSeconds() - t0) * 1e3);
        }
      }
      double evalctl_ms = cli_ms.empty() ? -1 : Median(cli_ms);
      std::string source = "real invocation on this cluster";
      if (evalctl_ms < 0 && n == 10000 && evalctl_10000_ms > 0) {
        evalctl_ms = evalctl_10000_ms;
        source = "evalctl from controller_bench (simulated agent, finished tasks with results)";
      }
      std::cout << "  " << n << " tasks: evalctl status " << Fmt(evalctl_ms, 1)
                << " ms; SSH squeue + sacct " << Fmt(Median(ssh_ms), 1) << " ms\n";
      Row("2 status",
          absl::StrCat(n, " tasks: `evalctl status` vs SSH squeue -u + SSH sacct -j, ms"),
          evalctl_ms > 0 ? Fmt(evalctl_ms, 1) : "-", Fmt(Median(ssh_ms), 1),
          evalctl_ms > 0 ? Fmt(Median(ssh_ms) / evalctl_ms, 1) : "-",
          absl::StrCat(source, "; medians of 5; 0 vs 2 Slurm calls, 0 vs 2 SSH connections",
                       simulated.empty() ? "" : "; baseline " + simulated));
    }
  }

  // ------------------------------------------------------------ 3. tracking many jobs

  double ScrapeSlurmCommands() { return Scrape("evalctl_agent_slurm_commands_total{"); }
  double ScrapeCycles() { return Scrape("evalctl_agent_cycle_duration_seconds_count"); }
  // The sum of every sample whose line starts with `metric`.
  double Scrape(const std::string& metric) {
    auto r = Local(absl::StrCat("curl -s http://127.0.0.1:", metrics_port_, "/metrics"),
                   absl::Seconds(10));
    if (!r.ok() || !r->ok()) return -1;
    double total = 0;
    for (absl::string_view line : absl::StrSplit(r->stdout_data, '\n')) {
      if (!absl::StartsWith(line, metric)) continue;
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) total += v;
    }
    return total;
  }

  // `n` tasks whose jobs wait (--begin an hour ahead): the agent's Slurm commands per minute
  // while it tracks them; then `latency_jobs` of them are started one by one (scontrol update
  // StartTime=now) after random gaps, and `evalctl watch` shows each start; then `evalctl kill`.
  void Tracking(int n, int latency_jobs) {
    std::cout << "== tracking " << n << " waiting jobs\n";
    const std::string starts = env_.root() + "/starts";
    const std::string config = WriteConfig(
        "tracked", n,
        absl::StrCat("echo \"$EVALCTL_TASK_ID $(date +%s.%N)\" >> ", starts, "\nsleep 20\n"),
        {{"begin", "now+3600"}});
    const double t0 = WallSeconds();
    const std::string inv = CliRun(config);
    if (inv.empty()) return;
    Counts c;
    const double all_submitted = Until(t0, 0.5, 600, [&] {
      c = Read(inv);
      return c.with_job == n;
    });
    std::cout << "  all " << n << " submitted after " << Fmt(all_submitted, 1) << " s\n";
    status_invocations_[n] = inv;
    // Quiet: wait for the interval to reach 30 s, then count over 120 s.
    absl::SleepFor(absl::Seconds(35));
    const double cpu_a0 = ProcessCpuSecondsOf(env_.agent_pid());
    const double cpu_c0 = ProcessCpuSecondsOf(env_.controller_pid());
    const double m0 = ScrapeSlurmCommands();
    const double y0 = ScrapeCycles();
    const double w0 = WallSeconds();
    absl::SleepFor(absl::Seconds(quiet_seconds_));
    const double m1 = ScrapeSlurmCommands();
    const double cycles = ScrapeCycles() - y0;
    const double minutes = (WallSeconds() - w0) / 60.0;
    const double per_min = (m1 - m0) / minutes;
    const double agent_cpu = (ProcessCpuSecondsOf(env_.agent_pid()) - cpu_a0) / minutes / 60.0;
    const double ctl_cpu = (ProcessCpuSecondsOf(env_.controller_pid()) - cpu_c0) / minutes / 60.0;
    // A per-task poller asking squeue and sacct about each job every 30 s (the agent's quietest
    // interval): 2 commands per job per 30 s.
    const double per_task = 2.0 * n * 2.0;
    std::cout << "  Slurm commands: " << m1 - m0 << " in " << Fmt(minutes * 60, 0)
              << " s = " << Fmt(per_min, 1) << "/min; agent RSS "
              << Fmt(RssMiB(env_.agent_pid()), 1) << " MiB, CPU " << Fmt(agent_cpu * 100, 2)
              << " %; controller RSS " << Fmt(RssMiB(env_.controller_pid()), 1) << " MiB, CPU "
              << Fmt(ctl_cpu * 100, 2) << " %\n";
    Row("5 load", absl::StrCat("Slurm commands per minute while tracking ", n, " waiting jobs"),
        Fmt(per_min, 1), Fmt(per_task, 0), Fmt(per_task / per_min, 0) + "x fewer",
        absl::StrCat("evalctl: measured from the agent's metrics over ", Fmt(minutes * 60, 0),
                     " quiet s: ", m1 - m0, " commands in ", cycles,
                     " cycles (interval 30 s; squeue and sacct take 500 ids each); baseline "
                     "computed: squeue + sacct per job every 30 s"));
    Row("5 load", absl::StrCat("agent and controller while tracking ", n, " jobs: RSS MiB, CPU %"),
        absl::StrCat(Fmt(RssMiB(env_.agent_pid()), 1), " / ", Fmt(agent_cpu * 100, 2), " %"), "-",
        "-",
        absl::StrCat("agent; controller ", Fmt(RssMiB(env_.controller_pid()), 1), " MiB, ",
                     Fmt(ctl_cpu * 100, 2), " %"));

    // Event latency: evalctl watch vs an SSH squeue poller every second, on the same starts.
    LineChild watch({EVALCTL_CLI_BIN, "--controller", env_.controller_address(), "watch", inv});
    std::map<std::string, double> ssh_seen;  // job id -> first seen RUNNING
    std::atomic<bool> stop{false};
    std::thread poller([&] {
      while (!stop) {
        auto q = ssh_.Run(absl::StrCat("squeue -h -u ", user_, " -t RUNNING -o '%i|%T'"));
        const double t = WallSeconds();
        if (q.ok() && q->ok()) {
          for (const auto& [id, st] : ParseIdState(q->stdout_data)) {
            if (!ssh_seen.count(id)) ssh_seen[id] = t;
          }
        }
        absl::SleepFor(absl::Seconds(1));
      }
    });
    absl::SleepFor(absl::Seconds(3));
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> gap(1.0, 8.0);
    std::vector<std::string> released;
    const double epoch_offset =
        absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()) - WallSeconds();
    for (int i = 0; i < latency_jobs && i < static_cast<int>(c.jobs.size()); ++i) {
      absl::SleepFor(absl::Seconds(gap(rng)));
      (void)Local(absl::StrCat("scontrol update jobid=", c.jobs[i], " StartTime=now"),
                  absl::Seconds(30));
      released.push_back(c.jobs[i]);
    }
    Until(WallSeconds(), 0.5, 60, [&] {
      std::ifstream f(starts);
      int lines = 0;
      std::string l;
      while (std::getline(f, l)) ++lines;
      return lines >= static_cast<int>(released.size()) &&
             Read(inv).started >= static_cast<int>(released.size());
    });
    absl::SleepFor(absl::Seconds(3));
    stop = true;
    poller.join();
    // Start times from the jobs; watch lines "<time>  <task id>  <kind>  running...".
    std::map<std::string, double> start_of;  // task id -> start (WallSeconds clock)
    {
      std::ifstream f(starts);
      std::string task;
      double t;
      while (f >> task >> t) start_of[task] = t - epoch_offset;
    }
    std::map<std::string, std::string> task_of_job;
    {
      v1::GetInvocationRequest req;
      req.set_id(inv);
      req.set_view(v1::INVOCATION_VIEW_BASIC);
      req.set_page_size(10000);
      auto r = env_.client().GetInvocation(req);
      if (r.ok()) {
        for (const v1::Task& t : r->tasks()) task_of_job[t.slurm_job_id()] = t.id();
      }
    }
    std::vector<double> watch_lat, ssh_lat;
    std::set<std::string> seen;
    for (const auto& [t, line] : watch.Lines()) {
      std::vector<std::string> parts = absl::StrSplit(line, "  ", absl::SkipEmpty());
      if (parts.size() < 4) continue;
      const std::string task(absl::StripAsciiWhitespace(parts[1]));
      if (absl::AsciiStrToLower(parts[3]).find("running") != 0 || seen.count(task)) continue;
      auto it = start_of.find(task);
      if (it == start_of.end()) continue;
      seen.insert(task);
      watch_lat.push_back(t - it->second);
    }
    for (const auto& [job, t] : ssh_seen) {
      auto tk = task_of_job.find(job);
      if (tk == task_of_job.end()) continue;
      auto it = start_of.find(tk->second);
      if (it != start_of.end()) ssh_lat.push_back(t - it->second);
    }
    std::cout << "  job start -> `evalctl watch` line: " << watch_lat.size() << " starts, median "
              << Fmt(Median(watch_lat), 2) << " s, p95 " << Fmt(Percentile(watch_lat, 95), 2)
              << " s, max " << Fmt(Percentile(watch_lat, 100), 2)
              << " s; SSH squeue poller (1 s): median " << Fmt(Median(ssh_lat), 2) << " s, p95 "
              << Fmt(Percentile(ssh_lat, 95), 2) << " s\n";
    Row("6 events",
        "job start -> line in `evalctl watch`, median / p95 s (vs SSH squeue every 1 s)",
        absl::StrCat(Fmt(Median(watch_lat), 2), " / ", Fmt(Percentile(watch_lat, 95), 2)),
        absl::StrCat(Fmt(Median(ssh_lat), 2), " / ", Fmt(Percentile(ssh_lat, 95), 2)),
        Fmt(Median(ssh_lat) / Median(watch_lat), 2),
        absl::StrCat(watch_lat.size(),
                     " jobs started one by one after 1-8 s gaps while the agent "
                     "tracked ",
                     n,
                     " (default intervals 1 s doubling to 30 s); the poller costs 60 "
                     "SSH connections and squeue calls a minute"));

    // Cancel all n: evalctl kill.
    const double k0 = WallSeconds();
    e2e::CliResult k = env_.Cli({"kill", inv}, {}, absl::Minutes(5));
    const double kill_cli = WallSeconds() - k0;
    const double all_cancelled = Until(k0, 0.5, 300, [&] { return Read(inv).terminal == n; });
    std::cout << "  evalctl kill of " << n << " tasks: CLI " << Fmt(kill_cli, 2) << " s (exit "
              << k.exit_code << "), all terminal at the controller " << Fmt(all_cancelled, 2)
              << " s\n";
    kill_1000_ = {kill_cli, all_cancelled};
    tracked_ = n;
  }

  // ------------------------------------------------------------ 4. cancel

  void Cancel(int n) {
    std::cout << "== cancel " << n << " running or waiting tasks\n";
    const std::string config = WriteConfig(absl::StrCat("cancel", n), n, "sleep 600\n");
    const std::string inv = CliRun(config);
    if (inv.empty()) return;
    Counts c;
    Until(WallSeconds(), 0.5, 300, [&] {
      c = Read(inv);
      return c.with_job == n;
    });
    absl::SleepFor(absl::Seconds(3));
    auto gone_from_queue = [&](const std::vector<std::string>& ids) {
      std::set<std::string> mine(ids.begin(), ids.end());
      auto r = Local("squeue -h -o '%i %T'", absl::Seconds(30));
      if (!r.ok()) return false;
      for (const auto& [id, st] : ParseIdState(r->stdout_data)) {
        if (mine.count(id) && st != "COMPLETING") return false;
      }
      return true;
    };
    const double k0 = WallSeconds();
    e2e::CliResult k = env_.Cli({"kill", inv}, {}, absl::Minutes(5));
    const double kill_cli = WallSeconds() - k0;
    const double kill_slurm = Until(k0, 0.2, 300, [&] { return gone_from_queue(c.jobs); });
    const double kill_ctl = Until(k0, 0.2, 300, [&] { return Read(inv).terminal == n; });

    // Baseline: the same scripts, submitted with sbatch; then per job one SSH connection running
    // `sacct -j ID; scancel ID` (NEL's kill).
    const std::vector<std::string> scripts =
        RenderForSsh(config, absl::StrCat(env_.root(), "/base/cancel"));
    const std::string loop = SbatchLoop(scripts, "cancel");
    // Submitted over SSH (untimed), so that they are the SSH account's jobs to cancel.
    auto r = ssh_.Run(loop, absl::Seconds(300));
    std::vector<std::string> ids = r.ok() ? ParseIds(r->stdout_data) : std::vector<std::string>{};
    raw_ids_.insert(ids.begin(), ids.end());
    absl::SleepFor(absl::Seconds(3));
    const double s0 = WallSeconds();
    for (const std::string& id : ids) {
      (void)ssh_.Run(absl::StrCat("sacct -X -n -P -o JobID,State -j ", id, "; scancel ", id));
    }
    const double ssh_cli = WallSeconds() - s0;
    const double ssh_slurm = Until(s0, 0.2, 300, [&] { return gone_from_queue(ids); });
    // And one local scancel of every id (a user on the headnode).
    auto r2 = Local(loop);
    std::vector<std::string> ids2 =
        r2.ok() ? ParseIds(r2->stdout_data) : std::vector<std::string>{};
    raw_ids_.insert(ids2.begin(), ids2.end());
    absl::SleepFor(absl::Seconds(3));
    const double l0 = WallSeconds();
    (void)Local(absl::StrCat("scancel ", absl::StrJoin(ids2, " ")));
    const double local_cli = WallSeconds() - l0;
    const double local_slurm = Until(l0, 0.2, 300, [&] { return gone_from_queue(ids2); });
    std::cout << "  evalctl kill: CLI " << Fmt(kill_cli, 2) << " s (exit " << k.exit_code
              << "), jobs gone from squeue " << Fmt(kill_slurm, 2)
              << " s, all terminal at the controller " << Fmt(kill_ctl, 2)
              << " s; SSH sacct+scancel per job: " << Fmt(ssh_cli, 2) << " s, gone "
              << Fmt(ssh_slurm, 2) << " s; local scancel of all: " << Fmt(local_cli, 2)
              << " s, gone " << Fmt(local_slurm, 2) << " s\n";
    Row("3 cancel",
        absl::StrCat(n,
                     "-task invocation: until every job has left squeue, s (evalctl kill | SSH "
                     "sacct+scancel per job)"),
        Fmt(kill_slurm, 2), Fmt(ssh_slurm, 2), Fmt(ssh_slurm / kill_slurm, 1),
        absl::StrCat("evalctl CLI returned after ", Fmt(kill_cli, 2),
                     " s, every task CANCELLED at the controller after ", Fmt(kill_ctl, 2),
                     " s; SSH loop returned after ", Fmt(ssh_cli, 2), " s (", n,
                     " connections); one local `scancel` of all ids: ", Fmt(local_slurm, 2), " s"));
    if (kill_1000_.first > 0) {
      Row("3 cancel",
          absl::StrCat(tracked_,
                       "-task invocation (waiting jobs): `evalctl kill` returned / all "
                       "terminal, s (vs SSH sacct+scancel per job)"),
          absl::StrCat(Fmt(kill_1000_.first, 2), " / ", Fmt(kill_1000_.second, 2)),
          absl::StrCat("~", Fmt(ssh_cli / n * tracked_, 0)), "-",
          absl::StrCat("baseline computed: the per-job SSH loop above scaled to ", tracked_,
                       " jobs"));
    }
  }

  // ------------------------------------------------------------ 5. logs -f

  void Logs() {
    std::cout << "== logs -f\n";
    const std::string config = WriteConfig(
        "logs", 1, "for i in $(seq 1 20); do echo \"tick $(date +%s.%N)\"; sleep 1; done\n");
    const std::string inv = CliRun(config);
    if (inv.empty()) return;
    std::string task_id, job;
    Until(WallSeconds(), 0.2, 120, [&] {
      v1::GetInvocationRequest req;
      req.set_id(inv);
      req.set_view(v1::INVOCATION_VIEW_BASIC);
      auto r = env_.client().GetInvocation(req);
      if (!r.ok() || r->tasks_size() == 0) return false;
      task_id = r->tasks(0).id();
      job = r->tasks(0).slurm_job_id();
      return r->tasks(0).state() >= v1::TASK_STATE_RUNNING && !job.empty();
    });
    // The eval log of the job: <output>/<run>-<inv>/<task>/logs/client-<job>.log.
    std::string log;
    Until(WallSeconds(), 0.2, 30, [&] {
      for (const auto& e : std::filesystem::recursive_directory_iterator(env_.output_dir())) {
        if (e.path().filename() == absl::StrCat("client-", job, ".log") &&
            absl::StrContains(e.path().string(), inv)) {
          log = e.path().string();
          return true;
        }
      }
      return false;
    });
    const double epoch_offset =
        absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()) - WallSeconds();
    LineChild follow({EVALCTL_CLI_BIN, "--controller", env_.controller_address(), "logs", "-f",
                      "--which", "eval", task_id});
    LineChild tail(ssh_.Argv(absl::StrCat("tail -n 0 -F ", log)));
    Until(WallSeconds(), 0.5, 40, [&] { return Read(inv).terminal == 1; });
    absl::SleepFor(absl::Seconds(2));
    auto latencies = [&](LineChild& child) {
      std::vector<double> lat;
      for (const auto& [t, line] : child.Lines()) {
        const size_t at = line.find("tick ");
        double sent = 0;
        if (at == std::string::npos || !absl::SimpleAtod(line.substr(at + 5), &sent)) continue;
        lat.push_back(t - (sent - epoch_offset));
      }
      // The first lines may be the backlog written before the follower started.
      if (lat.size() > 3) lat.erase(lat.begin(), lat.begin() + 2);
      return lat;
    };
    std::vector<double> ev = latencies(follow), ss = latencies(tail);
    std::cout << "  new log line -> `evalctl logs -f`: " << ev.size() << " lines, median "
              << Fmt(Median(ev), 3) << " s, p95 " << Fmt(Percentile(ev, 95), 3)
              << " s; `ssh tail -F`: median " << Fmt(Median(ss), 3) << " s, p95 "
              << Fmt(Percentile(ss, 95), 3) << " s\n";
    Row("4 logs", "new line in a running job's log -> printed by the follower, median / p95 s",
        absl::StrCat(Fmt(Median(ev), 3), " / ", Fmt(Percentile(ev, 95), 3)),
        absl::StrCat(Fmt(Median(ss), 3), " / ", Fmt(Percentile(ss, 95), 3)),
        Fmt(Median(ss) / Median(ev), 2),
        "evalctl logs -f (controller -> agent reads the file) vs one SSH connection running "
        "`tail -F` (NEL itself has no logs command); a line a second for 20 s");
  }

  // ------------------------------------------------------------ 6. GPU-time model

  void GpuModel(int delay_s) {
    std::cout << "== model load time (evalctl-standin --startup-delay-s " << delay_s << ")\n";
    const std::string standin = EVALCTL_STANDIN_BIN;
    std::vector<double> ready_s;
    for (int i = 0; i < 3; ++i) {
      const std::string port_file = absl::StrCat(env_.root(), "/standin-", i, ".port");
      const double t0 = WallSeconds();
      LineChild server({standin, "--port", "0", "--port-file", port_file, "--startup-delay-s",
                        std::to_string(delay_s)});
      const double ready = Until(t0, 0.05, 60, [&] {
        std::ifstream f(port_file);
        int port = 0;
        if (!(f >> port) || port == 0) return false;
        auto r =
            Local(absl::StrCat("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:", port,
                               "/v1/models"),
                  absl::Seconds(5));
        return r.ok() && r->stdout_data == "200";
      });
      ready_s.push_back(ready);
    }
    const double load = Median(ready_s);
    std::cout << "  process start -> 200 on /v1/models: median " << Fmt(load, 2) << " s\n";
    for (int n : {1, 10, 100}) {
      Row("8 gpu-time",
          absl::StrCat(n,
                       " task(s): allocation time spent loading the model, s (shared deployment | "
                       "one job per task)"),
          Fmt(load, 1), Fmt(load * n, 1), Fmt(static_cast<double>(n), 0) + "x less",
          absl::StrCat("computed from the measured stand-in start-up (", Fmt(load, 2),
                       " s, --startup-delay-s ", delay_s, "); per GPU of the deployment"));
    }
  }

  // `n` tasks whose evaluation is trivial (`echo done`) behind a stand-in deployment that takes
  // `delay_s` to become ready: one job per task vs one shared deployment. Measures the
  // allocation time (sacct ElapsedRaw, summed over the jobs) and the time until all ended.
  void GpuMeasured(int n, int delay_s) {
    std::cout << "== " << n << " tasks behind a stand-in deployment: one job each vs shared\n";
    std::map<bool, std::pair<double, double>> figures;  // shared -> (allocation s, wall s)
    for (bool shared : {false, true}) {
      const std::string name = shared ? "gpushared" : "gpuper";
      std::string y = absl::StrCat(
          "defaults:\n  - execution: slurm/default\n  - deployment: generic\n  - _self_\n",
          "execution:\n  hostname: \"", env_.cluster(), "\"\n  username: \"", user_,
          "\"\n  account: e2e\n  subproject: \"", subproject_, "\"\n  output_dir: \"",
          env_.output_dir(), "\"\n  partition: debug\n  walltime: \"00:10:00\"\n",
          "  container_runtime: none\n  gres: null\n  shared_deployment: ",
          shared ? "true" : "false", "\n  sbatch_extra_flags:\n    exclusive: false\n",
          "deployment:\n  image: null\n  port: 0\n  served_model_name: evalctl-standin\n",
          "  command: >-\n    ", EVALCTL_STANDIN_BIN,
          " --port \"$EVALCTL_SERVER_PORT\" --model-name evalctl-standin --startup-delay-s ",
          delay_s, "\nevaluation:\n  tasks:\n");
      for (int i = 0; i < n; ++i) {
        absl::StrAppend(&y, "    - name: \"", name, "-", i,
                        "\"\n      command: |\n        echo done\n");
      }
      const std::string path = absl::StrCat(env_.root(), "/configs/", name, ".yaml");
      std::ofstream(path) << y;
      const double t0 = WallSeconds();
      std::set<std::string> jobs;
      double wall = -1;
      if (!shared) {
        const std::string inv = CliRun(path);
        if (inv.empty()) return;
        Counts c;
        wall = Until(t0, 0.5, 300, [&] {
          c = Read(inv);
          return c.terminal == n;
        });
        jobs.insert(c.jobs.begin(), c.jobs.end());
      } else {
        // Agents do not submit shared jobs yet: the job evalctl renders for them is submitted
        // with sbatch.
        std::vector<std::string> scripts = Render(path, absl::StrCat(env_.root(), "/base/", name));
        if (scripts.size() != 1) return;
        auto r = Local(Sbatch(name, scripts[0]));
        if (!r.ok() || !r->ok()) return;
        for (const std::string& id : ParseIds(r->stdout_data)) jobs.insert(id);
        raw_ids_.insert(jobs.begin(), jobs.end());
        wall = Until(t0, 0.5, 300, [&] {
          auto q =
              Local(absl::StrCat("squeue -h -j ", *jobs.begin(), " -o '%i %T'"), absl::Seconds(30));
          return q.ok() && absl::StripAsciiWhitespace(q->stdout_data).empty();
        });
      }
      double alloc = 0;
      Until(WallSeconds(), 1.0, 30, [&] {
        auto r = Local(
            absl::StrCat("sacct -X -n -P -o JobID,ElapsedRaw,State -j ", absl::StrJoin(jobs, ",")),
            absl::Seconds(30));
        if (!r.ok() || !r->ok()) return false;
        alloc = 0;
        int done = 0;
        for (absl::string_view line :
             absl::StrSplit(r->stdout_data, '\n', absl::SkipWhitespace())) {
          std::vector<std::string> cols = absl::StrSplit(line, '|');
          double v = 0;
          if (cols.size() >= 3 && absl::SimpleAtod(cols[1], &v)) alloc += v;
          if (cols.size() >= 3 && cols[2] != "RUNNING" && cols[2] != "PENDING") ++done;
        }
        return done == static_cast<int>(jobs.size());
      });
      figures[shared] = {alloc, wall};
      std::cout << "  " << (shared ? "shared deployment" : "one job per task") << ": "
                << jobs.size() << " job(s), " << Fmt(alloc, 0) << " allocation s, all ended after "
                << Fmt(wall, 1) << " s\n";
    }
    Row("8 gpu-time",
        absl::StrCat(
            n, " tasks, trivial evaluation: allocation s (shared deployment | one job per task)"),
        Fmt(figures[true].first, 0), Fmt(figures[false].first, 0),
        Fmt(figures[false].first / std::max(1.0, figures[true].first), 1) + "x less",
        absl::StrCat("measured: sacct ElapsedRaw summed over the jobs (1 node each, whole "
                     "seconds); the shared job is evalctl's rendering submitted with sbatch (the "
                     "agent does not submit shared jobs yet); the stand-in needs ",
                     delay_s, " s to be ready; all ended after ", Fmt(figures[true].second, 1),
                     " vs ", Fmt(figures[false].second, 1), " s"));
  }

  int quiet_seconds_ = 60;

 private:
  std::string user_;
  Ssh ssh_;
  E2eEnv env_;
  std::string prefix_, subproject_;
  int metrics_port_ = 0;
  double ssh_true_ms_ = 0;
  std::set<std::string> raw_ids_;
  std::map<int, std::string> status_invocations_;
  std::pair<double, double> kill_1000_{-1, -1};
  int tracked_ = 0;
};

int Main(int argc, char** argv) {
  std::vector<int> sizes = {1, 10, 100, 500}, status_sizes = {10, 100, 1000, 10000};
  int tracked = 1000, cancel = 100, submit_rounds = 2, latency_jobs = 8, quiet = 60, gpu_tasks = 8;
  double evalctl_10000_ms = -1;
  std::vector<std::string> agent_flags;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::string v;
    if (FlagValue(a, "sizes", &v)) {
      sizes = ParseSizes(v);
    } else if (FlagValue(a, "status-sizes", &v)) {
      status_sizes = ParseSizes(v);
    } else if (FlagValue(a, "submit-rounds", &v) && absl::SimpleAtoi(v, &submit_rounds) &&
               submit_rounds > 0) {
    } else if (FlagValue(a, "tracked", &v) && absl::SimpleAtoi(v, &tracked)) {
    } else if (FlagValue(a, "cancel", &v) && absl::SimpleAtoi(v, &cancel)) {
    } else if (FlagValue(a, "latency-jobs", &v) && absl::SimpleAtoi(v, &latency_jobs)) {
    } else if (FlagValue(a, "quiet-seconds", &v) && absl::SimpleAtoi(v, &quiet)) {
    } else if (FlagValue(a, "gpu-tasks", &v) && absl::SimpleAtoi(v, &gpu_tasks)) {
    } else if (FlagValue(a, "evalctl-status-10000-ms", &v) &&
               absl::SimpleAtod(v, &evalctl_10000_ms)) {
    } else if (FlagValue(a, "agent-flag", &v)) {
      agent_flags.push_back(v);
    } else {
      std::cerr << "usage: launcher_bench [--sizes=1,10,100,500] [--submit-rounds=2] "
                   "[--tracked=1000] [--cancel=100] [--latency-jobs=8] [--quiet-seconds=60] "
                   "[--gpu-tasks=8] "
                   "[--status-sizes=10,100,1000,10000] "
                   "[--evalctl-status-10000-ms=X] [--agent-flag=--name=value ...]\n";
      return 2;
    }
  }
  Bench bench;
  bench.quiet_seconds_ = quiet;
  if (!bench.Setup(agent_flags)) return 1;
  for (int n : sizes) bench.Submit(n, submit_rounds);
  if (tracked > 0) bench.Tracking(tracked, latency_jobs);
  bench.Status(status_sizes, evalctl_10000_ms);
  if (cancel > 0) bench.Cancel(cancel);
  bench.Logs();
  bench.GpuModel(2);
  bench.GpuMeasured(gpu_tasks, 2);
  bench.CancelEverything();
  return 0;
}

}  // namespace
}  // namespace evalctl::bench

int main(int argc, char** argv) { return evalctl::bench::Main(argc, argv); }
