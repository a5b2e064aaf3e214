// evalctl-standin: a STAND-IN model server for demos and tests. NOT a model. See runner/README.md.
#include <pthread.h>
#include <signal.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "runner/dataset.h"
#include "runner/response_store.h"
#include "runner/standin_server.h"

namespace {

constexpr const char* kDescription =
    "evalctl-standin: a STAND-IN for an OpenAI-compatible model server, for demos and tests of "
    "evalctl. It is NOT a model and measures nothing.\n"
    "It answers the questions of evalctl's bundled benchmark datasets (and simple arithmetic it "
    "can parse) right with probability --accuracy, decided per prompt by a seeded hash, so reruns "
    "give identical answers. It can be slow (--latency-ms, --jitter-ms), slow to start "
    "(--startup-delay-s: /health is 503 until then) and unreliable on purpose (--error-rate: "
    "HTTP 500, --hang-rate: no answer for --hang-s).";

constexpr const char* kFooter = R"(Routes:
  POST /v1/chat/completions, POST /v1/completions   OpenAI-style answers (no streaming)
  GET  /v1/models                                   the served model (--model-name)
  GET  /health                                      503 during the start-up delay, then 200
  GET  /stats                                       JSON counters: http_requests, answered,
                                                    answered_correct, errors_injected,
                                                    hangs_injected, per_prompt {received, answered},
                                                    max_answers_per_prompt, duplicate_answers
Exit codes: 0 after SIGTERM/SIGINT (clean shutdown), 1 bad flags or datasets, 2 cannot listen.)";

}  // namespace

int main(int argc, char** argv) {
  using namespace evalctl::runner;

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  CLI::App app{kDescription};
  app.footer(kFooter);
  app.set_version_flag("--version", "evalctl-standin 0.1.0 (a stand-in, not a model)");

  StandinOptions options;
  std::string port_file;
  std::string api_key_env;
  std::vector<std::string> datasets_dirs;
  std::vector<std::string> datasets;
  bool no_bundled = false;
  double latency_ms = 0;
  double jitter_ms = 0;
  double startup_delay_s = 0;
  double hang_s = 600;

  app.add_option("--host", options.host, "Address to bind")->capture_default_str();
  app.add_option("--port", options.port, "Port; 0 picks a free one (printed, and see --port-file)")
      ->capture_default_str();
  app.add_option("--port-file", port_file, "Write the port here (atomically) once listening");
  app.add_option("--model-name", options.model_name, "Model name served by /v1/models")
      ->capture_default_str();
  app.add_flag("--strict-model", options.strict_model,
               "Answer 404 to requests for another model (as vLLM does)");
  app.add_option("--accuracy", options.accuracy, "Probability of a right answer, per prompt")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--seed", options.seed, "Seed of the per-prompt decisions")->capture_default_str();
  app.add_option("--latency-ms", latency_ms, "Time to answer")->capture_default_str();
  app.add_option("--jitter-ms", jitter_ms, "Latency varies uniformly by +- this")
      ->capture_default_str();
  app.add_option("--startup-delay-s", startup_delay_s, "Not ready (503) for this long")
      ->capture_default_str();
  app.add_option("--error-rate", options.error_rate, "Fraction of requests answered with HTTP 500")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--hang-rate", options.hang_rate,
                 "Fraction of requests left without an answer for --hang-s (past client timeouts)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--hang-s", hang_s, "How long a hung request hangs")->capture_default_str();
  app.add_option("--datasets-dir", datasets_dirs,
                 "Directory of JSONL datasets to know (default: the bundled ones)");
  app.add_option("--dataset", datasets, "Another JSONL dataset file to know (repeatable)");
  app.add_flag("--no-bundled-datasets", no_bundled, "Know only --dataset/--datasets-dir files");
  app.add_option("--api-key-env", api_key_env,
                 "Require 'Authorization: Bearer <key>' with the key from this environment variable");
  app.add_option("--threads", options.threads, "Request handler threads")->capture_default_str();
  app.add_flag("--log-requests", options.log_requests, "Log every answer");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 1;
  }
  options.latency = absl::Milliseconds(latency_ms);
  options.jitter = absl::Milliseconds(jitter_ms);
  options.startup_delay = absl::Seconds(startup_delay_s);
  options.hang = absl::Seconds(hang_s);
  if (!api_key_env.empty()) {
    const char* key = std::getenv(api_key_env.c_str());
    if (key == nullptr || *key == '\0') {
      LOG(ERROR) << "--api-key-env " << api_key_env << ": the variable is not set";
      return 1;
    }
    options.api_key = key;
  }

  Knowledge knowledge;
  std::vector<std::string> dirs = datasets_dirs;
  if (dirs.empty() && !no_bundled) {
    std::vector<std::string> found = DatasetSearchDirs("");
    if (!found.empty()) dirs.push_back(found.front());
  }
  for (const std::string& dir : dirs) {
    if (absl::Status status = knowledge.AddDirectory(dir); !status.ok()) {
      LOG(ERROR) << status.message();
      return 1;
    }
  }
  for (const std::string& file : datasets) {
    if (absl::Status status = knowledge.AddDataset(file); !status.ok()) {
      LOG(ERROR) << status.message();
      return 1;
    }
  }

  StandinServer server(options, std::move(knowledge));
  absl::StatusOr<int> port = server.Bind();
  if (!port.ok()) {
    LOG(ERROR) << port.status().message();
    return 2;
  }
  if (!port_file.empty()) {
    if (absl::Status status = WriteFileAtomically(port_file, absl::StrCat(*port, "\n"));
        !status.ok()) {
      LOG(ERROR) << status.message();
      return 1;
    }
  }
  std::cout << "listening on " << server.base_url() << std::endl;
  LOG(INFO) << "evalctl-standin (a stand-in for demos and tests, NOT a model) serving \""
            << options.model_name << "\" on " << server.base_url() << ": accuracy "
            << options.accuracy << ", seed " << options.seed << ", latency " << latency_ms
            << "ms +- " << jitter_ms << "ms, start-up delay " << startup_delay_s << "s, error rate "
            << options.error_rate << ", hang rate " << options.hang_rate;

  std::atomic<bool> serving_ended{false};
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (!serving_ended.load()) {
      LOG(INFO) << "received " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ": shutting down";
    }
    server.Stop();
  });
  server.Serve();
  serving_ended.store(true);
  // When serving ended without a signal (a listen error), wake the signal thread.
  ::kill(::getpid(), SIGTERM);
  signal_thread.join();
  nlohmann::json stats = server.Stats();
  LOG(INFO) << "stopped after " << stats["answered"] << " answers (" << stats["errors_injected"]
            << " injected errors, " << stats["hangs_injected"] << " injected hangs)";
  return 0;
}
