// evalctl-controller: the central service. Composition root: flags → store → core → gRPC server.
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics_http_server.h"
#include "common/thread_pool.h"
#include "controller/core/controller_core.h"
#include "controller/core/sqlite_store.h"
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
  int workers = 8;
  std::string metrics_listen;
  app.add_option("--listen", listen, "host:port to serve gRPC on")->capture_default_str();
  app.add_option("--state-dir", state_dir, "Directory of the SQLite store")->capture_default_str();
  app.add_flag("--insecure", insecure,
               "Serve without TLS or authentication; only allowed on a loopback address");
  app.add_option("--agent-wait", agent_wait_s,
                 "Seconds tasks wait for a disconnected agent before they fail")
      ->capture_default_str();
  app.add_option("--workers", workers, "Worker threads for request handling")->capture_default_str();
  app.add_option("--metrics-listen", metrics_listen,
                 "host:port to serve Prometheus /metrics on over HTTP (host defaults to "
                 "127.0.0.1; off when empty)");
  CLI11_PARSE(app, argc, argv);

  if (!insecure) {
    std::cerr << "evalctl-controller: TLS is not configured; pass --insecure to serve without "
                 "TLS on a loopback address\n";
    return 2;
  }
  if (!IsLoopback(listen)) {
    std::cerr << "evalctl-controller: --insecure serves without TLS or authentication, so it "
                 "binds loopback addresses only; "
              << listen << " is not one\n";
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  std::filesystem::permissions(state_dir, std::filesystem::perms::owner_all, ec);
  auto store = evalctl::controller::SqliteStore::Open(state_dir + "/controller.db");
  if (!store.ok()) {
    std::cerr << "evalctl-controller: " << store.status().message() << "\n";
    return 1;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  evalctl::controller::ControllerMetrics metrics(*registry, EVALCTL_VERSION);
  evalctl::RealClock clock;
  evalctl::controller::ControllerCore core(
      {.agent_wait = absl::Seconds(agent_wait_s)}, store->get(), &clock, &metrics);
  evalctl::ThreadPool pool(workers, "ctl-worker");
  evalctl::controller::InsecureAuthenticator auth;
  evalctl::controller::EvalServiceImpl eval_service(&core, &auth, &pool, &metrics);
  evalctl::controller::AgentServiceImpl agent_service(&core, &pool, &metrics);

  std::unique_ptr<evalctl::MetricsHttpServer> metrics_server;
  if (!metrics_listen.empty()) {
    auto started =
        evalctl::MetricsHttpServer::Start({.listen = metrics_listen, .registry = registry});
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
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&eval_service);
  builder.RegisterService(&agent_service);
  builder.SetMaxReceiveMessageSize(8 << 20);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "evalctl-controller: cannot listen on " << listen
              << " (address in use, or not an address of this host)\n";
    return 1;
  }
  LOG(INFO) << "evalctl-controller serving on " << listen << " (port " << port
            << "), state in " << state_dir;

  signal(SIGTERM, [](int) { g_stop = true; });
  signal(SIGINT, [](int) { g_stop = true; });
  for (int64_t second = 1; !g_stop; ++second) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    core.Tick();
    // Bursts leave freed memory in glibc's per-thread arenas (a 10,000-task submission renders
    // and sends ~115 MiB of jobs; a status of 10,000 tasks builds ~50 MiB of messages on whichever
    // worker ran it). Return it to the system, or the resident size stays at the largest burst
    // per worker (docs/performance.md).
    if (second % 10 == 0) malloc_trim(0);
  }
  LOG(INFO) << "shutting down";
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
