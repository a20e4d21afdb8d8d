// The recorder's HTTP/2 front (see h2_front.h). One H2Front per client connection: it owns the
// connection's upstream side, which is either one H2ClientSession shared by all streams (the
// upstream agreed to HTTP/2) or a small set of HTTP/1.1 connections, one per stream in flight
// and kept alive between streams (nghttpx's backend model).
//
// g++ 12 miscompiles co_await inside ?:, && / || and braced temporaries: every co_await here is
// its own statement.
#include "record/h2_front.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <variant>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>

#include "net/http1.h"
#include "net/read_buffer.h"
#include "net/tls/tls_context.h"
#include "net/upstream_pool.h"
#include "record/record_util.h"

namespace retake::record {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using boost::system::error_code;
using detail::Capture;
using detail::endpoint_text;
using detail::finish_body;
using detail::ms_text;
using detail::WebSocketRecording;
using flow::ErrorKind;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// A pooled connection used within this long is taken without the liveness peek (a syscall):
// no upstream closes a keep-alive connection that fast, and a dead one fails the exchange.
constexpr auto kPeekAfterIdle = std::chrono::seconds(1);
constexpr size_t kBodyRead = 16u << 10;
// After the upstream ended a WebSocket, how long its client has to end its side too (at most
// the idle timeout).
constexpr auto kWebSocketCloseGrace = std::chrono::seconds(5);

// Deadlines of one upstream connection without a timer operation per I/O (as the HTTP/1.1
// path does): arm() stores the deadline, and one watcher coroutine per connection sleeps until
// the earliest one and closes the socket when it has passed. Shared with that watcher, which
// may outlive the connection by one wake-up.
struct Watchdog {
  using Clock = std::chrono::steady_clock;
  explicit Watchdog(asio::any_io_executor ex) : timer(ex) {}
  asio::steady_timer timer;
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point expiry = Clock::time_point::max();
  tcp::socket* socket = nullptr;  // null once the connection is gone
  bool fired = false;

  static awaitable<void> watch(std::shared_ptr<Watchdog> self) {
    while (self->socket) {
      co_await self->timer.async_wait(kTuple);
      if (!self->socket) break;
      if (Clock::now() >= self->deadline) {
        self->fired = true;
        error_code ignored;
        self->socket->close(ignored);
        self->deadline = Clock::time_point::max();
      }
      self->expiry = self->deadline;
      self->timer.expires_at(self->expiry);
    }
  }
  void arm(std::chrono::milliseconds timeout) {
    fired = false;
    deadline = Clock::now() + timeout;
    if (deadline < expiry) {
      expiry = deadline;
      timer.expires_at(expiry);  // wakes the watcher, which re-waits until the new expiry
    }
  }
  void disarm() { deadline = Clock::time_point::max(); }
};

// One upstream connection: TCP, with TLS on top for an https destination.
struct UpConn {
  UpConn(asio::any_io_executor ex, size_t max_buffer)
      : socket(ex), in(4u << 10, max_buffer), watchdog(std::make_shared<Watchdog>(ex)) {
    watchdog->socket = &socket;
    asio::co_spawn(ex, Watchdog::watch(watchdog), asio::detached);
  }
  ~UpConn() {
    watchdog->socket = nullptr;
    watchdog->timer.cancel();
  }
  UpConn(const UpConn&) = delete;
  UpConn& operator=(const UpConn&) = delete;

  tcp::socket socket;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
  flow::TlsInfo tls_info;
  std::string address;
  int64_t connected_ns = 0;
  net::ReadBuffer in;  // HTTP/1.1: bytes read and not parsed yet
  std::chrono::steady_clock::time_point idle_since;
  std::shared_ptr<Watchdog> watchdog;

  // One read without a deadline of its own: the caller bounds it (or closes the connection).
  awaitable<std::pair<error_code, size_t>> read_raw(asio::mutable_buffer b) {
    error_code ec;
    size_t n = 0;
    if (tls)
      std::tie(ec, n) = co_await tls->async_read_some(b, kTuple);
    else
      std::tie(ec, n) = co_await socket.async_read_some(b, kTuple);
    co_return std::pair{ec, n};
  }
  awaitable<error_code> write_raw(asio::const_buffer b) {
    error_code ec;
    if (tls)
      std::tie(ec, std::ignore) = co_await asio::async_write(*tls, b, kTuple);
    else
      std::tie(ec, std::ignore) = co_await asio::async_write(socket, b, kTuple);
    co_return ec;
  }
  // One read, failing with timed_out (and the connection closed) after `timeout`.
  awaitable<std::pair<error_code, size_t>> read_some(asio::mutable_buffer b,
                                                     std::chrono::milliseconds timeout) {
    watchdog->arm(timeout);
    auto [ec, n] = co_await read_raw(b);
    watchdog->disarm();
    if (ec && watchdog->fired) ec = asio::error::timed_out;
    co_return std::pair{ec, n};
  }
  // Writes all of `b`, failing with timed_out (and the connection closed) after `timeout`.
  awaitable<error_code> write_all(asio::const_buffer b, std::chrono::milliseconds timeout) {
    watchdog->arm(timeout);
    error_code ec = co_await write_raw(b);
    watchdog->disarm();
    if (ec && watchdog->fired) ec = asio::error::timed_out;
    co_return ec;
  }
  void close() noexcept {
    error_code ec;
    socket.close(ec);
  }
};

// An UpConn as the transport of an H2ClientSession (the session's own timeouts apply).
class UpConnStream final : public h2::ByteStream {
 public:
  explicit UpConnStream(std::unique_ptr<UpConn> c) : c_(std::move(c)) {}
  awaitable<std::pair<error_code, size_t>> read_some(asio::mutable_buffer b) override {
    return c_->read_raw(b);
  }
  awaitable<error_code> write_all(asio::const_buffer b) override { return c_->write_raw(b); }
  void close() noexcept override { c_->close(); }

 private:
  std::unique_ptr<UpConn> c_;
};

// Facts of the upstream connection a flow went over.
struct UpInfo {
  std::string address;
  int64_t connected_ns = 0;
  flow::TlsInfo tls;
};

// Why an exchange failed, to record once both directions are done.
struct Failure {
  ErrorKind kind = ErrorKind::none;
  std::string message;
  explicit operator bool() const { return kind != ErrorKind::none; }
  void set(ErrorKind k, std::string m) {
    if (kind == ErrorKind::none) {
      kind = k;
      message = std::move(m);
    }
  }
};

// The response sent to an h2 client for a failure: a one-line text/plain body, as the HTTP/1.1
// path sends.
awaitable<void> respond_error(h2::H2Stream& cs, int status, std::string_view message) {
  if (cs.failed()) co_return;
  std::string body = "retake: ";
  body.append(message).push_back('\n');
  flow::Response head;
  head.status = status;
  head.headers.add("content-type", "text/plain; charset=utf-8");
  head.headers.add("content-length", std::to_string(body.size()));
  Status st = co_await cs.respond(head, false);
  if (!st.ok()) co_return;
  st = co_await cs.write(std::move(body), true);
}

bool method_expects_body(std::string_view m) {
  return m == "POST" || m == "PUT" || m == "PATCH";
}

// Answers a failure as the HTTP/1.1 path does: 504 when the upstream timed out, else 502.
awaitable<void> respond_failure(h2::H2Stream& cs, const Failure& failure) {
  co_await respond_error(cs, failure.kind == ErrorKind::upstream_timeout ? 504 : 502,
                         failure.message);
}

// The upstream end of a WebSocket relay: an HTTP/1.1 connection after its 101 (with the bytes
// that arrived behind the head), or an HTTP/2 stream after its 2xx. Reads have no deadline of
// their own: the relay's idle watch bounds them and ends them with abort().
class WsUpstream {
 public:
  // `write_timeout`: the longest write.
  WsUpstream(UpConn& conn, std::string early, std::chrono::milliseconds write_timeout)
      : conn_(&conn), early_(std::move(early)), timeout_(write_timeout) {}
  // `poll`: how long one read() waits before looking again (any value works; the relay decides
  // when the WebSocket is idle). Writes wait as H2Stream::write() does.
  WsUpstream(h2::H2Stream& stream, std::chrono::milliseconds poll)
      : stream_(&stream), timeout_(poll) {}

