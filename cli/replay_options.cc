#include "cli/replay_options.h"

#include <memory>
#include <stdexcept>

#include "cli/command.h"
#include "net/tls/tls_context.h"
#include "replay/client/rules.h"

namespace retake::cli {

void add_replay_flags(CLI::App& cmd, ReplayFlags& f) {
  cmd.add_option("--map-host", f.map_host,
                 "Connect to ADDR:PORT for HOST (repeatable; Host and SNI keep HOST)")
      ->type_name("HOST=ADDR:PORT");
  cmd.add_option("--pace", f.pace, "recorded (keep the recorded gaps) or asap (default " +
                                       f.pace + ")")
      ->type_name("PACE");
  cmd.add_option("--speed", f.speed, "Play recorded gaps this many times faster (default 1)");
  cmd.add_option("--rate", f.rate, "Cap on requests started per second (default: none)");
  cmd.add_option("--concurrency", f.concurrency, "Most requests in flight (default 64)");
  cmd.add_option("--loop", f.loops, "Replay the selection this many times (default 1)");
  cmd.add_option("--shift-time", f.shift_time, "Shift timestamps by this duration (+2h, -30m)")
      ->type_name("DURATION");
  cmd.add_option("--at", f.at, "Shift timestamps so the recording starts at this time")
      ->type_name("RFC3339");
  cmd.add_flag("--no-shift", f.no_shift,
               "Leave timestamps as recorded (default: shift by now - recording time)");
  cmd.add_option("--jwt-secret", f.jwt_secret,
                 "HS256 key to re-sign JWTs whose time claims were shifted")
      ->type_name("KEY");
  cmd.add_option("--bind", f.bind, "auto (default): rebind server-generated values; none: off")
      ->type_name("MODE");
  cmd.add_option("--bind-rule", f.bind_rules,
                 "Explicit binding NAME=header:H|cookie:C|hidden:N|regex:RE (repeatable)")
      ->type_name("RULE");
  cmd.add_option("--rules", f.rules, "Mutation rules file (YAML or JSON)")->type_name("FILE");
  cmd.add_flag("--insecure", f.insecure, "Do not verify the target's TLS certificate");
  cmd.add_option("--timeout", f.timeout, "Per-read deadline (default 30s)")->type_name("DURATION");
  cmd.add_option("--threads", f.threads, "Network threads (default 1)");
}

replay::ReplayOptions build_replay_options(const ReplayFlags& args) {
  replay::ReplayOptions o;
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
    if (!rules) throw std::runtime_error(rules.status().message());
    o.mutate = [r = std::make_shared<replay::RuleSet>(std::move(*rules))](
                   flow::Request& req, const flow::Flow& origin) { r->apply(req, origin); };
  }
  auto timeout = parse_duration_ms(args.timeout);
  if (!timeout || *timeout <= 0) throw UsageError("--timeout: expected a duration like 30s");
  o.read_timeout = std::chrono::milliseconds(*timeout);
  o.threads = std::max(1u, args.threads);
  o.insecure = args.insecure;

  auto upstream_tls = tls::UpstreamTlsContext::create({.insecure = args.insecure});
  if (!upstream_tls) throw std::runtime_error(upstream_tls.status().message());
  std::shared_ptr<tls::UpstreamTlsContext> owner(std::move(*upstream_tls));
  o.tls_context = std::shared_ptr<boost::asio::ssl::context>(owner, &owner->asio_context());
  return o;
}

}  // namespace retake::cli
