#include "runner/results.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "yaml-cpp/yaml.h"

namespace evalctl::runner {

Score MakeScore(int64_t count, int64_t correct, int64_t no_answer) {
  Score score;
  score.count = count;
  score.correct = correct;
  score.no_answer = no_answer;
  if (count > 0) score.value = static_cast<double>(correct) / static_cast<double>(count);
  if (count > 1) {
    score.stderr_value =
        std::sqrt(score.value * (1.0 - score.value) / static_cast<double>(count - 1));
  }
  return score;
}

std::string ShellJoin(const std::vector<std::string>& argv) {
  std::vector<std::string> quoted;
  quoted.reserve(argv.size());
  for (const std::string& arg : argv) {
    bool plain = !arg.empty();
    for (char c : arg) {
      if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
            c == '.' || c == '/' || c == '=' || c == ':' || c == ',' || c == '@' || c == '+')) {
        plain = false;
        break;
      }
    }
    quoted.push_back(plain ? arg : absl::StrCat("'", absl::StrReplaceAll(arg, {{"'", "'\\''"}}), "'"));
  }
  return absl::StrJoin(quoted, " ");
}

std::string RenderResultsYaml(const RunDescription& run, const Score& score) {
  YAML::Emitter out;
  out.SetDoublePrecision(10);
  out << YAML::BeginMap;
  out << YAML::Key << "command" << YAML::Value << run.command;

  out << YAML::Key << "config" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << run.task;
  out << YAML::Key << "framework_name" << YAML::Value << "evalctl-runner";
  out << YAML::Key << "output_dir" << YAML::Value << run.output_dir;
  out << YAML::Key << "endpoint_type" << YAML::Value << EndpointTypeName(run.endpoint_type);
  out << YAML::Key << "supported_endpoint_types" << YAML::Value << YAML::Flow << YAML::BeginSeq
      << "chat" << "completions" << YAML::EndSeq;
  out << YAML::Key << "params" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "limit_samples" << YAML::Value;
  if (run.limit.has_value()) {
    out << *run.limit;
  } else {
    out << YAML::Null;
  }
  out << YAML::Key << "max_new_tokens" << YAML::Value << run.generation.max_tokens;
  out << YAML::Key << "temperature" << YAML::Value << run.generation.temperature;
  out << YAML::Key << "top_p" << YAML::Value;
  if (run.generation.top_p.has_value()) {
    out << *run.generation.top_p;
  } else {
    out << YAML::Null;
  }
  out << YAML::Key << "parallelism" << YAML::Value << run.concurrency;
  out << YAML::Key << "request_timeout" << YAML::Value << run.request_timeout_s;
  out << YAML::Key << "max_retries" << YAML::Value << run.max_retries;
  out << YAML::Key << "extra" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dataset" << YAML::Value << run.dataset_path;
  out << YAML::Key << "format" << YAML::Value << FormatName(run.format);
  out << YAML::Key << "num_items" << YAML::Value << run.num_items;
  out << YAML::EndMap;  // extra
  out << YAML::EndMap;  // params
  out << YAML::EndMap;  // config

  out << YAML::Key << "results" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "tasks" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << run.task << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "metrics" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "accuracy" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "scores" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "acc" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "value" << YAML::Value << score.value;
  out << YAML::Key << "stats" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "count" << YAML::Value << score.count;
  out << YAML::Key << "sum" << YAML::Value << score.correct;
  out << YAML::Key << "mean" << YAML::Value << score.value;
  out << YAML::Key << "stderr" << YAML::Value << score.stderr_value;
  out << YAML::Key << "no_answer" << YAML::Value << score.no_answer;
  out << YAML::EndMap;  // stats
  out << YAML::EndMap;  // acc
  out << YAML::EndMap;  // scores
  out << YAML::EndMap;  // accuracy
  out << YAML::EndMap;  // metrics
  out << YAML::EndMap;  // task
  out << YAML::EndMap;  // tasks
  out << YAML::EndMap;  // results

  out << YAML::Key << "target" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "api_endpoint" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "model_id" << YAML::Value << run.model_id;
  out << YAML::Key << "type" << YAML::Value << EndpointTypeName(run.endpoint_type);
  out << YAML::Key << "url" << YAML::Value << run.url;
  out << YAML::Key << "api_key_name" << YAML::Value;
  if (run.api_key_name.empty()) {
    out << YAML::Null;
  } else {
    out << run.api_key_name;
  }
  out << YAML::EndMap;  // api_endpoint
  out << YAML::EndMap;  // target
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace evalctl::runner
