// End-to-end HTTP/2 through the recorder: real clients (curl --http2 / --http2-prior-knowledge,
// nghttp, python3-grpcio, retake's own H2ClientSession) through the Recorder in-process, to
// local upstreams speaking HTTP/2 (tests/h2's TestH2Server, over h2c or TLS with ALPN h2, and a
// python3-grpcio server) or HTTP/1.1 (tests/record/http1_upstream.py). Each test checks what
// the client got AND what was recorded, including the HTTP version seen on each side.
#include <boost/asio.hpp>

#include <filesystem>
#include <fstream>

#include "../h2/h2_test_server.h"
#include "../tls/tls_test_support.h"
#include "net/tls/certificate_authority.h"
#include "net/tls/tls_context.h"
#include "record_test_support.h"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using retake::h2::H2ClientSession;
using retake::h2::H2ErrorCode;
using retake::h2::H2Stream;
using retake::h2::test::big_body;
using retake::h2::test::kBigSize;
using retake::h2::test::TestH2Server;
using retake::tls::test::TempDir;

const flow::Flow* find_path(const std::vector<flow::Flow>& flows, const std::string& path) {
  for (const auto& f : flows)
    if (f.request.path == path) return &f;
  return nullptr;
}

record::RecorderOptions reverse_to(const std::string& url) {
  record::RecorderOptions o;
  auto st = record::parse_mode("reverse:" + url, o);
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  return o;
}

// An HTTP/2 client connection (prior knowledge) to 127.0.0.1:port on its own io_context:
// run(fn) runs the coroutine fn(session) to its end (bounded), then closes the session.
class H2cClient {
 public:
  explicit H2cClient(uint16_t port) {
    tcp::socket socket(io_);
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    session_ = H2ClientSession::create(io_.get_executor(), h2::make_byte_stream(std::move(socket)));
  }
  template <class Fn>
  void run(Fn fn) {
    bool finished = false;
    asio::co_spawn(io_, session_->run(), asio::detached);
    asio::co_spawn(
        io_,
        [&, fn]() -> asio::awaitable<void> {
          co_await fn(*session_);
          finished = true;
          session_->shutdown();
        },
        asio::detached);
    io_.run_for(20s);
    CHECK_MESSAGE(finished, "the HTTP/2 client did not finish in time");
  }

 private:
  asio::io_context io_;
  std::shared_ptr<H2ClientSession> session_;
};

flow::Request h2_request(const std::string& method, const std::string& path) {
  flow::Request r;
  r.method = method;
  r.scheme = "http";
  r.authority = "client.test";
  r.path = path;
  return r;
}

// A PKI for TLS tests: retake's CA (ca/) and an upstream CA whose InterceptTlsContext serves
// TestH2Server over TLS with ALPN h2, plus a leaf for http1_upstream.py --tls, both trusted
// through one upstream_ca_file.
struct H2Pki {
  H2Pki() {
    auto ca = tls::CertificateAuthority::load_or_create(dir.path() / "ca");
    REQUIRE_MESSAGE(ca.ok(), ca.status().to_string());
    retake_ca = ca->certificate_path().string();
    auto up_ca = tls::CertificateAuthority::load_or_create(dir.path() / "upstream-ca");
    REQUIRE_MESSAGE(up_ca.ok(), up_ca.status().to_string());
    auto leaves = tls::LeafCertCache::create(*up_ca);
    REQUIRE(leaves.ok());
    auto ctx = tls::InterceptTlsContext::create(*leaves, {.alpn = {"h2"}});
    REQUIRE_MESSAGE(ctx.ok(), ctx.status().to_string());
    h2_upstream_tls = std::move(*ctx);
    auto test_ca = tls::test::make_test_ca("h1 upstream CA");
    auto leaf =
        tls::test::make_test_leaf(test_ca, "localhost", "DNS:localhost,IP:127.0.0.1", -60, 86400);
    h1_cert = (dir.path() / "h1.pem").string();
    h1_key = (dir.path() / "h1.key").string();
    tls::test::write_pem(h1_cert, leaf.cert.get());
    FILE* f = fopen(h1_key.c_str(), "w");
    REQUIRE(f != nullptr);
    REQUIRE(PEM_write_PrivateKey(f, leaf.key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1);
    fclose(f);
    std::string test_ca_pem = (dir.path() / "h1-ca.pem").string();
    tls::test::write_pem(test_ca_pem, test_ca.cert.get());
    // Both upstream roots in one file.
    upstream_ca = (dir.path() / "upstreams.pem").string();
    std::ofstream out(upstream_ca);
    out << std::ifstream(up_ca->certificate_path()).rdbuf();
    out << std::ifstream(test_ca_pem).rdbuf();
  }
  record::RecorderOptions options() const {
    record::RecorderOptions o;
    o.ca_dir = (dir.path() / "ca").string();
    o.upstream_ca_file = upstream_ca;
    return o;
  }
  TempDir dir;
  std::string retake_ca, upstream_ca, h1_cert, h1_key;
  std::unique_ptr<tls::InterceptTlsContext> h2_upstream_tls;
};

}  // namespace

