#include "clients/cpp/config_source.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace evalctl::client {
namespace {

namespace fs = std::filesystem;

// Reads `path`, refusing anything that is not a regular file of sane size.
absl::StatusOr<std::string> ReadConfigFile(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file"));
  }
  if (!fs::is_regular_file(status)) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a regular file"));
  }
  if (fs::file_size(path, ec) > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": larger than ", kMaxConfigBytes,
                                                   " bytes; not a configuration"));
  }
  std::ifstream f(path, std::ios::binary);
  std::stringstream buffer;
  buffer << f.rdbuf();
  if (!f) return absl::PermissionDeniedError(absl::StrCat(path.string(), ": cannot read"));
  return buffer.str();
}

// Config groups below `dir` (Hydra uses the config file's directory as its config dir):
// <dir>/deployment/mine.yaml is group option deployment/mine. A later root replaces a path an
// earlier one had.
absl::Status CollectGroups(const fs::path& dir, config::GroupFiles& groups) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_directory()) continue;
    for (auto it = fs::recursive_directory_iterator(entry.path(), ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it.depth() > 3) it.disable_recursion_pending();
      if (!it->is_regular_file() || it->path().extension() != ".yaml") continue;
      if (groups.size() >= kMaxGroupFiles) {
        return absl::InvalidArgumentError(absl::StrCat(dir.string(), ": more than ", kMaxGroupFiles,
                                                       " YAML files in config group directories"));
      }
      ASSIGN_OR_RETURN(std::string content, ReadConfigFile(it->path()));
      groups[fs::relative(it->path(), dir).generic_string()] = std::move(content);
    }
  }
  return absl::OkStatus();
}

}  // namespace

void CollectEnvironment(config::LoadRequest& request) {
  for (const std::string& name : config::ReferencedEnvironment(request)) {
    if (const char* value = std::getenv(name.c_str())) request.environment[name] = value;
  }
  // execution.username defaults to ${oc.env:USER}; a shell without USER still has a login name.
  if (request.environment.count("USER") == 0) {
    if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_name != nullptr) {
      request.environment["USER"] = pw->pw_name;
    }
  }
}

absl::StatusOr<config::LoadRequest> LoadConfigRequest(const ConfigFileOptions& options) {
  config::LoadRequest request;
  ASSIGN_OR_RETURN(request.yaml, ReadConfigFile(options.path));
  request.file_name = options.path;
  request.overrides = options.overrides;
  request.task_filter = options.task_filter;
  const fs::path parent = fs::path(options.path).parent_path();
  std::vector<fs::path> dirs = {parent.empty() ? fs::path(".") : parent};
  for (const std::string& d : options.group_dirs) dirs.emplace_back(d);
  for (const fs::path& d : dirs) RETURN_IF_ERROR(CollectGroups(d, request.user_groups));
  CollectEnvironment(request);
  return request;
}

evalctl::v1::ConfigSource ToConfigSource(const config::LoadRequest& request) {
  evalctl::v1::ConfigSource source;
  source.set_yaml(request.yaml);
  source.set_file_name(request.file_name);
  for (const std::string& o : request.overrides) source.add_overrides(o);
  for (const std::string& t : request.task_filter) source.add_task_filter(t);
  for (const auto& [name, value] : request.environment)
    (*source.mutable_environment())[name] = value;
  for (const auto& [path, content] : request.user_groups) {
    evalctl::v1::ConfigFile* file = source.add_group_files();
    file->set_path(path);
    file->set_content(content);
  }
  return source;
}

absl::StatusOr<evalctl::v1::ConfigSource> BuildConfigSource(const ConfigFileOptions& options) {
  ASSIGN_OR_RETURN(config::LoadRequest request, LoadConfigRequest(options));
  return ToConfigSource(request);
}

}  // namespace evalctl::client
