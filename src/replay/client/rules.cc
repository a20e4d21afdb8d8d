// Rules: parsed once into plain action lists; applying them is a walk over those lists.
#include "replay/client/rules.h"

#include <atomic>
#include <set>
#include <sstream>

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>
#include <boost/json.hpp>

#include "codec/content_coding.h"
#include "diff/json_path.h"
#include "flow/read_file.h"

namespace retake::replay {

namespace {

struct ReplaceBody {
  std::shared_ptr<RE2> pattern;
  std::string with;
};

struct Rule {
  std::string name;
  int line = 0;
  FlowPredicate scope;
  std::vector<std::pair<std::string, std::string>> set_header;
  std::vector<std::string> remove_header;
  std::vector<std::pair<std::string, std::string>> set_query;
  std::vector<std::string> remove_query;
  std::vector<std::pair<diff::JsonPath, boost::json::value>> set_json;
  std::vector<diff::JsonPath> remove_json;
  std::vector<std::pair<std::string, std::string>> set_form;
  std::vector<ReplaceBody> replace_body;
  bool touches_body() const {
    return !set_json.empty() || !remove_json.empty() || !set_form.empty() || !replace_body.empty();
  }
};

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string pct_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out += static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string pct_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// "a=1&b=2" as ordered (raw name, raw value) pairs; a pair without '=' keeps value npos-free "".
std::vector<std::pair<std::string, std::string>> split_params(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t amp = text.find('&', start);
    if (amp == std::string_view::npos) amp = text.size();
    auto pair = text.substr(start, amp - start);
    auto eq = pair.find('=');
    if (eq == std::string_view::npos)
      out.emplace_back(std::string(pair), std::string("\x01"));
    else
      out.emplace_back(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
    start = amp + 1;
  }
  return out;
}

std::string join_params(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [n, v] : params) {
    if (!out.empty()) out += '&';
    out += n;
    if (v != "\x01") out += "=" + v;
  }
  return out;
}

void set_param(std::vector<std::pair<std::string, std::string>>& params, const std::string& name,
               const std::string& value) {
  bool found = false;
  for (auto it = params.begin(); it != params.end();) {
    if (pct_decode(it->first) == name) {
      if (found) {
        it = params.erase(it);
        continue;
      }
      it->second = pct_encode(value);
      found = true;
    }
    ++it;
  }
  if (!found) params.emplace_back(pct_encode(name), pct_encode(value));
}

void remove_param(std::vector<std::pair<std::string, std::string>>& params,
                  const std::string& name) {
  std::erase_if(params, [&](const auto& p) { return pct_decode(p.first) == name; });
}

// A YAML node as JSON: plain scalars that read as JSON numbers/booleans/null keep that type;
// quoted scalars stay strings.
boost::json::value to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      boost::json::object o;
      for (const auto& kv : node) o[kv.first.as<std::string>()] = to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      boost::json::array a;
      for (const auto& e : node) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() != "!") {
        boost::system::error_code ec;
        auto v = boost::json::parse(s, ec);
        if (!ec && !v.is_object() && !v.is_array()) return v;
      }
      return boost::json::value(s);
    }
    default:
      return nullptr;
  }
}

struct ParseError {
  int line;
  std::string message;
};

std::vector<std::pair<std::string, std::string>> string_map(const YAML::Node& node,
                                                            const char* what) {
  if (!node.IsMap())
    throw ParseError{node.Mark().line + 1, std::string(what) + " must be a map of name: value"};
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& kv : node) {
    if (!kv.second.IsScalar())
      throw ParseError{
          kv.second.Mark().line + 1,
          std::string(what) + " '" + kv.first.as<std::string>() + "' must be a plain value"};
    out.emplace_back(kv.first.as<std::string>(), kv.second.Scalar());
  }
  return out;
}

std::vector<std::string> string_list(const YAML::Node& node, const char* what) {
  std::vector<std::string> out;
  if (node.IsScalar()) {
    out.push_back(node.Scalar());
    return out;
  }
  if (!node.IsSequence())
    throw ParseError{node.Mark().line + 1, std::string(what) + " must be a list of names"};
  for (const auto& e : node) {
    if (!e.IsScalar())
      throw ParseError{e.Mark().line + 1, std::string(what) + " entries must be names"};
    out.push_back(e.Scalar());
  }
  return out;
}

diff::JsonPath json_path(const std::string& text, int line) {
  auto p = diff::JsonPath::parse(text);
  if (!p) throw ParseError{line, "JSON path '" + text + "': " + p.status().message()};
  return *p;
}

}  // namespace

struct RuleSet::Impl {
  std::vector<Rule> rules;
  std::vector<BindingRule> bindings;
  mutable std::atomic<uint64_t> applied{0}, body_failures{0};

