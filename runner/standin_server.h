// evalctl-standin's HTTP server: a deterministic stand-in for an OpenAI-compatible model server,
// for demos and tests. It is NOT a model: it looks the answer up (see standin_knowledge.h) and
// answers right with probability `accuracy`, decided per prompt by a seeded hash, so that reruns
// give identical answers.
//
// Routes:
//   POST /v1/chat/completions, POST /v1/completions   OpenAI-style answers
//   GET  /v1/models                                   the served model
//   GET  /health                                      503 until the start-up delay has passed, then 200
//   GET  /stats                                       counters (JSON), for tests
//   GET  /                                            a one-paragraph description
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "runner/standin_knowledge.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace evalctl::runner {

struct StandinOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
  std::string model_name = "evalctl-standin";
  // Reject requests for another model with 404, as vLLM does. Off: any model name is accepted.
  bool strict_model = false;
  double accuracy = 0.8;
  uint64_t seed = 0;
  absl::Duration latency = absl::ZeroDuration();
  absl::Duration jitter = absl::ZeroDuration();  // latency is uniform in [latency - jitter, latency + jitter]
  absl::Duration startup_delay = absl::ZeroDuration();
  double error_rate = 0;  // fraction of requests answered with HTTP 500
  double hang_rate = 0;   // fraction of requests that get no answer for `hang`
  absl::Duration hang = absl::Seconds(600);
  // When not empty, requests need "Authorization: Bearer <api_key>" (else 401).
  std::string api_key;
  int threads = 64;
  bool log_requests = false;
};

class StandinServer {
 public:
  StandinServer(StandinOptions options, Knowledge knowledge);
  ~StandinServer();
  StandinServer(const StandinServer&) = delete;
  StandinServer& operator=(const StandinServer&) = delete;

  // Binds the listening socket; returns the port (the chosen one when options.port is 0). The
  // start-up delay counts from here.
  absl::StatusOr<int> Bind();
  // Serves until Stop(). Call after Bind().
  void Serve();
  // Thread-safe; also wakes requests that sleep (latency, hangs).
  void Stop();

  int port() const { return port_; }
  std::string base_url() const;
  nlohmann::json Stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct PromptCount {
    int64_t received = 0;
    int64_t answered = 0;
  };
  void HandleCompletion(const httplib::Request& req, httplib::Response& res, EndpointType type);
  bool Ready() const;
  // Sleeps `d` unless Stop() comes first; returns false when stopped.
  bool Sleep(absl::Duration d) const ABSL_LOCKS_EXCLUDED(mu_);

  StandinOptions options_;
  Knowledge knowledge_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  absl::Time ready_at_ = absl::InfinitePast();

  mutable absl::Mutex mu_;
  mutable absl::CondVar cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  int64_t http_requests_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t completion_requests_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t answered_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t answered_correct_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t answered_unknown_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t errors_injected_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hangs_injected_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rejected_starting_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rejected_other_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, PromptCount> per_prompt_ ABSL_GUARDED_BY(mu_);
};

}  // namespace evalctl::runner
