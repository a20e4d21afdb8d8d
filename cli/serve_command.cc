// `retake serve`: server replay. Answer clients with the recorded responses of a session until
// SIGINT/SIGTERM; misses follow --on-miss and are explained on stderr and in the response.
#include <pthread.h>

#include <csignal>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "cli/remote.h"
#include "cli/replay_options.h"
#include "ops/replay_run.h"
#include "replay/server/server_replay.h"
#include "store/flow_store.h"

namespace retake::cli {

namespace {

// The request is the one the gRPC API takes (ops::ServeRequest): ops checks and translates it.
struct ServeArgs {
  ops::ServeRequest request;
  std::string db;
  bool quiet = false;
  RemoteArgs remote;
};

// Through a daemon: it loads the session from its store and serves until this command is
// stopped, then prints the same report. Paths are made absolute: the daemon resolves them.
int run_remote(ops::ServeRequest request, const RemoteArgs& remote, const sigset_t& stop_signals) {
  for (auto* path : {&request.cert, &request.key, &request.match_rules})
    if (!path->empty()) *path = std::filesystem::absolute(*path).string();
  auto client = connected(control::RemoteReplay::connect(remote_options(remote)));
  auto server = client->start_server(request);
  if (!server) {
    if (server.status().code() == Errc::invalid_argument)
      throw UsageError(remote_flag_message(server.status()));
    return fail(server.status());
  }
  std::cerr << "retake: the daemon serves session '" << request.session
            << "': " << server->flows_servable << " recorded responses ("
            << (server->flows_loaded - server->flows_servable)
            << " flows without a response skipped)\n"
            << "retake: listening on " << server->scheme << "://" << server->bound_address
            << "  (on miss: " << request.on_miss << ", Ctrl-C to stop)\n";
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "retake: stopping...\n";
  auto report = client->stop_server(server->server_id);
  if (!report) return fail(report.status());
  std::cerr << "retake: " << *report;
  return kExitOk;
}

int run_serve(const ServeArgs& args) {
  using namespace replay::server;
  // Block the stop signals before ANY thread starts (RocksDB starts background threads when the
  // store opens): a thread that does not block them would take SIGTERM's default action and
  // kill the process before sigwait() below sees it and the report is printed.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  const auto& r = args.request;
  // Usage errors before the store is opened; ops names the field, people typed the flag.
  if (auto checked = ops::serve_options(r); !checked)
    throw UsageError(flag_message(checked.status()));
  if (!args.remote.address.empty()) return run_remote(r, args.remote, stop_signals);
  std::function<void(std::string_view)> log;
  if (args.quiet)
    log = [](std::string_view line) {
      // Misses still reach stderr: they are what a person running a mock needs to see.
      if (line.substr(0, 5) == "MISS " || line.find("failed") != std::string_view::npos)
        std::cerr << "retake serve: " << line << '\n';
    };

  store::StoreOptions store_options;
  store_options.path = resolve_db(args.db);
  store_options.read_only = true;
  store_options.create_if_missing = false;
  auto store = store::FlowStore::open(store_options);
  if (!store) return fail(store.status());
  auto prepared = ops::prepare_serve(**store, r, std::move(log), /*log_hits=*/!args.quiet);
  store->reset();  // everything is in memory now; do not hold the store open
  if (!prepared) {
    if (prepared.status().code() == Errc::invalid_argument)
      throw UsageError(flag_message(prepared.status()));
    return fail(prepared.status());
  }
  auto& server = prepared->server;
  size_t loaded = prepared->loaded;

  auto bound = server->start();
  if (!bound) return fail(bound.status());
  const auto& m = server->matcher();
  std::cerr << "retake: serving session '" << r.session << "': " << m.flows().size()
            << " recorded responses under " << m.key_count() << " request keys ("
            << (loaded - m.flows().size()) << " flows without a response skipped)\n"
            << "retake: listening on " << (r.cert.empty() && !r.tls ? "http://" : "https://")
            << *bound << "  (on miss: " << r.on_miss << ", Ctrl-C to stop)\n";

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "retake: stopping...\n";
  server->stop();
  std::cerr << "retake: " << server->report().to_text();
  return kExitOk;
}

}  // namespace

void add_serve_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve", "Server replay: answer clients with a session's recorded responses (a mock server)");
  cmd->add_option("--session", args->request.session, "Session whose flows are served")
      ->type_name("NAME")
      ->required();
  cmd->add_option("--listen", args->request.listen,
                  "Address to listen on (default 127.0.0.1:8081; port 0: any)")
      ->type_name("HOST:PORT");
  add_db_option(*cmd, args->db);
  add_server_replay_flags(*cmd, args->request);
  cmd->add_option("--latency", args->request.latency,
                  "Delay before each answer: none (default), recorded, or milliseconds")
      ->type_name("MODE");
  cmd->add_option("--origin", args->request.origin,
                  "Origin requests are taken to address (default: from the Host header or the "
                  "session's only origin)")
      ->type_name("URL");
  cmd->add_option("--cert", args->request.cert, "Serve HTTPS with this PEM certificate chain")
      ->type_name("FILE");
  cmd->add_option("--key", args->request.key, "The PEM private key of --cert")->type_name("FILE");
  cmd->add_flag("--tls", args->request.tls,
                "Serve HTTPS with certificates minted by retake's CA for each client's SNI");
  cmd->add_option("--threads", args->request.threads, "Network threads (default: one per core)");
  cmd->add_flag("-q,--quiet", args->quiet, "Print only misses, not a line per request");
  add_remote_options(*cmd, args->remote);
  cmd->callback([args, &action] { action = [args] { return run_serve(*args); }; });
}

}  // namespace retake::cli
