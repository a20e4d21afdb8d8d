// Test support for tests/h2: an h2c server built on H2ServerSession (plain TCP, 127.0.0.1,
// ephemeral port, its own io_context thread) that answers per path, and a subprocess runner.
//
// Paths: /echo (request body back, x-method/x-authority/x-path headers), /big (1 MiB pattern in
// 16 KiB writes), /trailers (body "payload", trailers grpc-status/grpc-message and
// x-request-trailer = the request's x-req trailer), /slow (answers after 200 ms), /count (reads
// the body chunk by chunk, answers its size), /hold (reads until the stream fails, records why),
// /reset (sends a head, then RST_STREAM CANCEL), /decline (answers 100000 bytes at once and
// declines the request body: event "decline: <how its read ended>"), anything else: 200 "hello". An
// extended CONNECT (needs H2Options::enable_connect_protocol) is answered 200 with x-protocol = its
// :protocol and echoes every DATA chunk as it comes until END_STREAM (event "connect: PROTOCOL
// SCHEME PATH").
#pragma once

#include <boost/asio.hpp>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/h2/h2_session.h"
#include "net/tls/tls_context.h"

namespace retake::h2::test {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal (e.g. `timeout`)
  std::string output;  // stdout and stderr, at most 4 MiB
};
// Runs `command` through /bin/sh under `timeout 60`, stdin from /dev/null.
CommandResult run_command(const std::string& command);

// The big body: byte i is 'a' + i % 26.
std::string big_body(size_t size);
constexpr size_t kBigSize = 1u << 20;

class TestH2Server;
// The per-path handler the server runs for each stream (events go to `server`).
boost::asio::awaitable<void> serve(TestH2Server* server, std::shared_ptr<H2Stream> stream);

class TestH2Server {
 public:
  // With `tls` (not owned, outlives the server): TLS with ALPN {"h2"} first, the ALPN result
  // recorded as an event "alpn: <protocol>".
  explicit TestH2Server(H2Options options = {}, tls::InterceptTlsContext* tls = nullptr);
  ~TestH2Server();
  unsigned short port() const { return port_; }
  std::string url(const std::string& path) const;
  std::string https_url(const std::string& host, const std::string& path) const;

  // Sessions accepted so far.
  size_t sessions() const;
  // Waits (at most 10 s) until `n` sessions have ended; returns their run() statuses.
  std::vector<Status> wait_ended(size_t n);
  // Waits (at most 10 s) until an event containing `text` was recorded; returns it or "".
  std::string wait_event(const std::string& text);
  // Waits (at most 10 s) until `n` events containing `text` were recorded; returns how many.
  size_t wait_events(const std::string& text, size_t n);
  // GOAWAY on every live session (graceful shutdown).
  void shutdown_sessions();

  // Used by the server's coroutines.
  void add_session(std::shared_ptr<H2ServerSession> session);
  void session_ended(Status status);
  void record(std::string event);
  const H2Options& options() const { return options_; }
  tls::InterceptTlsContext* tls() const { return tls_; }

 private:
  H2Options options_;
  tls::InterceptTlsContext* tls_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::weak_ptr<H2ServerSession>> sessions_;
  std::vector<Status> ended_;
  std::vector<std::string> events_;
  std::thread thread_;
};

}  // namespace retake::h2::test
