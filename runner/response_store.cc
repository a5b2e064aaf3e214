#include "runner/response_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace evalctl::runner {
namespace {

using json = nlohmann::json;

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("writing", path);
    written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FsyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("opening directory", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync of directory", dir);
  return absl::OkStatus();
}

std::string EntryLine(const CacheEntry& entry) {
  json line = {{"v", 1},
               {"key", entry.key},
               {"id", entry.item_id},
               {"text", entry.text},
               {"finish_reason", entry.finish_reason},
               {"latency_ms", entry.latency_ms},
               {"attempts", entry.attempts},
               {"prompt_tokens", entry.prompt_tokens},
               {"completion_tokens", entry.completion_tokens}};
  // Invalid UTF-8 from a model must not make the line unwritable.
  return line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::optional<CacheEntry> ParseEntryLine(absl::string_view line) {
  json parsed = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) return std::nullopt;
  auto key = parsed.find("key");
  auto text = parsed.find("text");
  if (key == parsed.end() || !key->is_string() || key->get<std::string>().empty() ||
      text == parsed.end() || !text->is_string()) {
    return std::nullopt;
  }
  CacheEntry entry;
  entry.key = key->get<std::string>();
  entry.text = text->get<std::string>();
  if (auto v = parsed.find("id"); v != parsed.end() && v->is_string()) entry.item_id = *v;
  if (auto v = parsed.find("finish_reason"); v != parsed.end() && v->is_string()) {
    entry.finish_reason = *v;
  }
  if (auto v = parsed.find("latency_ms"); v != parsed.end() && v->is_number()) {
    entry.latency_ms = v->get<double>();
  }
  if (auto v = parsed.find("attempts"); v != parsed.end() && v->is_number_integer()) {
    entry.attempts = v->get<int>();
  }
  if (auto v = parsed.find("prompt_tokens"); v != parsed.end() && v->is_number_integer()) {
    entry.prompt_tokens = v->get<int64_t>();
  }
  if (auto v = parsed.find("completion_tokens"); v != parsed.end() && v->is_number_integer()) {
    entry.completion_tokens = v->get<int64_t>();
  }
  return entry;
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, absl::string_view content) {
  std::filesystem::path target(path);
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("creating", tmp);
  absl::Status status = WriteAll(fd, content, tmp);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError("fsync of", tmp);
  ::close(fd);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) status = ErrnoError("renaming to", path);
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  return FsyncDirectory(dir);
}

absl::StatusOr<int64_t> ReadProgressFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  int64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(buffer.str()), &value)) {
    return absl::DataLossError(absl::StrCat(path, ": not an integer"));
  }
  return value;
}

