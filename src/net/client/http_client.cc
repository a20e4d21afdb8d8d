// HttpClient: one io_context on N threads; a bounded pool of keep-alive connections per
// endpoint (a concurrent_channel of permits bounds how many are open); every exchange is one
// coroutine whose failures become flow::Error values.
#include "net/client/http_client.h"

#include <array>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include "flow/thread_name.h"
#include "net/http1.h"

namespace retake::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Permits = asio::experimental::concurrent_channel<void(boost::system::error_code)>;

std::string Endpoint::key() const {
  return scheme + "://" + host + ":" + std::to_string(effective_port()) + "#" + server_name;
}

Endpoint endpoint_of(const flow::Request& request) {
  Endpoint ep;
  ep.scheme = request.scheme.empty() ? "http" : request.scheme;
  ep.host = request.host();
  ep.port = request.port();
  return ep;
}

namespace {

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string endpoint_text(const tcp::endpoint& ep) {
  auto addr = ep.address();
  if (addr.is_v6()) return "[" + addr.to_string() + "]:" + std::to_string(ep.port());
  return addr.to_string() + ":" + std::to_string(ep.port());
}

// One upstream connection: plain or TLS, with its facts.
struct Connection {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  std::string local_address;
  std::string remote_address;
  flow::TlsInfo tls_info;
  int64_t connected_ns = 0;
  int64_t connect_started_ns = 0;
  // The response parser, made on the first exchange and reused (it keeps its buffers).
  std::unique_ptr<Http1Parser> parser;
  // The request head being written; its capacity is reused by every exchange.
  std::string head;

  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

// A failure that ends an exchange, carried as an exception only inside the coroutine.
struct ExchangeError {
  flow::ErrorKind kind;
  std::string message;
};

flow::ErrorKind kind_for(const boost::system::error_code& ec, flow::ErrorKind otherwise) {
  if (ec == beast::error::timeout || ec == asio::error::timed_out)
    return flow::ErrorKind::upstream_timeout;
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe || ec == ssl::error::stream_truncated)
    return flow::ErrorKind::upstream_closed;
  return otherwise;
}

}  // namespace

struct PoolEntry {
  std::unique_ptr<Permits> permits;
  std::vector<std::unique_ptr<Connection>> idle;
};

struct HttpClient::State {
  ClientOptions options;
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  // Made or prepared by the first https connection (tls()): a client that only speaks plain
  // HTTP never loads the system's trust roots (25-40 ms) or makes an OpenSSL context.
  std::shared_ptr<ssl::context> tls_context;
  std::once_flag tls_once;
  std::mutex mutex;  // guards pools; never held across co_await
  std::map<std::string, PoolEntry> pools;
  std::atomic<uint64_t> sent{0}, opened{0}, reused{0}, failed{0};
  std::atomic<bool> stopped{false};

  ssl::context& tls() {
    std::call_once(tls_once, [this] {
      tls_context = options.tls_context;
      if (tls_context) {
        if (options.before_first_tls) options.before_first_tls();
        return;
      }
      tls_context = std::make_shared<ssl::context>(ssl::context::tls_client);
      if (options.insecure) {
        tls_context->set_verify_mode(ssl::verify_none);
      } else {
        boost::system::error_code ignored;  // no system store: every peer fails verification
        tls_context->set_default_verify_paths(ignored);
        tls_context->set_verify_mode(ssl::verify_peer);
      }
    });
    return *tls_context;
  }

  Permits& permits_for(const std::string& key) {
    std::lock_guard lock(mutex);
    auto& entry = pools[key];
    if (!entry.permits) {
      size_t n = std::max<size_t>(1, options.max_connections_per_endpoint);
      entry.permits = std::make_unique<Permits>(ioc, n);
      for (size_t i = 0; i < n; ++i) entry.permits->try_send(boost::system::error_code{});
    }
    return *entry.permits;
  }

  std::unique_ptr<Connection> take_idle(const std::string& key) {
    std::lock_guard lock(mutex);
    auto& idle = pools[key].idle;
    if (idle.empty()) return nullptr;
    auto c = std::move(idle.back());
    idle.pop_back();
    return c;
  }

  void give_back(const std::string& key, std::unique_ptr<Connection> c) {
    std::lock_guard lock(mutex);
    pools[key].idle.push_back(std::move(c));
  }

  asio::awaitable<std::unique_ptr<Connection>> connect(const Endpoint& ep);
  asio::awaitable<void> exchange(Connection& c, const flow::Request& request, flow::Flow& out,
                                 bool& keep_alive);
};

