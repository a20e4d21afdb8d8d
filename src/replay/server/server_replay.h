// retake::replay::server: server replay, a mock HTTP/1.1 and HTTP/2 server (ALPN h2 over TLS,
// or h2c prior knowledge) answering clients with recorded responses (matched by matcher.h),
// refreshed (refresh.h), with an explicit policy for misses.
//
// Depends on src/flow, the matcher, and Boost.Asio/Beast/OpenSSL (kept out of this header).
// Must not depend on the store: flows come in as a vector (session_flows.h loads a session).
// By default it never opens a connection anywhere: only OnMiss::forward contacts an upstream.
//
// Threading: one io_context run by `threads` threads; each connection is a C++20 coroutine on
// its own strand. lookup() and report() may be called from any thread at any time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "replay/server/matcher.h"

namespace retake::replay::server {

// What a request that matches nothing gets. The policy holds for the server's whole life,
// including after every recording has been served.
enum class OnMiss : uint8_t {
  not_found,    // 404 with the explanation (default)
  bad_gateway,  // 502 with the explanation
  forward,      // proxy the request to its upstream (the recorded origin) and relay the answer
  kill,         // close the connection without answering
};
// "404", "502", "forward", "kill".
const char* on_miss_name(OnMiss value) noexcept;
std::optional<OnMiss> on_miss_from_name(std::string_view name) noexcept;

// How long to wait before answering a hit.
struct Latency {
  enum class Mode : uint8_t {
    none,      // answer at once (default)
    recorded,  // the recorded response_started - request_started (capped at kMaxLatency)
    fixed,     // `fixed` for every response
  };
  Mode mode = Mode::none;
  std::chrono::milliseconds fixed{0};
  // "none", "recorded", or a number of milliseconds ("250"); nullopt otherwise.
  static std::optional<Latency> parse(std::string_view text);
};
inline constexpr std::chrono::seconds kMaxLatency{60};
// How long to wait before answering with `recorded` under `latency` (recorded: its response
// time, capped at kMaxLatency; 0 when its timing is missing).
std::chrono::milliseconds latency_for(const Latency& latency, const flow::Flow& recorded);

// The seam for timestamps inside bodies (the client replay's time-shift engine plugs in here).
// Called on a network thread with the response about to be served (headers already refreshed),
// the recorded flow and the shift in seconds; it may rewrite the body (keep Content-Encoding
// consistent). Must be thread-safe and must not block.
using BodyRefresher = std::function<void(flow::Response& response, const flow::Flow& recorded,
                                         int64_t shift_seconds)>;

struct ServeOptions {
  // Address to listen on. Port 0 picks an ephemeral port (start() returns it). Default:
  // 127.0.0.1:0.
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;
  // Network threads. Default 0: one per hardware thread.
  unsigned threads = 0;
  MatchOptions match;
  // Default: not_found.
  OnMiss on_miss = OnMiss::not_found;
  // Default: none.
  Latency latency;
  // Shift Date/Expires/Last-Modified/Set-Cookie Expires to now. Default: true.
  bool refresh = true;
  // Optional; called only when refresh is on. Default: none.
  BodyRefresher body_refresher;
  // Add `X-Retake-Match: <flow id>` to every hit. Default: true.
  bool match_header = true;
  // The origin ("https://api.example.com:443") incoming requests are taken to be addressed to.
  // Default "": the recorded origin whose host the Host header names; else the only recorded
  // origin when there is one; else the Host header as sent (then host/port usually miss:
  // use ignore_host / ignore_port).
  std::string origin;
  // Limits on what a client may send. Defaults: 64 KiB of headers, 64 MiB of body, 30 s idle.
  size_t header_limit = 64 * 1024;
  size_t body_limit = size_t{64} << 20;
  std::chrono::milliseconds read_timeout{30'000};
  // Forwarding only: connect + exchange deadline with the upstream. Default: 30 s.
  std::chrono::milliseconds upstream_timeout{30'000};
  // TLS: a PEM certificate chain and key. Both empty (default): plain HTTP.
  std::string cert_file;
  std::string key_file;
  // TLS with certificates minted by retake's CA for the SNI each client sends (the listen
  // address when none), instead of cert_file/key_file. Default: false.
  bool tls = false;
  // Directory of retake's CA for `tls`, created on first use. Default: "" = $RETAKE_HOME/ca.
  std::string ca_dir;
  // Where one line per request goes. Default (empty): stderr. Called from network threads.
  std::function<void(std::string_view line)> log;
  // Whether answered requests get a line too; misses and failed forwards always do. Off, a
  // hit builds no text at all. Default: true.
  bool log_hits = true;
  // Most misses kept for report(). Default: 1000.
  size_t max_miss_records = 1000;
};

struct MissRecord {
  std::string request_line;
  MissExplanation explanation;
};

// What a server replay did so far.
struct ServeReport {
  uint64_t requests = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t forwarded = 0;                // misses answered by the upstream (OnMiss::forward)
  uint64_t bad_requests = 0;             // malformed input answered 400/413/431
  std::vector<uint64_t> served_flows;    // ids served at least once, recorded order
  std::vector<uint64_t> unserved_flows;  // ids never served
  std::vector<MissRecord> missed;        // the first ServeOptions::max_miss_records misses
  // A few lines for a person: counts, unserved flows, each miss's explanation.
  std::string to_text() const;
};

class ServerReplay {
 public:
  // Builds the matcher (see Matcher::build for errors) and checks the options: invalid_argument
  // for a bad origin, an unreadable cert/key pair, or only one of cert/key given.
  static Result<std::unique_ptr<ServerReplay>> create(std::vector<flow::Flow> flows,
                                                      ServeOptions options = {});
  // Stops (drains) if still running.
  ~ServerReplay();
  ServerReplay(const ServerReplay&) = delete;
  ServerReplay& operator=(const ServerReplay&) = delete;

  // Binds, listens and starts the threads. Returns the bound "host:port" ("[::1]:port" for v6).
  // Errors: already_exists when the port is taken, io_error for other bind failures,
  // failed_precondition when already started. Call once.
  Result<std::string> start();
  // Stops accepting, lets responses in progress finish (up to 5 s), closes idle connections,
  // joins the threads. Idempotent; safe to call without start().
  void stop();

  // The matcher lookup, for the recording proxy's server-replay mode. Any thread.
  MatchResult lookup(const flow::Request& request);

  // What this server replay would do with `request`, for a caller that does the I/O itself
  // (the recording proxy's --server-replay): counted in report() like a request served here.
  // A hit responds with the prepared recording (X-Retake-Match added per the options); a miss
  // follows on_miss: 404/502 respond with the explanation (JSON when the client accepts it,
  // X-Retake-Miss naming the reason), forward and kill are left to the caller. The latency
  // option is not waited here: a hit's `delay` says how long the caller should wait before
  // answering. Any thread; no I/O.
  struct Decision {
    enum class Kind : uint8_t { respond, forward, kill };
    std::chrono::milliseconds delay{0};  // a hit: the wait before answering (ServeOptions::latency)
    Kind kind = Kind::respond;
    flow::Response response;  // respond
    uint64_t origin = 0;      // the recorded flow that answered; 0 on a miss
    std::optional<MissExplanation> miss;
  };
  Decision decide(const flow::Request& request, int64_t now_ns);
  // A recorded response as this server would send it now: refreshed per the options.
  flow::Response prepare_response(const flow::Flow& recorded, int64_t now_ns) const;

  ServeReport report() const;
  const Matcher& matcher() const;

  // Implementation detail (defined in server_replay.cc; public only so the connection
  // coroutines there can name it).
  struct State;

 private:
  explicit ServerReplay(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace retake::replay::server
