// Reading what a job writes in its run directory: the phase file, the progress counter,
// artifacts/results.yml and the logs. Everything here treats the files as hostile: sizes are
// capped, symlinks are not followed, and paths never leave the run directory.
// Thread-safe (no state).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "evalctl/v1/agent_service.pb.h"
#include "evalctl/v1/types.pb.h"

namespace evalctl::agent {

// Reads a small regular file inside `run_dir` (relative path without `..`, no symlink on any of
// its components, at most `max_bytes`). NOT_FOUND when it does not exist, PERMISSION_DENIED for a
// symlink or a file that is not regular, RESOURCE_EXHAUSTED when it is larger.
absl::StatusOr<std::string> ReadRunFile(const std::string& run_dir, const std::string& relative,
                                        size_t max_bytes);

// `.evalctl/phase` → Phase; PHASE_UNSPECIFIED when absent or unreadable.
v1::Phase ReadPhase(const std::string& run_dir);

// `artifacts/progress` (an integer, as in NEL); nullopt when absent or malformed.
std::optional<int64_t> ReadProgress(const std::string& run_dir);

// Parses results.yml in the nemo-evaluator layout:
// results.{tasks|groups}.<task>.metrics.<metric>.scores.<score>.{value, stats}.
// RESOURCE_EXHAUSTED past 10,000 scores or 200,000 map entries walked (aliases included).
absl::StatusOr<v1::TaskResults> ParseResults(const std::string& yaml);
// Reads and parses `artifacts/results.yml`.
absl::StatusOr<v1::TaskResults> ReadResults(const std::string& run_dir);

// The log file of `kind` for a Slurm job: logs/slurm-<job>.log, logs/client-<job>.log, or the
// first logs/server-*-<job>-*.log.
std::string LogPath(const std::string& run_dir, v1::LogKind kind, const std::string& job_id);

// Reads up to `max_bytes` from `offset` (negative: from the end). Missing file → empty chunk.
// `path` is one LogPath returns: neither the file nor its directory (the run directory's logs/)
// may be a symlink (PERMISSION_DENIED).
absl::StatusOr<v1::LogChunk> ReadLogChunk(const std::string& path, int64_t offset,
                                          int32_t max_bytes);

}  // namespace evalctl::agent
