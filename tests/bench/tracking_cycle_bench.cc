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
// With --scale (default sizes 10000,100000) it measures only the agent's memory and CPU at those
// sizes: each size runs once, in a child process of its own (so that its peak RSS is its own),
// with the TaskManager and its real journal (SQLite) and run directories over FakeSlurm:
//   RSS (VmRSS) before and after AcceptBatch of all N tasks, and heap in use (mallinfo2)
//   CPU (all threads) and wall time of that AcceptBatch, per task
//   CPU and wall time of steady cycles while every job is queued, of one cycle where all start,
//   of steady cycles while all run, of one where all complete
//   peak RSS (VmHWM) of the whole run of that size, and RSS after malloc_trim(0) at its end
// The baseline is the same per-job poller on the same fake; above 10,000 jobs it polls every k-th
// job and is scaled by k (printed as computed). FakeSlurm moves every job forward on every call,
// so one fake of 100,000 jobs makes submission and the per-job poller quadratic in the fake; here
// the jobs are spread over fakes of 1,000 jobs each (ShardedFakeSlurm) and the CPU spent inside
// the fakes is measured and printed beside each figure ("of which the fake"). The figures include
// the fake's memory (its heap is measured when it is destroyed). The run directories of all sizes
// are removed at the end, after the last size.
//
// --script-bytes=N pads each task's script to N bytes (the controller renders ~11.6 KiB); the
// agent keeps every task's SubmitTask, script included, in memory and in the journal.
//
//   tracking_cycle_bench [--slurm] [--sizes=10,100,1000] [--scale[=10000,100000]]
//                        [--script-bytes=N]
#include <fcntl.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
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
#include "common/status_macros.h"
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
  auto journal = Journal::Open(root + "/state", &clock);
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
    auto journal = Journal::Open(dir + "/state", &clock);
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

// --- --scale: the agent at 10,000 and 100,000 tasks

// Several FakeSlurms behind one SlurmClient, each with its own range of job ids: jobs are dealt
// to them in turn at submission, and a Queue or Accounting call for many ids is split by shard.
// FakeSlurm moves all of its jobs forward on every call; with shards of 1,000 jobs a call costs
// what it costs at 1,000 jobs, so the fake stays linear in N while it answers the same things.
// Counts calls as the agent made them (one Queue of 100,000 ids is one call) and the CPU time
// spent inside the fakes, on any thread.
class ShardedFakeSlurm : public agent::SlurmClient {
 public:
  ShardedFakeSlurm(Clock* clock, const agent::FakeSlurmOptions& options, int jobs, int shard_jobs) {
    const int shards = std::max(1, (jobs + shard_jobs - 1) / shard_jobs);
    for (int k = 0; k < shards; ++k) {
      agent::FakeSlurmOptions o = options;
      o.first_job_id = (k + 1) * kIdsPerShard;
      shards_.push_back(std::make_unique<FakeSlurm>(clock, o));
    }
  }

  absl::StatusOr<std::string> Submit(const agent::SubmitRequest& request) override {
    ++calls_.submit;
    Timed t(this);
    return shards_[next_++ % shards_.size()]->Submit(request);
  }
  absl::StatusOr<std::vector<agent::JobInfo>> Queue(const std::vector<std::string>& ids) override {
    ++calls_.queue;
    return Split(ids, &FakeSlurm::Queue);
  }
  absl::StatusOr<std::vector<agent::JobInfo>> Accounting(
      const std::vector<std::string>& ids) override {
    ++calls_.accounting;
    return Split(ids, &FakeSlurm::Accounting);
  }
  absl::StatusOr<std::vector<agent::JobInfo>> FindByName(const std::vector<std::string>& names,
                                                         absl::Time since) override {
    ++calls_.find_by_name;
    Timed t(this);
    std::vector<agent::JobInfo> out;
    for (auto& shard : shards_) {
      auto found = shard->FindByName(names, since);
      if (!found.ok()) return found.status();
      out.insert(out.end(), found->begin(), found->end());
    }
    return out;
  }
  absl::StatusOr<agent::JobInfo> Show(const std::string& id) override {
    ++calls_.show;
    Timed t(this);
    FakeSlurm* shard = ShardOf(id);
    if (shard == nullptr) return absl::NotFoundError(absl::StrCat("no job ", id));
    return shard->Show(id);
  }
  absl::Status Cancel(const std::vector<std::string>& ids) override {
    ++calls_.cancel;
    Timed t(this);
    for (auto& [shard, part] : ByShard(ids)) RETURN_IF_ERROR(shard->Cancel(part));
    return absl::OkStatus();
  }