TEST_CASE(
    "an h2c client in reverse mode: multiplexed streams become one flow each, HTTP/2 to the "
    "client and HTTP/1.1 to the upstream") {
  Upstream up;
  Proxy proxy(reverse_options(up));
  std::string base = proxy.url();
  // nghttp multiplexes the three requests over one connection.
  std::string out = run("timeout 20 nghttp -n -s " + base + "/size/1000 " + base + "/chunked " +
                        base + "/size/10 2>&1");
  CHECK_MESSAGE(out.find("/size/1000") != std::string::npos, out);
  CHECK(proxy.rec->stats().connections == 1);
  // curl's bytes come back intact.
  CHECK(curl("--http2-prior-knowledge " + base + "/size/70000") == pattern(70000));
  auto flows = proxy.sink.wait_for(4);
  REQUIRE(flows.size() == 4);
  for (const auto& f : flows) {
    CHECK_FALSE(f.error.has_value());
    CHECK(f.request.http_version == "HTTP/2");
    REQUIRE(f.response.has_value());
    CHECK(f.response->status == 200);
    CHECK(f.response->http_version == "HTTP/1.1");
    CHECK(f.request.scheme == "http");
    CHECK(f.request.authority == up.authority());
    CHECK(f.upstream_address == up.authority());
  }
  const flow::Flow* big = find_path(flows, "/size/70000");
  REQUIRE(big != nullptr);
  CHECK(big->response->body.data == pattern(70000));
  const flow::Flow* chunked = find_path(flows, "/chunked");
  REQUIRE(chunked != nullptr);
  CHECK(chunked->response->body.data == "abcdefg");
  CHECK(chunked->response->trailers.get("X-Trailer") == std::optional<std::string_view>("done"));
  // The upstream got a Host naming itself (reverse mode rewrites it) over HTTP/1.1.
  CHECK(curl("--http2-prior-knowledge " + base + "/headers").find("Host: " + up.authority()) !=
        std::string::npos);
}

TEST_CASE("request bodies stream from an h2 client to an HTTP/1.1 upstream, sized or not") {
  Upstream up;
  Proxy proxy(reverse_options(up));
  TempDir dir;
  std::string file = (dir.path() / "body").string();
  std::ofstream(file, std::ios::binary) << pattern(300000);
  uint64_t sum = 0;
  for (unsigned char c : pattern(300000)) sum += c;
  std::string expect = "size=300000 sum=" + std::to_string(sum);
  // With a content-length (curl --data-binary @file)...
  CHECK(curl("--http2-prior-knowledge --data-binary @" + file + " " + proxy.url() + "/sum") ==
        expect);
  // ...and without one (-T from a pipe): relayed chunked to the HTTP/1.1 upstream.
  CHECK(run("cat " + file + " | curl -sS -m 15 --http2-prior-knowledge -X POST -T - " +
            proxy.url() + "/sum 2>&1") == expect);
  auto flows = proxy.sink.wait_for(2);
  REQUIRE(flows.size() == 2);
  for (const auto& f : flows) {
    CHECK_FALSE(f.error.has_value());
    CHECK(f.request.body.data == pattern(300000));
    CHECK(f.request.body.size == 300000);
  }
}

TEST_CASE(
    "reverse:h2c:// reaches an HTTP/2-only upstream from HTTP/2 and HTTP/1.1 clients, trailers "
    "kept") {
  TestH2Server server;
  Proxy proxy(reverse_to("h2c://127.0.0.1:" + std::to_string(server.port())));

  // HTTP/2 client: request trailers go up, response trailers (grpc-status) come back.
  flow::Headers got_trailers;
  std::string got_body;
  H2cClient client(proxy.port);
  client.run([&](H2ClientSession& s) -> asio::awaitable<void> {
    auto opened = s.open(h2_request("POST", "/trailers"), false);
    REQUIRE(opened.ok());
    auto stream = *opened;
    Status st = co_await stream->write("question", false);
    CHECK(st.ok());
    flow::Headers req_trailers;
    req_trailers.add("x-req", "from-client");
    st = co_await stream->write_trailers(std::move(req_trailers));
    CHECK(st.ok());
    st = co_await stream->wait_response();
    CHECK_MESSAGE(st.ok(), st.to_string());
    st = co_await stream->read_all(1u << 20);
    CHECK(st.ok());
    got_body = stream->response().body.data;
    got_trailers = stream->response().trailers;
  });
  CHECK(got_body == "payload");
  CHECK(got_trailers.get("grpc-status") == std::optional<std::string_view>("0"));
  CHECK(got_trailers.get("x-request-trailer") == std::optional<std::string_view>("from-client"));

  // HTTP/1.1 clients: a 1 MiB body and an echo, translated to HTTP/2 upstream.
  CHECK(curl("--http1.1 " + proxy.url() + "/big") == big_body(kBigSize));
  CHECK(curl("--http1.1 -d hello-h1 " + proxy.url() + "/echo") == "hello-h1");

  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  const flow::Flow* t = find_path(flows, "/trailers");
  REQUIRE(t != nullptr);
  CHECK_FALSE(t->error.has_value());
  CHECK(t->request.http_version == "HTTP/2");
  CHECK(t->response->http_version == "HTTP/2");
  CHECK(t->request.body.data == "question");
  CHECK(t->request.trailers.get("x-req") == std::optional<std::string_view>("from-client"));
  CHECK(t->response->trailers.get("grpc-status") == std::optional<std::string_view>("0"));
  CHECK(t->response->trailers.get("grpc-message") == std::optional<std::string_view>("all good"));
  const flow::Flow* big = find_path(flows, "/big");
  REQUIRE(big != nullptr);
  CHECK(big->request.http_version == "HTTP/1.1");
  CHECK(big->response->http_version == "HTTP/2");
  CHECK(big->response->body.data == big_body(kBigSize));
  const flow::Flow* echo = find_path(flows, "/echo");
  REQUIRE(echo != nullptr);
  CHECK(echo->response->headers.get("x-method") == std::optional<std::string_view>("POST"));
  // The upstream saw the configured authority (reverse mode rewrites it).
  CHECK(echo->response->headers.get("x-authority") ==
        std::optional<std::string_view>("127.0.0.1:" + std::to_string(server.port())));
}

