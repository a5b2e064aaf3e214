#include "clients/cpp/testing/fake_eval_service.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/task_vocabulary.h"
#include "grpcpp/server_builder.h"

namespace evalctl::client::testing {
namespace {

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

std::string TaskIdOf(const std::string& invocation_id, int index) {
  return absl::StrCat(invocation_id, ".", index);
}

}  // namespace

int ClosedLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

v1::Task MakeTask(const std::string& invocation_id, int index, const std::string& name,
                  v1::TaskState state) {
  v1::Task task;
  task.set_id(TaskIdOf(invocation_id, index));
  task.set_invocation_id(invocation_id);
  task.set_index(index);
  task.set_name(name);
  task.set_dir_name(name);
  task.set_state(state);
  return task;
}

v1::Invocation MakeInvocation(const std::string& id, absl::Time created,
                              std::vector<v1::Task> tasks) {
  v1::Invocation inv;
  inv.set_id(id);
  inv.set_owner("alice");
  *inv.mutable_created_time() = ToProto(created);
  inv.set_cluster("eos");
  inv.set_hostname("login.eos.example.com");
  inv.set_username("alice");
  inv.set_run_dir(absl::StrCat(
      "/lustre/evals/", absl::FormatTime("%Y%m%d_%H%M%S", created, absl::UTCTimeZone()), "-", id));
  inv.set_resolved_config("execution:\n  hostname: login.eos.example.com\n");
  for (v1::Task& t : tasks) {
    if (t.run_dir().empty()) t.set_run_dir(absl::StrCat(inv.run_dir(), "/", t.dir_name()));
    *inv.add_tasks() = std::move(t);
  }
  return inv;
}

// --- test-side API

void FakeEvalService::AddInvocation(v1::Invocation invocation) {
  absl::MutexLock lock(&mu_);
  Recount(invocation);
  std::string id = invocation.id();
  invocations_[id] = std::move(invocation);
}

void FakeEvalService::AddCluster(v1::Cluster cluster) {
  absl::MutexLock lock(&mu_);
  clusters_.push_back(std::move(cluster));
}

void FakeEvalService::SetLog(const std::string& task_id, v1::LogKind kind,
                             std::vector<std::string> chunks, std::vector<std::string> more) {
  absl::MutexLock lock(&mu_);
  logs_[{task_id, static_cast<int>(kind)}] = Log{std::move(chunks), std::move(more)};
}

void FakeEvalService::SetNextSubmission(v1::Invocation invocation,
                                        std::vector<v1::TaskEvent> events) {
  absl::MutexLock lock(&mu_);
  next_submission_ = std::move(invocation);
  next_events_ = std::move(events);
}

void FakeEvalService::Publish(const v1::TaskEvent& event) {
  absl::MutexLock lock(&mu_);
  PublishLocked(event);
}

void FakeEvalService::DropWatchStreams(int count, int after_events) {
  absl::MutexLock lock(&mu_);
  drop_streams_ = count;
  drop_after_events_ = after_events;
}

void FakeEvalService::SetUnaryDelay(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  unary_delay_ = delay;
}

std::vector<std::string> FakeEvalService::received_ids() const {
  absl::MutexLock lock(&mu_);
  return received_ids_;
}
std::vector<v1::SubmitInvocationRequest> FakeEvalService::submissions() const {
  absl::MutexLock lock(&mu_);
  return submissions_;
}
std::vector<v1::WatchInvocationRequest> FakeEvalService::watch_requests() const {
  absl::MutexLock lock(&mu_);
  return watch_requests_;
}
std::vector<v1::StreamLogsRequest> FakeEvalService::log_requests() const {
  absl::MutexLock lock(&mu_);
  return log_requests_;
}
std::vector<v1::GetInvocationRequest> FakeEvalService::get_requests() const {
  absl::MutexLock lock(&mu_);
  return get_requests_;
}

std::vector<v1::ListInvocationsRequest> FakeEvalService::list_requests() const {
  absl::MutexLock lock(&mu_);
  return list_requests_;
}
std::vector<std::string> FakeEvalService::authorizations() const {
  absl::MutexLock lock(&mu_);
  return authorizations_;
}

// --- internals

bool FakeEvalService::BeginCall(grpc::ServerContext* context, const std::string& id) {
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    received_ids_.push_back(id);
    auto it = context->client_metadata().find("authorization");
    authorizations_.push_back(it == context->client_metadata().end()
                                  ? ""
                                  : std::string(it->second.data(), it->second.size()));
    delay = unary_delay_;
  }
  const absl::Time until = absl::Now() + delay;
  while (absl::Now() < until) {
    if (context->IsCancelled()) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return !context->IsCancelled();
}

grpc::Status FakeEvalService::Resolve(const std::string& raw, Resolved* out) const {
  const std::string id = absl::AsciiStrToLower(raw);
  std::string inv_prefix = id;
  int index = -1;
  if (size_t dot = id.find('.'); dot != std::string::npos) {
    inv_prefix = id.substr(0, dot);
    if (!absl::SimpleAtoi(id.substr(dot + 1), &index) || index < 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("\"", raw, "\" is not a task id (<invocation>.<index>)"));
    }
  }
  if (inv_prefix.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "an id is required");
  }
  std::vector<std::string> matches;
  for (const auto& [inv_id, inv] : invocations_) {
    if (absl::StartsWith(inv_id, inv_prefix)) matches.push_back(inv_id);
  }
  if (matches.empty()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no invocation matches \"", raw, "\""));
  }
  if (matches.size() > 1) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("\"", raw, "\" matches ", matches.size(),
                                     " invocations; type more characters"));
  }
  out->invocation_id = matches[0];
  out->task_index = index;
  if (index >= 0 && index >= invocations_.at(matches[0]).tasks_size()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no task matches \"", raw, "\""));
  }
  return grpc::Status::OK;
}

