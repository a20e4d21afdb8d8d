#include "h2_test_server.h"

#include <sys/wait.h>

#include <boost/asio/ssl.hpp>

#include <array>
#include <chrono>
#include <cstdio>

namespace retake::h2::test {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

CommandResult run_command(const std::string& command) {
  CommandResult result;
  std::string full = "timeout 60 " + command + " </dev/null 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    if (result.output.size() < (4u << 20)) result.output.append(buf.data(), n);
  }
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string big_body(size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>('a' + i % 26);
  return out;
}

namespace {

flow::Response head(int status, flow::Headers headers = {}) {
  flow::Response r;
  r.status = status;
  r.headers = std::move(headers);
  return r;
}

}  // namespace

asio::awaitable<void> serve(TestH2Server* server, std::shared_ptr<H2Stream> stream) {
  const flow::Request& req = stream->request();
  const std::string path = req.path;
  if (auto protocol = connect_protocol(req)) {
    // An extended CONNECT: 200 with x-protocol, then every chunk straight back while the
    // request goes on (full duplex), until END_STREAM.
    server->record("connect: " + std::string(*protocol) + " " + req.scheme + " " + path);
    flow::Headers fields;
    fields.add("x-protocol", std::string(*protocol));
    flow::Response h = head(200, std::move(fields));
    if (!(co_await stream->respond(h, false)).ok()) co_return;
    for (;;) {
      auto chunk = co_await stream->read();
      if (!chunk.ok()) {
        server->record("connect ended: " + chunk.status().to_string());
        co_return;
      }
      bool end = !chunk->has_value();
      std::string data;
      if (!end) data = std::move(**chunk);
      Status st = co_await stream->write(std::move(data), end);
      if (!st.ok() || end) co_return;
    }
  } else if (path == "/echo") {
    if (!(co_await stream->read_all(4u << 20)).ok()) co_return;
    std::string body = req.body.data;
    // Heads are built outside co_await expressions: g++ 12 miscompiles braced lists there.
    flow::Headers fields;
    fields.add("content-type", "text/plain");
    fields.add("x-method", req.method);
    fields.add("x-authority", req.authority);
    fields.add("x-path", req.path);
    fields.add("content-length", std::to_string(body.size()));
    flow::Response h = head(200, std::move(fields));
    Status st = co_await stream->respond(h, body.empty());
    if (st.ok() && !body.empty()) (void)co_await stream->write(std::move(body), true);
  } else if (path == "/big") {
    std::string body = big_body(kBigSize);
    flow::Headers fields;
    fields.add("content-length", std::to_string(kBigSize));
    flow::Response h = head(200, std::move(fields));
    if (!(co_await stream->respond(h, false)).ok()) co_return;
    for (size_t pos = 0; pos < body.size(); pos += 16u << 10) {
      bool last = pos + (16u << 10) >= body.size();
      Status st = co_await stream->write(body.substr(pos, 16u << 10), last);
      if (!st.ok()) {
        server->record("big: " + st.to_string());
        co_return;
      }
    }
  } else if (path == "/trailers") {
    if (!(co_await stream->read_all(1u << 20)).ok()) co_return;
    std::string request_trailer(req.trailers.get("x-req").value_or("none"));
    flow::Headers fields;
    fields.add("content-type", "application/grpc");
    flow::Response h = head(200, std::move(fields));
    if (!(co_await stream->respond(h, false)).ok()) co_return;
    (void)co_await stream->write("payload", false);
    flow::Headers trailers;
    trailers.add("grpc-status", "0");
    trailers.add("grpc-message", "all good");
    trailers.add("x-request-trailer", request_trailer);
    (void)co_await stream->write_trailers(std::move(trailers));
  } else if (path == "/slow") {
    server->record("slow: started");
    asio::steady_timer timer(co_await asio::this_coro::executor, 200ms);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)co_await stream->respond(head(200), false);
    (void)co_await stream->write("slow", true);
  } else if (path == "/count") {
    size_t total = 0;
    for (;;) {
      auto chunk = co_await stream->read();
      if (!chunk.ok()) {
        server->record("count: " + chunk.status().to_string());
        co_return;
      }
      if (!chunk->has_value()) break;
      total += (*chunk)->size();
    }
    (void)co_await stream->respond(head(200), false);
    (void)co_await stream->write(std::to_string(total), true);
  } else if (path == "/hold") {
    for (;;) {
      auto chunk = co_await stream->read();
      if (!chunk.ok()) {
        server->record("hold: " + chunk.status().to_string());
        co_return;
      }
      if (!chunk->has_value()) break;
    }
    (void)co_await stream->respond(head(204), true);
  } else if (path == "/decline") {
    // Answers at once, a large body so DATA is still queued when the request is declined.
    flow::Response h = head(200);
    if (!(co_await stream->respond(h, false)).ok()) co_return;
    stream->decline_request_body();
    (void)co_await stream->write(big_body(100000), true);
    for (;;) {
      auto chunk = co_await stream->read();
      if (chunk.ok() && chunk->has_value()) continue;
      server->record("decline: " +
                     (chunk.ok() ? std::string("ended") : chunk.status().to_string()));
      break;
    }
  } else if (path == "/reset") {
    (void)co_await stream->respond(head(200), false);
    (void)co_await stream->write("partial", false);
    stream->reset(H2ErrorCode::cancel);
  } else {
    flow::Headers fields;
    fields.add("content-type", "text/plain");
    flow::Response h = head(200, std::move(fields));
    (void)co_await stream->respond(h, false);
    (void)co_await stream->write("hello", true);
  }
}

