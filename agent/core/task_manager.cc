#include "agent/core/task_manager.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "agent/core/run_files.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/digest.h"
#include "common/files.h"
#include "common/run_layout.h"
#include "common/status_macros.h"
#include "common/task_vocabulary.h"

namespace evalctl::agent {
namespace {

enum class Kind { kQueued, kRunning, kSucceeded, kFailed, kCancelled, kResumable, kUnknown };

Kind Classify(const std::string& state) {
  static const std::set<std::string> kQueuedStates = {
      "PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"};
  static const std::set<std::string> kRunningStates = {"RUNNING",  "COMPLETING", "SUSPENDED",
                                                       "STAGE_OUT", "SIGNALING", "RESIZING"};
  if (kQueuedStates.count(state)) return Kind::kQueued;
  if (kRunningStates.count(state)) return Kind::kRunning;
  if (state == "COMPLETED") return Kind::kSucceeded;
  if (state == "FAILED" || state == "OUT_OF_MEMORY" || state == "DEADLINE" ||
      state == "SPECIAL_EXIT") {
    return Kind::kFailed;
  }
  if (state == "CANCELLED" || state == "REVOKED") return Kind::kCancelled;
  if (state == "TIMEOUT" || state == "PREEMPTED" || state == "NODE_FAIL" || state == "BOOT_FAIL") {
    return Kind::kResumable;
  }
  return Kind::kUnknown;
}

v1::ResumeReason ReasonOf(const std::string& state) {
  if (state == "TIMEOUT") return v1::RESUME_REASON_TIMEOUT;
  if (state == "PREEMPTED") return v1::RESUME_REASON_PREEMPTED;
  if (state == "NODE_FAIL") return v1::RESUME_REASON_NODE_FAIL;
  if (state == "BOOT_FAIL") return v1::RESUME_REASON_BOOT_FAIL;
  return v1::RESUME_REASON_UNSPECIFIED;
}


bool Known(absl::Time t) { return t != absl::InfinitePast() && t != absl::InfiniteFuture(); }

// What the job's exit code means (common/run_layout.h).
std::string ExplainExit(int code) {
  const char* known = layout::ExplainExitCode(code);
  return known != nullptr ? known : absl::StrCat("the evaluation exited with status ", code);
}

std::string FormatSeconds(int64_t s) {
  return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content, int mode) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n <= 0) {
      ::close(fd);
      return absl::ResourceExhaustedError(absl::StrCat("writing ", tmp, ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  ::fchmod(fd, static_cast<mode_t>(mode));
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot rename ", tmp, " to ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

TaskManager::TaskManager(TaskManagerOptions options, SlurmClient* slurm, Journal* journal,
                         Clock* clock)
    : options_(options), slurm_(slurm), journal_(journal), clock_(clock) {}

bool TaskManager::IsActive(const v1::Task& t) const {
  switch (t.state()) {
    case v1::TASK_STATE_PENDING:
    case v1::TASK_STATE_QUEUED:
    case v1::TASK_STATE_RUNNING:
    case v1::TASK_STATE_RESUMING:
      return true;
    default:
      return false;
  }
}

v1::Attempt* TaskManager::Current(v1::Task& t) {
  return t.attempts_size() == 0 ? nullptr : t.mutable_attempts(t.attempts_size() - 1);
}

std::string TaskManager::JobName(const Entry& e, const v1::Attempt& a) const {
  // Safe whatever the controller sent: one bad name must not break the lookups of every task.
  return layout::SafeJobName(
      absl::StrCat(e.journaled.submit.job().job_name_prefix(), ".", a.attempt_id()));
}

std::vector<std::pair<std::string, std::string>> TaskManager::SbatchEnv(const Entry& e) const {
  std::vector<std::pair<std::string, std::string>> env;
  for (const v1::EnvVar& v : e.journaled.submit.job().env()) {
    if (v.secret()) {
      auto it = e.secrets.find(v.name());
      env.emplace_back(v.name(), it == e.secrets.end() ? "" : it->second);
    } else {
      env.emplace_back(v.name(), v.value());
    }
  }
  return env;
}

v1::AgentEvent TaskManager::MakeEvent(const Entry& e, v1::TaskEvent::Kind kind) const {
  const v1::Task& t = e.journaled.status;
  v1::AgentEvent out;
  v1::TaskEvent* ev = out.mutable_task();
  ev->set_kind(kind);
  ev->set_task_id(t.id());
  *ev->mutable_time() = ToTimestamp(clock_->Now());
  ev->set_state(t.state());
  ev->set_phase(t.phase());
  ev->set_reason(t.reason());
  *ev->mutable_progress() = t.progress();
  if (t.attempts_size() > 0) *ev->mutable_attempt() = t.attempts(t.attempts_size() - 1);
  ev->set_elapsed_seconds(t.elapsed_seconds());
  if (kind == v1::TaskEvent::KIND_FINISHED && t.has_results()) *ev->mutable_results() = t.results();
  return out;
}

absl::Status TaskManager::Persist(const std::vector<const Entry*>& entries,
                                  const std::vector<v1::AgentEvent>& events) {
  std::vector<JournaledTask> tasks;
  tasks.reserve(entries.size());
  for (const Entry* e : entries) {
    JournaledTask copy = e->journaled;
    *copy.status.mutable_updated_time() = ToTimestamp(clock_->Now());
    tasks.push_back(std::move(copy));
  }
  auto committed = journal_->Commit(tasks, events);
  if (!committed.ok()) {
    LOG(ERROR) << "journal commit failed: " << committed.status();
    return committed.status();
  }
  if (options_.on_commit && !committed->empty()) options_.on_commit(*committed);
  return absl::OkStatus();
}

absl::Status TaskManager::WriteScript(const Entry& e) {
  const std::string& run_dir = e.journaled.submit.job().run_dir();
  std::error_code ec;
  for (const char* sub : {"logs", "artifacts", ".evalctl"}) {
    std::filesystem::create_directories(absl::StrCat(run_dir, "/", sub), ec);
    if (ec) {
      return absl::PermissionDeniedError(absl::StrCat("cannot create ", run_dir, "/", sub, ": ",
                                                      ec.message()));
    }
  }
  return WriteFileAtomically(absl::StrCat(run_dir, "/", layout::kScriptFile),
                             e.journaled.submit.job().script(), 0755);
}

absl::Status TaskManager::CheckScript(const Entry& e) const {
  const v1::RenderedJob& job = e.journaled.submit.job();
  if (job.script_sha256().empty()) return absl::OkStatus();  // journaled before digests
  const std::string path = absl::StrCat(job.run_dir(), "/", layout::kScriptFile);
  absl::StatusOr<std::string> text = ReadFile(path, "job script");
  if (!text.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the job script ", path, " cannot be read: ", text.status().message()));
  }
  if (Sha256Hex(*text) != job.script_sha256()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the job script ", path,
        " changed on disk after the agent wrote it; an attempt is only ever submitted from the "
        "script evalctl rendered, so this one is not (submit the invocation again)"));
  }
  return absl::OkStatus();
}

absl::Status TaskManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<JournaledTask> loaded, journal_->LoadTasks());
  for (JournaledTask& t : loaded) {
    Entry e;
    e.journaled = std::move(t);
    if (IsActive(e.journaled.status)) {
      auto secrets = journal_->GetSecrets(e.journaled.status.id());
      if (secrets.ok()) e.secrets = *std::move(secrets);
    }
    std::string id = e.journaled.status.id();
    tasks_[id] = std::move(e);
  }
  LOG(INFO) << "journal: " << tasks_.size() << " tasks, " << active_jobs() << " active jobs, "
            << journal_->outbox_depth() << " events not yet acknowledged";
  // Unsubmitted attempts (a crash between journaling and sbatch, or sbatch unreachable) are
  // reconciled by the first cycle: found by name and adopted, or submitted.
  return absl::OkStatus();
}

