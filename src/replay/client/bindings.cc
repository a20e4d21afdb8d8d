// Binding planning: one pass in replay order. Before a flow's response adds its candidates,
// its request is searched for the candidates known so far; a hit materialises a Binding.
#include "replay/client/bindings.h"

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <re2/re2.h>
#include <boost/json.hpp>

#include "replay/client/time_shift.h"

namespace retake::replay {

namespace {

bool is_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Server-generated-looking: long enough, no spaces or markup, and either mixing letters and
// digits or long and varied (random hex that happens to be all letters or all digits).
bool interesting(std::string_view v, size_t min_length) {
  if (v.size() < min_length || v.size() > 4096) return false;
  bool digit = false, alpha = false;
  std::set<char> distinct;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '<' || c == '>' || c == '\'' || c == '\n' || c == '\r' ||
        c == '\t')
      return false;
    if (c >= '0' && c <= '9')
      digit = true;
    else if (is_alnum(c))
      alpha = true;
    distinct.insert(c);
  }
  if (parse_instant(v)) return false;  // timestamps belong to the time shift
  if (v.find("://") != std::string_view::npos) return false;
  return (digit && alpha && distinct.size() >= 5) || (v.size() >= 16 && distinct.size() >= 8);
}

std::optional<boost::json::value> parse_json_body(const flow::Response& r) {
  const auto& body = r.body.data;
  if (body.empty() || r.body.truncated) return std::nullopt;
  auto ctype = lower(r.headers.get("Content-Type").value_or(""));
  if (ctype.find("json") == std::string::npos && body[0] != '{' && body[0] != '[')
    return std::nullopt;
  boost::system::error_code ec;
  boost::json::parse_options po;
  po.max_depth = 64;
  auto v = boost::json::parse(body, ec, {}, po);
  if (ec) return std::nullopt;
  return v;
}

std::string scalar_text(const boost::json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  return {};
}

void walk_json(
    const boost::json::value& v, std::vector<std::string>& steps, int depth, size_t& budget,
    const std::function<void(const std::vector<std::string>&, const boost::json::value&)>& visit) {
  if (depth > 64 || budget == 0) return;
  --budget;
  if (v.is_object()) {
    for (const auto& kv : v.as_object()) {
      steps.emplace_back(kv.key());
      walk_json(kv.value(), steps, depth + 1, budget, visit);
      steps.pop_back();
    }
  } else if (v.is_array()) {
    size_t i = 0;
    for (const auto& e : v.as_array()) {
      steps.push_back(std::to_string(i++));
      walk_json(e, steps, depth + 1, budget, visit);
      steps.pop_back();
    }
  } else {
    visit(steps, v);
  }
}

// Hidden inputs as (name, value) pairs; attribute order and quoting vary in real HTML.
std::vector<std::pair<std::string, std::string>> hidden_inputs(std::string_view html) {
  static const RE2 input("(?i)(<input\\b[^>]*>)");
  static const RE2 hidden("(?i)\\btype\\s*=\\s*[\"']?hidden\\b");
  static const RE2 name("(?i)\\bname\\s*=\\s*[\"']?([^\"'\\s>]+)");
  static const RE2 value("(?i)\\bvalue\\s*=\\s*(?:\"([^\"]*)\"|'([^']*)'|([^\\s>]+))");
  std::vector<std::pair<std::string, std::string>> out;
  re2::StringPiece in(html.data(), html.size());
  std::string tag;
  while (out.size() < 1000 && RE2::FindAndConsume(&in, input, &tag)) {
    if (!RE2::PartialMatch(tag, hidden)) continue;
    std::string n, v1, v2, v3;
    if (!RE2::PartialMatch(tag, name, &n)) continue;
    if (!RE2::PartialMatch(tag, value, &v1, &v2, &v3)) continue;
    out.emplace_back(n, !v1.empty() ? v1 : !v2.empty() ? v2 : v3);
  }
  return out;
}

