// Benchmark 3: how long after a job starts in Slurm its RUNNING event reaches the controller.
//
// The real agent runtime (AgentRuntime: core loop with the default adaptive interval — 1 s after
// a change, doubling up to 30 s while nothing changes —, journal, outbox sender, gRPC stream) over
// the real SlurmCliClient on the local cluster, connected to a stand-in controller in this process
// that records when each event arrives.
//
// The stand-in controller sends N SubmitTask commands whose scripts are held (#SBATCH --hold), so
// that this program decides when each job may start: it releases them one by one (`scontrol
// release`) after random gaps (default uniform 1–8 s). Each job's script first writes
// `date +%s.%N` to <run dir>/started: the moment the job started, on the same clock.
//   latency   = arrival of the RUNNING event at the controller − started
//   detection = the event's own time (when the agent's cycle saw RUNNING) − started
//
// Baseline, side by side on the same jobs: a fixed 1 s poller (`squeue --jobs=<all ids>` every
// second, as `watch -n1 squeue` would) — its detection latency and how many Slurm commands it ran,
// against the agent's squeue + sacct count over the same window.
//
// Then a quiet window of 90 s: the short jobs have ended, two long jobs run and nothing changes;
// the Slurm commands each side spends in it (the agent's interval backs off to 30 s).
//
//   event_latency_bench [--jobs=20] [--gaps=1:8]
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/core/journal.h"
#include "agent/runtime/agent_runtime.h"
#include "agent/runtime/testing/stand_in_controller.h"
#include "agent/slurm/slurm_cli_client.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/subprocess.h"
#include "evalctl/v1/agent_service.grpc.pb.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "tests/bench/bench_util.h"

namespace evalctl::bench {
namespace {

using agent::StandInController;
using google::protobuf::util::TimeUtil;

// Counts what the agent asks of Slurm.
class CountingSlurm : public agent::SlurmClient {
 public:
  explicit CountingSlurm(agent::SlurmClient* inner) : inner_(inner) {}
  absl::StatusOr<std::string> Submit(const agent::SubmitRequest& r) override {
    ++submit;
    return inner_->Submit(r);
  }
  absl::StatusOr<std::vector<agent::JobInfo>> Queue(const std::vector<std::string>& ids) override {
    ++queue;
    return inner_->Queue(ids);
  }
  absl::StatusOr<std::vector<agent::JobInfo>> Accounting(
      const std::vector<std::string>& ids) override {
    ++accounting;
    return inner_->Accounting(ids);
  }
  absl::StatusOr<std::vector<agent::JobInfo>> FindByName(const std::vector<std::string>& names,
                                                         absl::Time since) override {
    ++other;
    return inner_->FindByName(names, since);
  }
  absl::StatusOr<agent::JobInfo> Show(const std::string& id) override {
    ++other;
    return inner_->Show(id);
  }
  absl::Status Cancel(const std::vector<std::string>& ids) override {
    ++other;
    return inner_->Cancel(ids);
  }
  std::atomic<int> submit{0}, queue{0}, accounting{0}, other{0};

 private:
  agent::SlurmClient* inner_;
};

absl::Time FromTs(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixMillis(TimeUtil::TimestampToMilliseconds(ts));
}

int Main(int argc, char** argv) {
  logging::SetMinSeverity(logging::Severity::kWarning);
  int jobs = 20;
  double gap_min = 1, gap_max = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--jobs=", 0) == 0 && absl::SimpleAtoi(a.substr(7), &jobs)) continue;
    if (a.rfind("--gaps=", 0) == 0) {
      std::vector<std::string> parts = absl::StrSplit(a.substr(7), ':');
      if (parts.size() == 2 && absl::SimpleAtod(parts[0], &gap_min) &&
          absl::SimpleAtod(parts[1], &gap_max) && gap_min <= gap_max) {
        continue;
      }
    }
    std::cerr << "usage: event_latency_bench [--jobs=20] [--gaps=MIN:MAX seconds]\n";
    return 2;
  }
  std::cout << "== 3. event latency: job start in Slurm → RUNNING event at the controller ("
            << jobs << " jobs, released " << gap_min << "–" << gap_max << " s apart)\n";
  if (!SlurmAvailable()) return 1;

