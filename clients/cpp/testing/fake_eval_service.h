// A small stateful fake of EvalService, served in-process on 127.0.0.1:<ephemeral port>, for
// component tests of the C++ client and the `evalctl` CLI.
//
//   FakeEvalServer server;                       // listening once constructed
//   server.service().AddInvocation(MakeInvocation(...));
//   server.service().Publish(event);             // updates the task and feeds watchers
//   ClientOptions opts{.target = server.address()};
//
// What it does, like the controller: resolves id prefixes (case-insensitive; a `.` means a task),
// keeps invocations and tasks in memory, applies published TaskEvents to them with increasing
// sequence numbers, replays events after `after_sequence` to watchers (after 0 it replays its whole
// log, which stands in for the controller's snapshot) and then ends the stream once the invocation
// is finished, answers GetInvocation in the requested view and pages, cancels and resumes tasks, serves logs from memory and submits
// idempotently by request id. It records what clients sent (ids as typed, requests, the
// authorization header) for assertions.
//
// Thread-safe: gRPC handler threads and the test thread share it under a mutex.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "evalctl/v1/eval_service.grpc.pb.h"
#include "grpcpp/server.h"

namespace evalctl::client::testing {

namespace v1 = ::evalctl::v1;

class FakeEvalService final : public v1::EvalService::Service {
 public:
  // Stores an invocation with its tasks (counts and `finished` are recomputed).
  void AddInvocation(v1::Invocation invocation);
  void AddCluster(v1::Cluster cluster);
  // The content of a task's log of `kind`, sent in `chunks` messages; with `follow`, `more` is
  // sent after it, as if the file grew.
  void SetLog(const std::string& task_id, v1::LogKind kind, std::vector<std::string> chunks,
              std::vector<std::string> more = {});
  // What SubmitInvocation creates: this invocation (its id is kept), then these events are
  // published, as if the agent ran the tasks.
  void SetNextSubmission(v1::Invocation invocation, std::vector<v1::TaskEvent> events);
  // Applies an event to its task and appends it to the event log for watchers.
  void Publish(const v1::TaskEvent& event);
  // The next `count` WatchInvocation streams end with UNAVAILABLE after sending `after_events`
  // events, as if the connection dropped.
  void DropWatchStreams(int count, int after_events);
  // Every unary call waits this long before answering (or until the client gives up).
  void SetUnaryDelay(absl::Duration delay);

  // What clients sent.
  std::vector<std::string> received_ids() const;
  std::vector<v1::SubmitInvocationRequest> submissions() const;
  std::vector<v1::WatchInvocationRequest> watch_requests() const;
  std::vector<v1::StreamLogsRequest> log_requests() const;
  std::vector<v1::ListInvocationsRequest> list_requests() const;
  std::vector<v1::GetInvocationRequest> get_requests() const;
  std::vector<std::string> authorizations() const;

  grpc::Status PlanInvocation(grpc::ServerContext* context,
                              const v1::PlanInvocationRequest* request,
                              v1::PlanInvocationResponse* response) override;
  grpc::Status SubmitInvocation(grpc::ServerContext* context,
                                const v1::SubmitInvocationRequest* request,
                                v1::SubmitInvocationResponse* response) override;
  grpc::Status GetInvocation(grpc::ServerContext* context, const v1::GetInvocationRequest* request,
                             v1::Invocation* response) override;
  grpc::Status GetTask(grpc::ServerContext* context, const v1::GetTaskRequest* request,
                       v1::Task* response) override;
  grpc::Status ListInvocations(grpc::ServerContext* context,
                               const v1::ListInvocationsRequest* request,
                               v1::ListInvocationsResponse* response) override;
  grpc::Status WatchInvocation(grpc::ServerContext* context,
                               const v1::WatchInvocationRequest* request,
                               grpc::ServerWriter<v1::WatchInvocationResponse>* writer) override;
  grpc::Status CancelInvocation(grpc::ServerContext* context,
                                const v1::CancelInvocationRequest* request,
                                v1::CancelInvocationResponse* response) override;
  grpc::Status ResumeInvocation(grpc::ServerContext* context,
                                const v1::ResumeInvocationRequest* request,
                                v1::ResumeInvocationResponse* response) override;
  grpc::Status StreamLogs(grpc::ServerContext* context, const v1::StreamLogsRequest* request,
                          grpc::ServerWriter<v1::StreamLogsResponse>* writer) override;
  grpc::Status GetResults(grpc::ServerContext* context, const v1::GetResultsRequest* request,
                          v1::GetResultsResponse* response) override;
  grpc::Status ListClusters(grpc::ServerContext* context, const v1::ListClustersRequest* request,
                            v1::ListClustersResponse* response) override;

 private:
  struct Resolved {
    std::string invocation_id;
    // -1 when the id names the whole invocation.
    int task_index = -1;
  };
  struct Log {
    std::vector<std::string> chunks;
    std::vector<std::string> more;
  };

  // Records the call and waits out the unary delay; false when the client cancelled meanwhile.
  bool BeginCall(grpc::ServerContext* context, const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  grpc::Status Resolve(const std::string& id, Resolved* out) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Task* FindTask(const std::string& task_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Recount(v1::Invocation& invocation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(const v1::TaskEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // By id, in insertion order of ids for stable listing ties.
  std::map<std::string, v1::Invocation> invocations_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::Cluster> clusters_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WatchInvocationResponse> events_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, int>, Log> logs_ ABSL_GUARDED_BY(mu_);
  v1::Invocation next_submission_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::TaskEvent> next_events_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);
  int drop_streams_ ABSL_GUARDED_BY(mu_) = 0;
  int drop_after_events_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration unary_delay_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();

  std::vector<std::string> received_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::SubmitInvocationRequest> submissions_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WatchInvocationRequest> watch_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::StreamLogsRequest> log_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ListInvocationsRequest> list_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::GetInvocationRequest> get_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> authorizations_ ABSL_GUARDED_BY(mu_);
};

// The fake, served on 127.0.0.1 on a port the kernel picks.
class FakeEvalServer {
 public:
  FakeEvalServer();
  ~FakeEvalServer();

  FakeEvalService& service() { return service_; }
  // "127.0.0.1:<port>".
  const std::string& address() const { return address_; }

 private:
  FakeEvalService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

// A loopback port nothing listens on (bound, read and closed again), for "controller
// unreachable" tests.
int ClosedLoopbackPort();

// Helpers to build test data.
v1::Task MakeTask(const std::string& invocation_id, int index, const std::string& name,
                  v1::TaskState state);
v1::Invocation MakeInvocation(const std::string& id, absl::Time created,
                              std::vector<v1::Task> tasks);

}  // namespace evalctl::client::testing
