// H2ClientSession against the in-test H2ServerSession server and a python3-h2 server:
// multiplexing, trailers both ways, flow-controlled 1 MiB bodies, resets, GOAWAY mid-flight.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <thread>

#include "h2_test_server.h"

namespace retake::h2::test {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

flow::Request request(unsigned short port, std::string method, std::string path,
                      std::string body = {}) {
  flow::Request r;
  r.method = std::move(method);
  r.scheme = "http";
  r.authority = "127.0.0.1:" + std::to_string(port);
  r.path = std::move(path);
  r.headers.add("User-Agent", "retake-h2-test");
  r.headers.add("Connection", "keep-alive");  // connection-specific: must not be sent
  r.body.data = std::move(body);
  return r;
}

// A client session on its own io_context (run by the caller) with the outcome of run().
struct Client {
  explicit Client(unsigned short port) {
    tcp::socket socket(io);
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    session = H2ClientSession::create(io.get_executor(), make_byte_stream(std::move(socket)));
    asio::co_spawn(io, pump(session), [this](std::exception_ptr, Status st) {
      run_status = std::move(st);
      ended = true;
    });
  }
  static asio::awaitable<Status> pump(std::shared_ptr<H2ClientSession> s) {
    co_return co_await s->run();
  }
  asio::io_context io;
  std::shared_ptr<H2ClientSession> session;
  Status run_status;
  bool ended = false;
};

struct Outcome {
  std::optional<Result<flow::Response>> result;
};

// Fetches `req` into `out`; the last of `remaining` fetches shuts the session down.
asio::awaitable<void> fetch_into(std::shared_ptr<H2ClientSession> session, flow::Request req,
                                 Outcome* out, int* remaining) {
  out->result = co_await session->fetch(std::move(req));
  if (--*remaining == 0) session->shutdown();
}

TEST_CASE("an H2ClientSession multiplexes requests, keeps trailers and moves 1 MiB both ways") {
  TestH2Server server;
  Client client(server.port());
  auto p = server.port();
  std::vector<flow::Request> requests = {
      request(p, "POST", "/echo", "hello h2"),
      request(p, "GET", "/big"),
      request(p, "POST", "/trailers", "abc"),
      request(p, "POST", "/count", big_body(kBigSize)),
      request(p, "GET", "/"),
  };
  requests[2].trailers.add("x-req", "from-retake");
  std::vector<Outcome> outcomes(requests.size());
  int remaining = static_cast<int>(requests.size());
  for (size_t i = 0; i < requests.size(); ++i)
    asio::co_spawn(client.io, fetch_into(client.session, requests[i], &outcomes[i], &remaining),
                   asio::detached);
  client.io.run_for(30s);

  CHECK(client.ended);
  CHECK(client.run_status.ok());
  for (auto& o : outcomes) {
    REQUIRE(o.result.has_value());
    INFO(o.result->status().to_string());
    REQUIRE(o.result->ok());
    CHECK(o.result->value().status == 200);
    CHECK(o.result->value().http_version == "HTTP/2");
  }
  const auto& echo = outcomes[0].result->value();
  CHECK(echo.body.data == "hello h2");
  CHECK(echo.headers.get("x-method") == "POST");
  CHECK(echo.headers.get("x-path") == "/echo");
  CHECK(echo.headers.get("x-authority") == "127.0.0.1:" + std::to_string(p));
  const auto& big = outcomes[1].result->value();
  CHECK(big.body.size == kBigSize);
  CHECK(big.body.data == big_body(kBigSize));
  CHECK_FALSE(big.body.truncated);
  const auto& tr = outcomes[2].result->value();
  CHECK(tr.body.data == "payload");
  CHECK(tr.trailers.get("grpc-status") == "0");
  CHECK(tr.trailers.get("grpc-message") == "all good");
  CHECK(tr.trailers.get("x-request-trailer") == "from-retake");
  CHECK(outcomes[3].result->value().body.data == std::to_string(kBigSize));
  CHECK(outcomes[4].result->value().body.data == "hello");
  CHECK(server.sessions() == 1);
  CHECK(client.session->stats().streams == 5);
}

TEST_CASE("a body over the cap is kept truncated with its full size counted") {
  TestH2Server server;
  Client client(server.port());
  std::optional<Result<flow::Response>> result;
  auto fetch = [](std::shared_ptr<H2ClientSession> s, flow::Request r,
                  std::optional<Result<flow::Response>>* out) -> asio::awaitable<void> {
    *out = co_await s->fetch(std::move(r), 1000);
    s->shutdown();
  };
  asio::co_spawn(client.io, fetch(client.session, request(server.port(), "GET", "/big"), &result),
                 asio::detached);
  client.io.run_for(30s);
  REQUIRE(result.has_value());
  REQUIRE(result->ok());
  CHECK(result->value().body.data.size() == 1000);
  CHECK(result->value().body.size == kBigSize);
  CHECK(result->value().body.truncated);
}

asio::awaitable<void> reset_then_more(std::shared_ptr<H2ClientSession> session, unsigned short port,
                                      Outcome* reset, Outcome* after) {
  reset->result = co_await session->fetch(request(port, "GET", "/reset"));
  after->result = co_await session->fetch(request(port, "GET", "/"));
  session->shutdown();
}

TEST_CASE("a stream reset by the server is an error outcome and the session goes on") {
  TestH2Server server;
  Client client(server.port());
  Outcome reset, after;
  asio::co_spawn(client.io, reset_then_more(client.session, server.port(), &reset, &after),
                 asio::detached);
  client.io.run_for(30s);
  REQUIRE(reset.result.has_value());
  CHECK_FALSE(reset.result->ok());
  CHECK(reset.result->status().code() == Errc::unavailable);
  CHECK(reset.result->status().message() == "stream reset: CANCEL");
  REQUIRE(after.result.has_value());
  REQUIRE(after.result->ok());
  CHECK(after.result->value().body.data == "hello");
  CHECK(client.run_status.ok());
}

// What an extended CONNECT saw: whether the server allowed it, the head, and each echo read back
// before the next chunk was written (so response DATA flowed while the request was still open).
struct TunnelOutcome {
  bool enabled = false;
  Status head;
  int status = 0;
  std::string protocol;
  std::vector<std::string> echoes;
  bool ended = false;
};

asio::awaitable<void> tunnel_through(std::shared_ptr<H2ClientSession> session, unsigned short port,
                                     TunnelOutcome* out) {
  out->enabled = co_await session->extended_connect_enabled();
  if (out->enabled) {
    flow::Request r = request(port, "CONNECT", "/chat");
    r.headers.add(std::string(kProtocolField), "websocket");
    auto opened = session->open(r, false);
    REQUIRE(opened.ok());
    auto stream = *opened;
    out->head = co_await stream->wait_response();
    out->status = stream->response().status;
    out->protocol = std::string(stream->response().headers.get("x-protocol").value_or(""));
    static constexpr const char* kChunks[] = {"one", "two", "three"};
    for (const char* chunk : kChunks) {
      if (!out->head.ok()) break;
      Status st = co_await stream->write(chunk, false);
      if (!st.ok()) break;
      auto echo = co_await stream->read();
      if (!echo.ok() || !echo->has_value()) break;
      out->echoes.push_back(**echo);
    }
    if (out->head.ok()) {
      Status st = co_await stream->write(std::string(), true);
      auto last = co_await stream->read();
      out->ended = st.ok() && last.ok() && !last->has_value();
    }
  }
  session->shutdown();
}

TEST_CASE("an extended CONNECT (RFC 8441) is a full-duplex stream when the server enables it") {
  H2Options options;
  options.enable_connect_protocol = true;
  TestH2Server server(options);
  Client client(server.port());
  TunnelOutcome out;
  asio::co_spawn(client.io, tunnel_through(client.session, server.port(), &out), asio::detached);
  client.io.run_for(30s);
  CHECK(out.enabled);
  CHECK(out.head.ok());
  CHECK(out.status == 200);
  CHECK(out.protocol == "websocket");
  CHECK(out.echoes == std::vector<std::string>{"one", "two", "three"});
  CHECK(out.ended);
  // :scheme and :path went with :protocol.
  CHECK(server.wait_event("connect: websocket http /chat") != "");

  // A server without the setting: the client learns it from the SETTINGS frame, sends nothing.
  TestH2Server plain;
  Client other(plain.port());
  TunnelOutcome refused;
  asio::co_spawn(other.io, tunnel_through(other.session, plain.port(), &refused), asio::detached);
  other.io.run_for(30s);
  CHECK_FALSE(refused.enabled);
  CHECK(other.session->stats().streams == 0);
}

TEST_CASE("a graceful server shutdown lets in-flight streams finish, then refuses new ones") {
  TestH2Server server;
  Client client(server.port());
  std::vector<Outcome> outcomes(3);
  int remaining = 3;
  for (auto& o : outcomes)
    asio::co_spawn(
        client.io,
        fetch_into(client.session, request(server.port(), "GET", "/slow"), &o, &remaining),
        asio::detached);
  std::thread io_thread([&] { client.io.run_for(30s); });
  // Every stream is being served when the GOAWAY goes out.
  CHECK(server.wait_events("slow: started", 3) == 3);
  server.shutdown_sessions();
  io_thread.join();
  for (auto& o : outcomes) {
    REQUIRE(o.result.has_value());
    INFO(o.result->status().to_string());
    REQUIRE(o.result->ok());
    CHECK(o.result->value().body.data == "slow");
  }
  CHECK(client.ended);
  CHECK(client.run_status.ok());
  CHECK(client.session->stats().goaway_received);
  CHECK_FALSE(client.session->accepting());
  CHECK_FALSE(client.session->open(request(server.port(), "GET", "/"), true).ok());
  auto ended = server.wait_ended(1);
  REQUIRE(ended.size() == 1);
  CHECK(ended[0].ok());
}

TEST_CASE("a GOAWAY mid-flight refuses the streams above its last stream id") {
  FILE* py = ::popen("timeout 30 /usr/bin/python3 " RETAKE_H2_CASES " goaway-server", "r");
  REQUIRE(py != nullptr);
  char line[32] = {};
  REQUIRE(std::fgets(line, sizeof line, py) != nullptr);
  auto port = static_cast<unsigned short>(std::stoi(line));
  {
    Client client(port);
    std::vector<Outcome> outcomes(3);
    int remaining = 3;
    for (auto& o : outcomes)
      asio::co_spawn(client.io,
                     fetch_into(client.session, request(port, "GET", "/"), &o, &remaining),
                     asio::detached);
    client.io.run_for(30s);
    REQUIRE(outcomes[0].result.has_value());
    INFO(outcomes[0].result->status().to_string());
    REQUIRE(outcomes[0].result->ok());
    CHECK(outcomes[0].result->value().body.data == "first");
    for (int i : {1, 2}) {
      REQUIRE(outcomes[i].result.has_value());
      CHECK_FALSE(outcomes[i].result->ok());
      CHECK(outcomes[i].result->status().code() == Errc::unavailable);
      CHECK(outcomes[i].result->status().message().find("REFUSED_STREAM") != std::string::npos);
    }
    CHECK(client.session->stats().goaway_received);
    CHECK_FALSE(client.session->accepting());
    CHECK(client.ended);
  }
  ::pclose(py);
}

}  // namespace
}  // namespace retake::h2::test

namespace retake::h2::test {
namespace {

asio::awaitable<void> fetch_and_stay(std::shared_ptr<H2ClientSession> session, flow::Request req,
                                     Outcome* out) {
  out->result = co_await session->fetch(std::move(req));
  // No shutdown: the connection stays open and silent until the server's idle timeout.
}

TEST_CASE("a connection left silent after its last stream is closed by the server's idle timeout") {
  H2Options options;
  options.idle_timeout = std::chrono::milliseconds(200);
  TestH2Server server(options);
  Client client(server.port());
  Outcome outcome;
  asio::co_spawn(client.io,
                 fetch_and_stay(client.session, request(server.port(), "GET", "/"), &outcome),
                 asio::detached);
  client.io.run_for(30s);  // returns once the server closed and the client session ended
  REQUIRE(outcome.result.has_value());
  REQUIRE(outcome.result->ok());
  CHECK(client.ended);
  auto ended = server.wait_ended(1);
  REQUIRE(ended.size() == 1);
  CHECK(ended[0].code() == Errc::timeout);
}

}  // namespace
}  // namespace retake::h2::test
