// Test support for tests/tls: temporary directories, subprocesses, test certificates made with
// the OpenSSL API, and a small TLS server on an ephemeral loopback port.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "flow/flow.h"
#include "net/tls/openssl_util.h"

namespace retake::tls::test {

// A fresh directory under the system temp dir, removed with everything in it at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal (e.g. `timeout`)
  std::string output;  // stdout and stderr, at most 1 MiB
};
// Runs `command` through /bin/sh under `timeout 30`, stdin from /dev/null.
CommandResult run_command(const std::string& command);

// A key and certificate made for tests.
struct KeyCert {
  detail::X509Ptr cert;
  detail::PkeyPtr key;
};
// A self-signed CA with CN `cn`.
KeyCert make_test_ca(const std::string& cn);
// A leaf signed by `issuer`: CN `cn`, SANs from `san` in OpenSSL config syntax
// ("DNS:up.test,IP:127.0.0.1"), valid from now+`from_s` to now+`to_s` seconds.
KeyCert make_test_leaf(const KeyCert& issuer, const std::string& cn, const std::string& san,
                       long from_s, long to_s);
void write_pem(const std::filesystem::path& path, X509* cert);

// X509_verify_cert of `leaf` against the single root `ca` for TLS server use, with a host name
// or IP check. Returns the X509_V_* result.
int verify_leaf(X509* ca, X509* leaf, const std::string& host, const std::string& ip);

// What the test server saw of one connection.
struct ServerOutcome {
  bool handshake_ok = false;
  std::string error;        // handshake error message
  flow::TlsInfo tls;        // when handshake_ok
  std::string served_name;  // InterceptTlsContext::served_name
};

// A TLS server on 127.0.0.1:<ephemeral> that handshakes with `context`, reads one request head
// (bounded, 10 s deadline), answers "HTTP/1.1 200 OK" with body "ok", and records outcomes.
class TestTlsServer {
 public:
  using Prepare = std::function<void(SSL*)>;
  TestTlsServer(boost::asio::ssl::context& context, Prepare prepare = {});
  ~TestTlsServer();
  unsigned short port() const { return port_; }
  // Waits (at most 10 s) until `n` outcomes are recorded; returns a copy of all of them.
  std::vector<ServerOutcome> wait_outcomes(size_t n);

  // Used by the connection coroutine.
  void record(ServerOutcome outcome);
  boost::asio::ssl::context& context() { return context_; }
  const Prepare& prepare() const { return prepare_; }

 private:
  boost::asio::io_context io_;
  boost::asio::ssl::context& context_;
  Prepare prepare_;
  boost::asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<ServerOutcome> outcomes_;
  std::thread thread_;
};

// A client handshake with `context` to 127.0.0.1:`port`, after `configure` ran on the SSL.
struct ClientOutcome {
  boost::system::error_code ec;
  std::optional<std::string> verify_reason;
  flow::TlsInfo tls;
};
ClientOutcome client_handshake(boost::asio::ssl::context& context, unsigned short port,
                               const std::function<void(SSL*)>& configure);

}  // namespace retake::tls::test
