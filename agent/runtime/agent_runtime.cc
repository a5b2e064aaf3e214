#include "agent/runtime/agent_runtime.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "agent/core/run_files.h"
#include "common/logging.h"
#include "common/task_vocabulary.h"
#include "common/wire_limits.h"

namespace evalctl::agent {
namespace {

// Cancels that arrive within kCancelQuiet of each other are gathered into one batch, for at most
// kCancelGather.
constexpr absl::Duration kCancelQuiet = absl::Milliseconds(10);
constexpr absl::Duration kCancelGather = absl::Milliseconds(100);
// The longest the core loop and the sender wait without looking around.
constexpr absl::Duration kCoreLoopTick = absl::Milliseconds(200);
constexpr absl::Duration kSenderTick = absl::Milliseconds(500);
// How often a log read that waits for the file to grow reads it again.
constexpr absl::Duration kLogPoll = absl::Milliseconds(200);

// The result of a cancel or resume: the task as the agent holds it after the command.
v1::CommandResult TaskResult(const absl::StatusOr<v1::Task>& t) {
  v1::CommandResult r;
  if (t.ok()) {
    r.mutable_task()->set_task_id(t->id());
    r.mutable_task()->set_state(t->state());
  }
  return r;
}

// The TaskManager's committed events feed the metrics (submissions, resumes, task states).
TaskManagerOptions WithMetrics(TaskManagerOptions options, AgentMetrics* metrics) {
  if (metrics == nullptr) return options;
  options.on_commit =
      [metrics, next = std::move(options.on_commit)](const std::vector<v1::AgentEvent>& events) {
        metrics->EventsCommitted(events);
        if (next) next(events);
      };
  return options;
}

}  // namespace

AgentRuntime::AgentRuntime(AgentOptions options, SlurmClient* slurm, Journal* journal, Clock* clock,
                           AgentMetrics* metrics)
    : options_(std::move(options)),
      journal_(journal),
      clock_(clock),
      metrics_(metrics),
      tasks_(WithMetrics(options_.task_manager, metrics), slurm, journal, clock) {}

AgentRuntime::~AgentRuntime() = default;

absl::Status AgentRuntime::Run(const std::atomic<bool>* stop) {
  if (metrics_ != nullptr) {
    // Recover's own commits then update what is loaded here.
    if (auto loaded = journal_->LoadTasks(); loaded.ok()) metrics_->TasksLoaded(*loaded);
  }
  if (absl::Status s = tasks_.Recover(); !s.ok()) return s;
  std::thread core([this, stop] { CoreLoop(stop); });
  std::thread sender([this, stop] { SenderLoop(stop); });
  std::thread stream([this, stop] { StreamLoop(stop); });
  // `stop` is set from outside (by evalctl-agent's signal handler), under no mutex that a wait
  // could watch: it is polled, in real time, whatever the clock. Everything else waits on clock_.
  while (!stop->load()) absl::SleepFor(absl::Milliseconds(100));
  {
    absl::MutexLock lock(&stop_mu_);
    stopping_ = true;
  }
  {
    absl::MutexLock lock(&stream_mu_);
    if (context_ != nullptr) context_->TryCancel();
  }
  WakeSender();
  {
    absl::MutexLock lock(&commands_mu_);  // the core loop's wait sees `stop`
  }
  stream.join();
  sender.join();
  core.join();
  return absl::OkStatus();
}

// ---------------------------------------------------------------- core loop

void AgentRuntime::CoreLoop(const std::atomic<bool>* stop) {
  absl::Duration interval = options_.min_interval;
  absl::Time next_cycle = clock_->Now();
  absl::Time next_phase_check = clock_->Now();
  absl::Time next_trim = clock_->Now();
  const auto commands_or_stop = [this, stop] {
    commands_mu_.AssertHeld();  // conditions run under the mutex
    return !commands_.empty() || stop->load();
  };
  while (!stop->load()) {
    std::deque<v1::Command> batch;
    {
      absl::MutexLock lock(&commands_mu_);
      clock_->AwaitWithDeadline(commands_mu_, absl::Condition(&commands_or_stop),
                                std::min(next_cycle, clock_->Now() + kCoreLoopTick));
      batch.swap(commands_);
      // The controller sends one CancelTask per task of a kill, back to back: gather them (until
      // none came for kCancelQuiet, at most kCancelGather) so that they become one scancel.
      const auto has_cancel = [](const std::deque<v1::Command>& q) {
        return std::any_of(q.begin(), q.end(),
                           [](const v1::Command& c) { return c.has_cancel_task(); });
      };
      if (has_cancel(batch)) {
        const absl::Time gather_until = clock_->Now() + kCancelGather;
        while (clock_->Now() < gather_until &&
               clock_->AwaitWithDeadline(commands_mu_, absl::Condition(&commands_or_stop),
                                         std::min(clock_->Now() + kCancelQuiet, gather_until)) &&
               !commands_.empty()) {
          for (v1::Command& c : commands_) batch.push_back(std::move(c));
          commands_.clear();
        }
      }
    }
    // Consecutive submissions go to sbatch together, with bounded parallelism; consecutive
    // cancels to one TaskManager::CancelBatch (one scancel per 500 jobs). After a command that
    // changes tasks the tracking interval starts again from its minimum, so that what follows
    // (the job pending, cancelled, resumed) is seen within seconds however quiet it was before.
    while (!batch.empty()) {
      if (batch.front().has_submit_task()) {
        std::vector<v1::SubmitTask> submits;
        std::vector<uint64_t> ids;
        while (!batch.empty() && batch.front().has_submit_task()) {
          v1::SubmitTask& submit = *batch.front().mutable_submit_task();
          // The controller checked the owner's right to this Unix user; a task for another
          // user is refused here too, whatever the controller says.
          if (!submit.run_as().empty() && submit.run_as() != options_.unix_user) {
            LOG(WARNING) << "task=" << absl::CHexEscape(submit.task_id())
                         << " refused: it is to run as " << absl::CHexEscape(submit.run_as())
                         << ", and this agent runs as " << options_.unix_user;
            Reply(batch.front().command_id(),
                  absl::PermissionDeniedError(absl::StrCat(
                      "this agent runs jobs as the Unix user ", options_.unix_user, ", not as ",
                      absl::CHexEscape(submit.run_as()))));
            batch.pop_front();
            continue;
          }
          ids.push_back(batch.front().command_id());
          submits.push_back(std::move(submit));
          batch.pop_front();
        }
        std::vector<absl::Status> results = tasks_.AcceptBatch(submits);
        for (size_t i = 0; i < ids.size(); ++i) Reply(ids[i], results[i]);
        next_cycle = clock_->Now() + options_.min_interval;
        interval = options_.min_interval;
        WakeSender();
        continue;
      }
      if (batch.front().has_cancel_task()) {
        std::vector<std::string> task_ids;
        std::vector<uint64_t> ids;
        while (!batch.empty() && batch.front().has_cancel_task()) {
          ids.push_back(batch.front().command_id());
          task_ids.push_back(batch.front().cancel_task().task_id());
          batch.pop_front();
        }
        std::vector<absl::StatusOr<v1::Task>> results = tasks_.CancelBatch(task_ids);
        for (size_t i = 0; i < ids.size(); ++i) {
          Reply(ids[i], results[i].status(), TaskResult(results[i]));
        }
        next_cycle = std::min(next_cycle, clock_->Now() + options_.min_interval);
        interval = options_.min_interval;
        WakeSender();
        continue;
      }
      const bool changes_tasks = batch.front().has_resume_task();
      Execute(batch.front());
      batch.pop_front();
      next_cycle = std::min(next_cycle, clock_->Now() + options_.min_interval);
      if (changes_tasks) interval = options_.min_interval;
      WakeSender();
    }
    // Between cycles, a job that wrote its phase file (it started, moved on or finished) brings
    // the next cycle forward: seen within about a second, with no Slurm call while nothing moves.
    const absl::Time now = clock_->Now();
    if (options_.phase_check_interval > absl::ZeroDuration() && now >= next_phase_check) {
      next_phase_check = now + options_.phase_check_interval;
      if (next_cycle - now > options_.phase_check_interval && tasks_.PhaseFilesChanged()) {
        next_cycle = now;
      }
    }
    if (now < next_cycle) continue;
    // The cycle's duration is measured in real time, not on clock_: it is how long its Slurm
    // commands (child processes) and journal writes really took.
    const absl::Time cycle_start = absl::Now();
    CycleStats stats = tasks_.RunCycle();
    tracked_jobs_ = stats.tracked_jobs;
    if (stats.slurm_reachable != slurm_reachable_) {
      slurm_reachable_ = stats.slurm_reachable;
      v1::AgentEvent health;
      v1::ClusterHealth* h = health.mutable_cluster_health();
      h->set_slurm_reachable(stats.slurm_reachable);
      h->set_message(stats.slurm_error);
      h->set_tracked_jobs(stats.tracked_jobs);
      *h->mutable_time() = ToTimestamp(clock_->Now());
      (void)journal_->Commit({}, {health});
      if (stats.slurm_reachable) {
        LOG(INFO) << "Slurm answers again";
      } else {
        LOG(WARNING) << "Slurm does not answer: " << stats.slurm_error
                     << " (tasks keep their state; retrying)";
      }
    }
    interval = stats.changes > 0 ? options_.min_interval
                                 : std::min(interval * 2, options_.max_interval);
    if (stats.tracked_jobs == 0) interval = options_.max_interval;
    {
      absl::MutexLock lock(&health_mu_);
      if (stats.slurm_reachable) {
        slurm_down_since_ = absl::InfiniteFuture();
        slurm_error_.clear();
      } else {
        if (slurm_down_since_ == absl::InfiniteFuture()) slurm_down_since_ = clock_->Now();
        slurm_error_ = stats.slurm_error;
      }
    }
    if (metrics_ != nullptr) {
      metrics_->CycleFinished(absl::Now() - cycle_start, interval, stats.jobs);
    }
    next_cycle = clock_->Now() + interval;
    WakeSender();
    // A cycle in which many jobs change commits every changed task and event at once; glibc
    // keeps the freed memory. Return it, at most every 10 s (at 100,000 tasks: 964 → 521 MiB,
    // docs/performance.md).
    if (clock_->Now() >= next_trim) {
      malloc_trim(0);
      next_trim = clock_->Now() + absl::Seconds(10);
    }
  }
}

void AgentRuntime::Execute(const v1::Command& command) {
  const uint64_t id = command.command_id();
  switch (command.body_case()) {
    case v1::Command::kCancelTask: {
      auto t = tasks_.Cancel(command.cancel_task().task_id());
      Reply(id, t.status(), TaskResult(t));
      return;
    }
    case v1::Command::kResumeTask: {
      const v1::ResumeTask& rt = command.resume_task();
      auto t = tasks_.Resume(rt.task_id(), rt.has_resume_policy() ? &rt.resume_policy() : nullptr);
      Reply(id, t.status(), TaskResult(t));
      return;
    }
    case v1::Command::kReadLog: {
      const v1::ReadLog req = command.read_log();
      auto target = tasks_.LogTarget(req.task_id(), req.attempt());
      if (!target.ok()) return Reply(id, target.status());
      const std::string path = LogPath(target->first, req.kind(), target->second);
      log_pool_.Schedule([this, id, req, path] {
        const absl::Time deadline =
            clock_->Now() + absl::Milliseconds(std::clamp(req.wait_ms(), 0, 30000));
        while (true) {
          auto chunk = ReadLogChunk(path, req.offset(), req.max_bytes());
          const absl::Time now = clock_->Now();
          if (!chunk.ok() || !chunk->data().empty() || now >= deadline ||
              !Pause(std::min(deadline, now + kLogPoll))) {
            v1::CommandResult r;
            if (chunk.ok()) *r.mutable_log_chunk() = *chunk;
            return Reply(id, chunk.status(), r);
          }
        }
      });
      return;
    }
    default:
      Reply(id, absl::InvalidArgumentError("unknown command"));
  }
}

void AgentRuntime::Reply(uint64_t command_id, const absl::Status& status,
                         v1::CommandResult result) {
  result.set_command_id(command_id);
  result.set_code(static_cast<int>(status.code()));
  result.set_message(std::string(status.message()));
  v1::AgentMessage msg;
  *msg.mutable_command_result() = std::move(result);
  Write(msg);
}

// ---------------------------------------------------------------- stream

bool AgentRuntime::Write(const v1::AgentMessage& message) {
  // Only write_mu_: a Write blocked by flow control must not keep Run from cancelling the stream.
  absl::MutexLock write(&write_mu_);
  if (stream_ == nullptr) return false;
  return stream_->Write(message);
}

bool AgentRuntime::Pause(absl::Time until) {
  absl::MutexLock lock(&stop_mu_);
  return !clock_->AwaitWithDeadline(stop_mu_, absl::Condition(&stopping_), until);
}

void AgentRuntime::WakeSender() {
  absl::MutexLock lock(&sender_mu_);
  wake_ = true;
}

std::string AgentRuntime::BearerToken() {
  presented_token_file_ = false;
  if (!options_.token_file.empty() && !skip_token_file_) {
    std::ifstream in(options_.token_file);
    std::string token;
    if (in && std::getline(in, token)) {
      token = std::string(absl::StripAsciiWhitespace(token));
      if (!token.empty()) {
        presented_token_file_ = true;
        return token;
      }
    }
  }
  absl::StatusOr<std::string> credential = journal_->GetCredential();
  if (!credential.ok()) {
    LOG(ERROR) << "cannot read the credential from the secret store: " << credential.status();
    return "";
  }
  return *credential;
}

void AgentRuntime::StoreCredential(const std::string& credential) {
  if (absl::Status s = journal_->PutCredential(credential); !s.ok()) {
    // The enrollment token is spent: without the credential the agent cannot reconnect.
    LOG(ERROR) << "cannot store the credential issued at enrollment: " << s;
    return;
  }
  if (!options_.token_file.empty() && ::unlink(options_.token_file.c_str()) != 0 &&
      errno != ENOENT) {
    LOG(WARNING) << "enrolled, but cannot delete the spent token file " << options_.token_file
                 << ": " << std::strerror(errno);
  }
  LOG(INFO) << "enrolled with the controller; the agent's credential is in its secret store";
}

void AgentRuntime::StreamLoop(const std::atomic<bool>* stop) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetMaxReceiveMessageSize(static_cast<int>(wire::kAgentMaxReceiveBytes));
  auto creds = options_.credentials ? options_.credentials : grpc::InsecureChannelCredentials();
  auto channel = grpc::CreateCustomChannel(options_.controller, creds, args);
  auto stub = v1::AgentService::NewStub(channel);
  absl::BitGen gen;
  absl::Duration backoff = options_.min_backoff;