  // The next bytes; nullopt at the upstream's end (EOF or TLS close, END_STREAM).
  awaitable<Result<std::optional<std::string>>> read() {
    if (!early_.empty()) co_return std::optional<std::string>(std::exchange(early_, {}));
    if (stream_) {
      for (;;) {
        auto chunk = co_await stream_->read(timeout_);
        if (chunk.ok() || chunk.status().code() != Errc::timeout) co_return chunk;
      }
    }
    std::string buf(kBodyRead, '\0');
    auto [ec, n] = co_await conn_->read_raw(asio::buffer(buf));
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
      co_return std::optional<std::string>();
    if (ec) {
      if (conn_->watchdog->fired)  // a write timed out and closed the connection
        co_return Status(Errc::timeout, "upstream stopped reading for " + ms_text(timeout_));
      co_return Status(Errc::unavailable, ec.message());
    }
    buf.resize(n);
    co_return std::optional<std::string>(std::move(buf));
  }
  awaitable<Status> write(std::string data) {
    if (stream_) co_return co_await stream_->write(std::move(data), false);
    error_code ec = co_await conn_->write_all(asio::buffer(data), timeout_);
    if (!ec) co_return Status();
    if (ec == asio::error::timed_out)
      co_return Status(Errc::timeout, "upstream stopped reading for " + ms_text(timeout_));
    co_return Status(Errc::unavailable, ec.message());
  }
  // The client ended its side (END_STREAM). A plain connection is half-closed; a TLS one is
  // closed, as the HTTP/1.1 relay does: TLS has no half-close a WebSocket server acts on.
  awaitable<void> end() {
    if (stream_) {
      (void)co_await stream_->write(std::string(), true);
    } else if (conn_->tls) {
      closed_at_end_ = true;
      conn_->close();
    } else {
      error_code ignored;
      conn_->socket.shutdown(tcp::socket::shutdown_send, ignored);
    }
  }
  // end() closed the connection: the read it ends is not a failure.
  bool closed_at_end() const { return closed_at_end_; }
  // Ends both directions now; pending read() and write() fail.
  void abort() {
    if (stream_)
      stream_->reset(h2::H2ErrorCode::cancel);
    else
      conn_->close();
  }
  // The error code the client's stream is reset with when this side fails: the upstream
  // stream's own, or CONNECT_ERROR for a connection (RFC 9113 §8.5).
  h2::H2ErrorCode failure_code() const {
    auto code = stream_ ? stream_->close_code() : std::nullopt;
    return code && *code != 0 ? static_cast<h2::H2ErrorCode>(*code)
                              : h2::H2ErrorCode::connect_error;
  }
  // "upstream connection", "upstream stream (CANCEL)": what failed, for messages.
  std::string what() const {
    return stream_ ? "upstream stream (" + close_code_text(*stream_) + ")"
                   : std::string("upstream connection");
  }

 private:
  UpConn* conn_ = nullptr;
  h2::H2Stream* stream_ = nullptr;
  std::string early_;
  std::chrono::milliseconds timeout_;  // HTTP/1.1: per write; HTTP/2: per read wait
  bool closed_at_end_ = false;
};

// Relays one WebSocket between the client's HTTP/2 stream (answered 200) and the upstream, both
// directions at once, into f.websocket. RFC 8441 §4 maps TCP's FIN and RST onto END_STREAM and
// RST_STREAM, so the relay ends this way:
// - the client's END_STREAM ends the upstream side (WsUpstream::end()); the other direction
//   goes on until the upstream ends;
// - the upstream's end becomes END_STREAM to the client, which answers with its own (as a
//   WebSocket client closes TCP after the server did); one that has not within close_grace()
//   is asked to stop with RST_STREAM(NO_ERROR), nothing being able to reach the upstream any
//   more;
// - a client RST_STREAM closes the upstream: a client_closed failure unless both close frames
//   had passed (the WebSocket was over);
// - an upstream failure resets the client's stream (WsUpstream::failure_code());
// - nothing relayed either way for RecorderOptions::idle_timeout closes both (client_timeout),
//   like the HTTP/1.1 relay.
class WebSocketRelay {
 public:
  WebSocketRelay(asio::any_io_executor ex, h2::H2Stream& cs, WsUpstream& up, flow::Flow& f,
                 const RecorderOptions& opts, Failure& failure)
      : cs_(cs),
        up_(up),
        f_(f),
        opts_(opts),
        failure_(failure),
        recording_(f, opts),
        idle_timer_(ex),
        last_(Clock::now()) {}

  awaitable<void> run() {
    co_await (from_client() && from_upstream() && watch_idle());
    up_.abort();  // the upstream stream, if any, is closed on our side too
  }

 private:
  using Clock = std::chrono::steady_clock;

  awaitable<void> from_client() {
    for (;;) {
      auto chunk = co_await cs_.read(opts_.idle_timeout);
      if (!chunk.ok()) {
        // A timeout is not idleness: the other direction may be busy; watch_idle() decides.
        if (chunk.status().code() == Errc::timeout) continue;
        // Declined by us after the upstream's end, or reset by us: nothing to record.
        if (!upstream_ended_ && !stopped_ && !recording_.closed_both_ways())
          failure_.set(ErrorKind::client_closed,
                       "client reset the stream during the WebSocket relay (" +
                           close_code_text(cs_) + "): " + chunk.status().message());
        if (!upstream_ended_) stop(h2::H2ErrorCode::cancel);
        break;
      }
      if (!chunk->has_value()) {
        co_await up_.end();
        break;
      }
      last_ = Clock::now();
      recording_.feed(true, **chunk);
      f_.bytes_from_client += (*chunk)->size();
      Status st = co_await up_.write(std::move(**chunk));
      if (!st.ok()) {
        if (upstream_ended_) break;  // declining the client's body ends this side
        if (!stopped_)
          failure_.set(
              st.code() == Errc::timeout ? ErrorKind::upstream_timeout : ErrorKind::upstream_closed,
              "relaying to the " + up_.what() + " failed: " + st.message());
        stop(up_.failure_code());
        break;
      }
    }
    pump_done();
  }

  awaitable<void> from_upstream() {
    for (;;) {
      auto chunk = co_await up_.read();
      if (!chunk.ok() || !chunk->has_value()) {
        // The upstream's end, or the close that follows the client's END_STREAM over TLS.
        if (chunk.ok() || (up_.closed_at_end() && !stopped_)) {
          upstream_ended_ = true;
          ended_at_ = Clock::now();
          idle_timer_.cancel();  // watch_idle() now waits for the client's END_STREAM instead
          (void)co_await cs_.write(std::string(), true);
        } else {
          if (!stopped_)
            failure_.set(chunk.status().code() == Errc::timeout ? ErrorKind::upstream_timeout
                                                                : ErrorKind::upstream_closed,
                         "the " + up_.what() +
                             " failed during the WebSocket relay: " + chunk.status().message());
          stop(up_.failure_code());
        }
        break;
      }
      last_ = Clock::now();
      recording_.feed(false, **chunk);
      f_.bytes_from_upstream += (*chunk)->size();
      Status st = co_await cs_.write(std::move(**chunk), false);
      if (!st.ok()) {
        if (!stopped_)
          failure_.set(
              st.code() == Errc::timeout ? ErrorKind::client_timeout : ErrorKind::client_closed,
              st.code() == Errc::timeout ? "client stopped reading the WebSocket relay"
                                         : "client went away during the WebSocket relay (" +
                                               close_code_text(cs_) + "): " + st.message());
        stop(h2::H2ErrorCode::cancel);
        break;
      }
    }
    pump_done();
  }

