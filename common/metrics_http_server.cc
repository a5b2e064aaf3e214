#include "common/metrics_http_server.h"

#include <sys/socket.h>

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "prometheus/text_serializer.h"

namespace evalctl {

absl::StatusOr<std::pair<std::string, int>> ParseListenAddress(const std::string& listen) {
  std::string host = "127.0.0.1";
  std::string port_text = listen;
  if (const size_t colon = listen.rfind(':'); colon != std::string::npos) {
    host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
    if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
      host = host.substr(1, host.size() - 2);
    } else if (absl::StrContains(host, ':')) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics address ", listen, ": write IPv6 hosts in brackets, [::1]:9470"));
    }
    if (host.empty()) host = "127.0.0.1";
  }
  int port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address ", listen, ": expected HOST:PORT, e.g. 127.0.0.1:9470"));
  }
  return std::make_pair(host, port);
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    MetricsHttpOptions options) {
  auto address = ParseListenAddress(options.listen);
  if (!address.ok()) return address.status();
  std::unique_ptr<MetricsHttpServer> out(new MetricsHttpServer());
  out->options_ = std::move(options);
  out->host_ = address->first;
  out->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *out->server_;
  // Two threads are plenty for a scrape every few seconds and an occasional health probe; the
  // library's default is one per core, at least eight.
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // The library's default sets SO_REUSEPORT, which would let a second process bind the same port
  // and share the scrapes; only SO_REUSEADDR (a quick restart over TIME_WAIT) is wanted.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_read_timeout(std::chrono::seconds(10));
  server.set_write_timeout(std::chrono::seconds(10));

  const MetricsHttpOptions* opts = &out->options_;
  server.Get("/metrics", [opts](const httplib::Request&, httplib::Response& res) {
    if (opts->before_scrape) opts->before_scrape();
    std::string body;
    if (opts->registry != nullptr) {
      body = prometheus::TextSerializer().Serialize(opts->registry->Collect());
    }
    res.set_content(body, "text/plain; version=0.0.4; charset=utf-8");
  });
  for (const auto& [path, route] : out->options_.routes) {
    const auto* fn = &route;
    server.Get(path, [fn](const httplib::Request&, httplib::Response& res) {
      HttpResponse r = (*fn)();
      res.status = r.status;
      res.set_content(r.body, "text/plain; charset=utf-8");
    });
  }

  if (address->second == 0) {
    out->port_ = server.bind_to_any_port(out->host_);
    if (out->port_ < 0) out->port_ = 0;
  } else if (server.bind_to_port(out->host_, address->second)) {
    out->port_ = address->second;
  }
  if (out->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", out->options_.listen,
                     " (address in use, or not an address of this host)"));
  }
  out->thread_ = std::thread([s = out->server_.get()] { s->listen_after_bind(); });
  // stop() is only heard once the accept loop runs: wait for it, so that the destructor can stop.
  for (int i = 0; i < 500 && !server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return out;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace evalctl
