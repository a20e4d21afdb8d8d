// The choice between io_uring, the epoll build and an error (cli/io_backend.h).
#include "cli/io_backend.h"

#include <doctest/doctest.h>

using namespace retake::cli;

TEST_CASE("RETAKE_IO_BACKEND accepts auto, io_uring and epoll, and nothing else") {
  CHECK(parse_io_choice("") == IoChoice::auto_);
  CHECK(parse_io_choice("auto") == IoChoice::auto_);
  CHECK(parse_io_choice("io_uring") == IoChoice::io_uring);
  CHECK(parse_io_choice("epoll") == IoChoice::epoll);
  CHECK_FALSE(parse_io_choice("uring").has_value());
  CHECK_FALSE(parse_io_choice("EPOLL").has_value());
}

TEST_CASE("the io_uring build runs, hands over to retake-epoll, or refuses") {
  int probes = 0;
  auto usable = [&] {
    ++probes;
    return true;
  };
  auto refused = [&] {
    ++probes;
    return false;
  };
  CHECK(decide_io_backend(IoChoice::auto_, true, false, usable) == IoDecision::run);
  CHECK(decide_io_backend(IoChoice::io_uring, true, false, usable) == IoDecision::run);
  CHECK(probes == 2);
  // Refused by the kernel (seccomp, kernel.io_uring_disabled): epoll, unless io_uring was asked.
  CHECK(decide_io_backend(IoChoice::auto_, true, false, refused) == IoDecision::exec_epoll);
  CHECK(decide_io_backend(IoChoice::io_uring, true, false, refused) == IoDecision::fail);
  // Asking for epoll does not probe.
  probes = 0;
  CHECK(decide_io_backend(IoChoice::epoll, true, false, usable) == IoDecision::exec_epoll);
  CHECK(probes == 0);
}

TEST_CASE("the epoll build runs without probing, and refuses only a demand for io_uring") {
  int probes = 0;
  auto usable = [&] {
    ++probes;
    return true;
  };
  CHECK(decide_io_backend(IoChoice::auto_, false, false, usable) == IoDecision::run);
  CHECK(decide_io_backend(IoChoice::epoll, false, true, usable) == IoDecision::run);
  CHECK(decide_io_backend(IoChoice::io_uring, false, false, usable) == IoDecision::fail);
  CHECK(probes == 0);
}

TEST_CASE("serve runs on epoll unless io_uring is asked for") {
  CHECK(prefers_epoll("serve"));
  CHECK_FALSE(prefers_epoll("record"));
  CHECK_FALSE(prefers_epoll("daemon"));
  CHECK_FALSE(prefers_epoll(""));
  int probes = 0;
  auto usable = [&] {
    ++probes;
    return true;
  };
  CHECK(decide_io_backend(IoChoice::auto_, true, true, usable) == IoDecision::exec_epoll);
  CHECK(probes == 0);
  CHECK(decide_io_backend(IoChoice::io_uring, true, true, usable) == IoDecision::run);
  CHECK(probes == 1);
  CHECK(decide_io_backend(IoChoice::auto_, false, true, usable) == IoDecision::run);
}