std::vector<absl::Status> TaskManager::AcceptBatch(const std::vector<v1::SubmitTask>& batch) {
  std::vector<absl::Status> results(batch.size());
  // A pipeline: this thread prepares tasks (run directory, script, secrets) and journals their
  // first attempts in groups of up to kJournalGroup, one transaction per group; up to
  // submit_parallelism threads run sbatch for each task as soon as its group is journaled (never
  // before: exactly-once submission). So preparing the next tasks overlaps with sbatch.
  constexpr size_t kJournalGroup = 16;
  std::vector<absl::StatusOr<std::string>> ids(batch.size(), absl::UnknownError("not run"));
  // Journaled tasks (batch index, entry) in hand-off order. This thread never touches an entry
  // once handed over, and std::map insertions (the next tasks) do not move it.
  struct HandOff {
    absl::Mutex mu;
    std::vector<std::pair<size_t, Entry*>> items ABSL_GUARDED_BY(mu);
    size_t next ABSL_GUARDED_BY(mu) = 0;
    bool closed ABSL_GUARDED_BY(mu) = false;
    bool Ready() const ABSL_SHARED_LOCKS_REQUIRED(mu) { return next < items.size() || closed; }
  } queue;
  auto submit = [&](size_t i, const Entry& e) {
    const v1::Attempt& a = e.journaled.status.attempts(e.journaled.status.attempts_size() - 1);
    SubmitRequest req{absl::StrCat(e.journaled.submit.job().run_dir(), "/", layout::kScriptFile),
                      JobName(e, a), e.journaled.submit.job().run_dir(), "", SbatchEnv(e)};
    ids[i] = slurm_->Submit(req);
  };
  auto worker = [&] {
    while (true) {
      std::pair<size_t, Entry*> item;
      {
        absl::MutexLock lock(&queue.mu);
        queue.mu.Await(absl::Condition(&queue, &HandOff::Ready));
        if (queue.next >= queue.items.size()) return;  // closed and drained
        item = queue.items[queue.next++];
      }
      submit(item.first, *item.second);
    }
  };
  const int threads = std::min<int>(options_.submit_parallelism, static_cast<int>(batch.size()));
  std::vector<std::thread> pool;
  if (threads > 1) {
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  }

  std::vector<std::pair<size_t, Entry*>> group;
  std::vector<v1::AgentEvent> group_events;
  auto journal_group = [&] {
    if (group.empty()) return;
    std::vector<const Entry*> entries;
    for (const auto& [i, e] : group) {
      AddAttempt(*e, v1::RESUME_REASON_UNSPECIFIED);
      entries.push_back(e);
    }
    // Journaled before sbatch: after a crash, each job is found by its attempt's name.
    absl::Status s = Persist(entries, group_events);
    if (!s.ok()) {
      for (const auto& [i, e] : group) results[i] = s;
    } else {
      absl::MutexLock lock(&queue.mu);
      queue.items.insert(queue.items.end(), group.begin(), group.end());
    }
    group.clear();
    group_events.clear();
  };
  for (size_t i = 0; i < batch.size(); ++i) {
    const v1::SubmitTask& task = batch[i];
    if (tasks_.count(task.task_id())) continue;  // already taken: idempotent
    if (task.task_id().empty() || task.job().run_dir().empty() || task.job().script().empty()) {
      results[i] = absl::InvalidArgumentError(absl::StrCat(
          "task ", task.task_id(), ": a submission needs a task id, a run directory and a script"));
      continue;
    }
    Entry e;
    e.journaled.submit = task;
    std::map<std::string, std::string> secrets;
    for (v1::EnvVar& v : *e.journaled.submit.mutable_job()->mutable_env()) {
      if (!v.secret()) continue;
      secrets[v.name()] = v.value();
      v.clear_value();
    }
    e.secrets = secrets;
    v1::Task& st = e.journaled.status;
    st.set_id(task.task_id());
    st.set_invocation_id(task.invocation_id());
    st.set_name(task.name());
    st.set_run_dir(task.job().run_dir());
    st.set_state(v1::TASK_STATE_PENDING);
    st.set_budget_first_attempt(1);
    *st.mutable_resume_policy() = task.resume_policy();
    *st.mutable_created_time() = ToTimestamp(clock_->Now());
    if (absl::Status s = WriteScript(e); !s.ok()) {
      results[i] = s;
      continue;
    }
    // Every sbatch (first, resume, reconcile) runs the script in the run directory; neither
    // memory nor each journal write of the task needs another copy (~12 KiB a task). Swapped,
    // not cleared: a cleared protobuf string keeps its buffer. Its digest stays, so that no
    // attempt is submitted from a script someone changed in the run directory meanwhile.
    e.journaled.submit.mutable_job()->set_script_sha256(
        Sha256Hex(e.journaled.submit.job().script()));
    std::string().swap(*e.journaled.submit.mutable_job()->mutable_script());
    if (!secrets.empty()) {
      if (absl::Status s = journal_->PutSecrets(task.task_id(), secrets); !s.ok()) {
        results[i] = s;
        continue;
      }
    }
    group_events.push_back(MakeEvent(e, v1::TaskEvent::KIND_ACCEPTED));
    Entry& stored = tasks_[task.task_id()] = std::move(e);
    group.emplace_back(i, &stored);
    if (group.size() >= kJournalGroup) journal_group();
  }
  journal_group();
  std::vector<std::pair<size_t, Entry*>> handed;
  {
    absl::MutexLock lock(&queue.mu);
    queue.closed = true;
    handed = queue.items;
  }
  if (pool.empty()) {
    for (const auto& [i, e] : handed) submit(i, *e);
  }
  for (std::thread& t : pool) t.join();

  std::vector<const Entry*> changed;
  std::vector<v1::AgentEvent> events;
  for (const auto& [i, entry] : handed) {
    Entry& e = *entry;
    v1::Attempt* a = Current(e.journaled.status);
    if (ids[i].ok()) {
      a->set_slurm_job_id(*ids[i]);
      a->set_slurm_state("PENDING");
      *a->mutable_submit_time() = ToTimestamp(clock_->Now());
      e.journaled.status.set_state(v1::TASK_STATE_QUEUED);
      e.journaled.status.set_reason("");
      events.push_back(MakeEvent(e, v1::TaskEvent::KIND_SUBMITTED));
      LOG(INFO) << "submitted task=" << e.journaled.status.id() << " attempt=" << a->number()
                << " job=" << *ids[i];
    } else if (absl::IsUnavailable(ids[i].status()) ||
               absl::IsDeadlineExceeded(ids[i].status())) {
      // Maybe submitted, maybe not: the next cycle looks the job up by name before retrying.
      e.journaled.status.set_reason(
          absl::StrCat("waiting for Slurm to accept the job: ", ids[i].status().message()));
      LOG(WARNING) << "sbatch unavailable task=" << e.journaled.status.id() << ": "
                   << ids[i].status();
    } else {
      std::vector<v1::AgentEvent> finish_events;
      Finish(e, v1::TASK_STATE_FAILED,
             absl::StrCat("Slurm rejected the job: ", ids[i].status().message()), finish_events);
      events.insert(events.end(), finish_events.begin(), finish_events.end());
    }
    changed.push_back(&e);
  }
  if (!changed.empty()) {
    absl::Status s = Persist(changed, events);
    for (const auto& [i, e] : handed) {
      if (results[i].ok()) results[i] = s;
    }
  }
  return results;
}

