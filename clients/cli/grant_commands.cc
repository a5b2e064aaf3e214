#include "clients/cli/grant_commands.h"

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "clients/cli/format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace evalctl::cli {

void GrantCommands::Register(CLI::App& app) {
  CLI::App* grant = app.add_subcommand(
      "grant", "Which Unix users besides their own a user's jobs may run as");
  grant->footer("Example:\n  evalctl grant add alice svc-eval");
  grant->require_subcommand(1);
  add_ = grant->add_subcommand(
      "add", "Let USER's jobs run as the Unix user UNIX_USER (admins only)");
  add_->footer("Example:\n  evalctl grant add alice svc-eval");
  revoke_ = grant->add_subcommand("revoke", "Take a grant back (admins only)");
  revoke_->footer("Example:\n  evalctl grant revoke alice svc-eval");
  for (CLI::App* sub : {add_, revoke_}) {
    sub->add_option("user", user_, "The evalctl user (as their token names them)")->required();
    sub->add_option("unix_user", unix_user_, "The Unix account on the clusters")->required();
  }
  ls_ = grant->add_subcommand("ls", "List grants: yours, or (admins) a user's or everybody's");
  ls_->footer("Example:\n  evalctl grant ls --all");
  CLI::Option* user = ls_->add_option("--user", user_, "Another user's grants (admins)");
  ls_->add_flag("--all", all_, "Everybody's grants (admins)")->excludes(user);
  ls_->add_flag("--json", json_, "Print JSON");
}

bool GrantCommands::parsed() const {
  return add_ != nullptr && (add_->parsed() || ls_->parsed() || revoke_->parsed());
}

absl::Status GrantCommands::Run(client::Client& client, const Io& io) {
  if (add_->parsed()) {
    v1::GrantRunAsRequest request;
    request.set_user(user_);
    request.set_unix_user(unix_user_);
    ASSIGN_OR_RETURN(v1::RunAsGrant g, client.GrantRunAs(request));
    io.out << Cell(g.user()) << " may run jobs as the Unix user " << Cell(g.unix_user())
           << " (granted by " << Cell(g.granted_by()) << ")\n";
    return absl::OkStatus();
  }
  if (revoke_->parsed()) {
    v1::RevokeRunAsRequest request;
    request.set_user(user_);
    request.set_unix_user(unix_user_);
    ASSIGN_OR_RETURN(v1::RunAsGrant g, client.RevokeRunAs(request));
    io.out << Cell(g.user()) << " may no longer run jobs as " << Cell(g.unix_user()) << "\n";
    return absl::OkStatus();
  }
  v1::ListRunAsGrantsRequest request;
  request.set_user(all_ ? "*" : user_);
  ASSIGN_OR_RETURN(v1::ListRunAsGrantsResponse response, client.ListRunAsGrants(request));
  if (json_) {
    nlohmann::json j = nlohmann::json::array();
    for (const v1::RunAsGrant& g : response.grants()) {
      j.push_back({{"user", g.user()},
                   {"unix_user", g.unix_user()},
                   {"granted_by", g.granted_by()},
                   {"created_time", TimestampJson(g.created_time())}});
    }
    io.out << DumpJson(j, 2) << "\n";
    return absl::OkStatus();
  }
  if (response.grants_size() == 0) {
    io.out << "No grants: jobs run as the Unix user of the same name as their owner.\n";
    return absl::OkStatus();
  }
  Table table({"User", "Runs as", "Granted by", "Created"});
  for (const v1::RunAsGrant& g : response.grants()) {
    table.AddRow({Cell(g.user()), Cell(g.unix_user()), Cell(g.granted_by()),
                  FormatTimestamp(g.created_time(), io.tz)});
  }
  table.Print(io.out);
  return absl::OkStatus();
}

}  // namespace evalctl::cli
