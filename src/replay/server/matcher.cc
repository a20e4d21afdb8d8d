#include "replay/server/matcher.h"

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <unordered_map>

#include "codec/content_coding.h"
#include "diff/json_path.h"

namespace retake::replay::server {

namespace json = boost::json;

const char* on_exhausted_name(OnExhausted value) noexcept {
  switch (value) {
    case OnExhausted::repeat_last:
      return "repeat-last";
    case OnExhausted::cycle:
      return "cycle";
    case OnExhausted::miss:
      return "miss";
  }
  return "unknown";
}

std::optional<OnExhausted> on_exhausted_from_name(std::string_view name) noexcept {
  for (auto v : {OnExhausted::repeat_last, OnExhausted::cycle, OnExhausted::miss})
    if (name == on_exhausted_name(v)) return v;
  return std::nullopt;
}

const char* part_name(Difference::Part part) noexcept {
  using P = Difference::Part;
  switch (part) {
    case P::method:
      return "method";
    case P::scheme:
      return "scheme";
    case P::host:
      return "host";
    case P::port:
      return "port";
    case P::path:
      return "path";
    case P::query:
      return "query";
    case P::json_field:
      return "json_field";
    case P::form_field:
      return "form_field";
    case P::body:
      return "body";
    case P::header:
      return "header";
  }
  return "unknown";
}

const char* change_name(Difference::Change change) noexcept {
  switch (change) {
    case Difference::Change::changed:
      return "changed";
    case Difference::Change::added:
      return "added";
    case Difference::Change::removed:
      return "removed";
  }
  return "unknown";
}

const char* reason_name(MissExplanation::Reason reason) noexcept {
  switch (reason) {
    case MissExplanation::Reason::no_match:
      return "no_match";
    case MissExplanation::Reason::exhausted:
      return "exhausted";
    case MissExplanation::Reason::no_flows:
      return "no_flows";
  }
  return "unknown";
}

namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Percent-decoding that never fails: a malformed escape is kept as written, so two requests
// with the same malformed bytes still compare equal. `plus_is_space` for form encoding.
std::string pct_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

// "a=1&b&c=" -> {(a,1),(b,""),(c,"")}; empty segments dropped. Sorted (a multiset), with the
// names in `ignore` removed.
Pairs parse_pairs(std::string_view text, bool plus_is_space,
                  const std::vector<std::string>& ignore) {
  Pairs out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t amp = text.find('&', start);
    if (amp == std::string_view::npos) amp = text.size();
    auto segment = text.substr(start, amp - start);
    if (!segment.empty()) {
      auto eq = segment.find('=');
      std::string name = pct_decode(segment.substr(0, eq), plus_is_space);
      std::string value = eq == std::string_view::npos
                              ? std::string()
                              : pct_decode(segment.substr(eq + 1), plus_is_space);
      if (std::find(ignore.begin(), ignore.end(), name) == ignore.end())
        out.emplace_back(std::move(name), std::move(value));
    }
    start = amp + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string short_sha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < 6 && i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

std::string clip(std::string_view s) {
  if (s.size() <= kMaxValueChars) return std::string(s);
  return std::string(s.substr(0, kMaxValueChars)) + "...";
}

// JSON with object members sorted by name, so equal values serialize equally.
void canonical_json(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::object: {
      const auto& obj = v.get_object();
      std::vector<const json::key_value_pair*> members;
      for (const auto& kv : obj) members.push_back(&kv);
      std::sort(members.begin(), members.end(),
                [](auto* a, auto* b) { return a->key() < b->key(); });
      out.push_back('{');
      for (size_t i = 0; i < members.size(); ++i) {
        if (i) out.push_back(',');
        out += json::serialize(json::string(members[i]->key()));
        out.push_back(':');
        canonical_json(members[i]->value(), out);
      }
      out.push_back('}');
      break;
    }
    case json::kind::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v.get_array()) {
        if (!first) out.push_back(',');
        first = false;
        canonical_json(e, out);
      }
      out.push_back(']');
      break;
    }
    default:
      out += json::serialize(v);
  }
}

enum class BodyKind : uint8_t { none, bytes, json, form };

// One request reduced to the parts the key compares.
struct KeyedRequest {
  std::string method, scheme, host, path;
  uint16_t port = 0;
  Pairs query;
  BodyKind body_kind = BodyKind::none;
  std::string body_bytes;  // bytes: the (decoded) body; json: canonical JSON
  uint64_t body_size = 0;  // as on the wire
  json::value body_json;   // json only
  Pairs body_form;         // form only
  std::vector<std::optional<std::string>> headers;  // parallel to options.use_headers
  std::string key;  // everything above the options keep, length-prefixed
  std::string request_line;
};

