// The replay options that `retake replay` and `retake diff` (live A/B, noise learning) share:
// one declaration of the flags, one translation into replay::ReplayOptions, so the two
// commands spell and check them the same way.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "replay/client/client_replay.h"

namespace retake::cli {

// The values of the shared flags, with the defaults the help text names.
struct ReplayFlags {
  std::vector<std::string> map_host;
  std::string pace = "recorded";
  double speed = 1.0;
  double rate = 0;
  size_t concurrency = 64;
  unsigned loops = 1;
  std::string shift_time;
  std::string at;
  bool no_shift = false;
  std::string jwt_secret;
  std::string bind = "auto";
  std::vector<std::string> bind_rules;
  std::string rules;
  bool insecure = false;
  std::string timeout = "30s";
  unsigned threads = 1;
};

// Declares --map-host --pace --speed --rate --concurrency --loop --shift-time --at --no-shift
// --jwt-secret --bind --bind-rule --rules --insecure --timeout --threads on `cmd`; `flags`
// must outlive the parse. Default pace given by `flags.pace` (diff uses asap).
void add_replay_flags(CLI::App& cmd, ReplayFlags& flags);

// The options the flags describe (target, session and select left to the caller), with an
// upstream TLS context. Throws UsageError for a bad value, std::runtime_error (exit 1) when the
// rules file cannot be read or the TLS context cannot be made.
replay::ReplayOptions build_replay_options(const ReplayFlags& flags);

}  // namespace retake::cli
