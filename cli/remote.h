// --remote HOST:PORT (or RETAKE_REMOTE) and --remote-token-file: the options with which a
// command acts through a `retake daemon` instead of in this process. Shared by every command
// that has a remote form (flows, sessions, replay), so they are spelled and read alike.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <stdexcept>
#include <string>

#include "cli/command.h"
#include "control/client.h"
#include "flow/status.h"

namespace retake::cli {

struct RemoteArgs {
  std::string address;     // "" when the command runs in-process
  std::string token_file;  // "" for no token
};

// Adds --remote and --remote-token-file (also read from RETAKE_REMOTE and
// RETAKE_REMOTE_TOKEN_FILE).
void add_remote_options(CLI::App& cmd, RemoteArgs& remote);

// The connection options; throws UsageError when the token file cannot be read.
control::RemoteOptions remote_options(const RemoteArgs& remote);

// A connect() result as a command takes it: the client, or a throw: UsageError (exit 2) for
// a bad address or timeout, std::runtime_error (exit 1) for anything else, such as a missing
// control module.
template <class Client>
std::unique_ptr<Client> connected(Result<std::unique_ptr<Client>> client) {
  if (client) return std::move(client.value());
  if (client.status().code() == Errc::invalid_argument) throw UsageError(client.status().message());
  throw std::runtime_error(client.status().message());
}

// flag_message for an error that came back from a daemon ("remote: speed: ..." ->
// "remote: --speed: ..."): the daemon checked the same fields the flags fill.
std::string remote_flag_message(const Status& status);

}  // namespace retake::cli
