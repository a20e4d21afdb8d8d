// retake::record: the recording proxy. Listens (explicit, reverse or transparent mode),
// forwards every exchange to the upstream while streaming bodies through, and hands each
// completed flow to a FlowSink (normally the store's FlowWriter).
//
// Depends on src/net (sockets, codecs, pools), src/flow and, through the sink, nothing else:
// the recorder never waits on the disk. Usable from the CLI, the gRPC daemon and C++ tests:
// start() returns the bound address, stop() drains.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"

namespace retake::record {

// What is recorded, per mode:
// - explicit: Request::authority is the authority of the absolute-form target (or of CONNECT);
//   the Host header is forwarded as the client sent it.
// - reverse: Request::scheme/authority name the configured upstream (where the request really
//   went, so a replay re-issues it there); the Host header sent upstream is rewritten to the
//   upstream's authority (mitmproxy's default), while Request::headers keeps the Host the
//   client sent.
// - transparent: the recorder connects to the original destination address; Request::authority
//   is the client's Host header (or that address when Host is absent).
// In every mode Request::headers/Response::headers are the fields exactly as the client/upstream
// sent them (order, case, duplicates, hop-by-hop fields included); what is forwarded omits the
// hop-by-hop fields (RFC 9110 §7.6.1). "Expect: 100-continue" is answered by the recorder itself
// (as mitmproxy does) and not forwarded.
//
// Failures answer the client with a one-line text/plain body ("retake: <what went wrong>") and
// are recorded as flows with Flow::error set: malformed request 400 (bad_request), header block
// over max_header_bytes 431 (headers_too_large), ambiguous framing 400 (smuggling_rejected),
// upstream connect/resolve failure 502 (upstream_unreachable; upstream_timeout when the connect
// deadline passed), no response within upstream_timeout 504 (upstream_timeout), malformed
// response 502 (upstream_protocol). Once response bytes have reached the client, a failure
// just closes the connection (upstream_closed, client_closed, ...). A client slower than
// client_read_timeout mid-request is closed (client_timeout); one idle between requests is
// closed without a flow.
//
// TLS and tunnels (explicit mode): after "200 Connection established" the recorder looks at the
// client's first bytes. A TLS ClientHello is intercepted: TLS is terminated with a leaf
// certificate minted by retake's CA for the client's SNI (the CONNECT host when there is none),
// the upstream is reached over TLS (verified against the system roots plus upstream_ca_file,
// host name checked, unless insecure_upstream) and each request inside becomes an ordinary flow
// with scheme "https" and Flow::client_tls / Flow::upstream_tls filled. Anything else is served
// as plain HTTP inside the tunnel (scheme "http"). A CONNECT host matched by ignore_hosts (or
// not matched by allow_hosts) is relayed undecrypted as one FlowKind::tunnel flow with byte
// counts. A client whose handshake fails (it rejects our certificate, aborts, or sends a
// malformed ClientHello) becomes a FlowKind::tls_failed flow with error tls_handshake_failed
// and OpenSSL's words for the alert. A failed upstream handshake or verification answers 502
// and records upstream_tls_failed with the reason.
// WebSocket: a request with "Upgrade: websocket" is forwarded with its upgrade fields; after a
// 101 both directions are relayed byte for byte while their frames are parsed into
// Flow::websocket; the flow is offered when the connection closes. HTTP/2 clients open a
// WebSocket with an extended CONNECT (RFC 8441) on one stream; see h2_front.h.
enum class Mode {
  explicit_proxy,  // clients send absolute-form requests and CONNECT
  reverse,         // every request goes to RecorderOptions::upstream
  transparent,     // original destination from SO_ORIGINAL_DST (iptables REDIRECT); a
                   // connection that was not redirected is answered 502 with an error flow
};

struct RecorderOptions {
  Mode mode = Mode::explicit_proxy;
  // Reverse mode: "http://host[:port]" or "https://host[:port]" (upstream TLS with SNI = host,
  // verified as for intercepted connections). Required for reverse.
  std::string upstream;
  // Address to listen on. Default: 127.0.0.1:8080. Port 0 picks an ephemeral port.
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8080;
  // Session the flows are recorded into. Default: "default".
  std::string session = "default";
  // Network threads (workers; each serves its share of client connections from accept to
  // close). Default: 0 = std::thread::hardware_concurrency().
  unsigned threads = 0;
  // Body bytes stored per message; the rest is forwarded but not stored (Body::truncated).
  // Default: 16 MiB.
  size_t body_cap = 16u << 20;
  // Largest request/response header block accepted. Default: 64 KiB (client gets 431).
  size_t max_header_bytes = 64u << 10;
  // A client connection with no request in progress is closed after this. Default: 60 s.
  std::chrono::milliseconds idle_timeout{60'000};
  // Limit for reading one request's header block, for each body read and for each write to
  // the client (a client that stops reading). Default: 30 s.
  std::chrono::milliseconds client_read_timeout{30'000};
  // Connecting to the upstream. Default: 10 s (then 502).
  std::chrono::milliseconds connect_timeout{10'000};
  // Waiting for the upstream's response headers / each body read. Default: 60 s (then 504).
  std::chrono::milliseconds upstream_timeout{60'000};
  // Idle pooled upstream connections kept per upstream and per network thread (each thread
  // has its own pool, as nginx workers do). Default: 64.
  size_t pool_per_upstream = 64;
  // Most client connections open at once; further ones wait in the listen backlog.
  // Default: 10000.
  size_t max_connections = 10'000;
  // A pooled idle upstream connection is closed after this. Default: 30 s.
  std::chrono::milliseconds pool_idle_timeout{30'000};
  // ---- TLS ----
  // Directory of retake's CA, created on first use (first intercepted CONNECT or TLS
  // listener). Default: "" = $RETAKE_HOME/ca.
  std::string ca_dir;
  // Do not verify upstream certificates (--insecure-upstream). Default: false.
  bool insecure_upstream = false;
  // PEM file of extra roots trusted for upstreams, beside the system store. Default: "".
  std::string upstream_ca_file;
  // RE2 pattern: CONNECT targets it matches (searched in "host" and in "host:port", as
  // mitmproxy does) are relayed undecrypted as tunnel flows. Default: "" (intercept all).
  std::string ignore_hosts;
  // RE2 pattern: when set, only CONNECT targets it matches are intercepted; the others are
  // relayed undecrypted. Default: "" (intercept all).
  std::string allow_hosts;
  // Serve TLS on the listener (reverse and transparent modes): with cert_file/key_file when
  // given, else with a leaf minted by retake's CA for the client's SNI (listen_host when none).
  // Default: false.
  bool listen_tls = false;
  // PEM certificate chain and key for the TLS listener (both or neither; setting them implies
  // listen_tls). Default: "".
  std::string cert_file;
  std::string key_file;
  // Observer of the record path (see RecordHooks); not owned, must outlive the recorder.
  // Default: nullptr (no cost).
  class RecordHooks* hooks = nullptr;
  // Server replay inside the proxy (`retake record --server-replay SESSION`): consulted for
  // every HTTP request once it has been read whole, before any upstream is contacted; see
  // Responder. Not owned, must outlive the recorder. Under a responder a request body larger
  // than body_cap is answered 413 (it could be neither matched nor replayed faithfully).
  // WebSocket handshakes are always forwarded. Default: nullptr (every request forwarded).
  class Responder* responder = nullptr;
};

// Hook points on the record path. Every method has a no-op default; the recorder calls them on
// its network threads (concurrently for different connections), so they must be quick and
// thread-safe. The Flow passed is the one being built; it may be inspected (and in the future
// modified) but not kept by reference after the call. This is where a scripting layer or a gRPC
// intercept stream will attach; with RecorderOptions::hooks == nullptr nothing is called.
class RecordHooks {
 public:
  virtual ~RecordHooks() = default;
  // A client connection was accepted. `client_address` is "ip:port".
  virtual void connection_opened(const std::string& client_address) {}
  // The request head was parsed (the body has not been read yet).
  virtual void request_headers(flow::Flow& flow) {}
  // The request body was fully forwarded.
  virtual void request_complete(flow::Flow& flow) {}
  // The final response head arrived from the upstream (before it is forwarded).
  virtual void response_headers(flow::Flow& flow) {}
  // The response was fully forwarded; the flow is about to be offered to the sink.
  virtual void response_complete(flow::Flow& flow) {}
  // The exchange failed; flow.error is set; the flow is about to be offered to the sink.
  virtual void error(flow::Flow& flow) {}
  // A WebSocket message (data messages reassembled, control frames as they come) was relayed
  // and appended to flow.websocket->messages; `message` is that last element. Called for
  // both directions, in the order each direction's bytes were parsed.
  virtual void websocket_message(flow::Flow& flow, const flow::WebSocketMessage& message) {}
};

// What the recorder does with one request under server replay.
struct ReplayAnswer {
  enum class Action : uint8_t {
    forward,  // contact the upstream as without a responder
    respond,  // send `response` to the client; no upstream is contacted
    kill,     // close the client connection without answering
  };
  Action action = Action::forward;
  // respond: status, reason, headers and body as recorded (or a miss explanation). The recorder
  // writes its own framing: Content-Length from the body (kept as recorded for HEAD, 1xx, 204
  // and 304), hop-by-hop fields dropped, its own HTTP version on the status line.
  flow::Response response;
  // respond: the recorded flow that answered, stored as the new flow's Flow::origin (0 when
  // the answer is not a recording, e.g. a miss explanation).
  uint64_t origin = 0;
  // Tags added to the recorded flow (e.g. "served", "miss"), so `~tag served` finds them.
  std::vector<std::string> tags;
  // respond: how long to wait before answering (the recorded latency, --latency). The wait
  // suspends only this exchange. Default: none.
  std::chrono::milliseconds delay{0};
};

// The seam between the proxy and a server replay. Called on the network threads, concurrently
// for different connections: thread-safe, quick, no I/O. The flow has its request complete
// (head, body up to body_cap, trailers) and where it was going (scheme, authority).
class Responder {
 public:
  virtual ~Responder() = default;
  virtual ReplayAnswer answer(const flow::Flow& flow) = 0;
};

struct RecorderStats {
  uint64_t connections = 0;  // client connections accepted
  uint64_t active_connections = 0;
  uint64_t flows = 0;              // flows completed and offered to the sink
  uint64_t flows_dropped = 0;      // flows the sink refused (queue full)
  uint64_t errors = 0;             // error flows
  uint64_t upstream_connects = 0;  // new TCP connections to upstreams (the rest were reused)
  uint64_t answered = 0;  // requests answered by RecorderOptions::responder (respond or kill)
};

// start(), stop() and stats() may be called from any thread, but not from a hook or a sink
// (stop() joins the network threads). Destroying a Recorder stops it with no grace.
class Recorder {
 public:
  virtual ~Recorder() = default;

  // Validates options (invalid_argument naming the field) and prepares; does not listen yet.
  static Result<std::unique_ptr<Recorder>> create(const RecorderOptions& options,
                                                  flow::FlowSink& sink);

  // Binds and starts serving on background threads. Returns the bound "host:port" ("[v6]:port"
  // for IPv6). already_exists when the port is in use; invalid_argument when listen_host is
  // not an IP address; failed_precondition when called twice or after stop().
  virtual Result<std::string> start() = 0;
  // Stops accepting, lets in-flight exchanges finish (up to `grace`), closes the rest, joins.
  // Idempotent.
  virtual void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000)) = 0;
  virtual RecorderStats stats() const = 0;
};

// The session name used when none is given: "rec-YYYYmmdd-HHMMSS" in local time.
std::string default_session_name();

// Parses "explicit", "regular", "reverse:http[s]://host[:port]", "transparent" into
// options.mode and options.upstream. invalid_argument with a message on anything else.
Status parse_mode(std::string_view text, RecorderOptions& options);

}  // namespace retake::record
