// Unix accounts for tests that need a user other than the one running them: SSH logins (the
// machine's own accounts may have slow or broken shell startup files), jobs run as another user.
//
//   ASSIGN_OR_RETURN(TestAccount a, EnsureTestAccount("evalctl-test"));
//   // a.name logs in with /bin/bash; its ~/.bashrc, ~/.profile, ~/.bash_profile hold what
//   // the test wrote (here: nothing that runs), whatever the machine's root has in its own.
//   RETURN_IF_ERROR(GiveTo(a, output_dir));  // the account may now write there
//
// An account is created once per machine (useradd, as a system account with its own group, home
// /var/lib/evalctl-test/<name>, no password login) and kept, so concurrent tests share it;
// creation is serialised by a lock file. Each call rewrites its startup files (atomically, so a
// login that reads them meanwhile sees the old or the new ones), so they are what the test says
// even after an earlier test used the account; tests that run at the same time and want other
// startup files use another account name. Creating an account needs root; without it an
// existing account is used as it is, and a missing one is FAILED_PRECONDITION.
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace evalctl::testing {

struct TestAccount {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

// The account `name` (created when missing), with `startup` as the content of each of its shell
// startup files (.bashrc, .bash_profile, .profile). Names must be valid user names.
absl::StatusOr<TestAccount> EnsureTestAccount(absl::string_view name,
                                              absl::string_view startup = "");

// Makes `path` (and, for a directory, everything below it) belong to the account.
absl::Status GiveTo(const TestAccount& account, const std::string& path);

}  // namespace evalctl::testing