  awaitable<void> watch_idle() {
    while (pumps_ > 0) {
      idle_timer_.expires_at(upstream_ended_ ? ended_at_ + close_grace()
                                             : last_ + opts_.idle_timeout);
      co_await idle_timer_.async_wait(kTuple);
      if (pumps_ == 0 || stopped_) break;
      if (upstream_ended_) {
        if (Clock::now() - ended_at_ < close_grace()) continue;
        cs_.decline_request_body();  // not a failure: the WebSocket is over
        break;
      }
      if (Clock::now() - last_ >= opts_.idle_timeout) {
        failure_.set(ErrorKind::client_timeout,
                     "WebSocket idle for " + ms_text(opts_.idle_timeout));
        stop(h2::H2ErrorCode::cancel);
        break;
      }
    }
  }

  std::chrono::milliseconds close_grace() const {
    return std::min<std::chrono::milliseconds>(opts_.idle_timeout, kWebSocketCloseGrace);
  }
  // Ends both sides now: the client's stream is reset with `code`, the upstream aborted.
  void stop(h2::H2ErrorCode code) {
    if (stopped_) return;
    stopped_ = true;
    cs_.reset(code);
    up_.abort();
  }
  void pump_done() {
    if (--pumps_ == 0) idle_timer_.cancel();
  }

  h2::H2Stream& cs_;
  WsUpstream& up_;
  flow::Flow& f_;
  const RecorderOptions& opts_;
  Failure& failure_;
  WebSocketRecording recording_;
  asio::steady_timer idle_timer_;
  Clock::time_point last_;      // when bytes last moved either way
  Clock::time_point ended_at_;  // when the upstream ended
  int pumps_ = 2;
  bool upstream_ended_ = false;
  bool stopped_ = false;
};

}  // namespace

std::shared_ptr<h2::H2ClientSession> start_upstream_h2(asio::any_io_executor executor,
                                                       std::unique_ptr<h2::ByteStream> stream,
                                                       const RecorderOptions& options) {
  h2::H2Options o;
  o.max_header_list_size = static_cast<uint32_t>(
      std::min<size_t>(options.max_header_bytes, std::numeric_limits<uint32_t>::max()));
  o.stream_timeout = options.upstream_timeout;
  o.write_timeout = options.upstream_timeout;
  o.idle_timeout = options.pool_idle_timeout;
  auto session = h2::H2ClientSession::create(executor, std::move(stream), o);
  asio::co_spawn(
      executor, [session]() -> awaitable<void> { (void)co_await session->run(); }, asio::detached);
  return session;
}

std::string close_code_text(const h2::H2Stream& stream) {
  auto code = stream.close_code();
  return code ? h2::h2_error_code_name(*code) : std::string("no error code");
}

h2::H2Options h2_front_options(const RecorderOptions& options) {
  h2::H2Options o;
  o.max_header_list_size = static_cast<uint32_t>(
      std::min<size_t>(options.max_header_bytes, std::numeric_limits<uint32_t>::max()));
  o.idle_timeout = options.idle_timeout;
  o.stream_timeout = std::max(options.client_read_timeout, options.upstream_timeout);
  o.write_timeout = options.client_read_timeout;
  o.enable_connect_protocol = true;  // WebSocket over HTTP/2 (serve_connect)
  return o;
}

class H2Front {
 public:
  H2Front(asio::any_io_executor ex, H2Destination dest, flow::Flow base, H2FrontEnv env)
      : ex_(std::move(ex)),
        dest_(std::move(dest)),
        base_(std::move(base)),
        env_(std::move(env)),
        opts_(*env_.options),
        connect_done_(ex_) {}

  static awaitable<void> handle(std::shared_ptr<H2Front> self, std::shared_ptr<h2::H2Stream> cs) {
    co_await self->serve_stream(*cs);
  }

  // The client connection ended: no new upstream work; idle connections are closed and the
  // shared HTTP/2 upstream is shut down gracefully (its in-flight streams finish).
  void close_upstreams() {
    closing_ = true;
    for (auto& c : idle_h1_) c->close();
    idle_h1_.clear();
    if (up_h2_) up_h2_->shutdown();
  }

 private:
  using H1 = std::unique_ptr<UpConn>;
  using H2 = std::shared_ptr<h2::H2ClientSession>;

  awaitable<void> serve_stream(h2::H2Stream& cs);
  // Sends a responder's answer and records the flow.
  awaitable<void> send_answer(h2::H2Stream& cs, flow::Flow& f, ReplayAnswer answer);
  // An upstream for one stream: the shared HTTP/2 session or an HTTP/1.1 connection. On failure
  // fills `failure` (and the caller answers 502/504).
  awaitable<std::variant<std::monostate, H2, H1>> acquire(Failure& failure);
  awaitable<H1> connect(bool offer_h2, Failure& failure);
  awaitable<bool> dial(UpConn& conn, Failure& failure);
  // Returns true when the upstream refused the stream unprocessed (REFUSED_STREAM, or above a
  // GOAWAY's last stream id) before anything was answered and the request can be sent again.
  awaitable<bool> forward_h2(h2::H2Stream& cs, flow::Flow& f, H2 session, bool buffered,
                             Failure& failure);
  awaitable<void> pump_request_h2(h2::H2Stream& cs, h2::H2Stream& us, flow::Flow& f, bool buffered,
                                  bool& done, Failure& failure);
  awaitable<void> pump_response_h2(h2::H2Stream& cs, h2::H2Stream& us, flow::Flow& f,
                                   bool replayable, bool& refused, Failure& failure);
  // The upstream stream's response head into f.response (response_headers hook called). False
  // when there is none: the failure is answered, or `refused` is set (see forward_h2).
  awaitable<bool> receive_head_h2(h2::H2Stream& cs, h2::H2Stream& us, flow::Flow& f,
                                  bool replayable, bool& refused, Failure& failure);
  // Sends f.response's head to the client and relays the upstream stream's body and trailers.
  awaitable<void> relay_response_h2(h2::H2Stream& cs, h2::H2Stream& us, flow::Flow& f,
                                    Failure& failure);
  awaitable<void> forward_h1(h2::H2Stream& cs, flow::Flow& f, H1 conn, bool buffered,
                             Failure& failure);
  // Writes request bytes to an HTTP/1.1 upstream; false once the failure is answered.
  awaitable<bool> send_h1(h2::H2Stream& cs, UpConn& conn, std::string_view bytes, Failure& failure);
  // The HTTP/1.1 response head into `parser` and f.response (response_headers hook called),
  // interim 1xx heads skipped: HTTP/2 clients get the final one. A 101 counts as final when
  // `switching` (a WebSocket handshake); otherwise HTTP/2 cannot carry it. False once the
  // failure is answered (502/504).
  awaitable<bool> receive_head_h1(h2::H2Stream& cs, flow::Flow& f, UpConn& conn,
                                  net::Http1Parser& parser, bool switching, Failure& failure);
  // Sends f.response's head to the client and relays the body `parser` frames; the connection
  // goes back to the idle set when it can serve again.
  awaitable<void> relay_response_h1(h2::H2Stream& cs, flow::Flow& f, H1 conn,
                                    net::Http1Parser& parser, Failure& failure);
  // A CONNECT: an extended CONNECT for WebSocket (RFC 8441) is forwarded to the upstream as it
  // speaks (HTTP/1.1 upgrade or HTTP/2 extended CONNECT) and relayed; anything else is 501.
  awaitable<void> serve_connect(h2::H2Stream& cs, flow::Flow& f);
  awaitable<void> forward_websocket_h1(h2::H2Stream& cs, flow::Flow& f, H1 conn, Failure& failure);
  awaitable<void> forward_websocket_h2(h2::H2Stream& cs, flow::Flow& f, H2 session,
                                       Failure& failure);
  // Accepts the client's WebSocket (200 with the upstream's handshake fields) and relays it.
  awaitable<void> relay_websocket(h2::H2Stream& cs, flow::Flow& f, WsUpstream& up,
                                  Failure& failure);
  void note_upstream(flow::Flow& f, const UpConn& conn);
  net::Http1Limits h1_limits() const {
    net::Http1Limits limits;
    limits.max_header_bytes = opts_.max_header_bytes;
    return limits;
  }
  // The :authority (h2) / Host (h1) sent upstream.
  std::string upstream_authority(const flow::Request& client_request) const {
    if (dest_.rewrite_host || client_request.authority.empty()) return dest_.authority;
    return client_request.authority;
  }
  void record(flow::Flow& f, const Failure& failure) {
    finish_body(f.request.body);
    if (f.response) finish_body(f.response->body);
    if (failure) {
      f.error = flow::Error{failure.kind, failure.message};
      if (opts_.hooks) opts_.hooks->error(f);
    } else if (opts_.hooks) {
      opts_.hooks->response_complete(f);
    }
    env_.offer(std::move(f));
  }

