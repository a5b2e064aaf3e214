#include "clients/cli/dry_run.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "controller/config/duration.h"
#include "controller/config/render.h"

namespace evalctl::cli {
namespace {

absl::Status WriteFile(const std::filesystem::path& path, const std::string& content,
                       std::filesystem::perms perms) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", path.parent_path().string(), ": ", ec.message()));
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << content;
  f.close();
  if (!f) {
    return absl::InternalError(
        absl::StrCat("cannot write ", path.string(), ": ", std::strerror(errno)));
  }
  std::filesystem::permissions(path, perms, ec);
  return absl::OkStatus();
}

std::string EnvListing(const std::vector<config::JobEnv>& env) {
  std::string out;
  for (const config::JobEnv& e : env) {
    absl::StrAppend(&out, e.name, "=", e.secret ? "<secret>" : e.value, "\n");
  }
  return out;
}

}  // namespace

absl::Status DryRun(const DryRunOptions& options, std::ostream& out) {
  ASSIGN_OR_RETURN(config::InvocationSpec spec, config::LoadInvocation(options.request));
  const std::string id = options.invocation_id.empty() ? NewInvocationId() : options.invocation_id;
  const std::string timestamp =
      options.timestamp.empty()
          ? absl::FormatTime("%Y%m%d_%H%M%S", absl::Now(), absl::LocalTimeZone())
          : options.timestamp;
  const std::string run_dir = config::InvocationRunDir(spec.execution, timestamp, id);

  out << "# Resolved configuration (secrets redacted)\n" << spec.resolved_yaml << "\n";
  for (const std::string& w : spec.warnings) out << "# warning: " << w << "\n";

  std::vector<std::pair<std::string, config::RenderedTaskJob>> jobs;
  if (spec.execution.shared_deployment) {
    ASSIGN_OR_RETURN(config::RenderedTaskJob job, config::RenderSharedJob(spec, id, run_dir));
    jobs.emplace_back("shared", std::move(job));
  } else {
    for (const config::TaskSpec& task : spec.tasks) {
      ASSIGN_OR_RETURN(config::RenderedTaskJob job, config::RenderTaskJob(spec, task, id, run_dir));
      jobs.emplace_back(task.dir_name, std::move(job));
    }
  }

  out << "# Invocation " << id << ": " << spec.tasks.size() << " task(s), " << jobs.size()
      << " Slurm job(s) on " << spec.execution.hostname << " as " << spec.execution.username
      << "\n";
  out << "# Run directory: " << run_dir << "\n";
  out << "# Resume budget: max_walltime "
      << (spec.execution.max_walltime_seconds
              ? config::FormatSlurmDuration(*spec.execution.max_walltime_seconds)
              : std::string("unlimited"))
      << ", max_attempts "
      << (spec.execution.max_attempts ? std::to_string(*spec.execution.max_attempts)
                                      : std::string("unlimited"))
      << "\n";
  for (const auto& [name, job] : jobs) {
    out << "\n# ---- " << name << ": " << job.run_dir << "/run.sub (job name "
        << job.job_name_prefix << ".<attempt>)\n";
    out << "# sbatch environment:\n";
    for (const config::JobEnv& e : job.env) {
      out << "#   " << e.name << "=" << (e.secret ? "<secret>" : e.value) << "\n";
    }
    out << job.script;
  }

  if (!options.render_dir.empty()) {
    std::filesystem::path dir(options.render_dir);
    constexpr auto kFile = std::filesystem::perms::owner_read |
                           std::filesystem::perms::owner_write |
                           std::filesystem::perms::group_read | std::filesystem::perms::others_read;
    RETURN_IF_ERROR(WriteFile(dir / "config.yaml", spec.resolved_yaml, kFile));
    for (const auto& [name, job] : jobs) {
      RETURN_IF_ERROR(WriteFile(dir / name / "run.sub", job.script,
                                kFile | std::filesystem::perms::owner_exec));
      RETURN_IF_ERROR(WriteFile(dir / name / "env", EnvListing(job.env), kFile));
    }
    out << "\n# Written to " << dir.string() << "\n";
  }
  return absl::OkStatus();
}

}  // namespace evalctl::cli
