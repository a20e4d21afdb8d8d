// retake::control client side: the operations of a daemon's Flows service as plain calls, so
// the CLI's `--remote HOST:PORT` reaches the same code (ops::select_flows, FlowStore) that
// runs locally without it, and prints what comes back with its usual code.
//
// Depends on flow, store (SessionInfo) and ops (Selection); gRPC types stay in client.cc.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "ops/replay_run.h"
#include "ops/select.h"
#include "ops/transfer.h"
#include "record/recorder.h"
#include "store/flow_store.h"

namespace retake::control {

struct RemoteOptions {
  // "HOST:PORT" of a `retake daemon`. Required.
  std::string address;
  // Bearer token sent with every call; "" for none. Default: "".
  std::string token;
  // Deadline of each call. Default: 30 s.
  int timeout_seconds = 30;
};

// A connection to a daemon's Flows service. Errors carry the project's codes mapped back from
// the gRPC status (NOT_FOUND -> not_found, ...; an unreachable daemon is `unavailable`) with the
// daemon's message. Thread-compatible.
class RemoteFlows {
 public:
  virtual ~RemoteFlows() = default;
  // Does not contact the daemon yet. invalid_argument for an empty address.
  static Result<std::unique_ptr<RemoteFlows>> connect(const RemoteOptions& options);

  // Like ops::select_flows, run by the daemon and fetched page by page (1000 per call). The
  // flows passed to visit carry only what a flow list shows: id, session, run, method,
  // scheme/authority/path, status, response size, duration, error; no headers or bodies.
  virtual Status select(const ops::Selection& selection,
                        const std::function<bool(const flow::Flow&)>& visit) = 0;
  // The complete flow.
  virtual Result<flow::Flow> get(uint64_t id, bool with_bodies = true) = 0;
  // All or nothing: not_found (naming the id) when one is unknown.
  virtual Status remove(const std::vector<uint64_t>& ids) = 0;
  virtual Result<std::vector<store::SessionInfo>> sessions() = 0;
  // Stored client replay runs, of `session` only when not empty (replay::list_runs).
  virtual Result<std::vector<replay::RunSummary>> runs(const std::string& session) = 0;
  // ops::export_flows run by the daemon (selection: ids, filter, session, run).
  virtual Result<std::string> export_flows(const ops::Selection& selection,
                                           ops::ExportFormat format) = 0;
  // ops::import_bytes run by the daemon on `bytes`, uploaded in 1 MiB chunks.
  virtual Result<ops::ImportReport> import_flows(const ops::ImportRequest& request,
                                                 std::string_view bytes) = 0;
};

// What `retake record --remote` asks a daemon for (Recorder.Start). Zero values: defaults.
struct RemoteRecordRequest {
  std::string mode;     // "explicit" when empty
  std::string listen;   // "127.0.0.1:0" when empty
  std::string session;  // rec-YYYYmmdd-HHMMSS when empty
  uint64_t body_cap = 0;
  uint32_t idle_timeout_ms = 0, upstream_timeout_ms = 0, connect_timeout_ms = 0;
  uint32_t threads = 0;
  bool insecure_upstream = false;
  std::string upstream_ca;  // a path on the daemon's host
  std::string ignore_hosts, allow_hosts;
  bool tls = false;
  std::string cert, key;  // paths on the daemon's host
  // Server replay inside the proxy: session empty for none.
  ops::ServeRequest server_replay;
};

struct RemoteRecorderInfo {
  std::string recorder_id;
  std::string bound_address;
  std::string session;
};

// A connection to a daemon's Recorder service. Errors as RemoteFlows'.
class RemoteRecorder {
 public:
  virtual ~RemoteRecorder() = default;
  // Does not contact the daemon yet. invalid_argument for an empty address.
  static Result<std::unique_ptr<RemoteRecorder>> connect(const RemoteOptions& options);

