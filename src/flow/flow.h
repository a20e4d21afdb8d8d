// retake::flow: the flow model. One exchange (request, response or error, timings, connection
// and TLS facts, WebSocket messages) as plain values.
//
// Must not depend on anything but the standard library: no I/O, no sockets, no storage.
// Every other module speaks in these types. Field names follow ARCHITECTURE.md's vocabulary:
// "client" is whoever talks to us, "upstream" the real server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace retake::flow {

// One header field exactly as seen on the wire: name case kept, value untouched.
struct Header {
  std::string name;
  std::string value;
  bool operator==(const Header&) const = default;
};

// An ordered header list that keeps case and duplicates (as HTTP/1 sends them; HTTP/2
// pseudo-headers are not stored here but in Request/Response fields).
// Look-ups compare names case-insensitively.
class Headers {
 public:
  Headers() = default;
  Headers(std::initializer_list<Header> init) : fields_(init) {}

  void add(std::string name, std::string value);
  // Replaces every field with this name by one field (appended at the first one's place).
  void set(std::string_view name, std::string value);
  // Removes every field with this name; returns how many were removed.
  size_t remove(std::string_view name);
  // The first value with this name.
  std::optional<std::string_view> get(std::string_view name) const;
  // All values with this name, in order.
  std::vector<std::string_view> get_all(std::string_view name) const;
  bool contains(std::string_view name) const { return get(name).has_value(); }

  const std::vector<Header>& fields() const { return fields_; }
  std::vector<Header>& fields() { return fields_; }
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  auto begin() const { return fields_.begin(); }
  auto end() const { return fields_.end(); }
  bool operator==(const Headers&) const = default;

 private:
  std::vector<Header> fields_;
};

// ASCII case-insensitive equality, for header names and schemes.
bool iequals(std::string_view a, std::string_view b) noexcept;

// A message body as recorded. `data` holds at most the stored-body cap; `size` is how many
// bytes went over the wire (after transfer decoding, before any content decoding).
struct Body {
  std::string data;
  uint64_t size = 0;       // bytes seen on the wire; >= data.size()
  bool truncated = false;  // true when data holds only the first bytes (size > data.size())
  bool operator==(const Body&) const = default;
};

struct Request {
  std::string method;        // "GET"; "CONNECT" for tunnels
  std::string scheme;        // "http" or "https" ("" for a tunnel)
  std::string authority;     // "host:port" or "host" as the client named it
  std::string path;          // origin-form target: "/a?b=c"; "" for CONNECT
  std::string http_version;  // "HTTP/1.1", "HTTP/1.0", "HTTP/2"
  Headers headers;
  Body body;
  Headers trailers;
  bool operator==(const Request&) const = default;

  // The host part of `authority` (without port, without IPv6 brackets).
  std::string host() const;
  // The port part of `authority`, or the scheme's default (80/443).
  uint16_t port() const;
  // scheme://authority/path
  std::string url() const;
};

struct Response {
  int status = 0;
  std::string reason;
  std::string http_version;
  Headers headers;
  Body body;
  Headers trailers;
  bool operator==(const Response&) const = default;
};

// Why a flow failed. One value per kind of failure, each a one-line meaning.
enum class ErrorKind : uint16_t {
  none = 0,
  bad_request,          // the client sent malformed HTTP (answered 400)
  headers_too_large,    // the client's header block exceeded the limit (answered 431)
  body_too_large,       // a body exceeded a hard limit that forwarding could not stream past
  client_timeout,       // the client was idle or too slow
  client_closed,        // the client went away mid-exchange
  upstream_unreachable, // connect/resolve to the upstream failed (answered 502)
  upstream_timeout,     // the upstream did not answer in time (answered 504)
  upstream_closed,      // the upstream closed mid-exchange
  upstream_protocol,    // the upstream sent malformed HTTP (answered 502)
  tls_handshake_failed, // the TLS handshake with the client failed (pinning, bad ClientHello)
  upstream_tls_failed,  // the upstream TLS handshake or certificate verification failed (502)
  smuggling_rejected,   // ambiguous framing (CL+TE, conflicting CL, bad chunk) rejected (400)
  policy,               // refused by configuration (offline miss, blocked host)
  internal,             // a bug in retake
};
const char* error_kind_name(ErrorKind kind) noexcept;
std::optional<ErrorKind> error_kind_from_name(std::string_view name) noexcept;

