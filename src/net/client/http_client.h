// retake::net::HttpClient: the outgoing HTTP/1.1 client that client replay (and anything else
// that must re-issue a stored request) uses. Keep-alive connection pool per endpoint (bounded),
// connect/read deadlines, a stored-body cap with the rest drained, TLS with SNI and hostname
// verification, and the six flow::Timing fields filled for every exchange.
//
// Depends on src/flow, the HTTP/1 codec of src/net (the recorder's strict parser reads every
// response: headers as received, trailers kept, 1xx interim responses skipped), Boost.Asio/
// Beast streams and OpenSSL only. Must not depend on the store, the replay logic or the CLI:
// it sends a flow::Request and gives back a flow::Flow.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "flow/flow.h"

namespace boost::asio::ssl {
class context;
}

namespace retake::net {

// Where a request goes: the address to connect to and, for https, the TLS server name.
struct Endpoint {
  std::string scheme = "http";  // "http" or "https"
  std::string host;             // DNS name or IP literal to connect to (no brackets)
  uint16_t port = 0;            // 0: the scheme's default (80/443)
  // TLS server name sent as SNI and checked against the certificate. "": `host`.
  // An IP literal is never sent as SNI (RFC 6066) but is still verified (IP SAN).
  std::string server_name;

  uint16_t effective_port() const { return port ? port : (scheme == "https" ? 443 : 80); }
  // The pool key: connections are reused only between requests with equal keys.
  std::string key() const;
};

struct ClientOptions {
  // Threads running the client's io_context. 0: none of its own; the owner runs context()
  // (on one thread, beside its own work there: no thread hop per exchange). Default: 1.
  unsigned threads = 1;
  // Connections open at once to one endpoint (in use + idle); further sends wait for one to be
  // returned. Default: 64.
  size_t max_connections_per_endpoint = 64;
  // Deadline for resolve + TCP connect + TLS handshake. Default: 10 s.
  std::chrono::milliseconds connect_timeout{10'000};
  // Deadline for each write and each read of the response (header, every body chunk).
  // Default: 30 s.
  std::chrono::milliseconds read_timeout{30'000};
  // Response body bytes kept in Flow::response->body.data; the rest is read and dropped
  // (Body::truncated set, Body::size counts everything). Default: 16 MiB.
  uint64_t body_cap = 16ull << 20;
  // Hard limit on a response body; past it the exchange fails with body_too_large and the
  // connection is closed. Default: 1 GiB.
  uint64_t body_limit = 1ull << 30;
  // Limit on the response header block. Default: 64 KiB.
  uint32_t header_limit = 64u << 10;
  // TLS context for https endpoints, shared by all connections; the caller keeps it configured
  // (roots, verification mode, client certs). Null: a context with the system's default roots
  // and peer verification on (or off when `insecure`). Default: null.
  std::shared_ptr<boost::asio::ssl::context> tls_context;
  // Only with a null tls_context: skip certificate and hostname verification. Default: false.
  bool insecure = false;
  // Called once, before the first TLS handshake, when tls_context is given: the place to
  // finish preparing it on first use (e.g. load trust roots only a TLS peer needs). Called
  // on a network thread. Default: none.
  std::function<void()> before_first_tls;
};

struct ClientStats {
  uint64_t sent = 0;  // exchanges started
  uint64_t connections_opened = 0;
  uint64_t connections_reused = 0;  // exchanges that ran on a pooled keep-alive connection
  uint64_t failed = 0;              // exchanges that ended with Flow::error
};

// Thread-safe: send() may be awaited from any coroutine, on any executor, concurrently.
// Destroying the client stops its threads; it must outlive every send it started.
class HttpClient {
 public:
  explicit HttpClient(ClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // The client's executor (its io_context, run by options.threads threads).
  boost::asio::any_io_executor executor();
  // Its io_context, for an owner that made the client with threads = 0 and runs it itself.
  // It has work until stop(): run() returns only once the owner stops it.
  boost::asio::io_context& context();

  // Sends `request` (method, path, headers and body as given; Content-Length set from the body,
  // Transfer-Encoding dropped because the body is sent whole) to `endpoint` and reads the
  // response. Never throws for network or protocol failures: the returned flow has either a
  // response or an error (ErrorKind upstream_*, body_too_large), timings, client_address (our
  // local ip:port), upstream_address and upstream_tls. Runs on the client's executor; await it
  // from anywhere (co_spawn(client.executor(), client.send(...), use_awaitable)).
  boost::asio::awaitable<flow::Flow> send(flow::Request request, Endpoint endpoint);

  // Blocking form of send() for tests and tools. Must not be called on a client thread.
  flow::Flow send_sync(flow::Request request, Endpoint endpoint);

  // Closes idle pooled connections and stops the threads. Idempotent; the destructor calls it.
  void stop();

  ClientStats stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The endpoint a stored request names: its scheme, authority host and port.
Endpoint endpoint_of(const flow::Request& request);

}  // namespace retake::net
