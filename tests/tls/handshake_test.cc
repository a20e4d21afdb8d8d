// Real handshakes: our intercept context against curl and openssl s_client, our upstream
// context against a local server whose certificates the test makes. Loopback only.
#include <doctest/doctest.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <fstream>

#include "net/tls/certificate_authority.h"
#include "net/tls/tls_context.h"
#include "tls_test_support.h"

using namespace retake;
using namespace retake::tls;
namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

struct InterceptFixture {
  test::TempDir tmp;
  CertificateAuthority ca = [this] {
    auto r = CertificateAuthority::load_or_create(tmp.path());
    REQUIRE(r.ok());
    return *r;
  }();
  std::unique_ptr<InterceptTlsContext> context = [this] {
    auto leaves = LeafCertCache::create(ca);
    REQUIRE(leaves.ok());
    auto r = InterceptTlsContext::create(*leaves);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    return std::move(*r);
  }();
  std::string ca_file() const { return ca.certificate_path().string(); }

  // A server whose connections all get `params`.
  std::unique_ptr<test::TestTlsServer> server(InterceptParams params) {
    InterceptTlsContext* ctx = context.get();
    return std::make_unique<test::TestTlsServer>(
        ctx->asio_context(), [ctx, params](SSL* ssl) { REQUIRE(ctx->prepare(ssl, params).ok()); });
  }
};

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("curl trusts a leaf minted for its SNI when given the retake CA") {
  InterceptFixture f;
  auto server = f.server({.fallback_host = "connect.test", .alpn = {"http/1.1"}});
  std::string port = std::to_string(server->port());
  auto r = test::run_command("curl -sS --max-time 10 --cacert " + f.ca_file() +
                             " --resolve foo.test:" + port + ":127.0.0.1 https://foo.test:" + port +
                             "/");
  CHECK_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output == "ok");
  auto outcomes = server->wait_outcomes(1);
  REQUIRE(outcomes.size() == 1);
  CHECK(outcomes[0].handshake_ok);
  CHECK(outcomes[0].served_name == "foo.test");
  CHECK(outcomes[0].tls.present);
  CHECK(outcomes[0].tls.sni == "foo.test");
  CHECK(outcomes[0].tls.alpn == "http/1.1");  // curl offers h2 too; we accept only http/1.1
  CHECK(outcomes[0].tls.version == "TLSv1.3");
  CHECK_FALSE(outcomes[0].tls.cipher.empty());
}

TEST_CASE("curl without the retake CA refuses the minted leaf") {
  InterceptFixture f;
  auto server = f.server({.fallback_host = "connect.test"});
  std::string port = std::to_string(server->port());
  // An empty CA path: only the system store, which does not hold the retake CA.
  auto r = test::run_command("curl -sS --max-time 10 --resolve foo.test:" + port +
                             ":127.0.0.1 https://foo.test:" + port + "/");
  CHECK(r.exit_code == 60);  // CURLE_PEER_FAILED_VERIFICATION
}

TEST_CASE("openssl s_client verifies the leaf for its SNI with -verify_return_error") {
  InterceptFixture f;
  auto server = f.server({.fallback_host = "connect.test"});
  auto r =
      test::run_command("openssl s_client -connect 127.0.0.1:" + std::to_string(server->port()) +
                        " -servername bar.test -verify_hostname bar.test -CAfile " + f.ca_file() +
                        " -verify_return_error");
  CHECK_MESSAGE(r.exit_code == 0, r.output);
  CHECK_MESSAGE(contains(r.output, "subject=CN = bar.test"), r.output);
  CHECK_MESSAGE(contains(r.output, "issuer=O = retake, CN = retake CA"), r.output);
  CHECK_MESSAGE(contains(r.output, "Verify return code: 0 (ok)"), r.output);
}