asio::awaitable<std::unique_ptr<Connection>> HttpClient::State::connect(const Endpoint& ep) {
  auto c = std::make_unique<Connection>();
  c->connect_started_ns = flow::now_ns();
  auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
  auto stream = std::make_unique<beast::tcp_stream>(ioc);
  std::vector<tcp::endpoint> candidates;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(ep.host, ec);
  if (!ec) {
    candidates.emplace_back(addr, ep.effective_port());
  } else {
    tcp::resolver resolver(ioc);
    // The resolver has no deadline of its own; a timer cancels it.
    asio::steady_timer guard(ioc, deadline);
    guard.async_wait([&resolver](boost::system::error_code e) {
      if (!e) resolver.cancel();
    });
    auto [rec, results] = co_await resolver.async_resolve(
        ep.host, std::to_string(ep.effective_port()), asio::as_tuple(asio::use_awaitable));
    guard.cancel();
    if (rec)
      throw ExchangeError{flow::ErrorKind::upstream_unreachable,
                          "resolve " + ep.host + ": " + rec.message()};
    for (auto& r : results) candidates.push_back(r.endpoint());
  }
  stream->expires_at(deadline);
  auto [cec, connected] =
      co_await stream->async_connect(candidates, asio::as_tuple(asio::use_awaitable));
  if (cec)
    throw ExchangeError{
        kind_for(cec, flow::ErrorKind::upstream_unreachable),
        "connect " + ep.host + ":" + std::to_string(ep.effective_port()) + ": " + cec.message()};
  stream->socket().set_option(tcp::no_delay(true), ec);
  c->remote_address = endpoint_text(connected);
  c->local_address = endpoint_text(stream->socket().local_endpoint(ec));
  if (ep.scheme == "https") {
    ssl::context& context = tls();
    c->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*stream), context);
    const std::string name = ep.server_name.empty() ? ep.host : ep.server_name;
    if (!is_ip_literal(name)) SSL_set_tlsext_host_name(c->tls->native_handle(), name.c_str());
    if (SSL_CTX_get_verify_mode(context.native_handle()) != SSL_VERIFY_NONE)
      c->tls->set_verify_callback(ssl::host_name_verification(name));
    beast::get_lowest_layer(*c->tls).expires_at(deadline);
    auto [hec] = co_await c->tls->async_handshake(ssl::stream_base::client,
                                                  asio::as_tuple(asio::use_awaitable));
    if (hec)
      throw ExchangeError{hec == beast::error::timeout ? flow::ErrorKind::upstream_timeout
                                                       : flow::ErrorKind::upstream_tls_failed,
                          "TLS handshake with " + name + ": " + hec.message()};
    SSL* s = c->tls->native_handle();
    c->tls_info.present = true;
    c->tls_info.sni = is_ip_literal(name) ? "" : name;
    c->tls_info.version = SSL_get_version(s);
    c->tls_info.cipher = SSL_get_cipher_name(s);
    if (X509* cert = SSL_get1_peer_certificate(s)) {
      char buf[512];
      X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
      c->tls_info.peer_subject = buf;
      X509_NAME_oneline(X509_get_issuer_name(cert), buf, sizeof buf);
      c->tls_info.peer_issuer = buf;
      X509_free(cert);
    }
  } else {
    c->plain = std::move(stream);
  }
  c->connected_ns = flow::now_ns();
  ++opened;
  co_return c;
}

