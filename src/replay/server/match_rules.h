// retake::replay::server match rules: matching options for parts of a recording, from the
// `match:` section of a rules file (YAML, or JSON as YAML's flow syntax), as mitmproxy users
// would otherwise start one server replay per endpoint family:
//
//   match:
//     - name: orders                      # required, unique
//       when: "~u /orders"                # optional flow filter; default: every flow
//       ignore_param: [ts, nonce]         # added to the command line's options
//       ignore_field: ["$.requestId"]     # JSON paths or form field names
//       use_header: [X-Tenant]
//       ignore_body: true                 # booleans turn an option on
//       ignore_host: true
//       ignore_port: true
//       on_exhausted: cycle               # repeat-last, cycle, miss
//
// Each recorded flow is keyed with the first rule whose `when` accepts it (MatchOptions::scopes).
// The file may also hold client replay's `rules:` and `bindings:` sections, which serving
// ignores, so one file can describe both sides. Errors name the file, the line and the rule.
//
// Depends on src/flow, src/query (filters) and yaml-cpp; reads only the given file.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "flow/status.h"
#include "replay/server/matcher.h"

namespace retake::replay::server {

// The scopes of `text` (`source` names it in errors), each rule's options being `base` plus
// what the rule adds. parse_error (with file and line) or invalid_argument.
Result<std::vector<ScopedMatch>> parse_match_rules(std::string_view text, std::string_view source,
                                                   const MatchOptions& base);
// Reads `path` (at most 4 MiB) and parses it. not_found / resource_exhausted naming the path.
Result<std::vector<ScopedMatch>> load_match_rules(const std::string& path,
                                                  const MatchOptions& base);

}  // namespace retake::replay::server
