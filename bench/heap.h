// HeapBytes: the process's allocated heap as glibc counts it, for benchmarks that measure what
// a structure costs as the heap's growth. Large blocks (HNSW graphs, big matrices and hash
// tables) are served by mmap and counted apart from the arena's chunks, so both are summed.
#ifndef TAILOR_BENCH_HEAP_H_
#define TAILOR_BENCH_HEAP_H_

#include <malloc.h>

namespace tailor::bench {

inline double HeapBytes() {
  const struct mallinfo2 info = ::mallinfo2();
  return static_cast<double>(info.uordblks + info.hblkhd);
}

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_HEAP_H_
