// retake::replay::ClientReplay: re-issues recorded flows against a target as one RUN.
// Flows go out in recorded order on a steady_clock virtual timeline (recorded gaps, a speed
// factor, a rate cap, bounded concurrency); requests that shared one recorded client
// connection stay in order, requests that overlapped may overlap again. Before sending, each
// request is time-shifted, mutated (a caller hook: the rules file), rebound (bindings) and
// retargeted (--target, --map-host; Host header and TLS server name follow). Every replayed
// exchange becomes a new flow with `run` set and `origin` = the recorded flow's id, offered to
// a flow::FlowSink (normally store::FlowWriter).
//
// Depends on src/flow, src/net/client and the replay engines beside it (time shift, bindings).
// Must not depend on the store or the CLI: the caller selects flows (a vector, or a scan
// function over a store) and persists run metadata from RunSummary.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "replay/client/bindings.h"
#include "replay/client/time_shift.h"

namespace boost::asio::ssl {
class context;
}

namespace retake::replay {

enum class Pace : uint8_t {
  recorded,  // keep the recorded gaps between request starts (divided by `speed`)
  asap,      // send as soon as order, concurrency and rate allow
};

enum class TimeShiftMode : uint8_t {
  automatic,  // shift by (run start - recording time)
  offset,     // shift by `shift_ns`
  at,         // shift so the recording's start lands on `at_ns`
  none,       // leave timestamps alone (--no-shift)
};

// --map-host HOST=ADDR:PORT: connect to ADDR:PORT whenever the (retargeted) host is HOST;
// the Host header and the TLS server name keep HOST.
struct HostMapping {
  std::string host;
  std::string address;
  uint16_t port = 0;  // 0: keep the request's port
};
// Parses "prod.example.test=127.0.0.1:8443" (or "[::1]:8443", or no port).
Result<HostMapping> parse_host_mapping(std::string_view text);

struct ReplayOptions {
  // "scheme://host[:port]" replacing scheme, host and port of every flow. Default: "" (each
  // flow goes where it was recorded going).
  std::string target;
  // Connect-address overrides by host name. Default: none.
  std::vector<HostMapping> host_map;
  // Default: Pace::recorded.
  Pace pace = Pace::recorded;
  // Time compression for Pace::recorded: 4 plays the recording 4x faster. Must be > 0. Default: 1.
  double speed = 1.0;
  // Cap on requests started per second; 0: no cap. Default: 0.
  double rate = 0;
  // Most requests in flight at once. Default: 64.
  size_t concurrency = 64;
  // How many times the selected flows are replayed, one pass after the other. Default: 1.
  unsigned loops = 1;
  // Default: TimeShiftMode::automatic.
  TimeShiftMode shift_mode = TimeShiftMode::automatic;
  // For TimeShiftMode::offset, ns. Default: 0.
  int64_t shift_ns = 0;
  // For TimeShiftMode::at, ns since the epoch. Default: 0.
  int64_t at_ns = 0;
  // HS256 key to re-sign shifted JWTs. Default: "" (JWTs left alone and reported).
  std::string jwt_secret;
  // Bindings (--bind auto|none and explicit rules). Default: automatic on, no rules.
  BindingPlanOptions bindings;
  // Skip certificate and host name verification of the target. Default: false.
  bool insecure = false;
  // TLS client context for https targets (e.g. from the tls module's upstream factory);
  // null: system roots, verification per `insecure`. Default: null.
  std::shared_ptr<boost::asio::ssl::context> tls_context;
  // With tls_context: called once before the first TLS handshake (net::ClientOptions::
  // before_first_tls). Default: none.
  std::function<void()> before_first_tls;
  // Threads of the HTTP client. Default: 1.
  unsigned threads = 1;
  // Deadlines of the HTTP client. Defaults: 10 s connect, 30 s per read.
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds read_timeout{30'000};
  // Response body bytes stored per replayed flow. Default: 16 MiB.
  uint64_t body_cap = 16ull << 20;
  // The run id; "": generated ("run-YYYYmmdd-HHMMSS-xxxxxx"). Default: "".
  std::string run_id;
  // Recorded session name, for the run metadata. Default: "" (taken from the first flow).
  std::string session;
  // Which of the given flows to replay; null: all HTTP flows. The filter-language hook.
  std::function<bool(const flow::Flow&)> select;
  // Mutation hook (the rules file): called on every request after the time shift and before
  // bindings and retargeting, on the scheduler thread. Null: none.
  std::function<void(flow::Request& request, const flow::Flow& origin)> mutate;
  // Keep each replayed flow (without body bytes) in FlowResult::replayed. A copy of a flow a
  // request costs a long run memory and CPU; callers that read the run from the sink (the CLI,
  // the daemon) turn it off. Default: true.
  bool keep_flows = true;
  // Most results kept (a long --loop must not grow without bound); later ones are only
  // counted (ClientReplay::results_dropped()). 0 keeps none. Default: 1,000,000.
  size_t max_results = 1'000'000;
};

// What happened to one recorded flow in one loop.
struct FlowResult {
  uint64_t origin = 0;  // the recorded flow's id
  unsigned loop = 0;
  // The new flow (run, origin set), body bytes left out; only with ReplayOptions::keep_flows
  // (otherwise null: the sink has the whole flow). Behind a pointer: a Flow is over a
  // kilobyte, and a run holds a result per request.
  std::shared_ptr<const flow::Flow> replayed;
  int status = 0;                    // the replayed response's status; 0 when none
  flow::Timing timing;               // the replayed flow's timestamps
  int64_t duration_ns = 0;           // Flow::duration() of the replayed flow
  std::string request_line;          // "<METHOD> <path>" as sent
  int recorded_status = 0;           // 0 when the recording had no response
  bool status_match = false;         // replayed status == recorded status
  std::optional<flow::Error> error;  // transport-level failure
  int64_t schedule_error_ns = 0;     // actual start - planned start (Pace::recorded only)
};

// A binding applied to a request, or one that could not be resolved.
struct BindingEvent {
  size_t binding = 0;
  std::string rule;          // "auto" or the rule name
  std::string capture;       // Capture::describe()
  uint64_t source_flow = 0;  // recorded flow whose response carries the value
  uint64_t flow = 0;         // recorded flow whose request used it
  bool resolved = false;
  std::string where;  // "path", "header Cookie, body", ... (resolved) or why not
};

struct Progress {
  uint64_t total = 0;  // flows x loops
  uint64_t sent = 0;
  uint64_t completed = 0;  // answered by the target (any status)
  uint64_t errors = 0;     // transport errors
  uint64_t mismatches = 0;
  int64_t elapsed_ns = 0;
};

struct RunSummary {
  std::string run_id;
  std::string session;
  std::string target;
  int64_t started_ns = 0;
  int64_t ended_ns = 0;
  bool interrupted = false;
  uint64_t total = 0, sent = 0, completed = 0, mismatches = 0, transport_errors = 0;
  uint64_t sink_dropped = 0;                   // replayed flows the sink refused
  int64_t p50_ns = 0, p95_ns = 0, p99_ns = 0;  // request start to response end
  int64_t schedule_error_mean_ns = 0;          // mean |actual - planned| start (Pace::recorded)
  int64_t schedule_error_max_ns = 0;
  uint64_t bindings_applied = 0, bindings_unresolved = 0;
  TimeShiftReport time_shift;
  int64_t shift_ns = 0;  // the delta used (last loop)
};

// The run's metadata as a JSON object (for the store's meta API and `--json`).
std::string run_summary_json(const RunSummary& summary);
// The inverse, for stored metadata: parse_error when `json` is not an object with a string
// "run"; absent or mistyped numeric fields read as 0 (metadata written by older versions).
Result<RunSummary> parse_run_summary_json(std::string_view json);

class ClientReplay {
 public:
  // `flows`: candidates in any order (sorted here by recorded request start, then id).
  // `sink`: where replayed flows go; may be null; must outlive the replay.
  ClientReplay(std::vector<flow::Flow> flows, ReplayOptions options,
               flow::FlowSink* sink = nullptr);
  ~ClientReplay();  // cancels and waits
  ClientReplay(const ClientReplay&) = delete;
  ClientReplay& operator=(const ClientReplay&) = delete;

