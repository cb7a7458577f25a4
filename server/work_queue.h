// WorkQueue: a fixed pool of threads that runs the RPC work that may block on storage
// (feedback commits, exports, deletes, checkpoints), so gRPC reactor callbacks never block.
#ifndef TAILOR_SERVER_WORK_QUEUE_H_
#define TAILOR_SERVER_WORK_QUEUE_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tailor::server {

class WorkQueue {
 public:
  explicit WorkQueue(int threads);
  // Runs every task already queued, then joins the threads.
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Post(std::function<void()> task);
  // Tasks posted and not yet started.
  size_t depth() const;

 private:
  void Run();

  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace tailor::server

#endif  // TAILOR_SERVER_WORK_QUEUE_H_