v1::Task* FakeEvalService::FindTask(const std::string& task_id) {
  for (auto& [id, inv] : invocations_) {
    for (v1::Task& t : *inv.mutable_tasks()) {
      if (t.id() == task_id) return &t;
    }
  }
  return nullptr;
}

void FakeEvalService::Recount(v1::Invocation& invocation) {
  v1::TaskCounts counts;
  bool finished = invocation.tasks_size() > 0;
  for (const v1::Task& t : invocation.tasks()) {
    finished = finished && IsTerminal(t.state());
    switch (t.state()) {
      case v1::TASK_STATE_PENDING:
        counts.set_pending(counts.pending() + 1);
        break;
      case v1::TASK_STATE_QUEUED:
        counts.set_queued(counts.queued() + 1);
        break;
      case v1::TASK_STATE_RUNNING:
        counts.set_running(counts.running() + 1);
        break;
      case v1::TASK_STATE_RESUMING:
        counts.set_resuming(counts.resuming() + 1);
        break;
      case v1::TASK_STATE_SUCCEEDED:
        counts.set_succeeded(counts.succeeded() + 1);
        break;
      case v1::TASK_STATE_FAILED:
        counts.set_failed(counts.failed() + 1);
        break;
      case v1::TASK_STATE_CANCELLED:
        counts.set_cancelled(counts.cancelled() + 1);
        break;
      case v1::TASK_STATE_BUDGET_EXHAUSTED:
        counts.set_budget_exhausted(counts.budget_exhausted() + 1);
        break;
      default:
        break;
    }
  }
  *invocation.mutable_counts() = counts;
  invocation.set_finished(finished);
}

void FakeEvalService::PublishLocked(const v1::TaskEvent& event) {
  v1::Task* task = FindTask(event.task_id());
  if (task == nullptr) return;
  task->set_state(event.state());
  task->set_phase(event.phase());
  task->set_reason(event.reason());
  *task->mutable_progress() = event.progress();
  task->set_elapsed_seconds(event.elapsed_seconds());
  if (event.attempt().number() > 0) {
    bool replaced = false;
    for (v1::Attempt& a : *task->mutable_attempts()) {
      if (a.number() == event.attempt().number()) {
        a = event.attempt();
        replaced = true;
      }
    }
    if (!replaced) *task->add_attempts() = event.attempt();
  }
  if (event.has_results()) *task->mutable_results() = event.results();
  Recount(invocations_.at(task->invocation_id()));
  v1::WatchInvocationResponse response;
  response.set_sequence(events_.size() + 1);
  response.set_invocation_id(task->invocation_id());
  *response.mutable_event() = event;
  events_.push_back(std::move(response));
}

// --- EvalService

