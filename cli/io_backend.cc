// The network I/O backend check that runs before anything else in main().
#include "cli/io_backend.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#ifdef RETAKE_IO_URING
#include <liburing.h>

// Asio 1.81 asks for 16384 entries for each io_context's ring (io_uring_service::ring_size, a
// constant): 1.6 MB of submission and completion queues per worker, resident from its first
// socket, which alone would put an idle recorder past its 15 MB. The entries bound only how many
// requests wait for one submission and how many completions wait to be reaped, not how many
// operations are in flight (the kernel keeps overflowing completions: IORING_FEAT_NODROP), and
// Asio submits and reaps in batches of 128. 1024 entries cost 100 KB a ring. The binary links
// with --wrap=io_uring_queue_init so Asio's call comes here.
extern "C" int __real_io_uring_queue_init(unsigned entries, struct io_uring* ring, unsigned flags);
extern "C" int __wrap_io_uring_queue_init(unsigned entries, struct io_uring* ring, unsigned flags) {
  constexpr unsigned kMaxEntries = 1024;
  return __real_io_uring_queue_init(std::min(entries, kMaxEntries), ring, flags);
}
#endif

namespace retake::cli {

namespace {

constexpr const char* kChoiceVar = "RETAKE_IO_BACKEND";
// Set by the io_uring build for the epoll build it starts: why it did.
constexpr const char* kReasonVar = "RETAKE_IO_FALLBACK_REASON";

#ifdef RETAKE_IO_URING
constexpr bool kBuiltWithIoUring = true;

// Whether io_uring works for this process: a ring is set up and a no-op goes through it (a
// seccomp profile may refuse io_uring_setup or io_uring_enter). Empty when it does, else why not.
std::string io_uring_refusal() {
  struct io_uring ring {};
  int r = io_uring_queue_init(2, &ring, 0);
  if (r < 0) return std::string("io_uring_setup: ") + std::strerror(-r);
  std::string why;
  if (struct io_uring_sqe* sqe = io_uring_get_sqe(&ring)) {
    io_uring_prep_nop(sqe);
    r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0) why = std::string("io_uring_enter: ") + std::strerror(-r);
  } else {
    why = "io_uring: no submission entry";
  }
  io_uring_queue_exit(&ring);
  return why;
}
#else
constexpr bool kBuiltWithIoUring = false;
std::string io_uring_refusal() {
  return "this build has no io_uring (RETAKE_IO_URING=OFF)";
}
#endif

}  // namespace

void ensure_io_backend(char** argv) {
  const char* wish = std::getenv(kChoiceVar);
  auto choice = parse_io_choice(wish ? wish : "");
  if (!choice) {
    std::fprintf(stderr, "retake: %s=%s: expected auto, io_uring or epoll\n", kChoiceVar, wish);
    std::exit(2);
  }
  std::string_view command = argv[0] && argv[1] ? argv[1] : "";
  const bool epoll_command = prefers_epoll(command);
  std::string refusal;
  auto decision = decide_io_backend(*choice, kBuiltWithIoUring, epoll_command, [&] {
    refusal = io_uring_refusal();
    return refusal.empty();
  });
  if (decision == IoDecision::run) return;
  if (decision == IoDecision::fail) {
    // The probe has said why, unless this build has no io_uring to probe.
    if (refusal.empty()) refusal = io_uring_refusal();
    std::fprintf(stderr, "retake: %s=io_uring, but %s\n", kChoiceVar, refusal.c_str());
    std::exit(1);
  }
  // The epoll build lies beside this binary (the build tree links it there; an installation
  // puts both in one directory).
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path epoll = self.parent_path() / "retake-epoll";
  if (refusal.empty())
    refusal = *choice == IoChoice::epoll ? std::string(kChoiceVar) + "=epoll"
                                         : "retake " + std::string(command) + " runs on epoll";
  setenv(kReasonVar, refusal.c_str(), 1);
  if (!ec) execv(epoll.c_str(), argv);
  std::fprintf(stderr,
               "retake: network I/O needs io_uring or the epoll build, and neither is "
               "available: %s; %s: %s (build with -DRETAKE_IO_URING=OFF for an epoll-only "
               "retake)\n",
               refusal.c_str(), ec ? "/proc/self/exe" : epoll.c_str(),
               ec ? ec.message().c_str() : std::strerror(errno));
  std::exit(1);
}

std::string io_backend_description() {
  if (kBuiltWithIoUring) return "io_uring";
  const char* reason = std::getenv(kReasonVar);
  return reason ? std::string("epoll (instead of io_uring: ") + reason + ")" : "epoll";
}

}  // namespace retake::cli