void append_part(std::string& key, std::string_view part) {
  key += std::to_string(part.size());
  key.push_back(':');
  key.append(part);
}

struct Compiled {
  MatchOptions options;
  std::vector<diff::JsonPath> json_ignores;
  std::vector<std::string> form_ignores;
};

bool content_type_is(std::string_view content_type, std::string_view what) {
  return to_lower(content_type).find(what) != std::string::npos;
}

std::string request_line_of(const flow::Request& r) { return r.method + " " + r.url(); }

// `with_line`: also the request line (for explanations); a hit never shows one.
KeyedRequest key_of(const flow::Request& r, const Compiled& c, bool with_line = true) {
  const MatchOptions& o = c.options;
  KeyedRequest k;
  k.method = r.method;
  k.scheme = to_lower(r.scheme);
  k.host = to_lower(r.host());
  k.port = r.port();
  std::string_view target = r.path;
  auto qmark = target.find('?');
  k.path = std::string(target.substr(0, qmark));
  // A fragment never reaches a server, but a recorded absolute URL might keep one: drop it.
  std::string_view query =
      qmark == std::string_view::npos ? std::string_view() : target.substr(qmark + 1);
  if (auto hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
  k.query = parse_pairs(query, false, o.ignore_params);
  if (with_line) k.request_line = request_line_of(r);

  k.body_size = std::max<uint64_t>(r.body.size, r.body.data.size());
  if (!o.ignore_body && !r.body.data.empty()) {
    std::string decoded;
    std::string_view body = r.body.data;
    auto encoding = r.headers.get("Content-Encoding");
    if (encoding && !encoding->empty() && codec::is_supported_content_encoding(*encoding)) {
      codec::CodingLimits limits;
      limits.max_output = o.max_parsed_body;
      if (auto d = codec::decode_content(body, *encoding, limits); d.ok()) {
        decoded = std::move(d.value());
        body = decoded;
      }
    }
    std::string content_type(r.headers.get("Content-Type").value_or(""));
    k.body_kind = BodyKind::bytes;
    if (body.size() <= o.max_parsed_body) {
      bool says_json = content_type_is(content_type, "json");
      auto first = body.find_first_not_of(" \t\r\n");
      bool looks_json =
          first != std::string_view::npos && (body[first] == '{' || body[first] == '[');
      if (content_type_is(content_type, "application/x-www-form-urlencoded")) {
        k.body_kind = BodyKind::form;
        k.body_form = parse_pairs(body, true, c.form_ignores);
      } else if (says_json || looks_json) {
        boost::system::error_code ec;
        json::parse_options popts;
        popts.max_depth = 64;
        auto v = json::parse(body, ec, {}, popts);
        if (!ec) {
          k.body_kind = BodyKind::json;
          for (const auto& p : c.json_ignores) p.remove(v);
          k.body_json = std::move(v);
        }
      }
    }
    if (k.body_kind == BodyKind::json) {
      canonical_json(k.body_json, k.body_bytes);
    } else if (k.body_kind == BodyKind::form) {
      for (auto& [n, v] : k.body_form) {
        append_part(k.body_bytes, n);
        append_part(k.body_bytes, v);
      }
    } else {
      k.body_bytes = std::string(body);
    }
  }

  for (const auto& name : o.use_headers) {
    auto values = r.headers.get_all(name);
    if (values.empty()) {
      k.headers.emplace_back(std::nullopt);
      continue;
    }
    std::string joined;
    for (size_t i = 0; i < values.size(); ++i) {
      if (i) joined += ", ";
      joined += values[i];
    }
    k.headers.emplace_back(std::move(joined));
  }

  append_part(k.key, k.method);
  if (!o.ignore_host) {
    append_part(k.key, k.scheme);
    append_part(k.key, k.host);
  }
  if (!o.ignore_port) append_part(k.key, std::to_string(k.port));
  append_part(k.key, k.path);
  append_part(k.key, std::to_string(k.query.size()));
  for (auto& [n, v] : k.query) {
    append_part(k.key, n);
    append_part(k.key, v);
  }
  if (!o.ignore_body) {
    append_part(k.key, std::to_string(static_cast<int>(k.body_kind)));
    append_part(k.key, k.body_bytes);
  }
  for (const auto& h : k.headers) append_part(k.key, h ? "1" + *h : "0");
  return k;
}

std::string describe_body(const KeyedRequest& k) {
  if (k.body_kind == BodyKind::none) return "empty";
  std::string kind = k.body_kind == BodyKind::json   ? "JSON, "
                     : k.body_kind == BodyKind::form ? "form, "
                                                     : "";
  return kind + std::to_string(k.body_size) + " bytes, sha256 " + short_sha256(k.body_bytes);
}

// Pairs differences (query parameters, form fields) by name: added / removed / changed.
void diff_pairs(const Pairs& recorded, const Pairs& requested, Difference::Part part,
                std::vector<Difference>& out) {
  std::map<std::string, std::vector<std::string>> a, b;
  for (auto& [n, v] : recorded) a[n].push_back(v);
  for (auto& [n, v] : requested) b[n].push_back(v);
  auto join = [](const std::vector<std::string>& vs) {
    std::string s;
    for (size_t i = 0; i < vs.size(); ++i) s += (i ? ", " : "") + clip(vs[i]);
    return s;
  };
  for (auto& [name, values] : a) {
    if (out.size() >= kMaxDifferences) return;
    auto it = b.find(name);
    if (it == b.end())
      out.push_back({part, Difference::Change::removed, clip(name), join(values), ""});
    else if (it->second != values)
      out.push_back(
          {part, Difference::Change::changed, clip(name), join(values), join(it->second)});
  }
  for (auto& [name, values] : b) {
    if (out.size() >= kMaxDifferences) return;
    if (!a.count(name))
      out.push_back({part, Difference::Change::added, clip(name), "", join(values)});
  }
}

std::string json_text(const json::value& v) {
  std::string s;
  canonical_json(v, s);
  return clip(s);
}

// Leaf-level JSON differences, paths in the project's canonical rendering.
void diff_json(const json::value& a, const json::value& b, std::vector<diff::PathElem>& path,
               std::vector<Difference>& out) {
  if (out.size() >= kMaxDifferences) return;
  if (a.is_object() && b.is_object()) {
    const auto& oa = a.get_object();
    const auto& ob = b.get_object();
    for (const auto& kv : oa) {
      path.push_back(diff::PathElem::member(kv.key()));
      if (auto* other = ob.if_contains(kv.key()))
        diff_json(kv.value(), *other, path, out);
      else if (out.size() < kMaxDifferences)
        out.push_back({Difference::Part::json_field, Difference::Change::removed,
                       diff::render_path(path), json_text(kv.value()), ""});
      path.pop_back();
    }
    for (const auto& kv : ob) {
      if (oa.contains(kv.key()) || out.size() >= kMaxDifferences) continue;
      path.push_back(diff::PathElem::member(kv.key()));
      out.push_back({Difference::Part::json_field, Difference::Change::added,
                     diff::render_path(path), "", json_text(kv.value())});
      path.pop_back();
    }
    return;
  }
  if (a.is_array() && b.is_array()) {
    const auto& xa = a.get_array();
    const auto& xb = b.get_array();
    size_t n = std::max(xa.size(), xb.size());
    for (size_t i = 0; i < n && out.size() < kMaxDifferences; ++i) {
      path.push_back(diff::PathElem::element(i));
      if (i < xa.size() && i < xb.size())
        diff_json(xa[i], xb[i], path, out);
      else if (i < xa.size())
        out.push_back({Difference::Part::json_field, Difference::Change::removed,
                       diff::render_path(path), json_text(xa[i]), ""});
      else
        out.push_back({Difference::Part::json_field, Difference::Change::added,
                       diff::render_path(path), "", json_text(xb[i])});
      path.pop_back();
    }
    return;
  }
  if (a != b)
    out.push_back({Difference::Part::json_field, Difference::Change::changed,
                   diff::render_path(path), json_text(a), json_text(b)});
}

struct Comparison {
  size_t matched = 0;
  size_t total = 0;
  std::vector<Difference> differences;
};

Comparison compare(const KeyedRequest& rec, const KeyedRequest& req, const Compiled& c) {
  const MatchOptions& o = c.options;
  Comparison cmp;
  auto& d = cmp.differences;
  using P = Difference::Part;
  using C = Difference::Change;
  auto part = [&](bool equal) {
    ++cmp.total;
    if (equal) ++cmp.matched;
    return equal;
  };
  if (!part(rec.method == req.method))
    d.push_back({P::method, C::changed, "", rec.method, req.method});
  if (!part(rec.path == req.path))
    d.push_back({P::path, C::changed, "", clip(rec.path), clip(req.path)});
  if (!o.ignore_host) {
    if (!part(rec.scheme == req.scheme))
      d.push_back({P::scheme, C::changed, "", rec.scheme, req.scheme});
    if (!part(rec.host == req.host))
      d.push_back({P::host, C::changed, "", clip(rec.host), clip(req.host)});
  }
  if (!o.ignore_port && !part(rec.port == req.port))
    d.push_back({P::port, C::changed, "", std::to_string(rec.port), std::to_string(req.port)});
  if (!part(rec.query == req.query)) diff_pairs(rec.query, req.query, P::query, d);
  if (!o.ignore_body) {
    bool same = rec.body_kind == req.body_kind && rec.body_bytes == req.body_bytes;
    if (!part(same)) {
      size_t before = d.size();
      if (rec.body_kind == BodyKind::json && req.body_kind == BodyKind::json) {
        std::vector<diff::PathElem> path;
        diff_json(rec.body_json, req.body_json, path, d);
      } else if (rec.body_kind == BodyKind::form && req.body_kind == BodyKind::form) {
        diff_pairs(rec.body_form, req.body_form, P::form_field, d);
      }
      if (d.size() == before)  // bytes, or kinds differ, or a difference too deep to list
        d.push_back({P::body, C::changed, "", describe_body(rec), describe_body(req)});
    }
  }
  for (size_t i = 0; i < o.use_headers.size(); ++i) {
    const auto& a = rec.headers[i];
    const auto& b = req.headers[i];
    if (part(a == b)) continue;
    C change = !a ? C::added : !b ? C::removed : C::changed;
    d.push_back({P::header, change, o.use_headers[i], clip(a.value_or("")), clip(b.value_or(""))});
  }
  if (d.size() > kMaxDifferences) d.resize(kMaxDifferences);
  return cmp;
}

std::string difference_text(const Difference& d) {
  using P = Difference::Part;
  using C = Difference::Change;
  std::string what;
  switch (d.part) {
    case P::query:
      what = "query parameter '" + d.name + "'";
      break;
    case P::form_field:
      what = "form field '" + d.name + "'";
      break;
    case P::json_field:
      what = "JSON field " + d.name;
      break;
    case P::header:
      what = "header " + d.name;
      break;
    default:
      what = part_name(d.part);
  }
  switch (d.change) {
    case C::added:
      return what + " added ('" + d.requested + "')";
    case C::removed:
      return what + " missing (recorded '" + d.recorded + "')";
    case C::changed:
      break;
  }
  return what + " differs (recorded '" + d.recorded + "', requested '" + d.requested + "')";
}

}  // namespace

