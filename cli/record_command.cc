// `retake record`: run the recording proxy until SIGINT/SIGTERM, writing flows to the store.
#include <csignal>
#include <filesystem>
#include <thread>
#include <ctime>
#include <iostream>
#include <pthread.h>
#include <unistd.h>

#include "cli/command.h"
#include "cli/remote.h"
#include "cli/replay_options.h"
#include "ops/replay_run.h"
#include "record/recorder.h"
#include "replay/server/proxy_responder.h"
#include "store/flow_store.h"

namespace retake::cli {

namespace {

struct RecordArgs {
  std::string mode = "explicit";
  std::string listen = "127.0.0.1:8080";
  std::string db;
  std::string session;
  std::string body_cap = "16MiB";
  std::string min_free;
  unsigned threads = 0;
  std::string idle_timeout = "60s";
  std::string upstream_timeout = "60s";
  std::string connect_timeout = "10s";
  bool quiet = false;
  bool insecure_upstream = false;
  std::string upstream_ca;
  std::string ignore_hosts;
  std::string allow_hosts;
  bool tls = false;
  std::string cert;
  std::string key;
  // --server-replay SESSION and its matching flags (shared with `retake serve`).
  ops::ServeRequest server_replay;
  RemoteArgs remote;
};

std::string flow_line(const flow::Flow& f) {
  std::string line = f.request.method + " " + f.request.url();
  if (f.response) line += " -> " + std::to_string(f.response->status);
  if (f.error) line += " !! " + std::string(flow::error_kind_name(f.error->kind)) + ": " +
                       f.error->message;
  return line;
}

// Through a daemon: it runs the recorder and owns the store; this command shows the flows as
// they are committed and stops the recorder on Ctrl-C, printing what a local run prints.
int run_remote_record(const RecordArgs& args, const record::RecorderOptions& options,
                      const sigset_t& stop_signals) {
  control::RemoteRecordRequest request;
  request.mode = args.mode;
  request.listen = args.listen;
  request.session = options.session;
  request.body_cap = options.body_cap;
  request.idle_timeout_ms = static_cast<uint32_t>(options.idle_timeout.count());
  request.upstream_timeout_ms = static_cast<uint32_t>(options.upstream_timeout.count());
  request.connect_timeout_ms = static_cast<uint32_t>(options.connect_timeout.count());
  request.threads = options.threads;
  request.insecure_upstream = options.insecure_upstream;
  if (!args.upstream_ca.empty())
    request.upstream_ca = std::filesystem::absolute(args.upstream_ca).string();
  request.ignore_hosts = options.ignore_hosts;
  request.allow_hosts = options.allow_hosts;
  request.tls = args.tls;
  // The daemon opens the files: absolute paths, as for --upstream-ca.
  if (!args.cert.empty()) request.cert = std::filesystem::absolute(args.cert).string();
  if (!args.key.empty()) request.key = std::filesystem::absolute(args.key).string();
  request.server_replay = args.server_replay;
  if (!request.server_replay.match_rules.empty())
    request.server_replay.match_rules =
        std::filesystem::absolute(request.server_replay.match_rules).string();
  auto client = connected(control::RemoteRecorder::connect(remote_options(args.remote)));
  auto started = client->start(request);
  if (!started) {
    if (started.status().code() == Errc::invalid_argument)
      throw UsageError(remote_flag_message(started.status()));
    return fail(started.status());
  }
  std::cerr << "retake: the daemon at " << args.remote.address << " records session '"
            << started->session << "'\nretake: proxy (" << args.mode << ") listening on "
            << (args.tls || !args.cert.empty() ? "https://" : "http://") << started->bound_address
            << "  (Ctrl-C to stop)\n";
  std::thread watcher;
  Status watch_status;
  if (!args.quiet) {
    watcher = std::thread([&] {
      bool tty = isatty(STDOUT_FILENO);
      watch_status = client->watch(started->session, [&](const flow::Flow& f) {
        std::cout << flow_line(f) << '\n';
        if (tty) std::cout.flush();
      });
    });
  }
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "retake: stopping...\n";
  auto stats = client->stop(started->recorder_id);
  if (watcher.joinable()) {
    // The last flows were committed when Stop returned; give their events a moment to arrive.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    client->cancel_watch();
    watcher.join();
  }
  std::cout.flush();
  if (!stats) return fail(stats.status());
  if (!watch_status.ok()) std::cerr << "retake: watching flows: " << watch_status.message() << '\n';
  std::cerr << "retake: recorded " << stats->flows << " flows into session '" << started->session
            << "' (" << stats->errors << " error flows, " << stats->flows_dropped
            << " not recorded because the store queue was full)\n";
  return kExitOk;
}

int run_record(RecordArgs args) {
  record::RecorderOptions options;
  if (auto st = record::parse_mode(args.mode, options); !st.ok()) throw UsageError(st.message());
  auto listen = flow::parse_listen_address(args.listen);
  if (!listen) throw UsageError("--listen: expected HOST:PORT, got '" + args.listen + "'");
  options.listen_host = listen->host;
  options.listen_port = listen->port;
  auto cap = parse_size(args.body_cap);
  if (!cap) throw UsageError("--body-cap: expected a size like 16MiB, got '" + args.body_cap + "'");
  options.body_cap = *cap;
  const uint64_t min_free = parse_min_free(args.min_free);
  options.threads = args.threads;
  auto idle = parse_duration_ms(args.idle_timeout);
  auto upstream = parse_duration_ms(args.upstream_timeout);
  auto connect = parse_duration_ms(args.connect_timeout);
  if (!idle || *idle <= 0) throw UsageError("--idle-timeout: expected a duration like 60s");
  if (!upstream || *upstream <= 0) throw UsageError("--upstream-timeout: expected a duration like 60s");
  if (!connect || *connect <= 0) throw UsageError("--connect-timeout: expected a duration like 10s");
  options.idle_timeout = std::chrono::milliseconds(*idle);
  options.upstream_timeout = std::chrono::milliseconds(*upstream);
  options.connect_timeout = std::chrono::milliseconds(*connect);
  options.session = args.session.empty() ? record::default_session_name() : args.session;
  if (args.cert.empty() != args.key.empty()) throw UsageError("--cert and --key go together");
  if ((args.tls || !args.cert.empty()) && options.mode == record::Mode::explicit_proxy)
    throw UsageError("--tls/--cert: a TLS listener is for reverse and transparent modes");
  options.insecure_upstream = args.insecure_upstream;
  options.upstream_ca_file = args.upstream_ca;
  options.ignore_hosts = args.ignore_hosts;
  options.allow_hosts = args.allow_hosts;
  options.listen_tls = args.tls || !args.cert.empty();
  options.cert_file = args.cert;
  options.key_file = args.key;

  // Block the stop signals before any thread starts (RocksDB's
  // background threads included) so that only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  if (!args.remote.address.empty()) return run_remote_record(args, options, stop_signals);
  store::StoreOptions store_options;
  store_options.path = resolve_db(args.db);
  auto store = store::FlowStore::open(store_options);
  if (!store) return fail(store.status());

  // Server replay: the index is built here, once, from the store; the proxy never reads the
  // disk to answer.
  std::unique_ptr<replay::server::ServerReplay> server_replay;
  std::unique_ptr<replay::server::ProxyResponder> responder;
  if (!args.server_replay.session.empty()) {
    if (args.server_replay.session == options.session)
      throw UsageError("--server-replay: the session served cannot be the one recorded into");
    auto prepared = ops::prepare_serve(**store, args.server_replay, [](std::string_view line) {
      if (line.substr(0, 5) == "MISS ") std::cerr << "retake: " << line << '\n';
    });
    if (!prepared) {
      if (prepared.status().code() == Errc::invalid_argument)
        throw UsageError(flag_message(prepared.status()));
      return fail(prepared.status());
    }
    server_replay = std::move(prepared->server);
    responder = std::make_unique<replay::server::ProxyResponder>(*server_replay);
    options.responder = responder.get();
    std::cerr << "retake: answering from session '" << args.server_replay.session
              << "': " << server_replay->matcher().flows().size()
              << " recorded responses (on miss: " << args.server_replay.on_miss << ")\n";
  }
  store::FlowWriter writer(**store, {.min_free_bytes = min_free});
  if (!args.quiet) {
    // Runs on the writer thread: flush per line only for a person watching a terminal.
    bool tty = isatty(STDOUT_FILENO);
    writer.on_written([tty](const flow::Flow& f) {
      std::cout << flow_line(f) << '\n';
      if (tty) std::cout.flush();
    });
  }

  auto recorder = record::Recorder::create(options, writer);
  if (!recorder) throw UsageError(recorder.status().message());


  auto bound = (*recorder)->start();
  if (!bound) return fail(bound.status());
  std::cerr << "retake: recording session '" << options.session << "' into "
            << store_options.path << "\nretake: proxy (" << args.mode << ") listening on "
            << (options.listen_tls ? "https://" : "http://") << *bound << "  (Ctrl-C to stop)\n";

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "retake: stopping...\n";
  (*recorder)->stop();
  writer.stop();
  auto rs = (*recorder)->stats();
  auto ws = writer.stats();
  if (server_replay) std::cerr << "retake: " << server_replay->report().to_text();
  std::cerr << "retake: recorded " << ws.written << " flows into session '" << options.session
            << "' (" << rs.errors << " error flows, " << (rs.flows_dropped + ws.dropped)
            << " not recorded because the store queue was full, " << ws.failed
            << " failed to write)\n";
  return ws.failed ? kExitFailure : kExitOk;
}

}  // namespace

void add_record_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<RecordArgs>();
  auto* cmd = app.add_subcommand("record", "Run the recording proxy and store every flow");
  cmd->add_option("--mode", args->mode,
                  "explicit (HTTP proxy, default), reverse:http[s]://HOST:PORT, transparent")
      ->type_name("MODE");
  cmd->add_option("--listen", args->listen, "Address to listen on (default 127.0.0.1:8080)")
      ->type_name("HOST:PORT");
  add_db_option(*cmd, args->db);
  cmd->add_option("--session", args->session,
                  "Session to record into (default: rec-YYYYmmdd-HHMMSS)")
      ->type_name("NAME");
  cmd->add_option("--body-cap", args->body_cap,
                  "Bytes of each body stored; the rest is forwarded, not stored (default 16MiB)")
      ->type_name("SIZE");
  add_min_free_option(*cmd, args->min_free);
  cmd->add_option("--threads", args->threads, "Network threads (default: one per core)");
  cmd->add_option("--idle-timeout", args->idle_timeout,
                  "Close idle client connections after this (default 60s)")
      ->type_name("DURATION");
  cmd->add_option("--upstream-timeout", args->upstream_timeout,
                  "Answer 504 when the upstream is silent this long (default 60s)")
      ->type_name("DURATION");
  cmd->add_option("--connect-timeout", args->connect_timeout,
                  "Answer 502 when connecting to the upstream takes this long (default 10s)")
      ->type_name("DURATION");
  cmd->add_flag("--insecure-upstream", args->insecure_upstream,
                "Do not verify upstream TLS certificates");
  cmd->add_option("--upstream-ca", args->upstream_ca,
                  "PEM file of extra roots trusted for upstream TLS (beside the system store)")
      ->type_name("FILE");
  cmd->add_option("--ignore-hosts", args->ignore_hosts,
                  "Relay CONNECTs to matching host or host:port undecrypted (RE2 regex)")
      ->type_name("REGEX");
  cmd->add_option("--allow-hosts", args->allow_hosts,
                  "Intercept only CONNECTs to matching host or host:port (RE2 regex)")
      ->type_name("REGEX");
  cmd->add_flag("--tls", args->tls,
                "Reverse/transparent: serve HTTPS with a certificate minted by retake's CA");
  cmd->add_option("--cert", args->cert, "Reverse/transparent: serve HTTPS with this PEM chain")
      ->type_name("FILE");
  cmd->add_option("--key", args->key, "The PEM private key of --cert")->type_name("FILE");
  cmd->add_flag("-q,--quiet", args->quiet, "Do not print a line for each recorded flow");
  auto* server_replay =
      cmd->add_option("--server-replay", args->server_replay.session,
                      "Answer requests from this session's recordings (misses per --on-miss; "
                      "default 404, never the network) and record what was served")
          ->type_name("SESSION");
  add_server_replay_flags(*cmd, args->server_replay);
  cmd->add_option("--latency", args->server_replay.latency,
                  "Server replay: delay before each answer: none (default), recorded, or "
                  "milliseconds")
      ->type_name("MODE");
  add_remote_options(*cmd, args->remote);
  for (const char* name :
       {"--filter", "--ignore-param", "--ignore-body", "--ignore-field", "--ignore-host",
        "--ignore-port", "--use-header", "--on-exhausted", "--on-miss", "--no-refresh",
        "--shift-body-time", "--jwt-secret", "--match-rules", "--no-match-header", "--latency"})
    cmd->get_option(name)->needs(server_replay);
  cmd->callback([args, &action] { action = [args] { return run_record(*args); }; });
}

}  // namespace retake::cli
