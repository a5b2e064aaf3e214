// Benchmark 2: submitting 500 rendered jobs through the agent's path, against a plain shell loop
// of sbatch on the same scripts, in the same run, on the local Slurm cluster.
//
//   agent     TaskManager::AcceptBatch over the real SlurmCliClient: per task the script is written
//             into its run directory (fsync), the task and attempt journaled (SQLite, fsync)
//             before sbatch, then sbatch runs with bounded parallelism (submit_parallelism = 4,
//             the default), and the job ids are journaled in one transaction.
//   baseline  bash: for each script, sbatch --parsable --export=ALL --job-name=NAME SCRIPT, one
//             after the other (the same argv the agent uses; the scripts are already written).
//
// The jobs are trivial (`true`) and held (#SBATCH --hold in the script), so the cluster runs none
// of them; each round's jobs are cancelled before the next round. Rounds run A B B A (shell,
// agent, agent, shell) so that drift in the shared machine's load hits both sides alike.
// Also printed: the agent path over FakeSlurm (no sbatch at all), i.e. the agent's own overhead.
//
//   submit_bench [--jobs=500] [--rounds=2]
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/core/journal.h"
#include "agent/core/task_manager.h"
#include "agent/slurm/fake_slurm.h"
#include "agent/slurm/slurm_cli_client.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/run_layout.h"
#include "common/subprocess.h"
#include "tests/bench/bench_util.h"

