#include "tests/slurm/slurm_test_util.h"

#include <cstdlib>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"

namespace evalctl::testing {

void RequireCluster() {
  const char* conf = std::getenv("SLURM_CONF");
  ASSERT_NE(conf, nullptr)
      << "SLURM_CONF is not set: start the local cluster with `deploy/dev/cluster.sh start` and "
         "run `eval \"$(deploy/dev/cluster.sh env)\"` (tests/run.sh does both)";
  CommandOutput ping = Slurm({"scontrol", "ping"});
  ASSERT_EQ(ping.exit_code, 0) << "slurmctld does not answer (SLURM_CONF=" << conf
                               << "): " << ping.out << ping.err;
  ASSERT_NE(ping.out.find("UP"), std::string::npos) << ping.out;
}

CommandOutput Slurm(const std::vector<std::string>& argv) {
  auto r = RunSubprocess({.argv = argv, .timeout = absl::Seconds(30)});
  CommandOutput out;
  if (!r.ok()) {
    ADD_FAILURE() << absl::StrJoin(argv, " ") << ": " << r.status();
    return out;
  }
  out.exit_code = r->timed_out ? -1 : r->exit_code;
  out.out = r->stdout_data;
  out.err = r->stderr_data;
  return out;
}

std::string Sbatch(const std::vector<std::string>& options, const std::string& script) {
  std::vector<std::string> argv = {"sbatch", "--parsable", "--output=/dev/null"};
  argv.insert(argv.end(), options.begin(), options.end());
  auto r = RunSubprocess({.argv = argv, .stdin_data = script, .timeout = absl::Seconds(30)});
  if (!r.ok() || !r->ok()) {
    ADD_FAILURE() << "sbatch " << absl::StrJoin(options, " ") << " failed: "
                  << (r.ok() ? r->Check("sbatch").ToString() : r.status().ToString());
    return "";
  }
  std::string id(absl::StripAsciiWhitespace(r->stdout_data));
  EXPECT_FALSE(id.empty());
  return id;
}

std::vector<std::string> SacctStates(const std::string& job_id, bool duplicates) {
  std::vector<std::string> argv = {"sacct", "-j", job_id, "-X", "-n", "--parsable2",
                                   "--format=JobID,State"};
  if (duplicates) argv.push_back("-D");
  CommandOutput r = Slurm(argv);
  EXPECT_EQ(r.exit_code, 0) << "sacct failed: " << r.err;
  std::vector<std::string> states;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> cols = absl::StrSplit(line, '|');
    if (cols.size() < 2) continue;
    // "CANCELLED by 0" -> "CANCELLED"
    states.push_back(cols[1].substr(0, cols[1].find(' ')));
  }
  return states;
}

std::string ScontrolField(const std::string& job_id, const std::string& field) {
  CommandOutput r = Slurm({"scontrol", "show", "job", "-o", job_id});
  if (r.exit_code != 0) return "";
  for (absl::string_view kv : absl::StrSplit(r.out, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&kv, field + "=")) return std::string(kv);
  }
  return "";
}

JobReaper::~JobReaper() {
  if (jobs_.empty()) return;
  std::vector<std::string> argv = {"scancel"};
  argv.insert(argv.end(), jobs_.begin(), jobs_.end());
  (void)RunSubprocess({.argv = argv, .timeout = absl::Seconds(30)});
}

const std::string& JobReaper::Add(const std::string& job_id) {
  jobs_.push_back(job_id);
  return jobs_.back();
}

}  // namespace evalctl::testing