grpc::Status FakeEvalService::PlanInvocation(grpc::ServerContext* context,
                                             const v1::PlanInvocationRequest* request,
                                             v1::PlanInvocationResponse* response) {
  if (!BeginCall(context, "")) return grpc::Status::CANCELLED;
  response->set_resolved_config(request->config().yaml());
  response->set_cluster("eos");
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::SubmitInvocation(grpc::ServerContext* context,
                                               const v1::SubmitInvocationRequest* request,
                                               v1::SubmitInvocationResponse* response) {
  if (!BeginCall(context, "")) return grpc::Status::CANCELLED;
  absl::MutexLock lock(&mu_);
  submissions_.push_back(*request);
  if (auto it = request_ids_.find(request->request_id()); it != request_ids_.end()) {
    *response->mutable_invocation() = invocations_.at(it->second);
    response->set_duplicate(true);
    return grpc::Status::OK;
  }
  if (next_submission_.id().empty()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "no agent serves cluster \"login.eos.example.com\"; connected clusters: "
                        "(none)");
  }
  v1::Invocation inv = next_submission_;
  Recount(inv);
  request_ids_[request->request_id()] = inv.id();
  invocations_[inv.id()] = inv;
  *response->mutable_invocation() = inv;
  for (const v1::TaskEvent& e : next_events_) PublishLocked(e);
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::GetInvocation(grpc::ServerContext* context,
                                            const v1::GetInvocationRequest* request,
                                            v1::Invocation* response) {
  if (!BeginCall(context, request->id())) return grpc::Status::CANCELLED;
  absl::MutexLock lock(&mu_);
  Resolved r;
  if (grpc::Status s = Resolve(request->id(), &r); !s.ok()) return s;
  if (r.task_index >= 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("\"", request->id(), "\" is a task id, not an invocation id"));
  }
  get_requests_.push_back(*request);
  const v1::Invocation& inv = invocations_.at(r.invocation_id);
  *response = inv;
  response->clear_tasks();
  const v1::InvocationView view = request->view();
  if (view != v1::INVOCATION_VIEW_UNSPECIFIED && view != v1::INVOCATION_VIEW_FULL) {
    response->clear_resolved_config();
  }
  if (view == v1::INVOCATION_VIEW_SUMMARY) return grpc::Status::OK;
  // Pages by position; the token is the position of the next task.
  int first = 0;
  if (!request->page_token().empty() && !absl::SimpleAtoi(request->page_token(), &first)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad page_token");
  }
  for (int i = first; i < inv.tasks_size(); ++i) {
    if (request->page_size() > 0 && response->tasks_size() == request->page_size()) {
      response->set_next_page_token(absl::StrCat(i));
      break;
    }
    const v1::Task& t = inv.tasks(i);
    v1::Task* out = response->add_tasks();
    if (view != v1::INVOCATION_VIEW_BASIC) {
      *out = t;
      continue;
    }
    out->set_id(t.id());
    out->set_invocation_id(t.invocation_id());
    out->set_index(t.index());
    out->set_name(t.name());
    out->set_state(t.state());
    out->set_phase(t.phase());
    out->set_reason(t.reason());
    *out->mutable_progress() = t.progress();
    out->set_elapsed_seconds(t.elapsed_seconds());
    out->set_cancel_requested(t.cancel_requested());
    out->set_attempt_count(t.attempts_size());
    for (const v1::Attempt& a : t.attempts()) {
      if (!a.slurm_job_id().empty()) out->set_slurm_job_id(a.slurm_job_id());
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::GetTask(grpc::ServerContext* context,
                                      const v1::GetTaskRequest* request, v1::Task* response) {
  if (!BeginCall(context, request->id())) return grpc::Status::CANCELLED;
  absl::MutexLock lock(&mu_);
  Resolved r;
  if (grpc::Status s = Resolve(request->id(), &r); !s.ok()) return s;
  if (r.task_index < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("\"", request->id(), "\" is not a task id"));
  }
  *response = invocations_.at(r.invocation_id).tasks(r.task_index);
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::ListInvocations(grpc::ServerContext* context,
                                              const v1::ListInvocationsRequest* request,
                                              v1::ListInvocationsResponse* response) {
  if (!BeginCall(context, "")) return grpc::Status::CANCELLED;
  absl::MutexLock lock(&mu_);
  list_requests_.push_back(*request);
  std::vector<const v1::Invocation*> all;
  for (const auto& [id, inv] : invocations_) {
    if (request->has_since() && inv.created_time().seconds() < request->since().seconds()) continue;
    all.push_back(&inv);
  }
  std::stable_sort(all.begin(), all.end(), [](const v1::Invocation* a, const v1::Invocation* b) {
    return a->created_time().seconds() > b->created_time().seconds();
  });
  size_t start = 0;
  if (!request->page_token().empty() && !absl::SimpleAtoi(request->page_token(), &start)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad page token");
  }
  const size_t size = request->page_size() > 0 ? request->page_size() : 50;
  for (size_t i = start; i < all.size() && i < start + size; ++i) {
    v1::Invocation* out = response->add_invocations();
    *out = *all[i];
    out->clear_tasks();
  }
  if (start + size < all.size()) response->set_next_page_token(absl::StrCat(start + size));
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::WatchInvocation(
    grpc::ServerContext* context, const v1::WatchInvocationRequest* request,
    grpc::ServerWriter<v1::WatchInvocationResponse>* writer) {
  Resolved r;
  bool drop = false;
  int drop_after = 0;
  {
    absl::MutexLock lock(&mu_);
    received_ids_.push_back(request->id());
    watch_requests_.push_back(*request);
    if (!request->id().empty()) {
      if (grpc::Status s = Resolve(request->id(), &r); !s.ok()) return s;
    }
    if (drop_streams_ > 0) {
      --drop_streams_;
      drop = true;
      drop_after = drop_after_events_;
    }
  }
  const std::string task_id =
      r.task_index >= 0 ? TaskIdOf(r.invocation_id, r.task_index) : std::string();
  uint64_t next = request->after_sequence();
  int sent = 0;
  while (!context->IsCancelled()) {
    std::vector<v1::WatchInvocationResponse> batch;
    bool finished = false;
    {
      absl::MutexLock lock(&mu_);
      auto pending = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() > next; };
      mu_.AwaitWithTimeout(absl::Condition(&pending), absl::Milliseconds(50));
      for (size_t i = next; i < events_.size(); ++i) {
        const v1::WatchInvocationResponse& e = events_[i];
        if (!r.invocation_id.empty() && e.invocation_id() != r.invocation_id) continue;
        if (!task_id.empty() && e.event().task_id() != task_id) continue;
        batch.push_back(e);
      }
      if (!r.invocation_id.empty()) {
        const v1::Invocation& inv = invocations_.at(r.invocation_id);
        finished = task_id.empty() ? inv.finished() : IsTerminal(inv.tasks(r.task_index).state());
      }
      next = events_.size();
    }
    for (const v1::WatchInvocationResponse& e : batch) {
      if (drop && sent == drop_after) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection dropped (fake)");
      }
      if (!writer->Write(e)) return grpc::Status::CANCELLED;
      ++sent;
    }
    if (finished) return grpc::Status::OK;
  }
  return grpc::Status::CANCELLED;
}

grpc::Status FakeEvalService::CancelInvocation(grpc::ServerContext* context,
                                               const v1::CancelInvocationRequest* request,
                                               v1::CancelInvocationResponse* response) {
  if (!BeginCall(context, request->id())) return grpc::Status::CANCELLED;
  absl::MutexLock lock(&mu_);
  Resolved r;
  if (grpc::Status s = Resolve(request->id(), &r); !s.ok()) return s;
  v1::Invocation& inv = invocations_.at(r.invocation_id);
  for (int i = 0; i < inv.tasks_size(); ++i) {
    if (r.task_index >= 0 && i != r.task_index) continue;
    if (!IsTerminal(inv.tasks(i).state())) {
      v1::TaskEvent e;
      e.set_kind(v1::TaskEvent::KIND_FINISHED);
      e.set_task_id(inv.tasks(i).id());
      e.set_state(v1::TASK_STATE_CANCELLED);
      e.set_reason("cancelled by alice");
      *e.mutable_progress() = inv.tasks(i).progress();
      PublishLocked(e);
      inv.mutable_tasks(i)->set_cancel_requested(true);
    }
    *response->add_tasks() = inv.tasks(i);
  }
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::ResumeInvocation(grpc::ServerContext* context,
                                               const v1::ResumeInvocationRequest* request,
                                               v1::ResumeInvocationResponse* response) {
  if (!BeginCall(context, request->id())) return grpc::Status::CANCELLED;
  absl::MutexLock lock(&mu_);
  Resolved r;
  if (grpc::Status s = Resolve(request->id(), &r); !s.ok()) return s;
  v1::Invocation& inv = invocations_.at(r.invocation_id);
  for (int i = 0; i < inv.tasks_size(); ++i) {
    if (r.task_index >= 0 && i != r.task_index) continue;
    const v1::Task& t = inv.tasks(i);
    if (!IsTerminal(t.state()) || t.state() == v1::TASK_STATE_SUCCEEDED) {
      const std::string why = IsTerminal(t.state()) ? "succeeded" : "still active";
      if (r.task_index >= 0) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            absl::StrCat("task ", t.id(), " cannot be resumed: ", why));
      }
      v1::SkippedTask* skipped = response->add_skipped();
      skipped->set_task_id(t.id());
      skipped->set_reason(why);
      continue;
    }
    v1::TaskEvent e;
    e.set_kind(v1::TaskEvent::KIND_RESUMED);
    e.set_task_id(t.id());
    e.set_state(v1::TASK_STATE_PENDING);
    e.set_reason("resumed by alice");
    *e.mutable_progress() = t.progress();
    e.mutable_attempt()->set_number(t.attempts_size() + 1);
    e.mutable_attempt()->set_attempt_id(absl::StrCat(t.id(), ".", t.attempts_size() + 1));
    e.mutable_attempt()->set_resume_reason(v1::RESUME_REASON_MANUAL);
    PublishLocked(e);
    *response->add_resumed() = inv.tasks(i);
  }
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::StreamLogs(grpc::ServerContext* context,
                                         const v1::StreamLogsRequest* request,
                                         grpc::ServerWriter<v1::StreamLogsResponse>* writer) {
  Log log;
  std::string path;
  {
    absl::MutexLock lock(&mu_);
    received_ids_.push_back(request->id());
    log_requests_.push_back(*request);
    Resolved r;
    if (grpc::Status s = Resolve(request->id(), &r); !s.ok()) return s;
    if (r.task_index < 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("logs belong to a task; \"", request->id(),
                                       "\" names an invocation (use <invocation>.<index>)"));
    }
    const v1::Task& t = invocations_.at(r.invocation_id).tasks(r.task_index);
    const v1::LogKind kind =
        request->kind() == v1::LOG_KIND_UNSPECIFIED ? v1::LOG_KIND_SLURM : request->kind();
    auto it = logs_.find({t.id(), static_cast<int>(kind)});
    if (it == logs_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("task ", t.id(), " has no such log yet"));
    }
    log = it->second;
    path = absl::StrCat(t.run_dir(), "/logs/", v1::LogKind_Name(kind));
  }
  int64_t offset = 0;
  auto send = [&](const std::string& chunk) {
    v1::StreamLogsResponse response;
    response.set_path(path);
    response.set_offset(offset);
    response.set_data(chunk);
    offset += static_cast<int64_t>(chunk.size());
    return writer->Write(response);
  };
  for (const std::string& chunk : log.chunks) {
    if (!send(chunk)) return grpc::Status::CANCELLED;
  }
  if (request->follow()) {
    for (const std::string& chunk : log.more) {
      absl::SleepFor(absl::Milliseconds(20));
      if (context->IsCancelled() || !send(chunk)) return grpc::Status::CANCELLED;
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::GetResults(grpc::ServerContext* context,
                                         const v1::GetResultsRequest* request,
                                         v1::GetResultsResponse* response) {
  if (!BeginCall(context, request->id())) return grpc::Status::CANCELLED;
  absl::MutexLock lock(&mu_);
  Resolved r;
  if (grpc::Status s = Resolve(request->id(), &r); !s.ok()) return s;
  const v1::Invocation& inv = invocations_.at(r.invocation_id);
  for (int i = 0; i < inv.tasks_size(); ++i) {
    if (r.task_index >= 0 && i != r.task_index) continue;
    const v1::Task& t = inv.tasks(i);
    v1::TaskScores* scores = response->add_tasks();
    scores->set_task_id(t.id());
    scores->set_name(t.name());
    scores->set_state(t.state());
    *scores->mutable_results() = t.results();
  }
  return grpc::Status::OK;
}

grpc::Status FakeEvalService::ListClusters(grpc::ServerContext* context,
                                           const v1::ListClustersRequest* /*request*/,
                                           v1::ListClustersResponse* response) {
  if (!BeginCall(context, "")) return grpc::Status::CANCELLED;
  absl::MutexLock lock(&mu_);
  for (const v1::Cluster& c : clusters_) *response->add_clusters() = c;
  return grpc::Status::OK;
}

// --- server

FakeEvalServer::FakeEvalServer() {
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

FakeEvalServer::~FakeEvalServer() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  server_->Wait();
}

}  // namespace evalctl::client::testing
