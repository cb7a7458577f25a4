// ScratchDir: a fresh directory under the system temp dir for one benchmark run, removed with
// everything in it when the object goes away (on error paths too).
#ifndef TAILOR_BENCH_SCRATCH_DIR_H_
#define TAILOR_BENCH_SCRATCH_DIR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tailor::bench {

class ScratchDir {
 public:
  static absl::StatusOr<std::unique_ptr<ScratchDir>> Create();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  const std::string path_;
};

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_SCRATCH_DIR_H_
