#include "agent/slurm/fake_slurm.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/slurm/slurm_parse.h"

namespace evalctl::agent {
namespace {

// The messages Slurm's tools print in the same situations, so that logs and error assertions in
// agent tests read like the real thing.
constexpr char kControllerDown[] =
    "slurm_load_jobs error: Unable to contact slurm controller (connect failure)";
constexpr char kDbdDown[] = "sacct: error: Problem talking to the database: Connection refused";

absl::Status ValidateIds(const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    bool ok = !id.empty() && absl::ascii_isdigit(static_cast<unsigned char>(id[0]));
    for (char c : id) ok = ok && absl::ascii_isdigit(static_cast<unsigned char>(c));
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("not a Slurm job id: \"", id, "\""));
  }
  return absl::OkStatus();
}

std::vector<std::string> Unique(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& s : v) {
    if (seen.insert(s).second) out.push_back(s);
  }
  return out;
}

std::string ReasonForEnd(const std::string& state, int exit_code) {
  if (state == "FAILED") return exit_code != 0 ? "NonZeroExitCode" : "";
  if (state == "TIMEOUT") return "TimeLimit";
  if (state == "NODE_FAIL") return "NodeDown";
  if (state == "OUT_OF_MEMORY") return "OutOfMemory";
  return "";
}

}  // namespace

FakeSlurm::FakeSlurm(Clock* clock, FakeSlurmOptions options)
    : clock_(clock),
      options_(std::move(options)),
      default_plan_(options_.default_plan),
      next_id_(options_.first_job_id),
      accounting_lag_(options_.accounting_lag) {}

// --- the model

FakeSlurm::Job* FakeSlurm::FindLocked(const std::string& job_id) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(job_id, &n)) return nullptr;
  auto it = jobs_.find(n);
  return it == jobs_.end() ? nullptr : &it->second;
}

bool FakeSlurm::PurgedLocked(const Job& job, absl::Time now) const {
  const Run& run = job.runs.back();
  return run.ended() && now >= run.end + options_.completing_for + options_.min_job_age;
}

absl::Time FakeSlurm::DependenciesMetLocked(const Job& job, bool* never) const {
  *never = false;
  absl::Time met = absl::InfinitePast();
  const absl::Time submitted = job.runs.front().submit;
  for (const Dependency& dep : job.dependencies) {
    int64_t n = 0;
    (void)absl::SimpleAtoi(dep.job_id, &n);
    auto it = jobs_.find(n);
    // Slurm: a dependency on a job it does not know (never existed, or purged) is satisfied.
    if (it == jobs_.end() || PurgedLocked(it->second, submitted)) continue;
    const Job& parent = it->second;
    if (dep.type == "after") {
      const Run& first = parent.runs.front();
      if (!first.started()) return absl::InfiniteFuture();
      met = std::max(met, first.start);
      continue;
    }
    const Run& last = parent.runs.back();
    if (!last.ended()) return absl::InfiniteFuture();
    const bool ok = last.end_state == "COMPLETED" && last.exit_code == 0;
    if ((dep.type == "afterok" && !ok) || (dep.type == "afternotok" && ok)) {
      *never = true;
      return absl::InfiniteFuture();
    }
    met = std::max(met, last.end);
  }
  return met;
}

void FakeSlurm::AdvanceLocked(absl::Time now) {
  for (auto& [n, job] : jobs_) {
    Run& run = job.runs.back();
    if (!run.started()) {
      bool never = false;
      const absl::Time deps = DependenciesMetLocked(job, &never);
      if (never) {
        job.reason = "DependencyNeverSatisfied";
        continue;
      }
      if (deps == absl::InfiniteFuture()) {
        job.reason = "Dependency";
        continue;
      }
      const absl::Time start = std::max({run.submit, run.eligible, deps}) + run.plan.pending_for;
      if (start > now) {
        job.reason = now < run.eligible ? "BeginTime" : "";
        continue;
      }
      run.start = start;
      job.reason.clear();
    }
    if (!run.ended() && run.plan.run_for != absl::InfiniteDuration()) {
      const absl::Time end = run.start + run.plan.run_for;
      if (end <= now) {
        run.end = end;
        run.end_state = run.plan.final_state;
        run.exit_code = run.plan.exit_code;
        run.signal = run.plan.signal;
        run.end_reason = ReasonForEnd(run.end_state, run.exit_code);
      }
    }
  }
}

absl::StatusOr<FakeSlurm::Job*> FakeSlurm::ActiveJobLocked(const std::string& job_id) {
  AdvanceLocked(clock_->Now());
  Job* job = FindLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job ", job_id));
  const Run& run = job->runs.back();
  if (!run.started() || run.ended()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is not running (", run.ended() ? run.end_state : "PENDING", ")"));
  }
  return job;
}

