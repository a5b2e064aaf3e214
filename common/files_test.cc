#include "common/files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / absl::StrCat("evalctl_files_", ::getpid());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(FilesTest, PrivateFileIsMode0600AndReadsBackAsASecret) {
  const std::string path = Path("token");
  ASSERT_TRUE(WritePrivateFile(path, "  evalctl_abc_def \n").ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(*ReadSecretFile(path, "token file"), "evalctl_abc_def");
  // Replacing keeps the mode.
  ASSERT_TRUE(WritePrivateFile(path, "second").ok());
  EXPECT_EQ(*ReadFile(path, "token file"), "second");
}

TEST_F(FilesTest, SecretsOthersCanReadAreRefused) {
  const std::string path = Path("token");
  std::ofstream(path) << "evalctl_abc_def\n";
  ::chmod(path.c_str(), 0644);
  absl::StatusOr<std::string> secret = ReadSecretFile(path, "token file");
  EXPECT_EQ(secret.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(secret.status().message()),
              HasSubstr("the token file " + path + " is readable by other users (mode 0644)"));
}

TEST_F(FilesTest, MissingAndEmptyFilesAreNamed) {
  EXPECT_EQ(ReadFile(Path("none"), "CA bundle").status().message(),
            "cannot read the CA bundle " + Path("none"));
  ASSERT_TRUE(WritePrivateFile(Path("blank"), " \n").ok());
  EXPECT_EQ(ReadSecretFile(Path("blank"), "token file").status().message(),
            "the token file " + Path("blank") + " is empty");
  EXPECT_FALSE(WritePrivateFile(Path("no/such/dir/x"), "x").ok());
}

}  // namespace
}  // namespace evalctl