TEST_CASE(
    "an HTTP/1.1 request body streams to an h2c upstream past the body cap, sized or chunked") {
  TestH2Server server;
  auto o = reverse_to("h2c://127.0.0.1:" + std::to_string(server.port()));
  o.body_cap = 64u << 10;  // the body is 3 MiB: it used to be held whole, so this was a 413
  Proxy proxy(o);
  TempDir dir;
  std::string file = (dir.path() / "body").string();
  const std::string body = pattern(3u << 20);
  std::ofstream(file, std::ios::binary) << body;
  // curl sends Expect: 100-continue for a body this size: the 100 is answered here.
  CHECK(curl("--http1.1 --data-binary @" + file + " " + proxy.url() + "/echo") == body);
  CHECK(curl("--http1.1 -H 'Transfer-Encoding: chunked' --data-binary @" + file + " " +
             proxy.url() + "/echo") == body);
  // An empty body and no body at all still end the stream.
  CHECK(curl("--http1.1 -X POST -H 'Content-Length: 0' " + proxy.url() + "/echo").empty());
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  for (int i = 0; i < 2; ++i) {
    CAPTURE(i);
    const auto& f = flows[static_cast<size_t>(i)];
    CHECK_FALSE(f.error.has_value());
    CHECK(f.request.http_version == "HTTP/1.1");
    CHECK(f.request.body.size == body.size());
    CHECK(f.request.body.truncated);
    CHECK(f.request.body.data == body.substr(0, o.body_cap));
    REQUIRE(f.response.has_value());
    CHECK(f.response->status == 200);
    CHECK(f.response->http_version == "HTTP/2");
    CHECK(f.response->body.size == body.size());
    CHECK(f.timing.request_ended >= f.timing.request_started);
  }
  CHECK_FALSE(flows[2].error.has_value());
  CHECK(flows[2].request.body.size == 0);
}

TEST_CASE("a gRPC call through the recorder keeps its status, message and trailers") {
  Subprocess grpc_server(
      {"/usr/bin/python3", std::string(RETAKE_RECORD_TEST_DIR) + "/grpc_peer.py", "server"});
  std::string port = grpc_server.read_line(20s);
  REQUIRE_MESSAGE(!port.empty(), "the gRPC test server did not start");
  Proxy proxy(reverse_to("h2c://127.0.0.1:" + port));
  std::string out = run("timeout 60 /usr/bin/python3 " + std::string(RETAKE_RECORD_TEST_DIR) +
                        "/grpc_peer.py client " + std::to_string(proxy.port) + " 2>&1");
  CHECK(out ==
        "Say OK echo:hi yes\n"
        "Fail NOT_FOUND no such thing\n"
        "Stream OK r0,r1,r2\n");
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  const flow::Flow* say = find_path(flows, "/test.Echo/Say");
  REQUIRE(say != nullptr);
  CHECK_FALSE(say->error.has_value());
  CHECK(say->request.http_version == "HTTP/2");
  CHECK(say->response->http_version == "HTTP/2");
  CHECK(say->request.headers.get("content-type") ==
        std::optional<std::string_view>("application/grpc"));
  CHECK(say->response->trailers.get("grpc-status") == std::optional<std::string_view>("0"));
  CHECK(say->response->trailers.get("x-trail") == std::optional<std::string_view>("yes"));
  // gRPC's length-prefixed message: 0, length 7, "echo:hi".
  CHECK(say->response->body.data == std::string("\0\0\0\0\x07"
                                                "echo:hi",
                                                12));
  const flow::Flow* fail = find_path(flows, "/test.Echo/Fail");
  REQUIRE(fail != nullptr);
  // A trailers-only response: the status travels in the only header block.
  auto status = fail->response->trailers.get("grpc-status");
  if (!status) status = fail->response->headers.get("grpc-status");
  CHECK(status == std::optional<std::string_view>("5"));
  const flow::Flow* stream = find_path(flows, "/test.Echo/Stream");
  REQUIRE(stream != nullptr);
  CHECK(stream->response->body.size == 3 * 7);
}