  // Validates options and starts the run on background threads. invalid_argument for a bad
  // target, speed, rate or concurrency; failed_precondition when already started.
  Status start();
  // Blocks until every loop finished or the run was cancelled; returns the summary.
  RunSummary wait();
  // start() + wait().
  Result<RunSummary> run();
  // Thread-safe, idempotent: stops scheduling; requests in flight get a short grace (2 s)
  // to finish; everything completed is kept. The summary says interrupted.
  void cancel();

  const std::string& run_id() const;
  // True once the run ended (all loops done, or cancelled and drained); wait() then returns at
  // once.
  bool finished() const;
  // Thread-safe snapshot.
  Progress progress() const;
  // After wait(): per flow and loop, in completion order.
  const std::vector<FlowResult>& results() const;
  // Results not kept because ReplayOptions::max_results was reached.
  uint64_t results_dropped() const;
  // After wait(): every binding applied and every one that could not be resolved.
  const std::vector<BindingEvent>& binding_events() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The process exit code for a finished run: 1 when any request failed at transport level
// (or, with fail_on_mismatch, when any status differed from the recording), else 0.
int exit_code(const RunSummary& summary, bool fail_on_mismatch);

// A run id: "run-YYYYmmdd-HHMMSS-" + 6 random hex digits (UTC).
std::string make_run_id();

}  // namespace retake::replay
