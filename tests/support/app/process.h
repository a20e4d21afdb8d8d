// A child process for tests: a python3 server that prints "PORT n" on stdout once listening and
// exits when its stdin closes. The destructor closes stdin, waits briefly, then kills.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace retake::testing {

class ChildServer {
 public:
  explicit ChildServer(std::vector<std::string> argv) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    // Read "PORT n" with a deadline so a broken server fails the test instead of hanging it.
    std::string line;
    for (int waited = 0; waited < 10000;) {
      pollfd p{stdout_, POLLIN, 0};
      int r = poll(&p, 1, 100);
      if (r == 0) {
        waited += 100;
        continue;
      }
      char c;
      if (read(stdout_, &c, 1) != 1) break;
      if (c == '\n') {
        if (line.rfind("PORT ", 0) == 0) {
          port_ = static_cast<uint16_t>(std::stoi(line.substr(5)));
          return;
        }
        line.clear();
      } else {
        line += c;
      }
    }
    throw std::runtime_error("child server did not print PORT");
  }
  ~ChildServer() {
    if (stdin_ >= 0) close(stdin_);
    for (int i = 0; i < 50; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        close(stdout_);
        return;
      }
      usleep(20000);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(stdout_);
  }
  ChildServer(const ChildServer&) = delete;
  ChildServer& operator=(const ChildServer&) = delete;
  uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1;
  uint16_t port_ = 0;
};

// Directory of the test application scripts.
inline std::string app_dir() {
  return RETAKE_APP_DIR;
}
inline std::string support_dir() {
  return RETAKE_SUPPORT_DIR;
}

}  // namespace retake::testing
