// retake::record h2 front: serves one client connection that speaks HTTP/2 (ALPN "h2" after TLS,
// or the h2c prior-knowledge preface) for the recorder. Every stream becomes one flow; each is
// forwarded to the connection's fixed destination over HTTP/2 (ALPN "h2" with a TLS upstream,
// prior knowledge with a plain upstream when the client itself spoke h2c) or HTTP/1.1 (whatever
// else the upstream offers), so h1<->h2 translation works both ways. Bodies stream through in
// both directions as they arrive; trailers are relayed and recorded (gRPC's grpc-status);
// the HTTP version seen on each side is kept (Request::http_version: the client's "HTTP/2",
// Response::http_version: the upstream's).
//
// WebSocket over HTTP/2 (RFC 8441): the front advertises SETTINGS_ENABLE_CONNECT_PROTOCOL and
// forwards an extended CONNECT with :protocol websocket as an HTTP/1.1 upgrade (the upstream's
// 101 checked, answered 200 to the client) or, to an HTTP/2 upstream that allows it, as the same
// extended CONNECT; a TLS upstream speaking HTTP/2 without it gets HTTP/1.1 on a connection of
// its own, an h2c one is a 502. The stream's DATA then carries the WebSocket frames both ways,
// recorded into Flow::websocket as on HTTP/1.1 (Request::http_version "HTTP/2", the upstream's
// 101 or 200 as the response). Plain CONNECT and other protocols are answered 501.
//
// Failures follow the HTTP/1.1 path's vocabulary: an unreachable upstream answers 502 with an
// upstream_unreachable flow; an upstream that resets a stream before its head answers 502
// (upstream_closed, naming the HTTP/2 error code), after it resets the client's stream with the
// same code; a client that resets its stream is a client_closed flow; protocol abuse is
// handled by the session (h2::H2Options: rapid reset, header and CONTINUATION floods, stream
// limits).
//
// Depends on src/net/h2, src/net (HTTP/1 parser), src/net/tls and the recorder's public types.
// Runs on the connection's worker executor (one thread), as the HTTP/1.1 path does.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>

#include "flow/flow.h"
#include "flow/status.h"
#include "net/h2/byte_stream.h"
#include "net/h2/h2_session.h"
#include "record/recorder.h"

namespace retake::tls {
class UpstreamTlsContext;
}

namespace retake::record {

// Where the streams of one HTTP/2 client connection go.
struct H2Destination {
  std::string scheme;     // "http" or "https"
  std::string authority;  // recorded as Request::authority
  std::string host;       // connected to
  uint16_t port = 0;
  std::string sni;            // https: sent as SNI and verified
  bool rewrite_host = false;  // reverse mode: :authority/Host sent upstream is `authority`
  // Plain upstream: speak HTTP/2 with prior knowledge (else HTTP/1.1).
  bool h2c = false;
};

// What the front needs from the recorder that owns the connection.
struct H2FrontEnv {
  const RecorderOptions* options = nullptr;
  // https upstreams: the recorder's client context, made on first use (an error says why).
  std::function<Result<tls::UpstreamTlsContext*>()> upstream_tls;
  std::function<void(flow::Flow&&)> offer;          // a finished flow (never blocks)
  std::function<void()> upstream_connected;         // counts a new upstream connection
  std::function<void()> answered;                   // counts a responder answer
  // Called once with the session before it runs, so the owner can shut it down gracefully.
  std::function<void(std::shared_ptr<h2::H2ServerSession>)> started;
  // A TCP connection to the destination made already (a CONNECT's, dialed before its client
  // said it speaks h2): the first upstream connection takes it instead of dialing again.
  // Default: none.
  std::shared_ptr<boost::asio::ip::tcp::socket> connected;
  std::string connected_address;  // its "ip:port"
  int64_t connected_ns = 0;       // when it was established
};

// Limits of the client-facing session, from the recorder's options.
h2::H2Options h2_front_options(const RecorderOptions& options);

// Serves the client connection `client` (bytes already read from it in `initial_bytes`) until
// it ends; returns the session's run() status. `base` is the flow template (session, mode,
// client address, client TLS facts, connect time).
boost::asio::awaitable<Status> serve_h2(std::unique_ptr<h2::ByteStream> client,
                                        std::string initial_bytes, H2Destination destination,
                                        flow::Flow base, H2FrontEnv env);

// Starts an HTTP/2 session toward an upstream over `stream`, its pump spawned on `executor`,
// with the recorder's limits: header lists up to max_header_bytes, upstream_timeout for each
// stream wait and write, closed after pool_idle_timeout without streams.
std::shared_ptr<h2::H2ClientSession> start_upstream_h2(boost::asio::any_io_executor executor,
                                                       std::unique_ptr<h2::ByteStream> stream,
                                                       const RecorderOptions& options);

// The HTTP/2 error code `stream` was closed with ("CANCEL"), or "no error code".
std::string close_code_text(const h2::H2Stream& stream);

// The HTTP/2 connection preface a prior-knowledge (h2c) client sends first.
inline constexpr std::string_view kH2Preface = h2::kConnectionPreface;

}  // namespace retake::record
