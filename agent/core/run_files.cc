#include "agent/core/run_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/run_layout.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace evalctl::agent {
namespace {

constexpr size_t kMaxResultsBytes = 4 << 20;
constexpr int kMaxScores = 10000;
// Entries of the maps walked (tasks, metrics, scores, stats), an alias counting each time it is
// used: a few KB of anchors and aliases would otherwise stand for billions of entries.
constexpr int kMaxEntries = 200000;

bool SafeRelative(const std::string& relative) {
  if (relative.empty() || relative[0] == '/') return false;
  size_t start = 0;
  while (start <= relative.size()) {
    size_t end = relative.find('/', start);
    if (end == std::string::npos) end = relative.size();
    std::string part = relative.substr(start, end - start);
    if (part == ".." || part.empty()) return false;
    start = end + 1;
  }
  return true;
}

// Opens `relative` (checked by SafeRelative) below `dir` without following a symbolic link on any
// of its components: a job that replaces a file, or a directory on the way to it, with a symlink
// cannot make the agent read (and report) a file outside its run directory. `dir` itself may be
// reached through symlinks (output_dir on a shared filesystem often is). -1 with errno on failure.
int OpenBelow(const std::string& dir, absl::string_view relative) {
  int dirfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return -1;
  std::vector<std::string> parts = absl::StrSplit(relative, '/');
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    int next = ::openat(dirfd, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const int saved = errno;
    ::close(dirfd);
    if (next < 0) {
      errno = saved;
      return -1;
    }
    dirfd = next;
  }
  int fd = ::openat(dirfd, parts.back().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  const int saved = errno;
  ::close(dirfd);
  errno = saved;
  return fd;
}

// The error of a failed OpenBelow of `path`, from errno.
absl::Status OpenError(const std::string& path) {
  if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  if (errno == ELOOP || errno == ENOTDIR) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, " or a directory on its way is a symbolic link; not read"));
  }
  return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::string> ReadRunFile(const std::string& run_dir, const std::string& relative,
                                        size_t max_bytes) {
  if (!SafeRelative(relative)) {
    return absl::InvalidArgumentError(absl::StrCat("unsafe path ", relative));
  }
  const std::string path = absl::StrCat(run_dir, "/", relative);
  int fd = OpenBelow(run_dir, relative);
  if (fd < 0) return OpenError(path);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::PermissionDeniedError(absl::StrCat(path, " is not a regular file; not read"));
  }
  if (static_cast<size_t>(st.st_size) > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(path, " is ", st.st_size, " bytes, more than the ", max_bytes, " allowed"));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

v1::Phase ReadPhase(const std::string& run_dir) {
  auto text = ReadRunFile(run_dir, layout::kPhaseFile, 256);
  if (!text.ok()) return v1::PHASE_UNSPECIFIED;
  absl::string_view word = absl::StripAsciiWhitespace(*text);
  static constexpr v1::Phase kPhases[] = {v1::PHASE_STARTING,  v1::PHASE_DEPLOYING,
                                          v1::PHASE_WAITING_FOR_ENDPOINT, v1::PHASE_EVALUATING,
                                          v1::PHASE_FINISHING, v1::PHASE_FINISHED};
  for (size_t i = 0; i < std::size(layout::kPhaseWords); ++i) {
    if (word == layout::kPhaseWords[i]) return kPhases[i];
  }
  return v1::PHASE_UNSPECIFIED;
}

std::optional<int64_t> ReadProgress(const std::string& run_dir) {
  auto text = ReadRunFile(run_dir, layout::kProgressFile, 64);
  if (!text.ok()) return std::nullopt;
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &v) || v < 0) return std::nullopt;
  return v;
}

