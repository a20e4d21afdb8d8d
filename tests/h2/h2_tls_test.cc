// HTTP/2 over TLS after ALPN "h2": curl against an H2ServerSession behind retake_tls's
// InterceptTlsContext, and H2ClientSession over asio::ssl::stream against the same server.
#include <doctest/doctest.h>

#include <boost/asio/ssl.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "h2_test_server.h"
#include "net/tls/certificate_authority.h"

namespace retake::h2::test {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using namespace std::chrono_literals;

struct TlsFixture {
  std::filesystem::path dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "retake-h2-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    return std::filesystem::path(tmpl);
  }();
  std::string ca_file;
  std::unique_ptr<tls::InterceptTlsContext> context;

  TlsFixture() {
    auto ca = tls::CertificateAuthority::load_or_create(dir);
    REQUIRE(ca.ok());
    ca_file = ca->certificate_path().string();
    auto leaves = tls::LeafCertCache::create(*ca);
    REQUIRE(leaves.ok());
    auto ctx = tls::InterceptTlsContext::create(*leaves, {.alpn = {"h2"}});
    REQUIRE_MESSAGE(ctx.ok(), ctx.status().to_string());
    context = std::move(*ctx);
  }
  ~TlsFixture() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

TEST_CASE("curl speaks HTTP/2 over TLS after ALPN h2 and gets trailers and a 1 MiB body") {
  TlsFixture f;
  TestH2Server server({}, f.context.get());
  std::string port = std::to_string(server.port());
  std::string curl = "curl -sS --max-time 20 --http2 --cacert " + f.ca_file +
                     " --resolve h2.test:" + port + ":127.0.0.1 ";
  auto hello = run_command(curl + "-w '|%{http_version}' " + server.https_url("h2.test", "/"));
  CHECK_MESSAGE(hello.exit_code == 0, hello.output);
  CHECK(hello.output == "hello|2");
  CHECK(server.wait_event("alpn: h2") == "alpn: h2");

  auto big = run_command(curl + server.https_url("h2.test", "/big"));
  CHECK(big.exit_code == 0);
  CHECK(big.output == big_body(kBigSize));

  auto trailers = run_command(curl + "-i " + server.https_url("h2.test", "/trailers"));
  CHECK(trailers.exit_code == 0);
  CHECK(trailers.output.find("HTTP/2 200") != std::string::npos);
  CHECK(trailers.output.find("grpc-status: 0") != std::string::npos);
}

asio::awaitable<void> tls_fetch(asio::io_context& io, unsigned short port, ssl::context& ctx,
                                tls::UpstreamTlsContext& upstream,
                                std::optional<Result<flow::Response>>* out, std::string* alpn) {
  ssl::stream<tcp::socket> stream(io, ctx);
  (void)upstream.prepare(stream.native_handle(), "h2.test");
  auto [cec] = co_await stream.next_layer().async_connect(
      {asio::ip::make_address("127.0.0.1"), port}, asio::as_tuple(asio::use_awaitable));
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::client,
                                               asio::as_tuple(asio::use_awaitable));
  if (cec || hec) {
    *out = Result<flow::Response>(Errc::unavailable, "connect/handshake failed");
    co_return;
  }
  *alpn = tls::collect_tls_info(stream.native_handle()).alpn;
  auto session = H2ClientSession::create(io.get_executor(), make_byte_stream(std::move(stream)));
  asio::co_spawn(io, session->run(), asio::detached);
  flow::Request req;
  req.method = "GET";
  req.scheme = "https";
  req.authority = "h2.test:" + std::to_string(port);
  req.path = "/trailers";
  *out = co_await session->fetch(req);
  session->shutdown();
}

TEST_CASE("an H2ClientSession runs over asio::ssl::stream after ALPN h2") {
  TlsFixture f;
  TestH2Server server({}, f.context.get());
  auto upstream = tls::UpstreamTlsContext::create({.extra_ca_file = f.ca_file, .alpn = {"h2"}});
  REQUIRE(upstream.ok());
  asio::io_context io;
  std::optional<Result<flow::Response>> result;
  std::string alpn;
  asio::co_spawn(
      io, tls_fetch(io, server.port(), (*upstream)->asio_context(), **upstream, &result, &alpn),
      asio::detached);
  io.run_for(20s);
  CHECK(alpn == "h2");
  REQUIRE(result.has_value());
  INFO(result->status().to_string());
  REQUIRE(result->ok());
  CHECK(result->value().status == 200);
  CHECK(result->value().body.data == "payload");
  CHECK(result->value().trailers.get("grpc-status") == "0");
}

}  // namespace
}  // namespace retake::h2::test