TEST_CASE(
    "explicit proxy: curl --http2 through CONNECT gets HTTP/2 from retake, which speaks HTTP/2 or "
    "HTTP/1.1 upstream as ALPN decides") {
  H2Pki pki;
  TestH2Server h2_up({}, pki.h2_upstream_tls.get());
  Upstream h1_up({"--tls", pki.h1_cert, pki.h1_key});
  Proxy proxy(pki.options());
  std::string via = "-4 --http2 --cacert " + pki.retake_ca + " -x " + proxy.url() + " ";
  std::string h2_url = "https://localhost:" + std::to_string(h2_up.port());
  std::string h1_url = "https://localhost:" + std::to_string(h1_up.port);
  CHECK(curl(via + "-w '|%{http_version}' " + h2_url + "/") == "hello|2");
  CHECK(curl(via + h2_url + "/big") == big_body(kBigSize));
  CHECK(curl(via + "-w '|%{http_version}' " + h1_url + "/size/5000") == pattern(5000) + "|2");
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  for (const auto& f : flows) {
    CHECK_FALSE(f.error.has_value());
    CHECK(f.request.scheme == "https");
    CHECK(f.request.http_version == "HTTP/2");
    CHECK(f.client_tls.present);
    CHECK(f.client_tls.alpn == "h2");
    CHECK(f.client_tls.sni == "localhost");
    CHECK(f.upstream_tls.present);
  }
  const flow::Flow* hello = find_path(flows, "/");
  REQUIRE(hello != nullptr);
  CHECK(hello->request.authority == "localhost:" + std::to_string(h2_up.port()));
  CHECK(hello->upstream_tls.alpn == "h2");
  CHECK(hello->response->http_version == "HTTP/2");
  CHECK(hello->response->body.data == "hello");
  const flow::Flow* h1 = find_path(flows, "/size/5000");
  REQUIRE(h1 != nullptr);
  CHECK(h1->upstream_tls.alpn == "http/1.1");
  CHECK(h1->response->http_version == "HTTP/1.1");
  CHECK(h1->response->body.data == pattern(5000));
  CHECK(h2_up.wait_event("alpn: h2") == "alpn: h2");
  // One upstream connection per CONNECT: the one dialed for the CONNECT is the one the h2
  // front uses (it used to dial a second).
  CHECK(proxy.rec->stats().upstream_connects == 3);
  for (const auto& f : flows) CHECK_FALSE(f.upstream_address.empty());
}

TEST_CASE("a TLS listener in reverse mode offers h2 and records HTTP/2 flows") {
  H2Pki pki;
  TestH2Server h2_up({}, pki.h2_upstream_tls.get());
  auto o = reverse_to("https://localhost:" + std::to_string(h2_up.port()));
  o.ca_dir = pki.options().ca_dir;
  o.upstream_ca_file = pki.upstream_ca;
  o.listen_tls = true;
  Proxy proxy(o);
  std::string out = curl(
      "--http2 --cacert " + pki.retake_ca + " --resolve front.test:" + std::to_string(proxy.port) +
      ":127.0.0.1 -w '|%{http_version}' https://front.test:" + std::to_string(proxy.port) +
      "/echo -d ping");
  CHECK(out == "ping|2");
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  CHECK_FALSE(flows[0].error.has_value());
  CHECK(flows[0].client_tls.alpn == "h2");
  CHECK(flows[0].upstream_tls.alpn == "h2");
  CHECK(flows[0].request.body.data == "ping");
}

TEST_CASE("HTTP/2 failures are error flows: upstream reset, unreachable upstream, client reset") {
  TestH2Server server;
  Proxy proxy(reverse_to("h2c://127.0.0.1:" + std::to_string(server.port())));
  Status reset_outcome;
  int reset_status = 0;
  std::string reset_code;
  H2cClient client(proxy.port);
  client.run([&](H2ClientSession& s) -> asio::awaitable<void> {
    // The upstream sends a head and part of the body, then RST_STREAM(CANCEL).
    auto opened = s.open(h2_request("GET", "/reset"), true);
    REQUIRE(opened.ok());
    auto stream = *opened;
    Status st = co_await stream->wait_response();
    if (st.ok()) {
      reset_status = stream->response().status;
      st = co_await stream->read_all(1u << 20);
    }
    reset_outcome = st;
    if (auto code = stream->close_code()) reset_code = h2::h2_error_code_name(*code);
    // The client resets its own upload mid-body.
    auto hold = s.open(h2_request("POST", "/hold"), false);
    REQUIRE(hold.ok());
    st = co_await (*hold)->write("part of a body", false);
    CHECK(st.ok());
    asio::steady_timer timer(co_await asio::this_coro::executor, 200ms);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    (*hold)->reset(H2ErrorCode::cancel);
    // The session goes on: a normal request still works.
    auto again = s.open(h2_request("GET", "/"), true);
    REQUIRE(again.ok());
    st = co_await (*again)->wait_response();
    CHECK(st.ok());
    st = co_await (*again)->read_all(1024);
    CHECK((*again)->response().body.data == "hello");
  });
  // Whether the upstream's head got out before its RST_STREAM is up to its HTTP/2 stack: either
  // the head was relayed and the client's stream is reset with the same code, or nothing was
  // and the client gets a 502.
  if (reset_status == 200) {
    CHECK_FALSE(reset_outcome.ok());
    CHECK(reset_code == "CANCEL");
  } else {
    CHECK(reset_status == 502);
  }
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  const flow::Flow* reset = find_path(flows, "/reset");
  REQUIRE(reset != nullptr);
  REQUIRE(reset->error.has_value());
  CHECK(reset->error->kind == ErrorKind::upstream_closed);
  CHECK(reset->error->message.find("CANCEL") != std::string::npos);
  CHECK((reset->response.has_value() == (reset_status == 200)));
  const flow::Flow* hold = find_path(flows, "/hold");
  REQUIRE(hold != nullptr);
  REQUIRE(hold->error.has_value());
  CHECK(hold->error->kind == ErrorKind::client_closed);
  CHECK(hold->request.body.data == "part of a body");
  CHECK(server.wait_event("hold: ").find("CANCEL") != std::string::npos);

  // An unreachable upstream: 502 over HTTP/2 with the reason, and an error flow.
  Proxy dead(reverse_to("http://127.0.0.1:" + std::to_string(closed_port())));
  std::string out = curl("--http2-prior-knowledge -w '|%{http_code}' " + dead.url() + "/x");
  CHECK(out.find("retake: cannot connect to upstream") != std::string::npos);
  CHECK(out.find("|502") != std::string::npos);
  auto dead_flows = dead.sink.wait_for(1);
  REQUIRE(dead_flows.size() == 1);
  REQUIRE(dead_flows[0].error.has_value());
  CHECK(dead_flows[0].error->kind == ErrorKind::upstream_unreachable);
  CHECK(dead_flows[0].request.http_version == "HTTP/2");
}