absl::StatusOr<v1::TaskResults> ParseResults(const std::string& yaml) {
  v1::TaskResults out;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("results.yml is not valid YAML (line ",
                                                   e.mark.line + 1, "): ", e.msg));
  }
  try {
    YAML::Node results = root.IsMap() ? root["results"] : YAML::Node();
    if (!results || !results.IsMap()) {
      return absl::InvalidArgumentError("results.yml has no `results:` map");
    }
    int count = 0;
    int entries = 0;
    const auto too_many_entries = [&entries] {
      return ++entries > kMaxEntries
                 ? absl::ResourceExhaustedError(absl::StrCat(
                       "results.yml has more than ", kMaxEntries,
                       " entries in its maps of tasks, metrics, scores and stats (an alias counts "
                       "each time it is used)"))
                 : absl::OkStatus();
    };
    for (const char* section : {"tasks", "groups"}) {
      YAML::Node tasks = results[section];
      if (!tasks || !tasks.IsMap()) continue;
      for (const auto& task : tasks) {
        RETURN_IF_ERROR(too_many_entries());
        YAML::Node metrics = task.second.IsMap() ? task.second["metrics"] : YAML::Node();
        if (!metrics || !metrics.IsMap()) continue;
        for (const auto& metric : metrics) {
          RETURN_IF_ERROR(too_many_entries());
          YAML::Node scores = metric.second.IsMap() ? metric.second["scores"] : YAML::Node();
          if (!scores || !scores.IsMap()) continue;
          for (const auto& score : scores) {
            RETURN_IF_ERROR(too_many_entries());
            if (++count > kMaxScores) {
              return absl::ResourceExhaustedError(
                  absl::StrCat("results.yml has more than ", kMaxScores, " scores"));
            }
            YAML::Node value = score.second.IsMap() ? score.second["value"] : YAML::Node();
            double v = 0;
            if (!value || !value.IsScalar() || !absl::SimpleAtod(value.Scalar(), &v) ||
                !std::isfinite(v)) {
              continue;
            }
            // yaml-cpp passes invalid UTF-8 through; a string field holding it would make the
            // event that carries the results unreadable for the controller.
            v1::Score* s = out.add_scores();
            s->set_task(ValidUtf8(task.first.as<std::string>()));
            s->set_metric(ValidUtf8(metric.first.as<std::string>()));
            s->set_score(ValidUtf8(score.first.as<std::string>()));
            s->set_value(v);
            YAML::Node stats = score.second["stats"];
            if (stats && stats.IsMap()) {
              for (const auto& stat : stats) {
                RETURN_IF_ERROR(too_many_entries());
                double sv = 0;
                if (stat.second.IsScalar() && absl::SimpleAtod(stat.second.Scalar(), &sv) &&
                    std::isfinite(sv)) {
                  (*s->mutable_stats())[ValidUtf8(stat.first.as<std::string>())] = sv;
                }
              }
            }
          }
        }
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("results.yml has an unexpected shape: ", e.msg));
  }
  return out;
}

absl::StatusOr<v1::TaskResults> ReadResults(const std::string& run_dir) {
  auto text = ReadRunFile(run_dir, layout::kResultsFile, kMaxResultsBytes);
  if (!text.ok()) return text.status();
  auto results = ParseResults(*text);
  if (!results.ok()) return results.status();
  results->set_results_path(absl::StrCat(run_dir, "/", layout::kResultsFile));
  return results;
}

std::string LogPath(const std::string& run_dir, v1::LogKind kind, const std::string& job_id) {
  const std::string logs = absl::StrCat(run_dir, "/logs/");
  switch (kind) {
    case v1::LOG_KIND_EVAL:
      return absl::StrCat(logs, "client-", job_id, ".log");
    case v1::LOG_KIND_SERVER: {
      std::string prefix = "server-";
      std::string marker = absl::StrCat("-", job_id, "-");
      std::string found;
      if (DIR* d = ::opendir(logs.c_str())) {
        while (dirent* e = ::readdir(d)) {
          std::string name = e->d_name;
          if (absl::StartsWith(name, prefix) && absl::StrContains(name, marker) &&
              (found.empty() || name < found)) {
            found = name;
          }
        }
        ::closedir(d);
      }
      return found.empty() ? absl::StrCat(logs, "server-0-", job_id, "-0.log") : logs + found;
    }
    case v1::LOG_KIND_SLURM:
    default:
      return absl::StrCat(logs, "slurm-", job_id, ".log");
  }
}

absl::StatusOr<v1::LogChunk> ReadLogChunk(const std::string& path, int64_t offset,
                                          int32_t max_bytes) {
  v1::LogChunk chunk;
  chunk.set_path(path);
  // The file and its directory (the run directory's logs/) are opened without following a
  // symlink; the directories above are the run directory's own path.
  int fd = -1;
  const size_t file_at = path.rfind('/');
  const size_t dir_at = file_at == std::string::npos || file_at == 0
                            ? std::string::npos
                            : path.rfind('/', file_at - 1);
  if (dir_at == std::string::npos) {
    fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  } else {
    const std::string relative = path.substr(dir_at + 1);
    if (!SafeRelative(relative)) {
      return absl::InvalidArgumentError(absl::StrCat("unsafe path ", path));
    }
    fd = OpenBelow(dir_at == 0 ? "/" : path.substr(0, dir_at), relative);
  }
  if (fd < 0) {
    if (errno == ENOENT) {
      chunk.set_offset(std::max<int64_t>(offset, 0));
      return chunk;
    }
    return absl::PermissionDeniedError(absl::StrCat("cannot open ", path, ": ",
                                                    std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::PermissionDeniedError(absl::StrCat(path, " is not a regular file"));
  }
  int64_t size = st.st_size;
  int64_t start = offset < 0 ? std::max<int64_t>(0, size + offset) : std::min(offset, size);
  int64_t want = std::clamp<int64_t>(max_bytes <= 0 ? 65536 : max_bytes, 1, 4 << 20);
  want = std::min(want, size - start);
  std::string data(static_cast<size_t>(want), '\0');
  ssize_t n = want > 0 ? ::pread(fd, data.data(), static_cast<size_t>(want), start) : 0;
  ::close(fd);
  data.resize(n > 0 ? static_cast<size_t>(n) : 0);
  chunk.set_offset(start);
  chunk.set_data(std::move(data));
  return chunk;
}

}  // namespace evalctl::agent
