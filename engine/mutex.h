// Mutex and MutexLock: std::mutex with Abseil's thread-safety annotations. The engine uses
// these instead of absl::Mutex because Debian's Abseil is not built with ThreadSanitizer, so
// TSan cannot see absl::Mutex's synchronization; std::mutex (pthread) it intercepts.
#ifndef TAILOR_ENGINE_MUTEX_H_
#define TAILOR_ENGINE_MUTEX_H_

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace tailor::engine {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_MUTEX_H_