  FakeSlurm::CallCounts calls() const {
    return {.submit = calls_.submit,
            .queue = calls_.queue,
            .accounting = calls_.accounting,
            .find_by_name = calls_.find_by_name,
            .show = calls_.show,
            .cancel = calls_.cancel};
  }
  void ResetCalls() {
    for (std::atomic<int>* c : {&calls_.submit, &calls_.queue, &calls_.accounting,
                                &calls_.find_by_name, &calls_.show, &calls_.cancel}) {
      *c = 0;
    }
  }
  // CPU seconds spent inside the fakes so far, all threads.
  double fake_cpu_seconds() const { return static_cast<double>(fake_cpu_ns_.load()) * 1e-9; }
  size_t shards() const { return shards_.size(); }

 private:
  static constexpr int64_t kIdsPerShard = 10'000'000;

  struct Timed {
    explicit Timed(ShardedFakeSlurm* s) : self(s), start(ThreadCpuSeconds()) {}
    ~Timed() { self->fake_cpu_ns_ += static_cast<int64_t>((ThreadCpuSeconds() - start) * 1e9); }
    ShardedFakeSlurm* self;
    double start;
  };

  FakeSlurm* ShardOf(const std::string& id) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(id, &n)) return nullptr;
    const int64_t k = n / kIdsPerShard - 1;
    return k >= 0 && k < static_cast<int64_t>(shards_.size()) ? shards_[k].get() : nullptr;
  }
  std::map<FakeSlurm*, std::vector<std::string>> ByShard(const std::vector<std::string>& ids) {
    std::map<FakeSlurm*, std::vector<std::string>> out;
    for (const std::string& id : ids) {
      FakeSlurm* shard = ShardOf(id);
      out[shard != nullptr ? shard : shards_[0].get()].push_back(id);
    }
    return out;
  }
  using Method =
      absl::StatusOr<std::vector<agent::JobInfo>> (FakeSlurm::*)(const std::vector<std::string>&);
  absl::StatusOr<std::vector<agent::JobInfo>> Split(const std::vector<std::string>& ids,
                                                    Method method) {
    Timed t(this);
    if (ids.size() == 1) {
      FakeSlurm* shard = ShardOf(ids[0]);
      return ((shard != nullptr ? shard : shards_[0].get())->*method)(ids);
    }
    std::vector<agent::JobInfo> out;
    out.reserve(ids.size());
    for (auto& [shard, part] : ByShard(ids)) {
      auto answer = (shard->*method)(part);
      if (!answer.ok()) return answer.status();
      for (agent::JobInfo& j : *answer) out.push_back(std::move(j));
    }
    return out;
  }

  std::vector<std::unique_ptr<FakeSlurm>> shards_;
  std::atomic<uint64_t> next_{0};
  std::atomic<int64_t> fake_cpu_ns_{0};
  struct {
    std::atomic<int> submit{0}, queue{0}, accounting{0}, find_by_name{0}, show{0}, cancel{0};
  } calls_;
};

// Bytes the allocator has handed out and not got back (all arenas, mmapped blocks included).
double HeapInUseMiB() {
  const struct mallinfo2 m = ::mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd) / (1024.0 * 1024.0);
}

// Makes VmHWM start again from the current RSS (Linux ≥ 4.0).
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

struct Timing {
  double cpu_ms = 0, wall_ms = 0, fake_ms = 0;
};