absl::StatusOr<std::unique_ptr<ResponseStore>> ResponseStore::Open(
    const std::string& results_dir, const std::vector<std::string>& planned_keys,
    StoreOptions options) {
  std::filesystem::path dir(results_dir);
  std::filesystem::path cache_dir = dir / "cache";
  std::error_code ec;
  std::filesystem::create_directories(cache_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("creating ", cache_dir.string(), ": ", ec.message()));
  }
  std::unique_ptr<ResponseStore> store(new ResponseStore());
  store->options_ = options;
  store->cache_path_ = (cache_dir / "responses.jsonl").string();
  store->progress_path_ = (dir / "progress").string();

  std::string lock_path = (cache_dir / "lock").string();
  store->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (store->lock_fd_ < 0) return ErrnoError("opening", lock_path);
  if (::flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another evalctl-runner is using ", results_dir, " (", lock_path, " is locked)"));
    }
    return ErrnoError("locking", lock_path);
  }

  store->fd_ = ::open(store->cache_path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (store->fd_ < 0) return ErrnoError("opening", store->cache_path_);

  // Load what earlier attempts wrote.
  std::string content;
  {
    std::ifstream in(store->cache_path_, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    content = buffer.str();
  }
  size_t complete = content.rfind('\n');
  complete = complete == std::string::npos ? 0 : complete + 1;
  if (complete < content.size()) {
    LOG(WARNING) << store->cache_path_ << ": cutting off a torn last line ("
                 << content.size() - complete << " bytes) left by an interrupted write";
    if (::ftruncate(store->fd_, static_cast<off_t>(complete)) != 0) {
      return ErrnoError("truncating", store->cache_path_);
    }
    ++store->skipped_lines_;
    content.resize(complete);
  }
  absl::MutexLock lock(&store->mu_);
  store->planned_.insert(planned_keys.begin(), planned_keys.end());
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    std::optional<CacheEntry> entry = ParseEntryLine(line);
    if (!entry.has_value()) {
      ++store->skipped_lines_;
      continue;
    }
    ++store->loaded_entries_;
    std::string key = entry->key;
    store->entries_.try_emplace(std::move(key), *std::move(entry));
  }
  if (store->skipped_lines_ > 0) {
    LOG(WARNING) << store->cache_path_ << ": skipped " << store->skipped_lines_
                 << " unreadable line(s)";
  }
  // What is in the file now is what an earlier attempt wrote; make sure it is on disk before the
  // progress file counts it.
  if (::fsync(store->fd_) != 0) return ErrnoError("fsync of", store->cache_path_);
  for (const auto& [key, entry] : store->entries_) {
    if (store->planned_.contains(key)) ++store->durable_planned_;
  }
  store->last_sync_ = absl::Now();
  RETURN_IF_ERROR(WriteFileAtomically(store->progress_path_,
                                      absl::StrCat(store->durable_planned_, "\n")));
  return store;
}

ResponseStore::~ResponseStore() {
  bool pending = false;
  {
    absl::MutexLock lock(&mu_);
    pending = fd_ >= 0 && !unsynced_.empty();
  }
  if (pending) {
    absl::Status status = Sync();
    if (!status.ok()) LOG(ERROR) << status.message();
  }
  if (fd_ >= 0) ::close(fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::optional<CacheEntry> ResponseStore::Find(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

absl::Status ResponseStore::Record(const CacheEntry& entry) {
  bool sync_now = false;
  {
    absl::MutexLock lock(&mu_);
    if (entries_.contains(entry.key)) return absl::OkStatus();
    RETURN_IF_ERROR(WriteAll(fd_, EntryLine(entry), cache_path_));
    entries_.emplace(entry.key, entry);
    unsynced_.push_back(entry.key);
    sync_now = static_cast<int>(unsynced_.size()) >= options_.sync_every ||
               absl::Now() - last_sync_ >= options_.sync_interval;
  }
  return sync_now ? Sync() : absl::OkStatus();
}

absl::Status ResponseStore::MaybeSync() {
  {
    absl::MutexLock lock(&mu_);
    if (unsynced_.empty() || absl::Now() - last_sync_ < options_.sync_interval) {
      return absl::OkStatus();
    }
  }
  return Sync();
}

absl::Status ResponseStore::Flush() { return Sync(); }

absl::Status ResponseStore::Sync() {
  // One sync at a time, so progress files are written in order; Record() goes on meanwhile.
  absl::MutexLock sync_lock(&sync_mu_);
  std::vector<std::string> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(unsynced_);
    last_sync_ = absl::Now();
  }
  // Every key in `batch` was written before it was listed, so this fsync covers it.
  if (::fsync(fd_) != 0) {
    absl::Status error = ErrnoError("fsync of", cache_path_);
    absl::MutexLock lock(&mu_);
    unsynced_.insert(unsynced_.end(), batch.begin(), batch.end());
    return error;
  }
  int64_t durable = 0;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& key : batch) {
      if (planned_.contains(key)) ++durable_planned_;
    }
    durable = durable_planned_;
  }
  return WriteFileAtomically(progress_path_, absl::StrCat(durable, "\n"));
}

int64_t ResponseStore::progress() const {
  absl::MutexLock lock(&mu_);
  return durable_planned_;
}

}  // namespace evalctl::runner