absl::Status TaskManager::Accept(const v1::SubmitTask& task) { return AcceptBatch({task})[0]; }

void TaskManager::AddAttempt(Entry& e, v1::ResumeReason reason) {
  v1::Task& t = e.journaled.status;
  v1::Attempt* a = t.add_attempts();
  a->set_number(t.attempts_size());
  a->set_attempt_id(AttemptId(t.id(), a->number()));
  a->set_resume_reason(reason);
  t.set_phase(v1::PHASE_UNSPECIFIED);
  if (reason != v1::RESUME_REASON_UNSPECIFIED) t.set_state(v1::TASK_STATE_RESUMING);
}

absl::Status TaskManager::StartAttempt(Entry& e, v1::ResumeReason reason,
                                       const std::vector<v1::AgentEvent>& events) {
  AddAttempt(e, reason);
  // Journaled before sbatch: after a crash, the job is found by this attempt's name.
  return Persist({&e}, events);
}

absl::Status TaskManager::SubmitCurrent(Entry& e, const std::string& dependency) {
  v1::Task& t = e.journaled.status;
  v1::Attempt* a = Current(t);
  std::vector<v1::AgentEvent> events;
  if (t.cancel_requested()) {
    Finish(e, v1::TASK_STATE_CANCELLED, "cancelled", events);
    return Persist({&e}, events);
  }
  if (absl::Status script = CheckScript(e); !script.ok()) {
    Finish(e, v1::TASK_STATE_FAILED, std::string(script.message()), events);
    return Persist({&e}, events);
  }
  SubmitRequest req{absl::StrCat(t.run_dir(), "/", layout::kScriptFile), JobName(e, *a),
                    t.run_dir(), dependency, SbatchEnv(e)};
  auto id = slurm_->Submit(req);
  if (!id.ok()) {
    if (absl::IsUnavailable(id.status()) || absl::IsDeadlineExceeded(id.status())) {
      t.set_reason(absl::StrCat("waiting for Slurm to accept the job: ", id.status().message()));
      return Persist({&e}, events);
    }
    Finish(e, v1::TASK_STATE_FAILED,
           absl::StrCat("Slurm rejected attempt ", a->number(), ": ", id.status().message()),
           events);
    return Persist({&e}, events);
  }
  a->set_slurm_job_id(*id);
  a->set_slurm_state("PENDING");
  *a->mutable_submit_time() = ToTimestamp(clock_->Now());
  t.set_state(v1::TASK_STATE_QUEUED);
  if (a->resume_reason() == v1::RESUME_REASON_UNSPECIFIED) t.set_reason("");
  events.push_back(MakeEvent(e, a->number() > 1 ? v1::TaskEvent::KIND_RESUMED
                                                : v1::TaskEvent::KIND_SUBMITTED));
  LOG(INFO) << "submitted task=" << t.id() << " attempt=" << a->number() << " job=" << *id
            << (dependency.empty() ? "" : " dependency=" + dependency);
  return Persist({&e}, events);
}

