// retake::replay bindings: values the server generated in a recorded response (session cookies,
// tokens, CSRF fields, created ids) that the recorded client sent back later. At replay the
// target generates different values; a binding captures the live value from the live response
// and substitutes it for the recorded one in every later request that carried it.
//
// Planning is pure (flows in, plan out); substitution works on flow::Request. Depends on
// src/flow, Boost.JSON and RE2 only; no I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "diff/json_path.h"
#include "flow/flow.h"
#include "flow/status.h"

namespace retake::replay {

enum class CaptureKind : uint8_t {
  set_cookie,        // the value of the Set-Cookie named `name`
  header,            // the value of response header `name`
  json_field,        // a JSON body field, addressed by `json_steps` (auto bindings only)
  hidden_input,      // <input type="hidden" name="`name`" value="..."> in an HTML body
  location_segment,  // path segment number `segment` of the Location header
  regex,             // first capture group (or whole match) of RE2 pattern `name` in the body
};
const char* capture_kind_name(CaptureKind kind) noexcept;

// Where in a response a value is taken from.
struct Capture {
  CaptureKind kind = CaptureKind::header;
  std::string name;
  // json_field found automatically: object keys and array indexes (decimal) from the root.
  std::vector<std::string> json_steps;
  int segment = -1;
  // json_field of an explicit rule ("json:$.data.token"): the project's JSON path; the first
  // scalar it selects is the value. Empty for automatic captures.
  std::optional<diff::JsonPath> json_path;
  // "cookie sid", "header X-CSRF-Token", "json token", "hidden csrf", "location 2", "regex ..."
  std::string describe() const;
};

// The captured value, or nullopt when the response does not carry it.
std::optional<std::string> extract(const Capture& capture, const flow::Response& response);

// An explicit rule: capture `capture` from the response of every flow `scope` accepts and
// rebind that value wherever it reappears in later requests.
struct BindingRule {
  std::string name;
  Capture capture;
  // Which flows the rule captures from. Null: every flow. The hook the filter language plugs into.
  std::function<bool(const flow::Flow&)> scope;
};

// Parses "NAME=header:X-Token", "NAME=cookie:sid", "NAME=hidden:csrf", "NAME=regex:tok=(\w+)",
// "NAME=json:$.data.token" (diff's JSON path syntax).
Result<BindingRule> parse_binding_rule(std::string_view text);

struct Binding {
  size_t id = 0;
  std::string rule;   // the explicit rule's name, or "auto"
  size_t source = 0;  // index (replay order) of the flow whose response produced the value
  uint64_t source_flow = 0;
  Capture capture;
  std::string recorded_value;
};

struct BindingPlanOptions {
  // Find bindings automatically (--bind auto). Default: true.
  bool automatic = true;
  // Explicit rules, applied whether or not `automatic` is set. Default: none.
  std::vector<BindingRule> rules;
  // Shortest automatic candidate value (shorter values collide with ordinary text). Default: 8.
  size_t min_length = 8;
  // Most candidate values tracked at once; the oldest are forgotten first. Default: 20000.
  size_t max_candidates = 20000;
};

struct BindingPlan {
  std::vector<Binding> bindings;
  // uses[i]: ids of the bindings whose recorded value appears in flow i's request.
  std::vector<std::vector<size_t>> uses;
};

// Flows must be in replay order. A value is a candidate when a response carried it and no
// earlier (or the same) request did, so client-chosen values are never rebound.
BindingPlan plan_bindings(const std::vector<flow::Flow>& flows, const BindingPlanOptions& options);

// Replaces every occurrence of `from` that is not glued to letters or digits by `to` in the
// request's path, header values and body. Returns where it replaced ("path", "header Cookie",
// "body"); empty when `from` did not occur.
std::vector<std::string> substitute(flow::Request& request, std::string_view from,
                                    std::string_view to);

}  // namespace retake::replay
