// `retake replay`: re-issue recorded flows against a target as a run; replayed flows and the
// run's metadata go to the store. Thin: parse, call replay::ClientReplay, print.
#include <pthread.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <iostream>

#include <boost/json.hpp>

#include "cli/command.h"
#include "cli/replay_options.h"
#include "query/filter.h"
#include "replay/client/client_replay.h"
#include "replay/client/run_store.h"
#include "store/flow_store.h"

namespace retake::cli {

namespace {

struct ReplayArgs {
  std::string db;
  std::string session;
  std::vector<uint64_t> flow_ids;
  std::string filter;
  std::string target;
  ReplayFlags replay;  // the options shared with `retake diff`
  bool json = false;
  bool fail_on_mismatch = false;
};

std::string ms(int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fms", static_cast<double>(ns) / 1e6);
  return buf;
}

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

std::string summary_json(const replay::ClientReplay& r, const replay::RunSummary& s,
                         bool jwt_note) {
  auto doc = boost::json::parse(replay::run_summary_json(s)).as_object();
  boost::json::array bindings;
  for (const auto& e : r.binding_events()) {
    boost::json::object b;
    b["rule"] = e.rule;
    b["capture"] = e.capture;
    b["source_flow"] = e.source_flow;
    b["flow"] = e.flow;
    b["resolved"] = e.resolved;
    b["where"] = e.where;
    bindings.push_back(std::move(b));
  }
  doc["bindings"] = std::move(bindings);
  if (jwt_note)
    doc["jwt_note"] =
        "JWTs with time claims were left unchanged: give --jwt-secret to re-sign them";
  return boost::json::serialize(doc);
}

void print_summary(const replay::ClientReplay& r, const replay::RunSummary& s) {
  std::cout << "run " << s.run_id << (s.interrupted ? " (interrupted)" : "") << "\n"
            << "  sent " << s.sent << " of " << s.total << ", completed " << s.completed
            << ", status mismatches " << s.mismatches << ", transport errors " << s.transport_errors
            << "\n"
            << "  latency p50 " << ms(s.p50_ns) << "  p95 " << ms(s.p95_ns) << "  p99 "
            << ms(s.p99_ns) << "\n";
  if (s.schedule_error_mean_ns)
    std::cout << "  schedule error mean " << ms(s.schedule_error_mean_ns) << "  max "
              << ms(s.schedule_error_max_ns) << "\n";
  std::cout << "  time shift " << s.shift_ns / replay::kNsPerSecond << "s: " << s.time_shift.shifted
            << " timestamps, " << s.time_shift.jwt_resigned << " JWTs re-signed\n";
  if (s.time_shift.jwt_unsigned)
    std::cout << "  note: " << s.time_shift.jwt_unsigned
              << " JWTs with time claims were left unchanged (give --jwt-secret to re-sign them)\n";
  std::cout << "  bindings applied " << s.bindings_applied << ", unresolved "
            << s.bindings_unresolved << "\n";
  size_t shown = 0;
  for (const auto& e : r.binding_events()) {
    if (shown++ >= 200) {
      std::cout << "    ... (see --json for all)\n";
      break;
    }
    std::cout << "    " << (e.resolved ? "bound     " : "UNRESOLVED ") << e.capture << " from flow "
              << e.source_flow << " into flow " << e.flow << ": " << e.where << "\n";
  }
  if (s.sink_dropped)
    std::cout << "  warning: " << s.sink_dropped
              << " replayed flows were not stored (queue full)\n";
}

int run_replay(ReplayArgs args) {
  if (args.session.empty() && args.flow_ids.empty())
    throw UsageError("give --session S or --flow ID");
  std::optional<query::Filter> filter;
  if (!args.filter.empty()) {
    auto parsed = query::Filter::parse(args.filter);
    if (!parsed) throw UsageError("--filter: " + parsed.status().message());
    filter = std::move(*parsed);
  }
  replay::ReplayOptions o = build_replay_options(args.replay);
  o.target = args.target;
  o.session = args.session;

  store::StoreOptions so;
  so.path = resolve_db(args.db);
  so.create_if_missing = false;
  auto store = store::FlowStore::open(so);
  if (!store) return fail(store.status());
  std::function<bool(const flow::Flow&)> predicate;
  if (filter) predicate = [&filter](const flow::Flow& f) { return filter->matches(f); };
  auto flows = replay::select_flows(**store, args.session, args.flow_ids, predicate);
  if (!flows) return fail(flows.status());

  store::FlowWriter writer(**store);
  replay::ClientReplay replay(std::move(*flows), o, &writer);

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  if (auto st = replay.start(); !st.ok()) throw UsageError(st.message());
  const bool tty = isatty(STDERR_FILENO) && !args.json;
  // Wakes every 100 ms: a redraw at most ~10x/s, and a stop signal is seen promptly.
  timespec tick{0, 100'000'000};
  bool interrupted = false;
  while (!replay.finished()) {
    int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig > 0 && !interrupted) {
      interrupted = true;
      if (tty) std::fputs("\n", stderr);
      std::cerr << "retake: stopping the run (requests in flight get 2s)...\n";
      replay.cancel();
    }
    if (tty) draw_progress(replay.progress());
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
    std::cout << summary_json(replay, summary, summary.time_shift.jwt_unsigned > 0) << "\n";
  else
    print_summary(replay, summary);
  return replay::exit_code(summary, args.fail_on_mismatch);
}

}  // namespace

void add_replay_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ReplayArgs>();
  auto* cmd = app.add_subcommand("replay", "Re-issue recorded flows against a target as a run");
  add_db_option(*cmd, args->db);
  cmd->add_option("--session", args->session, "Replay the flows of this session")
      ->type_name("NAME");
  cmd->add_option("--flow", args->flow_ids, "Replay these flows (repeatable)")->type_name("ID");
  cmd->add_option("--filter", args->filter,
                  "Only the selected flows matching this filter expression (~m POST, ~u /api ...)")
      ->type_name("EXPR");
  cmd->add_option("--target", args->target, "Send every flow to this scheme://host[:port]")
      ->type_name("URL");
  add_replay_flags(*cmd, args->replay);
  cmd->add_flag("--json", args->json, "Print the summary as JSON");
  cmd->add_flag("--fail-on-mismatch", args->fail_on_mismatch,
                "Exit 1 when any status differs from the recording");
  cmd->callback([args, &action] { action = [args] { return run_replay(*args); }; });
}

}  // namespace retake::cli
