// A fixed pool of worker threads with a FIFO queue, so that gRPC threads never do disk I/O or run
// child processes themselves.
//
//   ThreadPool pool(4, "rpc");
//   pool.Schedule([=] { ...; reactor->Finish(status); });
//
// Thread-safe. The destructor runs what is queued, then joins the workers.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace evalctl {

class ThreadPool {
 public:
  explicit ThreadPool(int threads, std::string name = "pool");
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Schedule(std::function<void()> work);
  size_t queued() const;

 private:
  void Run();

  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  std::string name_;
};

}  // namespace evalctl
