// RawWriteBaseline: what the disk and RocksDB cost with nothing of Tailor on top — the
// baseline `tailor-bench load` compares feedback ingestion with. `threads` writers each
// commit `batches_per_thread` WriteBatches into a fresh RocksDB (default options, one column
// family); each batch holds the same puts as one feedback commit (history record, idempotency
// key, user state) with the given key and value sizes.
#ifndef TAILOR_STORAGE_RAW_WRITE_BASELINE_H_
#define TAILOR_STORAGE_RAW_WRITE_BASELINE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tailor::storage {

struct RawPut {
  size_t key_bytes = 0;
  size_t value_bytes = 0;
};

struct RawWriteResult {
  uint64_t batches = 0;
  double seconds = 0;
  double batches_per_second = 0;
};

absl::StatusOr<RawWriteResult> MeasureRawBatchWrites(const std::string& path,
                                                     const std::vector<RawPut>& batch, int threads,
                                                     int batches_per_thread, bool sync);

}  // namespace tailor::storage

#endif  // TAILOR_STORAGE_RAW_WRITE_BASELINE_H_