std::string MissExplanation::to_json() const {
  json::object root;
  root["reason"] = reason_name(reason);
  root["request"] = request_line;
  json::array cands;
  for (const auto& c : candidates) {
    json::object o;
    o["flow_id"] = c.flow_id;
    o["request"] = c.request_line;
    o["parts_matched"] = c.parts_matched;
    o["parts_total"] = c.parts_total;
    o["recorded_count"] = c.recorded_count;
    json::array diffs;
    for (const auto& d : c.differences) {
      json::object x;
      x["part"] = part_name(d.part);
      x["change"] = change_name(d.change);
      if (!d.name.empty()) x["name"] = d.name;
      x["recorded"] = d.recorded;
      x["requested"] = d.requested;
      diffs.push_back(std::move(x));
    }
    o["differences"] = std::move(diffs);
    cands.push_back(std::move(o));
  }
  root["candidates"] = std::move(cands);
  root["explanation"] = text;
  return json::serialize(root);
}

struct Bucket {
  std::vector<size_t> flows;  // indexes into State::flows, recorded order
  size_t group = 0;           // State::groups: the options its flows are keyed with
  KeyedRequest representative;
  std::mutex mutex;
  size_t cursor = 0;  // responses served so far under this key
};

// One set of matching options and the keys recorded under it: a scope of MatchOptions::scopes,
// or the options themselves (always last).
struct Group {
  std::function<bool(const flow::Flow&)> when;
  Compiled compiled;
  std::unordered_map<std::string, size_t> by_key;  // key -> State::buckets index
};

