// What the store reads back from RocksDB, from a data directory that may be damaged or
// foreign: keys are split into user and remainder, and a user's state record becomes a
// posterior only if it describes a usable one (finite, positive definite, the right size),
// which is then safe to use. The first byte picks the record kind.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/user_state.h"
#include "google/protobuf/stubs/logging.h"
#include "storage/keys.h"
#include "tailor/storage/v1/records.pb.h"

// Protobuf logs every string field with invalid UTF-8 it meets; the fuzzer meets many.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  namespace records = tailor::storage::v1;
  const char* bytes = reinterpret_cast<const char*>(data) + 1;
  const int length = static_cast<int>(size - 1);
  switch (data[0] % 4) {
    case 0: {
      const absl::string_view key(bytes, static_cast<size_t>(length));
      if (auto decoded = tailor::storage::DecodeUserKey(key)) {
        // A decoded user's prefix is where the key starts.
        if (tailor::storage::UserPrefix(decoded->user_id) + std::string(decoded->rest) !=
            std::string(key)) {
          std::abort();
        }
      }
      break;
    }
    case 1: {
      records::UserState state;
      if (!state.ParseFromArray(bytes, length)) break;
      for (int d : {1, 2, 10, 16, 64, 65, 200}) {
        if (auto posterior = tailor::engine::FromState(state, d)) {
          // A posterior that was accepted predicts finite probabilities.
          const Eigen::VectorXd diff = Eigen::VectorXd::Ones(d);
          if (!std::isfinite(posterior->mean().dot(diff))) std::abort();
          posterior->Observe(diff);
          if (!posterior->mean().allFinite()) std::abort();
        }
      }
      break;
    }
    case 2: {
      records::FeedbackRecord record;
      (void)record.ParseFromArray(bytes, length);
      break;
    }
    case 3: {
      records::IdempotencyRecord record;
      (void)record.ParseFromArray(bytes, length);
      records::SchemaRecord schema;
      (void)schema.ParseFromArray(bytes, length);
      break;
    }
  }
  return 0;
}
