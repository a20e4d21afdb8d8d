#include "diff/report.h"

#include <boost/json.hpp>

#include <cstdio>
#include <set>

#include "diff/internal.h"

namespace retake::diff {

namespace json = boost::json;

namespace {

// Valid UTF-8 stays; each byte of an invalid sequence becomes U+FFFD.
std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    // Reject overlong two-byte forms and code points past U+10FFFF.
    if (ok && len == 2 && c < 0xC2) ok = false;
    if (ok && len == 4 && c > 0xF4) ok = false;
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string xml_escape(std::string_view raw) {
  std::string s = sanitize_utf8(raw);
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 cannot carry C0 controls other than tab, newline and carriage return.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r')
          out += "\xEF\xBF\xBD";
        else
          out += c;
    }
  }
  return out;
}

std::string html_escape(std::string_view raw) {
  std::string s = sanitize_utf8(raw);
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      case '\0': out += "\xEF\xBF\xBD"; break;
      default: out += c;
    }
  }
  return out;
}

std::string show(std::string_view v) { return v.empty() ? std::string("(none)") : std::string(v); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Text

std::string render_text(const BatchResult& r, const TextReportOptions& o) {
  const char* red = o.color ? "\x1b[31m" : "";
  const char* green = o.color ? "\x1b[32m" : "";
  const char* yellow = o.color ? "\x1b[33m" : "";
  const char* bold = o.color ? "\x1b[1m" : "";
  const char* reset = o.color ? "\x1b[0m" : "";
  std::string out;
  char line[512];
  out += bold;
  out += "retake diff: ";
  out += reset;
  std::snprintf(line, sizeof line, "%llu compared, %llu identical, %llu noise-suppressed, ",
                static_cast<unsigned long long>(r.compared),
                static_cast<unsigned long long>(r.identical),
                static_cast<unsigned long long>(r.noise_suppressed));
  out += line;
  out += r.different ? red : green;
  out += std::to_string(r.different) + " different";
  out += reset;
  out += "\n\n";
  std::snprintf(line, sizeof line, "%-48s %9s %9s %9s %9s\n", "ENDPOINT", "COMPARED", "IDENTICAL",
                "NOISE", "DIFFERENT");
  out += line;
  for (const auto& e : r.endpoints) {
    std::string name = e.endpoint.size() > 48 ? truncate_utf8(e.endpoint, 45) : e.endpoint;
    std::snprintf(line, sizeof line, "%-48s %9llu %9llu %9llu ", name.c_str(),
                  static_cast<unsigned long long>(e.compared),
                  static_cast<unsigned long long>(e.identical),
                  static_cast<unsigned long long>(e.noise_suppressed));
    out += line;
    out += e.different ? red : green;
    std::snprintf(line, sizeof line, "%9llu", static_cast<unsigned long long>(e.different));
    out += line;
    out += reset;
    out += '\n';
  }
  if (!r.differing.empty()) {
    out += "\n";
    out += bold;
    out += "Differences";
    out += reset;
    out += "\n";
    size_t shown = 0;
    for (const auto& p : r.differing) {
      if (shown++ == o.max_pairs) {
        out += "... " + std::to_string(r.differing.size() - o.max_pairs) + " more differing pairs\n";
        break;
      }
      out += "\n";
      out += bold;
      out += p.request_line.empty() ? p.endpoint : p.request_line;
      out += reset;
      out += "  (flow " + std::to_string(p.flow_a) + " vs " + std::to_string(p.flow_b) + ")";
      if (p.noise_differences)
        out += std::string("  ") + yellow + std::to_string(p.noise_differences) + " noise" + reset;
      out += "\n";
      size_t n = 0;
      for (const auto& d : p.differences) {
        if (n++ == o.max_differences) {
          out += "    ... " + std::to_string(p.differences.size() - o.max_differences) + " more\n";
          break;
        }
        out += "  ";
        out += red;
        out += diff_kind_name(d.kind);
        out += reset;
        out += " " + d.path + ": " + show(d.value_a) + " -> " + show(d.value_b) + "\n";
      }
      if (p.truncated) out += "    (comparison stopped at the difference limit)\n";
    }
  }
  if (!r.unused_rules.empty()) {
    out += "\n";
    out += yellow;
    out += "Unused ignore rules (matched nothing):";
    out += reset;
    out += "\n";
    for (const auto& rule : r.unused_rules) out += "  " + rule + "\n";
  }
  return sanitize_utf8(out);
}

// ---------------------------------------------------------------------------------------------
// JSON

std::string render_json(const BatchResult& r) {
  auto str = [](std::string_view s) { return json::value(sanitize_utf8(s)); };
  json::object root;
  root["compared"] = r.compared;
  root["identical"] = r.identical;
  root["different"] = r.different;
  root["noise_suppressed"] = r.noise_suppressed;
  root["exit_code"] = r.exit_code();
  json::array eps;
  for (const auto& e : r.endpoints) {
    json::object o;
    o["endpoint"] = str(e.endpoint);
    o["compared"] = e.compared;
    o["identical"] = e.identical;
    o["different"] = e.different;
    o["noise_suppressed"] = e.noise_suppressed;
    json::array paths;
    for (const auto& p : e.paths) {
      json::object po;
      po["pattern"] = str(p.pattern);
      po["candidate_differences"] = p.candidate_differences;
      po["candidate_rate"] = p.candidate_rate;
      po["noise_rate"] = p.noise_rate;
      po["noise_comparisons"] = p.noise_comparisons;
      po["noise"] = p.noise;
      paths.push_back(std::move(po));
    }
    o["paths"] = std::move(paths);
    eps.push_back(std::move(o));
  }
  root["endpoints"] = std::move(eps);
  json::array pairs;
  for (const auto& p : r.differing) {
    json::object o;
    o["endpoint"] = str(p.endpoint);
    o["flow_a"] = p.flow_a;
    o["flow_b"] = p.flow_b;
    o["request"] = str(p.request_line);
    o["noise_differences"] = p.noise_differences;
    o["truncated"] = p.truncated;
    json::array ds;
    for (const auto& d : p.differences) {
      json::object dobj;
      dobj["kind"] = diff_kind_name(d.kind);
      dobj["path"] = str(d.path);
      dobj["pattern"] = str(d.pattern);
      dobj["value_a"] = str(d.value_a);
      dobj["value_b"] = str(d.value_b);
      ds.push_back(std::move(dobj));
    }
    o["differences"] = std::move(ds);
    pairs.push_back(std::move(o));
  }
  root["differing"] = std::move(pairs);
  json::array unused;
  for (const auto& u : r.unused_rules) unused.push_back(str(u));
  root["unused_rules"] = std::move(unused);
  return json::serialize(root);
}

// ---------------------------------------------------------------------------------------------
// JUnit XML

std::string render_junit(const BatchResult& r, const std::string& suite_name) {
  uint64_t failures = 0;
  for (const auto& e : r.endpoints) failures += e.different ? 1 : 0;
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  const auto suite = xml_escape(suite_name);
  out += "<testsuites name=\"" + suite + "\" tests=\"" + std::to_string(r.endpoints.size()) +
         "\" failures=\"" + std::to_string(failures) + "\" errors=\"0\">\n";
  out += "  <testsuite name=\"" + suite + "\" tests=\"" + std::to_string(r.endpoints.size()) +
         "\" failures=\"" + std::to_string(failures) + "\" errors=\"0\" skipped=\"0\">\n";
  for (const auto& e : r.endpoints) {
    out += "    <testcase classname=\"retake.diff\" name=\"" + xml_escape(e.endpoint) + "\">\n";
    if (e.different) {
      std::string body;
      size_t listed = 0;
      for (const auto& p : r.differing) {
        if (p.endpoint != e.endpoint) continue;
        if (listed++ == 50) {
          body += "...\n";
          break;
        }
        body += (p.request_line.empty() ? p.endpoint : p.request_line) + " (flow " +
                std::to_string(p.flow_a) + " vs " + std::to_string(p.flow_b) + ")\n";
        for (const auto& d : p.differences)
          body += std::string("  ") + diff_kind_name(d.kind) + " " + d.path + ": " +
                  show(d.value_a) + " -> " + show(d.value_b) + "\n";
      }
      out += "      <failure type=\"difference\" message=\"" +
             xml_escape(std::to_string(e.different) + " of " + std::to_string(e.compared) +
                        " flows differ") +
             "\">" + xml_escape(body) + "</failure>\n";
    }
    out += "      <system-out>" +
           xml_escape("compared=" + std::to_string(e.compared) +
                      " identical=" + std::to_string(e.identical) +
                      " noise_suppressed=" + std::to_string(e.noise_suppressed) +
                      " different=" + std::to_string(e.different)) +
           "</system-out>\n";
    out += "    </testcase>\n";
  }
  if (!r.unused_rules.empty()) {
    std::string text = "unused ignore rules:\n";
    for (const auto& u : r.unused_rules) text += "  " + u + "\n";
    out += "    <system-out>" + xml_escape(text) + "</system-out>\n";
  }
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTML

namespace {

constexpr const char* kCss = R"css(
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.1em;cursor:pointer;margin:.2em 0}h3{font-size:1em;margin:.3em 0}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.num{text-align:right}.bad{color:#b00;font-weight:bold}.ok{color:#070}.noise{color:#a60}
article.pair{border:1px solid #ddd;border-radius:4px;padding:.5em 1em;margin:1em 0}
article.pair.collapsed .detail{display:none}
.side-by-side{display:flex;gap:1em}.side{flex:1;min-width:0}
pre.body{background:#f8f8f8;padding:.5em;overflow:auto;max-height:40em;white-space:pre-wrap;word-break:break-all}
.hl{background:#ffd5d5;outline:1px solid #e99}tr.hl td{background:#ffd5d5}
td.value-a,td.value-b{font-family:monospace;white-space:pre-wrap;word-break:break-all}
code,td.path{font-family:monospace}
)css";

constexpr const char* kJs = R"js(
document.querySelectorAll('article.pair h2').forEach(function(h){
  h.addEventListener('click',function(){h.parentElement.classList.toggle('collapsed');});
});
)js";

void pretty_json_html(const json::value& v, std::string& path, const std::set<std::string>& hl,
                      int indent, std::string& out) {
  const bool mark = hl.count(path) > 0;
  if (mark) out += "<span class=\"hl\" data-path=\"" + html_escape(path) + "\">";
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  const std::string close_pad(static_cast<size_t>(indent), ' ');
  if (const auto* obj = v.if_object(); obj && !obj->empty()) {
    out += "{\n";
    size_t i = 0;
    for (const auto& kv : *obj) {
      out += pad;
      out += html_escape(json::serialize(json::string_view(kv.key())));
      out += ": ";
      size_t len = path.size();
      append_path_elem(path, PathElem::member({kv.key().data(), kv.key().size()}));
      pretty_json_html(kv.value(), path, hl, indent + 2, out);
      path.resize(len);
      out += ++i < obj->size() ? ",\n" : "\n";
    }
    out += close_pad + "}";
  } else if (const auto* arr = v.if_array(); arr && !arr->empty()) {
    out += "[\n";
    for (size_t i = 0; i < arr->size(); ++i) {
      out += pad;
      size_t len = path.size();
      append_path_elem(path, PathElem::element(i));
      pretty_json_html((*arr)[i], path, hl, indent + 2, out);
      path.resize(len);
      out += i + 1 < arr->size() ? ",\n" : "\n";
    }
    out += close_pad + "]";
  } else {
    out += html_escape(json::serialize(v));
  }
  if (mark) out += "</span>";
}

// The body of one side: pretty JSON with differing paths marked, or text with differing lines
// marked.
std::string body_html(const ResponseSnapshot& s, const std::set<std::string>& paths,
                      const std::set<size_t>& lines) {
  if (s.body_binary) return "<pre class=\"body binary\">" + html_escape(s.body) + "</pre>";
  std::string out = "<pre class=\"body\">";
  std::error_code ec;
  json::parse_options po;
  po.max_depth = 256;
  json::value v;
  if (!s.body_truncated && is_json_media(media_type(s.content_type))) v = json::parse(s.body, ec, {}, po);
  if (!s.body_truncated && is_json_media(media_type(s.content_type)) && !ec) {
    std::string path = "$";
    pretty_json_html(v, path, paths, 0, out);
  } else {
    size_t n = 1, start = 0;
    while (start <= s.body.size()) {
      auto end = s.body.find('\n', start);
      if (end == std::string::npos) end = s.body.size();
      auto line = std::string_view(s.body).substr(start, end - start);
      if (lines.count(n))
        out += "<span class=\"hl\" data-path=\"body:line " + std::to_string(n) + "\">" +
               html_escape(line) + "</span>";
      else
        out += html_escape(line);
      if (end == s.body.size()) break;
      out += '\n';
      start = end + 1;
      ++n;
    }
  }
  if (s.body_truncated) out += "\n<em>(truncated)</em>";
  out += "</pre>";
  return out;
}

std::string side_html(const char* side, uint64_t flow, const std::optional<ResponseSnapshot>& s,
                      const PairResult& p, bool is_a) {
  std::string out = std::string("<div class=\"side side-") + side + "\"><h3>" +
                    (is_a ? "A" : "B") + " (flow " + std::to_string(flow) + ")</h3>";
  if (!s) return out + "<p class=\"missing\">response not kept</p></div>";
  std::set<std::string> paths, headers;
  std::set<size_t> lines;
  bool status_changed = false;
  for (const auto& d : p.differences) {
    if (d.kind == DiffKind::status_changed) status_changed = true;
    if (d.path.starts_with("header:")) headers.insert(d.path.substr(7));
    if (d.path.starts_with("$")) paths.insert(d.path);
    if (d.path.starts_with("body:line ")) {
      bool this_side = is_a ? d.kind != DiffKind::line_added : d.kind == DiffKind::line_added;
      if (this_side) lines.insert(std::strtoull(d.path.c_str() + 10, nullptr, 10));
    }
  }
  out += std::string("<div class=\"status") + (status_changed ? " hl" : "") + "\">" +
         std::to_string(s->status) + "</div>";
  out += "<table class=\"headers\">";
  for (const auto& h : s->headers) {
    std::string lname = h.name;
    for (auto& c : lname)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    out += headers.count(lname) ? "<tr class=\"hl\">" : "<tr>";
    out += "<td>" + html_escape(h.name) + "</td><td>" + html_escape(h.value) + "</td></tr>";
  }
  out += "</table>";
  out += body_html(*s, paths, lines);
  out += "</div>";
  return out;
}

}  // namespace

std::string render_html(const BatchResult& r, const HtmlReportOptions& o) {
  std::string out;
  out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
  out += "<title>" + html_escape(o.title) + "</title><style>";
  out += kCss;
  out += "</style></head><body>\n";
  out += "<h1>" + html_escape(o.title) + "</h1>\n";
  out += "<section id=\"summary\"><p class=\"totals\">";
  out += "<span class=\"compared\">" + std::to_string(r.compared) + " compared</span>, ";
  out += "<span class=\"identical\">" + std::to_string(r.identical) + " identical</span>, ";
  out += "<span class=\"noise\">" + std::to_string(r.noise_suppressed) + " noise-suppressed</span>, ";
  out += std::string("<span class=\"different ") + (r.different ? "bad" : "ok") + "\">" +
         std::to_string(r.different) + " different</span></p>\n";
  out += "<table class=\"summary\"><tr><th>endpoint</th><th>compared</th><th>identical</th>"
         "<th>noise-suppressed</th><th>different</th></tr>\n";
  for (const auto& e : r.endpoints) {
    out += "<tr class=\"endpoint\" data-endpoint=\"" + html_escape(e.endpoint) + "\"><td>" +
           html_escape(e.endpoint) + "</td><td class=\"num compared\">" +
           std::to_string(e.compared) + "</td><td class=\"num identical\">" +
           std::to_string(e.identical) + "</td><td class=\"num noise\">" +
           std::to_string(e.noise_suppressed) + "</td><td class=\"num different " +
           (e.different ? "bad" : "ok") + "\">" + std::to_string(e.different) + "</td></tr>\n";
  }
  out += "</table></section>\n";
  if (!r.unused_rules.empty()) {
    out += "<section id=\"unused-rules\"><h2>Unused ignore rules</h2><ul>";
    for (const auto& u : r.unused_rules)
      out += "<li class=\"unused-rule\"><code>" + html_escape(u) + "</code></li>";
    out += "</ul></section>\n";
  }
  out += "<section id=\"differences\">\n";
  size_t index = 0;
  for (const auto& p : r.differing) {
    out += "<article class=\"pair\" id=\"pair-" + std::to_string(index++) +
           "\" data-endpoint=\"" + html_escape(p.endpoint) + "\" data-flow-a=\"" +
           std::to_string(p.flow_a) + "\" data-flow-b=\"" + std::to_string(p.flow_b) + "\">";
    out += "<h2>" + html_escape(p.request_line.empty() ? p.endpoint : p.request_line) +
           " <small>(flow " + std::to_string(p.flow_a) + " vs " + std::to_string(p.flow_b) +
           ")</small></h2><div class=\"detail\">";
    if (p.noise_differences)
      out += "<p class=\"noise\">" + std::to_string(p.noise_differences) +
             " difference(s) suppressed as noise</p>";
    out += "<table class=\"differences\"><tr><th>kind</th><th>path</th><th>A</th><th>B</th></tr>";
    for (const auto& d : p.differences) {
      out += std::string("<tr class=\"difference\" data-kind=\"") + diff_kind_name(d.kind) +
             "\" data-path=\"" + html_escape(d.path) + "\"><td class=\"kind\">" +
             diff_kind_name(d.kind) + "</td><td class=\"path\">" + html_escape(d.path) +
             "</td><td class=\"value-a\">" + html_escape(d.value_a) +
             "</td><td class=\"value-b\">" + html_escape(d.value_b) + "</td></tr>";
    }
    out += "</table>";
    if (p.truncated) out += "<p>(comparison stopped at the difference limit)</p>";
    out += "<div class=\"side-by-side\">";
    out += side_html("a", p.flow_a, p.a, p, true);
    out += side_html("b", p.flow_b, p.b, p, false);
    out += "</div></div></article>\n";
  }
  out += "</section>\n<script>";
  out += kJs;
  out += "</script>\n</body></html>\n";
  return out;
}

}  // namespace retake::diff