TEST_CASE("a client that breaks HTTP/2 loses its connection only; others go on") {
  Upstream up;
  Proxy proxy(reverse_options(up));
  // The preface, then a frame on stream 0 that must not be there (DATA on the connection).
  std::string bad = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  bad += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);       // empty SETTINGS
  bad += std::string("\x00\x00\x04\x00\x00\x00\x00\x00\x00junk", 13);  // DATA, stream 0
  bool closed = false;
  std::string reply = raw_exchange(proxy.port, bad, 5s, &closed);
  CHECK(closed);
  // Among the frames of the reply is a GOAWAY (type 7) carrying PROTOCOL_ERROR (1).
  uint32_t goaway_code = 0xffffffff;
  for (size_t pos = 0; pos + 9 <= reply.size();) {
    auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(reply[i])); };
    size_t length = byte(pos) << 16 | byte(pos + 1) << 8 | byte(pos + 2);
    if (byte(pos + 3) == 0x07 && pos + 9 + 8 <= reply.size())
      goaway_code =
          byte(pos + 13) << 24 | byte(pos + 14) << 16 | byte(pos + 15) << 8 | byte(pos + 16);
    pos += 9 + length;
  }
  CHECK(goaway_code == 0x01);
  CHECK(curl("--http2-prior-knowledge " + proxy.url() + "/size/10") == pattern(10));
}

TEST_CASE("stopping the recorder lets an in-flight HTTP/2 stream finish (GOAWAY)") {
  Upstream up;
  auto proxy = std::make_unique<Proxy>(reverse_options(up));
  std::string result;
  std::thread client([&] { result = curl("--http2-prior-knowledge " + proxy->url() + "/slow"); });
  // Stop once the request is on its way upstream (which answers 0.4 s after reading it).
  for (int i = 0; i < 500 && proxy->rec->stats().upstream_connects == 0; ++i)
    std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(50ms);
  proxy->rec->stop(3000ms);
  client.join();
  CHECK(result == "slow");
  auto flows = proxy->sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  CHECK_FALSE(flows[0].error.has_value());
}

TEST_CASE("HTTP/2 abuse against the recorder is contained by the front's limits") {
  TestH2Server server;
  Proxy proxy(reverse_to("h2c://127.0.0.1:" + std::to_string(server.port())));
  for (std::string c : {"rapid-reset", "too-many-streams", "big-header", "continuation-flood"}) {
    CAPTURE(c);
    std::string out = run("timeout 60 /usr/bin/python3 " + std::string(RETAKE_H2_CASES) + " " + c +
                          " " + std::to_string(proxy.port) + " 2>&1");
    CHECK_MESSAGE(out.rfind("PASS " + c, 0) == 0, out);
  }
  // The recorder still serves.
  CHECK(curl("--http2-prior-knowledge " + proxy.url() + "/") == "hello");
}

TEST_CASE("an HTTP/1.1 upstream that never answers an h2 client's request is a 504 and a flow") {
  Upstream up;
  auto o = reverse_options(up);
  o.upstream_timeout = 300ms;
  Proxy proxy(o);
  auto start = std::chrono::steady_clock::now();
  std::string out = curl("--http2-prior-knowledge -w '|%{http_code}' " + proxy.url() + "/never");
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK(out.find("retake: upstream did not answer within 300 ms") != std::string::npos);
  CHECK(out.find("|504") != std::string::npos);
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  REQUIRE(flows[0].error.has_value());
  CHECK(flows[0].error->kind == ErrorKind::upstream_timeout);
  // The connection that timed out is not reused: the next request is answered.
  CHECK(curl("--http2-prior-knowledge " + proxy.url() + "/size/10") == pattern(10));
}

