#include "diff/json_path.h"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <unordered_set>

namespace retake::diff {

namespace json = boost::json;

namespace {

bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_ident_char(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
// What the parser accepts after a dot: a little wider than what the renderer emits, so that
// `$.x-request-id` and `$.0` are convenient to type.
bool is_name_char(char c) {
  return is_ident_char(c) || c == '-' || c == '$' || static_cast<unsigned char>(c) >= 0x80;
}

bool needs_brackets(std::string_view key) {
  if (key.empty() || !is_ident_start(key[0])) return true;
  return !std::all_of(key.begin(), key.end(), is_ident_char);
}

Status error_at(size_t pos, std::string what) {
  return Status(Errc::parse_error, "column " + std::to_string(pos + 1) + ": " + what);
}

bool step_matches(const JsonPath::Step& s, const PathElem& e) {
  switch (s.kind) {
    case JsonPath::StepKind::member: return !e.is_index && e.key == s.name;
    case JsonPath::StepKind::index: return e.is_index && e.index == s.index;
    case JsonPath::StepKind::wildcard: return true;
  }
  return false;
}

// Calls fn(child) for each child of `node` the step selects (ignoring `descendant`).
template <class V, class Fn>
void for_matching_children(V& node, const JsonPath::Step& s, Fn&& fn) {
  if (s.kind == JsonPath::StepKind::member) {
    if (auto* obj = node.if_object()) {
      auto it = obj->find(s.name);
      if (it != obj->end()) fn(it->value());
    }
  } else if (s.kind == JsonPath::StepKind::index) {
    if (auto* arr = node.if_array()) {
      if (s.index < arr->size()) fn((*arr)[s.index]);
    }
  } else {
    if (auto* obj = node.if_object()) {
      for (auto& kv : *obj) fn(kv.value());
    } else if (auto* arr = node.if_array()) {
      for (auto& v : *arr) fn(v);
    }
  }
}

template <class V, class Fn>
void for_all_children(V& node, Fn&& fn) {
  if (auto* obj = node.if_object()) {
    for (auto& kv : *obj) fn(kv.value());
  } else if (auto* arr = node.if_array()) {
    for (auto& v : *arr) fn(v);
  }
}

template <class V>
void select_rec(const std::vector<JsonPath::Step>& steps, size_t i, V& node, std::vector<V*>& out) {
  if (i == steps.size()) {
    out.push_back(&node);
    return;
  }
  const auto& s = steps[i];
  for_matching_children(node, s, [&](V& child) { select_rec(steps, i + 1, child, out); });
  if (s.descendant)
    for_all_children(node, [&](V& child) { select_rec(steps, i, child, out); });
}

template <class V>
std::vector<V*> select_impl(const std::vector<JsonPath::Step>& steps, V& root) {
  std::vector<V*> out;
  select_rec(steps, 0, root, out);
  bool has_descendant =
      std::any_of(steps.begin(), steps.end(), [](const auto& s) { return s.descendant; });
  if (has_descendant && out.size() > 1) {
    // Two descendant steps can reach one value twice; keep the first visit.
    std::unordered_set<const void*> seen;
    std::erase_if(out, [&](V* v) { return !seen.insert(v).second; });
  }
  return out;
}

size_t remove_rec(const std::vector<JsonPath::Step>& steps, size_t i, json::value& node) {
  const auto& s = steps[i];
  size_t count = 0;
  // Deeper removals first: they never move this node's children, while erasing here may.
  if (s.descendant)
    for_all_children(node, [&](json::value& child) { count += remove_rec(steps, i, child); });
  if (i + 1 < steps.size()) {
    for_matching_children(node, s,
                          [&](json::value& child) { count += remove_rec(steps, i + 1, child); });
    return count;
  }
  if (auto* obj = node.if_object()) {
    if (s.kind == JsonPath::StepKind::member) {
      count += obj->erase(s.name);
    } else if (s.kind == JsonPath::StepKind::wildcard) {
      count += obj->size();
      obj->clear();
    }
  } else if (auto* arr = node.if_array()) {
    if (s.kind == JsonPath::StepKind::index) {
      if (s.index < arr->size()) {
        arr->erase(arr->begin() + static_cast<std::ptrdiff_t>(s.index));
        ++count;
      }
    } else if (s.kind == JsonPath::StepKind::wildcard) {
      count += arr->size();
      arr->clear();
    }
  }
  return count;
}

}  // namespace

void append_path_elem(std::string& out, const PathElem& elem) {
  if (elem.is_index) {
    char buf[24];
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, elem.index);
    out += '[';
    out.append(buf, p);
    out += ']';
    return;
  }
  if (!needs_brackets(elem.key)) {
    out += '.';
    out += elem.key;
    return;
  }
  out += "['";
  for (char c : elem.key) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += "']";
}

std::string render_path(std::span<const PathElem> path) {
  std::string out = "$";
  for (const auto& e : path) append_path_elem(out, e);
  return out;
}

std::string render_path_generalized(std::span<const PathElem> path) {
  std::string out = "$";
  for (const auto& e : path) {
    if (e.is_index)
      out += "[*]";
    else
      append_path_elem(out, e);
  }
  return out;
}

Result<JsonPath> JsonPath::parse(std::string_view text) {
  JsonPath path;
  path.text_ = std::string(text);
  if (text.empty() || text[0] != '$') return error_at(0, "a path starts with '$'");
  size_t pos = 1;
  const size_t n = text.size();
  while (pos < n) {
    if (path.steps_.size() >= kMaxSteps)
      return error_at(pos, "more than " + std::to_string(kMaxSteps) + " steps");
    Step step;
    char c = text[pos];
    if (c == '.') {
      ++pos;
      if (pos < n && text[pos] == '.') {
        step.descendant = true;
        ++pos;
        if (pos >= n) return error_at(pos, "expected a name, '*' or '[' after '..'");
        if (text[pos] == '[') goto bracket;  // `$..[0]`, `$..['k']`
      }
      if (pos < n && text[pos] == '*') {
        step.kind = StepKind::wildcard;
        ++pos;
      } else {
        size_t start = pos;
        while (pos < n && is_name_char(text[pos])) ++pos;
        if (pos == start) {
          if (pos < n)
            return error_at(pos, std::string("unexpected '") + text[pos] + "' in a member name");
          return error_at(pos, "expected a member name after '.'");
        }
        step.kind = StepKind::member;
        step.name = std::string(text.substr(start, pos - start));
      }
      path.steps_.push_back(std::move(step));
      continue;
    }
    if (c != '[') return error_at(pos, std::string("unexpected '") + c + "'; expected '.' or '['");
  bracket:
    ++pos;  // past '['
    if (pos >= n) return error_at(pos, "expected an index, '*' or a quoted name after '['");
    c = text[pos];
    if (c == '*') {
      step.kind = StepKind::wildcard;
      ++pos;
    } else if (c == '\'' || c == '"') {
      char quote = c;
      ++pos;
      std::string name;
      bool closed = false;
      while (pos < n) {
        char d = text[pos];
        if (d == '\\') {
          if (pos + 1 >= n) return error_at(pos, "unfinished escape in a quoted name");
          char e = text[pos + 1];
          if (e != '\\' && e != '\'' && e != '"')
            return error_at(pos, std::string("unknown escape '\\") + e + "'");
          name += e;
          pos += 2;
          continue;
        }
        if (d == quote) {
          closed = true;
          ++pos;
          break;
        }
        name += d;
        ++pos;
      }
      if (!closed) return error_at(pos, "unterminated quoted name");
      step.kind = StepKind::member;
      step.name = std::move(name);
    } else if (c >= '0' && c <= '9') {
      size_t start = pos;
      while (pos < n && text[pos] >= '0' && text[pos] <= '9') ++pos;
      auto digits = text.substr(start, pos - start);
      size_t value = 0;
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (ec != std::errc() || value > (size_t{1} << 40)) return error_at(start, "index too large");
      step.kind = StepKind::index;
      step.index = value;
    } else if (c == '-') {
      return error_at(pos, "negative indexes are not supported");
    } else {
      return error_at(pos, std::string("unexpected '") + c + "' after '['");
    }
    if (pos >= n || text[pos] != ']') return error_at(pos, "expected ']'");
    ++pos;
    path.steps_.push_back(std::move(step));
  }
  return path;
}

bool JsonPath::is_concrete() const {
  return std::none_of(steps_.begin(), steps_.end(), [](const Step& s) {
    return s.descendant || s.kind == StepKind::wildcard;
  });
}

namespace {
// Simulates the pattern as an automaton over the path; states[i] means "steps [0, i) consumed".
// A descendant step may also stay in place, consuming one intermediate level.
bool match_impl(const std::vector<JsonPath::Step>& steps, std::span<const PathElem> path,
                bool prefix) {
  const size_t m = steps.size();
  if (m == 0) return prefix || path.empty();
  if (m <= 64) {
    uint64_t states = 1;  // bit i: state i
    const uint64_t done = uint64_t{1} << m;
    for (const auto& e : path) {
      if (prefix && (states & done)) return true;
      uint64_t next = 0;
      for (size_t i = 0; i < m; ++i) {
        if (!(states >> i & 1)) continue;
        if (step_matches(steps[i], e)) next |= uint64_t{1} << (i + 1);
        if (steps[i].descendant) next |= uint64_t{1} << i;
      }
      states = next;
      if (!states) return false;
    }
    return (states & done) != 0;
  }
  std::vector<char> states(m + 1, 0), next(m + 1, 0);
  states[0] = 1;
  for (const auto& e : path) {
    if (prefix && states[m]) return true;
    std::fill(next.begin(), next.end(), 0);
    bool any = false;
    for (size_t i = 0; i < m; ++i) {
      if (!states[i]) continue;
      if (step_matches(steps[i], e)) next[i + 1] = 1, any = true;
      if (steps[i].descendant) next[i] = 1, any = true;
    }
    states.swap(next);
    if (!any) return false;
  }
  return states[m] != 0;
}
}  // namespace

bool JsonPath::matches(std::span<const PathElem> path) const {
  return match_impl(steps_, path, false);
}

bool JsonPath::matches_prefix(std::span<const PathElem> path) const {
  return match_impl(steps_, path, true);
}

std::vector<const json::value*> JsonPath::select(const json::value& root) const {
  return select_impl<const json::value>(steps_, root);
}

std::vector<json::value*> JsonPath::select(json::value& root) const {
  return select_impl<json::value>(steps_, root);
}

Result<size_t> JsonPath::set(json::value& root, const json::value& value) const {
  if (steps_.empty()) {
    root = value;
    return size_t{1};
  }
  if (!is_concrete()) {
    auto targets = select(root);
    // Inner values first: with descendant steps an outer target may contain an inner one, and
    // replacing the outer one first would free the inner one.
    for (auto it = targets.rbegin(); it != targets.rend(); ++it) **it = value;
    return targets.size();
  }
  json::value* node = &root;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const auto& s = steps_[i];
    const bool last = i + 1 == steps_.size();
    if (s.kind == StepKind::member) {
      if (node->is_null()) node->emplace_object();
      auto* obj = node->if_object();
      if (!obj)
        return Status(Errc::invalid_argument,
                      text_ + ": member '" + s.name + "' of a value that is not an object");
      if (last) {
        (*obj)[s.name] = value;
        return size_t{1};
      }
      node = &(*obj)[s.name];
    } else {
      if (node->is_null()) node->emplace_array();
      auto* arr = node->if_array();
      if (!arr)
        return Status(Errc::invalid_argument, text_ + ": index " + std::to_string(s.index) +
                                                  " of a value that is not an array");
      if (s.index > arr->size())
        return Status(Errc::invalid_argument, text_ + ": index " + std::to_string(s.index) +
                                                  " past the end of an array of " +
                                                  std::to_string(arr->size()));
      if (s.index == arr->size()) arr->emplace_back(nullptr);
      if (last) {
        (*arr)[s.index] = value;
        return size_t{1};
      }
      node = &(*arr)[s.index];
    }
  }
  return size_t{0};  // unreachable: the loop returns at the last step
}

size_t JsonPath::remove(json::value& root) const {
  if (steps_.empty()) return 0;
  return remove_rec(steps_, 0, root);
}

}  // namespace retake::diff
