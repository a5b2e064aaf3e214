// `evalctl grant add|ls|revoke`: which Unix users besides their own a user's jobs may run as.
// Admins add and revoke grants; everyone lists their own (admins anyone's).
//
//   GrantCommands grants;
//   grants.Register(app);                  // adds `grant` and its subcommands to the CLI
//   ... app.parse(...) ...
//   if (grants.parsed()) return grants.Run(client, io);
//
// Thread-compatible.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "clients/cli/commands.h"
#include "clients/cpp/client.h"

namespace CLI {
class App;
}

namespace evalctl::cli {

class GrantCommands {
 public:
  void Register(CLI::App& app);
  // One of the subcommands was given.
  bool parsed() const;
  absl::Status Run(client::Client& client, const Io& io);

 private:
  CLI::App* add_ = nullptr;
  CLI::App* ls_ = nullptr;
  CLI::App* revoke_ = nullptr;
  std::string user_;
  std::string unix_user_;
  bool all_ = false;
  bool json_ = false;
};

}  // namespace evalctl::cli
