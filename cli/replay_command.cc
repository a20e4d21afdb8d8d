// `retake replay`: re-issue recorded flows against a target as a run; replayed flows and the
// run's metadata go to the store. Thin: parse, call replay::ClientReplay, print.
#include <pthread.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <iostream>

#include <boost/json.hpp>

#include "cli/command.h"
#include "query/filter.h"
#include "net/tls/tls_context.h"
#include "replay/client/client_replay.h"
#include "replay/client/rules.h"
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
  std::vector<std::string> map_host;
  std::string pace = "recorded";
  double speed = 1.0;
  double rate = 0;
  size_t concurrency = 64;
  unsigned loops = 1;
  std::string shift_time;
  std::string at;
  bool no_shift = false;
  std::string jwt_secret;
  std::string bind = "auto";
  std::vector<std::string> bind_rules;
  std::string rules;
  bool insecure = false;
  bool json = false;
  bool fail_on_mismatch = false;
  std::string timeout = "30s";
  unsigned threads = 1;
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
  replay::ReplayOptions o;
  if (args.session.empty() && args.flow_ids.empty())
    throw UsageError("give --session S or --flow ID");
  std::optional<query::Filter> filter;
  if (!args.filter.empty()) {
    auto parsed = query::Filter::parse(args.filter);
    if (!parsed) throw UsageError("--filter: " + parsed.status().message());
    filter = std::move(*parsed);
  }
  o.target = args.target;
  for (const auto& m : args.map_host) {
    auto hm = replay::parse_host_mapping(m);
    if (!hm) throw UsageError(hm.status().message());
    o.host_map.push_back(*hm);
  }
  if (args.pace == "recorded")
    o.pace = replay::Pace::recorded;
  else if (args.pace == "asap")
    o.pace = replay::Pace::asap;
  else
    throw UsageError("--pace: expected recorded or asap, got '" + args.pace + "'");
  if (!(args.speed > 0)) throw UsageError("--speed must be > 0");
  if (args.rate < 0) throw UsageError("--rate must be >= 0");
  if (args.concurrency == 0) throw UsageError("--concurrency must be >= 1");
  if (args.loops == 0) throw UsageError("--loop must be >= 1");
  o.speed = args.speed;
  o.rate = args.rate;
  o.concurrency = args.concurrency;
  o.loops = args.loops;
  int shift_opts = !args.shift_time.empty() + !args.at.empty() + args.no_shift;
  if (shift_opts > 1) throw UsageError("--shift-time, --at and --no-shift exclude each other");
  if (!args.shift_time.empty()) {
    auto d = replay::parse_shift(args.shift_time);
    if (!d)
      throw UsageError("--shift-time: expected a duration like +2h or -30m, got '" +
                       args.shift_time + "'");
    o.shift_mode = replay::TimeShiftMode::offset;
    o.shift_ns = *d;
  } else if (!args.at.empty()) {
    auto t = replay::parse_instant(args.at);
    if (!t)
      throw UsageError("--at: expected an RFC 3339 time like 2030-01-01T00:00:00Z, got '" +
                       args.at + "'");
    o.shift_mode = replay::TimeShiftMode::at;
    o.at_ns = *t;
  } else if (args.no_shift) {
    o.shift_mode = replay::TimeShiftMode::none;
  }
  o.jwt_secret = args.jwt_secret;
  if (args.bind == "auto")
    o.bindings.automatic = true;
  else if (args.bind == "none")
    o.bindings.automatic = false;
  else
    throw UsageError("--bind: expected auto or none, got '" + args.bind + "'");
  for (const auto& text : args.bind_rules) {
    auto rule = replay::parse_binding_rule(text);
    if (!rule) throw UsageError(rule.status().message());
    o.bindings.rules.push_back(*rule);
  }
  if (!args.rules.empty()) {
    auto rules = replay::load_rules_file(args.rules);
    if (!rules) return fail(rules.status());
    o.mutate = [r = std::make_shared<replay::RuleSet>(std::move(*rules))](
                   flow::Request& req, const flow::Flow& origin) { r->apply(req, origin); };
  }
  auto timeout = parse_duration_ms(args.timeout);
  if (!timeout || *timeout <= 0) throw UsageError("--timeout: expected a duration like 30s");
  o.read_timeout = std::chrono::milliseconds(*timeout);
  o.threads = std::max(1u, args.threads);
  o.insecure = args.insecure;
  o.session = args.session;

  auto upstream_tls = tls::UpstreamTlsContext::create({.insecure = args.insecure});
  if (!upstream_tls) return fail(upstream_tls.status());
  std::shared_ptr<tls::UpstreamTlsContext> owner(std::move(*upstream_tls));
  o.tls_context = std::shared_ptr<boost::asio::ssl::context>(owner, &owner->asio_context());

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
  cmd->add_option("--map-host", args->map_host,
                  "Connect to ADDR:PORT for HOST (repeatable; Host and SNI keep HOST)")
      ->type_name("HOST=ADDR:PORT");
  cmd->add_option("--pace", args->pace, "recorded (keep the recorded gaps, default) or asap")
      ->type_name("PACE");
  cmd->add_option("--speed", args->speed, "Play recorded gaps this many times faster (default 1)");
  cmd->add_option("--rate", args->rate, "Cap on requests started per second (default: none)");
  cmd->add_option("--concurrency", args->concurrency, "Most requests in flight (default 64)");
  cmd->add_option("--loop", args->loops, "Replay the selection this many times (default 1)");
  cmd->add_option("--shift-time", args->shift_time, "Shift timestamps by this duration (+2h, -30m)")
      ->type_name("DURATION");
  cmd->add_option("--at", args->at, "Shift timestamps so the recording starts at this time")
      ->type_name("RFC3339");
  cmd->add_flag("--no-shift", args->no_shift,
                "Leave timestamps as recorded (default: shift by now - recording time)");
  cmd->add_option("--jwt-secret", args->jwt_secret,
                  "HS256 key to re-sign JWTs whose time claims were shifted")
      ->type_name("KEY");
  cmd->add_option("--bind", args->bind, "auto (default): rebind server-generated values; none: off")
      ->type_name("MODE");
  cmd->add_option("--bind-rule", args->bind_rules,
                  "Explicit binding NAME=header:H|cookie:C|hidden:N|regex:RE (repeatable)")
      ->type_name("RULE");
  cmd->add_option("--rules", args->rules, "Mutation rules file (YAML or JSON)")->type_name("FILE");
  cmd->add_flag("--insecure", args->insecure, "Do not verify the target's TLS certificate");
  cmd->add_flag("--json", args->json, "Print the summary as JSON");
  cmd->add_flag("--fail-on-mismatch", args->fail_on_mismatch,
                "Exit 1 when any status differs from the recording");
  cmd->add_option("--timeout", args->timeout, "Per-read deadline (default 30s)")
      ->type_name("DURATION");
  cmd->add_option("--threads", args->threads, "Network threads (default 1)");
  cmd->callback([args, &action] { action = [args] { return run_replay(*args); }; });
}

}  // namespace retake::cli