  while (!stop->load()) {
    grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>* stream = nullptr;
    {
      absl::MutexLock write(&write_mu_);
      absl::MutexLock lock(&stream_mu_);
      context_ = std::make_unique<grpc::ClientContext>();
      context_->set_wait_for_ready(false);
      if (std::string token = BearerToken(); !token.empty()) {
        context_->AddMetadata("authorization", absl::StrCat("Bearer ", token));
      }
      stream_ = stub->Connect(context_.get());
      stream = stream_.get();
    }
    v1::AgentMessage reg;
    v1::Register* r = reg.mutable_register_();
    r->set_agent_id(journal_->agent_id());
    r->set_cluster(options_.cluster);
    for (const auto& a : options_.aliases) r->add_aliases(a);
    r->set_unix_user(options_.unix_user);
    r->set_version(options_.version);
    for (const auto& c : options_.capabilities) r->add_capabilities(c);
    r->set_last_sequence(journal_->last_sequence());
    const bool wrote = Write(reg);
    v1::ControllerMessage msg;
    // Read even after a failed Write: a stream the controller ended (e.g. refusing the token)
    // answers at once, and its status is then Finish()'s.
    bool drained = !stream->Read(&msg);  // the controller ended the stream
    bool ok = wrote && !drained && msg.has_registered();
    if (ok) {
      const v1::Registered& reply = msg.registered();
      if (!reply.credential().empty()) StoreCredential(reply.credential());
      uint64_t applied = std::min(reply.last_applied_sequence(), journal_->last_sequence());
      (void)journal_->Ack(applied);
      LOG(INFO) << "connected to " << options_.controller << " as agent " << journal_->agent_id()
                << "; controller has events up to " << reply.last_applied_sequence() << ", "
                << journal_->outbox_depth() << " to send";
      {
        absl::MutexLock lock(&sender_mu_);
        connected_ = true;
        sent_up_to_ = std::max(applied, journal_->acked_sequence());
        if (reply.heartbeat_interval_seconds() > 0) heartbeat_seconds_ = reply.heartbeat_interval_seconds();
        wake_ = true;
      }
      if (metrics_ != nullptr) metrics_->SetStreamConnected(true);
      backoff = options_.min_backoff;
      while (stream->Read(&msg)) {
        if (msg.has_events_ack()) {
          if (absl::Status s = journal_->Ack(msg.events_ack().sequence()); !s.ok()) {
            LOG(WARNING) << "acknowledgement: " << s;
          }
        } else if (msg.has_command()) {
          absl::MutexLock lock(&commands_mu_);
          commands_.push_back(msg.command());
        }
      }
      drained = true;
    }
    grpc::Status status;
    {
      absl::MutexLock lock(&sender_mu_);
      connected_ = false;
    }
    if (metrics_ != nullptr) metrics_->SetStreamConnected(false);
    {
      absl::MutexLock write(&write_mu_);
      absl::MutexLock lock(&stream_mu_);
      // Cancelling a stream the controller ended would replace its status with CANCELLED.
      if (context_ != nullptr && !drained) context_->TryCancel();
      status = stream_->Finish();
      stream_.reset();
    }
    if (stop->load()) break;
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && presented_token_file_) {
      // A spent or expired enrollment token: fall back to the stored credential, if any.
      skip_token_file_ = true;
    }
    if (metrics_ != nullptr) metrics_->StreamReconnect();
    // Jittered exponential backoff: [backoff/2, backoff].
    absl::Duration wait = backoff * absl::Uniform(gen, 0.5, 1.0);
    LOG(WARNING) << "stream to " << options_.controller << " ended ("
                 << (status.ok() ? "closed" : status.error_message()) << "); reconnecting in "
                 << absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(100)))
                 << "; tracking and resuming go on meanwhile";
    Pause(clock_->Now() + wait);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

