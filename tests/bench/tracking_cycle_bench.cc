// Benchmark 1: what one tracking cycle of the agent costs with 10, 100 and 1,000 tracked jobs.
//
// TaskManager over FakeSlurm (agent/slurm/fake_slurm.h, which counts calls per method). For each
// size it submits N tasks through AcceptBatch, then measures three kinds of cycle:
//   start   every job went PENDING → RUNNING since the last cycle (N changes, N events journaled)
//   steady  nothing changed (the common case; median of many cycles)
//   end     every job ended COMPLETED since the last cycle (results read, N events journaled)
// and prints the Slurm calls each cycle made and its CPU time (this thread) and wall time.
//
// Baseline, side by side on the same FakeSlurm in the same state: a per-job poller (one squeue
// and one sacct per job, as a script that loops over job ids does), calls and CPU time.
//
// With --slurm (needs the local cluster, deploy/dev/cluster.sh) it also runs steady cycles over
// the real SlurmCliClient with N held jobs and counts the Slurm processes it starts, to show the
// 500-ids-per-command chunking, then cancels the jobs.
//
//   tracking_cycle_bench [--slurm] [--sizes=10,100,1000]
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
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
#include "tests/bench/bench_util.h"

namespace evalctl::bench {
namespace {

using agent::CycleStats;
using agent::FakeSlurm;
using agent::Journal;
using agent::TaskManager;

constexpr char kResultsYaml[] =
    "results:\n  tasks:\n    t:\n      metrics:\n        accuracy:\n          scores:\n"
    "            acc: {value: 0.5}\n";

std::vector<v1::SubmitTask> MakeTasks(const std::string& root, int n, const std::string& script) {
  std::vector<v1::SubmitTask> out;
  for (int i = 0; i < n; ++i) {
    v1::SubmitTask t;
    t.set_task_id(absl::StrCat("0123456789abcdef.", i));
    t.set_invocation_id("0123456789abcdef");
    t.set_name(absl::StrCat("task", i));
    t.mutable_job()->set_script(script);
    t.mutable_job()->set_run_dir(absl::StrCat(root, "/runs/t", i));
    t.mutable_job()->set_job_name_prefix("bench.cycle");
    v1::EnvVar* plain = t.mutable_job()->add_env();
    plain->set_name("EVALCTL_BENCH");
    plain->set_value("1");
    out.push_back(std::move(t));
  }
  return out;
}

int Total(const FakeSlurm::CallCounts& c) {
  return c.submit + c.queue + c.accounting + c.find_by_name + c.show + c.cancel;
}

std::string Describe(const FakeSlurm::CallCounts& c) {
  std::string s = absl::StrCat(c.queue, " squeue + ", c.accounting, " sacct");
  if (c.show) absl::StrAppend(&s, " + ", c.show, " scontrol");
  if (c.submit) absl::StrAppend(&s, " + ", c.submit, " sbatch");
  if (c.find_by_name) absl::StrAppend(&s, " + ", c.find_by_name, " find");
  if (c.cancel) absl::StrAppend(&s, " + ", c.cancel, " scancel");
  return s;
}

struct CycleSample {
  FakeSlurm::CallCounts calls;
  double cpu_ms = 0;
  double wall_ms = 0;
  CycleStats stats;
};

CycleSample MeasureCycle(TaskManager& tm, FakeSlurm& slurm) {
  slurm.ResetCalls();
  CycleSample s;
  const double w0 = WallSeconds();
  const double c0 = ThreadCpuSeconds();
  s.stats = tm.RunCycle();
  s.cpu_ms = (ThreadCpuSeconds() - c0) * 1e3;
  s.wall_ms = (WallSeconds() - w0) * 1e3;
  s.calls = slurm.calls();
  return s;
}

struct SizeResult {
  std::vector<CycleSample> start, steady, end;
  std::vector<double> baseline_cpu_ms;
  int baseline_calls = 0;
};

// One fresh agent with n jobs: a start cycle, `steady_reps` steady cycles, the baseline poller,
// then an end cycle.
void RunOnce(int n, int steady_reps, SizeResult& out) {
  const std::string root = MakeTempDir("cycle");
  FakeClock clock;
  FakeSlurm slurm(&clock, {.default_plan = {.pending_for = absl::Seconds(2),
                                            .run_for = absl::Seconds(600)}});
  auto journal = Journal::Open(root + "/state");
  if (!journal.ok()) {
    std::cerr << journal.status() << "\n";
    std::exit(1);
  }
  TaskManager tm({}, &slurm, journal->get(), &clock);
  const absl::Time submitted = clock.Now();
  std::vector<absl::Status> accepted = tm.AcceptBatch(MakeTasks(root, n, "#!/bin/bash\ntrue\n"));
  for (const absl::Status& s : accepted) {
    if (!s.ok()) {
      std::cerr << "AcceptBatch: " << s << "\n";
      std::exit(1);
    }
  }
  // Start: all jobs are RUNNING now.
  clock.Advance(absl::Seconds(5));
  out.start.push_back(MeasureCycle(tm, slurm));
  // Steady: nothing changes between cycles (jobs running, no progress written).
  for (int r = 0; r < steady_reps; ++r) {
    clock.Advance(absl::Seconds(1));
    out.steady.push_back(MeasureCycle(tm, slurm));
  }
  // Baseline: a per-job poller asks squeue and sacct about each job on its own.
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    auto t = tm.Get(absl::StrCat("0123456789abcdef.", i));
    ids.push_back(t->attempts(0).slurm_job_id());
  }
  for (int r = 0; r < std::max(3, steady_reps / 4); ++r) {
    slurm.ResetCalls();
    const double c0 = ThreadCpuSeconds();
    for (const std::string& id : ids) {
      (void)slurm.Queue({id});
      (void)slurm.Accounting({id});
    }
    out.baseline_cpu_ms.push_back((ThreadCpuSeconds() - c0) * 1e3);
    out.baseline_calls = Total(slurm.calls());
  }
  // End: every job completed with results since the last cycle.
  for (int i = 0; i < n; ++i) {
    std::ofstream(absl::StrCat(root, "/runs/t", i, "/", layout::kResultsFile)) << kResultsYaml;
  }
  // The jobs ended at submission + 602 s; the cycle runs 8 s later (slurmctld still knows them).
  clock.Set(submitted + absl::Seconds(610));
  out.end.push_back(MeasureCycle(tm, slurm));
  std::filesystem::remove_all(root);
}

std::vector<double> Cpu(const std::vector<CycleSample>& v) {
  std::vector<double> out;
  for (const auto& s : v) out.push_back(s.cpu_ms);
  return out;
}
std::vector<double> Wall(const std::vector<CycleSample>& v) {
  std::vector<double> out;
  for (const auto& s : v) out.push_back(s.wall_ms);
  return out;
}
// The largest call count any cycle of this kind made (they are all equal when constant).
const CycleSample& MaxCalls(const std::vector<CycleSample>& v) {
  const CycleSample* best = &v[0];
  for (const auto& s : v) {
    if (Total(s.calls) > Total(best->calls)) best = &s;
  }
  return *best;
}

// Real cluster: steady cycles of a TaskManager over SlurmCliClient with n held jobs. The Slurm
// binaries are wrappers that log each start, so the processes per cycle are counted, not assumed.
void RunReal(const std::vector<int>& sizes) {
  const std::string root = MakeTempDir("cycle-real");
  const std::string log = root + "/calls.log";
  std::map<std::string, std::string> wrappers;
  for (const char* tool : {"sbatch", "squeue", "sacct", "scontrol", "scancel"}) {
    const std::string path = absl::StrCat(root, "/", tool);
    std::ofstream(path) << "#!/bin/sh\necho " << tool << " >> " << log << "\nexec " << tool
                        << " \"$@\"\n";
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
    wrappers[tool] = path;
  }
  agent::SlurmCliClient slurm({.sbatch = wrappers["sbatch"],
                               .squeue = wrappers["squeue"],
                               .sacct = wrappers["sacct"],
                               .scontrol = wrappers["scontrol"],
                               .scancel = wrappers["scancel"]});
  auto count = [&]() {
    std::map<std::string, int> c;
    std::ifstream f(log);
    std::string line;
    while (std::getline(f, line)) ++c[line];
    std::filesystem::remove(log);
    return c;
  };
  RealClock clock;
  for (int n : sizes) {
    const std::string dir = absl::StrCat(root, "/n", n);
    auto journal = Journal::Open(dir + "/state");
    if (!journal.ok()) {
      std::cerr << journal.status() << "\n";
      return;
    }
    TaskManager tm({}, &slurm, journal->get(), &clock);
    // Held: they stay PENDING, so the cluster runs nothing and every cycle is steady.
    auto accepted = tm.AcceptBatch(MakeTasks(
        dir, n, "#!/bin/bash\n#SBATCH --hold\n#SBATCH --time=1\n#SBATCH --output=/dev/null\ntrue\n"));
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      auto t = tm.Get(absl::StrCat("0123456789abcdef.", i));
      if (t.ok() && t->attempts_size() > 0 && !t->attempts(0).slurm_job_id().empty()) {
        ids.push_back(t->attempts(0).slurm_job_id());
      }
    }
    (void)count();
    (void)tm.RunCycle();  // the first cycle after submission may see the sacct records appear
    (void)count();
    std::vector<double> wall, cpu;
    std::map<std::string, int> per_cycle;
    const int reps = 5;
    for (int r = 0; r < reps; ++r) {
      const double w0 = WallSeconds();
      const double c0 = ThreadCpuSeconds();
      CycleStats s = tm.RunCycle();
      cpu.push_back((ThreadCpuSeconds() - c0) * 1e3);
      wall.push_back((WallSeconds() - w0) * 1e3);
      per_cycle = count();
      if (!s.slurm_reachable) std::cout << "  cycle: Slurm unreachable: " << s.slurm_error << "\n";
    }
    std::string procs;
    for (const auto& [tool, k] : per_cycle) absl::StrAppend(&procs, procs.empty() ? "" : " + ", k, " ", tool);
    std::cout << "  real cluster, " << n << " held jobs (" << ids.size() << " submitted): "
              << procs << " per cycle; wall median " << Fmt(Median(wall), 1) << " ms, CPU of "
              << "the agent thread " << Fmt(Median(cpu), 2) << " ms\n";
    Row("1 tracking cycle", absl::StrCat("real Slurm: processes per steady cycle, N=", n), procs,
        "-", "-", "SlurmCliClient puts at most 500 ids on one command line");
    Row("1 tracking cycle", absl::StrCat("real Slurm: wall ms per steady cycle, N=", n),
        Fmt(Median(wall), 1), "-", "-", "median of 5; squeue+sacct on the shared local cluster");
    (void)slurm.Cancel(ids);
  }
  std::filesystem::remove_all(root);
}

