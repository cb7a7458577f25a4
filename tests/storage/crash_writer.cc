// Crash-test child: appends events for four users round-robin, one WriteBatch each, and
// prints "<user> <sequence>" after each commit returns (= acked). Runs until killed.
// usage: storage_crash_writer DATA_DIR [sync]
#include <cstdio>
#include <string>

#include "storage/feedback_store.h"
#include "tests/storage/store_test_util.h"

int main(int argc, char** argv) {
  if (argc < 2) return 64;
  tailor::storage::StoreOptions options;
  options.path = argv[1];
  options.sync_wal = argc > 2 && std::string(argv[2]) == "sync";
  auto store = tailor::storage::FeedbackStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  // Continue where a previous (killed) round stopped.
  uint64_t next[4] = {1, 1, 1, 1};
  for (int u = 0; u < 4; ++u) {
    auto state = (*store)->ReadState("user-" + std::to_string(u));
    if (state.ok() && state->has_value()) next[u] = (*state)->feedback_count() + 1;
  }
  for (uint64_t i = 0;; ++i) {
    const int u = static_cast<int>(i % 4);
    const std::string user = "user-" + std::to_string(u);
    if (!(*store)->Commit(tailor::storage::MakeCommit(user, next[u])).ok()) return 2;
    std::printf("%s %llu\n", user.c_str(), static_cast<unsigned long long>(next[u]));
    std::fflush(stdout);
    ++next[u];
  }
}
