// `evalctl token create|ls|revoke` and `evalctl cluster enroll`: bearer tokens for people and
// one-time enrollment tokens for agents, through the controller's AdminService.
//
//   RETURN_IF_ERROR(TokenCreateCommand(client, {.user = "alice", .ttl = absl::Hours(24 * 90)}, io));
//
// A new token's secret is printed once, alone on io.out (so that `> file` captures just it), or
// written to a 0600 file with `output`; what it is goes to io.err. Listings never hold secrets.
// Thread-compatible.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "clients/cli/commands.h"
#include "clients/cpp/client.h"

namespace evalctl::cli {

// `evalctl token create [--user U] [--admin] [--description D] [--ttl T] [--output FILE]`.
struct TokenCreateOptions {
  // Empty: the caller.
  std::string user;
  bool admin = false;
  std::string description;
  // Infinite: never expires.
  absl::Duration ttl = absl::InfiniteDuration();
  // Empty: print the token on io.out.
  std::string output;
};
absl::Status TokenCreateCommand(client::Client& client, const TokenCreateOptions& options,
                                const Io& io);

// `evalctl token ls [--user U | --all] [--json]`: the caller's tokens, or (admins) another
// user's or everybody's, agents' credentials and enrollment tokens included.
struct TokenLsOptions {
  std::string user;
  bool all = false;
  bool json = false;
};
absl::Status TokenLsCommand(client::Client& client, const TokenLsOptions& options, const Io& io);

// `evalctl token revoke ID...`: from the next call on, the tokens authenticate nobody.
absl::Status TokenRevokeCommand(client::Client& client, const std::vector<std::string>& ids,
                                const Io& io);

// `evalctl cluster enroll CLUSTER --unix-user U [--alias A]... [--ttl T] [--output FILE]`: a one-time token with which an agent
// of CLUSTER obtains its own credential at its first connection (`evalctl-agent --token-file`).
struct ClusterEnrollOptions {
  std::string cluster;
  std::string unix_user;
  std::vector<std::string> aliases;
  // Zero: the controller's default (one hour).
  absl::Duration ttl = absl::ZeroDuration();
  std::string output;
};
absl::Status ClusterEnrollCommand(client::Client& client, const ClusterEnrollOptions& options,
                                  const Io& io);

// A token lifetime: "never", or a number and a unit (30m, 12h, 90d, 2w), or an absl duration.
absl::StatusOr<absl::Duration> ParseTtl(absl::string_view text);

}  // namespace evalctl::cli