int Main(int argc, char** argv) {
  logging::SetMinSeverity(logging::Severity::kWarning);
  bool real = false;
  std::vector<int> sizes = {10, 100, 1000};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--slurm") {
      real = true;
    } else if (a.rfind("--sizes=", 0) == 0) {
      sizes.clear();
      for (absl::string_view s : absl::StrSplit(a.substr(8), ',')) {
        int v = 0;
        if (absl::SimpleAtoi(s, &v)) sizes.push_back(v);
      }
    } else {
      std::cerr << "usage: tracking_cycle_bench [--slurm] [--sizes=10,100,1000]\n";
      return 2;
    }
  }
  std::cout << "== 1. tracking cycle: TaskManager over FakeSlurm\n";
  for (int n : sizes) {
    SizeResult r;
    const int reps = 3;
    const int steady = n >= 1000 ? 30 : 100;
    for (int k = 0; k < reps; ++k) RunOnce(n, steady, r);
    const CycleSample& st = MaxCalls(r.steady);
    const CycleSample& sa = MaxCalls(r.start);
    const CycleSample& en = MaxCalls(r.end);
    std::cout << "  N=" << n << ": steady " << Describe(st.calls) << " (" << st.stats.tracked_jobs
              << " tracked), start " << Describe(sa.calls) << ", end " << Describe(en.calls)
              << "; per-job poller " << r.baseline_calls << " calls\n";
    std::cout << "    CPU ms: steady median " << Fmt(Median(Cpu(r.steady)), 3) << " p95 "
              << Fmt(Percentile(Cpu(r.steady), 95), 3) << "; start " << Fmt(Median(Cpu(r.start)), 2)
              << "; end " << Fmt(Median(Cpu(r.end)), 2) << "; per-job poller (fake only) "
              << Fmt(Median(r.baseline_cpu_ms), 3) << "\n";
    std::cout << "    wall ms: steady " << Fmt(Median(Wall(r.steady)), 3) << ", start "
              << Fmt(Median(Wall(r.start)), 2) << ", end " << Fmt(Median(Wall(r.end)), 2) << "\n";
    const std::string nn = absl::StrCat("N=", n);
    Row("1 tracking cycle", absl::StrCat("Slurm calls per steady cycle, ", nn),
        std::to_string(Total(st.calls)), std::to_string(r.baseline_calls),
        Fmt(static_cast<double>(r.baseline_calls) / std::max(1, Total(st.calls)), 0) + "x fewer",
        Describe(st.calls) + " vs per-job squeue+sacct");
    Row("1 tracking cycle", absl::StrCat("Slurm calls, cycle where all start, ", nn),
        std::to_string(Total(sa.calls)), std::to_string(r.baseline_calls), "-", Describe(sa.calls));
    Row("1 tracking cycle", absl::StrCat("Slurm calls, cycle where all complete, ", nn),
        std::to_string(Total(en.calls)), std::to_string(r.baseline_calls), "-", Describe(en.calls));
    Row("1 tracking cycle", absl::StrCat("CPU ms per steady cycle, ", nn),
        Fmt(Median(Cpu(r.steady)), 3), Fmt(Median(r.baseline_cpu_ms), 3), "-",
        "median; baseline = the fake answering 2N calls, no processes");
    Row("1 tracking cycle", absl::StrCat("CPU ms, cycle where all start / all complete, ", nn),
        Fmt(Median(Cpu(r.start)), 2) + " / " + Fmt(Median(Cpu(r.end)), 2), "-", "-",
        "includes the journal commit of N tasks and N events");
  }
  if (real) {
    std::cout << "== 1b. tracking cycle: TaskManager over SlurmCliClient (local cluster)\n";
    if (SlurmAvailable()) RunReal(sizes);
  }
  return 0;
}

}  // namespace
}  // namespace evalctl::bench

int main(int argc, char** argv) { return evalctl::bench::Main(argc, argv); }