// Runs `f` on this thread and measures it: `process_cpu` counts every thread of the process
// (AcceptBatch runs sbatch on worker threads), else only this one.
template <typename F>
Timing Measure(ShardedFakeSlurm& slurm, bool process_cpu, F&& f) {
  const double w0 = WallSeconds();
  const double c0 = process_cpu ? ProcessCpuSeconds() : ThreadCpuSeconds();
  const double f0 = slurm.fake_cpu_seconds();
  f();
  Timing t;
  t.cpu_ms = ((process_cpu ? ProcessCpuSeconds() : ThreadCpuSeconds()) - c0) * 1e3;
  t.wall_ms = (WallSeconds() - w0) * 1e3;
  t.fake_ms = (slurm.fake_cpu_seconds() - f0) * 1e3;
  return t;
}

// One size, in this (child) process: accept n tasks, steady cycles while they are queued, a start
// cycle, steady cycles while they run, the per-job poller, an end cycle; prints the figures. The
// run directories stay under `root`.
void RunScaleSize(int n, const std::string& root, size_t script_bytes) {
  ResetPeakRss();
  const int pid = ::getpid();
  const double rss_start = RssMiB(pid);
  const double heap_start = HeapInUseMiB();
  FakeClock clock;
  auto slurm = std::make_unique<ShardedFakeSlurm>(
      &clock,
      agent::FakeSlurmOptions{
          .default_plan = {.pending_for = absl::Seconds(2), .run_for = absl::Seconds(600)}},
      n, 1000);
  auto journal = Journal::Open(root + "/state", &clock);
  if (!journal.ok()) {
    std::cerr << journal.status() << "\n";
    std::exit(1);
  }
  TaskManager tm({}, slurm.get(), journal->get(), &clock);
  const absl::Time submitted = clock.Now();

  // Accept: the tasks as the controller sends them (a small script unless --script-bytes: the
  // run directories are real), built before the clock starts and freed after.
  std::string script = "#!/bin/bash\ntrue\n";
  if (script_bytes > script.size() + 3) {
    script = absl::StrCat("#!/bin/bash\n#", std::string(script_bytes - script.size() - 2, 'x'),
                          "\ntrue\n");
  }
  auto batch = std::make_unique<std::vector<v1::SubmitTask>>(MakeTasks(root, n, script));
  const double rss_input = RssMiB(pid);
  std::vector<absl::Status> accepted;
  const Timing accept = Measure(*slurm, true, [&] { accepted = tm.AcceptBatch(*batch); });
  batch.reset();
  for (const absl::Status& s : accepted) {
    if (!s.ok()) {
      std::cerr << "AcceptBatch: " << s << "\n";
      std::exit(1);
    }
  }
  accepted = {};
  const double rss_accepted = RssMiB(pid);
  const double heap_accepted = HeapInUseMiB();

  // Steady while every job waits in the queue (they start 2 s after submission).
  std::vector<double> pending_cpu, pending_wall, pending_fake;
  CycleStats pending_stats;
  for (int r = 0; r < 3; ++r) {
    clock.Advance(absl::Milliseconds(500));
    const Timing t = Measure(*slurm, false, [&] { pending_stats = tm.RunCycle(); });
    pending_cpu.push_back(t.cpu_ms);
    pending_wall.push_back(t.wall_ms);
    pending_fake.push_back(t.fake_ms);
  }

  // Start: every job went RUNNING since the last cycle.
  clock.Set(submitted + absl::Seconds(5));
  slurm->ResetCalls();
  CycleStats start_stats;
  const Timing start = Measure(*slurm, false, [&] { start_stats = tm.RunCycle(); });
  const FakeSlurm::CallCounts start_calls = slurm->calls();

  // Steady: nothing changes between cycles.
  const int steady_reps = n >= 100000 ? 5 : 10;
  std::vector<double> steady_cpu, steady_wall, steady_fake;
  FakeSlurm::CallCounts steady_calls;
  CycleStats steady_stats;
  for (int r = 0; r < steady_reps; ++r) {
    clock.Advance(absl::Seconds(1));
    slurm->ResetCalls();
    const Timing t = Measure(*slurm, false, [&] { steady_stats = tm.RunCycle(); });
    steady_calls = slurm->calls();
    steady_cpu.push_back(t.cpu_ms);
    steady_wall.push_back(t.wall_ms);
    steady_fake.push_back(t.fake_ms);
  }
  const double rss_steady = RssMiB(pid);

  // Baseline: the per-job poller on the same fake in the same state, once.
  std::vector<std::string> ids;
  ids.reserve(n);
  for (int i = 0; i < n; ++i) {
    auto t = tm.Get(absl::StrCat("0123456789abcdef.", i));
    ids.push_back(t->attempts(0).slurm_job_id());
  }
  // Above 10,000 jobs it polls every k-th job (10,000 of them) and scales the time by k: the
  // whole loop takes 15-25 s at 100,000 and costs the same per call.
  const int stride = std::max(1, n / 10000);
  slurm->ResetCalls();
  Timing poller = Measure(*slurm, false, [&] {
    for (size_t i = 0; i < ids.size(); i += stride) {
      (void)slurm->Queue({ids[i]});
      (void)slurm->Accounting({ids[i]});
    }
  });
  const int poller_measured = Total(slurm->calls());
  const double poller_scale = 2.0 * n / poller_measured;
  poller.cpu_ms *= poller_scale;
  poller.wall_ms *= poller_scale;
  const int poller_calls = 2 * n;
  const std::string poller_how =
      stride == 1 ? "measured"
                  : absl::StrCat("computed: ", poller_measured, " calls for every ", stride,
                                 "th job measured, x", Fmt(poller_scale, 0));

  // End: every job completed with results (written untimed).
  for (int i = 0; i < n; ++i) {
    std::ofstream(absl::StrCat(root, "/runs/t", i, "/", layout::kResultsFile)) << kResultsYaml;
  }
  clock.Set(submitted + absl::Seconds(610));
  slurm->ResetCalls();
  CycleStats end_stats;
  const Timing end = Measure(*slurm, false, [&] { end_stats = tm.RunCycle(); });
  const FakeSlurm::CallCounts end_calls = slurm->calls();
  const double rss_end = RssMiB(pid);
  const double peak = RssMiB(pid, /*peak=*/true);
  const double heap_end = HeapInUseMiB();
  // How much of the RSS is freed heap that glibc keeps (the agent never calls malloc_trim).
  ::malloc_trim(0);
  const double rss_trimmed = RssMiB(pid);
  const size_t shards = slurm->shards();
  slurm.reset();
  const double fake_heap = heap_end - HeapInUseMiB();

  const double us = 1e3 / n;  // ms → µs per task
  std::cout << "  N=" << n << " (FakeSlurm shards of up to 1,000 jobs: " << shards << "):\n"
            << "    RSS MiB: at start " << Fmt(rss_start, 1) << ", with the input built "
            << Fmt(rss_input, 1) << ", after AcceptBatch (input freed) " << Fmt(rss_accepted, 1)
            << ", after steady cycles " << Fmt(rss_steady, 1) << ", after all completed "
            << Fmt(rss_end, 1) << " (after malloc_trim " << Fmt(rss_trimmed, 1)
            << "); peak (VmHWM) " << Fmt(peak, 1) << "\n"
            << "    heap in use MiB: at start " << Fmt(heap_start, 1) << ", after AcceptBatch "
            << Fmt(heap_accepted, 1) << ", at the end " << Fmt(heap_end, 1)
            << " (of which FakeSlurm " << Fmt(fake_heap, 1) << ")\n"
            << "    AcceptBatch: " << Fmt(accept.wall_ms / 1e3, 2) << " s wall, "
            << Fmt(accept.cpu_ms / 1e3, 2) << " s CPU (all threads; fake "
            << Fmt(accept.fake_ms / 1e3, 2) << " s): " << Fmt(accept.cpu_ms * us, 1) << " µs CPU, "
            << Fmt(accept.wall_ms * us, 1) << " µs wall per task\n"
            << "    steady cycle while all wait in the queue (" << pending_stats.jobs.queued
            << " queued, " << pending_stats.changes << " changes), median of 3: CPU "
            << Fmt(Median(pending_cpu), 1) << " ms (fake " << Fmt(Median(pending_fake), 1)
            << "), wall " << Fmt(Median(pending_wall), 1) << " ms\n"
            << "    start cycle (" << Describe(start_calls) << ", " << start_stats.changes
            << " changes): CPU " << Fmt(start.cpu_ms, 1) << " ms (fake " << Fmt(start.fake_ms, 1)
            << "), wall " << Fmt(start.wall_ms, 1) << " ms\n"
            << "    steady cycle (" << Describe(steady_calls) << ", " << steady_stats.tracked_jobs
            << " tracked), median of " << steady_reps << ": CPU " << Fmt(Median(steady_cpu), 1)
            << " ms (fake " << Fmt(Median(steady_fake), 1) << "), wall "
            << Fmt(Median(steady_wall), 1) << " ms; max CPU " << Fmt(Percentile(steady_cpu, 100), 1)
            << " ms\n"
            << "    end cycle (" << Describe(end_calls) << ", " << end_stats.changes
            << " changes): CPU " << Fmt(end.cpu_ms, 1) << " ms (fake " << Fmt(end.fake_ms, 1)
            << "), wall " << Fmt(end.wall_ms, 1) << " ms\n"
            << "    per-job poller: " << poller_calls << " calls, CPU " << Fmt(poller.cpu_ms, 1)
            << " ms (all of it the fake answering), wall " << Fmt(poller.wall_ms, 1) << " ms ("
            << poller_how << ")\n";

  const std::string nn = absl::StrCat("N=", n);
  const std::string fake = "FakeSlurm in shards of 1,000 jobs";
  Row("1 agent at scale", absl::StrCat("RSS MiB after AcceptBatch of all tasks, ", nn),
      Fmt(rss_accepted, 1), "-", "-",
      absl::StrCat("VmRSS of the process (TaskManager, journal, FakeSlurm; ", Fmt(rss_start, 1),
                   " MiB before); heap in use ", Fmt(heap_accepted, 1), " MiB, of which the fake ",
                   Fmt(fake_heap, 1), " MiB"));
  Row("1 agent at scale", absl::StrCat("peak RSS MiB (VmHWM), ", nn), Fmt(peak, 1), "-", "-",
      absl::StrCat("accept, cycles and ending of this size in a process of its own; at the end ",
                   Fmt(rss_end, 1), " MiB, ", Fmt(rss_trimmed, 1), " after malloc_trim(0); heap ",
                   "in use without the fake ", Fmt(heap_end - fake_heap, 1), " MiB"));
  Row("1 agent at scale", absl::StrCat("AcceptBatch CPU / wall µs per task, ", nn),
      Fmt(accept.cpu_ms * us, 1) + " / " + Fmt(accept.wall_ms * us, 1), "-", "-",
      absl::StrCat("all threads; of which the fake ", Fmt(accept.fake_ms * us, 1),
                   " µs; run directory, script with fsync, journal in groups of 16"));
  Row("1 agent at scale", absl::StrCat("Slurm calls per steady cycle, ", nn),
      std::to_string(Total(steady_calls)), std::to_string(poller_calls),
      Fmt(static_cast<double>(poller_calls) / std::max(1, Total(steady_calls)), 0) + "x fewer",
      Describe(steady_calls) + " vs per-job squeue+sacct");
  Row("1 agent at scale", absl::StrCat("CPU / wall ms per steady cycle, ", nn),
      Fmt(Median(steady_cpu), 1) + " / " + Fmt(Median(steady_wall), 1),
      Fmt(poller.cpu_ms, 1) + " / " + Fmt(poller.wall_ms, 1), "-",
      absl::StrCat("median of ", steady_reps, "; of which the fake ", Fmt(Median(steady_fake), 1),
                   " ms; baseline = the fake answering 2N calls, no processes (", fake, "; ",
                   poller_how, ")"));
  Row("1 agent at scale", absl::StrCat("CPU / wall ms per steady cycle, all jobs queued, ", nn),
      Fmt(Median(pending_cpu), 1) + " / " + Fmt(Median(pending_wall), 1), "-", "-",
      absl::StrCat("median of 3; of which the fake ", Fmt(Median(pending_fake), 1),
                   " ms; no run files read for queued jobs"));
  Row("1 agent at scale", absl::StrCat("CPU / wall ms, cycle where all start, ", nn),
      Fmt(start.cpu_ms, 1) + " / " + Fmt(start.wall_ms, 1), "-", "-",
      absl::StrCat("of which the fake ", Fmt(start.fake_ms, 1),
                   " ms; journal commit of N tasks and N events"));
  Row("1 agent at scale", absl::StrCat("CPU / wall ms, cycle where all complete, ", nn),
      Fmt(end.cpu_ms, 1) + " / " + Fmt(end.wall_ms, 1), "-", "-",
      absl::StrCat("of which the fake ", Fmt(end.fake_ms, 1),
                   " ms; N results.yml read, journal commit of N tasks and N events"));
}