void TaskManager::Finish(Entry& e, v1::TaskState state, const std::string& reason,
                         std::vector<v1::AgentEvent>& events) {
  v1::Task& t = e.journaled.status;
  t.set_state(state);
  t.set_reason(reason);
  if (state == v1::TASK_STATE_SUCCEEDED) t.set_phase(v1::PHASE_FINISHED);
  events.push_back(MakeEvent(e, v1::TaskEvent::KIND_FINISHED));
  LOG(INFO) << "finished task=" << t.id() << " state=" << v1::TaskState_Name(state)
            << (reason.empty() ? "" : " reason=" + reason);
}

void TaskManager::ResumeOrExhaust(Entry& e, v1::ResumeReason reason, const std::string& why,
                                  std::vector<v1::AgentEvent>& events) {
  v1::Task& t = e.journaled.status;
  const v1::ResumePolicy& policy = t.resume_policy();
  int used_attempts = 0;
  int64_t used_seconds = 0;
  for (const v1::Attempt& a : t.attempts()) {
    if (a.number() < t.budget_first_attempt()) continue;
    ++used_attempts;
    used_seconds += a.elapsed_seconds();
  }
  if (policy.max_walltime_seconds() > 0 && used_seconds >= policy.max_walltime_seconds()) {
    Finish(e, v1::TASK_STATE_BUDGET_EXHAUSTED,
           absl::StrCat(why, "; not resumed: max_walltime ",
                        FormatSeconds(policy.max_walltime_seconds()), " used up (",
                        FormatSeconds(used_seconds), " over ", used_attempts, " attempts)"),
           events);
    return;
  }
  if (policy.max_attempts() > 0 && used_attempts >= policy.max_attempts()) {
    Finish(e, v1::TASK_STATE_BUDGET_EXHAUSTED,
           absl::StrCat(why, "; not resumed: max_attempts ", policy.max_attempts(), " reached"),
           events);
    return;
  }
  const std::string previous = Current(t)->slurm_job_id();
  t.set_reason(absl::StrCat(why, "; resuming as attempt ", t.attempts_size() + 1));
  // The ending and the new attempt are journaled before sbatch runs (exactly-once submission).
  std::vector<v1::AgentEvent> ending = {MakeEvent(e, v1::TaskEvent::KIND_STATE_CHANGED)};
  if (!StartAttempt(e, reason, ending).ok()) return;
  // afterany: the next attempt cannot start before the previous one has left the run directory.
  (void)SubmitCurrent(e, previous.empty() ? "" : absl::StrCat("afterany:", previous));
}

