// retake::replay mutation rules: a file of field mutations applied to every replayed request
// (optionally scoped by a flow filter): set/remove header, set/remove query parameter,
// set/remove JSON field by path (diff's json_path syntax, `$.items[*].ts`), set form field,
// regex replace in the body. Compressed bodies are decoded, mutated and re-encoded (diff's
// content_coding); Content-Length follows the new body.
//
// File format: YAML (yaml-cpp); JSON is accepted too, being YAML's flow syntax.
//   rules:
//     - name: staging-auth                # required, unique
//       when: "~d api.example.test"       # optional flow filter (needs a ScopeCompiler)
//       set_header: {X-Env: staging}
//       remove_header: [X-Trace-Id]
//       set_query: {lang: en}
//       remove_query: [utm_source]
//       set_json: {"$.client.version": "9.9", "$.items[*].qty": 1}
//       remove_json: ["$.debug"]
//       set_form: {comment: replayed}
//       replace_body: {pattern: "order-(\\d+)", with: "order-\\1-r"}
//   bindings:                             # explicit bindings, as --bind-rule NAME=FROM
//     - name: token                       # required, unique
//       from: "json:$.data.token"         # header:H, cookie:C, json:$.PATH, hidden:N, regex:RE
//       when: "~u /login"                 # optional: only responses of these flows
// Errors name the file, the line and the rule.
//
// Depends on src/flow, src/diff (json_path, content_coding), yaml-cpp and RE2; no I/O beyond
// reading the rules file.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "replay/client/bindings.h"

namespace retake::replay {

using FlowPredicate = std::function<bool(const flow::Flow&)>;
// Compiles a `when` expression (the filter language); parse_error with a message on failure.
using ScopeCompiler = std::function<Result<FlowPredicate>(std::string_view expression)>;

struct RuleStats {
  uint64_t applied = 0;        // rule applications (a rule that matched a flow)
  uint64_t body_failures = 0;  // bodies a rule could not rewrite (undecodable, not JSON, ...)
};

class RuleSet {
 public:
  RuleSet();
  ~RuleSet();
  RuleSet(RuleSet&&) noexcept;
  RuleSet& operator=(RuleSet&&) noexcept;

  // Applies every rule whose scope accepts `origin` to `request`, in file order.
  // Thread-safe (const; counters are atomic).
  void apply(flow::Request& request, const flow::Flow& origin) const;
  size_t size() const;
  std::vector<std::string> names() const;
  // The file's `bindings:` (explicit binding rules, scoped by their `when`).
  const std::vector<BindingRule>& bindings() const;
  RuleStats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  friend Result<RuleSet> parse_rules(std::string_view, std::string_view, const ScopeCompiler&);
};

// Parses rules text. `source` names it in errors ("rules.yaml line 7: rule 'x': ...").
// A `when` without a compiler is an error (the filter would silently be ignored otherwise).
Result<RuleSet> parse_rules(std::string_view text, std::string_view source,
                            const ScopeCompiler& compile = nullptr);
// Reads and parses a file (at most 4 MiB). not_found / io_error naming the path.
Result<RuleSet> load_rules_file(const std::string& path, const ScopeCompiler& compile = nullptr);

}  // namespace retake::replay