  void apply_body(const Rule& rule, flow::Request& req) const {
    if (req.body.truncated) {
      ++body_failures;
      return;
    }
    std::string encoding(req.headers.get("Content-Encoding").value_or(""));
    std::string body = req.body.data;
    if (!encoding.empty()) {
      auto decoded = codec::decode_content(body, encoding);
      if (!decoded) {
        ++body_failures;
        return;
      }
      body = std::move(*decoded);
    }
    bool changed = false;
    if (!rule.set_json.empty() || !rule.remove_json.empty()) {
      boost::system::error_code ec;
      auto doc = boost::json::parse(body, ec);
      if (ec) {
        ++body_failures;
      } else {
        for (const auto& [path, value] : rule.set_json) {
          auto n = path.set(doc, value);
          if (n.ok() && *n > 0)
            changed = true;
          else if (!n.ok())
            ++body_failures;
        }
        for (const auto& path : rule.remove_json)
          if (path.remove(doc) > 0) changed = true;
        if (changed) body = boost::json::serialize(doc);
      }
    }
    if (!rule.set_form.empty()) {
      auto params = split_params(body);
      for (const auto& [n, v] : rule.set_form) set_param(params, n, v);
      body = join_params(params);
      changed = true;
    }
    for (const auto& r : rule.replace_body)
      if (RE2::GlobalReplace(&body, *r.pattern, r.with) > 0) changed = true;
    if (!changed) return;
    if (!encoding.empty()) {
      auto encoded = codec::encode_content(body, encoding);
      if (!encoded) {
        ++body_failures;
        return;
      }
      body = std::move(*encoded);
    }
    req.body.data = std::move(body);
    req.body.size = req.body.data.size();
    if (req.headers.contains("Content-Length"))
      req.headers.set("Content-Length", std::to_string(req.body.data.size()));
  }
};

RuleSet::RuleSet() : impl_(std::make_unique<Impl>()) {}
RuleSet::~RuleSet() = default;
RuleSet::RuleSet(RuleSet&&) noexcept = default;
RuleSet& RuleSet::operator=(RuleSet&&) noexcept = default;
const std::vector<BindingRule>& RuleSet::bindings() const {
  return impl_->bindings;
}
size_t RuleSet::size() const {
  return impl_->rules.size();
}
std::vector<std::string> RuleSet::names() const {
  std::vector<std::string> out;
  for (const auto& r : impl_->rules) out.push_back(r.name);
  return out;
}
RuleStats RuleSet::stats() const {
  return {impl_->applied.load(), impl_->body_failures.load()};
}

void RuleSet::apply(flow::Request& req, const flow::Flow& origin) const {
  for (const auto& rule : impl_->rules) {
    if (rule.scope && !rule.scope(origin)) continue;
    ++impl_->applied;
    for (const auto& name : rule.remove_header) req.headers.remove(name);
    for (const auto& [n, v] : rule.set_header) req.headers.set(n, v);
    if (!rule.set_query.empty() || !rule.remove_query.empty()) {
      auto q = req.path.find('?');
      std::string base = req.path.substr(0, q);
      auto params = split_params(q == std::string::npos ? std::string_view{}
                                                        : std::string_view(req.path).substr(q + 1));
      for (const auto& n : rule.remove_query) remove_param(params, n);
      for (const auto& [n, v] : rule.set_query) set_param(params, n, v);
      auto query = join_params(params);
      req.path = query.empty() ? base : base + "?" + query;
    }
    if (rule.touches_body()) impl_->apply_body(rule, req);
  }
}

