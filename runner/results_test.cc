#include "runner/results.h"

#include <cmath>

#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace evalctl::runner {
namespace {

TEST(MakeScoreTest, MeanAndStandardError) {
  Score score = MakeScore(200, 160, 3);
  EXPECT_DOUBLE_EQ(score.value, 0.8);
  EXPECT_NEAR(score.stderr_value, std::sqrt(0.8 * 0.2 / 199), 1e-12);
  EXPECT_EQ(score.no_answer, 3);
  EXPECT_DOUBLE_EQ(MakeScore(0, 0, 0).value, 0);
  EXPECT_DOUBLE_EQ(MakeScore(1, 1, 0).stderr_value, 0);
}

TEST(ShellJoinTest, QuotesWhatNeedsIt) {
  EXPECT_EQ(ShellJoin({"evalctl-runner", "--task", "arithmetic", "--system-prompt", "Be brief.",
                       "it's"}),
            "evalctl-runner --task arithmetic --system-prompt 'Be brief.' 'it'\\''s'");
  EXPECT_EQ(ShellJoin({"a", ""}), "a ''");
}

TEST(RenderResultsYamlTest, NemoEvaluatorLayout) {
  RunDescription run;
  run.task = "arithmetic";
  run.command = "evalctl-runner --task arithmetic";
  run.output_dir = "/results";
  run.dataset_path = "/data/arithmetic.jsonl";
  run.format = Format::kExactMatch;
  run.num_items = 200;
  run.limit = 200;
  run.model_id = "meta/llama";
  run.endpoint_type = EndpointType::kCompletions;
  run.url = "http://127.0.0.1:8000/v1/completions";
  run.api_key_name = "MY_KEY";
  run.concurrency = 8;
  run.request_timeout_s = 60;
  run.max_retries = 5;
  YAML::Node doc = YAML::Load(RenderResultsYaml(run, MakeScore(200, 163, 1)));

  YAML::Node acc = doc["results"]["tasks"]["arithmetic"]["metrics"]["accuracy"]["scores"]["acc"];
  ASSERT_TRUE(acc.IsMap());
  EXPECT_DOUBLE_EQ(acc["value"].as<double>(), 163.0 / 200.0);
  EXPECT_EQ(acc["stats"]["count"].as<int>(), 200);
  EXPECT_EQ(acc["stats"]["sum"].as<int>(), 163);
  EXPECT_NEAR(acc["stats"]["stderr"].as<double>(), std::sqrt(0.815 * 0.185 / 199), 1e-9);
  EXPECT_EQ(doc["command"].as<std::string>(), "evalctl-runner --task arithmetic");
  EXPECT_EQ(doc["config"]["type"].as<std::string>(), "arithmetic");
  EXPECT_EQ(doc["config"]["params"]["limit_samples"].as<int>(), 200);
  EXPECT_EQ(doc["config"]["params"]["parallelism"].as<int>(), 8);
  EXPECT_EQ(doc["config"]["params"]["extra"]["format"].as<std::string>(), "exact");
  EXPECT_TRUE(doc["config"]["params"]["top_p"].IsNull());
  EXPECT_EQ(doc["target"]["api_endpoint"]["model_id"].as<std::string>(), "meta/llama");
  EXPECT_EQ(doc["target"]["api_endpoint"]["type"].as<std::string>(), "completions");
  EXPECT_EQ(doc["target"]["api_endpoint"]["url"].as<std::string>(),
            "http://127.0.0.1:8000/v1/completions");
  EXPECT_EQ(doc["target"]["api_endpoint"]["api_key_name"].as<std::string>(), "MY_KEY");
}

TEST(RenderResultsYamlTest, QuotesAwkwardStrings) {
  RunDescription run;
  run.task = "my: task";
  run.command = "x --system-prompt 'a: b # c'";
  run.model_id = "{weird}";
  YAML::Node doc = YAML::Load(RenderResultsYaml(run, MakeScore(1, 1, 0)));
  EXPECT_EQ(doc["command"].as<std::string>(), run.command);
  EXPECT_TRUE(doc["results"]["tasks"]["my: task"].IsMap());
  EXPECT_EQ(doc["target"]["api_endpoint"]["model_id"].as<std::string>(), "{weird}");
  EXPECT_TRUE(doc["config"]["params"]["limit_samples"].IsNull());
}

}  // namespace
}  // namespace evalctl::runner