bool TaskManager::Apply(Entry& e, const JobInfo& info, std::vector<v1::AgentEvent>& events) {
  v1::Task& t = e.journaled.status;
  v1::Attempt* a = Current(t);
  // What a change is measured against. Not a copy of the whole task: this runs for every tracked
  // job in every cycle.
  const v1::TaskState before_state = t.state();
  const v1::Phase before_phase = t.phase();
  const auto before_done = t.progress().done();
  const std::string before_slurm_state = a->slurm_state();
  const int before_attempts = t.attempts_size();

  // Slurm requeued the job itself (same id, more restarts): the old run is an attempt of its own.
  if (info.restarts > a->slurm_restarts()) {
    a->set_slurm_state(a->slurm_state() == "RUNNING" ? "REQUEUED" : a->slurm_state());
    *a->mutable_end_time() = ToTimestamp(clock_->Now());
    v1::Attempt next;
    next.set_number(t.attempts_size() + 1);
    next.set_attempt_id(a->attempt_id());
    next.set_slurm_job_id(a->slurm_job_id());
    next.set_resume_reason(v1::RESUME_REASON_SLURM_REQUEUE);
    next.set_slurm_restarts(info.restarts);
    *t.add_attempts() = next;
    a = Current(t);
    t.set_reason(absl::StrCat("Slurm requeued job ", a->slurm_job_id(), " (restart ",
                              info.restarts, ")"));
    events.push_back(MakeEvent(e, v1::TaskEvent::KIND_RESUMED));
  }

  a->set_slurm_state(info.state);
  a->set_slurm_reason(info.reason);
  if (Known(info.start_time)) *a->mutable_start_time() = ToTimestamp(info.start_time);
  if (Known(info.end_time)) *a->mutable_end_time() = ToTimestamp(info.end_time);
  if (!info.node_list.empty() && info.node_list != "None assigned") a->set_node_list(info.node_list);
  int64_t elapsed = info.elapsed_seconds;
  if (elapsed <= 0 && Known(info.start_time) && Known(info.end_time)) {
    elapsed = absl::ToInt64Seconds(info.end_time - info.start_time);
  }
  if (elapsed > 0) a->set_elapsed_seconds(elapsed);
  int64_t total = 0;
  for (const v1::Attempt& x : t.attempts()) total += x.elapsed_seconds();
  t.set_elapsed_seconds(total);

  const std::string& run_dir = t.run_dir();
  Kind kind = Classify(info.state);
  switch (kind) {
    case Kind::kQueued:
      t.set_state(v1::TASK_STATE_QUEUED);
      break;
    case Kind::kRunning: {
      t.set_state(v1::TASK_STATE_RUNNING);
      v1::Phase phase = ReadPhase(run_dir);
      if (phase != v1::PHASE_UNSPECIFIED) t.set_phase(phase);
      if (auto p = ReadProgress(run_dir)) t.mutable_progress()->set_done(*p);
      if (t.state() != before_state && a->resume_reason() == v1::RESUME_REASON_UNSPECIFIED) {
        t.set_reason("");
      }
      break;
    }
    case Kind::kUnknown:
      break;
    default: {
      // The attempt ended: the exit code from scontrol while it still knows the job (sacct
      // reports it modulo 128). COMPLETED means the script exited 0 (a non-zero exit is FAILED),
      // so successful jobs need no scontrol call: a cycle in which many jobs complete stays at
      // one squeue and one sacct.
      if (kind == Kind::kSucceeded) {
        a->set_exit_code(0);
        a->set_signal(0);
      } else if (auto shown = slurm_->Show(a->slurm_job_id()); shown.ok() && shown->exit_code) {
        a->set_exit_code(*shown->exit_code);
        if (shown->signal) a->set_signal(*shown->signal);
      } else if (info.exit_code) {
        a->set_exit_code(*info.exit_code);
        if (info.signal) a->set_signal(*info.signal);
      }
      if (auto p = ReadProgress(run_dir)) t.mutable_progress()->set_done(*p);
      const std::string job = a->slurm_job_id();
      if (kind == Kind::kSucceeded) {
        auto results = ReadResults(run_dir);
        if (results.ok()) {
          *t.mutable_results() = *results;
          Finish(e, v1::TASK_STATE_SUCCEEDED, "", events);
        } else {
          Finish(e, v1::TASK_STATE_FAILED,
                 absl::StrCat("job ", job, " completed but its results could not be read: ",
                              results.status().message()),
                 events);
        }
      } else if (kind == Kind::kFailed && a->has_exit_code() &&
                 a->exit_code() == layout::kExitInterrupted && !t.cancel_requested()) {
        // The job script's "interrupted" code: the harness stopped at the pre-timeout warning
        // (or left nemo-evaluator's interrupted marker) before the time limit ended the job.
        ResumeOrExhaust(e, v1::RESUME_REASON_TIMEOUT,
                        absl::StrCat("job ", job, " stopped at the pre-timeout warning (exit ",
                                     layout::kExitInterrupted, ")"),
                        events);
      } else if (kind == Kind::kFailed) {
        std::string why = absl::StrCat("job ", job, " ended ", info.state);
        if (a->has_exit_code()) absl::StrAppend(&why, ": ", ExplainExit(a->exit_code()));
        if (a->has_signal() && a->signal() != 0) absl::StrAppend(&why, " (signal ", a->signal(), ")");
        Finish(e, v1::TASK_STATE_FAILED, why, events);
      } else if (kind == Kind::kCancelled) {
        Finish(e, v1::TASK_STATE_CANCELLED,
               t.cancel_requested() ? "cancelled"
                                    : absl::StrCat("job ", job, " was cancelled in Slurm (not "
                                                                "through evalctl)"),
               events);
      } else if (t.cancel_requested()) {
        Finish(e, v1::TASK_STATE_CANCELLED, "cancelled", events);
      } else {
        std::string why = absl::StrCat("job ", job, " ended ", info.state);
        ResumeOrExhaust(e, ReasonOf(info.state), why, events);
      }
      return true;
    }
  }
  bool changed = t.state() != before_state || t.phase() != before_phase ||
                 t.progress().done() != before_done || a->slurm_state() != before_slurm_state ||
                 t.attempts_size() != before_attempts;
  if (changed) {
    events.push_back(MakeEvent(e, t.progress().done() != before_done &&
                                          t.state() == before_state &&
                                          t.phase() == before_phase
                                      ? v1::TaskEvent::KIND_PROGRESS
                                      : v1::TaskEvent::KIND_STATE_CHANGED));
  }
  return changed;
}