namespace evalctl::bench {
namespace {

constexpr char kScript[] =
    "#!/bin/bash\n#SBATCH --hold\n#SBATCH --partition=debug\n#SBATCH --time=1\n"
    "#SBATCH --output=/dev/null\ntrue\n";

std::vector<v1::SubmitTask> MakeTasks(const std::string& root, int n) {
  std::vector<v1::SubmitTask> out;
  for (int i = 0; i < n; ++i) {
    v1::SubmitTask t;
    t.set_task_id(absl::StrCat("fedcba9876543210.", i));
    t.set_invocation_id("fedcba9876543210");
    t.set_name(absl::StrCat("task", i));
    t.mutable_job()->set_script(kScript);
    t.mutable_job()->set_run_dir(absl::StrCat(root, "/runs/t", i));
    t.mutable_job()->set_job_name_prefix(absl::StrCat("bench.submit.t", i));
    v1::EnvVar* plain = t.mutable_job()->add_env();
    plain->set_name("EVALCTL_BENCH");
    plain->set_value("1");
    out.push_back(std::move(t));
  }
  return out;
}

struct Round {
  double seconds = 0;
  int submitted = 0;
  std::vector<std::string> ids;
};

// The agent's path. `slurm` is the real client or a fake.
Round AgentRound(agent::SlurmClient* slurm, int n, const std::string& name) {
  const std::string root = MakeTempDir(name);
  RealClock clock;
  auto journal = agent::Journal::Open(root + "/state", &clock);
  if (!journal.ok()) {
    std::cerr << journal.status() << "\n";
    std::exit(1);
  }
  agent::TaskManager tm({}, slurm, journal->get(), &clock);
  std::vector<v1::SubmitTask> tasks = MakeTasks(root, n);
  Round r;
  const double t0 = WallSeconds();
  std::vector<absl::Status> results = tm.AcceptBatch(tasks);
  r.seconds = WallSeconds() - t0;
  for (const auto& t : tasks) {
    auto status = tm.Get(t.task_id());
    if (status.ok() && status->attempts_size() > 0 &&
        !status->attempts(0).slurm_job_id().empty()) {
      r.ids.push_back(status->attempts(0).slurm_job_id());
    }
  }
  r.submitted = static_cast<int>(r.ids.size());
  for (const absl::Status& s : results) {
    if (!s.ok()) {
      std::cout << "  agent: " << s << "\n";
      break;
    }
  }
  std::filesystem::remove_all(root);
  return r;
}

// The baseline: a bash loop of sbatch over scripts written beforehand (not timed).
Round ShellRound(int n) {
  const std::string root = MakeTempDir("submit-shell");
  for (int i = 0; i < n; ++i) {
    const std::string dir = absl::StrCat(root, "/runs/t", i);
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/" + layout::kScriptFile) << kScript;
  }
  const std::string loop = absl::StrCat(
      "for i in $(seq 0 ", n - 1, "); do sbatch --parsable --export=ALL "
      "--job-name=bench.shell.t$i.0 ", root, "/runs/t$i/", layout::kScriptFile, "; done");
  Round r;
  const double t0 = WallSeconds();
  auto out = RunSubprocess({.argv = {"bash", "-c", loop}, .timeout = absl::Minutes(30)});
  r.seconds = WallSeconds() - t0;
  if (!out.ok() || !out->ok()) {
    std::cout << "  shell loop failed: "
              << (out.ok() ? out->stderr_data.substr(0, 500) : out.status().ToString()) << "\n";
  }
  if (out.ok()) {
    for (absl::string_view line : absl::StrSplit(out->stdout_data, '\n', absl::SkipEmpty())) {
      r.ids.emplace_back(line.substr(0, line.find(';')));
    }
  }
  r.submitted = static_cast<int>(r.ids.size());
  std::filesystem::remove_all(root);
  return r;
}

int Main(int argc, char** argv) {
  logging::SetMinSeverity(logging::Severity::kWarning);
  int jobs = 500;
  int rounds = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--jobs=", 0) == 0 && absl::SimpleAtoi(a.substr(7), &jobs)) continue;
    if (a.rfind("--rounds=", 0) == 0 && absl::SimpleAtoi(a.substr(9), &rounds)) continue;
    std::cerr << "usage: submit_bench [--jobs=500] [--rounds=2]\n";
    return 2;
  }
  std::cout << "== 2. submission of " << jobs << " jobs: agent path vs shell loop of sbatch\n";
  if (!SlurmAvailable()) return 1;
  agent::SlurmCliClient slurm;
  double shell_s = 0, agent_s = 0;
  int shell_n = 0, agent_n = 0;
  auto cancel = [&](const std::vector<std::string>& ids) {
    if (absl::Status s = slurm.Cancel(ids); !s.ok()) std::cout << "  scancel: " << s << "\n";
  };
  for (int k = 0; k < rounds; ++k) {
    // A B B A: shell, agent, agent, shell (then again).
    for (bool agent_first : {false, true}) {
      bool order[2] = {agent_first, !agent_first};
      for (bool is_agent : order) {
        Round r = is_agent ? AgentRound(&slurm, jobs, "submit-agent") : ShellRound(jobs);
        cancel(r.ids);
        std::cout << "  " << (is_agent ? "agent" : "shell") << " round: " << r.submitted
                  << " jobs in " << Fmt(r.seconds, 2) << " s = "
                  << Fmt(r.submitted / r.seconds, 1) << " jobs/s\n";
        (is_agent ? agent_s : shell_s) += r.seconds;
        (is_agent ? agent_n : shell_n) += r.submitted;
      }
    }
  }
  // The agent's own work, without Slurm: the same AcceptBatch over FakeSlurm.
  FakeClock fake_clock;
  agent::FakeSlurm fake(&fake_clock);
  Round own = AgentRound(&fake, jobs, "submit-fake");
  std::cout << "  agent path over FakeSlurm (no sbatch): " << jobs << " tasks in "
            << Fmt(own.seconds, 2) << " s = " << Fmt(jobs / own.seconds, 0) << " tasks/s\n";

  const double agent_rate = agent_n / agent_s;
  const double shell_rate = shell_n / shell_s;
  std::cout << "  total: agent " << agent_n << " jobs in " << Fmt(agent_s, 2) << " s, shell "
            << shell_n << " jobs in " << Fmt(shell_s, 2) << " s; ratio "
            << Fmt(agent_rate / shell_rate, 2) << "\n";
  Row("2 submission", absl::StrCat("jobs/s submitting ", jobs, " held jobs (", 2 * rounds,
                                   " rounds each, ABBA)"),
      Fmt(agent_rate, 1), Fmt(shell_rate, 1), Fmt(agent_rate / shell_rate, 2),
      "agent: AcceptBatch, 4 sbatch at once, journaled; baseline: bash loop of sbatch");
  Row("2 submission", absl::StrCat("agent's own work per task (FakeSlurm, ", jobs, " tasks)"),
      Fmt(own.seconds / jobs * 1e3, 2) + " ms", "-", "-",
      "script write + fsync, journal commit before sbatch, final commit");
  return 0;
}

}  // namespace
}  // namespace evalctl::bench

int main(int argc, char** argv) { return evalctl::bench::Main(argc, argv); }
