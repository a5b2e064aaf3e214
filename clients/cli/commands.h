// The commands of the `evalctl` CLI, one function each, over the C++ client and output streams so
// that tests can run them against an in-process fake controller. The CLI11 wiring is in app.h.
//
//   Io io{std::cout, std::cerr, /*tty=*/true};
//   RETURN_IF_ERROR(StatusCommand(*client, {.ids = {"3f2a"}}, io));
//
// IDs are passed to the controller as the user typed them (any unique prefix of a 16-hex
// invocation id, or `<invocation>.<index>` for a task); the controller resolves them.
// Data goes to `io.out`, notes for a human (how to follow a run, a dropped stream being resumed)
// to `io.err`. Errors come back as absl::Status; the caller prints them.
//
// Thread-compatible: one command at a time per Io.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cpp/client.h"
#include "controller/config/catalog.h"
#include "evalctl/v1/eval_service.pb.h"

namespace evalctl::cli {

namespace v1 = ::evalctl::v1;

// Exit codes of `evalctl`.
inline constexpr int kExitOk = 0;
// The command failed: controller unreachable, id not found, ...
inline constexpr int kExitError = 1;
// Bad command line or configuration.
inline constexpr int kExitUsage = 2;
// `run --wait`: the invocation ran, and at least one task did not succeed.
inline constexpr int kExitTasksFailed = 3;

struct Io {
  std::ostream& out;
  std::ostream& err;
  // `out` is a terminal: `run --wait` redraws its table in place.
  bool tty = false;
  // Terminal width in columns; 0 when unknown (lines are not cut).
  int width = 0;
  // Time zone of displayed times (JSON is always UTC).
  absl::TimeZone tz = absl::LocalTimeZone();
};

// How a stream that drops (controller restart, network) is resumed.
struct ReconnectPolicy {
  // Consecutive attempts that receive nothing before giving up.
  int max_attempts = 8;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(10);
};

// GetInvocation of every task of `id` in `view`, read in pages of `page_size` tasks (a 100,000-task
// invocation is not one message). The tables read the BASIC view; JSON and `info` the FULL one.
absl::StatusOr<v1::Invocation> ReadInvocation(client::Client& client, const std::string& id,
                                              v1::InvocationView view, int page_size = 10000);

// `evalctl status [ID...] [--json]`: a table per invocation (Task ID | Name | State | Phase |
// Progress | Attempts | Slurm job | Reason); a task id shows that task. No id: the caller's
// `recent` newest invocations.
struct StatusOptions {
  std::vector<std::string> ids;
  bool json = false;
  int recent = 5;
};
absl::Status StatusCommand(client::Client& client, const StatusOptions& options, const Io& io);

// `evalctl ls runs [--limit N] [--since T]`: the caller's invocations, newest first.
struct LsRunsOptions {
  int limit = 20;
  std::optional<absl::Time> since;
  bool json = false;
};
absl::Status LsRunsCommand(client::Client& client, const LsRunsOptions& options, const Io& io);

// `evalctl ls tasks`: the task catalog (name, runtimes, description). Needs no controller.
struct LsTasksOptions {
  bool json = false;
};
absl::Status LsTasksCommand(const config::Catalog& catalog, const LsTasksOptions& options,
                            const Io& io);

// `evalctl watch [ID]`: one line per task event until every task is terminal (no id: all the
// caller's invocations, until interrupted). Resumes after the last sequence seen when the stream
// drops.
struct WatchOptions {
  std::string id;
  uint64_t after_sequence = 0;
  bool json = false;
  ReconnectPolicy reconnect;
};
absl::Status WatchCommand(client::Client& client, const WatchOptions& options, const Io& io);

// `evalctl logs ID [-f] [--which slurm|server|eval] [--attempt N]`: the log's raw bytes to out.
struct LogsOptions {
  std::string id;
  v1::LogKind kind = v1::LOG_KIND_SLURM;
  bool follow = false;
  // 0: the newest attempt.
  int attempt = 0;
};
absl::Status LogsCommand(client::Client& client, const LogsOptions& options, const Io& io);

// `evalctl kill ID`: cancels an invocation or a task and shows the tasks' states after it.
absl::Status KillCommand(client::Client& client, const std::string& id, const Io& io);

// `evalctl resume ID`: new attempts for failed, cancelled or budget-exhausted tasks.
absl::Status ResumeCommand(client::Client& client, const std::string& id, const Io& io);

// `evalctl info ID [--json]`: run directories, attempts with Slurm job ids, log paths, the
// resolved configuration.
struct InfoOptions {
  std::string id;
  bool json = false;
};
absl::Status InfoCommand(client::Client& client, const InfoOptions& options, const Io& io);

// `evalctl results ID [--json|--csv]`: one row per score.
enum class ResultsFormat { kTable, kJson, kCsv };
struct ResultsOptions {
  std::string id;
  ResultsFormat format = ResultsFormat::kTable;
};
absl::Status ResultsCommand(client::Client& client, const ResultsOptions& options, const Io& io);

// `evalctl cluster ls [--json]`: clusters with an agent.
struct ClusterLsOptions {
  bool json = false;
};
absl::Status ClusterLsCommand(client::Client& client, const ClusterLsOptions& options,
                              const Io& io);

// `evalctl run --config FILE [--wait]`: submits `source` with `request_id` (a fresh UUID when
// empty), prints the invocation id and how to follow it. With `wait`, shows a live task table
// until every task is terminal, then the final table and the results.
struct RunOptions {
  std::string request_id;
  bool wait = false;
  ReconnectPolicy reconnect;
};
struct RunOutcome {
  std::string invocation_id;
  // False when `wait` and a task did not succeed.
  bool all_succeeded = true;
};
absl::StatusOr<RunOutcome> RunCommand(client::Client& client, const v1::ConfigSource& source,
                                      const RunOptions& options, const Io& io);

}  // namespace evalctl::cli