bool TaskManager::PhaseFilesChanged(size_t max_files) {
  bool changed = false;
  size_t looked = 0;
  const std::string* last = nullptr;
  auto it = tasks_.upper_bound(phase_cursor_);
  for (size_t visited = 0; visited < tasks_.size() && looked < max_files; ++visited, ++it) {
    if (it == tasks_.end()) it = tasks_.begin();
    last = &it->first;
    Entry& e = it->second;
    v1::Task& t = e.journaled.status;
    if (!IsActive(t)) continue;
    const v1::Attempt* a = Current(t);
    if (a == nullptr || a->slurm_job_id().empty()) continue;
    ++looked;
    struct stat st {};
    uint64_t inode = 0;
    int64_t mtime_ns = 0;
    if (::lstat(absl::StrCat(t.run_dir(), "/", layout::kPhaseFile).c_str(), &st) == 0) {
      inode = st.st_ino;
      mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
    }
    if (inode != e.phase_inode || mtime_ns != e.phase_mtime_ns) {
      e.phase_inode = inode;
      e.phase_mtime_ns = mtime_ns;
      changed = true;
    }
  }
  if (last != nullptr) phase_cursor_ = *last;
  return changed;
}

CycleStats TaskManager::RunCycle() {
  CycleStats stats;
  const absl::Time now = clock_->Now();

  // 1. Attempts journaled but without a job id: adopt a job found by name, else submit.
  std::vector<Entry*> unsubmitted;
  std::vector<std::string> names;
  for (auto& [id, e] : tasks_) {
    if (!IsActive(e.journaled.status)) continue;
    v1::Attempt* a = Current(e.journaled.status);
    if (a != nullptr && a->slurm_job_id().empty()) {
      unsubmitted.push_back(&e);
      names.push_back(JobName(e, *a));
    }
  }
  if (!unsubmitted.empty()) {
    ++stats.slurm_calls;
    auto found = slurm_->FindByName(names, now - absl::Hours(24 * 7));
    if (!found.ok()) {
      stats.slurm_reachable = false;
      stats.slurm_error = std::string(found.status().message());
      return stats;
    }
    std::map<std::string, std::string> by_name;
    for (const JobInfo& j : *found) by_name[j.name] = j.job_id;
    for (Entry* e : unsubmitted) {
      v1::Task& t = e->journaled.status;
      v1::Attempt* a = Current(t);
      std::string dependency;
      if (t.attempts_size() > 1) {
        const std::string& prev = t.attempts(t.attempts_size() - 2).slurm_job_id();
        if (!prev.empty()) dependency = absl::StrCat("afterany:", prev);
      }
      if (auto it = by_name.find(JobName(*e, *a)); it != by_name.end()) {
        a->set_slurm_job_id(it->second);
        *a->mutable_submit_time() = ToTimestamp(now);
        t.set_state(v1::TASK_STATE_QUEUED);
        LOG(INFO) << "adopted job=" << it->second << " for task=" << t.id() << " attempt="
                  << a->number() << " (submitted before the agent could record it)";
        std::vector<v1::AgentEvent> events = {MakeEvent(*e, v1::TaskEvent::KIND_SUBMITTED)};
        (void)Persist({e}, events);
        if (t.cancel_requested()) (void)slurm_->Cancel({it->second});
      } else {
        ++stats.slurm_calls;
        (void)SubmitCurrent(*e, dependency);
      }
      ++stats.changes;
    }
  }

  // 2. One squeue and one sacct for every tracked job.
  std::vector<std::string> ids;
  std::vector<std::string> cancel_again;
  for (auto& [id, e] : tasks_) {
    if (!IsActive(e.journaled.status)) continue;
    const v1::Attempt* a = Current(e.journaled.status);
    if (a == nullptr || a->slurm_job_id().empty()) continue;
    ids.push_back(a->slurm_job_id());
    if (e.journaled.status.cancel_requested()) cancel_again.push_back(a->slurm_job_id());
  }
  stats.tracked_jobs = static_cast<int>(ids.size());
  if (ids.empty()) return stats;
  if (!cancel_again.empty()) {
    ++stats.slurm_calls;
    (void)slurm_->Cancel(cancel_again);
  }
  ++stats.slurm_calls;
  auto queue = slurm_->Queue(ids);
  if (!queue.ok()) {
    stats.slurm_reachable = false;
    stats.slurm_error = std::string(queue.status().message());
    stats.jobs.unknown = stats.tracked_jobs;
    return stats;
  }
  ++stats.slurm_calls;
  auto accounting = slurm_->Accounting(ids);
  bool accounting_ok = accounting.ok();
  if (!accounting_ok) {
    // slurmdbd down: tracking goes on with squeue alone, but the outage is reported.
    stats.slurm_reachable = false;
    stats.slurm_error = absl::StrCat("sacct: ", accounting.status().message());
  }
  // Job id → what Slurm said of the job. The answers stay where they are and the index points
  // into them (it and its keys live no longer than `queue` and `accounting`): with 100,000 jobs,
  // a std::map of copies took a fifth of a steady cycle.
  std::unordered_map<std::string_view, const JobInfo*> infos;
  infos.reserve(ids.size());
  if (accounting_ok) {
    for (const JobInfo& j : *accounting) infos[j.job_id] = &j;
  }
  for (JobInfo& j : *queue) {
    auto [it, inserted] = infos.try_emplace(j.job_id, &j);
    if (inserted) continue;
    // squeue knows the live state; sacct knows the elapsed time and requeues.
    const JobInfo& accounted = *it->second;
    j.restarts = std::max(j.restarts, accounted.restarts);
    if (j.elapsed_seconds == 0) j.elapsed_seconds = accounted.elapsed_seconds;
    if (!j.exit_code) j.exit_code = accounted.exit_code;
    it->second = &j;
  }
  for (const std::string& id : ids) {
    auto it = infos.find(id);
    switch (it == infos.end() ? Kind::kUnknown : Classify(it->second->state)) {
      case Kind::kQueued: ++stats.jobs.queued; break;
      case Kind::kRunning: ++stats.jobs.running; break;
      case Kind::kUnknown: ++stats.jobs.unknown; break;
      default: ++stats.jobs.ended; break;
    }
  }

  std::vector<const Entry*> changed;
  std::vector<v1::AgentEvent> events;
  for (auto& [id, e] : tasks_) {
    if (!IsActive(e.journaled.status)) continue;
    v1::Attempt* a = Current(e.journaled.status);
    if (a == nullptr || a->slurm_job_id().empty()) continue;
    auto it = infos.find(a->slurm_job_id());
    if (it == infos.end()) {
      // Not visible yet (sacct lags behind sbatch) or, long after submission, lost.
      absl::Time submitted = FromTimestamp(a->submit_time());
      if (!accounting_ok || now - submitted < options_.visibility_grace) continue;
      JobInfo lost;
      lost.job_id = a->slurm_job_id();
      lost.state = "NODE_FAIL";
      lost.reason = "Slurm no longer knows the job";
      std::vector<v1::AgentEvent> ev;
      Apply(e, lost, ev);
      events.insert(events.end(), ev.begin(), ev.end());
      changed.push_back(&e);
      ++stats.changes;
      continue;
    }
    size_t before = events.size();
    if (Apply(e, *it->second, events)) {
      changed.push_back(&e);
      ++stats.changes;
    } else if (events.size() != before) {
      changed.push_back(&e);
    }
  }
  if (!changed.empty() || !events.empty()) (void)Persist(changed, events);
  return stats;
}

