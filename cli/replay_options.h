// The replay flags that `retake replay` and `retake diff` (live A/B, noise learning) share:
// one declaration of the flags over ops::ReplayRequest (the request the gRPC API takes too), so
// both commands spell, check and translate them the same way (ops::replay_options).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "ops/replay_run.h"
#include "replay/client/client_replay.h"

namespace retake::cli {

// Declares --map-host --pace --speed --rate --concurrency --loop --shift-time --at --no-shift
// --jwt-secret --bind --bind-rule --rules --insecure --timeout --threads on `cmd`, writing into
// `request` and `timeout` (the --timeout text); both must outlive the parse. The --pace help
// names request.pace as the default.
void add_replay_flags(CLI::App& cmd, ops::ReplayRequest& request, std::string& timeout);

// Declares the server-replay matching and policy flags that `retake serve` and
// `retake record --server-replay` share (over ops::ServeRequest, which the gRPC API takes too):
// --filter --ignore-param --ignore-body --ignore-field --ignore-host --ignore-port --use-header
// --on-exhausted --on-miss --no-refresh --no-match-header. `request` must outlive the parse.
void add_server_replay_flags(CLI::App& cmd, ops::ServeRequest& request);

// Parses the --timeout text into request.timeout_ms. Throws UsageError when malformed.
void apply_timeout(const std::string& timeout, ops::ReplayRequest& request);

// apply_timeout, then ops::replay_options. Throws UsageError for a bad value (naming the flag),
// std::runtime_error (exit 1) when the rules file cannot be read or TLS cannot be set up.
replay::ReplayOptions build_replay_options(ops::ReplayRequest request, const std::string& timeout);

}  // namespace retake::cli
