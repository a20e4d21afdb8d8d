// retake::h2: HTTP/2 sessions on nghttp2 for both sides of the proxy, speaking the
// protocol-neutral flow::Request / flow::Response so the recorder can translate h1<->h2.
// - H2ServerSession: the client-facing side (nghttpx's "upstream"). Every request stream is
//   handed to a handler coroutine as an H2Stream.
// - H2ClientSession: toward the real server. open() starts a request stream; fetch() is the
//   buffered round trip.
//
// Shape: one pump coroutine per session (run()) reads bytes -> nghttp2_session_mem_recv and
// drains nghttp2_session_mem_send -> writes. nghttp2's C callbacks never block and never
// co_await: they only fill per-stream buffers and wake the coroutines that drain them.
//
// Depends on src/flow, Boost.Asio and (privately) nghttp2: no nghttp2 type appears here.
// Must not depend on the proxy, the store or any particular transport (see byte_stream.h).
//
// Threading: a session, its handlers and every H2Stream call run on the session's executor,
// which must serialize them (a strand, or an io_context run by one thread). Nothing here locks.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "flow/flow.h"
#include "flow/status.h"
#include "net/h2/byte_stream.h"

namespace retake::h2 {

namespace detail {
class SessionCore;
}

// The connection preface an HTTP/2 client sends first (RFC 9113 §3.4): what a listener looks
// for to recognize a prior-knowledge (h2c) client.
inline constexpr std::string_view kConnectionPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// The :protocol pseudo-header of an extended CONNECT (RFC 8441), e.g. "websocket". A request
// keeps it as the header field ":protocol" in Request::headers (no other field of flow::Request
// could hold it, and a flow records what the client sent); a server stream's request() has it
// there, and H2ClientSession::open() sends it back as the pseudo-header. nullopt for any other
// request, including a plain CONNECT.
inline constexpr std::string_view kProtocolField = ":protocol";
std::optional<std::string_view> connect_protocol(const flow::Request& request);

// HTTP/2 error codes (RFC 9113 §7), as sent in RST_STREAM and GOAWAY.
enum class H2ErrorCode : uint32_t {
  no_error = 0x0,             // graceful
  protocol_error = 0x1,       // the peer broke the protocol
  internal_error = 0x2,       // a bug or an unexpected local failure
  flow_control_error = 0x3,   // a window was overrun
  settings_timeout = 0x4,     // SETTINGS not acknowledged in time
  stream_closed = 0x5,        // a frame arrived for a half-closed stream
  frame_size_error = 0x6,     // a frame had an invalid size
  refused_stream = 0x7,       // not processed at all: safe to retry
  cancel = 0x8,               // no longer needed
  compression_error = 0x9,    // HPACK state broken
  connect_error = 0xa,        // a CONNECT tunnel failed
  enhance_your_calm = 0xb,    // the peer is abusive (floods, rapid reset)
  inadequate_security = 0xc,  // TLS too weak
  http_1_1_required = 0xd,    // retry over HTTP/1.1
};
// "CANCEL", "REFUSED_STREAM", ... ("UNKNOWN(0x..)" for other values).
std::string h2_error_code_name(uint32_t code);

// Limits and timeouts of one session. Plain struct; every field says its default.
struct H2Options {
  // SETTINGS_MAX_CONCURRENT_STREAMS we advertise. A client that opens more before our SETTINGS
  // arrive gets RST_STREAM(REFUSED_STREAM); after it acknowledged them, nghttp2 treats it as a
  // connection PROTOCOL_ERROR. Default: 100.
  uint32_t max_concurrent_streams = 100;
  // SETTINGS_INITIAL_WINDOW_SIZE we advertise: how many unread body bytes one stream may have
  // buffered here. Windows reopen only as read() hands bytes out. Default: 256 KiB.
  uint32_t initial_window_size = 256u << 10;
  // Our connection-level receive window: bounds the unread body bytes of the whole session.
  // Default: 4 MiB.
  uint32_t connection_window_size = 4u << 20;
  // SETTINGS_MAX_HEADER_LIST_SIZE we advertise, and the cap on decoded header bytes (name +
  // value + 32 per field, RFC 9113) of one received header block. A request over it is answered
  // 431 without reaching the handler; a response or trailers over it reset the stream.
  // Default: 64 KiB.
  uint32_t max_header_list_size = 64u << 10;
  // Raw (compressed) bytes of one HEADERS+CONTINUATION sequence, and how many CONTINUATION
  // frames it may have, before the session is ended with ENHANCE_YOUR_CALM (CONTINUATION flood).
  // Defaults: 256 KiB, 64.
  size_t max_header_block_bytes = 256u << 10;
  uint32_t max_continuation_frames = 64;
  // Largest header block we send (nghttp2_option_set_max_send_header_block_length).
  // Default: 64 KiB.
  size_t max_send_header_block_length = 64u << 10;
  // Our HPACK encoder's dynamic table cap, whatever the peer allows. Default: 4096.
  size_t max_deflate_dynamic_table_size = 4096;
  // Server sessions: advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441), so clients may send
  // extended CONNECT (:method CONNECT with :protocol, :scheme and :path; see connect_protocol()).
  // Without it nghttp2 refuses a request carrying :protocol (RST_STREAM PROTOCOL_ERROR) before
  // any handler sees it. Default: false.
  bool enable_connect_protocol = false;
  // Body bytes queued for sending across all streams of the session; write() waits while it is
  // reached (backpressure toward the producer). Default: 4 MiB.
  size_t max_buffered_send_bytes = 4u << 20;
  // Body bytes queued for sending on one stream before write() waits. Default: 256 KiB.
  size_t max_stream_send_queue = 256u << 10;
  // Rapid-reset guard (CVE-2023-44487): a token bucket of RST_STREAMs received from the peer,
  // `reset_burst` deep, refilled at `reset_rate` per second. Empty bucket: GOAWAY
  // ENHANCE_YOUR_CALM. Server sessions only. Defaults: 1000, 33 (nghttp2 1.57's values).
  uint32_t reset_burst = 1000;
  double reset_rate = 33.0;
  // Zero-length DATA frames without END_STREAM tolerated per session (empty-frame flood,
  // CVE-2019-9518). Default: 1000.
  uint32_t max_empty_data_frames = 1000;
  // A session with no open stream and no bytes received for this long is closed. Default: 60 s.
  std::chrono::milliseconds idle_timeout{60'000};
  // Longest wait of one H2Stream read()/write()/wait_response() call. Default: 60 s.
  std::chrono::milliseconds stream_timeout{60'000};
  // Longest transport write. Default: 30 s.
  std::chrono::milliseconds write_timeout{30'000};
  // After shutdown(), in-flight streams get this long to finish before the transport is closed.
  // Default: 10 s.
  std::chrono::milliseconds shutdown_grace{10'000};
};

// Counters of one session, for logs and tests.
struct H2SessionStats {
  uint64_t streams = 0;          // streams opened (server: requests seen; client: submitted)
  uint64_t resets_received = 0;  // RST_STREAM frames from the peer
  uint64_t resets_sent = 0;      // RST_STREAM frames we sent (refusals included)
  uint64_t bytes_in = 0;         // transport bytes read
  uint64_t bytes_out = 0;        // transport bytes written
  bool goaway_received = false;
  bool goaway_sent = false;
  bool enhance_your_calm = false;  // we ended the session for abuse
};

// One exchange on a session, from either side. Shared: the session keeps it while the stream is
// open and the handler / opener holds it as long as it likes. All calls on the session's
// executor. Failures are Status values: unavailable when the peer reset the stream or the
// connection went away (the message names the HTTP/2 error code), timeout after
// H2Options::stream_timeout, failed_precondition for calls out of order.
class H2Stream {
 public:
  ~H2Stream();
  H2Stream(const H2Stream&) = delete;
  H2Stream& operator=(const H2Stream&) = delete;

  // The HTTP/2 stream id (0 for a client request not yet sent).
  int32_t id() const;
  // Server: the request as received: method/scheme/authority/path from the pseudo-headers,
  // headers in order and case as received (HTTP/2 lowercases names), http_version "HTTP/2";
  // body and trailers are filled by read_all() (read() fills body.size and trailers only).
  // Client: the request as submitted to open().
  flow::Request& request();
  // Server: the head passed to respond(). Client: the final response once wait_response()
  // succeeded (1xx heads are skipped); body/trailers as for request().
  flow::Response& response();

  // The next body chunk received, std::nullopt at the end of the body (the trailers, if any, are
  // then in request().trailers / response().trailers). Each chunk handed out reopens the peer's
  // flow-control window by its size. Reading goes on while respond()/write() send on the same
  // stream (full duplex: a CONNECT tunnel, a bidirectional gRPC call).
  boost::asio::awaitable<Result<std::optional<std::string>>> read();
  // As read(), waiting at most `timeout` instead of H2Options::stream_timeout. A timeout leaves
  // the stream as it was: the caller may read again (a relay whose idleness is judged over both
  // directions).
  boost::asio::awaitable<Result<std::optional<std::string>>> read(
      std::chrono::milliseconds timeout);
  // Reads the whole remaining body into request().body / response().body, keeping at most
  // `cap` bytes (Body::truncated beyond, Body::size counts all).
  boost::asio::awaitable<Status> read_all(size_t cap);

  // Client: waits for the final response head.
  boost::asio::awaitable<Status> wait_response();

  // Server: sends the response head (:status + headers; connection-specific fields such as
  // Connection, Transfer-Encoding, Keep-Alive are dropped, names lowercased). end_stream: no
  // body follows. failed_precondition when called twice or on a client stream.
  boost::asio::awaitable<Status> respond(const flow::Response& head, bool end_stream);
  // Both sides: queues body bytes (after respond()/open() without end_stream). Waits while the
  // stream's or the session's send queue is full (flow control backpressure).
  boost::asio::awaitable<Status> write(std::string data, bool end_stream);
  // Both sides: ends the body with trailers (a HEADERS frame with END_STREAM), after any
  // queued data.
  boost::asio::awaitable<Status> write_trailers(flow::Headers trailers);
  // Resets the stream (RST_STREAM `code`) unless it is closed already; later reads and writes
  // fail. Unread body bytes are dropped and their window returned to the connection.
  void reset(H2ErrorCode code = H2ErrorCode::cancel);
  // Server: the rest of the request body is not wanted. Once the response has ended (its
  // END_STREAM sent, now or later), RST_STREAM(NO_ERROR) asks the client to stop sending it
  // (RFC 9113 §8.1) and a pending read() fails; unlike reset(), queued response bytes are sent
  // first. Does nothing once the client has ended its body or the stream is closed.
  void decline_request_body();

  // True once the peer ended its body (END_STREAM received) and read() has handed out every
  // chunk: read() would return std::nullopt at once. A server handler sees it true on entry for
  // a request without a body (END_STREAM on its HEADERS), before it reads anything.
  bool body_ended() const;
  // True once the stream has failed (reset by either side, or the connection ended first).
  bool failed() const;
  // The error code the stream was closed with by the peer or by us, once closed.
  std::optional<uint32_t> close_code() const;

 private:
  friend class detail::SessionCore;
  struct State;
  H2Stream(std::shared_ptr<detail::SessionCore> core);
  std::shared_ptr<detail::SessionCore> core_;
  std::unique_ptr<State> s_;
};

// Serves one stream: called on the session's executor once the request headers are complete.
// The handler should respond (or reset); if it returns without ending the response, the stream
// is reset with INTERNAL_ERROR. Exceptions thrown by it reset the stream too.
using H2Handler = std::function<boost::asio::awaitable<void>(std::shared_ptr<H2Stream>)>;

// The client-facing side of one HTTP/2 connection.
class H2ServerSession {
 public:
  // `executor` must serialize (see the header comment); `stream` is the connected transport;
  // `initial_bytes` are bytes already read from it (the client preface a listener peeked at).
  static std::shared_ptr<H2ServerSession> create(boost::asio::any_io_executor executor,
                                                 std::unique_ptr<ByteStream> stream,
                                                 H2Handler handler, H2Options options = {},
                                                 std::string initial_bytes = {});
  ~H2ServerSession();

  // Pumps the connection until it ends. ok after a clean end (GOAWAY exchanged, or the client
  // closed with no stream open); unavailable when the transport failed or the client vanished
  // mid-stream; resource_exhausted when we ended it for abuse (ENHANCE_YOUR_CALM); parse_error
  // when the client broke the protocol; timeout when idle. Streams still open then fail.
  // Call once.
  boost::asio::awaitable<Status> run();
  // Graceful shutdown: GOAWAY(NO_ERROR, last stream processed), let in-flight streams finish
  // for up to H2Options::shutdown_grace, then close. Idempotent.
  void shutdown();
  H2SessionStats stats() const;

 private:
  explicit H2ServerSession(std::shared_ptr<detail::SessionCore> core) : core_(std::move(core)) {}
  std::shared_ptr<detail::SessionCore> core_;
};

// One HTTP/2 connection toward an upstream server (prior knowledge or after ALPN "h2").
class H2ClientSession {
 public:
  static std::shared_ptr<H2ClientSession> create(boost::asio::any_io_executor executor,
                                                 std::unique_ptr<ByteStream> stream,
                                                 H2Options options = {});
  ~H2ClientSession();

  // Pumps the connection until it ends (see H2ServerSession::run). Must be running (spawned)
  // for any stream to make progress.
  boost::asio::awaitable<Status> run();

  // Starts a request: method/scheme/authority/path become pseudo-headers (authority falls
  // back to the Host header; a plain CONNECT sends :authority only; an extended CONNECT, whose
  // headers hold ":protocol", sends :protocol, :scheme, :authority and :path), headers are sent
  // lowercased without connection-specific fields (Host, Connection, Keep-Alive,
  // Proxy-Connection, Transfer-Encoding, Upgrade, TE except "trailers"). An extended CONNECT
  // needs the server's consent first (extended_connect_enabled()). end_stream: no body follows;
  // otherwise send it with write()/write_trailers().
  // `request.body` is ignored. unavailable once the session is shutting down, received GOAWAY
  // or ended; nghttp2 queues requests beyond the server's concurrent-stream limit itself.
  Result<std::shared_ptr<H2Stream>> open(const flow::Request& request, bool end_stream);

  // The buffered round trip: open(), write the body and trailers, read the whole response
  // (body capped at `body_cap`, see H2Stream::read_all).
  boost::asio::awaitable<Result<flow::Response>> fetch(flow::Request request,
                                                       size_t body_cap = 16u << 20);

  // Whether the server allows extended CONNECT (it sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1,
  // RFC 8441). Waits for the server's first SETTINGS frame when it has not arrived yet (a session
  // just opened), at most H2Options::stream_timeout; false when it does not come or the session
  // ends first.
  boost::asio::awaitable<bool> extended_connect_enabled();
  // True while open() may succeed: no GOAWAY received or sent, session not ended.
  bool accepting() const;
  // Graceful: no new requests; GOAWAY(NO_ERROR) is sent; the session ends when the in-flight
  // streams are done (or after H2Options::shutdown_grace). Idempotent.
  void shutdown();
  H2SessionStats stats() const;

 private:
  explicit H2ClientSession(std::shared_ptr<detail::SessionCore> core) : core_(std::move(core)) {}
  std::shared_ptr<detail::SessionCore> core_;
};

}  // namespace retake::h2
