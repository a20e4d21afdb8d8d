// `retake replay`: re-issue recorded flows against a target as a run; replayed flows and the
// run's metadata go to the store (or, with --remote, a daemon runs it into its store). Thin:
// parse into an ops::ReplayRequest, call ops and replay::ClientReplay, print.
#include <pthread.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "cli/remote.h"
#include "cli/replay_options.h"
#include "ops/replay_run.h"
#include "replay/client/client_replay.h"
#include "replay/client/run_store.h"
#include "store/flow_store.h"

namespace retake::cli {

namespace {

// The request is the one the gRPC API takes (ops::ReplayRequest): the flags write into it and
// ops checks and translates it, here, in the daemon, and for --remote alike.
struct ReplayArgs {
  std::string db;
  std::string min_free;
  ops::ReplayRequest request;
  bool json = false;
  bool fail_on_mismatch = false;
  std::string timeout = "30s";
  RemoteArgs remote;
};

void draw_progress(const replay::Progress& p) {
  double secs = static_cast<double>(p.elapsed_ns) / 1e9;
  double rate = secs > 0 ? static_cast<double>(p.sent) / secs : 0;
  uint64_t done = p.completed + p.errors;
  std::string eta = "-";
  if (rate > 0 && p.total > done) {
    char b[32];
    std::snprintf(b, sizeof b, "%.0fs", static_cast<double>(p.total - done) / rate);
    eta = b;
  }
  std::fprintf(stderr, "\r%llu/%llu  %.1f req/s  errors %llu  mismatches %llu  ETA %s   ",
               static_cast<unsigned long long>(done), static_cast<unsigned long long>(p.total),
               rate, static_cast<unsigned long long>(p.errors),
               static_cast<unsigned long long>(p.mismatches), eta.c_str());
  std::fflush(stderr);
}

// Through a daemon: the same request, the same progress line, the same summary printed.
int run_remote(const ReplayArgs& args, const sigset_t& stop_signals) {
  auto client = connected(control::RemoteReplay::connect(remote_options(args.remote)));
  const bool tty = isatty(STDERR_FILENO) && !args.json;
  bool interrupted = false;
  auto outcome =
      client->run(args.request, args.fail_on_mismatch, [&](const replay::Progress& p) {
        timespec now{0, 0};
        if (sigtimedwait(&stop_signals, nullptr, &now) > 0 && !interrupted) {
          interrupted = true;
          if (tty) std::fputs("\n", stderr);
          std::cerr << "retake: stopping the run (requests in flight get 2s)...\n";
          return false;
        }
        if (tty) draw_progress(p);
        return true;
      });
  if (tty) std::fputs("\n", stderr);
  if (!outcome) {
    if (outcome.status().code() == Errc::invalid_argument)
      throw UsageError(remote_flag_message(outcome.status()));
    return fail(outcome.status());
  }
  std::cout << (args.json ? outcome->report_json + "\n" : outcome->report_text);
  return outcome->exit_code;
}

int run_replay(ReplayArgs args) {
  apply_timeout(args.timeout, args.request);
  if (auto st = ops::validate(args.request); !st.ok()) throw UsageError(flag_message(st));

  // Blocked before any thread starts (the store's, the client's): a thread that does not block
  // them would take the default action and end the process before the run is stopped cleanly.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  if (!args.remote.address.empty()) return run_remote(args, stop_signals);

  const uint64_t min_free = parse_min_free(args.min_free);
  store::StoreOptions so;
  so.path = resolve_db(args.db);
  so.create_if_missing = false;
  auto store = store::FlowStore::open(so);
  if (!store) return fail(store.status());
  store::FlowWriter writer(**store, {.min_free_bytes = min_free});
  // The command prints the summary and reads the run back from the store: no per-flow results.
  auto prepared = ops::prepare_replay(**store, args.request, &writer, /*keep_results=*/false);
  if (!prepared) {
    if (prepared.status().code() == Errc::invalid_argument)
      throw UsageError(flag_message(prepared.status()));
    return fail(prepared.status());
  }
  auto& replay = **prepared;

  if (auto st = replay.start(); !st.ok()) throw UsageError(st.message());
  const bool tty = isatty(STDERR_FILENO) && !args.json;
  // Wakes every 10 ms, so the command ends promptly with its run and a stop signal is seen at
  // once; the progress line is redrawn every 10th wake (~10x/s).
  timespec tick{0, 10'000'000};
  bool interrupted = false;
  for (unsigned wakes = 0; !replay.finished(); ++wakes) {
    int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig > 0 && !interrupted) {
      interrupted = true;
      if (tty) std::fputs("\n", stderr);
      std::cerr << "retake: stopping the run (requests in flight get 2s)...\n";
      replay.cancel();
    }
    if (tty && wakes % 10 == 0) draw_progress(replay.progress());
  }
  auto summary = replay.wait();
  if (tty) {
    draw_progress(replay.progress());
    std::fputs("\n", stderr);
  }
  writer.stop();
  if (auto st = replay::save_run(**store, summary); !st.ok())
    std::cerr << "retake: could not store the run's metadata: " << st.to_string() << "\n";
  if (args.json)
    std::cout << ops::replay_report_json(replay, summary) << "\n";
  else
    std::cout << ops::replay_report_text(replay, summary);
  return replay::exit_code(summary, args.fail_on_mismatch);
}

}  // namespace

void add_replay_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ReplayArgs>();
  auto* cmd = app.add_subcommand("replay", "Re-issue recorded flows against a target as a run");
  add_db_option(*cmd, args->db);
  add_min_free_option(*cmd, args->min_free);
  cmd->add_option("--session", args->request.session, "Replay the flows of this session")
      ->type_name("NAME");
  cmd->add_option("--flow", args->request.flow, "Replay these flows (repeatable)")->type_name("ID");
  cmd->add_option("--filter", args->request.filter,
                  "Only the selected flows matching this filter expression (~m POST, ~u /api ...)")
      ->type_name("EXPR");
  cmd->add_option("--target", args->request.target, "Send every flow to this scheme://host[:port]")
      ->type_name("URL");
  add_replay_flags(*cmd, args->request, args->timeout);
  cmd->add_flag("--json", args->json, "Print the summary as JSON");
  cmd->add_flag("--fail-on-mismatch", args->fail_on_mismatch,
                "Exit 1 when any status differs from the recording");
  cmd->add_option("--run-id", args->request.run_id, "Name the run (default: run-DATE-TIME-xxxxxx)")
      ->type_name("ID");
  add_remote_options(*cmd, args->remote);
  cmd->callback([args, &action] { action = [args] { return run_replay(*args); }; });
}

}  // namespace retake::cli