TEST_CASE("a client without SNI gets the leaf of the connection's fallback host") {
  InterceptFixture f;
  SUBCASE("a host name") {
    auto server = f.server({.fallback_host = "fallback.test"});
    auto r =
        test::run_command("openssl s_client -connect 127.0.0.1:" + std::to_string(server->port()) +
                          " -noservername -verify_hostname fallback.test -CAfile " + f.ca_file() +
                          " -verify_return_error");
    CHECK_MESSAGE(r.exit_code == 0, r.output);
    CHECK_MESSAGE(contains(r.output, "subject=CN = fallback.test"), r.output);
    auto outcomes = server->wait_outcomes(1);
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0].tls.sni.empty());
    CHECK(outcomes[0].served_name == "fallback.test");
  }
  SUBCASE("an IP address") {
    auto server = f.server({.fallback_host = "127.0.0.1"});
    auto r = test::run_command(
        "openssl s_client -connect 127.0.0.1:" + std::to_string(server->port()) +
        " -noservername -verify_ip 127.0.0.1 -CAfile " + f.ca_file() + " -verify_return_error");
    CHECK_MESSAGE(r.exit_code == 0, r.output);
    CHECK_MESSAGE(contains(r.output, "subject=CN = 127.0.0.1"), r.output);
  }
  SUBCASE("no usable name at all fails the handshake") {
    auto server = f.server({});
    auto r = test::run_command(
        "openssl s_client -connect 127.0.0.1:" + std::to_string(server->port()) + " -noservername");
    CHECK(r.exit_code != 0);
    auto outcomes = server->wait_outcomes(1);
    REQUIRE(outcomes.size() == 1);
    CHECK_FALSE(outcomes[0].handshake_ok);
  }
}

TEST_CASE("an invalid SNI falls back to the connection's host") {
  InterceptFixture f;
  auto server = f.server({.fallback_host = "fallback.test"});
  auto r =
      test::run_command("openssl s_client -connect 127.0.0.1:" + std::to_string(server->port()) +
                        " -servername bad_name..test -CAfile " + f.ca_file() +
                        " -verify_hostname fallback.test -verify_return_error");
  CHECK_MESSAGE(r.exit_code == 0, r.output);
  CHECK_MESSAGE(contains(r.output, "subject=CN = fallback.test"), r.output);
}

TEST_CASE("a client that sends garbage instead of a ClientHello gets a handshake error") {
  InterceptFixture f;
  auto server = f.server({.fallback_host = "connect.test"});
  {
    asio::io_context io;
    tcp::socket socket(io);
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()));
    std::string garbage = "GET / HTTP/1.1\r\nHost: foo.test\r\n\r\n";
    garbage += std::string(300, '\x16');
    asio::write(socket, asio::buffer(garbage));
    // Read whatever comes back (an alert, then EOF) with a deadline.
    std::string reply;
    asio::async_read(socket, asio::dynamic_buffer(reply, 4096),
                     [](boost::system::error_code, size_t) {});
    io.run_for(10s);
  }
  auto outcomes = server->wait_outcomes(1);
  REQUIRE(outcomes.size() == 1);
  CHECK_FALSE(outcomes[0].handshake_ok);
  CHECK_FALSE(outcomes[0].error.empty());
  MESSAGE("handshake error for garbage: " << outcomes[0].error);

  // The server still serves proper clients afterwards.
  auto r =
      test::run_command("openssl s_client -connect 127.0.0.1:" + std::to_string(server->port()) +
                        " -servername ok.test -CAfile " + f.ca_file() + " -verify_return_error");
  CHECK_MESSAGE(r.exit_code == 0, r.output);
}

TEST_CASE(
    "our upstream context trusts the intercept side through extra_ca_file and agrees on ALPN") {
  InterceptFixture f;
  auto server = f.server({.fallback_host = "connect.test", .alpn = {"h2", "http/1.1"}});
  auto upstream =
      UpstreamTlsContext::create({.extra_ca_file = f.ca_file(), .alpn = {"http/1.1", "h2"}});
  REQUIRE_MESSAGE(upstream.ok(), upstream.status().to_string());
  auto* up = upstream->get();
  auto client = test::client_handshake(up->asio_context(), server->port(), [up](SSL* ssl) {
    REQUIRE(up->prepare(ssl, "Foo.Test").ok());
  });
  CHECK_MESSAGE(!client.ec, client.ec.message());
  CHECK_FALSE(client.verify_reason.has_value());
  CHECK(client.tls.sni == "foo.test");
  CHECK(client.tls.alpn == "h2");  // the server's preference wins
  CHECK(client.tls.peer_subject == "CN=foo.test");
  CHECK(client.tls.peer_issuer == "CN=retake CA,O=retake");
  auto outcomes = server->wait_outcomes(1);
  REQUIRE(outcomes.size() == 1);
  CHECK(outcomes[0].tls.alpn == "h2");
  CHECK(outcomes[0].tls.peer_subject.empty());  // clients send no certificate
}

