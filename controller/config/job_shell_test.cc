#include "controller/config/job_shell.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::config {
namespace {

// Whether `text` holds an @NAME@ token (NAME: capitals and '_').
bool HasToken(absl::string_view text) {
  for (size_t at = text.find('@'); at != absl::string_view::npos; at = text.find('@', at + 1)) {
    size_t end = at + 1;
    while (end < text.size() && (absl::ascii_isupper(text[end]) || text[end] == '_')) ++end;
    if (end > at + 1 && end < text.size() && text[end] == '@') return true;
  }
  return false;
}

// Each file of the job's shell code passes shellcheck on its own, with its tokens resolved.
// Variables that a library sets for the job's main part, or reads from it, are the only
// findings allowed here (SC2034, SC2153, SC2154); rendered scripts are checked whole, with no
// exception (RenderTest.EveryScriptPassesShellcheckAndBashN).
TEST(JobShellTest, EveryFilePassesShellcheckOnItsOwn) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/job_shell_", ::getpid());
  std::filesystem::create_directories(dir);
  const std::pair<const char*, absl::string_view> files[] = {{"lib.sh", JobLibrary()},
                                                             {"deploy_lib.sh", JobDeployLibrary()},
                                                             {"server_driver.sh", ServerDriver()},
                                                             {"eval_driver.sh", EvalDriver()}};
  for (const auto& [name, text] : files) {
    SCOPED_TRACE(name);
    const std::string resolved = ResolveJobTokens(text);
    EXPECT_FALSE(HasToken(resolved)) << "an unresolved token";
    const std::string path = absl::StrCat(dir, "/", name);
    std::ofstream(path) << resolved;
    auto r =
        RunSubprocess({.argv = {"shellcheck", "-s", "bash", "-e", "SC2034,SC2153,SC2154", path},
                       .timeout = absl::Seconds(60)});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 0) << r->stdout_data << r->stderr_data;
  }
  std::filesystem::remove_all(dir);
}

TEST(JobShellTest, TokensBecomeTheContractsValues) {
  EXPECT_TRUE(HasToken("return @EXIT_INTERRUPTED@"));
  EXPECT_FALSE(HasToken("for a in \"$@\"; do echo \"${x[@]}\"; done"));
  EXPECT_EQ(ResolveJobTokens("return @EXIT_INTERRUPTED@; cat @PHASE_FILE@"),
            "return 123; cat .evalctl/phase");
}

}  // namespace
}  // namespace evalctl::config
