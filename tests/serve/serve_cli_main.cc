// A `retake` with only the serve command, so tests/serve can drive cli/serve_command.cc as a
// real process while the full binary's other modules are built elsewhere. Same exit codes and
// error printing as cli/main.cc.
#include <iostream>

#include "cli/command.h"

int main(int argc, char** argv) {
  using namespace retake::cli;
  CLI::App app{"retake (serve only, for tests)"};
  app.require_subcommand(1);
  Action action;
  add_serve_command(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
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