  asio::any_io_executor ex_;
  const H2Destination dest_;
  const flow::Flow base_;
  const H2FrontEnv env_;
  const RecorderOptions& opts_;
  bool closing_ = false;
  // The upstream's protocol, learned from the first connection's ALPN (or h2c prior knowledge).
  enum class Proto { unknown, h1, h2 } proto_ = Proto::unknown;
  H2 up_h2_;
  UpInfo up_h2_info_;
  bool connecting_ = false;
  asio::steady_timer connect_done_;  // cancelled when a connect attempt ends
  std::vector<H1> idle_h1_;
};

awaitable<void> H2Front::serve_stream(h2::H2Stream& cs) {
  flow::Flow f = base_;
  f.timing.request_started = flow::now_ns();
  f.request = cs.request();
  f.request.scheme = dest_.scheme;
  f.request.authority = dest_.authority;
  if (opts_.hooks) opts_.hooks->request_headers(f);
  if (f.request.method == "CONNECT") {
    // Before the responder: like the HTTP/1.1 path, WebSocket handshakes are always forwarded.
    co_await serve_connect(cs, f);
    co_return;
  }
  Failure failure;

  // Server replay: the responder needs the whole request before anything else.
  bool buffered = false;
  if (opts_.responder) {
    Status st = co_await cs.read_all(opts_.body_cap);
    f.request.body = std::move(cs.request().body);
    f.request.trailers = cs.request().trailers;
    if (!st.ok()) {
      failure.set(ErrorKind::client_closed,
                  "client reset the stream before the request ended: " + st.message());
      record(f, failure);
      co_return;
    }
    f.timing.request_ended = flow::now_ns();
    finish_body(f.request.body);
    if (f.request.body.truncated) {
      std::string m = "request body over " + std::to_string(opts_.body_cap) +
                      " bytes (--body-cap) cannot be matched under server replay";
      co_await respond_error(cs, 413, m);
      failure.set(ErrorKind::body_too_large, m);
      record(f, failure);
      co_return;
    }
    if (opts_.hooks) opts_.hooks->request_complete(f);
    ReplayAnswer answer = opts_.responder->answer(f);
    if (answer.action != ReplayAnswer::Action::forward) {
      if (env_.answered) env_.answered();
      co_await send_answer(cs, f, std::move(answer));
      co_return;
    }
    f.tags.insert(f.tags.end(), answer.tags.begin(), answer.tags.end());
    buffered = true;
  }

  // Upstreams rotate connections (GOAWAY) and refuse streams they did not process: such a
  // request goes again on a fresh connection, a few times at most.
  constexpr int kAttempts = 3;
  for (int attempt = 0; attempt < kAttempts && !failure; ++attempt) {
    auto up = co_await acquire(failure);
    if (failure) break;
    if (auto* session = std::get_if<H2>(&up)) {
      if (!(*session)->accepting() && attempt + 1 < kAttempts) continue;
      bool refused = co_await forward_h2(cs, f, *session, buffered, failure);
      if (refused && attempt + 1 < kAttempts) {
        if (up_h2_ == *session) up_h2_->shutdown();  // it will not take this stream: replace it
        continue;
      }
    } else {
      co_await forward_h1(cs, f, std::move(std::get<H1>(up)), buffered, failure);
    }
    record(f, failure);
    co_return;
  }
  co_await respond_failure(cs, failure);
  record(f, failure);
}

awaitable<void> H2Front::send_answer(h2::H2Stream& cs, flow::Flow& f, ReplayAnswer answer) {
  f.tags.insert(f.tags.end(), answer.tags.begin(), answer.tags.end());
  Failure failure;
  if (answer.action == ReplayAnswer::Action::kill) {
    cs.reset(h2::H2ErrorCode::cancel);
    failure.set(ErrorKind::policy,
                "server replay: reset the stream without an answer (on-miss kill)");
    record(f, failure);
    co_return;
  }
  f.origin = answer.origin;
  if (answer.delay.count() > 0) {
    asio::steady_timer timer(ex_, answer.delay);
    co_await timer.async_wait(kTuple);
  }
  f.timing.response_started = flow::now_ns();
  flow::Response& resp = f.response.emplace(std::move(answer.response));
  if (opts_.hooks) opts_.hooks->response_headers(f);
  const bool bodyless =
      f.request.method == "HEAD" || resp.status < 200 || resp.status == 204 || resp.status == 304;
  // The recorded framing does not apply: the body goes whole with its own length.
  flow::Response head;
  head.status = resp.status;
  for (const auto& h : resp.headers)
    if (bodyless || !flow::iequals(h.name, "content-length")) head.headers.add(h.name, h.value);
  if (!bodyless) head.headers.add("content-length", std::to_string(resp.body.data.size()));
  const bool end = bodyless || (resp.body.data.empty() && resp.trailers.empty());
  Status st = co_await cs.respond(head, end);
  if (st.ok() && !end) {
    if (!resp.body.data.empty()) st = co_await cs.write(resp.body.data, resp.trailers.empty());
    if (st.ok() && !resp.trailers.empty()) st = co_await cs.write_trailers(resp.trailers);
  }
  if (!st.ok()) failure.set(ErrorKind::client_closed, "client went away: " + st.message());
  f.timing.response_ended = flow::now_ns();
  record(f, failure);
}

