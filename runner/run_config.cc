#include "runner/run_config.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace evalctl::runner {

absl::Status ApplyRunConfig(const std::string& yaml_text,
                            const std::function<bool(const std::string&)>& flag_given,
                            RunnerOptions& options) {
  try {
    YAML::Node root = YAML::Load(yaml_text);
    if (!root.IsMap()) return absl::OkStatus();
    YAML::Node params = root["config"] && root["config"]["params"] ? root["config"]["params"]
                                                                    : root["params"];
    if (!params || !params.IsMap()) return absl::OkStatus();
    // The value of `key`, unless it is absent, null, or the command line set `flag`.
    auto take = [&](const char* key, const char* flag) -> std::optional<YAML::Node> {
      YAML::Node value = params[key];
      if (!value || value.IsNull() || flag_given(flag)) return std::nullopt;
      return value;
    };
    if (auto v = take("limit_samples", "--limit")) options.limit = v->as<int64_t>();
    if (auto v = take("max_new_tokens", "--max-tokens")) {
      options.generation.max_tokens = v->as<int>();
    }
    if (auto v = take("temperature", "--temperature")) {
      options.generation.temperature = v->as<double>();
    }
    if (auto v = take("top_p", "--top-p")) options.generation.top_p = v->as<double>();
    if (auto v = take("parallelism", "--concurrency")) options.concurrency = v->as<int>();
    if (auto v = take("request_timeout", "--request-timeout-s")) {
      options.request_timeout = absl::Seconds(v->as<double>());
    }
    if (auto v = take("max_retries", "--max-retries")) options.max_retries = v->as<int>();
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("run config: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace evalctl::runner
