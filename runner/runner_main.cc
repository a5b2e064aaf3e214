// evalctl-runner: a small evaluation harness. Runs one benchmark task from a JSONL dataset against
// an OpenAI-compatible endpoint (chat or completions), resumably, and writes results.yml in
// nemo-evaluator's layout. See runner/README.md.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <iostream>
#include <optional>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "runner/dataset.h"
#include "runner/run_config.h"
#include "runner/runner.h"

namespace {

constexpr const char* kFooter = R"(Environment (flags win):
  EVALCTL_ENDPOINT_URL   full URL of the endpoint route, e.g. http://127.0.0.1:8000/v1/chat/completions
                         (a URL ending in /v1 or without a path gets the route of the endpoint type)
  EVALCTL_MODEL_ID       model id to send
  EVALCTL_RESULTS_DIR    where the cache, the progress file and the results go
  EVALCTL_ENDPOINT_TYPE  chat or completions (default: from the URL's route, else chat)
  EVALCTL_API_KEY_NAME   name of the variable that holds the API key (sent as a Bearer token)
  EVALCTL_RUN_CONFIG     YAML with nemo-evaluator's config.params: limit_samples, max_new_tokens,
                         temperature, top_p, parallelism, request_timeout, max_retries (flags win)
  EVALCTL_DATASETS_DIR   where to find datasets given by name (--dataset arithmetic)

Files in the results directory:
  cache/responses.jsonl  every answer, append-only; a rerun sends only what is missing
  progress               one integer: distinct requests answered so far (atomic rewrite)
  results.yml            nemo-evaluator layout, metric accuracy / score acc (when finished)
  samples.jsonl          per item: expected, extracted answer, correct, response
  eval_factory_metrics.json  request counts and timings of this attempt

Exit codes:
  0  finished, results.yml written
  1  bad flags, configuration or dataset
  2  the endpoint failed after retries, or is not an OpenAI-compatible endpoint
     (connection refused, HTTP 404 on the route, non-JSON answers, other HTTP 4xx)
  3  interrupted by SIGTERM, SIGINT or SIGUSR1 (Slurm's pre-timeout warning): no new requests,
     requests in flight drained (bounded by --drain-timeout-s), cache and progress flushed;
     run the same command again to continue
  4  the results directory cannot be used (I/O error, or another runner holds its lock))";

// Slurm sends a step's processes SIGTERM twice, milliseconds apart (slurmstepd, then srun).
constexpr absl::Duration kRepeatedSignalWindow = absl::Seconds(1);

const char* SignalName(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal";
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace evalctl::runner;

  // Signals are taken by a dedicated thread (sigtimedwait), so they must be blocked before any
  // other thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  CLI::App app{
      "evalctl-runner: runs one benchmark task from a JSONL dataset against an OpenAI-compatible "
      "endpoint (chat or completions) and writes results.yml in nemo-evaluator's layout. "
      "Resumable: answers are cached in the results directory, and a rerun sends only the "
      "missing requests."};
  app.footer(kFooter);
  app.set_version_flag("--version", "evalctl-runner 0.1.0");

  RunnerOptions options;
  std::string dataset;
  std::string format = "auto";
  std::string endpoint_type;
  std::string run_config;
  std::string datasets_dir;
  int64_t limit = 0;
  double request_timeout_s = 120;
  double connect_timeout_s = 10;
  double drain_timeout_s = 20;
  double retry_base_ms = 500;
  double retry_max_ms = 16000;
  double sync_interval_ms = 2000;
  double log_interval_s = 10;
  double top_p = 1.0;

  app.add_option("--task", options.task, "Task name in results.yml (default: the dataset's name)");
  app.add_option("--dataset", dataset,
                 "Dataset: a JSONL file, or the name of a bundled one (arithmetic, "
                 "unit_conversion, arithmetic_mc)")
      ->required();
  app.add_option("--format", format, "mc, exact, or auto (from the first item)")
      ->check(CLI::IsMember({"mc", "exact", "auto", "multiple_choice", "exact_match"}))
      ->capture_default_str();
  app.add_option("--limit", limit, "Use only the first N items");
  app.add_option("--endpoint-url", options.endpoint_url, "Endpoint URL")
      ->envname("EVALCTL_ENDPOINT_URL");
  app.add_option("--model-id", options.model_id, "Model id to send")->envname("EVALCTL_MODEL_ID");
  app.add_option("--endpoint-type", endpoint_type, "chat or completions")
      ->envname("EVALCTL_ENDPOINT_TYPE");
  app.add_option("--results-dir", options.results_dir, "Results directory")
      ->envname("EVALCTL_RESULTS_DIR");
  app.add_option("--api-key-name", options.api_key_name,
                 "Name of the environment variable holding the API key")
      ->envname("EVALCTL_API_KEY_NAME");
  app.add_option("--run-config", run_config, "YAML with config.params (nemo-evaluator style)")
      ->envname("EVALCTL_RUN_CONFIG");
  app.add_option("--datasets-dir", datasets_dir, "Directory of datasets given by name")
      ->envname("EVALCTL_DATASETS_DIR");
  app.add_option("--concurrency", options.concurrency, "Requests in flight at once")
      ->capture_default_str();
  app.add_option("--request-timeout-s", request_timeout_s, "Timeout of one request")
      ->capture_default_str();
  app.add_option("--connect-timeout-s", connect_timeout_s, "Timeout to connect")
      ->capture_default_str();
  app.add_option("--max-retries", options.max_retries,
                 "Retries per request on connection errors, timeouts, HTTP 5xx and 429")
      ->capture_default_str();
  app.add_option("--retry-base-ms", retry_base_ms, "Backoff before the first retry (doubles)")
      ->capture_default_str();
  app.add_option("--retry-max-ms", retry_max_ms, "Longest backoff")->capture_default_str();
  app.add_option("--max-tokens", options.generation.max_tokens, "max_tokens of each request")
      ->capture_default_str();
  app.add_option("--temperature", options.generation.temperature, "Sampling temperature")
      ->capture_default_str();
  app.add_option("--top-p", top_p, "top_p (not sent unless given)");
  app.add_option("--system-prompt", options.generation.system_prompt,
                 "System message for chat requests");
  app.add_option("--drain-timeout-s", drain_timeout_s,
                 "On SIGTERM/SIGUSR1: how long requests in flight may still finish")
      ->capture_default_str();
  app.add_option("--cache-sync-every", options.store.sync_every,
                 "fsync the cache after this many answers")
      ->capture_default_str();
  app.add_option("--cache-sync-interval-ms", sync_interval_ms,
                 "...or after this long, whichever comes first")
      ->capture_default_str();
  app.add_option("--log-interval-s", log_interval_s, "Progress log period")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  options.argv.assign(argv, argv + argc);
  if (app.count("--limit") > 0) options.limit = limit;
  if (app.count("--top-p") > 0) options.generation.top_p = top_p;
  options.request_timeout = absl::Seconds(request_timeout_s);
  options.connect_timeout = absl::Seconds(connect_timeout_s);
  options.drain_timeout = absl::Seconds(drain_timeout_s);
  options.retry_base = absl::Milliseconds(retry_base_ms);
  options.retry_max = absl::Milliseconds(retry_max_ms);
  options.store.sync_interval = absl::Milliseconds(sync_interval_ms);
  options.log_interval = absl::Seconds(log_interval_s);
  if (options.store.sync_every < 1) options.store.sync_every = 1;

  if (format != "auto") {
    auto parsed = ParseFormat(format);
    if (!parsed.ok()) {
      LOG(ERROR) << parsed.status().message();
      return kExitUsage;
    }
    options.format = *parsed;
  }
  if (!endpoint_type.empty()) {
    auto parsed = ParseEndpointType(endpoint_type);
    if (!parsed.ok()) {
      LOG(ERROR) << parsed.status().message();
      return kExitUsage;
    }
    options.endpoint_type = *parsed;
  }
  if (!run_config.empty()) {
    std::ifstream in(run_config);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
      LOG(ERROR) << "run config " << run_config << " (EVALCTL_RUN_CONFIG / --run-config): cannot read";
      return kExitUsage;
    }
    absl::Status status = ApplyRunConfig(
        text.str(), [&](const std::string& flag) { return app.count(flag) > 0; }, options);
    if (!status.ok()) {
      LOG(ERROR) << run_config << ": " << status.message();
      return kExitUsage;
    }
  }
  auto path = ResolveDatasetPath(dataset, DatasetSearchDirs(datasets_dir));
  if (!path.ok()) {
    LOG(ERROR) << path.status().message();
    return kExitUsage;
  }
  options.dataset_path = *path;