// ---------------------------------------------------------------- health and metrics

AgentRuntime::Health AgentRuntime::CheckHealth() {
  {
    absl::MutexLock lock(&sender_mu_);
    if (!connected_) {
      return {false, absl::StrCat("not connected to the controller at ", options_.controller)};
    }
  }
  absl::MutexLock lock(&health_mu_);
  if (slurm_down_since_ != absl::InfiniteFuture()) {
    std::string error = absl::StrReplaceAll(slurm_error_, {{"\r", " "}, {"\n", " "}});
    return {false, absl::StrCat("Slurm did not answer in the last tracking cycle: ",
                                absl::StripAsciiWhitespace(error))};
  }
  return {true, "ok"};
}

void AgentRuntime::RefreshMetrics() {
  if (metrics_ == nullptr) return;
  const absl::Time now = clock_->Now();
  const absl::Time oldest = journal_->oldest_unacked();
  metrics_->SetOutbox(journal_->outbox_depth(),
                      oldest == absl::InfiniteFuture() ? absl::ZeroDuration() : now - oldest);
  {
    absl::MutexLock lock(&health_mu_);
    metrics_->SetSlurmUnreachable(slurm_down_since_ == absl::InfiniteFuture()
                                      ? absl::ZeroDuration()
                                      : now - slurm_down_since_);
  }
  metrics_->RefreshTasks(now);
}