void FakeSlurm::EndRunLocked(Job* job, absl::Time now, const std::string& state,
                             const std::string& reason, int exit_code, int signal, bool requeue) {
  Run& run = job->runs.back();
  run.end = now;
  run.end_state = state;
  run.end_reason = reason;
  run.exit_code = exit_code;
  run.signal = signal;
  if (!requeue) return;
  Run next;
  next.submit = now;  // Slurm resets SubmitTime on requeue
  next.eligible = now + options_.requeue_delay;
  next.plan = run.plan;
  job->runs.push_back(std::move(next));
  job->reason = "BeginTime";
}

JobInfo FakeSlurm::QueueViewLocked(const Job& job, absl::Time now) const {
  const Run& run = job.runs.back();
  JobInfo info;
  info.job_id = job.id;
  info.name = job.name;
  info.partition = options_.partition;
  info.submit_time = run.submit;
  if (!run.started() && !run.ended()) {
    info.state = "PENDING";
    info.reason = job.reason;
    // A requeued job first shows COMPLETING while its previous run is cleaned up.
    if (job.runs.size() > 1 && now < job.runs[job.runs.size() - 2].end + options_.completing_for) {
      info.state = "COMPLETING";
      info.reason.clear();
    }
    return info;
  }
  if (run.started()) {
    info.start_time = run.start;
    info.node_list = options_.node_list;
  }
  if (!run.ended()) {
    info.state = "RUNNING";
    info.elapsed_seconds = absl::ToInt64Seconds(now - run.start);
    return info;
  }
  info.end_time = run.end;
  info.elapsed_seconds = run.started() ? absl::ToInt64Seconds(run.end - run.start) : 0;
  info.state = now < run.end + options_.completing_for ? "COMPLETING" : run.end_state;
  info.reason = run.end_reason;
  return info;
}

bool FakeSlurm::AccountingViewLocked(const Job& job, absl::Time now, JobInfo* out) const {
  // The newest record slurmdbd has, and how many older ones.
  int visible = 0;
  const Run* newest = nullptr;
  for (const Run& run : job.runs) {
    if (now < run.submit + accounting_lag_) break;
    ++visible;
    newest = &run;
  }
  if (newest == nullptr) return false;
  const bool current = newest == &job.runs.back();
  JobInfo info;
  info.job_id = job.id;
  info.name = job.name;
  info.partition = options_.partition;
  info.submit_time = newest->submit;
  info.restarts = visible - 1;
  info.exit_code = 0;
  info.signal = 0;
  if (newest->started()) {
    info.start_time = newest->start;
    info.node_list = options_.node_list;
  }
  if (!newest->ended()) {
    info.state = newest->started() ? "RUNNING" : "PENDING";
    info.reason = current ? job.reason : "";
    if (newest->started()) info.elapsed_seconds = absl::ToInt64Seconds(now - newest->start);
  } else {
    info.state = newest->end_state;
    info.reason = newest->end_reason;
    info.end_time = newest->end;
    if (newest->started()) {
      info.elapsed_seconds = absl::ToInt64Seconds(newest->end - newest->start);
    }
    if (newest->end_state != "CANCELLED") {
      info.exit_code =
          options_.accounting_exit_code_modulo_128 ? newest->exit_code % 128 : newest->exit_code;
      info.signal = newest->signal;
    }
  }
  *out = std::move(info);
  return true;
}

JobInfo FakeSlurm::ShowViewLocked(const Job& job, absl::Time now) const {
  JobInfo info = QueueViewLocked(job, now);
  const Run& run = job.runs.back();
  info.restarts = static_cast<int>(job.runs.size()) - 1;
  info.exit_code = run.ended() ? run.exit_code : 0;
  info.signal = run.ended() ? run.signal : 0;
  return info;
}

// --- SlurmClient

