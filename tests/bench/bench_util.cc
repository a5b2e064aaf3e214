#include "tests/bench/bench_util.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/subprocess.h"

namespace evalctl::bench {
namespace {

double Seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::string Cell(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

double ThreadCpuSeconds() { return Seconds(CLOCK_THREAD_CPUTIME_ID); }
double ProcessCpuSeconds() { return Seconds(CLOCK_PROCESS_CPUTIME_ID); }
double WallSeconds() { return Seconds(CLOCK_MONOTONIC); }

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  // Nearest rank: the smallest value with at least p% of the values at or below it.
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const size_t index = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return values[std::min(index, values.size() - 1)];
}

std::string Fmt(double value, int decimals) { return absl::StrFormat("%.*f", decimals, value); }

void Row(const std::string& benchmark, const std::string& figure, const std::string& evalctl,
         const std::string& baseline, const std::string& ratio, const std::string& note) {
  std::cout << "ROW\t" << Cell(benchmark) << "\t" << Cell(figure) << "\t" << Cell(evalctl) << "\t"
            << Cell(baseline) << "\t" << Cell(ratio) << "\t" << Cell(note) << std::endl;
}

std::string MakeTempDir(const std::string& name) {
  static std::atomic<int> counter{0};
  std::string dir =
      absl::StrCat("/var/tmp/evalctl-bench-", name, "-", ::getpid(), "-", counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

bool SlurmAvailable() {
  if (std::getenv("SLURM_CONF") == nullptr) {
    std::cout << "SLURM_CONF is not set: run deploy/dev/cluster.sh start and "
                 "eval \"$(deploy/dev/cluster.sh env)\" first\n";
    return false;
  }
  auto r = RunSubprocess({.argv = {"scontrol", "ping"}, .timeout = absl::Seconds(15)});
  if (!r.ok() || !r->ok()) {
    std::cout << "scontrol ping failed: the local Slurm cluster does not answer\n";
    return false;
  }
  return true;
}

double ProcessCpuSecondsOf(int pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  std::getline(f, stat);
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
  double utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtod(fields[11], &utime) ||
      !absl::SimpleAtod(fields[12], &stime)) {
    return -1;
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double RssMiB(int pid, bool peak) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  const std::string key = peak ? "VmHWM:" : "VmRSS:";
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) != 0) continue;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    double kb = 0;
    if (absl::SimpleAtod(digits, &kb)) return kb / 1024.0;
  }
  return -1;
}

}  // namespace evalctl::bench