TEST_CASE("streams an HTTP/2 upstream refuses with its GOAWAY are sent again on a new connection") {
  // The server takes three streams on its first connection, sends GOAWAY(last = the first),
  // answers that one "first"; later connections answer "again".
  Subprocess upstream({"/usr/bin/python3", RETAKE_H2_CASES, "goaway-server", "--serve-more"});
  std::string port = upstream.read_line(20s);
  REQUIRE_MESSAGE(!port.empty(), "the GOAWAY server did not start");
  Proxy proxy(reverse_to("h2c://127.0.0.1:" + port));
  std::vector<std::string> bodies(3);
  std::vector<int> statuses(3, 0);
  H2cClient client(proxy.port);
  client.run([&](H2ClientSession& s) -> asio::awaitable<void> {
    std::vector<std::shared_ptr<H2Stream>> streams;
    for (int i = 0; i < 3; ++i) {
      auto opened = s.open(h2_request("GET", "/r" + std::to_string(i)), true);
      REQUIRE(opened.ok());
      streams.push_back(*opened);
    }
    for (int i = 0; i < 3; ++i) {
      Status st = co_await streams[i]->wait_response();
      CHECK_MESSAGE(st.ok(), st.to_string());
      if (!st.ok()) continue;
      statuses[i] = streams[i]->response().status;
      st = co_await streams[i]->read_all(1024);
      bodies[i] = streams[i]->response().body.data;
    }
  });
  CHECK(statuses == std::vector<int>{200, 200, 200});
  std::sort(bodies.begin(), bodies.end());
  CHECK(bodies == std::vector<std::string>{"again", "again", "first"});
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  for (const auto& f : flows) CHECK_FALSE(f.error.has_value());
  CHECK(proxy.rec->stats().upstream_connects == 2);
}

// ---- WebSocket over HTTP/2 (RFC 8441) ----------------------------------------------------------

namespace {

// tests/record/ws_h2_peer.py's client (python3-h2 + python3-wsproto): "ok ..." or "failed: ...".
std::string ws_h2_client(const std::string& args) {
  return run("timeout 40 /usr/bin/python3 " + std::string(RETAKE_RECORD_TEST_DIR) +
             "/ws_h2_peer.py client " + args + " 2>&1");
}

// tests/record/ws_h2_peer.py's server: WebSocket over HTTP/2 (and HTTP/1.1 over TLS).
struct WsH2Server {
  explicit WsH2Server(std::vector<std::string> extra = {})
      : proc([&] {
          std::vector<std::string> a{
              "/usr/bin/python3", std::string(RETAKE_RECORD_TEST_DIR) + "/ws_h2_peer.py", "server"};
          a.insert(a.end(), extra.begin(), extra.end());
          return a;
        }()) {
    std::string line = proc.read_line();
    REQUIRE_MESSAGE(!line.empty(), "the WebSocket over HTTP/2 test server did not start");
    port = static_cast<uint16_t>(std::stoi(line));
  }
  Subprocess proc;
  uint16_t port = 0;
};

struct MessageHooks : record::RecordHooks {
  void websocket_message(flow::Flow&, const flow::WebSocketMessage& m) override {
    std::lock_guard lock(mutex);
    seen.push_back((m.from_client ? ">" : "<") + std::to_string(m.opcode));
  }
  size_t count() {
    std::lock_guard lock(mutex);
    return seen.size();
  }
  std::mutex mutex;
  std::vector<std::string> seen;
};

// ws_h2_peer.py's 100000-byte message.
std::string big_message() {
  std::string s(100000, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i % 251);
  return s;
}

// The extended CONNECT of `f` as recorded: what the HTTP/2 client sent.
void check_extended_connect(const flow::Flow& f) {
  CHECK(f.request.method == "CONNECT");
  CHECK(f.request.path == "/chat");
  CHECK(f.request.http_version == "HTTP/2");
  CHECK(f.request.headers.get(":protocol") == "websocket");
  CHECK(f.request.headers.get("sec-websocket-protocol") == "chat, superchat");
}

// ws_h2_peer.py's echo through the explicit proxy of `pki` (TLS interception, ALPN h2) to the
// TLS server on localhost:`port`; the client must print `expected`. Returns the one flow.
flow::Flow echo_intercepted(const H2Pki& pki, uint16_t port, const std::string& expected) {
  Proxy proxy(pki.options());
  std::string target = "localhost:" + std::to_string(port);
  CHECK(ws_h2_client("echo --proxy " + proxy.address + " --target " + target + " --cafile " +
                     pki.retake_ca) == expected);
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  CHECK(flows[0].request.scheme == "https");
  CHECK(flows[0].request.authority == target);
  CHECK(flows[0].client_tls.alpn == "h2");
  CHECK(flows[0].upstream_tls.present);
  check_extended_connect(flows[0]);
  return flows[0];
}

const flow::Flow* find_flow(const std::vector<flow::Flow>& flows, const std::string& method,
                            const std::string& path, size_t nth = 0) {
  for (const auto& f : flows)
    if (f.request.method == method && f.request.path == path && nth-- == 0) return &f;
  return nullptr;
}

}  // namespace

