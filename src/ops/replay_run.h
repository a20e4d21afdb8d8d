// retake::ops replay operations: a client replay and a server replay as the user asks for them
// (the flags of `retake replay` / `retake serve`, the fields of the gRPC Replay service),
// checked and translated into the replay library's options in ONE place, so the CLI, the
// `--remote` path and the daemon accept, refuse and report exactly the same things.
//
// Depends on store, query, the TLS module and the replay libraries; knows nothing of sockets
// of its own, terminals or gRPC.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "replay/client/client_replay.h"
#include "replay/server/server_replay.h"
#include "store/flow_store.h"

namespace retake::ops {

// Bounds on a replay request (a request from the network must not ask for unbounded work).
inline constexpr size_t kMaxReplayTextBytes = 4096;     // target, filter, one rule, ...
inline constexpr size_t kMaxReplayListItems = 1000;     // --flow, --map-host, --bind-rule ...
inline constexpr size_t kMaxRulesTextBytes = 4u << 20;  // the rules file
inline constexpr uint64_t kMaxReplayConcurrency = 10'000;
inline constexpr uint64_t kMaxReplayLoops = 100'000;
inline constexpr double kMaxReplaySpeed = 1e6;
inline constexpr double kMaxReplayRate = 1e6;
inline constexpr unsigned kMaxReplayThreads = 64;
inline constexpr int64_t kMaxReplayTimeoutMs = 3'600'000;

// A client replay request. Field names are the CLI flags with '_' for '-' (`flow` is --flow,
// `loop` is --loop ...) and the fields of retake.v1.StartClientReplayRequest. Every error names
// its field first ("speed: must be > 0"), so the CLI can point at the flag and the API at the
// field.
struct ReplayRequest {
  // Replay the flows of this session, and/or the flows with these ids. At least one of the two.
  std::string session;
  std::vector<uint64_t> flow;
  // Only the selected flows that match this filter expression. Default: "" (all).
  std::string filter;
  // "scheme://host[:port]" every flow is sent to. Default: "" (where it was recorded going).
  std::string target;
  // "HOST=ADDR:PORT" connect-address overrides. Default: none.
  std::vector<std::string> map_host;
  // "recorded" (default) or "asap".
  std::string pace = "recorded";
  // > 0, at most kMaxReplaySpeed. Default: 1.
  double speed = 1.0;
  // Requests started per second, 0: no cap. At most kMaxReplayRate. Default: 0.
  double rate = 0;
  // 1..kMaxReplayConcurrency. Default: 64.
  uint64_t concurrency = 64;
  // 1..kMaxReplayLoops. Default: 1.
  uint64_t loop = 1;
  // At most one of: a duration ("+2h", "-30m"), an RFC 3339 instant, no shift.
  // Default: shift by (now - recording time).
  std::string shift_time;
  std::string at;
  bool no_shift = false;
  // HS256 key to re-sign shifted JWTs. Default: "".
  std::string jwt_secret;
  // "auto" (default) or "none".
  std::string bind = "auto";
  // Explicit binding rules "NAME=header:H|cookie:C|hidden:N|regex:RE". Default: none.
  std::vector<std::string> bind_rule;
  // Mutation rules: a file path (read by this process), or the file's text (sent over the
  // network; `rules` then only names it in messages). Default: none.
  std::string rules;
  std::string rules_text;
  // Do not verify the target's certificate. Default: false.
  bool insecure = false;
  // Per-read deadline, 1..kMaxReplayTimeoutMs. Default: 30000.
  int64_t timeout_ms = 30'000;
  // HTTP client threads, 1..kMaxReplayThreads (0 counts as 1). Default: 1.
  unsigned threads = 1;
  // The run's id; "": generated. At most 256 bytes, no control characters. Default: "".
  std::string run_id;
};

// Checks everything that needs no file and no store: sizes, ranges, enum words, exclusive
// options, the filter's syntax, host mappings and binding rules. invalid_argument naming the
// field ("speed: must be > 0"); the filter's parse_error is returned as invalid_argument too.
Status validate(const ReplayRequest& request);

// validate(), then the replay options: reads (or parses) the rules, builds the TLS client
// context. Errors as validate(), plus the rules file's not_found / io_error / parse_error.
Result<replay::ReplayOptions> replay_options(const ReplayRequest& request);

// replay_options(), then the flows to replay (session / ids / filter) from `store`, then the
// replay (not started; start() it, wait(), then replay::save_run). `sink` gets the replayed
// flows and must outlive the replay. `keep_results`: false for callers that never read
// ClientReplay::results() (the CLI), so a long run holds none. not_found naming an unknown
// session or flow id.
Result<std::unique_ptr<replay::ClientReplay>> prepare_replay(store::FlowStore& store,
                                                             const ReplayRequest& request,
                                                             flow::FlowSink* sink,
                                                             bool keep_results = true);

// What `retake replay` prints after a run: the text a person reads, or the JSON summary (the
// run's metadata plus every binding event). Call after wait().
std::string replay_report_text(const replay::ClientReplay& replay,
                               const replay::RunSummary& summary);
std::string replay_report_json(const replay::ClientReplay& replay,
                               const replay::RunSummary& summary);

// A server replay request: the flags of `retake serve`, the fields of
// retake.v1.StartServerReplayRequest. Errors name the field like ReplayRequest's.
struct ServeRequest {
  // The session whose recorded responses are served. Required.
  std::string session;
  // "HOST:PORT" to listen on; port 0 picks one. Default: "127.0.0.1:8081".
  std::string listen = "127.0.0.1:8081";
  // Serve only the session's flows that match this filter. Default: "".
  std::string filter;
  // Matching: query parameters / body fields left out of the key, headers joining it.
  std::vector<std::string> ignore_param;
  bool ignore_body = false;
  bool ignore_host = false;
  bool ignore_port = false;
  std::vector<std::string> ignore_field;
  std::vector<std::string> use_header;
  // A rules file whose `match:` section gives other matching options to parts of the session
  // (replay/server/match_rules.h); a path on this host. Read by prepare_serve. Default: "".
  std::string match_rules;
  // "repeat-last" (default), "cycle" or "miss".
  std::string on_exhausted = "repeat-last";
  // "404" (default), "502", "forward" or "kill".
  std::string on_miss = "404";
  // "none" (default), "recorded" or milliseconds ("250", at most 60000).
  std::string latency = "none";
  bool no_refresh = false;
  // Also shift the timestamps inside response bodies (JSON, forms, text; JWT claims) by the
  // same amount as the Date headers, with client replay's time-shift engine. Default: false.
  bool shift_body_time = false;
  // HS256 key to re-sign JWTs whose time claims were shifted (needs shift_body_time).
  std::string jwt_secret;
  bool no_match_header = false;
  // The origin requests are taken to address. Default: "" (see ServeOptions::origin).
  std::string origin;
  // PEM certificate chain and key files (paths on this host) to serve HTTPS. Both or neither.
  std::string cert;
  std::string key;
  // Serve HTTPS with certificates minted by retake's CA (instead of cert/key). Default: false.
  bool tls = false;
  // Network threads, 0..kMaxReplayThreads (0: one per core). Default: 0.
  unsigned threads = 0;
};

// Checks and translates (no file, no store). invalid_argument naming the field.
Result<replay::server::ServeOptions> serve_options(const ServeRequest& request);

// A server replay ready to start, and how many flows were read for it (the matcher keeps
// only those with a response).
struct PreparedServe {
  std::unique_ptr<replay::server::ServerReplay> server;
  size_t loaded = 0;
};

// serve_options(), then the session's flows from `store` (read once; the store may be closed
// afterwards), then the server replay, not started. `log` receives a line per request (null:
// stderr); with `log_hits` false only misses and failures (ServeOptions::log_hits). Errors: as serve_options; not_found for an unknown session; failed_precondition
// when it has no flow with a response; invalid_argument for an unreadable cert/key pair or a
// bad origin.
Result<PreparedServe> prepare_serve(store::FlowStore& store, const ServeRequest& request,
                                    std::function<void(std::string_view)> log = nullptr,
                                    bool log_hits = true);

}  // namespace retake::ops
