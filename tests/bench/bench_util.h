// Small helpers shared by the benchmarks in tests/bench: clocks, percentiles, temporary
// directories and the one output format run.sh turns into a table.
//
// Every benchmark prints, besides its own narrative lines, one line per figure:
//   ROW <TAB> benchmark <TAB> figure <TAB> evalctl <TAB> baseline <TAB> ratio <TAB> note
// (empty cells as "-"). Nothing here asserts on time: the figures are printed, not checked.
#pragma once

#include <string>
#include <vector>

namespace evalctl::bench {

// CPU time of the calling thread / of the whole process, in seconds.
double ThreadCpuSeconds();
double ProcessCpuSeconds();
// Monotonic wall clock, in seconds.
double WallSeconds();

// p in [0, 100], nearest-rank on a sorted copy; 0 for an empty vector.
double Percentile(std::vector<double> values, double p);
inline double Median(const std::vector<double>& values) { return Percentile(values, 50); }

// Fixed-point formatting for tables.
std::string Fmt(double value, int decimals = 2);

// One figure for the table (see above).
void Row(const std::string& benchmark, const std::string& figure, const std::string& evalctl,
         const std::string& baseline = "-", const std::string& ratio = "-",
         const std::string& note = "-");

// A fresh directory /var/tmp/evalctl-bench-<name>-<pid>-<n>; the caller removes it.
std::string MakeTempDir(const std::string& name);

// True when SLURM_CONF is set and `scontrol ping` answers; prints why not otherwise.
bool SlurmAvailable();

// CPU time (user + system) another process has used so far, in seconds; -1 when unknown.
double ProcessCpuSecondsOf(int pid);

// Resident set size (VmRSS) and its peak (VmHWM) of a process, in MiB; -1 when unknown.
double RssMiB(int pid, bool peak = false);

}  // namespace evalctl::bench