TEST_CASE(
    "WebSocket over h2c in reverse mode reaches an HTTP/1.1 upstream as an Upgrade; messages, "
    "close and both HTTP versions are recorded") {
  MessageHooks hooks;
  WsServer server;
  auto o = reverse_to("http://127.0.0.1:" + std::to_string(server.port));
  o.hooks = &hooks;
  Proxy proxy(o);
  // The client required SETTINGS_ENABLE_CONNECT_PROTOCOL, got 200 with the subprotocol and
  // permessage-deflate the upstream chose, and every echo back intact.
  CHECK(ws_h2_client("echo --h2c " + proxy.address) == "ok deflate=True\n");
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  const flow::Flow& f = flows[0];
  check_extended_connect(f);
  check_ws_flow(f);  // the upstream's 101 over HTTP/1.1
  CHECK(f.response->http_version == "HTTP/1.1");
  CHECK(f.response->headers.get("Sec-WebSocket-Protocol") == "chat");
  CHECK(has_message(*f.websocket, true, 2, big_message()));
  CHECK(has_message(*f.websocket, false, 2, big_message()));
  CHECK(f.timing.response_ended >= f.timing.response_started);
  CHECK(hooks.count() == f.websocket->messages.size());
}

TEST_CASE("WebSocket over HTTP/2 inside an intercepted CONNECT is relayed to a TLS upstream") {
  H2Pki pki;
  WsServer server({"--tls", pki.h1_cert, pki.h1_key});
  flow::Flow f = echo_intercepted(pki, server.port, "ok deflate=True\n");
  check_ws_flow(f);
  CHECK(f.response->http_version == "HTTP/1.1");
}

TEST_CASE(
    "WebSocket over HTTP/2 failures: unknown :protocol and plain CONNECT are 501, a refused "
    "upgrade is relayed, a client reset or an idle WebSocket is an error flow, a lingering "
    "client is reset without error; the connection goes on") {
  WsServer server;
  auto o = reverse_to("http://127.0.0.1:" + std::to_string(server.port));
  o.idle_timeout = 300ms;  // the idle case; the others finish well within it
  Proxy proxy(o);
  std::string h2c = " --h2c " + proxy.address;
  CHECK(ws_h2_client("bad-protocol" + h2c) == "ok 501 501 200\n");
  CHECK(ws_h2_client("handshake --path /forbidden" + h2c) == "ok 403 forbidden\n");
  CHECK(ws_h2_client("reset" + h2c) == "ok 200\n");
  CHECK(ws_h2_client("idle" + h2c) == "ok reset\n");
  // Not a failure: a client that keeps its side open once the WebSocket is over is told to stop.
  CHECK(ws_h2_client("linger" + h2c) == "ok NO_ERROR\n");
  auto flows = proxy.sink.wait_for(10);
  REQUIRE(flows.size() == 10);

  const flow::Flow* bogus = find_flow(flows, "CONNECT", "/chat", 0);
  REQUIRE(bogus != nullptr);
  REQUIRE(bogus->error.has_value());
  CHECK(bogus->error->kind == ErrorKind::bad_request);
  CHECK(bogus->error->message.find("'bogus'") != std::string::npos);
  const flow::Flow* plain = find_flow(flows, "CONNECT", "");
  REQUIRE(plain != nullptr);
  REQUIRE(plain->error.has_value());
  CHECK(plain->error->message.find("plain CONNECT") != std::string::npos);

  // The upstream's refusal is the client's answer and a plain flow, no WebSocket in it.
  const flow::Flow* refused = find_flow(flows, "CONNECT", "/forbidden");
  REQUIRE(refused != nullptr);
  CHECK_FALSE(refused->error.has_value());
  REQUIRE(refused->response.has_value());
  CHECK(refused->response->status == 403);
  CHECK(refused->response->body.data == "forbidden");
  CHECK_FALSE(refused->websocket.has_value());

  // The client reset mid-relay: what passed before is kept.
  const flow::Flow* reset = find_flow(flows, "CONNECT", "/chat", 1);
  REQUIRE(reset != nullptr);
  REQUIRE(reset->error.has_value());
  CHECK(reset->error->kind == ErrorKind::client_closed);
  CHECK(reset->error->message.find("CANCEL") != std::string::npos);
  REQUIRE(reset->websocket.has_value());
  CHECK(has_message(*reset->websocket, true, 1, "before reset"));
  CHECK(has_message(*reset->websocket, false, 1, "before reset"));

  const flow::Flow* idle = find_flow(flows, "CONNECT", "/chat", 2);
  REQUIRE(idle != nullptr);
  REQUIRE(idle->error.has_value());
  CHECK(idle->error->kind == ErrorKind::client_timeout);
  CHECK(idle->error->message == "WebSocket idle for 300 ms");

  const flow::Flow* linger = find_flow(flows, "CONNECT", "/chat", 3);
  REQUIRE(linger != nullptr);
  CHECK_FALSE(linger->error.has_value());
  REQUIRE(linger->websocket.has_value());
  CHECK(linger->websocket->close_code == 4001);

  // Each case's GET /plain on the same connection afterwards.
  for (size_t i = 0; i < 4; ++i) {
    const flow::Flow* after = find_flow(flows, "GET", "/plain", i);
    REQUIRE(after != nullptr);
    CHECK(after->response->status == 200);
    CHECK(after->request.http_version == "HTTP/2");
  }
}

