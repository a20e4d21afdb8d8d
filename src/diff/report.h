// retake::diff reports: render a BatchResult for people (terminal text, one self-contained HTML
// file) and for machines (JSON, JUnit XML for CI).
//
// Pure: each function returns the document as a string; the caller writes it. No I/O, no
// network references in the HTML (inline CSS/JS only). Depends on batch.h.
//
// Output is always valid in its format: strings that are not UTF-8 are repaired (invalid
// bytes become U+FFFD), XML drops characters XML cannot carry, HTML escapes everything
// (`<script>` in a body shows as text).
#pragma once

#include <string>

#include "diff/batch.h"

namespace retake::diff {

struct TextReportOptions {
  bool color = false;             // ANSI colors. Default: false
  size_t max_pairs = 50;          // differing pairs listed. Default: 50
  size_t max_differences = 20;    // differences listed per pair. Default: 20
};
// A summary line, a table of endpoints, the unexplained differences, unused ignore rules.
std::string render_text(const BatchResult& result, const TextReportOptions& options = {});

// {"compared":N,"identical":N,"different":N,"noise_suppressed":N,"exit_code":0|1,
//  "endpoints":[{"endpoint","compared","identical","different","noise_suppressed",
//                "paths":[{"pattern","candidate_differences","candidate_rate","noise_rate",
//                          "noise_comparisons","noise"}]}],
//  "differing":[{"endpoint","flow_a","flow_b","request","noise_differences","truncated",
//                "differences":[{"kind","path","pattern","value_a","value_b"}]}],
//  "unused_rules":[...]}
std::string render_json(const BatchResult& result);

// <testsuites><testsuite name=suite_name> with one <testcase name="<endpoint>"> per endpoint;
// an endpoint with unexplained differences has a <failure> listing them. Unused ignore rules
// appear in the suite's <system-out>.
std::string render_junit(const BatchResult& result, const std::string& suite_name = "retake diff");

struct HtmlReportOptions {
  std::string title = "retake diff report";  // Default: "retake diff report"
};
// One self-contained HTML file. Stable hooks for tests and scripts: `id="summary"` (a table
// with one `tr.endpoint` per endpoint), `id="differences"` (one `article.pair` per differing
// pair, with `data-flow-a`/`data-flow-b`, a table of `tr.difference` rows carrying
// `data-kind`/`data-path`, and a `.side-by-side` view: `.side-a`/`.side-b` with `.status`,
// `table.headers` and `pre.body`, where differing places are `span.hl`/`tr.hl`),
// `id="unused-rules"` when some rules were unused.
std::string render_html(const BatchResult& result, const HtmlReportOptions& options = {});

}  // namespace retake::diff
