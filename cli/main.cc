// retake: command-line entry point. Thin: parse, call a library, print.
// Exit codes: 0 ok, 1 failure, 2 usage error.
#include <iostream>

#include "cli/command.h"
#include "cli/io_backend.h"

int main(int argc, char** argv) {
  using namespace retake::cli;
  ensure_io_backend(argv);
  CLI::App app{"retake: record, replay and compare HTTP(S) traffic with a flow database"};
  app.set_version_flag("--version", [] {
    return "retake " RETAKE_VERSION "\nnetwork I/O: " + io_backend_description();
  });
  app.require_subcommand(1);
  Action action;
  add_record_command(app, action);
  add_flows_commands(app, action);
  add_sessions_command(app, action);
  add_runs_command(app, action);
  add_ca_command(app, action);
  add_daemon_command(app, action);
  add_replay_command(app, action);
  add_serve_command(app, action);
  add_diff_command(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help, version or the error
    return code == 0 ? kExitOk : kExitUsage;
  }
  try {
    return action ? action() : kExitUsage;
  } catch (const UsageError& e) {
    std::cerr << "retake: " << e.what() << "\nRun with --help for more information.\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "retake: " << e.what() << "\n";
    return kExitFailure;
  }
}