TEST_CASE(
    "the HTTP/1.1 handshake sent for an extended CONNECT is a proper Upgrade, and a 2xx or a "
    "wrong Sec-WebSocket-Accept from the upstream is a 502, never a 200") {
  Upstream up;
  Proxy proxy(reverse_options(up));
  std::string h2c = " --h2c " + proxy.address;
  // http1_upstream.py refuses with the request head it got as the body.
  std::string head = ws_h2_client("handshake --path /refuse-headers" + h2c);
  INFO(head);
  CHECK(head.rfind("ok 403 GET /refuse-headers HTTP/1.1\n", 0) == 0);
  CHECK(head.find("\nHost: " + up.authority() + "\n") != std::string::npos);
  CHECK(head.find("\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Key: ") !=
        std::string::npos);
  CHECK(head.find("\nsec-websocket-version: 13\n") != std::string::npos);  // the client's
  CHECK(head.find("\nsec-websocket-protocol: chat, superchat\n") != std::string::npos);
  CHECK(head.find("\norigin: http://retake.test\n") != std::string::npos);
  CHECK(head.find("\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits") !=
        std::string::npos);
  CHECK(head.find(":protocol") == std::string::npos);
  CHECK(head.find("sec-websocket-extensions:") == std::string::npos);  // replaced by the offers

  CHECK(ws_h2_client("handshake --path /size/10" + h2c) ==
        "ok 502 retake: upstream answered the WebSocket handshake with 200 instead of 101 "
        "Switching Protocols\n\n");  // the error body ends with a newline
  CHECK(ws_h2_client("handshake --path /bad-accept" + h2c) ==
        "ok 502 retake: upstream's Sec-WebSocket-Accept does not match the key sent\n\n");
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  const flow::Flow* refused = find_flow(flows, "CONNECT", "/refuse-headers");
  REQUIRE(refused != nullptr);
  CHECK_FALSE(refused->error.has_value());
  for (std::string path : {"/size/10", "/bad-accept"}) {
    const flow::Flow* f = find_flow(flows, "CONNECT", path);
    REQUIRE(f != nullptr);
    REQUIRE(f->error.has_value());
    CHECK(f->error->kind == ErrorKind::upstream_protocol);
    REQUIRE(f->response.has_value());  // what the upstream said is kept
    CHECK(f->response->status == (path == "/size/10" ? 200 : 101));
    CHECK_FALSE(f->websocket.has_value());
  }
}

TEST_CASE(
    "WebSocket over HTTP/2 to an HTTP/2 upstream goes as extended CONNECT when the upstream "
    "enables it, and is a 502 error flow when an h2c upstream does not") {
  WsH2Server server;
  Proxy proxy(reverse_to("h2c://127.0.0.1:" + std::to_string(server.port)));
  CHECK(ws_h2_client("echo --h2c " + proxy.address) == "ok deflate=False\n");
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  check_extended_connect(flows[0]);
  check_ws_flow(flows[0], 200, false);
  CHECK(flows[0].response->http_version == "HTTP/2");
  CHECK(flows[0].response->headers.get("sec-websocket-protocol") == "chat");
  CHECK(has_message(*flows[0].websocket, false, 2, big_message()));

  WsH2Server old({"--no-connect-protocol"});
  Proxy refusing(reverse_to("h2c://127.0.0.1:" + std::to_string(old.port)));
  std::string out = ws_h2_client("echo --h2c " + refusing.address);
  INFO(out);
  CHECK(out.find("handshake answered {':status': '502'") != std::string::npos);
  auto failed = refusing.sink.wait_for(1);
  REQUIRE(failed.size() == 1);
  REQUIRE(failed[0].error.has_value());
  CHECK(failed[0].error->kind == ErrorKind::upstream_protocol);
  CHECK(failed[0].error->message.find("SETTINGS_ENABLE_CONNECT_PROTOCOL") != std::string::npos);
}

TEST_CASE(
    "an HTTP/2 TLS upstream gets the WebSocket as extended CONNECT when it enables it, else over "
    "HTTP/1.1 on a connection of its own") {
  H2Pki pki;
  WsH2Server enabling({"--tls", pki.h1_cert, pki.h1_key});
  flow::Flow f = echo_intercepted(pki, enabling.port, "ok deflate=False\n");
  check_ws_flow(f, 200, false);
  CHECK(f.response->http_version == "HTTP/2");
  CHECK(f.upstream_tls.alpn == "h2");

  WsH2Server old({"--no-connect-protocol", "--tls", pki.h1_cert, pki.h1_key});
  f = echo_intercepted(pki, old.port, "ok deflate=False\n");
  check_ws_flow(f, 101, false);
  CHECK(f.response->http_version == "HTTP/1.1");
  // Not the connection that learned the upstream speaks h2: one offering only http/1.1.
  CHECK(f.upstream_tls.alpn == "http/1.1");
}
