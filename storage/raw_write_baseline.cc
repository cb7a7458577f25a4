#include "storage/raw_write_baseline.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <memory>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"

namespace tailor::storage {

absl::StatusOr<RawWriteResult> MeasureRawBatchWrites(const std::string& path,
                                                     const std::vector<RawPut>& batch, int threads,
                                                     int batches_per_thread, bool sync) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  if (rocksdb::Status s = rocksdb::DB::Open(options, path, &raw); !s.ok()) {
    return absl::InternalError(absl::StrCat("raw baseline: ", s.ToString()));
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions write;
  write.sync = sync;
  std::atomic<bool> failed{false};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      std::string value;
      for (int i = 0; i < batches_per_thread && !failed; ++i) {
        rocksdb::WriteBatch wb;
        for (size_t p = 0; p < batch.size(); ++p) {
          // Distinct keys (thread, batch, put) padded to size; random bytes, as floats are.
          std::string key = absl::StrCat(t, "/", i, "/", p);
          key.resize(std::max(key.size(), batch[p].key_bytes), 'k');
          value.resize(batch[p].value_bytes);
          for (char& c : value) c = static_cast<char>(rng());
          wb.Put(key, value);
        }
        if (!db->Write(write, &wb).ok()) failed = true;
      }
    });
  }
  for (std::thread& w : writers) w.join();
  if (failed) return absl::InternalError("raw baseline: a write failed");
  RawWriteResult result;
  result.batches = static_cast<uint64_t>(threads) * static_cast<uint64_t>(batches_per_thread);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.batches_per_second = static_cast<double>(result.batches) / result.seconds;
  return result;
}

}  // namespace tailor::storage
