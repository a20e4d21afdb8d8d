#include "replay/server/match_rules.h"

#include <yaml-cpp/yaml.h>

#include <memory>
#include <set>

#include "flow/read_file.h"
#include "query/filter.h"

namespace retake::replay::server {

namespace {

Status bad(std::string_view source, const YAML::Node& at, const std::string& message) {
  return Status(Errc::parse_error, std::string(source) + " line " +
                                       std::to_string(at.Mark().line + 1) + ": " + message);
}

// A string or a list of strings, appended to `into`.
Status append_names(std::string_view source, const YAML::Node& node, const std::string& where,
                    std::vector<std::string>& into) {
  if (node.IsScalar()) {
    into.push_back(node.as<std::string>());
    return {};
  }
  if (!node.IsSequence()) return bad(source, node, where + ": expected a name or a list of names");
  for (const auto& item : node) {
    if (!item.IsScalar()) return bad(source, item, where + ": expected a name");
    into.push_back(item.as<std::string>());
  }
  return {};
}

Status read_flag(std::string_view source, const YAML::Node& node, const std::string& where,
                 bool& into) {
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value))
    return bad(source, node, where + ": expected true or false");
  into = into || value;
  return {};
}

Result<ScopedMatch> read_rule(std::string_view source, const YAML::Node& node,
                              const MatchOptions& base, std::set<std::string>& names) {
  if (!node.IsMap()) return bad(source, node, "a match rule is a map (name:, when:, ...)");
  ScopedMatch rule;
  rule.options = base;
  rule.options.scopes.clear();
  const YAML::Node name = node["name"];
  if (!name || !name.IsScalar() || name.as<std::string>().empty())
    return bad(source, node, "a match rule needs a name");
  rule.name = name.as<std::string>();
  if (!names.insert(rule.name).second)
    return bad(source, name, "match rule '" + rule.name + "' is named twice");
  const std::string where = "match rule '" + rule.name + "'";
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& value = entry.second;
    Status st;
    if (key == "name") {
      continue;
    } else if (key == "when") {
      if (!value.IsScalar()) return bad(source, value, where + ": when is a filter expression");
      auto filter = query::Filter::parse(value.as<std::string>());
      if (!filter.ok()) return bad(source, value, where + ": when: " + filter.status().message());
      auto shared = std::make_shared<query::Filter>(std::move(filter.value()));
      rule.when = [shared](const flow::Flow& f) { return shared->matches(f); };
    } else if (key == "ignore_param") {
      st = append_names(source, value, where + ": ignore_param", rule.options.ignore_params);
    } else if (key == "ignore_field") {
      st = append_names(source, value, where + ": ignore_field", rule.options.ignore_fields);
    } else if (key == "use_header") {
      st = append_names(source, value, where + ": use_header", rule.options.use_headers);
    } else if (key == "ignore_body") {
      st = read_flag(source, value, where + ": ignore_body", rule.options.ignore_body);
    } else if (key == "ignore_host") {
      st = read_flag(source, value, where + ": ignore_host", rule.options.ignore_host);
    } else if (key == "ignore_port") {
      st = read_flag(source, value, where + ": ignore_port", rule.options.ignore_port);
    } else if (key == "on_exhausted") {
      auto policy =
          value.IsScalar() ? on_exhausted_from_name(value.as<std::string>()) : std::nullopt;
      if (!policy)
        return bad(source, value, where + ": on_exhausted: expected repeat-last, cycle or miss");
      rule.options.on_exhausted = *policy;
    } else {
      return bad(source, entry.first,
                 where + ": unknown key '" + key +
                     "' (expected name, when, ignore_param, ignore_field, use_header, "
                     "ignore_body, ignore_host, ignore_port, on_exhausted)");
    }
    if (!st.ok()) return st;
  }
  if (rule.options.ignore_body && !rule.options.ignore_fields.empty())
    return bad(source, node, where + ": ignore_body and ignore_field exclude each other");
  return rule;
}

}  // namespace

Result<std::vector<ScopedMatch>> parse_match_rules(std::string_view text, std::string_view source,
                                                   const MatchOptions& base) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return Status(Errc::parse_error,
                  std::string(source) + " line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap())
    return Status(Errc::parse_error, std::string(source) +
                                         ": expected a map "
                                         "with a match: list");
  std::vector<ScopedMatch> out;
  std::set<std::string> names;
  bool seen = false;
  try {
    for (const auto& entry : root) {
      const std::string key = entry.first.as<std::string>();
      if (key == "rules" || key == "bindings") continue;  // client replay's sections
      if (key != "match")
        return bad(source, entry.first,
                   "unknown section '" + key + "' (expected match, rules, bindings)");
      seen = true;
      if (!entry.second.IsSequence())
        return bad(source, entry.second, "match: expected a list of rules");
      for (const auto& item : entry.second) {
        auto rule = read_rule(source, item, base, names);
        if (!rule.ok()) return rule.status();
        out.push_back(std::move(rule.value()));
      }
    }
  } catch (const YAML::Exception& e) {
    return Status(Errc::parse_error,
                  std::string(source) + " line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!seen) return Status(Errc::parse_error, std::string(source) + ": no match: section");
  return out;
}

Result<std::vector<ScopedMatch>> load_match_rules(const std::string& path,
                                                  const MatchOptions& base) {
  auto text = read_small_file(path, 4u << 20, "match rules file");
  if (!text) return text.status();
  return parse_match_rules(*text, path, base);
}

}  // namespace retake::replay::server