struct Matcher::State {
  std::vector<Group> groups;
  std::vector<flow::Flow> flows;
  size_t skipped = 0;
  std::vector<std::unique_ptr<Bucket>> buckets;
  std::unique_ptr<std::atomic<uint64_t>[]> served;
  const Compiled& base() const { return groups.back().compiled; }
};

namespace {

Result<Compiled> compile(MatchOptions options, const std::string& scope) {
  std::string where = scope.empty() ? "" : "match rule '" + scope + "': ";
  Compiled out;
  if (options.ignore_body && !options.ignore_fields.empty())
    return Status(
        Errc::invalid_argument,
        where + "ignoring the whole body and ignoring body fields conflict: give one of them");
  for (const auto& field : options.ignore_fields) {
    if (field.empty())
      return Status(Errc::invalid_argument, where + "an ignored body field name is empty");
    if (field.front() == '$') {
      auto path = diff::JsonPath::parse(field);
      if (!path.ok())
        return Status(Errc::invalid_argument,
                      where + "ignored JSON field '" + field + "': " + path.status().message());
      out.json_ignores.push_back(std::move(path.value()));
    } else {
      out.form_ignores.push_back(field);
    }
  }
  options.scopes.clear();
  out.options = std::move(options);
  return out;
}

}  // namespace

