// A TCP server on 127.0.0.1 (a free port) that sends back every byte it receives, for tests of
// port forwards. Serves any number of connections, one at a time, until destroyed.
// Thread-safe: the server runs on its own thread.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace evalctl::ssh::testing {

class EchoServer {
 public:
  EchoServer();
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  int port() const { return port_; }

 private:
  void Serve();

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Connects to 127.0.0.1:port, sends `data`, half-closes, and returns all it reads back until the
// peer closes (or `timeout` passes).
absl::StatusOr<std::string> RoundTrip(int port, const std::string& data,
                                      absl::Duration timeout = absl::Seconds(10));

}  // namespace evalctl::ssh::testing