TEST_CASE("without a common ALPN protocol the handshake continues without ALPN") {
  InterceptFixture f;
  auto server = f.server({.fallback_host = "connect.test", .alpn = {"http/1.1"}});
  auto upstream = UpstreamTlsContext::create({.extra_ca_file = f.ca_file(), .alpn = {"h2"}});
  REQUIRE(upstream.ok());
  auto* up = upstream->get();
  auto client = test::client_handshake(up->asio_context(), server->port(), [up](SSL* ssl) {
    REQUIRE(up->prepare(ssl, "foo.test").ok());
  });
  CHECK_MESSAGE(!client.ec, client.ec.message());
  CHECK(client.tls.alpn.empty());
}

// ---------------------------------------------------------------------------------------------
// Upstream verification against a server with certificates from a local "upstream CA".

namespace {

struct UpstreamFixture {
  test::TempDir tmp;
  test::KeyCert upstream_ca = test::make_test_ca("upstream test CA");
  std::string ca_file = [this] {
    auto p = tmp.path() / "upstream-ca.pem";
    test::write_pem(p, upstream_ca.cert.get());
    return p.string();
  }();

  // A plain TLS server context presenting `leaf`.
  static std::unique_ptr<ssl::context> server_context(const test::KeyCert& leaf) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    REQUIRE(SSL_CTX_use_certificate(ctx->native_handle(), leaf.cert.get()) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey(ctx->native_handle(), leaf.key.get()) == 1);
    return ctx;
  }

  test::ClientOutcome connect(UpstreamTlsOptions options, unsigned short port,
                              const std::string& host) {
    auto upstream = UpstreamTlsContext::create(std::move(options));
    REQUIRE_MESSAGE(upstream.ok(), upstream.status().to_string());
    auto* up = upstream->get();
    return test::client_handshake(up->asio_context(), port,
                                  [up, host](SSL* ssl) { REQUIRE(up->prepare(ssl, host).ok()); });
  }
};

}  // namespace

TEST_CASE("upstream verification against an extra CA checks expiry and host names") {
  UpstreamFixture f;
  auto good = test::make_test_leaf(f.upstream_ca, "up.test", "DNS:up.test,IP:127.0.0.1", -3600,
                                   30L * 86400);
  auto expired =
      test::make_test_leaf(f.upstream_ca, "old.test", "DNS:old.test", -10L * 86400, -86400);
  auto good_ctx = UpstreamFixture::server_context(good);
  auto expired_ctx = UpstreamFixture::server_context(expired);
  test::TestTlsServer good_server(*good_ctx);
  test::TestTlsServer expired_server(*expired_ctx);

  SUBCASE("a valid certificate for the host verifies and SNI is sent") {
    auto c = f.connect({.extra_ca_file = f.ca_file}, good_server.port(), "up.test");
    CHECK_MESSAGE(!c.ec, c.ec.message());
    CHECK_FALSE(c.verify_reason.has_value());
    CHECK(c.tls.peer_subject == "CN=up.test");
    CHECK(c.tls.peer_issuer == "CN=upstream test CA");
    CHECK(c.tls.alpn.empty());  // the test server does no ALPN
    auto outcomes = good_server.wait_outcomes(1);
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0].tls.sni == "up.test");
  }
  SUBCASE("an IP literal verifies against the IP SAN and sends no SNI") {
    auto c = f.connect({.extra_ca_file = f.ca_file}, good_server.port(), "127.0.0.1");
    CHECK_MESSAGE(!c.ec, c.ec.message());
    CHECK_FALSE(c.verify_reason.has_value());
    auto outcomes = good_server.wait_outcomes(1);
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0].tls.sni.empty());
  }
  SUBCASE("a wrong IP literal fails with an IP mismatch") {
    // 127.0.0.1 is where we connect, but we claim to want ::1.
    auto c = f.connect({.extra_ca_file = f.ca_file}, good_server.port(), "::1");
    CHECK(c.ec);
    REQUIRE(c.verify_reason.has_value());
    CHECK_MESSAGE(contains(*c.verify_reason, "IP address mismatch"), *c.verify_reason);
  }
  SUBCASE("a wrong host name fails with a hostname mismatch") {
    auto c = f.connect({.extra_ca_file = f.ca_file}, good_server.port(), "other.test");
    CHECK(c.ec);
    REQUIRE(c.verify_reason.has_value());
    CHECK_MESSAGE(contains(*c.verify_reason, "hostname mismatch"), *c.verify_reason);
    CHECK_MESSAGE(contains(*c.verify_reason, "upstream certificate verify failed: "),
                  *c.verify_reason);
    CHECK_MESSAGE(contains(*c.verify_reason, "(depth 0, CN=up.test)"), *c.verify_reason);
  }
  SUBCASE("an expired certificate fails with a reason mentioning expired") {
    auto c = f.connect({.extra_ca_file = f.ca_file}, expired_server.port(), "old.test");
    CHECK(c.ec);
    REQUIRE(c.verify_reason.has_value());
    CHECK_MESSAGE(*c.verify_reason ==
                      "upstream certificate verify failed: certificate has expired "
                      "(depth 0, CN=old.test)",
                  *c.verify_reason);
  }
  SUBCASE("without the extra CA the system store does not trust the upstream CA") {
    auto c = f.connect({}, good_server.port(), "up.test");
    CHECK(c.ec);
    REQUIRE(c.verify_reason.has_value());
    CHECK_MESSAGE(contains(*c.verify_reason, "unable to get local issuer certificate"),
                  *c.verify_reason);
  }
  SUBCASE("insecure accepts an expired certificate for another name") {
    auto c = f.connect({.insecure = true}, expired_server.port(), "wrong.test");
    CHECK_MESSAGE(!c.ec, c.ec.message());
    CHECK_FALSE(c.verify_reason.has_value());
    CHECK(c.tls.peer_subject == "CN=old.test");
  }
}