absl::StatusOr<v1::Task> TaskManager::Cancel(const std::string& task_id) {
  return CancelBatch({task_id}).front();
}

std::vector<absl::StatusOr<v1::Task>> TaskManager::CancelBatch(
    const std::vector<std::string>& task_ids) {
  std::vector<absl::StatusOr<v1::Task>> results(task_ids.size(),
                                                absl::UnknownError("not cancelled"));
  std::vector<const Entry*> changed;
  std::vector<v1::AgentEvent> events;
  std::vector<std::string> job_ids;
  std::set<std::string> seen;
  for (size_t i = 0; i < task_ids.size(); ++i) {
    auto it = tasks_.find(task_ids[i]);
    if (it == tasks_.end()) {
      results[i] = absl::NotFoundError(absl::StrCat("no task ", task_ids[i]));
      continue;
    }
    Entry& e = it->second;
    v1::Task& t = e.journaled.status;
    if (!IsActive(t) || !seen.insert(task_ids[i]).second) continue;
    t.set_cancel_requested(true);
    v1::Attempt* a = Current(t);
    if (a == nullptr || a->slurm_job_id().empty()) {
      // Nothing in Slurm yet; a submission found later by name is cancelled by the next cycle.
      if (a == nullptr) Finish(e, v1::TASK_STATE_CANCELLED, "cancelled", events);
    } else {
      job_ids.push_back(a->slurm_job_id());
      events.push_back(MakeEvent(e, v1::TaskEvent::KIND_STATE_CHANGED));
    }
    changed.push_back(&e);
  }
  // Journaled before scancel: after a crash in between, every cycle cancels the jobs again.
  absl::Status persisted = changed.empty() ? absl::OkStatus() : Persist(changed, events);
  if (!job_ids.empty()) {
    absl::Status s = slurm_->Cancel(job_ids);
    if (!s.ok()) {
      LOG(WARNING) << "scancel of " << job_ids.size() << " jobs (first " << job_ids.front()
                   << "): " << s << " (retried every cycle)";
    }
  }
  for (size_t i = 0; i < task_ids.size(); ++i) {
    auto it = tasks_.find(task_ids[i]);
    if (it == tasks_.end()) continue;  // NOT_FOUND above
    if (!persisted.ok() && seen.count(task_ids[i]) > 0) {
      results[i] = persisted;
    } else {
      results[i] = it->second.journaled.status;
    }
  }
  return results;
}

