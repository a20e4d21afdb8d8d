#include "cli/replay_options.h"

#include <stdexcept>

#include "cli/command.h"

namespace retake::cli {

void add_replay_flags(CLI::App& cmd, ops::ReplayRequest& r, std::string& timeout) {
  cmd.add_option("--map-host", r.map_host,
                 "Connect to ADDR:PORT for HOST (repeatable; Host and SNI keep HOST)")
      ->type_name("HOST=ADDR:PORT");
  cmd.add_option("--pace", r.pace,
                 "recorded (keep the recorded gaps) or asap (default " + r.pace + ")")
      ->type_name("PACE");
  cmd.add_option("--speed", r.speed, "Play recorded gaps this many times faster (default 1)");
  cmd.add_option("--rate", r.rate, "Cap on requests started per second (default: none)");
  cmd.add_option("--concurrency", r.concurrency, "Most requests in flight (default 64)");
  cmd.add_option("--loop", r.loop, "Replay the selection this many times (default 1)");
  cmd.add_option("--shift-time", r.shift_time, "Shift timestamps by this duration (+2h, -30m)")
      ->type_name("DURATION");
  cmd.add_option("--at", r.at, "Shift timestamps so the recording starts at this time")
      ->type_name("RFC3339");
  cmd.add_flag("--no-shift", r.no_shift,
               "Leave timestamps as recorded (default: shift by now - recording time)");
  cmd.add_option("--jwt-secret", r.jwt_secret,
                 "HS256 key to re-sign JWTs whose time claims were shifted")
      ->type_name("KEY");
  cmd.add_option("--bind", r.bind, "auto (default): rebind server-generated values; none: off")
      ->type_name("MODE");
  cmd.add_option("--bind-rule", r.bind_rule,
                 "Explicit binding NAME=header:H|cookie:C|json:$.PATH|hidden:N|regex:RE (repeatable)")
      ->type_name("RULE");
  cmd.add_option("--rules", r.rules, "Mutation rules file (YAML or JSON)")->type_name("FILE");
  cmd.add_flag("--insecure", r.insecure, "Do not verify the target's TLS certificate");
  cmd.add_option("--timeout", timeout, "Per-read deadline (default 30s)")->type_name("DURATION");
  cmd.add_option("--threads", r.threads, "Network threads (default 1)");
}

void add_server_replay_flags(CLI::App& cmd, ops::ServeRequest& request) {
  cmd.add_option("--filter", request.filter, "Serve only the session's flows matching this filter")
      ->type_name("EXPR");
  cmd.add_option("--ignore-param", request.ignore_param, "Query parameter left out of matching")
      ->type_name("NAME");
  auto* ignore_body =
      cmd.add_flag("--ignore-body", request.ignore_body, "Leave request bodies out of matching");
  cmd.add_flag("--ignore-host", request.ignore_host, "Leave scheme and host out of matching");
  cmd.add_flag("--ignore-port", request.ignore_port, "Leave the port out of matching");
  auto* ignore_field =
      cmd.add_option("--ignore-field", request.ignore_field,
                     "Body field left out of matching: a JSON path ($.meta.requestId, "
                     "$.items[*].ts) or a form field name")
          ->type_name("PATH");
  ignore_body->excludes(ignore_field);
  cmd.add_option("--use-header", request.use_header,
                 "Request header whose value joins the match key")
      ->type_name("NAME");
  cmd.add_option("--match-rules", request.match_rules,
                 "Rules file whose match: section gives other matching options to the flows "
                 "its filters select")
      ->type_name("FILE");
  cmd.add_option("--on-exhausted", request.on_exhausted,
                 "After a request's last recorded response: repeat-last (default), cycle, miss")
      ->type_name("POLICY");
  cmd.add_option("--on-miss", request.on_miss,
                 "Unmatched requests: 404 (default), 502, forward (to the recorded upstream), kill")
      ->type_name("POLICY");
  cmd.add_flag(
      "--no-refresh", request.no_refresh,
      "Serve Date/Expires/Last-Modified/Set-Cookie expiry as recorded instead of shifted to now");
  cmd.add_flag("--shift-body-time", request.shift_body_time,
               "Also shift timestamps inside response bodies (JSON, forms, text, JWT claims) "
               "by the Date headers' shift");
  cmd.add_option("--jwt-secret", request.jwt_secret,
                 "HS256 key to re-sign JWTs whose time claims were shifted")
      ->type_name("KEY");
  cmd.add_flag("--no-match-header", request.no_match_header,
               "Do not add X-Retake-Match: <flow id>");
}

void apply_timeout(const std::string& timeout, ops::ReplayRequest& request) {
  auto ms = parse_duration_ms(timeout);
  if (!ms || *ms <= 0) throw UsageError("--timeout: expected a duration like 30s");
  request.timeout_ms = *ms;
}

replay::ReplayOptions build_replay_options(ops::ReplayRequest request, const std::string& timeout) {
  apply_timeout(timeout, request);
  auto options = ops::replay_options(request);
  if (!options.ok()) {
    if (options.status().code() == Errc::invalid_argument)
      throw UsageError(flag_message(options.status()));
    throw std::runtime_error(options.status().message());
  }
  return std::move(*options);
}

}  // namespace retake::cli