awaitable<std::variant<std::monostate, H2Front::H2, H2Front::H1>> H2Front::acquire(
    Failure& failure) {
  using Up = std::variant<std::monostate, H2, H1>;
  for (;;) {
    if (closing_) {
      failure.set(ErrorKind::client_closed, "the client connection ended");
      co_return Up{};
    }
    if (up_h2_ && up_h2_->accepting()) co_return Up{up_h2_};
    if (proto_ == Proto::h1) {
      while (!idle_h1_.empty()) {
        H1 c = std::move(idle_h1_.back());
        idle_h1_.pop_back();
        if (std::chrono::steady_clock::now() - c->idle_since < kPeekAfterIdle ||
            net::idle_socket_alive(c->socket))
          co_return Up{std::move(c)};
        c->close();
      }
      H1 c = co_await connect(false, failure);
      if (!c) co_return Up{};
      co_return Up{std::move(c)};
    }
    if (connecting_) {
      // Another stream is finding out what the upstream speaks: wait for it.
      co_await connect_done_.async_wait(kTuple);
      continue;
    }
    connecting_ = true;
    connect_done_.expires_at(asio::steady_timer::time_point::max());
    H1 c = co_await connect(dest_.scheme == "https" || dest_.h2c, failure);
    connecting_ = false;
    connect_done_.cancel();
    if (!c) co_return Up{};
    const bool h2 = c->tls ? c->tls_info.alpn == "h2" : dest_.h2c;
    if (!h2) {
      proto_ = Proto::h1;
      co_return Up{std::move(c)};
    }
    proto_ = Proto::h2;
    up_h2_info_ = UpInfo{c->address, c->connected_ns, c->tls_info};
    up_h2_ = start_upstream_h2(ex_, std::make_unique<UpConnStream>(std::move(c)), opts_);
  }
}

// Resolves and connects conn.socket to the destination (each address in turn), counting the
// connection; false with `failure` set when none answers.
awaitable<bool> H2Front::dial(UpConn& conn, Failure& failure) {
  std::vector<tcp::endpoint> endpoints;
  error_code ec;
  auto addr = asio::ip::make_address(dest_.host, ec);
  if (!ec) {
    endpoints.emplace_back(addr, dest_.port);
  } else {
    tcp::resolver resolver(ex_);
    asio::steady_timer timer(ex_);
    timer.expires_after(opts_.connect_timeout);
    auto r = co_await (resolver.async_resolve(dest_.host, std::to_string(dest_.port), kTuple) ||
                       timer.async_wait(kTuple));
    if (r.index() == 1) {
      failure.set(ErrorKind::upstream_timeout, "resolving upstream host '" + dest_.host +
                                                   "' timed out after " +
                                                   ms_text(opts_.connect_timeout));
      co_return false;
    }
    auto [rec, results] = std::get<0>(std::move(r));
    if (rec) {
      failure.set(ErrorKind::upstream_unreachable,
                  "cannot resolve upstream host '" + dest_.host + "': " + rec.message());
      co_return false;
    }
    for (const auto& e : results) endpoints.push_back(e.endpoint());
  }
  bool connected = false;
  for (const auto& ep : endpoints) {
    asio::steady_timer timer(ex_);
    timer.expires_after(opts_.connect_timeout);
    auto r = co_await (conn.socket.async_connect(ep, kTuple) || timer.async_wait(kTuple));
    if (r.index() == 1) {
      failure.kind = ErrorKind::none;
      failure.set(ErrorKind::upstream_timeout, "connecting to upstream " + endpoint_text(ep) +
                                                   " timed out after " +
                                                   ms_text(opts_.connect_timeout));
    } else if (auto [cec] = std::get<0>(r); cec) {
      failure.kind = ErrorKind::none;
      failure.set(ErrorKind::upstream_unreachable,
                  "cannot connect to upstream " + endpoint_text(ep) + ": " + cec.message());
    } else {
      conn.address = endpoint_text(ep);
      connected = true;
      break;
    }
    conn.socket.close(ec);
    conn.socket = tcp::socket(ex_);
  }
  if (!connected) {
    if (!failure)
      failure.set(ErrorKind::upstream_unreachable,
                  "upstream host '" + dest_.host + "' has no address");
    co_return false;
  }
  conn.connected_ns = flow::now_ns();
  if (env_.upstream_connected) env_.upstream_connected();
  co_return true;
}

awaitable<H2Front::H1> H2Front::connect(bool offer_h2, Failure& failure) {
  auto conn = std::make_unique<UpConn>(ex_, opts_.max_header_bytes + kBodyRead);
  error_code ec;
  // The socket dialed for a CONNECT serves once: moved out, it is no longer open.
  if (env_.connected && env_.connected->is_open()) {
    conn->socket = std::move(*env_.connected);
    conn->address = env_.connected_address;
    conn->connected_ns = env_.connected_ns;
  } else {
    bool dialed = co_await dial(*conn, failure);
    if (!dialed) co_return nullptr;
  }
  failure = Failure{};
  conn->socket.set_option(tcp::no_delay(true), ec);
  if (dest_.scheme == "https") {
    auto context = env_.upstream_tls();
    if (!context) {
      failure.set(ErrorKind::upstream_tls_failed, context.status().message());
      co_return nullptr;
    }
    conn->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(conn->socket,
                                                                 (*context)->asio_context());
    SSL* ssl = conn->tls->native_handle();
    static const std::vector<std::string> kBoth = {"h2", "http/1.1"};
    static const std::vector<std::string> kH1 = {"http/1.1"};
    if (auto st = (*context)->prepare(ssl, dest_.sni, offer_h2 ? &kBoth : &kH1); !st.ok()) {
      failure.set(ErrorKind::upstream_tls_failed, "upstream TLS: " + st.message());
      co_return nullptr;
    }
    asio::steady_timer timer(ex_);
    timer.expires_after(opts_.connect_timeout);
    auto r = co_await (conn->tls->async_handshake(asio::ssl::stream_base::client, kTuple) ||
                       timer.async_wait(kTuple));
    std::string why;
    if (r.index() == 1) {
      why = "upstream TLS handshake with " + conn->address + " timed out after " +
            ms_text(opts_.connect_timeout);
    } else if (auto [hec] = std::get<0>(r); hec) {
      if (auto reason = tls::verify_failure_reason(ssl))
        why = *reason;
      else
        why = "upstream TLS handshake with " + conn->address + " failed: " + hec.message();
    }
    if (!why.empty()) {
      failure.set(ErrorKind::upstream_tls_failed, why);
      co_return nullptr;
    }
    conn->tls_info = tls::collect_tls_info(ssl);
  }
  co_return conn;
}

awaitable<bool> H2Front::forward_h2(h2::H2Stream& cs, flow::Flow& f, H2 session, bool buffered,
                                    Failure& failure) {
  flow::Request up_req = f.request;
  up_req.body = {};
  up_req.trailers = {};
  up_req.authority = upstream_authority(cs.request());
  const bool end_at_open =
      buffered ? f.request.body.data.empty() && f.request.trailers.empty() : cs.body_ended();
  f.upstream_address = up_h2_info_.address;
  f.timing.upstream_connected = up_h2_info_.connected_ns;
  f.upstream_tls = up_h2_info_.tls;
  auto opened = session->open(up_req, end_at_open);
  if (!opened.ok()) {
    failure.set(ErrorKind::upstream_closed,
                "the upstream HTTP/2 connection refused the request: " + opened.status().message());
    co_await respond_failure(cs, failure);
    co_return false;
  }
  std::shared_ptr<h2::H2Stream> us = *opened;
  bool request_done = end_at_open;
  if (end_at_open && !buffered) {
    f.timing.request_ended = flow::now_ns();
    if (opts_.hooks) opts_.hooks->request_complete(f);
  }
  // The request can go again when the front still holds all of it.
  const bool replayable = buffered || end_at_open;
  bool refused = false;
  co_await (pump_request_h2(cs, *us, f, buffered, request_done, failure) &&
            pump_response_h2(cs, *us, f, replayable, refused, failure));
  co_return refused;
}