Matcher::Matcher(std::unique_ptr<State> state) : state_(std::move(state)) {}
Matcher::~Matcher() = default;

Result<std::unique_ptr<Matcher>> Matcher::build(std::vector<flow::Flow> flows,
                                                MatchOptions options) {
  auto state = std::make_unique<State>();
  for (auto& scope : options.scopes) {
    auto compiled = compile(scope.options, scope.name.empty() ? "(unnamed)" : scope.name);
    if (!compiled.ok()) return compiled.status();
    state->groups.push_back({scope.when, std::move(compiled.value()), {}});
  }
  auto base = compile(std::move(options), "");
  if (!base.ok()) return base.status();
  state->groups.push_back({nullptr, std::move(base.value()), {}});

  std::vector<flow::Flow> kept;
  for (auto& f : flows) {
    if (f.kind != flow::FlowKind::http || !f.response) {
      ++state->skipped;
      continue;
    }
    kept.push_back(std::move(f));
  }
  std::stable_sort(kept.begin(), kept.end(), [](const flow::Flow& a, const flow::Flow& b) {
    if (a.timing.request_started != b.timing.request_started)
      return a.timing.request_started < b.timing.request_started;
    return a.id < b.id;
  });
  state->flows = std::move(kept);
  state->served = std::make_unique<std::atomic<uint64_t>[]>(state->flows.size());
  for (size_t i = 0; i < state->flows.size(); ++i) {
    size_t g = 0;
    while (g + 1 < state->groups.size() &&
           !(state->groups[g].when == nullptr || state->groups[g].when(state->flows[i])))
      ++g;
    Group& group = state->groups[g];
    auto k = key_of(state->flows[i].request, group.compiled);
    auto [it, inserted] = group.by_key.try_emplace(k.key, state->buckets.size());
    if (inserted) {
      state->buckets.push_back(std::make_unique<Bucket>());
      state->buckets.back()->group = g;
      state->buckets.back()->representative = std::move(k);
    }
    state->buckets[it->second]->flows.push_back(i);
  }
  return std::unique_ptr<Matcher>(new Matcher(std::move(state)));
}

