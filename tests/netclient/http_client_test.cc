// HttpClient against real local python3 servers: plain, keep-alive reuse, body cap, timeouts,
// unreachable targets, TLS with verification (a self-signed certificate made per test run).
#include <doctest/doctest.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <atomic>
#include <filesystem>
#include <future>

#include "net/client/http_client.h"
#include "support/app/process.h"

using namespace retake;
using retake::testing::ChildServer;

namespace {

ChildServer upstream() {
  return ChildServer({"python3", retake::testing::support_dir() + "/upstream.py"});
}

flow::Request get(const std::string& path, uint16_t port) {
  flow::Request r;
  r.method = "GET";
  r.scheme = "http";
  r.authority = "127.0.0.1:" + std::to_string(port);
  r.path = path;
  r.http_version = "HTTP/1.1";
  return r;
}

// A throwaway CA-less self-signed certificate for 127.0.0.1 and "localhost".
struct TempCert {
  std::filesystem::path dir;
  TempCert() {
    dir = std::filesystem::temp_directory_path() / ("retake-nc-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
        "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
        (dir / "key.pem").string() + " -out " + (dir / "cert.pem").string() + " >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  ~TempCert() { std::filesystem::remove_all(dir); }
  std::string cert() const { return (dir / "cert.pem").string(); }
  std::string key() const { return (dir / "key.pem").string(); }
};

}  // namespace

TEST_CASE("a GET to a local server returns the response with all six timings set") {
  auto server = upstream();
  net::HttpClient client;
  auto f =
      client.send_sync(get("/json", server.port()), net::endpoint_of(get("/json", server.port())));
  REQUIRE_FALSE(f.error);
  REQUIRE(f.response);
  CHECK(f.response->status == 200);
  CHECK(f.response->body.data.find("widget") != std::string::npos);
  CHECK(f.response->headers.get("Content-Type") == "application/json");
  CHECK(f.timing.client_connected > 0);
  CHECK(f.timing.upstream_connected >= f.timing.client_connected);
  CHECK(f.timing.request_started >= f.timing.upstream_connected);
  CHECK(f.timing.request_ended >= f.timing.request_started);
  CHECK(f.timing.response_started >= f.timing.request_ended);
  CHECK(f.timing.response_ended >= f.timing.response_started);
  CHECK(f.upstream_address == "127.0.0.1:" + std::to_string(server.port()));
  CHECK(f.client_address.rfind("127.0.0.1:", 0) == 0);
  CHECK(f.mode == "replay");
}

TEST_CASE("sequential requests to one endpoint reuse one keep-alive connection") {
  auto server = upstream();
  net::HttpClient client;
  auto ep = net::endpoint_of(get("/", server.port()));
  std::string first_local;
  for (int i = 0; i < 5; ++i) {
    auto f = client.send_sync(get("/x" + std::to_string(i), server.port()), ep);
    REQUIRE(f.response);
    CHECK(f.response->body.data == "hello from upstream /x" + std::to_string(i));
    if (i == 0) first_local = f.client_address;
    CHECK(f.client_address == first_local);
  }
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().connections_reused == 4);
}

TEST_CASE("a POST body is sent with a correct Content-Length and echoed back") {
  auto server = upstream();
  net::HttpClient client;
  auto r = get("/echo", server.port());
  r.method = "POST";
  r.headers.add("Content-Type", "text/plain");
  r.headers.add("Content-Length", "999");  // stale value from a mutated recording: replaced
  r.body.data = "hello body";
  auto f = client.send_sync(r, net::endpoint_of(r));
  REQUIRE(f.response);
  CHECK(f.response->body.data.find("\"body\": \"hello body\"") != std::string::npos);
  CHECK(f.response->body.data.find("\"Content-Length\", \"10\"") != std::string::npos);
}

TEST_CASE("headers go out in order with their case; Host comes from the authority if absent") {
  auto server = upstream();
  net::HttpClient client;
  auto r = get("/echo", server.port());
  r.headers.add("X-First", "1");
  r.headers.add("x-SECOND", "two words");
  r.headers.add("X-First", "again");
  auto f = client.send_sync(r, net::endpoint_of(r));
  REQUIRE(f.response);
  const auto& body = f.response->body.data;
  auto host = body.find("[\"Host\", \"127.0.0.1:" + std::to_string(server.port()) + "\"]");
  auto first = body.find("[\"X-First\", \"1\"]");
  auto second = body.find("[\"x-SECOND\", \"two words\"]");
  auto again = body.find("[\"X-First\", \"again\"]");
  CHECK(host != std::string::npos);
  REQUIRE(first != std::string::npos);
  REQUIRE(second != std::string::npos);
  REQUIRE(again != std::string::npos);
  CHECK(first < second);
  CHECK(second < again);
}

TEST_CASE("a request that would break HTTP framing is refused, not sent") {
  auto server = upstream();
  net::HttpClient client;
  auto smuggle = get("/echo", server.port());
  smuggle.headers.add("X-Note", "x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a");
  auto f = client.send_sync(smuggle, net::endpoint_of(smuggle));
  REQUIRE(f.error);
  CHECK(f.error->kind == flow::ErrorKind::bad_request);
  CHECK(f.error->message.find("X-Note") != std::string::npos);
  CHECK_FALSE(f.response);
  CHECK(f.timing.request_ended == 0);
  auto spaced = get("/a b", server.port());
  f = client.send_sync(spaced, net::endpoint_of(spaced));
  REQUIRE(f.error);
  CHECK(f.error->kind == flow::ErrorKind::bad_request);
  // The client keeps working.
  auto ok = client.send_sync(get("/fine", server.port()), net::endpoint_of(get("/", server.port())));
  REQUIRE(ok.response);
  CHECK(ok.response->status == 200);
}

TEST_CASE("a body over the cap is stored up to the cap and the rest drained") {
  auto server = upstream();
  net::ClientOptions options;
  options.body_cap = 1000;
  net::HttpClient client(options);
  auto r = get("/big?size=100000", server.port());
  auto f = client.send_sync(r, net::endpoint_of(r));
  REQUIRE(f.response);
  CHECK(f.response->body.data.size() == 1000);
  CHECK(f.response->body.size == 100000);
  CHECK(f.response->body.truncated);
  // The connection stayed usable: the drained body did not poison the next exchange.
  auto g = client.send_sync(get("/json", server.port()), net::endpoint_of(r));
  REQUIRE(g.response);
  CHECK(g.response->status == 200);
  CHECK(client.stats().connections_opened == 1);
}

TEST_CASE("a body over the hard limit fails with body_too_large") {
  auto server = upstream();
  net::ClientOptions options;
  options.body_limit = 5000;
  net::HttpClient client(options);
  auto r = get("/big?size=100000", server.port());
  auto f = client.send_sync(r, net::endpoint_of(r));
  REQUIRE(f.error);
  CHECK(f.error->kind == flow::ErrorKind::body_too_large);
}

TEST_CASE("chunked responses are decoded and their trailers kept") {
  auto server = upstream();
  net::HttpClient client;
  auto r = get("/chunked?n=3", server.port());
  auto f = client.send_sync(r, net::endpoint_of(r));
  REQUIRE(f.response);
  CHECK(f.response->body.data == "chunk 0\nchunk 1\nchunk 2\n");
  CHECK(f.response->trailers.get("X-Checksum") == "done");
  CHECK(f.response->headers.get("Transfer-Encoding") == "chunked");  // as received
  // The connection stays usable after a chunked body.
  auto again = client.send_sync(get("/x", server.port()), net::endpoint_of(r));
  REQUIRE(again.response);
  CHECK(client.stats().connections_reused == 1);
}

TEST_CASE("interim 1xx responses are skipped: the flow holds the final response") {
  auto server = upstream();
  net::HttpClient client;
  auto r = get("/interim", server.port());
  auto f = client.send_sync(r, net::endpoint_of(r));
  REQUIRE_FALSE(f.error);
  REQUIRE(f.response);
  CHECK(f.response->status == 200);
  CHECK(f.response->body.data == "final");
  CHECK_FALSE(f.response->headers.get("Link"));
}

TEST_CASE("a slow server beyond the read timeout gives upstream_timeout") {
  auto server = upstream();
  net::ClientOptions options;
  options.read_timeout = std::chrono::milliseconds(200);
  net::HttpClient client(options);
  auto r = get("/slow?ms=2000", server.port());
  auto f = client.send_sync(r, net::endpoint_of(r));
  REQUIRE(f.error);
  CHECK(f.error->kind == flow::ErrorKind::upstream_timeout);
}

TEST_CASE("a closed port gives upstream_unreachable") {
  uint16_t port;
  {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }
  net::HttpClient client;
  auto r = get("/", port);
  auto f = client.send_sync(r, net::endpoint_of(r));
  REQUIRE(f.error);
  CHECK(f.error->kind == flow::ErrorKind::upstream_unreachable);
  CHECK(client.stats().failed == 1);
}

TEST_CASE("concurrent sends are bounded by max_connections_per_endpoint") {
  auto server = upstream();
  net::ClientOptions options;
  options.threads = 2;
  options.max_connections_per_endpoint = 2;
  net::HttpClient client(options);
  auto r = get("/slow?ms=50", server.port());
  std::vector<std::future<flow::Flow>> futures;
  for (int i = 0; i < 8; ++i)
    futures.push_back(boost::asio::co_spawn(client.executor(), client.send(r, net::endpoint_of(r)),
                                            boost::asio::use_future));
  for (auto& fu : futures) {
    auto f = fu.get();
    REQUIRE(f.response);
    CHECK(f.response->status == 200);
  }
  CHECK(client.stats().connections_opened <= 2);
}

TEST_CASE("https with a trusted certificate verifies the host name and records TLS facts") {
  TempCert cert;
  ChildServer server(
      {"python3", retake::testing::app_dir() + "/app.py", "--tls", cert.cert(), cert.key()});
  auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
  ctx->load_verify_file(cert.cert());
  ctx->set_verify_mode(boost::asio::ssl::verify_peer);
  net::ClientOptions options;
  options.tls_context = ctx;
  net::HttpClient client(options);
  auto r = get("/echo", server.port());
  r.scheme = "https";
  net::Endpoint ep{"https", "127.0.0.1", server.port(), "localhost"};
  auto f = client.send_sync(r, ep);
  REQUIRE_MESSAGE(!f.error, (f.error ? f.error->message : ""));
  CHECK(f.response->status == 200);
  CHECK(f.upstream_tls.present);
  CHECK(f.upstream_tls.sni == "localhost");
  CHECK(f.upstream_tls.peer_subject.find("localhost") != std::string::npos);

  SUBCASE("a name the certificate does not cover fails verification") {
    net::Endpoint wrong{"https", "127.0.0.1", server.port(), "prod.example.test"};
    auto g = client.send_sync(r, wrong);
    REQUIRE(g.error);
    CHECK(g.error->kind == flow::ErrorKind::upstream_tls_failed);
  }
}

TEST_CASE("before_first_tls runs once, before the first handshake, never for plain HTTP") {
  TempCert cert;
  ChildServer tls_server(
      {"python3", retake::testing::app_dir() + "/app.py", "--tls", cert.cert(), cert.key()});
  auto plain = upstream();
  // No roots yet: the hook is what makes the handshake verify.
  auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
  ctx->set_verify_mode(boost::asio::ssl::verify_peer);
  std::atomic<int> calls{0};
  net::ClientOptions options;
  options.tls_context = ctx;
  options.before_first_tls = [&] {
    ++calls;
    ctx->load_verify_file(cert.cert());
  };
  net::HttpClient client(options);
  auto p = client.send_sync(get("/json", plain.port()), net::endpoint_of(get("/", plain.port())));
  REQUIRE_FALSE(p.error);
  CHECK(calls == 0);
  auto r = get("/echo", tls_server.port());
  r.scheme = "https";
  for (int i = 0; i < 2; ++i) {
    net::Endpoint ep{"https", "127.0.0.1", tls_server.port(), i == 0 ? "localhost" : "127.0.0.1"};
    auto f = client.send_sync(r, ep);
    REQUIRE_MESSAGE(!f.error, (f.error ? f.error->message : ""));
    CHECK(f.response->status == 200);
  }
  CHECK(calls == 1);
}

TEST_CASE("https to an untrusted certificate fails unless insecure") {
  TempCert cert;
  ChildServer server(
      {"python3", retake::testing::app_dir() + "/app.py", "--tls", cert.cert(), cert.key()});
  auto r = get("/echo", server.port());
  r.scheme = "https";
  net::Endpoint ep{"https", "127.0.0.1", server.port(), ""};
  {
    net::HttpClient client;
    auto f = client.send_sync(r, ep);
    REQUIRE(f.error);
    CHECK(f.error->kind == flow::ErrorKind::upstream_tls_failed);
  }
  {
    net::ClientOptions options;
    options.insecure = true;
    net::HttpClient client(options);
    auto f = client.send_sync(r, ep);
    REQUIRE_MESSAGE(!f.error, (f.error ? f.error->message : ""));
    CHECK(f.response->status == 200);
  }
}
