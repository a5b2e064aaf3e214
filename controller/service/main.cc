// evalctl-controller: the central service. Composition root: flags → store → core → gRPC server.
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/metrics_http_server.h"
#include "common/thread_pool.h"
#include "common/wire_limits.h"
#include "controller/core/controller_core.h"
#include "controller/core/sqlite_store.h"
#include "controller/core/token_authority.h"
#include "controller/service/metrics.h"
#include "controller/service/services.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/registry.h"

namespace {

std::atomic<bool> g_stop{false};

// True when every address `listen` resolves to is a loopback address.
bool IsLoopback(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) host = host.substr(1, host.size() - 2);
  if (host.empty()) return false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return false;
  bool all = res != nullptr;
  for (addrinfo* p = res; p != nullptr; p = p->ai_next) {
    if (p->ai_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(p->ai_addr);
      all &= (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (p->ai_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(p->ai_addr);
      all &= IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    } else {
      all = false;
    }
  }
  ::freeaddrinfo(res);
  return all;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"evalctl-controller: the central evalctl service"};
  std::string listen = "127.0.0.1:50051";
  std::string state_dir = "/var/lib/evalctl-controller";
  bool insecure = false;
  int agent_wait_s = 600;
  int submit_window = 256;
  int workers = 8;
  std::string metrics_listen;
  std::string tls_cert, tls_key, tls_client_ca, admin_token_file, admin_user = "admin";
  bool require_client_cert = false;
  app.add_option("--listen", listen, "host:port to serve gRPC on")->capture_default_str();
  app.add_option("--state-dir", state_dir, "Directory of the SQLite store")->capture_default_str();
  app.add_flag("--insecure", insecure,
               "Serve without TLS or authentication; only allowed on a loopback address");
  app.add_option("--agent-wait", agent_wait_s,
                 "Seconds tasks wait for a disconnected agent before they fail")
      ->capture_default_str();
  app.add_option("--agent-submit-window", submit_window,
                 "Tasks sent to an agent and not yet answered, at most; the others wait in the "
                 "store (bounds the controller's memory during large submissions)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--workers", workers, "Worker threads for request handling")->capture_default_str();
  app.add_option("--metrics-listen", metrics_listen,
                 "host:port to serve Prometheus /metrics on over HTTP (host defaults to "
                 "127.0.0.1; off when empty)");
  app.add_option("--tls-cert", tls_cert, "PEM certificate (chain) of this server");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", tls_client_ca,
                 "PEM CA bundle that client certificates must chain to (mutual TLS); clients "
                 "that present a certificate are verified against it");
  app.add_flag("--require-client-cert", require_client_cert,
               "With --tls-client-ca: refuse clients without a valid certificate");
  app.add_option("--admin-token-file", admin_token_file,
                 "When no admin token exists yet, create one and write it to this file "
                 "(mode 0600)");
  app.add_option("--admin-user", admin_user, "User name of that first admin token")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (insecure == !tls_cert.empty()) {
    std::cerr << "evalctl-controller: give --tls-cert and --tls-key (TLS with bearer tokens), or "
                 "--insecure (no TLS, no authentication, loopback only)\n";
    return 2;
  }
  if (tls_cert.empty() != tls_key.empty()) {
    std::cerr << "evalctl-controller: --tls-cert and --tls-key go together\n";
    return 2;
  }
  if (require_client_cert && tls_client_ca.empty()) {
    std::cerr << "evalctl-controller: --require-client-cert needs --tls-client-ca\n";
    return 2;
  }
  if (insecure && !IsLoopback(listen)) {
    std::cerr << "evalctl-controller: --insecure serves without TLS or authentication, so it "
                 "binds loopback addresses only; "
              << listen << " is not one\n";
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  std::filesystem::permissions(state_dir, std::filesystem::perms::owner_all, ec);
  auto registry = std::make_shared<prometheus::Registry>();
  evalctl::controller::ControllerMetrics metrics(*registry, EVALCTL_VERSION);
  auto store = evalctl::controller::SqliteStore::Open(state_dir + "/controller.db", &metrics);
  if (!store.ok()) {
    std::cerr << "evalctl-controller: " << store.status().message() << "\n";
    return 1;
  }
  evalctl::RealClock clock;
  evalctl::controller::ControllerCore core(
      {.agent_wait = absl::Seconds(agent_wait_s), .submit_window = submit_window}, store->get(),
      &clock, &metrics);
  evalctl::ThreadPool pool(workers, "ctl-worker");

  // Identity: bearer tokens with TLS, or nobody checked in the loopback-only insecure mode.
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  std::unique_ptr<evalctl::controller::TokenAuthority> tokens;
  std::unique_ptr<evalctl::controller::Authenticator> auth;
  if (insecure) {
    auth = std::make_unique<evalctl::controller::InsecureAuthenticator>();
  } else {
    auto cert = evalctl::ReadFile(tls_cert, "TLS certificate");
    auto key = evalctl::ReadFile(tls_key, "TLS key");
    absl::StatusOr<std::string> client_ca = std::string();
    if (!tls_client_ca.empty()) client_ca = evalctl::ReadFile(tls_client_ca, "client CA bundle");
    for (const absl::Status& s : {cert.status(), key.status(), client_ca.status()}) {
      if (!s.ok()) {
        std::cerr << "evalctl-controller: " << s.message() << "\n";
        return 2;
      }
    }
    grpc::SslServerCredentialsOptions ssl(
        tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
        : require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                              : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = *client_ca;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    credentials = grpc::SslServerCredentials(ssl);

    auto opened = evalctl::controller::TokenAuthority::Open(state_dir + "/auth.db", &clock);
    if (!opened.ok()) {
      std::cerr << "evalctl-controller: " << opened.status().message() << "\n";
      return 1;
    }
    tokens = *std::move(opened);
    if (!admin_token_file.empty()) {
      auto first = tokens->BootstrapAdmin(admin_user);
      absl::Status written = first.status();
      if (first.ok() && first->has_value()) {
        written = evalctl::WritePrivateFile(admin_token_file, (*first)->token + "\n");
        if (written.ok()) {
          LOG(INFO) << "wrote the first admin token (" << (*first)->info.token_id() << ", user "
                    << admin_user << ") to " << admin_token_file;
        }
      }
      if (!written.ok()) {
        std::cerr << "evalctl-controller: " << written.message() << "\n";
        return 1;
      }
    }
    auth = std::make_unique<evalctl::controller::TokenAuthenticator>(tokens.get());
    core.set_run_as_policy(tokens.get());
  }
  evalctl::controller::EvalServiceImpl eval_service(&core, auth.get(), &pool, &metrics);
  evalctl::controller::AgentServiceImpl agent_service(&core, auth.get(), tokens.get(), &pool,
                                                      &metrics);
  evalctl::controller::AdminServiceImpl admin_service(tokens.get(), auth.get(), &pool, &metrics);

  std::unique_ptr<evalctl::MetricsHttpServer> metrics_server;
  if (!metrics_listen.empty()) {
    // Tasks by state and the watchers' lag are read from the store (a few rows) at each scrape.
    auto started = evalctl::MetricsHttpServer::Start(
        {.listen = metrics_listen, .registry = registry, .before_scrape = [&core] {
           core.RefreshMetrics();
         }});
    if (!started.ok()) {
      std::cerr << "evalctl-controller: " << started.status().message() << "\n";
      return 1;
    }
    metrics_server = *std::move(started);
    LOG(INFO) << "metrics on http://" << metrics_server->host() << ":" << metrics_server->port()
              << "/metrics";
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, credentials, &port);
  builder.RegisterService(&eval_service);
  builder.RegisterService(&agent_service);
  builder.RegisterService(&admin_service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(evalctl::wire::kControllerMaxReceiveBytes));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "evalctl-controller: cannot listen on " << listen
              << " (address in use, or not an address of this host)\n";
    return 1;
  }
  LOG(INFO) << "evalctl-controller serving on " << listen << " (port " << port << ", "
            << (insecure ? "insecure" : tls_client_ca.empty() ? "TLS" : "TLS, client certificates")
            << "), state in " << state_dir;
  // grpc.health.v1 answers SERVING for the server ("") and for each service by its full name,
  // until shutdown.
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health != nullptr) {
    for (const char* service : {evalctl::v1::EvalService::service_full_name(),
                                evalctl::v1::AgentService::service_full_name(),
                                evalctl::v1::AdminService::service_full_name()}) {
      health->SetServingStatus(service, true);
    }
  }

  signal(SIGTERM, [](int) { g_stop = true; });
  signal(SIGINT, [](int) { g_stop = true; });
  for (int64_t second = 1; !g_stop; ++second) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    core.Tick();
    eval_service.EndStreamsOfInvalidTokens();
    agent_service.EndStreamsOfInvalidTokens();
    // Bursts leave freed memory in glibc's per-thread arenas (a 10,000-task submission renders
    // and sends ~115 MiB of jobs; a status of 10,000 tasks builds ~50 MiB of messages on whichever
    // worker ran it). Return it to the system, or the resident size stays at the largest burst
    // per worker (docs/performance.md).
    if (second % 10 == 0) malloc_trim(0);
  }
  LOG(INFO) << "shutting down";
  if (health != nullptr) health->Shutdown();  // NOT_SERVING from here on
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