TEST_CASE("a missing or unreadable extra CA file is a clear error naming it") {
  test::TempDir tmp;
  auto missing = UpstreamTlsContext::create({.extra_ca_file = (tmp.path() / "nope.pem").string()});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == Errc::not_found);
  CHECK(contains(missing.status().message(), "nope.pem"));

  auto junk_path = tmp.path() / "junk.pem";
  { std::ofstream(junk_path) << "not a certificate\n"; }
  auto junk = UpstreamTlsContext::create({.extra_ca_file = junk_path.string()});
  REQUIRE_FALSE(junk.ok());
  CHECK(junk.status().code() == Errc::parse_error);
  CHECK(contains(junk.status().message(), "junk.pem"));
}

TEST_CASE("bad ALPN entries and host names are rejected before any handshake") {
  auto bad_alpn = UpstreamTlsContext::create({.alpn = {""}});
  CHECK_FALSE(bad_alpn.ok());
  auto up = UpstreamTlsContext::create({});
  REQUIRE(up.ok());
  asio::io_context io;
  ssl::stream<tcp::socket> stream(io, (*up)->asio_context());
  CHECK((*up)->prepare(stream.native_handle(), "bad host").code() == Errc::invalid_argument);
  std::vector<std::string> long_alpn{std::string(300, 'x')};
  CHECK((*up)->prepare(stream.native_handle(), "ok.test", &long_alpn).code() ==
        Errc::invalid_argument);
}

TEST_CASE("lazy system roots are loaded by the first prepare(), not by create()") {
  auto objects = [](tls::UpstreamTlsContext& c) {
    return sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(c.native_handle())));
  };
  auto eager = tls::UpstreamTlsContext::create({});
  REQUIRE(eager.ok());
  if (objects(**eager) == 0) {
    MESSAGE("skipped: this machine's system trust store is empty (no ca-certificates bundle)");
    return;
  }
  tls::UpstreamTlsOptions o;
  o.lazy_system_roots = true;
  auto lazy = tls::UpstreamTlsContext::create(o);
  REQUIRE(lazy.ok());
  CHECK(objects(**lazy) == 0);
  SSL* ssl = SSL_new((*lazy)->native_handle());
  REQUIRE(ssl != nullptr);
  CHECK((*lazy)->prepare(ssl, "localhost").ok());
  SSL_free(ssl);
  CHECK(objects(**lazy) == objects(**eager));
  // Insecure contexts never need them.
  o.insecure = true;
  auto insecure = tls::UpstreamTlsContext::create(o);
  REQUIRE(insecure.ok());
  ssl = SSL_new((*insecure)->native_handle());
  CHECK((*insecure)->prepare(ssl, "localhost").ok());
  SSL_free(ssl);
  CHECK(objects(**insecure) == 0);
}