struct Error {
  ErrorKind kind = ErrorKind::none;
  std::string message;
  bool operator==(const Error&) const = default;
};

// Nanoseconds since the Unix epoch; 0 means "did not happen".
struct Timing {
  int64_t client_connected = 0;
  int64_t request_started = 0;
  int64_t request_ended = 0;
  int64_t upstream_connected = 0;
  int64_t response_started = 0;
  int64_t response_ended = 0;
  bool operator==(const Timing&) const = default;
};

// TLS facts of one side of the flow. `present` false means that side was plain.
struct TlsInfo {
  bool present = false;
  std::string sni;
  std::string alpn;
  std::string version;  // "TLSv1.3"
  std::string cipher;
  std::string peer_subject;  // upstream side: the server certificate's subject
  std::string peer_issuer;
  bool operator==(const TlsInfo&) const = default;
};

struct WebSocketMessage {
  bool from_client = false;
  uint8_t opcode = 1;  // 1 text, 2 binary, 8 close, 9 ping, 10 pong
  std::string payload;
  int64_t timestamp = 0;  // ns since epoch
  // The payload was cut at the body cap (the message was longer; the relay forwarded it all).
  bool truncated = false;
  // It crossed the wire compressed (permessage-deflate); `payload` is the inflated message.
  bool compressed = false;
  bool operator==(const WebSocketMessage&) const = default;
};

struct WebSocket {
  std::vector<WebSocketMessage> messages;
  uint16_t close_code = 0;  // 0: no close frame seen
  std::string close_reason;
  bool closed_by_client = false;
  bool operator==(const WebSocket&) const = default;
};

enum class FlowKind : uint8_t {
  http = 0,    // a request and (usually) a response
  tunnel = 1,  // an opaque CONNECT tunnel or passed-through TLS: byte counts only
  tls_failed = 2,  // a client connection whose TLS handshake failed: no request at all
};

// One exchange. Plain value; copyable; no invariants beyond the field comments.
struct Flow {
  uint64_t id = 0;       // time-ordered, unique within a store; assigned by the store if 0
  std::string session;   // the session it was recorded or imported into
  std::string run;       // non-empty for flows made by a replay run
  uint64_t origin = 0;   // for replayed flows: the id of the flow it replays
  FlowKind kind = FlowKind::http;
  std::string mode;      // how it was captured: "explicit", "reverse", "transparent", "import", "replay"

  std::string client_address;    // "ip:port" of the client
  std::string upstream_address;  // "ip:port" of the upstream actually connected, if any

  Request request;
  std::optional<Response> response;
  std::optional<Error> error;
  Timing timing;
  TlsInfo client_tls;
  TlsInfo upstream_tls;
  std::optional<WebSocket> websocket;

  uint64_t bytes_from_client = 0;  // wire bytes, for tunnels and accounting
  uint64_t bytes_from_upstream = 0;

  std::string marked;  // mitmproxy-style mark: "" unmarked, otherwise a marker (":default:")
  std::string comment;
  std::vector<std::string> tags;

  bool operator==(const Flow&) const = default;

  // Response end (or last known time) minus request start, in ns; 0 when unknown.
  int64_t duration() const;
};

// Somewhere flows go when complete (the store writer, a test collector, a stream to a gRPC
// client). offer() is called from network threads: it must not block on I/O and must be
// thread-safe. It returns false when the flow was not accepted (queue full); the caller counts it.
class FlowSink {
 public:
  virtual ~FlowSink() = default;
  virtual bool offer(Flow&& flow) = 0;
};

// A listening address as users type it: "HOST:PORT", "[v6]:PORT", ":PORT" or "PORT" (the host
// then defaults to 127.0.0.1, loopback). nullopt when malformed or the port is over 65535.
// One grammar for every --listen / --control option and the gRPC API.
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};
std::optional<ListenAddress> parse_listen_address(std::string_view text);

// Nanoseconds since the Unix epoch, from the system clock.
int64_t now_ns() noexcept;

}  // namespace retake::flow
