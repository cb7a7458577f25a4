#include "bench/tailord_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace tailor::bench {
namespace {

bool HasFlag(const std::vector<std::string>& args, const std::string& name) {
  for (const std::string& a : args) {
    if (a.rfind("--" + name + "=", 0) == 0) return true;
  }
  return false;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

TailordProcess::TailordProcess(const std::string& binary, std::vector<std::string> args,
                               bool listen_flags) {
  if (listen_flags && !HasFlag(args, "listen")) args.push_back("--listen=127.0.0.1:0");
  if (listen_flags && !HasFlag(args, "metrics_listen")) {
    args.push_back("--metrics_listen=127.0.0.1:0");
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) std::abort();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(pipe_fds[1], STDERR_FILENO);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  stderr_fd_ = pipe_fds[0];
  ::fcntl(stderr_fd_, F_SETFL, O_NONBLOCK);
}

TailordProcess::~TailordProcess() {
  if (pid_ > 0 && !exit_code_.has_value()) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (stderr_fd_ >= 0) ::close(stderr_fd_);
}

void TailordProcess::Drain(int timeout_ms) {
  pollfd pfd{stderr_fd_, POLLIN, 0};
  if (::poll(&pfd, 1, timeout_ms) <= 0) return;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(stderr_fd_, buffer, sizeof(buffer))) > 0) {
    log_.append(buffer, static_cast<size_t>(n));
  }
}

bool TailordProcess::WaitUntilServing(int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    Drain(50);
    // The startup line: "... serving grpc_port=N metrics_port=M ..."
    const size_t at = log_.find("serving grpc_port=");
    if (at != std::string::npos && log_.find('\n', at) != std::string::npos) {
      std::sscanf(log_.c_str() + at, "serving grpc_port=%d metrics_port=%d", &grpc_port_,
                  &metrics_port_);
      return grpc_port_ > 0;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      Drain(0);
      return false;
    }
  }
  return false;
}

std::optional<int> TailordProcess::WaitForExit(int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (!exit_code_.has_value() && NowMs() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else {
      Drain(20);
    }
  }
  Drain(0);
  return exit_code_;
}

void TailordProcess::Signal(int signal_number) { ::kill(pid_, signal_number); }

const std::string& TailordProcess::log() {
  Drain(0);
  return log_;
}

}  // namespace tailor::bench
