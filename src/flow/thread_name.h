// retake::name_this_thread: names the calling thread for `top -H`, `ps -L`, perf and gdb, so
// that where a process spends its CPU (network workers, the flow writer, a replay's scheduler)
// can be told apart without a debugger. Linux keeps 15 characters; longer names are cut.
#pragma once

#include <pthread.h>

#include <cstring>

namespace retake {

inline void name_this_thread(const char* name) noexcept {
  char shortened[16];
  std::strncpy(shortened, name, sizeof shortened - 1);
  shortened[sizeof shortened - 1] = '\0';
  pthread_setname_np(pthread_self(), shortened);
}

}  // namespace retake
