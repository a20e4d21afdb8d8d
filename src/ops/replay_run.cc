// Client and server replay requests: one check, one translation, one report, for the CLI and
// the gRPC Replay service alike.
#include "ops/replay_run.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>

#include "net/tls/tls_context.h"
#include "query/filter.h"
#include "replay/client/rules.h"
#include "replay/client/run_store.h"
#include "replay/client/time_shift.h"
#include "replay/server/match_rules.h"
#include "replay/server/session_flows.h"

namespace retake::ops {

namespace {

// Library parsers name the CLI flag in their messages ("--map-host: expected ..."); the field
// name leads here, so a flag prefix would say it twice.
Status invalid(std::string_view field, std::string_view message) {
  if (message.starts_with("--")) {
    auto colon = message.find(": ");
    if (colon != std::string_view::npos && message.find(' ') > colon)
      message.remove_prefix(colon + 2);
  }
  return {Errc::invalid_argument, std::string(field) + ": " + std::string(message)};
}

Status check_text(std::string_view field, const std::string& value,
                  size_t limit = kMaxReplayTextBytes) {
  if (value.size() > limit)
    return invalid(
        field, "at most " + std::to_string(limit) + " bytes, got " + std::to_string(value.size()));
  for (unsigned char c : value)
    if (c < 0x20 || c == 0x7f) return invalid(field, "control characters are not allowed");
  return {};
}

Status check_list(std::string_view field, const std::vector<std::string>& values) {
  if (values.size() > kMaxReplayListItems)
    return invalid(field, "at most " + std::to_string(kMaxReplayListItems) + " entries");
  for (const auto& v : values)
    if (auto st = check_text(field, v); !st.ok()) return st;
  return {};
}

Status check_filter(std::string_view field, const std::string& text) {
  if (auto st = check_text(field, text); !st.ok()) return st;
  if (text.empty()) return {};
  auto parsed = query::Filter::parse(text);
  if (!parsed) return invalid(field, parsed.status().message());
  return {};
}

// Rules' `when:` scopes in the filter language (`~u /login & ~m POST`).
replay::ScopeCompiler filter_scopes() {
  return [](std::string_view text) -> Result<replay::FlowPredicate> {
    auto parsed = query::Filter::parse(text);
    if (!parsed) return parsed.status();
    auto filter = std::make_shared<query::Filter>(std::move(*parsed));
    return replay::FlowPredicate(
        [filter](const flow::Flow& f) { return filter->matches(f); });
  };
}

// A quoted excerpt of user input for messages (bounded: the input may be 4 KiB).
std::string quoted(const std::string& text) {
  return "'" + (text.size() > 200 ? text.substr(0, 200) + "..." : text) + "'";
}

std::string ms(int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fms", static_cast<double>(ns) / 1e6);
  return buf;
}

}  // namespace

Status validate(const ReplayRequest& r) {
  if (r.session.empty() && r.flow.empty())
    return invalid("session", "give a session or flow ids to replay");
  if (auto st = check_text("session", r.session, 256); !st.ok()) return st;
  if (r.flow.size() > kMaxReplayListItems)
    return invalid("flow", "at most " + std::to_string(kMaxReplayListItems) + " ids");
  for (auto id : r.flow)
    if (id == 0) return invalid("flow", "0 is not a flow id");
  if (auto st = check_filter("filter", r.filter); !st.ok()) return st;
  if (auto st = check_text("target", r.target); !st.ok()) return st;
  if (auto st = check_list("map_host", r.map_host); !st.ok()) return st;
  for (const auto& m : r.map_host)
    if (auto hm = replay::parse_host_mapping(m); !hm)
      return invalid("map_host", hm.status().message());
  if (r.pace != "recorded" && r.pace != "asap")
    return invalid("pace", "expected recorded or asap, got " + quoted(r.pace));
  if (!(r.speed > 0) || !(r.speed <= kMaxReplaySpeed))
    return invalid("speed", "must be > 0 and at most 1000000");
  if (!(r.rate >= 0) || !(r.rate <= kMaxReplayRate))
    return invalid("rate", "must be 0 (no cap) .. 1000000");
  if (r.concurrency == 0 || r.concurrency > kMaxReplayConcurrency)
    return invalid("concurrency", "must be 1.." + std::to_string(kMaxReplayConcurrency));
  if (r.loop == 0 || r.loop > kMaxReplayLoops)
    return invalid("loop", "must be 1.." + std::to_string(kMaxReplayLoops));
  int shift_options = !r.shift_time.empty() + !r.at.empty() + r.no_shift;
  if (shift_options > 1)
    return invalid("shift_time", "shift_time, at and no_shift exclude each other");
  if (!r.shift_time.empty() && !replay::parse_shift(r.shift_time))
    return invalid("shift_time",
                   "expected a duration like +2h or -30m, got " + quoted(r.shift_time));
  if (!r.at.empty() && !replay::parse_instant(r.at))
    return invalid("at",
                   "expected an RFC 3339 time like 2030-01-01T00:00:00Z, got " + quoted(r.at));
  if (auto st = check_text("jwt_secret", r.jwt_secret); !st.ok()) return st;
  if (r.bind != "auto" && r.bind != "none")
    return invalid("bind", "expected auto or none, got " + quoted(r.bind));
  if (auto st = check_list("bind_rule", r.bind_rule); !st.ok()) return st;
  for (const auto& text : r.bind_rule)
    if (auto rule = replay::parse_binding_rule(text); !rule)
      return invalid("bind_rule", rule.status().message());
  if (auto st = check_text("rules", r.rules); !st.ok()) return st;
  if (r.rules_text.size() > kMaxRulesTextBytes) return invalid("rules_text", "at most 4 MiB");
  if (r.timeout_ms <= 0 || r.timeout_ms > kMaxReplayTimeoutMs)
    return invalid("timeout_ms", "must be 1.." + std::to_string(kMaxReplayTimeoutMs) + " ms");
  if (r.threads > kMaxReplayThreads)
    return invalid("threads", "at most " + std::to_string(kMaxReplayThreads));
  if (auto st = check_text("run_id", r.run_id, 256); !st.ok()) return st;
  if (r.run_id.find('/') != std::string::npos) return invalid("run_id", "'/' is not allowed");
  return {};
}

Result<replay::ReplayOptions> replay_options(const ReplayRequest& r) {
  if (auto st = validate(r); !st.ok()) return st;
  replay::ReplayOptions o;
  o.target = r.target;
  for (const auto& m : r.map_host) o.host_map.push_back(replay::parse_host_mapping(m).value());
  o.pace = r.pace == "asap" ? replay::Pace::asap : replay::Pace::recorded;
  o.speed = r.speed;
  o.rate = r.rate;
  o.concurrency = static_cast<size_t>(r.concurrency);
  o.loops = static_cast<unsigned>(r.loop);
  if (!r.shift_time.empty()) {
    o.shift_mode = replay::TimeShiftMode::offset;
    o.shift_ns = *replay::parse_shift(r.shift_time);
  } else if (!r.at.empty()) {
    o.shift_mode = replay::TimeShiftMode::at;
    o.at_ns = *replay::parse_instant(r.at);
  } else if (r.no_shift) {
    o.shift_mode = replay::TimeShiftMode::none;
  }
  o.jwt_secret = r.jwt_secret;
  o.bindings.automatic = r.bind == "auto";
  for (const auto& text : r.bind_rule)
    o.bindings.rules.push_back(replay::parse_binding_rule(text).value());
  if (!r.rules_text.empty() || !r.rules.empty()) {
    auto rules = r.rules_text.empty() ? replay::load_rules_file(r.rules, filter_scopes())
                                      : replay::parse_rules(r.rules_text,
                                                            r.rules.empty() ? "rules" : r.rules,
                                                            filter_scopes());
    if (!rules) return Status(rules.status().code(), "rules: " + rules.status().message());
    for (const auto& binding : rules->bindings()) o.bindings.rules.push_back(binding);
    o.mutate = [set = std::make_shared<replay::RuleSet>(std::move(*rules))](
                   flow::Request& req, const flow::Flow& origin) { set->apply(req, origin); };
  }
  o.read_timeout = std::chrono::milliseconds(r.timeout_ms);
  o.threads = std::max(1u, r.threads);
  o.insecure = r.insecure;
  o.session = r.session;
  o.run_id = r.run_id;
  o.keep_flows = false;  // the CLI and the daemon read the run's flows from the store
  tls::UpstreamTlsOptions tls_options;
  tls_options.insecure = r.insecure;
  // The system roots (25-40 ms to parse) are loaded by the first https exchange: a replay
  // against plain HTTP targets never reads them.
  tls_options.lazy_system_roots = true;
  auto upstream_tls = tls::UpstreamTlsContext::create(tls_options);
  if (!upstream_tls) return upstream_tls.status();
  std::shared_ptr<tls::UpstreamTlsContext> owner(std::move(*upstream_tls));
  o.tls_context = std::shared_ptr<boost::asio::ssl::context>(owner, &owner->asio_context());
  o.before_first_tls = [owner] { owner->ensure_system_roots(); };
  return o;
}

Result<std::unique_ptr<replay::ClientReplay>> prepare_replay(store::FlowStore& store,
                                                             const ReplayRequest& request,
                                                             flow::FlowSink* sink,
                                                             bool keep_results) {
  auto options = replay_options(request);
  if (!options) return options.status();
  if (!keep_results) options->max_results = 0;
  std::function<bool(const flow::Flow&)> predicate;
  if (!request.filter.empty()) {
    auto filter = std::make_shared<query::Filter>(query::Filter::parse(request.filter).value());
    predicate = [filter](const flow::Flow& f) { return filter->matches(f); };
  }
  auto flows = replay::select_flows(store, request.session, request.flow, predicate);
  if (!flows) return flows.status();
  return std::make_unique<replay::ClientReplay>(std::move(*flows), std::move(*options), sink);
}

std::string replay_report_json(const replay::ClientReplay& r, const replay::RunSummary& s) {
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
  if (s.time_shift.jwt_unsigned > 0)
    doc["jwt_note"] =
        "JWTs with time claims were left unchanged: give --jwt-secret to re-sign them";
  return boost::json::serialize(doc);
}

std::string replay_report_text(const replay::ClientReplay& r, const replay::RunSummary& s) {
  std::ostringstream out;
  out << "run " << s.run_id << (s.interrupted ? " (interrupted)" : "") << "\n"
      << "  sent " << s.sent << " of " << s.total << ", completed " << s.completed
      << ", status mismatches " << s.mismatches << ", transport errors " << s.transport_errors
      << "\n"
      << "  latency p50 " << ms(s.p50_ns) << "  p95 " << ms(s.p95_ns) << "  p99 " << ms(s.p99_ns)
      << "\n";
  if (s.schedule_error_mean_ns)
    out << "  schedule error mean " << ms(s.schedule_error_mean_ns) << "  max "
        << ms(s.schedule_error_max_ns) << "\n";
  out << "  time shift " << s.shift_ns / replay::kNsPerSecond << "s: " << s.time_shift.shifted
      << " timestamps, " << s.time_shift.jwt_resigned << " JWTs re-signed\n";
  if (s.time_shift.jwt_unsigned)
    out << "  note: " << s.time_shift.jwt_unsigned
        << " JWTs with time claims were left unchanged (give --jwt-secret to re-sign them)\n";
  out << "  bindings applied " << s.bindings_applied << ", unresolved " << s.bindings_unresolved
      << "\n";
  size_t shown = 0;
  for (const auto& e : r.binding_events()) {
    if (shown++ >= 200) {
      out << "    ... (see --json for all)\n";
      break;
    }
    out << "    " << (e.resolved ? "bound     " : "UNRESOLVED ") << e.capture << " from flow "
        << e.source_flow << " into flow " << e.flow << ": " << e.where << "\n";
  }
  if (s.sink_dropped)
    out << "  warning: " << s.sink_dropped << " replayed flows were not stored (queue full)\n";
  return out.str();
}

Result<replay::server::ServeOptions> serve_options(const ServeRequest& r) {
  using namespace replay::server;
  ServeOptions options;
  if (r.session.empty()) return invalid("session", "required");
  if (auto st = check_text("session", r.session, 256); !st.ok()) return st;
  auto listen = r.listen.size() > 1024 ? std::nullopt : flow::parse_listen_address(r.listen);
  if (!listen) return invalid("listen", "expected HOST:PORT, got " + quoted(r.listen));
  options.listen_host = listen->host;
  options.listen_port = listen->port;
  if (auto st = check_filter("filter", r.filter); !st.ok()) return st;
  for (auto [field, list] :
       {std::pair{"ignore_param", &r.ignore_param}, std::pair{"ignore_field", &r.ignore_field},
        std::pair{"use_header", &r.use_header}})
    if (auto st = check_list(field, *list); !st.ok()) return st;
  if (r.ignore_body && !r.ignore_field.empty())
    return invalid("ignore_field", "ignore_body and ignore_field exclude each other");
  auto exhausted = on_exhausted_from_name(r.on_exhausted);
  if (!exhausted)
    return invalid("on_exhausted",
                   "expected repeat-last, cycle or miss, got " + quoted(r.on_exhausted));
  auto miss = on_miss_from_name(r.on_miss);
  if (!miss)
    return invalid("on_miss", "expected 404, 502, forward or kill, got " + quoted(r.on_miss));
  auto latency = r.latency.size() > 64 ? std::nullopt : Latency::parse(r.latency);
  if (!latency)
    return invalid("latency",
                   "expected recorded, none or a delay in milliseconds (at most 60000), got " +
                       quoted(r.latency));
  if (auto st = check_text("origin", r.origin); !st.ok()) return st;
  if (auto st = check_text("match_rules", r.match_rules); !st.ok()) return st;
  if (auto st = check_text("cert", r.cert); !st.ok()) return st;
  if (auto st = check_text("key", r.key); !st.ok()) return st;
  if (r.cert.empty() != r.key.empty()) return invalid("cert", "cert and key go together");
  if (r.tls && !r.cert.empty())
    return invalid("tls", "a minted certificate (tls) or a given one (cert/key), not both");
  if (r.threads > kMaxReplayThreads)
    return invalid("threads", "at most " + std::to_string(kMaxReplayThreads));
  options.match.ignore_params = r.ignore_param;
  options.match.ignore_body = r.ignore_body;
  options.match.ignore_host = r.ignore_host;
  options.match.ignore_port = r.ignore_port;
  options.match.ignore_fields = r.ignore_field;
  options.match.use_headers = r.use_header;
  options.match.on_exhausted = *exhausted;
  options.on_miss = *miss;
  options.latency = *latency;
  options.refresh = !r.no_refresh;
  if (r.shift_body_time && r.no_refresh)
    return invalid("shift_body_time", "shifting body times needs refresh (no_refresh is set)");
  if (!r.jwt_secret.empty() && !r.shift_body_time)
    return invalid("jwt_secret", "only used with shift_body_time");
  if (r.shift_body_time) {
    // The same shift as the Date headers: now minus the recorded response time.
    options.body_refresher = [secret = r.jwt_secret](flow::Response& response,
                                                     const flow::Flow& recorded,
                                                     int64_t shift_seconds) {
      replay::TimeShift shift({.delta_ns = shift_seconds * replay::kNsPerSecond,
                               .reference_ns = recorded.timing.request_started,
                               .jwt_secret = secret});
      shift.shift_body(response.body, response.headers);
    };
  }
  options.match_header = !r.no_match_header;
  options.origin = r.origin;
  options.cert_file = r.cert;
  options.key_file = r.key;
  options.tls = r.tls;
  options.threads = r.threads;
  return options;
}

Result<PreparedServe> prepare_serve(store::FlowStore& store, const ServeRequest& request,
                                    std::function<void(std::string_view)> log,
                                    bool log_hits) {
  auto options = serve_options(request);
  if (!options) return options.status();
  if (!request.match_rules.empty()) {
    auto scopes = replay::server::load_match_rules(request.match_rules, options->match);
    if (!scopes) return Status(scopes.status().code(), "match_rules: " + scopes.status().message());
    options->match.scopes = std::move(*scopes);
  }
  if (log) options->log = std::move(log);
  options->log_hits = log_hits;
  std::optional<query::Filter> filter;
  if (!request.filter.empty()) filter.emplace(query::Filter::parse(request.filter).value());
  auto flows =
      replay::server::load_session_flows(store, request.session, filter ? &*filter : nullptr);
  if (!flows) return flows.status();
  PreparedServe prepared;
  prepared.loaded = flows->size();
  auto server = replay::server::ServerReplay::create(std::move(*flows), std::move(*options));
  if (!server) return server.status();
  prepared.server = std::move(*server);
  return prepared;
}

}  // namespace retake::ops
