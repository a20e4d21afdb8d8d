// The pieces every `retake` subcommand shares: how options that mean the same thing everywhere
// are declared, how a command reports failure, and how sizes and durations are parsed.
// Thin by design: commands parse, call a library, print.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "flow/status.h"

namespace retake::cli {

// Exit codes shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// What a parsed subcommand will do once parsing succeeded. Returns the exit code.
using Action = std::function<int()>;

// Thrown by commands for a usage error found after parsing (conflicting values, a bad mode):
// main prints it like a parse error and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --db DIR: the flow database every command that reads or writes flows uses.
// Default: $RETAKE_HOME/db (RETAKE_HOME defaults to ~/.retake).
void add_db_option(CLI::App& cmd, std::string& db);
// The --db value, or the default path when it was not given.
std::string resolve_db(const std::string& db);

// --min-free-space SIZE: what every command that records flows keeps free on the store's
// disk; below it recording pauses (flows wait in the writer's queue) until space is freed.
// Default 64MiB; 0 turns the check off.
void add_min_free_option(CLI::App& cmd, std::string& size);
// The --min-free-space value in bytes; UsageError naming the flag when it does not parse.
uint64_t parse_min_free(const std::string& size);

// Prints "retake: <message>" to stderr and returns kExitFailure.
int fail(const std::string& message);
int fail(const Status& status);

// A message of the shared operations (src/ops), which name request fields ("map_host: ..."),
// as the flag a person typed ("--map-host: ..."). Other messages are returned unchanged.
std::string flag_message(const Status& status);

// "16MiB", "64k", "1000" -> bytes. Units: B, K/KB/KiB (1024), M/MB/MiB, G/GB/GiB.
std::optional<uint64_t> parse_size(std::string_view text);
// "250ms", "30s", "2m", "1h", "1500" (ms) -> milliseconds.
std::optional<int64_t> parse_duration_ms(std::string_view text);
// "1.2 KiB", "3.0 MiB"; "0" for zero.
std::string format_size(uint64_t bytes);
// "12ms", "1.25s"; "-" for zero.
std::string format_duration_ns(int64_t ns);
// Local-time "YYYY-mm-dd HH:MM:SS.mmm" for a nanosecond timestamp.
std::string format_time_ns(int64_t ns);

// Registration of each command group; each adds its subcommand(s) and sets `action` when
// that subcommand is chosen.
void add_record_command(CLI::App& app, Action& action);
void add_flows_commands(CLI::App& app, Action& action);
void add_sessions_command(CLI::App& app, Action& action);
void add_runs_command(CLI::App& app, Action& action);
void add_ca_command(CLI::App& app, Action& action);
void add_daemon_command(CLI::App& app, Action& action);
void add_replay_command(CLI::App& app, Action& action);
void add_serve_command(CLI::App& app, Action& action);
void add_diff_command(CLI::App& app, Action& action);

}  // namespace retake::cli