awaitable<void> H2Front::pump_request_h2(h2::H2Stream& cs, h2::H2Stream& us, flow::Flow& f,
                                         bool buffered, bool& done, Failure& failure) {
  if (done) co_return;
  if (buffered) {
    Status st;
    if (!f.request.body.data.empty())
      st = co_await us.write(f.request.body.data, f.request.trailers.empty());
    if (st.ok() && !f.request.trailers.empty()) st = co_await us.write_trailers(f.request.trailers);
    done = true;
    co_return;  // a failed write shows as the upstream stream failing in pump_response_h2
  }
  for (;;) {
    auto chunk = co_await cs.read();
    if (!chunk.ok()) {
      // The client reset its stream (or stalled past the stream timeout): stop the upstream's.
      failure.set(ErrorKind::client_closed,
                  "client ended the stream before the request body was complete (" +
                      close_code_text(cs) + "): " + chunk.status().message());
      us.reset(h2::H2ErrorCode::cancel);
      break;
    }
    if (!chunk->has_value()) {
      f.request.trailers = cs.request().trailers;
      Status st;
      if (!f.request.trailers.empty())
        st = co_await us.write_trailers(f.request.trailers);
      else
        st = co_await us.write(std::string(), true);
      f.timing.request_ended = flow::now_ns();
      if (opts_.hooks) opts_.hooks->request_complete(f);
      break;
    }
    Capture{&f.request.body, opts_.body_cap}(**chunk);
    Status st = co_await us.write(std::move(**chunk), false);
    if (!st.ok()) break;  // the upstream stream failed: pump_response_h2 reports it
  }
  done = true;
}

awaitable<void> H2Front::pump_response_h2(h2::H2Stream& cs, h2::H2Stream& us, flow::Flow& f,
                                          bool replayable, bool& refused, Failure& failure) {
  bool got = co_await receive_head_h2(cs, us, f, replayable, refused, failure);
  if (got) co_await relay_response_h2(cs, us, f, failure);
}

awaitable<bool> H2Front::receive_head_h2(h2::H2Stream& cs, h2::H2Stream& us, flow::Flow& f,
                                         bool replayable, bool& refused, Failure& failure) {
  Status st = co_await us.wait_response();
  if (!st.ok()) {
    if (cs.failed()) co_return false;  // the client went first; its pump recorded why
    auto code = us.close_code();
    if (replayable && code && *code == static_cast<uint32_t>(h2::H2ErrorCode::refused_stream)) {
      refused = true;
      co_return false;
    }
    std::string m = st.code() == Errc::timeout
                        ? "upstream did not answer within " + ms_text(opts_.upstream_timeout)
                        : "upstream reset the stream before answering (" + close_code_text(us) +
                              "): " + st.message();
    failure.set(
        st.code() == Errc::timeout ? ErrorKind::upstream_timeout : ErrorKind::upstream_closed, m);
    // No reset after the answer: RST_STREAM would overtake its queued DATA. A request body
    // still arriving is read and dropped (pump_request_h2 stops at the failed upstream stream).
    co_await respond_failure(cs, failure);
    co_return false;
  }
  f.timing.response_started = flow::now_ns();
  flow::Response& resp = f.response.emplace();
  resp.status = us.response().status;
  resp.reason = us.response().reason;
  resp.http_version = "HTTP/2";
  resp.headers = us.response().headers;
  if (opts_.hooks) opts_.hooks->response_headers(f);
  co_return true;
}

awaitable<void> H2Front::relay_response_h2(h2::H2Stream& cs, h2::H2Stream& us, flow::Flow& f,
                                           Failure& failure) {
  flow::Response& resp = *f.response;
  bool end = us.body_ended();
  Status st = co_await cs.respond(resp, end);
  if (!st.ok()) {
    us.reset(h2::H2ErrorCode::cancel);
    failure.set(ErrorKind::client_closed, "client went away before the response: " + st.message());
    co_return;
  }
  while (!end) {
    auto chunk = co_await us.read();
    if (!chunk.ok()) {
      if (cs.failed()) {
        failure.set(ErrorKind::client_closed,
                    "client reset the stream during the response (" + close_code_text(cs) + ")");
        co_return;
      }
      auto code = us.close_code();
      cs.reset(code && *code != 0 ? static_cast<h2::H2ErrorCode>(*code)
                                  : h2::H2ErrorCode::internal_error);
      failure.set(ErrorKind::upstream_closed,
                  "upstream ended the stream before the response body was complete (" +
                      close_code_text(us) + "): " + chunk.status().message());
      co_return;
    }
    if (!chunk->has_value()) {
      resp.trailers = us.response().trailers;
      if (!resp.trailers.empty())
        st = co_await cs.write_trailers(resp.trailers);
      else
        st = co_await cs.write(std::string(), true);
      if (!st.ok()) failure.set(ErrorKind::client_closed, "client went away: " + st.message());
      break;
    }
    Capture{&resp.body, opts_.body_cap}(**chunk);
    st = co_await cs.write(std::move(**chunk), false);
    if (!st.ok()) {
      us.reset(h2::H2ErrorCode::cancel);
      failure.set(ErrorKind::client_closed, "client went away during the response (" +
                                                close_code_text(cs) + "): " + st.message());
      co_return;
    }
  }
  f.timing.response_ended = flow::now_ns();
}

void H2Front::note_upstream(flow::Flow& f, const UpConn& conn) {
  f.upstream_address = conn.address;
  f.timing.upstream_connected = conn.connected_ns;
  if (conn.tls) f.upstream_tls = conn.tls_info;
}

awaitable<bool> H2Front::send_h1(h2::H2Stream& cs, UpConn& conn, std::string_view bytes,
                                 Failure& failure) {
  error_code ec = co_await conn.write_all(asio::buffer(bytes), opts_.upstream_timeout);
  if (!ec) co_return true;
  bool to = ec == asio::error::timed_out;
  failure.set(to ? ErrorKind::upstream_timeout : ErrorKind::upstream_closed,
              to ? "sending the request upstream timed out"
                 : "upstream closed the connection while the request was sent");
  co_await respond_failure(cs, failure);
  co_return false;
}

