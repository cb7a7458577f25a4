#include "bench/scratch_dir.h"

#include <stdlib.h>

#include <filesystem>

namespace tailor::bench {

absl::StatusOr<std::unique_ptr<ScratchDir>> ScratchDir::Create() {
  std::string pattern = (std::filesystem::temp_directory_path() / "tailor-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError("cannot create a temp directory for the benchmark");
  }
  return std::unique_ptr<ScratchDir>(new ScratchDir(std::move(pattern)));
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace tailor::bench
