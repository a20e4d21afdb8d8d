// `retake serve`: server replay. Answer clients with the recorded responses of a session until
// SIGINT/SIGTERM; misses follow --on-miss and are explained on stderr and in the response.
#include <pthread.h>

#include <csignal>
#include <iostream>

#include "cli/command.h"
#include "query/filter.h"
#include "replay/server/server_replay.h"
#include "replay/server/session_flows.h"
#include "store/flow_store.h"

namespace retake::cli {

namespace {

struct ServeArgs {
  std::string session;
  std::string listen = "127.0.0.1:8081";
  std::string db;
  std::string filter;
  std::vector<std::string> ignore_params;
  bool ignore_body = false;
  bool ignore_host = false;
  bool ignore_port = false;
  std::vector<std::string> ignore_fields;
  std::vector<std::string> use_headers;
  std::string on_exhausted = "repeat-last";
  std::string on_miss = "404";
  std::string latency = "none";
  bool no_refresh = false;
  bool no_match_header = false;
  std::string origin;
  std::string cert;
  std::string key;
  unsigned threads = 0;
  bool quiet = false;
};


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

  ServeOptions options;
  auto listen = flow::parse_listen_address(args.listen);
  if (listen) {
    options.listen_host = listen->host;
    options.listen_port = listen->port;
  }
  if (!listen)
    throw UsageError("--listen: expected HOST:PORT, got '" + args.listen + "'");
  auto exhausted = on_exhausted_from_name(args.on_exhausted);
  if (!exhausted)
    throw UsageError("--on-exhausted: expected repeat-last, cycle or miss, got '" +
                     args.on_exhausted + "'");
  auto miss = on_miss_from_name(args.on_miss);
  if (!miss)
    throw UsageError("--on-miss: expected 404, 502, forward or kill, got '" + args.on_miss + "'");
  auto latency = Latency::parse(args.latency);
  if (!latency)
    throw UsageError(
        "--latency: expected recorded, none or a delay in milliseconds (at most 60000), got '" +
        args.latency + "'");
  if (args.cert.empty() != args.key.empty()) throw UsageError("--cert and --key go together");
  options.match.ignore_params = args.ignore_params;
  options.match.ignore_body = args.ignore_body;
  options.match.ignore_host = args.ignore_host;
  options.match.ignore_port = args.ignore_port;
  options.match.ignore_fields = args.ignore_fields;
  options.match.use_headers = args.use_headers;
  options.match.on_exhausted = *exhausted;
  options.on_miss = *miss;
  options.latency = *latency;
  options.refresh = !args.no_refresh;
  options.match_header = !args.no_match_header;
  options.origin = args.origin;
  options.cert_file = args.cert;
  options.key_file = args.key;
  options.threads = args.threads;
  if (args.quiet)
    options.log = [](std::string_view line) {
      // Misses still reach stderr: they are what a person running a mock needs to see.
      if (line.substr(0, 5) == "MISS " || line.find("failed") != std::string_view::npos)
        std::cerr << "retake serve: " << line << '\n';
    };

  std::optional<query::Filter> filter;
  if (!args.filter.empty()) {
    auto parsed = query::Filter::parse(args.filter);
    if (!parsed) throw UsageError("--filter: " + parsed.status().message());
    filter = std::move(parsed.value());
  }

  store::StoreOptions store_options;
  store_options.path = resolve_db(args.db);
  store_options.read_only = true;
  store_options.create_if_missing = false;
  auto store = store::FlowStore::open(store_options);
  if (!store) return fail(store.status());
  auto flows = load_session_flows(**store, args.session, filter ? &*filter : nullptr);
  if (!flows) return fail(flows.status());
  size_t loaded = flows->size();
  store->reset();  // everything is in memory now; do not hold the store open

  auto server = ServerReplay::create(std::move(flows.value()), std::move(options));
  if (!server) {
    if (server.status().code() == Errc::invalid_argument)
      throw UsageError(server.status().message());
    return fail(server.status());
  }

  auto bound = (*server)->start();
  if (!bound) return fail(bound.status());
  const auto& m = (*server)->matcher();
  std::cerr << "retake: serving session '" << args.session << "': " << m.flows().size()
            << " recorded responses under " << m.key_count() << " request keys ("
            << (loaded - m.flows().size()) << " flows without a response skipped)\n"
            << "retake: listening on " << (args.cert.empty() ? "http://" : "https://") << *bound
            << "  (on miss: " << on_miss_name(*miss) << ", Ctrl-C to stop)\n";

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "retake: stopping...\n";
  (*server)->stop();
  std::cerr << "retake: " << (*server)->report().to_text();
  return kExitOk;
}

}  // namespace

void add_serve_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve", "Server replay: answer clients with a session's recorded responses (a mock server)");
  cmd->add_option("--session", args->session, "Session whose flows are served")
      ->type_name("NAME")
      ->required();
  cmd->add_option("--listen", args->listen,
                  "Address to listen on (default 127.0.0.1:8081; port 0: any)")
      ->type_name("HOST:PORT");
  add_db_option(*cmd, args->db);
  cmd->add_option("--filter", args->filter, "Serve only the session's flows matching this filter")
      ->type_name("EXPR");
  cmd->add_option("--ignore-param", args->ignore_params, "Query parameter left out of matching")
      ->type_name("NAME");
  auto* ignore_body =
      cmd->add_flag("--ignore-body", args->ignore_body, "Leave request bodies out of matching");
  cmd->add_flag("--ignore-host", args->ignore_host, "Leave scheme and host out of matching");
  cmd->add_flag("--ignore-port", args->ignore_port, "Leave the port out of matching");
  auto* ignore_field =
      cmd->add_option("--ignore-field", args->ignore_fields,
                      "Body field left out of matching: a JSON path ($.meta.requestId, "
                      "$.items[*].ts) or a form field name")
          ->type_name("PATH");
  ignore_body->excludes(ignore_field);
  cmd->add_option("--use-header", args->use_headers,
                  "Request header whose value joins the match key")
      ->type_name("NAME");
  cmd->add_option("--on-exhausted", args->on_exhausted,
                  "After a request's last recorded response: repeat-last (default), cycle, miss")
      ->type_name("POLICY");
  cmd->add_option(
         "--on-miss", args->on_miss,
         "Unmatched requests: 404 (default), 502, forward (to the recorded upstream), kill")
      ->type_name("POLICY");
  cmd->add_option("--latency", args->latency,
                  "Delay before each answer: none (default), recorded, or milliseconds")
      ->type_name("MODE");
  cmd->add_flag(
      "--no-refresh", args->no_refresh,
      "Serve Date/Expires/Last-Modified/Set-Cookie expiry as recorded instead of shifted to now");
  cmd->add_flag("--no-match-header", args->no_match_header, "Do not add X-Retake-Match: <flow id>");
  cmd->add_option("--origin", args->origin,
                  "Origin requests are taken to address (default: from the Host header or the "
                  "session's only origin)")
      ->type_name("URL");
  cmd->add_option("--cert", args->cert, "Serve HTTPS with this PEM certificate chain")
      ->type_name("FILE");
  cmd->add_option("--key", args->key, "The PEM private key of --cert")->type_name("FILE");
  cmd->add_option("--threads", args->threads, "Network threads (default: one per core)");
  cmd->add_flag("-q,--quiet", args->quiet, "Print only misses, not a line per request");
  cmd->callback([args, &action] { action = [args] { return run_serve(*args); }; });
}

}  // namespace retake::cli
