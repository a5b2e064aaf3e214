// MetricsHttpServer: the small HTTP endpoint of a binary's metrics. It serves GET /metrics in
// Prometheus text format (version 0.0.4) from a registry, plus any extra plain-text routes (the
// agent's /healthz). It runs its own two threads (cpp-httplib) and never touches the binary's
// gRPC threads or worker pools.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   ASSIGN_OR_RETURN(auto server, MetricsHttpServer::Start({.listen = "127.0.0.1:9470",
//                                                            .registry = registry}));
//   ... server->port() ...;   // the bound port (useful with port 0)
//   server.reset();           // stops serving
//
// `before_scrape` runs on the HTTP thread before each /metrics answer, to refresh gauges whose
// value is cheapest to read on demand; it must be thread-safe. Routes run on the HTTP threads.
//
// Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

namespace httplib {
class Server;
}

namespace evalctl {

struct HttpResponse {
  int status = 200;
  std::string body;
};

struct MetricsHttpOptions {
  // "host:port", "[v6]:port", ":port" or "port"; the host defaults to 127.0.0.1. Port 0 picks a
  // free port.
  std::string listen;
  std::shared_ptr<prometheus::Collectable> registry;
  std::function<void()> before_scrape;
  // Extra GET routes (exact paths), answered as text/plain.
  std::map<std::string, std::function<HttpResponse()>> routes;
};

// Splits "host:port" as --metrics-listen takes it (see MetricsHttpOptions::listen).
absl::StatusOr<std::pair<std::string, int>> ParseListenAddress(const std::string& listen);

class MetricsHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(MetricsHttpOptions options);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  const std::string& host() const { return host_; }
  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;

  MetricsHttpOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string host_;
  int port_ = 0;
};

}  // namespace evalctl