MatchResult Matcher::lookup(const flow::Request& request) {
  auto& s = *state_;
  KeyedRequest k;
  const Compiled* compiled = nullptr;
  Bucket* found = nullptr;
  for (const auto& group : s.groups) {
    k = key_of(request, group.compiled, /*with_line=*/false);
    if (auto it = group.by_key.find(k.key); it != group.by_key.end()) {
      found = s.buckets[it->second].get();
      compiled = &group.compiled;
      break;
    }
  }
  MatchResult result;
  if (!found) {
    result.miss = explain(request);
    return result;
  }
  Bucket& b = *found;
  size_t count = b.flows.size();
  size_t n;
  {
    std::lock_guard lock(b.mutex);
    n = b.cursor;
    if (n >= count && compiled->options.on_exhausted == OnExhausted::miss) {
      n = SIZE_MAX;
    } else {
      ++b.cursor;
    }
  }
  result.count = count;
  if (n == SIZE_MAX) {
    k.request_line = request_line_of(request);
    MissExplanation e;
    e.reason = MissExplanation::Reason::exhausted;
    e.request_line = k.request_line;
    Candidate c;
    c.flow_id = s.flows[b.flows.back()].id;
    c.request_line = b.representative.request_line;
    c.recorded_count = count;
    auto cmp = compare(b.representative, k, *compiled);
    c.parts_matched = cmp.matched;
    c.parts_total = cmp.total;
    e.candidates.push_back(std::move(c));
    e.text =
        "Every recorded response for " + k.request_line + " was served already (" +
        std::to_string(count) + " recorded, last flow #" + std::to_string(e.candidates[0].flow_id) +
        "); the on-exhausted policy is 'miss'. Use --on-exhausted repeat-last or cycle to keep "
        "answering.";
    result.miss = std::move(e);
    return result;
  }
  size_t pick = n;
  if (n >= count) {
    result.reused = true;
    pick = compiled->options.on_exhausted == OnExhausted::cycle ? n % count : count - 1;
  }
  size_t index = b.flows[pick];
  s.served[index].fetch_add(1, std::memory_order_relaxed);
  result.flow = &s.flows[index];
  result.use = pick + 1;
  return result;
}

MissExplanation Matcher::explain(const flow::Request& request) const {
  const auto& s = *state_;
  // The request keyed as each group keys its recordings: each candidate is compared under the
  // options its own flows were keyed with.
  std::vector<KeyedRequest> keys;
  keys.reserve(s.groups.size());
  for (const auto& group : s.groups) keys.push_back(key_of(request, group.compiled));
  const KeyedRequest& k = keys.back();
  MissExplanation e;
  e.request_line = k.request_line;
  if (s.buckets.empty()) {
    e.reason = MissExplanation::Reason::no_flows;
    e.text = "No recorded response can answer " + k.request_line + ": nothing was recorded.";
    return e;
  }
  struct Scored {
    size_t bucket;
    Comparison cmp;
  };
  std::vector<Scored> scored;
  scored.reserve(s.buckets.size());
  for (size_t i = 0; i < s.buckets.size(); ++i)
    scored.push_back({i, compare(s.buckets[i]->representative, keys[s.buckets[i]->group],
                                 s.groups[s.buckets[i]->group].compiled)});
  size_t top = std::min(kMaxCandidates, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + top, scored.end(),
                    [](const Scored& a, const Scored& b) {
                      if (a.cmp.matched != b.cmp.matched) return a.cmp.matched > b.cmp.matched;
                      if (a.cmp.differences.size() != b.cmp.differences.size())
                        return a.cmp.differences.size() < b.cmp.differences.size();
                      return a.bucket < b.bucket;
                    });
  for (size_t i = 0; i < top; ++i) {
    const Bucket& b = *s.buckets[scored[i].bucket];
    Candidate c;
    c.flow_id = s.flows[b.flows.front()].id;
    c.request_line = b.representative.request_line;
    c.parts_matched = scored[i].cmp.matched;
    c.parts_total = scored[i].cmp.total;
    c.recorded_count = b.flows.size();
    c.differences = std::move(scored[i].cmp.differences);
    e.candidates.push_back(std::move(c));
  }
  e.reason = MissExplanation::Reason::no_match;
  std::string& t = e.text;
  t = "No recorded request matches " + k.request_line + ". ";
  for (size_t i = 0; i < e.candidates.size(); ++i) {
    const auto& c = e.candidates[i];
    t += i == 0 ? "Nearest: " : "Next: ";
    t += "flow #" + std::to_string(c.flow_id) + " " + c.request_line + " (" +
         std::to_string(c.parts_matched) + " of " + std::to_string(c.parts_total) +
         " parts match): ";
    for (size_t j = 0; j < c.differences.size(); ++j) {
      if (j) t += "; ";
      t += difference_text(c.differences[j]);
    }
    t += ". ";
  }
  if (!t.empty() && t.back() == ' ') t.pop_back();
  return e;
}

const MatchOptions& Matcher::options() const {
  return state_->base().options;
}
const std::vector<flow::Flow>& Matcher::flows() const {
  return state_->flows;
}
size_t Matcher::skipped() const {
  return state_->skipped;
}
size_t Matcher::key_count() const {
  return state_->buckets.size();
}

std::vector<uint64_t> Matcher::served_counts() const {
  std::vector<uint64_t> out(state_->flows.size());
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = state_->served[i].load(std::memory_order_relaxed);
  return out;
}

}  // namespace retake::replay::server