  StopSignal stop;
  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    while (!done.load()) {
      timespec wait = {0, 50'000'000};
      int sig = ::sigtimedwait(&signals, nullptr, &wait);
      if (sig <= 0) continue;
      const bool first = stop.request_count() == 0;
      if (!stop.RequestBySignal(absl::StrCat("received ", SignalName(sig)), absl::Now(),
                                kRepeatedSignalWindow)) {
        LOG(WARNING) << "received " << SignalName(sig) << " again within "
                     << absl::FormatDuration(kRepeatedSignalWindow)
                     << ": the same stop (a second signal after that cuts requests in flight)";
      } else if (first) {
        LOG(WARNING) << "received " << SignalName(sig)
                     << ": finishing the requests in flight, then flushing and exiting with code "
                     << kExitInterrupted;
      } else {
        LOG(WARNING) << "received " << SignalName(sig) << " again: cutting requests in flight";
      }
    }
  });

  RunOutcome outcome = RunEvaluation(options, stop);
  done.store(true);
  signal_thread.join();

  if (outcome.exit_code == kExitOk) {
    LOG(INFO) << outcome.message;
  } else if (outcome.exit_code == kExitInterrupted) {
    LOG(WARNING) << outcome.message;
  } else {
    LOG(ERROR) << "evalctl-runner failed (exit code " << outcome.exit_code
               << "): " << outcome.message;
  }
  return outcome.exit_code;
}
