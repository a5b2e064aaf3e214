#include "common/testing/test_account.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/subprocess.h"

namespace evalctl::testing {
namespace {

constexpr char kBase[] = "/var/lib/evalctl-test";

std::optional<TestAccount> Lookup(const std::string& name) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return TestAccount{.name = name, .uid = pw.pw_uid, .gid = pw.pw_gid, .home = pw.pw_dir};
}

absl::StatusOr<TestAccount> Create(const std::string& name) {
  std::error_code ec;
  std::filesystem::create_directories(kBase, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", kBase, ": ", ec.message()));
  ASSIGN_OR_RETURN(auto lock, FileLock::Acquire(absl::StrCat(kBase, "/.lock"),
                                                "the test accounts' lock", /*wait=*/true));
  if (auto found = Lookup(name)) return *found;  // another test created it meanwhile
  const std::string home = absl::StrCat(kBase, "/", name);
  // A system account with its own group; '*' is no password at all (key logins only), where
  // useradd's default '!' would make sshd refuse the account as locked.
  ASSIGN_OR_RETURN(
      SubprocessResult r,
      RunSubprocess({.argv = {"useradd", "--system", "--user-group", "--shell", "/bin/bash",
                              "--home-dir", home, "--create-home", "--password", "*", name},
                     .timeout = absl::Seconds(60)}));
  RETURN_IF_ERROR(r.Check("useradd"));
  auto created = Lookup(name);
  if (!created) return absl::InternalError(absl::StrCat("useradd created no account ", name));
  return *created;
}

absl::Status WriteOwned(const TestAccount& account, const std::string& path,
                        absl::string_view data) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << data;
    f.close();
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (::geteuid() == 0 && ::chown(tmp.c_str(), account.uid, account.gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", tmp, ": ", std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TestAccount> EnsureTestAccount(absl::string_view name_view,
                                              absl::string_view startup) {
  const std::string name(name_view);
  std::optional<TestAccount> account = Lookup(name);
  if (!account) {
    if (::geteuid() != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("the test account ", name, " does not exist, and only root can create it"));
    }
    ASSIGN_OR_RETURN(account, Create(name));
  }
  if (::geteuid() != 0) return *account;
  std::error_code ec;
  std::filesystem::create_directories(account->home, ec);
  if (ec || ::chown(account->home.c_str(), account->uid, account->gid) != 0) {
    return absl::InternalError(absl::StrCat("cannot prepare the home ", account->home, " of ", name,
                                            ": ", ec ? ec.message() : std::strerror(errno)));
  }
  for (const char* file : {".bashrc", ".bash_profile", ".profile"}) {
    RETURN_IF_ERROR(WriteOwned(*account, absl::StrCat(account->home, "/", file), startup));
  }
  return *account;
}

absl::Status GiveTo(const TestAccount& account, const std::string& path) {
  auto give = [&](const std::filesystem::path& p) -> absl::Status {
    if (::lchown(p.c_str(), account.uid, account.gid) != 0) {
      return absl::InternalError(
          absl::StrCat("chown ", p.string(), " to ", account.name, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(give(path));
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return absl::OkStatus();
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    RETURN_IF_ERROR(give(it->path()));
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot walk ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace evalctl::testing
