// The runner's durable state in EVALCTL_RESULTS_DIR, which survives across attempts:
//
//   cache/responses.jsonl   append-only, one JSON object per answered request:
//                           {"v":1,"key":"<sha256>","id":"<item id>","text":"<model output>",
//                            "finish_reason":"stop","latency_ms":12.5,"attempts":1,
//                            "prompt_tokens":31,"completion_tokens":4}
//                           written with one write(2) per line, fsync'd in batches (every
//                           `sync_every` entries or `sync_interval`, and on Flush). A torn last
//                           line (crash mid-write) is cut off when the file is opened again;
//                           unreadable lines are skipped.
//   cache/lock              flock(2)ed while a runner uses the directory: a second runner on the
//                           same directory fails instead of interleaving.
//   progress                one integer and a newline: the planned requests that have a durable
//                           answer. Written atomically (temp file, fsync, rename) after each
//                           batch, so it never counts an answer that is not on disk and never
//                           counts one twice.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace evalctl::runner {

struct CacheEntry {
  std::string key;
  std::string item_id;
  std::string text;
  std::string finish_reason;
  double latency_ms = 0;
  int attempts = 1;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

struct StoreOptions {
  int sync_every = 16;
  absl::Duration sync_interval = absl::Seconds(2);
};

// Writes `content` to `path` atomically: a temporary file in the same directory, fsync, rename,
// fsync of the directory.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content);

// Reads a progress file; NotFound when it does not exist.
absl::StatusOr<int64_t> ReadProgressFile(const std::string& path);

class ResponseStore {
 public:
  // Opens (creating) the cache under `results_dir`, locks it, loads its entries and writes the
  // progress file for `planned_keys`.
  static absl::StatusOr<std::unique_ptr<ResponseStore>> Open(const std::string& results_dir,
                                                             const std::vector<std::string>& planned_keys,
                                                             StoreOptions options = {});
  ~ResponseStore();
  ResponseStore(const ResponseStore&) = delete;
  ResponseStore& operator=(const ResponseStore&) = delete;

  std::optional<CacheEntry> Find(const std::string& key) const ABSL_LOCKS_EXCLUDED(mu_);

  // Appends `entry` (ignored when its key is already stored); syncs when a batch is full or the
  // interval has passed.
  absl::Status Record(const CacheEntry& entry) ABSL_LOCKS_EXCLUDED(mu_);
  // Syncs when something is pending and the interval has passed. For a periodic caller.
  absl::Status MaybeSync() ABSL_LOCKS_EXCLUDED(mu_);
  // fsync now and rewrite the progress file.
  absl::Status Flush() ABSL_LOCKS_EXCLUDED(mu_);

  // Planned requests with a durable answer (what the progress file says).
  int64_t progress() const ABSL_LOCKS_EXCLUDED(mu_);
  // Entries read when the store was opened, and lines that had to be skipped or cut off.
  int64_t loaded_entries() const { return loaded_entries_; }
  int64_t skipped_lines() const { return skipped_lines_; }
  std::string cache_path() const { return cache_path_; }
  std::string progress_path() const { return progress_path_; }

 private:
  ResponseStore() = default;
  absl::Status Sync() ABSL_LOCKS_EXCLUDED(mu_, sync_mu_);

  std::string cache_path_;
  std::string progress_path_;
  StoreOptions options_;
  int fd_ = -1;
  int lock_fd_ = -1;
  int64_t loaded_entries_ = 0;
  int64_t skipped_lines_ = 0;

  absl::Mutex sync_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> planned_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, CacheEntry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> unsynced_ ABSL_GUARDED_BY(mu_);
  int64_t durable_planned_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_sync_ ABSL_GUARDED_BY(mu_);
};

}  // namespace evalctl::runner