Result<RuleSet> parse_rules(std::string_view text, std::string_view source,
                            const ScopeCompiler& compile) {
  auto where = [&](int line) {
    return std::string(source) + " line " + std::to_string(line) + ": ";
  };
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return Status(Errc::parse_error, where(e.mark.line + 1) + e.msg);
  }
  RuleSet set;
  std::string current = "?";
  auto compile_when = [&](const YAML::Node& v, int kline) {
    if (!v.IsScalar()) throw ParseError{kline, "'when' must be a filter expression"};
    if (!compile)
      throw ParseError{kline, "'when' needs the filter language, which this build does not provide"};
    auto pred = compile(v.Scalar());
    if (!pred) throw ParseError{kline, "filter '" + v.Scalar() + "': " + pred.status().message()};
    return *pred;
  };
  try {
    if (root.IsMap())
      for (const auto& kv : root) {
        const std::string key = kv.first.as<std::string>();
        if (key != "rules" && key != "bindings")
          throw ParseError{kv.first.Mark().line + 1,
                           "unknown top-level key '" + key + "' (rules, bindings)"};
      }
    YAML::Node list = root.IsMap() ? root["rules"] : root;
    const bool has_bindings = root.IsMap() && root["bindings"];
    YAML::Node bindings = has_bindings ? root["bindings"] : YAML::Node();
    if (has_bindings) {
      if (!bindings.IsSequence())
        throw ParseError{bindings.Mark().line + 1, "'bindings' must be a list"};
      std::set<std::string> names;
      for (const auto& node : bindings) {
        current = node.IsMap() && node["name"] && node["name"].IsScalar() ? node["name"].Scalar()
                                                                          : "?";
        int line = node.Mark().line + 1;
        if (!node.IsMap() || !node["name"] || !node["name"].IsScalar() || !node["from"] ||
            !node["from"].IsScalar())
          throw ParseError{line, "a binding needs a 'name' and 'from' (header:H, cookie:C, "
                                 "json:$.PATH, hidden:N or regex:RE)"};
        current = node["name"].Scalar();
        if (!names.insert(current).second) throw ParseError{line, "duplicate binding name"};
        for (const auto& kv : node) {
          const std::string key = kv.first.as<std::string>();
          if (key != "name" && key != "from" && key != "when")
            throw ParseError{kv.first.Mark().line + 1,
                             "unknown binding key '" + key + "' (name, from, when)"};
        }
        auto rule = parse_binding_rule(current + "=" + node["from"].Scalar());
        if (!rule) throw ParseError{node["from"].Mark().line + 1, rule.status().message()};
        if (node["when"]) rule->scope = compile_when(node["when"], node["when"].Mark().line + 1);
        set.impl_->bindings.push_back(std::move(*rule));
      }
      current = "?";
    }
    if (!list && has_bindings) return set;
    if (!list || !list.IsSequence())
      throw ParseError{root.Mark().line + 1,
                       "expected a list of rules (top-level 'rules:' or a sequence)"};
    std::set<std::string> seen;
    for (const auto& node : list) {
      current = "?";
      int line = node.Mark().line + 1;
      if (!node.IsMap()) throw ParseError{line, "a rule must be a map with a name and actions"};
      Rule rule;
      rule.line = line;
      if (!node["name"] || !node["name"].IsScalar())
        throw ParseError{line, "a rule needs a 'name'"};
      rule.name = node["name"].Scalar();
      current = rule.name;
      if (!seen.insert(rule.name).second) throw ParseError{line, "duplicate rule name"};
      bool any_action = false;
      for (const auto& kv : node) {
        const std::string key = kv.first.as<std::string>();
        int kline = kv.first.Mark().line + 1;
        const YAML::Node& v = kv.second;
        if (key == "name") continue;
        if (key == "when") {
          rule.scope = compile_when(v, kline);
          continue;
        }
        any_action = true;
        if (key == "set_header")
          rule.set_header = string_map(v, "set_header");
        else if (key == "remove_header")
          rule.remove_header = string_list(v, "remove_header");
        else if (key == "set_query")
          rule.set_query = string_map(v, "set_query");
        else if (key == "remove_query")
          rule.remove_query = string_list(v, "remove_query");
        else if (key == "set_form")
          rule.set_form = string_map(v, "set_form");
        else if (key == "set_json") {
          if (!v.IsMap()) throw ParseError{kline, "set_json must be a map of path: value"};
          for (const auto& p : v)
            rule.set_json.emplace_back(
                json_path(p.first.as<std::string>(), p.first.Mark().line + 1), to_json(p.second));
        } else if (key == "remove_json") {
          for (const auto& p : string_list(v, "remove_json"))
            rule.remove_json.push_back(json_path(p, kline));
        } else if (key == "replace_body") {
          std::vector<YAML::Node> items;
          if (v.IsSequence())
            for (const auto& e : v) items.push_back(e);
          else
            items.push_back(v);
          for (const auto& e : items) {
            if (!e.IsMap() || !e["pattern"] || !e["with"])
              throw ParseError{e.Mark().line + 1, "replace_body needs 'pattern' and 'with'"};
            RE2::Options quiet;
            quiet.set_log_errors(false);
            auto re = std::make_shared<RE2>(e["pattern"].as<std::string>(), quiet);
            if (!re->ok())
              throw ParseError{e["pattern"].Mark().line + 1, "bad regex: " + re->error()};
            std::string err;
            if (!re->CheckRewriteString(e["with"].as<std::string>(), &err))
              throw ParseError{e["with"].Mark().line + 1, "bad replacement: " + err};
            rule.replace_body.push_back({re, e["with"].as<std::string>()});
          }
        } else {
          throw ParseError{kline,
                           "unknown action '" + key +
                               "' (set_header, remove_header, set_query, remove_query, set_json, "
                               "remove_json, set_form, replace_body, when)"};
        }
      }
      if (!any_action) throw ParseError{line, "the rule has no action"};
      set.impl_->rules.push_back(std::move(rule));
    }
  } catch (const ParseError& e) {
    return Status(Errc::parse_error, where(e.line) + "rule '" + current + "': " + e.message);
  } catch (const YAML::Exception& e) {
    return Status(Errc::parse_error, where(e.mark.line + 1) + "rule '" + current + "': " + e.msg);
  }
  return set;
}

Result<RuleSet> load_rules_file(const std::string& path, const ScopeCompiler& compile) {
  auto text = read_small_file(path, 4u << 20, "rules file");
  if (!text) return text.status();
  return parse_rules(*text, path, compile);
}

}  // namespace retake::replay