std::vector<std::string> path_segments(std::string_view location) {
  if (auto scheme = location.find("://"); scheme != std::string_view::npos) {
    auto slash = location.find('/', scheme + 3);
    location = slash == std::string_view::npos ? std::string_view{} : location.substr(slash);
  }
  location = location.substr(0, location.find_first_of("?#"));
  std::vector<std::string> out;
  size_t start = location.empty() || location.front() != '/' ? 0 : 1;  // "/a/b": a is segment 0
  while (start < location.size()) {
    size_t end = location.find('/', start);
    if (end == std::string_view::npos) end = location.size();
    out.emplace_back(location.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::optional<std::pair<std::string, std::string>> cookie_pair(std::string_view set_cookie) {
  auto semi = set_cookie.find(';');
  auto pair = set_cookie.substr(0, semi);
  auto eq = pair.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  auto trim = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
    return std::string(s);
  };
  return std::make_pair(trim(pair.substr(0, eq)), trim(pair.substr(eq + 1)));
}

bool header_name_carries_token(std::string_view name) {
  auto n = lower(name);
  return n.find("csrf") != std::string::npos || n.find("xsrf") != std::string::npos ||
         n.find("token") != std::string::npos || n.find("session") != std::string::npos;
}

// Everything a response offers as automatic candidates, in a stable order.
std::vector<std::pair<Capture, std::string>> candidates(const flow::Response& r,
                                                        size_t min_length) {
  std::vector<std::pair<Capture, std::string>> out;
  for (const auto& h : r.headers) {
    if (flow::iequals(h.name, "Set-Cookie")) {
      if (auto p = cookie_pair(h.value); p && interesting(p->second, min_length))
        out.push_back({Capture{CaptureKind::set_cookie, p->first, {}, -1}, p->second});
    } else if (header_name_carries_token(h.name) && interesting(h.value, min_length)) {
      out.push_back({Capture{CaptureKind::header, h.name, {}, -1}, h.value});
    }
  }
  if (auto json = parse_json_body(r)) {
    std::vector<std::string> steps;
    size_t budget = 20000;
    walk_json(*json, steps, 0, budget,
              [&](const std::vector<std::string>& path, const boost::json::value& v) {
                std::string text = scalar_text(v);
                bool number = !v.is_string();
                if (text.empty()) return;
                if (number ? text.size() >= 6 : interesting(text, min_length)) {
                  Capture c{CaptureKind::json_field, "", path, -1};
                  out.push_back({std::move(c), std::move(text)});
                }
              });
  }
  auto ctype = lower(r.headers.get("Content-Type").value_or(""));
  if (ctype.find("html") != std::string::npos && !r.body.truncated) {
    for (auto& [n, v] : hidden_inputs(r.body.data))
      if (interesting(v, min_length))
        out.push_back({Capture{CaptureKind::hidden_input, n, {}, -1}, v});
  }
  if (auto loc = r.headers.get("Location")) {
    auto segs = path_segments(*loc);
    for (size_t i = 0; i < segs.size(); ++i)
      if (interesting(segs[i], std::min<size_t>(min_length, 6)))
        out.push_back(
            {Capture{CaptureKind::location_segment, "", {}, static_cast<int>(i)}, segs[i]});
  }
  return out;
}

// Bounded occurrence of `needle` in `hay` (not glued to letters or digits on either side).
bool contains_bounded(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return false;
  size_t pos = 0;
  while ((pos = hay.find(needle, pos)) != std::string_view::npos) {
    bool left = pos == 0 || !is_alnum(hay[pos - 1]);
    size_t end = pos + needle.size();
    bool right = end == hay.size() || !is_alnum(hay[end]);
    if (left && right) return true;
    ++pos;
  }
  return false;
}

std::string request_text(const flow::Request& r) {
  std::string text = r.path;
  for (const auto& h : r.headers) {
    text += '\n';
    text += h.value;
  }
  text += '\n';
  text += r.body.data;
  return text;
}

size_t replace_bounded(std::string& hay, std::string_view from, std::string_view to) {
  size_t count = 0, pos = 0;
  while ((pos = hay.find(from, pos)) != std::string::npos) {
    bool left = pos == 0 || !is_alnum(hay[pos - 1]);
    size_t end = pos + from.size();
    bool right = end == hay.size() || !is_alnum(hay[end]);
    if (left && right) {
      hay.replace(pos, from.size(), to);
      pos += to.size();
      ++count;
    } else {
      ++pos;
    }
  }
  return count;
}

}  // namespace

const char* capture_kind_name(CaptureKind kind) noexcept {
  switch (kind) {
    case CaptureKind::set_cookie:
      return "cookie";
    case CaptureKind::header:
      return "header";
    case CaptureKind::json_field:
      return "json";
    case CaptureKind::hidden_input:
      return "hidden";
    case CaptureKind::location_segment:
      return "location";
    case CaptureKind::regex:
      return "regex";
  }
  return "?";
}

std::string Capture::describe() const {
  std::string out = capture_kind_name(kind);
  switch (kind) {
    case CaptureKind::json_field: {
      if (json_path) return out + " " + json_path->text();
      std::string path;
      for (const auto& s : json_steps) path += (path.empty() ? "" : ".") + s;
      return out + " " + path;
    }
    case CaptureKind::location_segment:
      return out + " segment " + std::to_string(segment);
    default:
      return out + " " + name;
  }
}

std::optional<std::string> extract(const Capture& capture, const flow::Response& r) {
  switch (capture.kind) {
    case CaptureKind::set_cookie:
      for (auto v : r.headers.get_all("Set-Cookie"))
        if (auto p = cookie_pair(v); p && p->first == capture.name) return p->second;
      return std::nullopt;
    case CaptureKind::header:
      if (auto v = r.headers.get(capture.name)) return std::string(*v);
      return std::nullopt;
    case CaptureKind::json_field: {
      auto json = parse_json_body(r);
      if (!json) return std::nullopt;
      if (capture.json_path) {
        for (const auto* v : capture.json_path->select(*json))
          if (auto text = scalar_text(*v); !text.empty()) return text;
        return std::nullopt;
      }
      const boost::json::value* cur = &*json;
      for (const auto& step : capture.json_steps) {
        if (cur->is_object()) {
          cur = cur->as_object().if_contains(step);
        } else if (cur->is_array()) {
          size_t i = std::strtoul(step.c_str(), nullptr, 10);
          cur = i < cur->as_array().size() ? &cur->as_array()[i] : nullptr;
        } else {
          cur = nullptr;
        }
        if (!cur) return std::nullopt;
      }
      auto text = scalar_text(*cur);
      if (text.empty()) return std::nullopt;
      return text;
    }
    case CaptureKind::hidden_input:
      for (auto& [n, v] : hidden_inputs(r.body.data))
        if (n == capture.name) return v;
      return std::nullopt;
    case CaptureKind::location_segment: {
      auto loc = r.headers.get("Location");
      if (!loc) return std::nullopt;
      auto segs = path_segments(*loc);
      if (capture.segment < 0 || static_cast<size_t>(capture.segment) >= segs.size())
        return std::nullopt;
      return segs[static_cast<size_t>(capture.segment)];
    }
    case CaptureKind::regex: {
      RE2::Options quiet;
      quiet.set_log_errors(false);
      RE2 re(capture.name, quiet);
      if (!re.ok()) return std::nullopt;
      re2::StringPiece groups[2];
      int n = std::min(1, re.NumberOfCapturingGroups()) + 1;
      const auto& body = r.body.data;
      if (!re.Match(re2::StringPiece(body.data(), body.size()), 0, body.size(), RE2::UNANCHORED,
                    groups, n))
        return std::nullopt;
      auto g = n == 2 ? groups[1] : groups[0];
      return std::string(g.data(), g.size());
    }
  }
  return std::nullopt;
}

Result<BindingRule> parse_binding_rule(std::string_view text) {
  auto eq = text.find('=');
  auto colon = text.find(':', eq == std::string_view::npos ? 0 : eq);
  if (eq == std::string_view::npos || eq == 0 || colon == std::string_view::npos)
    return Status(Errc::invalid_argument,
                  "binding rule '" + std::string(text) +
                      "': expected NAME=KIND:ARG (KIND: header, cookie, json, hidden, regex)");
  BindingRule rule;
  rule.name = std::string(text.substr(0, eq));
  auto kind = text.substr(eq + 1, colon - eq - 1);
  rule.capture.name = std::string(text.substr(colon + 1));
  if (kind == "header")
    rule.capture.kind = CaptureKind::header;
  else if (kind == "cookie")
    rule.capture.kind = CaptureKind::set_cookie;
  else if (kind == "hidden")
    rule.capture.kind = CaptureKind::hidden_input;
  else if (kind == "json") {
    rule.capture.kind = CaptureKind::json_field;
    auto path = diff::JsonPath::parse(rule.capture.name);
    if (!path)
      return Status(Errc::invalid_argument, "binding rule '" + rule.name + "': bad JSON path '" +
                                                rule.capture.name + "': " +
                                                path.status().message());
    rule.capture.json_path = std::move(*path);
  }
  else if (kind == "regex") {
    rule.capture.kind = CaptureKind::regex;
    RE2::Options quiet;
    quiet.set_log_errors(false);
    RE2 re(rule.capture.name, quiet);
    if (!re.ok())
      return Status(Errc::invalid_argument,
                    "binding rule '" + rule.name + "': bad regex: " + re.error());
  } else {
    return Status(Errc::invalid_argument, "binding rule '" + rule.name + "': unknown kind '" +
                                              std::string(kind) +
                                              "' (header, cookie, json, hidden, regex)");
  }
  if (rule.capture.name.empty())
    return Status(Errc::invalid_argument, "binding rule '" + rule.name + "': empty argument");
  return rule;
}

namespace {

// The alnum runs of `text` (the units a bounded occurrence starts and ends on).
std::vector<std::string_view> alnum_tokens(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && !is_alnum(text[i])) ++i;
    size_t start = i;
    while (i < text.size() && is_alnum(text[i])) ++i;
    if (i > start) out.push_back(text.substr(start, i - start));
  }
  return out;
}

