// evalctl-agent: one per cluster headnode (per Unix user). Composition root: flags → Slurm client,
// journal → runtime.
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <iostream>
#include <tuple>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/core/journal.h"
#include "agent/runtime/agent_runtime.h"
#include "agent/runtime/metrics.h"
#include "agent/slurm/slurm_cli_client.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/metrics_http_server.h"
#include "common/subprocess.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/registry.h"

namespace {

std::atomic<bool> g_stop{false};

std::string CurrentUser() {
  const passwd* pw = ::getpwuid(::getuid());
  return pw != nullptr && pw->pw_name != nullptr ? pw->pw_name : std::to_string(::getuid());
}

std::string ShortHostname() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof(buf) - 1);
  std::string h = buf;
  return h.substr(0, h.find('.'));
}

// Slurm's ClusterName, so that configs can name the cluster as Slurm does.
std::string SlurmClusterName() {
  auto r = evalctl::RunSubprocess(
      {.argv = {"scontrol", "show", "config"}, .timeout = absl::Seconds(15)});
  if (!r.ok() || !r->ok()) return "";
  size_t pos = r->stdout_data.find("ClusterName");
  if (pos == std::string::npos) return "";
  size_t eq = r->stdout_data.find('=', pos);
  size_t end = r->stdout_data.find('\n', eq);
  std::string v = r->stdout_data.substr(eq + 1, end - eq - 1);
  v.erase(0, v.find_first_not_of(' '));
  v.erase(v.find_last_not_of(" \r") + 1);
  return v;
}

