// evalctl-runner's core: runs one benchmark task from a dataset file against an OpenAI-compatible
// endpoint, resumably (see response_store.h), and writes the results (see results.h).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "runner/dataset.h"
#include "runner/prompt.h"
#include "runner/response_store.h"
#include "runner/results.h"
#include "runner/stop_signal.h"

namespace evalctl::runner {

// Exit codes of evalctl-runner (all below 128: sacct reports exit codes modulo 128).
inline constexpr int kExitOk = 0;           // finished; results.yml written
inline constexpr int kExitUsage = 1;        // bad flags, configuration or dataset: a retry will not help
inline constexpr int kExitEndpoint = 2;     // the endpoint failed after retries, or is not an
                                            // OpenAI endpoint (refused, 404, not JSON, 4xx)
inline constexpr int kExitInterrupted = 3;  // SIGTERM/SIGINT/SIGUSR1: stopped early, cache and
                                            // progress flushed; run again to continue
inline constexpr int kExitIo = 4;           // cannot use the results directory (I/O error, locked)

struct RunnerOptions {
  // Task name in results.yml; default: the dataset file's name without extension.
  std::string task;
  // Path of the dataset file (already resolved).
  std::string dataset_path;
  std::optional<Format> format;  // unset: detected from the file
  std::optional<int64_t> limit;  // first N items only
  std::string endpoint_url;
  std::string model_id;
  std::optional<EndpointType> endpoint_type;  // unset: from the URL's route, else chat
  std::string results_dir;
  // Name of the environment variable that holds the API key (never the key itself).
  std::string api_key_name;
  GenerationParams generation;
  int concurrency = 8;
  absl::Duration request_timeout = absl::Seconds(120);
  absl::Duration connect_timeout = absl::Seconds(10);
  // Retries after the first attempt of a request, for connection errors, timeouts, 5xx and 429.
  int max_retries = 5;
  // Backoff before retry n: min(retry_max, retry_base * 2^(n-1)), half of it random (jitter).
  absl::Duration retry_base = absl::Milliseconds(500);
  absl::Duration retry_max = absl::Seconds(16);
  // After a stop request: how long requests in flight may take to finish before they are cut.
  absl::Duration drain_timeout = absl::Seconds(20);
  StoreOptions store;
  absl::Duration log_interval = absl::Seconds(10);
  // The command line, for results.yml.
  std::vector<std::string> argv;
};

struct RunStats {
  int64_t items = 0;
  int64_t unique_requests = 0;
  int64_t cached_at_start = 0;
  int64_t http_requests = 0;  // sent this attempt, retries included
  int64_t answered = 0;       // new answers this attempt
  int64_t retries = 0;
  std::map<std::string, int64_t> failures;  // by FailureKind name, this attempt
  double total_latency_ms = 0;
  double max_latency_ms = 0;
  int64_t progress = 0;  // durable answers for the planned requests, all attempts
};

struct RunOutcome {
  int exit_code = kExitOk;
  // The error, or a one-line summary of the score.
  std::string message;
  RunStats stats;
  std::optional<Score> score;
};

// Runs the task. `stop` may be requested from another thread (signals): no new requests are
// sent, requests in flight get `drain_timeout` to finish, everything is flushed and the outcome
// is kExitInterrupted. A second Request() cuts requests in flight at once.
RunOutcome RunEvaluation(const RunnerOptions& options, StopSignal& stop);

}  // namespace evalctl::runner