namespace {

asio::awaitable<void> run_session(TestH2Server* server, tcp::socket socket) {
  auto executor = socket.get_executor();
  std::unique_ptr<ByteStream> transport;
  if (server->tls() != nullptr) {
    asio::ssl::stream<tcp::socket> tls_stream(std::move(socket), server->tls()->asio_context());
    (void)server->tls()->prepare(tls_stream.native_handle(),
                                 {.fallback_host = "h2.test", .alpn = {"h2"}});
    auto [ec] = co_await tls_stream.async_handshake(asio::ssl::stream_base::server,
                                                    asio::as_tuple(asio::use_awaitable));
    if (ec) {
      server->record("tls handshake failed: " + ec.message());
      co_return;
    }
    server->record("alpn: " + tls::collect_tls_info(tls_stream.native_handle()).alpn);
    transport = make_byte_stream(std::move(tls_stream));
  } else {
    transport = make_byte_stream(std::move(socket));
  }
  auto session = H2ServerSession::create(
      executor, std::move(transport),
      [server](std::shared_ptr<H2Stream> s) { return serve(server, std::move(s)); },
      server->options());
  server->add_session(session);
  Status st = co_await session->run();
  server->session_ended(std::move(st));
}

asio::awaitable<void> accept_loop(TestH2Server* server, tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    asio::co_spawn(acceptor.get_executor(), run_session(server, std::move(socket)), asio::detached);
  }
}

}  // namespace

TestH2Server::TestH2Server(H2Options options, tls::InterceptTlsContext* tls)
    : options_(options),
      tls_(tls),
      acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, accept_loop(this, acceptor_), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

TestH2Server::~TestH2Server() {
  io_.stop();
  thread_.join();
}

std::string TestH2Server::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::string TestH2Server::https_url(const std::string& host, const std::string& path) const {
  return "https://" + host + ":" + std::to_string(port_) + path;
}

size_t TestH2Server::sessions() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

void TestH2Server::add_session(std::shared_ptr<H2ServerSession> session) {
  std::lock_guard lock(mutex_);
  sessions_.push_back(session);
}

void TestH2Server::session_ended(Status status) {
  std::lock_guard lock(mutex_);
  ended_.push_back(std::move(status));
  cv_.notify_all();
}

void TestH2Server::record(std::string event) {
  std::lock_guard lock(mutex_);
  events_.push_back(std::move(event));
  cv_.notify_all();
}

std::vector<Status> TestH2Server::wait_ended(size_t n) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, 10s, [&] { return ended_.size() >= n; });
  return ended_;
}

std::string TestH2Server::wait_event(const std::string& text) {
  std::unique_lock lock(mutex_);
  std::string found;
  cv_.wait_for(lock, 10s, [&] {
    for (const auto& e : events_)
      if (e.find(text) != std::string::npos) {
        found = e;
        return true;
      }
    return false;
  });
  return found;
}

size_t TestH2Server::wait_events(const std::string& text, size_t n) {
  std::unique_lock lock(mutex_);
  size_t seen = 0;
  cv_.wait_for(lock, 10s, [&] {
    seen = 0;
    for (const auto& e : events_)
      if (e.find(text) != std::string::npos) ++seen;
    return seen >= n;
  });
  return seen;
}

void TestH2Server::shutdown_sessions() {
  std::vector<std::shared_ptr<H2ServerSession>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto& w : sessions_)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  // Sessions are driven by the server thread: shut them down there.
  asio::post(io_, [live] {
    for (auto& s : live) s->shutdown();
  });
}

}  // namespace retake::h2::test
