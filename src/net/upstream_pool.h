// retake::net UpstreamPool: idle keep-alive connections to upstreams, keyed by "host:port",
// so consecutive exchanges skip the TCP handshake.
//
// Depends on Boost.Asio only. Thread-safe: take()/give() lock a mutex for a few pointer moves
// and never across I/O. Bounded: at most `per_upstream` idle connections per key and
// `max_total` overall; a connection idle longer than `idle_timeout` is closed on the next
// take()/sweep().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

namespace retake::net {

// One connection to an upstream. The socket uses the io_context's plain executor so it can move
// between client connections (each runs on its own strand).
struct UpstreamConnection {
  explicit UpstreamConnection(boost::asio::ip::tcp::socket s) : socket(std::move(s)) {}
  boost::asio::ip::tcp::socket socket;
  std::string key;           // "host:port" as named by the request (pool key)
  std::string address;       // "ip:port" actually connected
  int64_t connected_ns = 0;  // when the TCP connection was established (flow::now_ns())
  uint32_t exchanges = 0;    // exchanges completed on it; > 0 means it came from reuse
  std::chrono::steady_clock::time_point idle_since;
  // Protocol state the owner layered on `socket` (the recorder's TLS session), pooled with it so
  // a reused connection skips its handshake too. Declared after `socket` so it is destroyed
  // first. Default: empty (plain TCP).
  std::shared_ptr<void> layer;
};

class UpstreamPool {
 public:
  // Defaults: 64 idle per upstream, 1024 in total, 30 s idle expiry.
  explicit UpstreamPool(size_t per_upstream = 64, size_t max_total = 1024,
                        std::chrono::milliseconds idle_timeout = std::chrono::seconds(30))
      : per_upstream_(per_upstream), max_total_(max_total), idle_timeout_(idle_timeout) {}
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // The most recently returned live connection for `key`, or nullptr. Connections found
  // expired or closed by the peer (a non-blocking peek sees EOF or stray bytes) are closed.
  std::unique_ptr<UpstreamConnection> take(const std::string& key);
  // Returns a connection that finished an exchange cleanly and may be reused. Dropped (closed)
  // when the pool is full for its key or overall, or after close().
  void give(std::unique_ptr<UpstreamConnection> conn);
  // Closes connections idle longer than the idle timeout. Returns how many were closed.
  size_t sweep();
  // Closes every idle connection and refuses further give()s. Idempotent.
  void close();
  size_t idle_count() const;
  // Whether an idle connection for `key` is pooled (not checked for liveness: take() does).
  bool has_idle(const std::string& key) const;

 private:
  using List = std::vector<std::unique_ptr<UpstreamConnection>>;
  size_t per_upstream_;
  size_t max_total_;
  std::chrono::milliseconds idle_timeout_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, List> idle_;
  size_t total_ = 0;
  bool closed_ = false;
};

// True when a non-blocking peek on an idle socket shows it is still open and silent.
bool idle_socket_alive(boost::asio::ip::tcp::socket& socket) noexcept;

}  // namespace retake::net
