// Which network I/O backend this process runs on, and the switch to the epoll build when
// io_uring is refused (see RETAKE_IO_URING in the top-level CMakeLists.txt).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace retake::cli {

// RETAKE_IO_BACKEND: "auto" (or unset), "io_uring" or "epoll".
enum class IoChoice { auto_, io_uring, epoll };
inline std::optional<IoChoice> parse_io_choice(std::string_view text) {
  if (text.empty() || text == "auto") return IoChoice::auto_;
  if (text == "io_uring") return IoChoice::io_uring;
  if (text == "epoll") return IoChoice::epoll;
  return std::nullopt;
}

// Commands that run on epoll unless io_uring is asked for. serve answers from memory: a request
// is one read and one write on one socket, and io_uring's in-kernel work per operation costs
// more than the system calls it saves (bench/bench.py --serve, 2026-12-06: 0.69x of nginx on
// io_uring, 0.76x on epoll). The recorder makes twice the socket operations per request, and
// its upstream reads always find nothing at first: it gains (0.80x against 0.75x).
inline bool prefers_epoll(std::string_view command) {
  return command == "serve";
}

// What main() does about the backend, given the wish, whether this binary was built with
// io_uring, whether the command prefers epoll, and (asked only when it matters) whether the
// kernel lets this process use io_uring.
enum class IoDecision { run, exec_epoll, fail };
template <class Probe>
IoDecision decide_io_backend(IoChoice choice, bool built_with_io_uring, bool command_prefers_epoll,
                             Probe&& io_uring_usable) {
  if (!built_with_io_uring)
    return choice == IoChoice::io_uring ? IoDecision::fail : IoDecision::run;
  if (choice == IoChoice::epoll || (choice == IoChoice::auto_ && command_prefers_epoll))
    return IoDecision::exec_epoll;
  if (io_uring_usable()) return IoDecision::run;
  return choice == IoChoice::io_uring ? IoDecision::fail : IoDecision::exec_epoll;
}

// Called first in main(). Returns when this binary's backend can run; otherwise replaces the
// process with retake-epoll (installed beside the binary) or prints why not and exits 1
// (2 for a bad RETAKE_IO_BACKEND).
void ensure_io_backend(char** argv);

// "io_uring" or "epoll", with the reason when epoll stands in for io_uring: for --version.
std::string io_backend_description();

}  // namespace retake::cli