absl::StatusOr<v1::Task> TaskManager::Resume(const std::string& task_id,
                                             const v1::ResumePolicy* policy) {
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return absl::NotFoundError(absl::StrCat("no task ", task_id));
  Entry& e = it->second;
  v1::Task& t = e.journaled.status;
  if (t.state() != v1::TASK_STATE_FAILED && t.state() != v1::TASK_STATE_CANCELLED &&
      t.state() != v1::TASK_STATE_BUDGET_EXHAUSTED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task_id, " is ", v1::TaskState_Name(t.state()),
        "; only FAILED, CANCELLED or BUDGET_EXHAUSTED tasks can be resumed"));
  }
  if (policy != nullptr) *t.mutable_resume_policy() = *policy;
  auto secrets = journal_->GetSecrets(task_id);
  if (secrets.ok()) e.secrets = *std::move(secrets);
  t.set_cancel_requested(false);
  t.set_budget_first_attempt(t.attempts_size() + 1);
  t.set_reason("resumed by a user");
  const std::string previous = t.attempts_size() ? Current(t)->slurm_job_id() : "";
  std::vector<v1::AgentEvent> events;
  RETURN_IF_ERROR(StartAttempt(e, v1::RESUME_REASON_MANUAL, events));
  RETURN_IF_ERROR(SubmitCurrent(e, previous.empty() ? "" : absl::StrCat("afterany:", previous)));
  return t;
}

absl::StatusOr<std::pair<std::string, std::string>> TaskManager::LogTarget(
    const std::string& task_id, int attempt) const {
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return absl::NotFoundError(absl::StrCat("no task ", task_id));
  const v1::Task& t = it->second.journaled.status;
  if (t.attempts_size() == 0) {
    return absl::FailedPreconditionError(absl::StrCat("task ", task_id, " has no attempt yet"));
  }
  int index = attempt <= 0 ? t.attempts_size() - 1 : attempt - 1;
  if (index >= t.attempts_size()) {
    return absl::OutOfRangeError(absl::StrCat("task ", task_id, " has ", t.attempts_size(),
                                              " attempts, not ", attempt));
  }
  // Before the newest attempt has a job, show the previous one's logs.
  while (index > 0 && t.attempts(index).slurm_job_id().empty()) --index;
  if (t.attempts(index).slurm_job_id().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("task ", task_id, " has not been submitted to Slurm yet"));
  }
  return std::make_pair(t.run_dir(), t.attempts(index).slurm_job_id());
}

absl::StatusOr<v1::Task> TaskManager::Get(const std::string& task_id) const {
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return absl::NotFoundError(absl::StrCat("no task ", task_id));
  return it->second.journaled.status;
}

int TaskManager::active_jobs() const {
  int n = 0;
  for (const auto& [id, e] : tasks_) n += IsActive(e.journaled.status) ? 1 : 0;
  return n;
}

}  // namespace evalctl::agent
