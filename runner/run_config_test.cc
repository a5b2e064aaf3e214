#include "runner/run_config.h"

#include "gtest/gtest.h"

namespace evalctl::runner {
namespace {

TEST(ApplyRunConfigTest, ReadsNemoEvaluatorParams) {
  RunnerOptions options;
  absl::Status status = ApplyRunConfig(R"(
config:
  params:
    limit_samples: 10
    max_new_tokens: 64
    temperature: 0.5
    top_p: 0.9
    parallelism: 3
    request_timeout: 30
    max_retries: 2
    extra: {anything: [1, 2]}
target:
  api_endpoint: {url: http://x}
)",
                                       [](const std::string&) { return false; }, options);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(options.limit, 10);
  EXPECT_EQ(options.generation.max_tokens, 64);
  EXPECT_DOUBLE_EQ(options.generation.temperature, 0.5);
  EXPECT_EQ(options.generation.top_p, 0.9);
  EXPECT_EQ(options.concurrency, 3);
  EXPECT_EQ(options.request_timeout, absl::Seconds(30));
  EXPECT_EQ(options.max_retries, 2);
}

TEST(ApplyRunConfigTest, FlagsWinAndNullsAreIgnored) {
  RunnerOptions options;
  options.concurrency = 12;
  absl::Status status = ApplyRunConfig("params:\n  parallelism: 3\n  limit_samples: null\n",
                                       [](const std::string& flag) { return flag == "--concurrency"; },
                                       options);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(options.concurrency, 12);
  EXPECT_FALSE(options.limit.has_value());
}

TEST(ApplyRunConfigTest, EmptyOrUnrelatedFilesChangeNothing) {
  RunnerOptions options;
  auto none = [](const std::string&) { return false; };
  EXPECT_TRUE(ApplyRunConfig("", none, options).ok());
  EXPECT_TRUE(ApplyRunConfig("config: {type: x}\n", none, options).ok());
  EXPECT_EQ(options.concurrency, 8);
}

TEST(ApplyRunConfigTest, BadValuesAreErrors) {
  RunnerOptions options;
  auto none = [](const std::string&) { return false; };
  absl::Status status = ApplyRunConfig("config:\n  params:\n    parallelism: many\n", none, options);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("run config"), std::string::npos);
  EXPECT_FALSE(ApplyRunConfig("config: [unclosed\n", none, options).ok());
}

}  // namespace
}  // namespace evalctl::runner