// Each size in a child process, smallest first; the run directories are removed at the end.
void RunScale(const std::vector<int>& sizes, size_t script_bytes) {
  const std::string root = MakeTempDir("cycle-scale");
  for (int n : sizes) {
    const std::string dir = absl::StrCat(root, "/n", n);
    std::cout.flush();
    const pid_t child = ::fork();
    if (child < 0) {
      std::cerr << "fork: " << std::strerror(errno) << "\n";
      return;
    }
    if (child == 0) {
      RunScaleSize(n, dir, script_bytes);
      std::cout.flush();
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::cout << "  N=" << n << ": the child process failed (status " << status << ")\n";
    }
  }
  // Deleting this many inodes slows inode creation on ext4 for a few minutes
  // (docs/performance.md, section 2): benchmarks that create files should not run right after.
  // Several threads remove the run directories: one after another the deletions wait on the disk
  // (20-60x slower on the development machine's ext4, which is mounted with `discard`).
  const double w0 = WallSeconds();
  std::vector<std::string> dirs;
  for (int n : sizes) {
    std::error_code ec;
    const std::string runs = absl::StrCat(root, "/n", n, "/runs");
    for (const auto& d : std::filesystem::directory_iterator(runs, ec)) {
      dirs.push_back(d.path().string());
    }
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> removers;
  for (int t = 0; t < 8; ++t) {
    removers.emplace_back([&] {
      for (size_t i = next++; i < dirs.size(); i = next++) {
        std::error_code ec;
        std::filesystem::remove_all(dirs[i], ec);
      }
    });
  }
  for (std::thread& t : removers) t.join();
  std::filesystem::remove_all(root);
  std::cout << "  removed " << dirs.size() << " run directories in " << Fmt(WallSeconds() - w0, 1)
            << " s\n";
}

int Main(int argc, char** argv) {
  logging::SetMinSeverity(logging::Severity::kWarning);
  bool real = false;
  std::vector<int> sizes = {10, 100, 1000};
  std::vector<int> scale_sizes;
  size_t script_bytes = 0;
  auto parse = [](const std::string& list) {
    std::vector<int> out;
    for (absl::string_view s : absl::StrSplit(list, ',')) {
      int v = 0;
      if (absl::SimpleAtoi(s, &v) && v > 0) out.push_back(v);
    }
    return out;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--slurm") {
      real = true;
    } else if (a.rfind("--sizes=", 0) == 0) {
      sizes = parse(a.substr(8));
    } else if (a == "--scale") {
      scale_sizes = {10000, 100000};
    } else if (a.rfind("--scale=", 0) == 0) {
      scale_sizes = parse(a.substr(8));
    } else if (a.rfind("--script-bytes=", 0) == 0 &&
               absl::SimpleAtoi(a.substr(15), &script_bytes)) {
    } else {
      std::cerr << "usage: tracking_cycle_bench [--slurm] [--sizes=10,100,1000] "
                   "[--scale[=10000,100000]] [--script-bytes=N]\n";
      return 2;
    }
  }
  if (!scale_sizes.empty()) {
    // Only the scale figures: the per-size runs above take minutes at these sizes.
    std::sort(scale_sizes.begin(), scale_sizes.end());
    std::cout << "== 1c. the agent at scale: TaskManager + journal over FakeSlurm, "
                 "one process per size\n";
    RunScale(scale_sizes, script_bytes);
    return 0;
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
