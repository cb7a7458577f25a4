// TailordProcess: runs the real tailord binary as a child process on port 0 (for tests and
// benchmarks), reads the ports it chose from its startup log line, and collects its stderr.
#ifndef TAILOR_BENCH_TAILORD_PROCESS_H_
#define TAILOR_BENCH_TAILORD_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace tailor::bench {

class TailordProcess {
 public:
  // Starts `binary` with `args` (plus --listen/--metrics_listen on 127.0.0.1:0 unless given, or
  // unless `listen_flags` is false: then `args` say where to listen). Any server that logs
  // tailord's startup line ("serving grpc_port=N metrics_port=M") can be run this way.
  TailordProcess(const std::string& binary, std::vector<std::string> args,
                 bool listen_flags = true);
  ~TailordProcess();  // SIGKILLs the child if it still runs

  // Waits until the server logs that it is serving; false if it exited or timed out.
  bool WaitUntilServing(int timeout_ms = 30000);
  // Waits for exit; the exit code, or 128 + signal, or nullopt on timeout.
  std::optional<int> WaitForExit(int timeout_ms = 30000);
  void Signal(int signal_number);

  pid_t pid() const { return pid_; }
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  // Everything the child wrote to stderr so far.
  const std::string& log();

 private:
  void Drain(int timeout_ms);

  pid_t pid_ = -1;
  int stderr_fd_ = -1;
  std::string log_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::optional<int> exit_code_;
};

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_TAILORD_PROCESS_H_
