// CPU placement for benchmarks: which CPUs this process may use, and pinning every thread of a
// process (this one or a child) to a set of CPUs, so that a load generator and the server it
// drives do not share cores. Threads created later inherit their creator's set.
#ifndef TAILOR_BENCH_CPU_AFFINITY_H_
#define TAILOR_BENCH_CPU_AFFINITY_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tailor::bench {

// The CPUs this process may run on, ascending.
std::vector<int> AllowedCpus();

// Sets the affinity of every thread of process `pid` (0 = this process) to `cpus`.
absl::Status PinProcess(pid_t pid, const std::vector<int>& cpus);

// "0-3" style description of a CPU list, for reports.
std::string DescribeCpus(const std::vector<int>& cpus);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_CPU_AFFINITY_H_
