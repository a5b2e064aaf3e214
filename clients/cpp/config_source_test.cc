// Building a run's ConfigSource from a config file on disk.
#include "clients/cpp/config_source.h"

#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::client {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::IsSubsetOf;
using ::testing::Key;
using ::testing::Not;

void Write(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << content;
}

std::vector<std::string> Keys(const google::protobuf::Map<std::string, std::string>& map) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : map) keys.push_back(k);
  return keys;
}

class ConfigSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("evalctl_config_source_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    fs::remove_all(dir_);
    for (const char* name : {"EVALCTL_T_FILE", "EVALCTL_T_HOST", "EVALCTL_T_GROUP",
                             "EVALCTL_T_OVERRIDE", "EVALCTL_T_UNRELATED", "EVALCTL_T_UNSET"}) {
      ::unsetenv(name);
    }
    if (saved_user_) ::setenv("USER", saved_user_->c_str(), 1);
  }
  void UnsetUser() {
    if (const char* u = std::getenv("USER")) saved_user_ = u;
    ::unsetenv("USER");
  }

  fs::path dir_;
  std::optional<std::string> saved_user_;
};

TEST_F(ConfigSourceTest, SendsOnlyTheReferencedEnvironment) {
  Write(dir_ / "my.yaml",
        "defaults:\n  - deployment: mine\n  - _self_\n"
        "execution:\n  account: ${oc.env:EVALCTL_T_FILE}\n"
        "evaluation:\n  env_vars:\n    TOKEN: host:EVALCTL_T_HOST\n    MISSING: "
        "host:EVALCTL_T_UNSET\n");
  Write(dir_ / "deployment" / "mine.yaml", "served_model_name: ${oc.env:EVALCTL_T_GROUP}\n");
  ::setenv("EVALCTL_T_FILE", "acct", 1);
  ::setenv("EVALCTL_T_HOST", "secret-token", 1);
  ::setenv("EVALCTL_T_GROUP", "mymodel", 1);
  ::setenv("EVALCTL_T_OVERRIDE", "from-override", 1);
  ::setenv("EVALCTL_T_UNRELATED", "must-not-be-sent", 1);
  ::unsetenv("EVALCTL_T_UNSET");
  UnsetUser();

  absl::StatusOr<v1::ConfigSource> source =
      BuildConfigSource({.path = (dir_ / "my.yaml").string(),
                         .overrides = {"execution.partition=${oc.env:EVALCTL_T_OVERRIDE}"},
                         .task_filter = {"hellaswag"}});
  ASSERT_TRUE(source.ok()) << source.status();

  const auto& env = source->environment();
  EXPECT_EQ(env.at("EVALCTL_T_FILE"), "acct");
  EXPECT_EQ(env.at("EVALCTL_T_HOST"), "secret-token");
  EXPECT_EQ(env.at("EVALCTL_T_GROUP"), "mymodel");
  EXPECT_EQ(env.at("EVALCTL_T_OVERRIDE"), "from-override");
  EXPECT_THAT(env, Not(Contains(Key("EVALCTL_T_UNRELATED"))));
  EXPECT_THAT(env, Not(Contains(Key("EVALCTL_T_UNSET"))));
  // USER comes from the password database when the environment lacks it.
  const passwd* pw = ::getpwuid(::getuid());
  ASSERT_NE(pw, nullptr);
  EXPECT_EQ(env.at("USER"), pw->pw_name);

  // Nothing outside what the config (or the built-in groups) references.
  config::LoadRequest request;
  request.yaml = source->yaml();
  request.overrides = {source->overrides().begin(), source->overrides().end()};
  for (const v1::ConfigFile& f : source->group_files()) request.user_groups[f.path()] = f.content();
  std::vector<std::string> allowed = config::ReferencedEnvironment(request);
  allowed.push_back("USER");
  EXPECT_THAT(Keys(env), IsSubsetOf(allowed));

  EXPECT_EQ(source->file_name(), (dir_ / "my.yaml").string());
  EXPECT_THAT(source->overrides(),
              ::testing::ElementsAre("execution.partition=${oc.env:EVALCTL_T_OVERRIDE}"));
  EXPECT_THAT(source->task_filter(), ::testing::ElementsAre("hellaswag"));
  ASSERT_EQ(source->group_files_size(), 1);
  EXPECT_EQ(source->group_files(0).path(), "deployment/mine.yaml");
  EXPECT_EQ(source->group_files(0).content(), "served_model_name: ${oc.env:EVALCTL_T_GROUP}\n");
}

TEST_F(ConfigSourceTest, ExtraGroupDirectoriesAreSearchedToo) {
  Write(dir_ / "conf" / "my.yaml", "execution:\n  hostname: h\n");
  Write(dir_ / "shared" / "deployment" / "team.yaml", "port: 9000\n");
  absl::StatusOr<config::LoadRequest> request = LoadConfigRequest(
      {.path = (dir_ / "conf" / "my.yaml").string(), .group_dirs = {(dir_ / "shared").string()}});
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->user_groups.at("deployment/team.yaml"), "port: 9000\n");
}

TEST_F(ConfigSourceTest, FileErrorsNameTheFile) {
  absl::StatusOr<v1::ConfigSource> missing =
      BuildConfigSource({.path = (dir_ / "no.yaml").string()});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), (dir_ / "no.yaml").string() + ": no such file");
  absl::StatusOr<v1::ConfigSource> directory = BuildConfigSource({.path = dir_.string()});
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(directory.status().message(), dir_.string() + ": not a regular file");
}

}  // namespace
}  // namespace evalctl::client