  virtual Result<RemoteRecorderInfo> start(const RemoteRecordRequest& request) = 0;
  // Blocks, calling on_flow (summary fields only, as RemoteFlows::select gives them) for each
  // flow of `session` committed from now on, until cancel_watch() or the daemon ends the stream.
  virtual Status watch(const std::string& session,
                       const std::function<void(const flow::Flow&)>& on_flow) = 0;
  // Ends a watch() running on another thread. Thread-safe, idempotent.
  virtual void cancel_watch() = 0;
  // Stops the recorder (its flows are in the store when this returns) and gives its counters.
  virtual Result<record::RecorderStats> stop(const std::string& recorder_id) = 0;
};

// What a client replay run by a daemon ended with: what `retake replay` prints and returns.
struct RemoteReplayOutcome {
  std::string run_id;
  bool interrupted = false;
  std::string report_text;  // the summary for people
  std::string report_json;  // the --json summary
  int exit_code = 0;        // replay::exit_code of the run
};

// A server replay a daemon runs.
struct RemoteServer {
  std::string server_id;        // for stop_server
  std::string bound_address;    // "host:port"
  std::string scheme;           // "http" or "https"
  uint64_t flows_loaded = 0;    // read from the session
  uint64_t flows_servable = 0;  // with a response
};

// A connection to a daemon's Replay service. Errors as RemoteFlows'.
class RemoteReplay {
 public:
  virtual ~RemoteReplay() = default;
  // Does not contact the daemon yet. invalid_argument for an empty address.
  static Result<std::unique_ptr<RemoteReplay>> connect(const RemoteOptions& options);

  // Runs a client replay in the daemon (into its store) and waits for its end. A rules file
  // named by request.rules is read here and sent as text (the daemon opens no client path).
  // `on_progress` is called on this thread with each progress snapshot (about every 250 ms);
  // when it returns false the daemon is asked to stop the run, which then ends interrupted.
  // A daemon silent for RemoteOptions::timeout_seconds ends the call with `timeout`.
  virtual Result<RemoteReplayOutcome> run(
      const ops::ReplayRequest& request, bool fail_on_mismatch,
      const std::function<bool(const replay::Progress&)>& on_progress) = 0;

  // Starts a server replay in the daemon; it serves until stop_server (or the daemon stops).
  // Paths (cert, key) are the daemon's: give absolute ones.
  virtual Result<RemoteServer> start_server(const ops::ServeRequest& request) = 0;
  // Stops it and returns the report `retake serve` prints when it stops.
  virtual Result<std::string> stop_server(const std::string& server_id) = 0;
};

// What `retake diff --remote` asks a daemon's Diff service (the fields of v1::CompareRequest):
// one way of choosing pairs (run; run + run_b; session + a_target + b_target; session +
// learn_noise alone), then the comparison options.
struct RemoteDiffRequest {
  std::string run, run_b;
  std::string session, a_target, b_target;
  ops::ReplayRequest replay;  // live A/B and learning: the options both sides replay with
  std::string filter;
  std::vector<std::string> ignore_header, ignore, normalizer, array_as_set;
  bool learn_noise = false;
  std::string noise_name;
  bool no_noise = false;
  std::string format = "text";  // "text", "json", "junit", "html"
};

// The end of a remote diff: the rendered report and what `retake diff` prints about it.
struct RemoteDiffReport {
  int exit_code = 0;    // 1 when some pair differs
  std::string content;  // the report in the requested format
  uint64_t compared = 0, different = 0, unpaired = 0;
  std::string session, run_a, run_b, noise_name;
  bool noise_learned = false, noise_used = false;
};

// A connection to a daemon's Diff service. Errors as RemoteFlows'.
class RemoteDiff {
 public:
  virtual ~RemoteDiff() = default;
  // Does not contact the daemon yet. invalid_argument for an empty address.
  static Result<std::unique_ptr<RemoteDiff>> connect(const RemoteOptions& options);
  // Runs one diff in the daemon and waits for its report. `on_progress(phase, done, total,
  // run)` is called on this thread about every 250 ms; when `cancel` becomes true the call is
  // cancelled (the daemon stops the diff) and the result is `cancelled`.
  virtual Result<RemoteDiffReport> compare(
      const RemoteDiffRequest& request,
      const std::function<void(const std::string&, uint64_t, uint64_t, const std::string&)>&
          on_progress,
      const std::atomic<bool>* cancel) = 0;
};

}  // namespace retake::control
