// Output files of a finished run, in EVALCTL_RESULTS_DIR:
//
//   results.yml                 nemo-evaluator's layout:
//                                 command: <the runner's command line>
//                                 config: {type: <task>, framework_name: evalctl-runner,
//                                          output_dir, endpoint_type, params: {...}}
//                                 results: {tasks: {<task>: {metrics: {accuracy: {scores:
//                                   {acc: {value: <0..1>, stats: {count, sum, mean, stderr}}}}}}}}
//                                 target: {api_endpoint: {model_id, type, url, api_key_name}}
//   samples.jsonl               one line per item: id, expected, extracted, correct, response
//   eval_factory_metrics.json   request counts and timings (this attempt and all attempts)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "runner/dataset.h"
#include "runner/prompt.h"

namespace evalctl::runner {

struct Score {
  int64_t count = 0;
  int64_t correct = 0;
  // Items where no answer could be read from the response (counted as wrong).
  int64_t no_answer = 0;
  double value = 0;
  // Standard error of the mean: sqrt(p (1 - p) / (n - 1)); 0 for n < 2.
  double stderr_value = 0;
};

Score MakeScore(int64_t count, int64_t correct, int64_t no_answer);

struct RunDescription {
  std::string task;
  std::string command;
  std::string output_dir;
  std::string dataset_path;
  Format format = Format::kExactMatch;
  int64_t num_items = 0;
  std::optional<int64_t> limit;
  std::string model_id;
  EndpointType endpoint_type = EndpointType::kChat;
  std::string url;  // display form: no user info, no query
  std::string api_key_name;
  GenerationParams generation;
  int concurrency = 0;
  double request_timeout_s = 0;
  int max_retries = 0;
};

// The results.yml document.
std::string RenderResultsYaml(const RunDescription& run, const Score& score);

// Shell-quotes each argument and joins them with spaces (for the `command` key).
std::string ShellJoin(const std::vector<std::string>& argv);

}  // namespace evalctl::runner