namespace {

template <class Stream>
asio::awaitable<void> exchange_on(Stream& stream, beast::tcp_stream& tcp, Connection& c,
                                  const ClientOptions& options, const flow::Request& request,
                                  flow::Flow& out, bool& keep_alive) {
  // The head is written straight from the flow's fields (no Beast fields container to fill
  // and walk). What would break the framing is refused instead of sent.
  auto sendable = [](std::string_view what, std::string_view text, bool space_ok) {
    for (char ch : text)
      if (ch == '\r' || ch == '\n' || ch == '\0' || (!space_ok && ch == ' '))
        throw ExchangeError{flow::ErrorKind::bad_request,
                            "cannot send the request: its " + std::string(what) +
                                " contains a space, CR, LF or NUL"};
  };
  const std::string_view target = request.path.empty() ? "/" : std::string_view(request.path);
  if (request.method.empty())
    throw ExchangeError{flow::ErrorKind::bad_request, "cannot send the request: no method"};
  sendable("method", request.method, false);
  sendable("target", target, false);
  std::string& head = c.head;
  head.clear();
  head.append(request.method).append(" ").append(target);
  head.append(request.http_version == "HTTP/1.0" ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  bool has_host = false;
  for (const auto& h : request.headers) {
    if (flow::iequals(h.name, "Content-Length") || flow::iequals(h.name, "Transfer-Encoding"))
      continue;
    if (h.name.empty() || h.name.find(':') != std::string::npos)
      throw ExchangeError{flow::ErrorKind::bad_request,
                          "cannot send the request: a header name is empty or has a colon"};
    sendable("header name " + h.name.substr(0, 64), h.name, false);
    sendable("header " + h.name.substr(0, 64), h.value, true);
    has_host = has_host || flow::iequals(h.name, "Host");
    head.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  if (!has_host) {
    sendable("authority", request.authority, false);
    head.append("Host: ").append(request.authority).append("\r\n");
  }
  if (!request.body.data.empty() || request.method == "POST" || request.method == "PUT" ||
      request.method == "PATCH")
    head.append("Content-Length: ").append(std::to_string(request.body.data.size())).append("\r\n");
  head.append("\r\n");
  const std::array<asio::const_buffer, 2> wire{asio::buffer(head), asio::buffer(request.body.data)};

  tcp.expires_after(options.read_timeout);
  out.timing.request_started = flow::now_ns();
  auto [wec, wn] = co_await asio::async_write(stream, wire, asio::as_tuple(asio::use_awaitable));
  if (wec)
    throw ExchangeError{kind_for(wec, flow::ErrorKind::upstream_closed), "write: " + wec.message()};
  out.timing.request_ended = flow::now_ns();

  // The response, through the same strict HTTP/1 parser the recorder uses: headers land in
  // flow::Headers as received (order, case, duplicates), trailers are kept, and framing
  // that two implementations could read differently is an error.
  if (!c.parser) {  // the client's options, so its limits, never change
    Http1Limits limits;
    limits.max_header_bytes = options.header_limit;
    c.parser = std::make_unique<Http1Parser>(Http1Parser::Kind::response, limits);
  }
  Http1Parser& p = *c.parser;
  constexpr size_t kReadSize = 16 * 1024;
  auto buffered = [&] {
    auto d = c.buffer.data();
    return std::string_view(static_cast<const char*>(d.data()), d.size());
  };
  // Reads more bytes into c.buffer; false at end of stream.
  auto read_more = [&](const char* what) -> asio::awaitable<bool> {
    tcp.expires_after(options.read_timeout);
    auto [ec, got] = co_await stream.async_read_some(c.buffer.prepare(kReadSize),
                                                     asio::as_tuple(asio::use_awaitable));
    c.buffer.commit(got);
    if (ec == asio::error::eof || ec == ssl::error::stream_truncated) co_return false;
    if (ec)
      throw ExchangeError{kind_for(ec, flow::ErrorKind::upstream_protocol),
                          std::string(what) + ": " + ec.message()};
    co_return true;
  };
  for (;;) {  // interim 1xx responses (100 Continue ...) are skipped; 101 is final
    p.reset(request.method == "HEAD");
    size_t head_length = 0;
    for (;;) {
      if (c.buffer.size() > 0) {
        head_length = p.parse_head(buffered());
        if (head_length > 0) break;
        if (p.failed())
          throw ExchangeError{flow::ErrorKind::upstream_protocol,
                              "read header: " + p.error_message()};
      }
      bool more = co_await read_more("read header");
      if (!more)
        throw ExchangeError{flow::ErrorKind::upstream_closed,
                            "read header: the upstream closed the connection"};
    }
    c.buffer.consume(head_length);
    int status = p.head().status;
    if (status < 100 || status >= 200 || status == 101) break;
  }
  out.timing.response_started = flow::now_ns();
  flow::Response resp;
  auto& parsed = p.head();
  resp.status = parsed.status;
  resp.reason = std::move(parsed.reason);
  resp.http_version = parsed.minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  resp.headers = std::move(parsed.headers);
  auto keep = [&](std::string_view data) {
    resp.body.size += data.size();
    if (resp.body.data.size() < options.body_cap) {
      size_t n = std::min<uint64_t>(data.size(), options.body_cap - resp.body.data.size());
      resp.body.data.append(data.data(), n);
    }
  };
  while (!p.done()) {
    if (c.buffer.size() > 0) {
      size_t used = p.parse_body(buffered(), keep);
      c.buffer.consume(used);
      if (resp.body.size > options.body_limit) {
        out.response = std::move(resp);
        throw ExchangeError{flow::ErrorKind::body_too_large,
                            "read body: over the limit of " + std::to_string(options.body_limit) +
                                " bytes"};
      }
      if (p.failed()) {
        out.response = std::move(resp);  // keep what arrived: status and headers are facts
        throw ExchangeError{flow::ErrorKind::upstream_protocol,
                            "read body: " + p.error_message()};
      }
      if (p.done()) break;
    }
    bool more = co_await read_more("read body");
    if (!more) {
      p.finish_eof();
      if (p.failed()) {
        out.response = std::move(resp);
        throw ExchangeError{flow::ErrorKind::upstream_closed,
                            "read body: " + p.error_message()};
      }
    }
  }
  resp.trailers = std::move(p.trailers());
  resp.body.truncated = resp.body.size > resp.body.data.size();
  out.timing.response_ended = flow::now_ns();
  // After 101 the connection speaks another protocol: never reuse it for HTTP.
  keep_alive = p.keep_alive() && p.framing() != BodyFraming::until_close && resp.status != 101;
  out.response = std::move(resp);
}

}  // namespace

asio::awaitable<void> HttpClient::State::exchange(Connection& c, const flow::Request& request,
                                                  flow::Flow& out, bool& keep_alive) {
  if (c.tls)
    co_await exchange_on(*c.tls, beast::get_lowest_layer(*c.tls), c, options, request, out,
                         keep_alive);
  else
    co_await exchange_on(*c.plain, *c.plain, c, options, request, out, keep_alive);
}

HttpClient::HttpClient(ClientOptions options) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  state_->work.emplace(state_->ioc.get_executor());
  for (unsigned i = 0; i < state_->options.threads; ++i)
    state_->threads.emplace_back([s = state_.get()] {
      name_this_thread("retake-client");
      s->ioc.run();
    });
}

HttpClient::~HttpClient() {
  stop();
}

void HttpClient::stop() {
  if (state_->stopped.exchange(true)) return;
  state_->work.reset();
  {
    std::lock_guard lock(state_->mutex);
    for (auto& [key, entry] : state_->pools) {
      for (auto& c : entry.idle) {
        boost::system::error_code ec;
        c->tcp().socket().close(ec);
      }
      if (entry.permits) entry.permits->close();
    }
  }
  state_->ioc.stop();
  for (auto& t : state_->threads)
    if (t.joinable()) t.join();
  std::lock_guard lock(state_->mutex);
  state_->pools.clear();
}

asio::any_io_executor HttpClient::executor() {
  return state_->ioc.get_executor();
}

asio::io_context& HttpClient::context() {
  return state_->ioc;
}

ClientStats HttpClient::stats() const {
  return {state_->sent.load(), state_->opened.load(), state_->reused.load(), state_->failed.load()};
}

asio::awaitable<flow::Flow> HttpClient::send(flow::Request request, Endpoint endpoint) {
  State& s = *state_;
  ++s.sent;
  flow::Flow out;
  out.kind = flow::FlowKind::http;
  out.mode = "replay";
  const std::string key = endpoint.key();
  Permits& permits = s.permits_for(key);
  auto [pec] = co_await permits.async_receive(asio::as_tuple(asio::use_awaitable));
  if (pec) {
    out.request = std::move(request);
    out.error = flow::Error{flow::ErrorKind::internal, "client stopped"};
    ++s.failed;
    co_return out;
  }
  // At most two tries: a pooled keep-alive connection the server closed while idle fails
  // before any response byte; that one exchange is retried once on a fresh connection.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Connection> c = attempt == 0 ? s.take_idle(key) : nullptr;
    const bool pooled = c != nullptr;
    flow::Flow f;
    f.kind = flow::FlowKind::http;
    f.mode = "replay";
    std::optional<ExchangeError> failure;
    bool keep_alive = false;
    try {
      if (!c) {
        int64_t t0 = flow::now_ns();
        f.timing.client_connected = t0;
        c = co_await s.connect(endpoint);
        f.timing.upstream_connected = c->connected_ns;
      } else {
        ++s.reused;
        f.timing.client_connected = c->connect_started_ns;
        f.timing.upstream_connected = c->connected_ns;
      }
      f.client_address = c->local_address;
      f.upstream_address = c->remote_address;
      if (c->tls_info.present) f.upstream_tls = c->tls_info;
      co_await s.exchange(*c, request, f, keep_alive);
    } catch (const ExchangeError& e) {
      failure = e;
    } catch (const boost::system::system_error& e) {
      failure = ExchangeError{flow::ErrorKind::upstream_protocol, e.what()};
    } catch (const std::exception& e) {
      failure = ExchangeError{flow::ErrorKind::internal, e.what()};
    }
    if (failure && pooled && !f.response && (failure->kind == flow::ErrorKind::upstream_closed) &&
        attempt == 0) {
      continue;  // stale keep-alive connection: retry on a new one
    }
    if (!failure && keep_alive && c && !s.stopped) {
      s.give_back(key, std::move(c));
    } else if (c) {
      boost::system::error_code ec;
      c->tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
      c->tcp().socket().close(ec);
    }
    if (failure) {
      f.error = flow::Error{failure->kind, failure->message};
      if (!f.timing.request_started) f.timing.request_started = flow::now_ns();
      ++s.failed;
    }
    f.request = std::move(request);
    out = std::move(f);
    break;
  }
  permits.try_send(boost::system::error_code{});
  co_return out;
}

flow::Flow HttpClient::send_sync(flow::Request request, Endpoint endpoint) {
  return asio::co_spawn(state_->ioc, send(std::move(request), std::move(endpoint)),
                        asio::use_future)
      .get();
}

}  // namespace retake::net