awaitable<void> H2Front::forward_h1(h2::H2Stream& cs, flow::Flow& f, H1 conn, bool buffered,
                                    Failure& failure) {
  note_upstream(f, *conn);
  const flow::Request& cr = cs.request();
  // Framing toward the upstream: a known length when the body is known (buffered, or none),
  // the client's content-length when it sent one, else chunked (which also carries trailers).
  const bool no_body =
      buffered ? f.request.body.data.empty() && f.request.trailers.empty() : cs.body_ended();
  const auto client_length = cr.headers.get("content-length");
  bool chunked = false;
  std::string out;
  out.append(f.request.method).append(" ").append(f.request.path).append(" HTTP/1.1\r\n");
  out.append("Host: ").append(upstream_authority(cr)).append("\r\n");
  for (const auto& h : cr.headers) {
    if (net::is_hop_by_hop(h.name) || flow::iequals(h.name, "host") ||
        flow::iequals(h.name, "expect") || flow::iequals(h.name, "content-length"))
      continue;
    out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  if (buffered && f.request.trailers.empty()) {
    if (!no_body || method_expects_body(f.request.method) || client_length)
      out.append("Content-Length: ")
          .append(std::to_string(f.request.body.data.size()))
          .append("\r\n");
  } else if (no_body) {
    if (method_expects_body(f.request.method) || client_length) out.append("Content-Length: 0\r\n");
  } else if (client_length && !buffered) {
    out.append("Content-Length: ").append(*client_length).append("\r\n");
  } else {
    chunked = true;
    out.append("Transfer-Encoding: chunked\r\n");
  }
  out.append("\r\n");
  if (buffered) {
    if (chunked) {
      net::append_chunk(out, f.request.body.data);
      net::append_last_chunk(out, f.request.trailers);
    } else {
      out.append(f.request.body.data);
    }
  }
  bool sent = co_await send_h1(cs, *conn, out, failure);
  if (!sent) co_return;
  if (!buffered && !no_body) {
    for (;;) {
      auto chunk = co_await cs.read();
      if (!chunk.ok()) {
        failure.set(ErrorKind::client_closed,
                    "client ended the stream before the request body was complete (" +
                        close_code_text(cs) + "): " + chunk.status().message());
        co_return;  // the connection is dropped with the half-sent request
      }
      out.clear();
      if (!chunk->has_value()) {
        f.request.trailers = cr.trailers;
        if (!chunked) break;
        net::append_last_chunk(out, f.request.trailers);
      } else {
        Capture{&f.request.body, opts_.body_cap}(**chunk);
        if (chunked) {
          net::append_chunk(out, **chunk);
        } else {
          out = std::move(**chunk);
        }
      }
      sent = co_await send_h1(cs, *conn, out, failure);
      if (!sent) co_return;
      if (!chunk->has_value()) break;
    }
  }
  if (!buffered) {
    f.timing.request_ended = flow::now_ns();
    if (opts_.hooks) opts_.hooks->request_complete(f);
  }
  net::Http1Parser parser(net::Http1Parser::Kind::response, h1_limits());
  bool got = co_await receive_head_h1(cs, f, *conn, parser, false, failure);
  if (got) co_await relay_response_h1(cs, f, std::move(conn), parser, failure);
}

awaitable<bool> H2Front::receive_head_h1(h2::H2Stream& cs, flow::Flow& f, UpConn& conn,
                                         net::Http1Parser& parser, bool switching,
                                         Failure& failure) {
  const auto up_timeout = opts_.upstream_timeout;
  const bool is_head = f.request.method == "HEAD";
  for (;;) {
    parser.reset(is_head);
    size_t head_len = 0;
    for (;;) {
      if (!conn.in.empty()) {
        head_len = parser.parse_head(conn.in.data());
        if (head_len || parser.failed()) break;
      }
      auto [ptr, len] = conn.in.prepare(4096);
      if (len == 0) break;
      auto [rec, n] = co_await conn.read_some(asio::buffer(ptr, len), up_timeout);
      conn.in.commit(n);
      if (rec) {
        bool to = rec == asio::error::timed_out;
        failure.set(to ? ErrorKind::upstream_timeout : ErrorKind::upstream_closed,
                    to ? "upstream did not answer within " + ms_text(up_timeout)
                       : "upstream closed the connection without a complete response header");
        co_await respond_failure(cs, failure);
        co_return false;
      }
      if (f.timing.response_started == 0) f.timing.response_started = flow::now_ns();
    }
    if (parser.failed() || head_len == 0) {
      failure.set(ErrorKind::upstream_protocol,
                  "malformed response from upstream: " +
                      (parser.failed() ? parser.error_message() : std::string("header too large")));
      co_await respond_failure(cs, failure);
      co_return false;
    }
    int status = parser.head().status;
    conn.in.consume(head_len);
    if (status == 101 && !switching) {
      failure.set(ErrorKind::upstream_protocol,
                  "upstream switched protocols (101), which HTTP/2 cannot carry");
      co_await respond_failure(cs, failure);
      co_return false;
    }
    if (status >= 100 && status < 200 && status != 101) continue;
    break;
  }
  net::Http1Head& rh = parser.head();
  flow::Response& resp = f.response.emplace();
  resp.status = rh.status;
  resp.reason = rh.reason;
  resp.http_version = rh.version;
  resp.headers = std::move(rh.headers);
  if (opts_.hooks) opts_.hooks->response_headers(f);
  co_return true;
}

awaitable<void> H2Front::relay_response_h1(h2::H2Stream& cs, flow::Flow& f, H1 conn,
                                           net::Http1Parser& parser, Failure& failure) {
  const auto up_timeout = opts_.upstream_timeout;
  flow::Response& resp = *f.response;
  const bool end = parser.done() || parser.framing() == net::BodyFraming::none ||
                   (parser.framing() == net::BodyFraming::length && parser.content_length() == 0);
  flow::Response head;
  head.status = resp.status;
  head.headers = resp.headers;
  if (parser.framing() == net::BodyFraming::chunked) head.headers.remove("content-length");
  Status st = co_await cs.respond(head, end);
  if (!st.ok()) {
    failure.set(ErrorKind::client_closed, "client went away before the response: " + st.message());
    co_return;
  }
  bool upstream_open = true;
  if (!end) {
    std::string pending;
    for (;;) {
      size_t raw = parser.parse_body(conn->in.data(), [&](std::string_view d) {
        Capture{&resp.body, opts_.body_cap}(d);
        pending.append(d);
      });
      conn->in.consume(raw);
      if (parser.failed()) {
        failure.set(ErrorKind::upstream_protocol,
                    "malformed response body from upstream: " + parser.error_message());
        cs.reset(h2::H2ErrorCode::internal_error);
        co_return;
      }
      if (!pending.empty()) {
        st = co_await cs.write(std::move(pending), false);
        pending.clear();
        if (!st.ok()) {
          failure.set(ErrorKind::client_closed,
                      "client went away during the response (" + close_code_text(cs) + ")");
          co_return;
        }
      }
      if (parser.done()) break;
      auto [ptr, len] = conn->in.prepare(kBodyRead);
      auto [rec, n] = co_await conn->read_some(asio::buffer(ptr, len), up_timeout);
      conn->in.commit(n);
      if (rec) {
        if (rec == asio::error::timed_out) {
          failure.set(ErrorKind::upstream_timeout,
                      "upstream response body stalled for " + ms_text(up_timeout));
          cs.reset(h2::H2ErrorCode::internal_error);
          co_return;
        }
        parser.finish_eof();
        upstream_open = false;
        if (!parser.done()) {
          failure.set(ErrorKind::upstream_closed,
                      "upstream closed the connection before the end of the response body");
          cs.reset(h2::H2ErrorCode::internal_error);
          co_return;
        }
      }
    }
    resp.trailers = std::move(parser.trailers());
    if (!resp.trailers.empty())
      st = co_await cs.write_trailers(resp.trailers);
    else
      st = co_await cs.write(std::string(), true);
    if (!st.ok()) failure.set(ErrorKind::client_closed, "client went away: " + st.message());
  }
  f.timing.response_ended = flow::now_ns();
  // As many idle connections as streams may run at once (one each), within the pool bound.
  const size_t max_idle =
      std::min<size_t>(opts_.pool_per_upstream, h2_front_options(opts_).max_concurrent_streams);
  if (upstream_open && parser.keep_alive() && conn->in.empty() && !closing_ &&
      idle_h1_.size() < max_idle) {
    conn->idle_since = std::chrono::steady_clock::now();
    idle_h1_.push_back(std::move(conn));
  }
}

awaitable<void> H2Front::serve_connect(h2::H2Stream& cs, flow::Flow& f) {
  Failure failure;
  auto protocol = h2::connect_protocol(f.request);
  if (!protocol || !flow::iequals(*protocol, "websocket")) {
    // The front's destination is fixed (reverse mode, an intercepted CONNECT), as for the
    // HTTP/1.1 path, which refuses CONNECT there too.
    std::string m =
        protocol ? "extended CONNECT with :protocol '" + std::string(protocol->substr(0, 64)) +
                       "' is not supported; only websocket is (RFC 8441)"
                 : "plain CONNECT over HTTP/2 is not supported; only extended CONNECT with "
                   ":protocol websocket is (RFC 8441)";
    co_await respond_error(cs, 501, m);
    failure.set(ErrorKind::bad_request, m);
  } else {
    bool answered = false;  // a forward_websocket_* answered the client, whatever the outcome
    auto up = co_await acquire(failure);
    if (auto* h1 = std::get_if<H1>(&up)) {
      co_await forward_websocket_h1(cs, f, std::move(*h1), failure);
      answered = true;
    } else if (auto* session = std::get_if<H2>(&up)) {
      bool enabled = co_await (*session)->extended_connect_enabled();
      if (enabled) {
        co_await forward_websocket_h2(cs, f, *session, failure);
        answered = true;
      } else if (dest_.scheme == "https") {
        // As browsers do with an HTTP/2 server that lacks RFC 8441: the handshake goes over
        // HTTP/1.1, on a connection of its own whose ALPN offers only http/1.1.
        H1 conn = co_await connect(false, failure);
        if (conn) {
          co_await forward_websocket_h1(cs, f, std::move(conn), failure);
          answered = true;
        }
      } else {
        failure.set(ErrorKind::upstream_protocol,
                    "the upstream speaks only HTTP/2 (h2c) and did not enable extended CONNECT "
                    "(SETTINGS_ENABLE_CONNECT_PROTOCOL): the WebSocket cannot be forwarded");
      }
    }
    if (!answered) co_await respond_failure(cs, failure);
  }
  // Whatever the answer was, the stream carries nothing more from the client.
  cs.decline_request_body();
  record(f, failure);
}

awaitable<void> H2Front::forward_websocket_h1(h2::H2Stream& cs, flow::Flow& f, H1 conn,
                                              Failure& failure) {
  note_upstream(f, *conn);
  const flow::Request& cr = cs.request();
  // The HTTP/1.1 handshake this extended CONNECT stands for (RFC 8441 §5): the client's fields
  // but the pseudo-headers, ours for the upgrade and key, and only the permessage-deflate
  // offers (the one extension the recording reads), as on the HTTP/1.1 path.
  const std::string key = new_websocket_key();
  std::string out = "GET " + f.request.path + " HTTP/1.1\r\nHost: " + upstream_authority(cr) +
                    "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: " + key +
                    "\r\n";
  for (const auto& h : cr.headers) {
    if (h.name.empty() || h.name.front() == ':' || net::is_hop_by_hop(h.name)) continue;
    bool ours = false;
    for (std::string_view n :
         {"host", "content-length", "sec-websocket-key", "sec-websocket-extensions"})
      ours = ours || flow::iequals(h.name, n);
    if (!ours) out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  if (!cr.headers.contains("sec-websocket-version")) out.append("Sec-WebSocket-Version: 13\r\n");
  if (auto offers = deflate_offers(cr.headers); !offers.empty())
    out.append("Sec-WebSocket-Extensions: ").append(offers).append("\r\n");
  out.append("\r\n");
  bool sent = co_await send_h1(cs, *conn, out, failure);
  if (!sent) co_return;
  f.timing.request_ended = flow::now_ns();
  if (opts_.hooks) opts_.hooks->request_complete(f);

  net::Http1Parser parser(net::Http1Parser::Kind::response, h1_limits());
  bool got = co_await receive_head_h1(cs, f, *conn, parser, true, failure);
  if (!got) co_return;
  const flow::Response& resp = *f.response;
  if (resp.status != 101 && resp.status / 100 != 2) {
    // A refusal (401, 403, 426, ...) reaches the client as it is.
    co_await relay_response_h1(cs, f, std::move(conn), parser, failure);
    co_return;
  }
  // A 2xx to an extended CONNECT tells the client the WebSocket is open: only a real switch
  // may produce one.
  std::string why;
  if (resp.status != 101)
    why = "upstream answered the WebSocket handshake with " + std::to_string(resp.status) +
          " instead of 101 Switching Protocols";
  else if (!is_websocket_upgrade(resp.headers))
    why = "upstream answered 101 without Upgrade: websocket";
  else if (resp.headers.get("sec-websocket-accept").value_or("") != websocket_accept(key))
    why = "upstream's Sec-WebSocket-Accept does not match the key sent";
  if (!why.empty()) {
    failure.set(ErrorKind::upstream_protocol, why);
    co_await respond_failure(cs, failure);
    co_return;
  }
  WsUpstream up(*conn, std::string(conn->in.data()), opts_.upstream_timeout);
  conn->in.clear();
  co_await relay_websocket(cs, f, up, failure);
}

awaitable<void> H2Front::forward_websocket_h2(h2::H2Stream& cs, flow::Flow& f, H2 session,
                                              Failure& failure) {
  f.upstream_address = up_h2_info_.address;
  f.timing.upstream_connected = up_h2_info_.connected_ns;
  f.upstream_tls = up_h2_info_.tls;
  flow::Request up_req = f.request;  // :protocol included
  up_req.authority = upstream_authority(cs.request());
  std::string offers = deflate_offers(up_req.headers);
  up_req.headers.remove("sec-websocket-extensions");
  if (!offers.empty()) up_req.headers.add("sec-websocket-extensions", offers);
  auto opened = session->open(up_req, false);
  if (!opened.ok()) {
    failure.set(ErrorKind::upstream_closed,
                "the upstream HTTP/2 connection refused the request: " + opened.status().message());
    co_await respond_failure(cs, failure);
    co_return;
  }
  std::shared_ptr<h2::H2Stream> us = *opened;
  f.timing.request_ended = flow::now_ns();
  if (opts_.hooks) opts_.hooks->request_complete(f);
  bool refused = false;
  bool got = co_await receive_head_h2(cs, *us, f, false, refused, failure);
  if (got && f.response->status / 100 == 2) {
    WsUpstream up(*us, opts_.idle_timeout);
    co_await relay_websocket(cs, f, up, failure);
  } else if (got) {
    co_await relay_response_h2(cs, *us, f, failure);
  }
  us->reset(h2::H2ErrorCode::cancel);  // our side was never ended: close the stream
}

awaitable<void> H2Front::relay_websocket(h2::H2Stream& cs, flow::Flow& f, WsUpstream& up,
                                         Failure& failure) {
  // The client's answer is 200 (RFC 8441 §5) with the upstream's fields but those of an
  // HTTP/1.1 switch (connection-specific ones are dropped by respond()).
  flow::Response head;
  head.status = 200;
  for (const auto& h : f.response->headers)
    if (!flow::iequals(h.name, "sec-websocket-accept") && !flow::iequals(h.name, "content-length"))
      head.headers.add(h.name, h.value);
  Status st = co_await cs.respond(head, false);
  if (!st.ok()) {
    up.abort();
    failure.set(ErrorKind::client_closed,
                "client went away before the WebSocket was accepted: " + st.message());
    co_return;
  }
  WebSocketRelay relay(ex_, cs, up, f, opts_, failure);
  co_await relay.run();
  f.timing.response_ended = flow::now_ns();
}

awaitable<Status> serve_h2(std::unique_ptr<h2::ByteStream> client, std::string initial_bytes,
                           H2Destination destination, flow::Flow base, H2FrontEnv env) {
  auto ex = co_await asio::this_coro::executor;
  const RecorderOptions& options = *env.options;
  auto started = std::move(env.started);
  env.started = nullptr;
  auto front =
      std::make_shared<H2Front>(ex, std::move(destination), std::move(base), std::move(env));
  auto session = h2::H2ServerSession::create(
      ex, std::move(client),
      [front](std::shared_ptr<h2::H2Stream> s) { return H2Front::handle(front, std::move(s)); },
      h2_front_options(options), std::move(initial_bytes));
  if (started) started(session);
  Status st = co_await session->run();
  front->close_upstreams();
  co_return st;
}

}  // namespace retake::record