// ---------------------------------------------------------------- sender

void AgentRuntime::SenderLoop(const std::atomic<bool>* stop) {
  absl::Time last_sent = clock_->Now();
  while (!stop->load()) {
    uint64_t after;
    int heartbeat;
    {
      absl::MutexLock lock(&sender_mu_);
      // Until there is news, or a heartbeat is due.
      const absl::Time heartbeat_due =
          connected_ ? last_sent + absl::Seconds(heartbeat_seconds_) : absl::InfiniteFuture();
      clock_->AwaitWithDeadline(sender_mu_, absl::Condition(&wake_),
                                std::min(heartbeat_due, clock_->Now() + kSenderTick));
      wake_ = false;
      if (!connected_) continue;
      after = sent_up_to_;
      heartbeat = heartbeat_seconds_;
    }
    auto pending = journal_->Pending(after, options_.events_per_message);
    if (!pending.ok()) {
      LOG(ERROR) << "reading the outbox: " << pending.status();
      continue;
    }
    if (!pending->empty()) {
      // At most kMaxEventsMessageBytes of events (and at least one), so that no message is one
      // the controller refuses; the rest go in the next message.
      v1::AgentMessage msg;
      size_t bytes = 0;
      for (v1::AgentEvent& e : *pending) {
        const size_t size = e.ByteSizeLong() + 8;  // with the field's tag and length
        if (msg.events().events_size() > 0 && bytes + size > wire::kMaxEventsMessageBytes) break;
        bytes += size;
        *msg.mutable_events()->add_events() = std::move(e);
      }
      uint64_t last = msg.events().events(msg.events().events_size() - 1).sequence();
      if (Write(msg)) {
        absl::MutexLock lock(&sender_mu_);
        if (connected_ && sent_up_to_ == after) sent_up_to_ = last;
        wake_ = true;  // there may be more
        last_sent = clock_->Now();
      }
      continue;
    }
    if (clock_->Now() - last_sent >= absl::Seconds(heartbeat)) {
      v1::AgentMessage msg;
      v1::Heartbeat* h = msg.mutable_heartbeat();
      *h->mutable_time() = ToTimestamp(clock_->Now());
      h->set_tracked_jobs(tracked_jobs_.load());
      h->set_outbox_depth(static_cast<int>(journal_->outbox_depth()));
      if (Write(msg)) last_sent = clock_->Now();
    }
  }
}

}  // namespace evalctl::agent
