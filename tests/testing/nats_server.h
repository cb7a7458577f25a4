// A nats-server child process for tests (Debian's, JetStream on, storing in a temp directory,
// on a loopback port), alone or as one node of a cluster.
#ifndef TAILOR_TESTS_TESTING_NATS_SERVER_H_
#define TAILOR_TESTS_TESTING_NATS_SERVER_H_

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tailor::testing {

inline int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

inline bool Accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return ok;
}

// A nats-server child process with JetStream, storing under `store`. Its log goes to
// `store`.log, for a failing test's reader.
class NatsServer {
 public:
  NatsServer(std::string store, int port) : store_(std::move(store)), port_(port) { Start(); }
  ~NatsServer() { Stop(); }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  void Start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string log = store_ + ".log";
      if (std::FILE* out = std::freopen(log.c_str(), "a", stderr)) ::dup2(::fileno(out), 1);
      const std::string port = std::to_string(port_);
      ::execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port.c_str(), "-js", "-sd",
               store_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !Accepts(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  std::string url() const { return absl::StrCat("nats://127.0.0.1:", port_); }

 private:
  std::string store_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace tailor::testing

#endif  // TAILOR_TESTS_TESTING_NATS_SERVER_H_