absl::StatusOr<std::string> FakeSlurm::Submit(const SubmitRequest& request) {
  absl::MutexLock lock(&mu_);
  ++calls_.submit;
  const absl::Time now = clock_->Now();
  submissions_.push_back({"", request, now});
  if (controller_down_) {
    return absl::UnavailableError(
        "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect "
        "failure)");
  }
  if (!submit_error_.ok()) return submit_error_;
  if (request.script_path.empty()) return absl::InvalidArgumentError("no batch script given");
  if (request.job_name.empty()) return absl::InvalidArgumentError("empty Slurm job name");
  std::vector<Dependency> deps;
  if (!request.dependency.empty()) {
    const absl::Status bad = absl::InvalidArgumentError(
        "sbatch: error: Batch job submission failed: Job dependency problem");
    for (absl::string_view clause : absl::StrSplit(request.dependency, ',')) {
      std::vector<std::string> parts = absl::StrSplit(clause, ':');
      if (parts.size() < 2) return bad;
      const std::string& type = parts[0];
      if (type != "after" && type != "afterany" && type != "afterok" && type != "afternotok") {
        return bad;
      }
      for (size_t i = 1; i < parts.size(); ++i) {
        if (!ValidateIds({parts[i]}).ok()) return bad;
        // Slurm accepts a dependency on a job it does not know and treats it as satisfied; drop
        // it here so that a later job with that id cannot become the parent.
        if (FindLocked(parts[i]) == nullptr) continue;
        deps.push_back({type, parts[i]});
      }
    }
  }
  AdvanceLocked(now);
  const int64_t n = next_id_++;
  Job job;
  job.id = absl::StrCat(n);
  job.name = request.job_name;
  job.dependencies = std::move(deps);
  Run run;
  run.submit = now;
  run.eligible = now;
  auto plan = plans_by_name_.find(request.job_name);
  run.plan = plan != plans_by_name_.end() ? plan->second : default_plan_;
  job.runs.push_back(std::move(run));
  std::string id = job.id;
  jobs_.emplace(n, std::move(job));
  AdvanceLocked(now);  // a job with pending_for 0 starts at once
  submissions_.back().job_id = id;
  if (lose_next_submit_response_) {
    lose_next_submit_response_ = false;
    return absl::UnavailableError(
        "sbatch did not finish within 30s (the job may have been submitted)");
  }
  return id;
}

absl::StatusOr<std::vector<JobInfo>> FakeSlurm::Queue(const std::vector<std::string>& job_ids) {
  absl::MutexLock lock(&mu_);
  ++calls_.queue;
  if (controller_down_) return absl::UnavailableError(absl::StrCat("squeue: ", kControllerDown));
  if (absl::Status s = ValidateIds(job_ids); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  std::vector<JobInfo> out;
  for (const std::string& id : Unique(job_ids)) {
    const Job* job = FindLocked(id);
    if (job == nullptr || PurgedLocked(*job, now)) continue;
    out.push_back(QueueViewLocked(*job, now));
  }
  return out;
}

absl::StatusOr<std::vector<JobInfo>> FakeSlurm::Accounting(
    const std::vector<std::string>& job_ids) {
  absl::MutexLock lock(&mu_);
  ++calls_.accounting;
  if (accounting_down_) return absl::UnavailableError(kDbdDown);
  if (absl::Status s = ValidateIds(job_ids); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  std::vector<JobInfo> out;
  for (const std::string& id : Unique(job_ids)) {
    const Job* job = FindLocked(id);
    JobInfo info;
    if (job != nullptr && AccountingViewLocked(*job, now, &info)) out.push_back(std::move(info));
  }
  return out;
}

absl::StatusOr<std::vector<JobInfo>> FakeSlurm::FindByName(const std::vector<std::string>& names,
                                                           absl::Time since) {
  absl::MutexLock lock(&mu_);
  ++calls_.find_by_name;
  if (controller_down_) return absl::UnavailableError(absl::StrCat("squeue: ", kControllerDown));
  if (accounting_down_) return absl::UnavailableError(kDbdDown);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  const std::set<std::string> wanted(names.begin(), names.end());
  std::vector<JobInfo> queued;
  std::vector<JobInfo> accounted;
  for (const auto& [n, job] : jobs_) {
    if (wanted.count(job.name) == 0) continue;
    if (!PurgedLocked(job, now)) queued.push_back(QueueViewLocked(job, now));
    JobInfo info;
    // sacct -S: jobs that had not ended before `since`.
    if (AccountingViewLocked(job, now, &info) &&
        (info.end_time == absl::InfinitePast() || info.end_time >= since)) {
      accounted.push_back(std::move(info));
    }
  }
  return MergeQueueIntoAccounting(std::move(accounted), queued);
}

absl::StatusOr<JobInfo> FakeSlurm::Show(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ++calls_.show;
  if (controller_down_) return absl::UnavailableError(kControllerDown);
  if (absl::Status s = ValidateIds({job_id}); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  const Job* job = FindLocked(job_id);
  if (job == nullptr || PurgedLocked(*job, now)) {
    return absl::NotFoundError(absl::StrCat("slurmctld no longer knows job ", job_id,
                                            ": slurm_load_jobs error: Invalid job id specified"));
  }
  return ShowViewLocked(*job, now);
}

absl::Status FakeSlurm::Cancel(const std::vector<std::string>& job_ids) {
  absl::MutexLock lock(&mu_);
  ++calls_.cancel;
  if (controller_down_) {
    return absl::UnavailableError(
        "scancel: error: Kill job error: Unable to contact slurm controller (connect failure)");
  }
  if (absl::Status s = ValidateIds(job_ids); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  for (const std::string& id : job_ids) {
    Job* job = FindLocked(id);
    if (job == nullptr || job->runs.back().ended()) continue;
    const bool started = job->runs.back().started();
    EndRunLocked(job, now, "CANCELLED", "", 0, started ? 15 : 0, /*requeue=*/false);
  }
  return absl::OkStatus();
}

// --- hooks

void FakeSlurm::SetDefaultPlan(const FakeJobPlan& plan) {
  absl::MutexLock lock(&mu_);
  default_plan_ = plan;
}

void FakeSlurm::SetPlanForName(const std::string& name, const FakeJobPlan& plan) {
  absl::MutexLock lock(&mu_);
  plans_by_name_[name] = plan;
}

absl::Status FakeSlurm::SetPlan(const std::string& job_id, const FakeJobPlan& plan) {
  absl::MutexLock lock(&mu_);
  AdvanceLocked(clock_->Now());
  Job* job = FindLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job ", job_id));
  Run& run = job->runs.back();
  if (run.ended()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " has ended (", run.end_state, ")"));
  }
  run.plan = plan;
  return absl::OkStatus();
}

absl::Status FakeSlurm::FailJob(const std::string& job_id, int exit_code) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Job*> job = ActiveJobLocked(job_id);
  if (!job.ok()) return job.status();
  const std::string state = exit_code == 0 ? "COMPLETED" : "FAILED";
  EndRunLocked(*job, clock_->Now(), state, ReasonForEnd(state, exit_code), exit_code, 0, false);
  return absl::OkStatus();
}

absl::Status FakeSlurm::TimeOutJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Job*> job = ActiveJobLocked(job_id);
  if (!job.ok()) return job.status();
  EndRunLocked(*job, clock_->Now(), "TIMEOUT", "TimeLimit", 0, 15, false);
  return absl::OkStatus();
}