  const std::string root = MakeTempDir("latency");
  StandInController controller;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&controller);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "cannot start the stand-in controller\n";
    return 1;
  }

  RealClock clock;
  auto journal = agent::Journal::Open(root + "/agent", &clock);
  if (!journal.ok()) {
    std::cerr << journal.status() << "\n";
    return 1;
  }
  agent::SlurmCliClient cli;
  CountingSlurm slurm(&cli);
  agent::AgentOptions options;  // default intervals: min 1 s, max 30 s
  options.controller = absl::StrCat("127.0.0.1:", port);
  options.cluster = "bench";
  options.unix_user = "bench";
  std::cout << "  agent intervals: min " << absl::FormatDuration(options.min_interval) << ", max "
            << absl::FormatDuration(options.max_interval) << "\n";
  agent::AgentRuntime runtime(options, &slurm, journal->get(), &clock);
  std::atomic<bool> stop{false};
  std::thread agent_thread([&] {
    absl::Status s = runtime.Run(&stop);
    if (!s.ok()) std::cerr << "agent: " << s << "\n";
  });
  auto shutdown = [&] {
    stop = true;
    agent_thread.join();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  };
  if (!controller.WaitConnected(absl::Seconds(30))) {
    std::cerr << "the agent did not connect\n";
    shutdown();
    return 1;
  }

  // N held jobs, submitted through the controller's command path, and 2 long ones for the quiet
  // window.
  constexpr int kLong = 2;
  std::vector<std::string> task_ids;
  for (int i = 0; i < jobs + kLong; ++i) {
    const bool long_job = i >= jobs;
    v1::Command cmd;
    cmd.set_command_id(static_cast<uint64_t>(i + 1));
    v1::SubmitTask* t = cmd.mutable_submit_task();
    t->set_task_id(absl::StrCat("aaaabbbbccccdddd.", i));
    t->set_invocation_id("aaaabbbbccccdddd");
    t->set_name(absl::StrCat("latency", i));
    const std::string run_dir = absl::StrCat(root, "/runs/t", i);
    t->mutable_job()->set_run_dir(run_dir);
    t->mutable_job()->set_job_name_prefix(absl::StrCat("bench.latency.t", i));
    t->mutable_job()->set_script(absl::StrCat(
        "#!/bin/bash\n#SBATCH --hold\n#SBATCH --partition=debug\n#SBATCH --time=",
        long_job ? 12 : 2, "\n#SBATCH --output=/dev/null\ndate +%s.%N > ", run_dir,
        "/started\nsleep ", long_job ? 600 : 30, "\n"));
    task_ids.push_back(t->task_id());
    controller.Send({cmd});
  }

  // Job ids from the SUBMITTED events.
  std::map<std::string, std::string> job_of;  // task id → job id
  for (absl::Time until = absl::Now() + absl::Seconds(120);
       absl::Now() < until && static_cast<int>(job_of.size()) < jobs + kLong;) {
    absl::SleepFor(absl::Milliseconds(100));
    for (const auto& a : controller.arrivals()) {
      if (a.event.kind() == v1::TaskEvent::KIND_SUBMITTED) {
        job_of[a.event.task_id()] = a.event.attempt().slurm_job_id();
      }
    }
  }
  std::vector<std::string> all_ids;
  for (const std::string& t : task_ids) {
    if (job_of.count(t)) all_ids.push_back(job_of[t]);
  }
  if (static_cast<int>(all_ids.size()) < jobs + kLong) {
    std::cerr << "only " << all_ids.size() << " of " << jobs + kLong << " jobs were submitted\n";
    (void)cli.Cancel(all_ids);
    shutdown();
    return 1;
  }
  const std::vector<std::string> ids(all_ids.begin(), all_ids.begin() + jobs);
  auto arrived = [&](v1::TaskState state, int first, int count) {
    std::set<std::string> wanted(task_ids.begin() + first, task_ids.begin() + first + count);
    std::set<std::string> seen;
    for (const auto& a : controller.arrivals()) {
      if (a.event.state() == state && wanted.count(a.event.task_id())) seen.insert(a.event.task_id());
    }
    return static_cast<int>(seen.size()) == count;
  };
  // The long jobs run from now on.
  for (int i = jobs; i < jobs + kLong; ++i) {
    (void)RunSubprocess(
        {.argv = {"scontrol", "release", all_ids[i]}, .timeout = absl::Seconds(30)});
  }
  for (absl::Time until = absl::Now() + absl::Seconds(60);
       absl::Now() < until && !arrived(v1::TASK_STATE_RUNNING, jobs, kLong);) {
    absl::SleepFor(absl::Milliseconds(200));
  }

  // Baseline: squeue for all ids every second.
  std::atomic<bool> poll_stop{false};
  std::atomic<int> poll_calls{0};
  absl::Mutex poll_mu;
  std::map<std::string, absl::Time> poll_seen;  // job id → when the poller first saw RUNNING
  std::thread poller([&] {
    const std::string list = absl::StrJoin(all_ids, ",");
    while (!poll_stop) {
      const absl::Time next = absl::Now() + absl::Seconds(1);
      auto r = RunSubprocess({.argv = {"squeue", "-h", "-t", "all", "--jobs=" + list, "-o",
                                       "%i %T"},
                              .timeout = absl::Seconds(30)});
      ++poll_calls;
      const absl::Time now = absl::Now();
      if (r.ok() && r->ok()) {
        absl::MutexLock lock(&poll_mu);
        for (absl::string_view line : absl::StrSplit(r->stdout_data, '\n', absl::SkipEmpty())) {
          std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
          if (f.size() == 2 && f[1] == "RUNNING" && !poll_seen.count(f[0])) poll_seen[f[0]] = now;
        }
      }
      absl::SleepFor(next - absl::Now());
    }
  });

  // Release the jobs one by one after random gaps.
  const int queue0 = slurm.queue, acct0 = slurm.accounting;
  std::mt19937 rng(12345);
  std::uniform_real_distribution<double> gap(gap_min, gap_max);
  const absl::Time window_start = absl::Now();
  for (const std::string& id : ids) {
    absl::SleepFor(absl::Seconds(gap(rng)));
    auto r = RunSubprocess({.argv = {"scontrol", "release", id}, .timeout = absl::Seconds(30)});
    if (!r.ok() || !r->ok()) std::cout << "  scontrol release " << id << " failed\n";
  }
  // Wait for every RUNNING event and for the poller.
  std::map<std::string, StandInController::Arrival> running;  // task id → first RUNNING event
  for (absl::Time until = absl::Now() + absl::Seconds(90); absl::Now() < until;) {
    running.clear();
    for (const auto& a : controller.arrivals()) {
      if (a.event.state() == v1::TASK_STATE_RUNNING && !running.count(a.event.task_id())) {
        running.emplace(a.event.task_id(), a);
      }
    }
    size_t polled = 0;
    {
      absl::MutexLock lock(&poll_mu);
      for (const std::string& id : ids) polled += poll_seen.count(id);
    }
    if (static_cast<int>(running.size()) == jobs && static_cast<int>(polled) == jobs) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  const double window_s = absl::ToDoubleSeconds(absl::Now() - window_start);
  const int agent_queries = (slurm.queue - queue0) + (slurm.accounting - acct0);
  const int poll_queries = poll_calls.load();

  // Quiet window: the short jobs have ended (and the agent has reported it); only the two long
  // jobs run and nothing changes. How many Slurm commands does each side spend?
  for (absl::Time until = absl::Now() + absl::Seconds(120);
       absl::Now() < until && !arrived(v1::TASK_STATE_FAILED, 0, jobs) &&
       !arrived(v1::TASK_STATE_SUCCEEDED, 0, jobs);) {
    absl::SleepFor(absl::Milliseconds(500));
  }
  absl::SleepFor(absl::Seconds(2));
  constexpr int kQuietSeconds = 90;
  const int quiet_q0 = slurm.queue + slurm.accounting;
  const int quiet_p0 = poll_calls.load();
  absl::SleepFor(absl::Seconds(kQuietSeconds));
  const int quiet_agent = slurm.queue + slurm.accounting - quiet_q0;
  const int quiet_poller = poll_calls.load() - quiet_p0;
  poll_stop = true;
  poller.join();
  if (absl::Status s = cli.Cancel(all_ids); !s.ok()) std::cout << "  scancel: " << s << "\n";

  std::vector<double> latency, detection, delivery, baseline;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::ifstream f(absl::StrCat(root, "/runs/t", i, "/started"));
    std::string text;
    std::getline(f, text);
    double started_s = 0;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), &started_s)) {
      std::cout << "  job " << ids[i] << ": no start time written\n";
      continue;
    }
    const absl::Time started = absl::FromUnixNanos(static_cast<int64_t>(started_s * 1e9));
    if (auto it = running.find(task_ids[i]); it != running.end()) {
      latency.push_back(absl::ToDoubleSeconds(it->second.at - started));
      detection.push_back(absl::ToDoubleSeconds(FromTs(it->second.event.time()) - started));
      delivery.push_back(absl::ToDoubleSeconds(it->second.at - FromTs(it->second.event.time())));
    }
    absl::MutexLock lock(&poll_mu);
    if (auto it = poll_seen.find(ids[i]); it != poll_seen.end()) {
      baseline.push_back(absl::ToDoubleSeconds(it->second - started));
    }
  }
  shutdown();
  std::filesystem::remove_all(root);

  std::cout << "  agent (default adaptive interval): " << latency.size() << " RUNNING events; "
            << "latency median " << Fmt(Median(latency), 2) << " s, p95 "
            << Fmt(Percentile(latency, 95), 2) << " s, max " << Fmt(Percentile(latency, 100), 2)
            << " s (detection median " << Fmt(Median(detection), 2) << " s, delivery to the "
            << "controller median " << Fmt(Median(delivery) * 1e3, 1) << " ms)\n";
  std::cout << "  fixed 1 s squeue poller: median " << Fmt(Median(baseline), 2) << " s, p95 "
            << Fmt(Percentile(baseline, 95), 2) << " s\n";
  std::cout << "  Slurm commands over the " << Fmt(window_s, 0) << " s window: agent "
            << agent_queries << " (squeue + sacct), poller " << poll_queries << "\n";
  std::cout << "  Slurm commands in a quiet " << kQuietSeconds << " s (2 jobs running, nothing "
            << "changes): agent " << quiet_agent << ", poller " << quiet_poller << "\n";
  const std::string n = absl::StrCat(latency.size(), " jobs, gaps ", Fmt(gap_min, 0), "-",
                                     Fmt(gap_max, 0), " s");
  Row("3 event latency", absl::StrCat("start → RUNNING at controller, median s (", n, ")"),
      Fmt(Median(latency), 2), Fmt(Median(baseline), 2),
      Fmt(Median(latency) / std::max(1e-9, Median(baseline)), 2) + "x",
      "baseline: fixed 1 s squeue poller (detection only)");
  Row("3 event latency", absl::StrCat("start → RUNNING at controller, p95 s (", n, ")"),
      Fmt(Percentile(latency, 95), 2), Fmt(Percentile(baseline, 95), 2),
      Fmt(Percentile(latency, 95) / std::max(1e-9, Percentile(baseline, 95)), 2) + "x",
      absl::StrCat("agent detection median ", Fmt(Median(detection), 2),
                   " s; delivery median ", Fmt(Median(delivery) * 1e3, 1), " ms"));
  Row("3 event latency", "Slurm commands while jobs start", std::to_string(agent_queries),
      std::to_string(poll_queries),
      Fmt(static_cast<double>(agent_queries) / std::max(1, poll_queries), 2) + "x",
      absl::StrCat("over the ", Fmt(window_s, 0), " s of releases; agent: squeue + sacct per cycle"));
  Row("3 event latency", absl::StrCat("Slurm commands in a quiet ", kQuietSeconds, " s"),
      std::to_string(quiet_agent), std::to_string(quiet_poller),
      Fmt(static_cast<double>(quiet_agent) / std::max(1, quiet_poller), 2) + "x",
      "2 jobs running, nothing changes: the agent's interval backs off to 30 s");
  return 0;
}

}  // namespace
}  // namespace evalctl::bench

int main(int argc, char** argv) { return evalctl::bench::Main(argc, argv); }
