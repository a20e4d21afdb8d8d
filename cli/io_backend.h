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

// What main() does about the backend, given the wish, whether this binary was built with
// io_uring, and (asked only when it matters) whether the kernel lets this process use it.
enum class IoDecision { run, exec_epoll, fail };
template <class Probe>
IoDecision decide_io_backend(IoChoice choice, bool built_with_io_uring, Probe&& io_uring_usable) {
  if (!built_with_io_uring)
    return choice == IoChoice::io_uring ? IoDecision::fail : IoDecision::run;
  if (choice == IoChoice::epoll) return IoDecision::exec_epoll;
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