// A number of seconds: above 0, or (with `zero_ok`) 0 as well.
CLI::Validator Seconds(bool zero_ok) {
  return CLI::Validator(
      [zero_ok](std::string& text) -> std::string {
        double v = 0;
        if (absl::SimpleAtod(text, &v) && std::isfinite(v) && (v > 0 || (zero_ok && v == 0))) {
          return "";
        }
        return absl::StrCat("must be a number of seconds", zero_ok ? " (0 or more)" : " above 0",
                            ", not \"", text, "\"");
      },
      zero_ok ? "SECONDS>=0" : "SECONDS>0");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"evalctl-agent: runs evalctl's Slurm jobs on this cluster's headnode"};
  evalctl::agent::AgentOptions options;
  std::string state_dir;
  bool insecure = false;
  int slurm_timeout_s = 30;
  double min_interval_s = 1, max_interval_s = 30, phase_check_s = 1;
  std::string metrics_listen;
  app.add_option("--controller", options.controller, "host:port of evalctl-controller")
      ->capture_default_str();
  app.add_option("--state-dir", state_dir,
                 "Directory of the journal and secret store (created with mode 0700)")
      ->required();
  app.add_option("--cluster", options.cluster,
                 "Cluster name (default: Slurm's ClusterName, else the host name)");
  app.add_option("--alias", options.aliases,
                 "A host name configs may use as execution.hostname for this cluster (repeatable)");
  app.add_flag("--insecure", insecure, "Connect without TLS (a controller on loopback)");
  std::string tls_ca, tls_cert, tls_key;
  app.add_option("--tls-ca", tls_ca,
                 "PEM CA bundle that signs the controller's certificate (default: the system's)");
  app.add_option("--tls-cert", tls_cert, "PEM client certificate, for mutual TLS");
  app.add_option("--tls-key", tls_key, "PEM key of --tls-cert");
  app.add_option("--token-file", options.token_file,
                 "File with a one-time enrollment token (`evalctl cluster enroll`); deleted once "
                 "the agent has its own credential");
  app.add_option("--slurm-timeout", slurm_timeout_s, "Seconds before a Slurm command is killed")
      ->capture_default_str();
  app.add_option("--min-interval", min_interval_s, "Seconds between tracking cycles after a change")
      ->check(Seconds(false))
      ->capture_default_str();
  app.add_option("--max-interval", max_interval_s, "Longest tracking interval when nothing moves")
      ->check(Seconds(false))
      ->capture_default_str();
  app.add_option("--phase-check-interval", phase_check_s,
                 "Seconds between checks of the jobs' phase files for a job that started or ended "
                 "(brings the next tracking cycle forward; 0: off)")
      ->check(Seconds(true))
      ->capture_default_str();
  app.add_option("--submit-parallelism", options.task_manager.submit_parallelism,
                 "How many sbatch calls may run at once when many tasks arrive together")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--metrics-listen", metrics_listen,
                 "host:port to serve Prometheus /metrics and /healthz on over HTTP (host defaults "
                 "to 127.0.0.1; off when empty)");
  CLI11_PARSE(app, argc, argv);

  if (insecure) {
    if (!tls_ca.empty() || !tls_cert.empty() || !tls_key.empty()) {
      std::cerr << "evalctl-agent: --insecure and the --tls-* flags exclude each other\n";
      return 2;
    }
    options.credentials = grpc::InsecureChannelCredentials();
  } else {
    if (tls_cert.empty() != tls_key.empty()) {
      std::cerr << "evalctl-agent: --tls-cert and --tls-key go together\n";
      return 2;
    }
    grpc::SslCredentialsOptions ssl;
    for (auto [path, what, out] : {std::tuple{&tls_ca, "CA bundle", &ssl.pem_root_certs},
                                   std::tuple{&tls_cert, "client certificate", &ssl.pem_cert_chain},
                                   std::tuple{&tls_key, "client key", &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      absl::StatusOr<std::string> data = evalctl::ReadFile(*path, what);
      if (!data.ok()) {
        std::cerr << "evalctl-agent: " << data.status().message() << "\n";
        return 2;
      }
      *out = *std::move(data);
    }
    options.credentials = grpc::SslCredentials(ssl);
  }
  options.unix_user = CurrentUser();
  if (options.cluster.empty()) options.cluster = SlurmClusterName();
  if (options.cluster.empty()) options.cluster = ShortHostname();
  options.aliases.push_back(ShortHostname());
  options.min_interval = absl::Seconds(min_interval_s);
  options.max_interval = absl::Seconds(max_interval_s);
  options.phase_check_interval = absl::Seconds(phase_check_s);
  options.version = EVALCTL_VERSION;

  evalctl::RealClock clock;
  auto journal = evalctl::agent::Journal::Open(state_dir, &clock);
  if (!journal.ok()) {
    std::cerr << "evalctl-agent: " << journal.status().message() << "\n";
    return 1;
  }
  evalctl::agent::SlurmCliOptions slurm_options;
  slurm_options.timeout = absl::Seconds(slurm_timeout_s);
  slurm_options.user = options.unix_user;  // adopt by name only jobs of this user
  evalctl::agent::SlurmCliClient cli(slurm_options);
  auto registry = std::make_shared<prometheus::Registry>();
  evalctl::agent::AgentMetrics metrics(*registry, options.version);
  evalctl::agent::MeteredSlurmClient slurm(&cli, &metrics);
  evalctl::agent::AgentRuntime runtime(options, &slurm, journal->get(), &clock, &metrics);
  std::unique_ptr<evalctl::MetricsHttpServer> metrics_server;
  if (!metrics_listen.empty()) {
    auto started = evalctl::MetricsHttpServer::Start(
        {.listen = metrics_listen,
         .registry = registry,
         .before_scrape = [&runtime] { runtime.RefreshMetrics(); },
         .routes = {{"/healthz", [&runtime] {
                       evalctl::agent::AgentRuntime::Health h = runtime.CheckHealth();
                       return evalctl::HttpResponse{h.ok ? 200 : 503, h.reason + "\n"};
                     }}}});
    if (!started.ok()) {
      std::cerr << "evalctl-agent: " << started.status().message() << "\n";
      return 1;
    }
    metrics_server = *std::move(started);
    LOG(INFO) << "metrics on http://" << metrics_server->host() << ":" << metrics_server->port()
              << "/metrics (and /healthz)";
  }
  signal(SIGTERM, [](int) { g_stop = true; });
  signal(SIGINT, [](int) { g_stop = true; });
  signal(SIGPIPE, SIG_IGN);
  LOG(INFO) << "evalctl-agent for cluster " << options.cluster << " as " << options.unix_user
            << ", controller " << options.controller << ", state in " << state_dir;
  absl::Status s = runtime.Run(&g_stop);
  if (!s.ok()) {
    std::cerr << "evalctl-agent: " << s.message() << "\n";
    return 1;
  }
  return 0;
}
