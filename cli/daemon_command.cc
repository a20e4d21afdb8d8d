// `retake daemon`: host the gRPC control API (src/control) until SIGINT/SIGTERM.
#include <pthread.h>
#include <csignal>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "control/daemon.h"

namespace retake::cli {

namespace {

struct DaemonArgs {
  std::string control = "127.0.0.1:7070";
  std::string db;
  std::string min_free;
  std::string token_file;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
};

// The whole file, at most 1 MiB; UsageError naming the option otherwise.
std::string read_small_file(const std::string& option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(option + ": cannot read '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  std::string data = text.str();
  if (data.size() > (1u << 20)) throw UsageError(option + ": '" + path + "' is over 1 MiB");
  return data;
}

int run_daemon(const DaemonArgs& args) {
  control::DaemonOptions options;
  options.listen = args.control;
  options.db_path = resolve_db(args.db);
  options.min_free_bytes = parse_min_free(args.min_free);
  if (!args.token_file.empty()) {
    options.token = read_small_file("--control-token-file", args.token_file);
    // A token file usually ends with a newline; surrounding whitespace is never part of it.
    while (!options.token.empty() && std::isspace(static_cast<unsigned char>(options.token.back())))
      options.token.pop_back();
    if (options.token.empty()) throw UsageError("--control-token-file: the file is empty");
  }
  if (!args.tls_cert.empty())
    options.tls_cert_pem = read_small_file("--control-tls-cert", args.tls_cert);
  if (!args.tls_key.empty())
    options.tls_key_pem = read_small_file("--control-tls-key", args.tls_key);
  if (!args.tls_client_ca.empty())
    options.tls_client_ca_pem = read_small_file("--control-tls-client-ca", args.tls_client_ca);

  // Block the stop signals before any thread starts so that only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto daemon = control::Daemon::start(options);
  if (!daemon) {
    auto code = daemon.status().code();
    if (code == Errc::invalid_argument || code == Errc::failed_precondition)
      throw UsageError(daemon.status().message());
    return fail(daemon.status());
  }
  // One line on stdout, so a supervisor or a test can learn the port chosen for port 0.
  std::cout << "retake: control API listening on " << (*daemon)->address() << " (db "
            << options.db_path << ")" << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "retake: stopping the control daemon...\n";
  (*daemon)->stop();
  return kExitOk;
}

}  // namespace

void add_daemon_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<DaemonArgs>();
  auto* cmd = app.add_subcommand(
      "daemon", "Serve the gRPC control API (recorders, flows) and own the flow store");
  cmd->add_option("--control", args->control,
                  "Address of the control API (default 127.0.0.1:7070; a non-loopback address "
                  "needs a token or mutual TLS)")
      ->type_name("HOST:PORT");
  add_db_option(*cmd, args->db);
  add_min_free_option(*cmd, args->min_free);
  cmd->add_option("--control-token-file", args->token_file,
                  "Every call must carry 'authorization: Bearer <token in this file>'")
      ->type_name("FILE");
  cmd->add_option("--control-tls-cert", args->tls_cert, "Serve TLS with this PEM certificate chain")
      ->type_name("FILE");
  cmd->add_option("--control-tls-key", args->tls_key, "PEM private key of --control-tls-cert")
      ->type_name("FILE");
  cmd->add_option("--control-tls-client-ca", args->tls_client_ca,
                  "Require client certificates signed by this PEM CA (mutual TLS)")
      ->type_name("FILE");
  cmd->callback([args, &action] { action = [args] { return run_daemon(*args); }; });
}

}  // namespace retake::cli
