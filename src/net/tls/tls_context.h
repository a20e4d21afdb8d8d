// retake::tls (src/net/tls): the OpenSSL contexts of an intercepted connection.
// - InterceptTlsContext: the client-facing (server) side. Picks a minted leaf certificate for
//   the SNI the client sends (or a per-connection fallback host when it sends none) and selects
//   ALPN from a per-connection list.
// - UpstreamTlsContext: the upstream (client) side. Verifies the real server against the system
//   trust store plus optional extra roots, checks the host name or IP, sets SNI and ALPN.
// - verify_failure_reason(), collect_tls_info(): turn a finished handshake into words and into
//   flow::TlsInfo.
//
// Depends on src/flow, OpenSSL and Boost.Asio's ssl::context (the proxy drives its connections
// with asio::ssl::stream over these contexts). Must not depend on the proxy, the store or any
// socket code: everything here acts on an SSL* before or after a handshake the caller runs.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "net/tls/certificate_authority.h"

namespace retake::tls {

// Per-connection choices for the client-facing handshake.
struct InterceptParams {
  // The name to mint for when the client sends no SNI, or an SNI that is not a valid host name:
  // the CONNECT host, the reverse-proxy target or the original destination IP. May be empty
  // only if the context's default_host is set. Default: "".
  std::string fallback_host;
  // ALPN protocols we accept from the client, in our order of preference (server preference
  // wins). Empty: use the context's default list. Default: {}.
  std::vector<std::string> alpn;
};

// Options of an InterceptTlsContext. Plain struct; every field says its default.
struct InterceptOptions {
  // ALPN used when a connection's InterceptParams::alpn is empty. Default: {"http/1.1"}.
  // When the client offers none of these, the handshake continues without ALPN (the client
  // then speaks HTTP/1.1), as most servers do.
  std::vector<std::string> alpn = {"http/1.1"};
  // Name to mint for when neither SNI nor InterceptParams gives a usable one. Default: "" (the
  // handshake then fails with an unrecognized_name alert).
  std::string default_host;
};

// The server-side context for intercepted client connections. Lives as long as any SSL made
// from it; thread-safe: one instance serves every connection on every thread.
//
// Use: create one at proxy start. Per client connection:
//   boost::asio::ssl::stream<tcp::socket> s(std::move(sock), ctx->asio_context());
//   ctx->prepare(s.native_handle(), {.fallback_host = connect_host, .alpn = {"http/1.1"}});
//   co_await s.async_handshake(ssl::stream_base::server, ...);
//   flow.client_tls = collect_tls_info(s.native_handle());
// Minimum protocol is TLS 1.2 (mitmproxy's default too); older clients fail the handshake.
class InterceptTlsContext {
 public:
  static Result<std::unique_ptr<InterceptTlsContext>> create(std::shared_ptr<LeafCertCache> leaves,
                                                             InterceptOptions options = {});
  ~InterceptTlsContext();
  InterceptTlsContext(const InterceptTlsContext&) = delete;
  InterceptTlsContext& operator=(const InterceptTlsContext&) = delete;

  // Attaches `params` to one connection's SSL (made from asio_context()) before its handshake;
  // the SSL owns a copy, freed with it. Calling it again replaces the copy.
  // invalid_argument when an ALPN protocol is empty or longer than 255 bytes.
  Status prepare(SSL* ssl, const InterceptParams& params) const;

  // The leaf certificate name the handshake on `ssl` presented ("" before the handshake or when
  // none could be minted). For logs and error flows.
  static std::string served_name(const SSL* ssl);

  boost::asio::ssl::context& asio_context() { return context_; }
  SSL_CTX* native_handle() { return context_.native_handle(); }
  const std::shared_ptr<LeafCertCache>& leaves() const { return leaves_; }

 private:
  InterceptTlsContext(std::shared_ptr<LeafCertCache> leaves, InterceptOptions options,
                      std::string default_alpn_wire);
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* out_len,
                     const unsigned char* in, unsigned int in_len, void* arg);

  boost::asio::ssl::context context_;
  std::shared_ptr<LeafCertCache> leaves_;
  InterceptOptions options_;
  std::string default_alpn_wire_;
};

// Options of an UpstreamTlsContext. Plain struct; every field says its default.
struct UpstreamTlsOptions {
  // Skip certificate and host verification entirely (--insecure). Default: false.
  bool insecure = false;
  // A PEM file of extra trusted roots, added to the system store (--upstream-ca). Default: "".
  std::string extra_ca_file;
  // ALPN offered to upstream servers unless prepare() overrides it; empty offers none.
  // Default: {"http/1.1"}.
  std::vector<std::string> alpn = {"http/1.1"};
  // Load the system trust store on the first prepare() instead of in create(): parsing the
  // distribution's bundle (about 140 certificates) costs a process that may never dial a TLS
  // upstream over a megabyte. Only for owners that call prepare() or ensure_system_roots()
  // before every handshake. Default: false.
  bool lazy_system_roots = false;
};

// The client-side context for connections to upstream servers. Thread-safe; one per proxy.
// Verifies against the system trust store (SSL_CTX_set_default_verify_paths) plus
// extra_ca_file; minimum protocol TLS 1.2.
class UpstreamTlsContext {
 public:
  // invalid_argument for a bad ALPN entry; not_found / parse_error when extra_ca_file is
  // missing or holds no certificate, naming the file.
  static Result<std::unique_ptr<UpstreamTlsContext>> create(UpstreamTlsOptions options = {});

  // Configures one connection's SSL before its client handshake: SNI = `host` (not for IP
  // literals, per RFC 6066), host-name or IP verification unless insecure, and ALPN (`alpn`
  // when given, else the context's list). `host` may be a bracketed IPv6 literal.
  // invalid_argument for a host parse_server_name rejects or a bad ALPN entry.
  Status prepare(SSL* ssl, std::string_view host,
                 const std::vector<std::string>* alpn = nullptr) const;

  // Loads the system trust roots now unless `insecure` (once; prepare() does it too). For
  // users that handshake through asio_context() without prepare().
  void ensure_system_roots() const {
    if (!options_.insecure) load_system_roots();
  }

  boost::asio::ssl::context& asio_context() { return context_; }
  SSL_CTX* native_handle() { return context_.native_handle(); }
  const UpstreamTlsOptions& options() const { return options_; }

 private:
  explicit UpstreamTlsContext(UpstreamTlsOptions options);
  void load_system_roots() const;
  boost::asio::ssl::context context_;
  UpstreamTlsOptions options_;
  mutable std::once_flag system_roots_;
};

// Why certificate verification failed on `ssl` (an upstream connection after its handshake
// failed or finished), e.g. "upstream certificate verify failed: certificate has expired
// (depth 0, CN=example.com)". nullopt when verification passed or was off (insecure).
std::optional<std::string> verify_failure_reason(const SSL* ssl);

// TLS facts of a completed handshake: SNI, ALPN, version ("TLSv1.3"), cipher, and the peer
// certificate's subject and issuer in RFC 2253 form (empty when the peer sent none, as clients
// usually do). `present` is true.
flow::TlsInfo collect_tls_info(const SSL* ssl);

// An SSL_CTX_set_alpn_select_cb callback for servers with a certificate of their own (no
// InterceptTlsContext): "h2", else "http/1.1", else no ALPN. `arg` is unused.
int select_h2_or_http11(SSL* ssl, const unsigned char** out, unsigned char* out_len,
                        const unsigned char* in, unsigned int in_len, void* arg);

}  // namespace retake::tls