// The key a value is indexed by: its first alnum run when the value starts with one (a
// bounded occurrence then makes that run a whole token of the text); "" otherwise.
std::string first_token(std::string_view value) {
  if (value.empty() || !is_alnum(value[0])) return {};
  size_t n = 0;
  while (n < value.size() && is_alnum(value[n])) ++n;
  return std::string(value.substr(0, n));
}

}  // namespace

// One pass, indexed by tokens so the cost grows with the text, not with text x candidates:
// a request's tokens look up the candidates whose first token they are, and a response's
// candidate is dropped as client-chosen when every one of its tokens already appeared in a
// request (a safe over-approximation of "the client sent it first").
BindingPlan plan_bindings(const std::vector<flow::Flow>& flows, const BindingPlanOptions& options) {
  BindingPlan plan;
  plan.uses.resize(flows.size());
  struct Candidate {
    size_t source;
    Capture capture;
    std::string rule;
    std::optional<size_t> binding;  // materialised binding id
  };
  std::unordered_map<std::string, Candidate> live;  // value -> where it came from (latest wins)
  std::unordered_map<std::string, std::vector<std::string>> by_token;  // first token -> values
  std::deque<std::string> order;                   // insertion order, for the candidate bound
  std::unordered_set<std::string> request_tokens;  // every token any request carried so far
  for (size_t i = 0; i < flows.size(); ++i) {
    const auto& f = flows[i];
    std::string text = request_text(f.request);
    auto tokens = alnum_tokens(text);
    std::set<size_t> used;
    auto try_value = [&](const std::string& value) {
      auto it = live.find(value);
      if (it == live.end() || !contains_bounded(text, value)) return;
      auto& cand = it->second;
      if (!cand.binding) {
        Binding b;
        b.id = plan.bindings.size();
        b.rule = cand.rule;
        b.source = cand.source;
        b.source_flow = flows[cand.source].id;
        b.capture = cand.capture;
        b.recorded_value = value;
        cand.binding = b.id;
        plan.bindings.push_back(std::move(b));
      }
      used.insert(*cand.binding);
    };
    std::unordered_set<std::string_view> distinct(tokens.begin(), tokens.end());
    for (auto t : distinct)
      if (auto it = by_token.find(std::string(t)); it != by_token.end())
        for (const auto& v : it->second) try_value(v);
    if (auto it = by_token.find(""); it != by_token.end())
      for (const auto& v : it->second) try_value(v);
    plan.uses[i].assign(used.begin(), used.end());
    for (auto t : distinct) request_tokens.emplace(t);
    if (!f.response) continue;
    std::vector<std::tuple<Capture, std::string, std::string>> found;
    for (const auto& rule : options.rules) {
      if (rule.scope && !rule.scope(f)) continue;
      if (auto v = extract(rule.capture, *f.response); v && !v->empty())
        found.emplace_back(rule.capture, *v, rule.name);
    }
    if (options.automatic)
      for (auto& [c, v] : candidates(*f.response, options.min_length))
        found.emplace_back(c, v, "auto");
    std::set<std::string> seen_here;
    for (auto& [capture, value, rule] : found) {
      if (!seen_here.insert(value).second) continue;  // first capture of a value in a response wins
      if (rule == "auto") {
        auto vt = alnum_tokens(value);
        bool client_sent =
            !vt.empty() && std::all_of(vt.begin(), vt.end(), [&](std::string_view t) {
              return request_tokens.count(std::string(t)) > 0;
            });
        if (client_sent) continue;
      }
      if (live.find(value) == live.end()) {
        order.push_back(value);
        by_token[first_token(value)].push_back(value);
        if (order.size() > options.max_candidates) {
          const std::string& oldest = order.front();
          auto& bucket = by_token[first_token(oldest)];
          std::erase(bucket, oldest);
          live.erase(oldest);
          order.pop_front();
        }
      }
      live.insert_or_assign(value, Candidate{i, capture, rule, std::nullopt});
    }
  }
  return plan;
}

std::vector<std::string> substitute(flow::Request& request, std::string_view from,
                                    std::string_view to) {
  std::vector<std::string> where;
  if (from.empty() || from == to) return where;
  if (replace_bounded(request.path, from, to)) where.push_back("path");
  for (auto& h : request.headers.fields())
    if (!flow::iequals(h.name, "Host") && replace_bounded(h.value, from, to))
      where.push_back("header " + h.name);
  if (!request.body.truncated && replace_bounded(request.body.data, from, to))
    where.push_back("body");
  return where;
}

}  // namespace retake::replay
