// --remote options, read once for every command that has them.
#include "cli/remote.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include "cli/command.h"

namespace retake::cli {

void add_remote_options(CLI::App& cmd, RemoteArgs& remote) {
  cmd.add_option("--remote", remote.address,
                 "Act through the retake daemon at this address instead of opening --db")
      ->type_name("HOST:PORT")
      ->envname("RETAKE_REMOTE");
  cmd.add_option("--remote-token-file", remote.token_file,
                 "Bearer token for --remote (the daemon's --control-token-file)")
      ->type_name("FILE")
      ->envname("RETAKE_REMOTE_TOKEN_FILE");
}

control::RemoteOptions remote_options(const RemoteArgs& remote) {
  control::RemoteOptions options;
  options.address = remote.address;
  if (!remote.token_file.empty()) {
    std::ifstream in(remote.token_file, std::ios::binary);
    if (!in) throw UsageError("--remote-token-file: cannot read '" + remote.token_file + "'");
    std::ostringstream text;
    text << in.rdbuf();
    options.token = text.str().substr(0, 4096);
    while (!options.token.empty() && std::isspace(static_cast<unsigned char>(options.token.back())))
      options.token.pop_back();
  }
  return options;
}

std::string remote_flag_message(const Status& status) {
  constexpr std::string_view kPrefix = "remote: ";
  const std::string& message = status.message();
  if (message.rfind(kPrefix, 0) != 0) return flag_message(status);
  return std::string(kPrefix) + flag_message(Status(status.code(), message.substr(kPrefix.size())));
}

}  // namespace retake::cli