absl::Status FakeSlurm::PreemptJob(const std::string& job_id, bool requeue) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Job*> job = ActiveJobLocked(job_id);
  if (!job.ok()) return job.status();
  // PreemptMode=CANCEL: scontrol shows the script's exit after SIGTERM (143 for a trapping
  // script); sacct shows 0:0. Use 0:15 as a plain script killed by TERM.
  EndRunLocked(*job, clock_->Now(), "PREEMPTED", "", 0, requeue ? 0 : 15, requeue);
  return absl::OkStatus();
}

absl::Status FakeSlurm::NodeFailJob(const std::string& job_id, bool requeue) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Job*> job = ActiveJobLocked(job_id);
  if (!job.ok()) return job.status();
  EndRunLocked(*job, clock_->Now(), "NODE_FAIL", "NodeDown", 0, 0, requeue);
  return absl::OkStatus();
}

absl::Status FakeSlurm::RequeueJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Job*> job = ActiveJobLocked(job_id);
  if (!job.ok()) return job.status();
  EndRunLocked(*job, clock_->Now(), "REQUEUED", "", 0, 0, /*requeue=*/true);
  return absl::OkStatus();
}

void FakeSlurm::SetControllerDown(bool down) {
  absl::MutexLock lock(&mu_);
  controller_down_ = down;
}

void FakeSlurm::SetAccountingDown(bool down) {
  absl::MutexLock lock(&mu_);
  accounting_down_ = down;
}

void FakeSlurm::SetAccountingLag(absl::Duration lag) {
  absl::MutexLock lock(&mu_);
  accounting_lag_ = lag;
}

void FakeSlurm::SetSubmitError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  submit_error_ = std::move(status);
}

void FakeSlurm::LoseNextSubmitResponse() {
  absl::MutexLock lock(&mu_);
  lose_next_submit_response_ = true;
}

FakeSlurm::CallCounts FakeSlurm::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

void FakeSlurm::ResetCalls() {
  absl::MutexLock lock(&mu_);
  calls_ = CallCounts();
}

std::vector<FakeSlurm::Submission> FakeSlurm::submissions() const {
  absl::MutexLock lock(&mu_);
  return submissions_;
}

std::vector<std::string> FakeSlurm::JobIdsByName(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [n, job] : jobs_) {
    if (job.name == name) ids.push_back(job.id);
  }
  return ids;
}

}  // namespace evalctl::agent
