#include "diff/diff.h"

#include <openssl/evp.h>
#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "diff/internal.h"
#include "diff/json_tape.h"

namespace retake::diff {

namespace json = boost::json;

// ---------------------------------------------------------------------------------------------
// Names

namespace {
constexpr const char* kKindNames[] = {
    "status_changed", "response_missing",     "header_changed", "header_missing",
    "header_added",   "value_changed",        "type_changed",   "field_missing",
    "field_added",    "array_length_changed", "line_changed",   "line_missing",
    "line_added",     "body_changed",
};
constexpr const char* kNormalizerNames[] = {"timestamp", "uuid", "hex_id", "number"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace

const char* diff_kind_name(DiffKind kind) noexcept {
  auto i = static_cast<size_t>(kind);
  return i < std::size(kKindNames) ? kKindNames[i] : "unknown";
}

std::optional<DiffKind> diff_kind_from_name(std::string_view name) noexcept {
  for (size_t i = 0; i < std::size(kKindNames); ++i)
    if (name == kKindNames[i]) return static_cast<DiffKind>(i);
  return std::nullopt;
}

const char* normalizer_kind_name(NormalizerKind kind) noexcept {
  auto i = static_cast<size_t>(kind);
  return i < std::size(kNormalizerNames) ? kNormalizerNames[i] : "unknown";
}

std::optional<NormalizerKind> normalizer_kind_from_name(std::string_view name) noexcept {
  for (size_t i = 0; i < std::size(kNormalizerNames); ++i)
    if (name == kNormalizerNames[i]) return static_cast<NormalizerKind>(i);
  return std::nullopt;
}

const char* body_kind_name(BodyKind kind) noexcept {
  switch (kind) {
    case BodyKind::none:
      return "none";
    case BodyKind::json:
      return "json";
    case BodyKind::text:
      return "text";
    case BodyKind::binary:
      return "binary";
  }
  return "unknown";
}

std::vector<std::string> default_ignored_headers() {
  return {"date",
          "age",
          "expires",
          "last-modified",
          "etag",
          "content-length",
          "content-encoding",
          "transfer-encoding",
          "connection",
          "keep-alive",
          "via",
          "server-timing",
          "x-request-id",
          "x-correlation-id",
          "x-amzn-trace-id",
          "x-amzn-requestid",
          "x-amz-request-id",
          "x-amz-id-2",
          "x-amz-cf-id",
          "x-amz-cf-pop",
          "traceparent",
          "tracestate",
          "b3",
          "x-b3-traceid",
          "x-b3-spanid",
          "x-b3-parentspanid",
          "x-b3-sampled",
          "x-cloud-trace-context",
          "x-datadog-trace-id",
          "x-datadog-parent-id",
          "x-runtime",
          "x-response-time",
          "cf-ray",
          "cf-cache-status",
          "x-cache",
          "x-cache-hits",
          "x-served-by",
          "x-timer",
          "report-to",
          "nel"};
}

// ---------------------------------------------------------------------------------------------
// Small helpers (internal.h)

std::string truncate_utf8(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  std::string out(s.substr(0, cut));
  out += "\xE2\x80\xA6";  // …
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return "?";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string media_type(std::string_view ct) {
  auto semi = ct.find(';');
  return lower(trim(ct.substr(0, semi)));
}

bool is_json_media(std::string_view m) {
  return m == "application/json" || m == "text/json" || m.ends_with("+json");
}

bool is_text_media(std::string_view m) {
  return m.starts_with("text/") || m == "application/xml" || m.ends_with("+xml") ||
         m == "application/x-www-form-urlencoded" || m == "application/javascript" ||
         m == "application/x-ndjson" || m == "application/yaml" || m == "application/x-yaml" ||
         m == "application/graphql" || m == "application/csv";
}

// ---------------------------------------------------------------------------------------------
// Comparator construction

struct Comparator::Scratch {
  tape::Tape a, b;  // parsed bodies; memory kept between comparisons
};

Comparator::Comparator() = default;
Comparator::~Comparator() = default;
Comparator::Comparator(Comparator&&) noexcept = default;
Comparator& Comparator::operator=(Comparator&&) noexcept = default;

namespace {

Result<Comparator::Rule> parse_target(std::string_view text, std::string_view what) {
  Comparator::Rule rule;
  if (text == "status") {
    rule.target = Comparator::Rule::Target::status;
  } else if (text == "body") {
    rule.target = Comparator::Rule::Target::body;
  } else if (text.starts_with("header:")) {
    rule.target = Comparator::Rule::Target::header;
    rule.header = lower(trim(text.substr(7)));
    if (rule.header.empty())
      return Status(Errc::parse_error, std::string(what) + " '" + std::string(text) +
                                           "': header name missing after 'header:'");
  } else if (text.starts_with("$")) {
    auto path = JsonPath::parse(text);
    if (!path.ok())
      return Status(Errc::parse_error,
                    std::string(what) + " '" + std::string(text) + "': " + path.status().message());
    rule.target = Comparator::Rule::Target::json;
    rule.path = std::move(path.value());
  } else {
    return Status(Errc::parse_error,
                  std::string(what) + " '" + std::string(text) +
                      "': expected 'status', 'body', 'header:<name>' or a JSON path ('$...')");
  }
  return rule;
}

}  // namespace

Result<Comparator> Comparator::create(CompareOptions options) {
  Comparator c;
  for (const auto& h : options.ignored_headers) c.ignored_headers_.insert(lower(trim(h)));
  for (const auto& text : options.ignore) {
    auto rule = parse_target(text, "ignore rule");
    if (!rule.ok()) return rule.status();
    c.rules_.push_back(std::move(rule.value()));
  }
  c.rule_matches_.assign(c.rules_.size(), 0);
  for (const auto& n : options.normalizers) {
    ScopedNormalizer sn;
    sn.normalizer = n;
    if (n.scope.empty()) {
      sn.global = true;
    } else {
      auto scope = parse_target(n.scope, "normalizer scope");
      if (!scope.ok()) return scope.status();
      sn.scope = std::move(scope.value());
    }
    if (n.absolute_tolerance < 0 || n.relative_tolerance < 0)
      return Status(Errc::invalid_argument, "normalizer tolerances must not be negative");
    c.normalizers_.push_back(std::move(sn));
  }
  for (const auto& a : options.arrays) {
    auto path = JsonPath::parse(a.path);
    if (!path.ok())
      return Status(Errc::parse_error, "array rule '" + a.path + "': " + path.status().message());
    c.arrays_.push_back({std::move(path.value()), a.order});
  }
  if (options.max_value_chars < 8) options.max_value_chars = 8;
  c.scratch_ = std::make_unique<Scratch>();
  c.options_ = std::move(options);
  return c;
}

std::vector<Comparator::RuleUse> Comparator::rule_uses() const {
  std::vector<RuleUse> out;
  for (size_t i = 0; i < rules_.size(); ++i) out.push_back({options_.ignore[i], rule_matches_[i]});
  return out;
}

std::vector<std::string> Comparator::unused_rules() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < rules_.size(); ++i)
    if (rule_matches_[i] == 0) out.push_back(options_.ignore[i]);
  return out;
}

void Comparator::merge_rule_counts(const Comparator& other) {
  for (size_t i = 0; i < rule_matches_.size() && i < other.rule_matches_.size(); ++i)
    rule_matches_[i] += other.rule_matches_[i];
  comparisons_ += other.comparisons_;
}

// ---------------------------------------------------------------------------------------------
// One comparison

namespace {

bool looks_text(std::string_view s) {
  size_t n = std::min<size_t>(s.size(), 8192), control = 0;
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') ++control;
  }
  return control * 20 <= n;
}

bool starts_like_json(std::string_view s) {
  for (char c : s) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    return c == '{' || c == '[';
  }
  return false;
}

std::string describe_bytes(std::string_view data) {
  return std::to_string(data.size()) + " bytes, sha256 " + sha256_hex(data);
}

}  // namespace

class ComparisonRun {
 public:
  ComparisonRun(Comparator& c, Comparison& out) : c_(c), o_(c.options_), out_(out) {}

  void status(int a, int b) {
    if (!o_.compare_status || a == b) return;
    if (suppressed(Comparator::Rule::Target::status, {})) return;
    emit(DiffKind::status_changed, "status", "status", std::to_string(a), std::to_string(b));
  }

  void headers(const flow::Headers& a, const flow::Headers& b);
  void body(const flow::Response& a, const flow::Response& b);

  // Records a difference; false when the list is full (and marked truncated).
  bool emit(DiffKind kind, std::string path, std::string pattern, std::string_view va,
            std::string_view vb) {
    if (out_.differences.size() >= o_.max_differences) {
      out_.truncated = true;
      return false;
    }
    out_.differences.push_back({kind, std::move(path), std::move(pattern),
                                truncate_utf8(va, o_.max_value_chars),
                                truncate_utf8(vb, o_.max_value_chars)});
    return true;
  }

 private:
  using Target = Comparator::Rule::Target;

  // Is a difference at this place covered by an ignore rule? Counts every rule that covers it.
  bool suppressed(Target target, std::string_view header) {
    bool hit = false;
    for (size_t i = 0; i < c_.rules_.size(); ++i) {
      const auto& r = c_.rules_[i];
      if (r.target != target) continue;
      bool m = false;
      switch (target) {
        case Target::status:
        case Target::body:
          m = true;
          break;
        case Target::header:
          m = r.header == "*" || r.header == header;
          break;
        case Target::json:
          m = r.path.matches_prefix(path_);
          break;
      }
      if (m) {
        ++c_.rule_matches_[i];
        hit = true;
      }
    }
    return hit;
  }

  bool has_json_rules() const {
    return std::any_of(c_.rules_.begin(), c_.rules_.end(),
                       [](const auto& r) { return r.target == Target::json; });
  }

  // Normalizers that apply at a header, the text body, or the current JSON path.
  void applicable(Target target, std::string_view header,
                  std::vector<const Comparator::ScopedNormalizer*>& out) const {
    out.clear();
    for (const auto& n : c_.normalizers_) {
      bool m = n.global;
      if (!m && n.scope.target == target) {
        if (target == Target::header)
          m = n.scope.header == "*" || n.scope.header == header;
        else if (target == Target::json)
          m = n.scope.path.matches_prefix(path_);
        else
          m = true;
      }
      if (m) out.push_back(&n);
    }
  }

  static std::vector<NormalizerKind> text_kinds(
      const std::vector<const Comparator::ScopedNormalizer*>& ns) {
    std::vector<NormalizerKind> kinds;
    for (auto* n : ns)
      if (n->normalizer.kind != NormalizerKind::number) kinds.push_back(n->normalizer.kind);
    return kinds;
  }

  bool numbers_within_tolerance(double a, double b,
                                const std::vector<const Comparator::ScopedNormalizer*>& ns) {
    double d = std::fabs(a - b);
    for (auto* n : ns) {
      if (n->normalizer.kind != NormalizerKind::number) continue;
      if (d <= n->normalizer.absolute_tolerance) return true;
      if (d <= n->normalizer.relative_tolerance * std::max(std::fabs(a), std::fabs(b))) return true;
    }
    return false;
  }

  // The placeholder form of a leaf for comparison after normalizing, or nullopt.
  std::optional<std::string> token(const tape::Node& v, std::span<const NormalizerKind> kinds) {
    if (v.kind == tape::Kind::string) return normalize_text(v.view(), kinds, o_);
    if (v.is_number() &&
        std::find(kinds.begin(), kinds.end(), NormalizerKind::timestamp) != kinds.end() &&
        is_epoch_value(tape::number_value(v), o_))
      return std::string("<timestamp>");
    return std::nullopt;
  }

  bool equal_after_normalizing(const tape::Node& a, const tape::Node& b) {
    if (c_.normalizers_.empty()) return false;
    applicable(Target::json, {}, scratch_);
    if (scratch_.empty()) return false;
    if (a.is_number() && b.is_number() &&
        numbers_within_tolerance(tape::number_value(a), tape::number_value(b), scratch_))
      return true;
    auto kinds = text_kinds(scratch_);
    if (kinds.empty()) return false;
    auto ta = token(a, kinds);
    if (!ta) return false;
    auto tb = token(b, kinds);
    return tb && *ta == *tb;
  }

  void emit_json(DiffKind kind, std::string_view va, std::string_view vb) {
    emit(kind, render_path(path_), render_path_generalized(path_), va, vb);
  }

  std::string render_a(uint32_t i) { return tape::render(*ta_, i, o_.max_value_chars); }
  std::string render_b(uint32_t i) { return tape::render(*tb_, i, o_.max_value_chars); }

  static bool same_type(const tape::Node& a, const tape::Node& b) {
    return a.kind == b.kind || (a.is_number() && b.is_number()) || (a.is_bool() && b.is_bool());
  }

  void leaf(uint32_t ia, uint32_t ib) {
    if (json_rules_ && suppressed(Target::json, {})) return;
    const auto& a = (*ta_)[ia];
    const auto& b = (*tb_)[ib];
    if (equal_after_normalizing(a, b)) return;
    emit_json(same_type(a, b) ? DiffKind::value_changed : DiffKind::type_changed, render_a(ia),
              render_b(ib));
  }

  void only_in_a(uint32_t ia) {
    if (json_rules_ && suppressed(Target::json, {})) return;
    emit_json(DiffKind::field_missing, render_a(ia), {});
  }
  void only_in_b(uint32_t ib) {
    if (json_rules_ && suppressed(Target::json, {})) return;
    emit_json(DiffKind::field_added, {}, render_b(ib));
  }

 public:
  // Compares the roots of two parsed documents.
  void json_diff_documents(const tape::Tape& a, const tape::Tape& b) {
    ta_ = &a;
    tb_ = &b;
    json_rules_ = has_json_rules();
    json_diff(0, 0);
  }
  void text_diff(std::string_view a, std::string_view b, bool form);
  void binary_diff(std::string_view a, std::string_view b) {
    emit(DiffKind::body_changed, "body", "body", describe_bytes(a), describe_bytes(b));
  }

 private:
  void json_diff(uint32_t ia, uint32_t ib);
  void object_diff(uint32_t ia, uint32_t ib);
  void array_diff(uint32_t ia, uint32_t ib);
  void unordered_array_diff(uint32_t ia, uint32_t ib, ArrayOrder order);
  void canonical(const tape::Tape& t, uint32_t i, std::span<const NormalizerKind> kinds,
                 std::string& out);
  bool full() const { return out_.differences.size() >= o_.max_differences; }

  Comparator& c_;
  const CompareOptions& o_;
  Comparison& out_;
  std::vector<PathElem> path_;
  std::vector<const Comparator::ScopedNormalizer*> scratch_;
  const tape::Tape* ta_ = nullptr;
  const tape::Tape* tb_ = nullptr;
  bool json_rules_ = false;
};

void ComparisonRun::json_diff(uint32_t ia, uint32_t ib) {
  if (full()) {
    out_.truncated = true;
    return;
  }
  const auto& a = (*ta_)[ia];
  const auto& b = (*tb_)[ib];
  if (!same_type(a, b)) return leaf(ia, ib);
  switch (a.kind) {
    case tape::Kind::object:
      return object_diff(ia, ib);
    case tape::Kind::array:
      return array_diff(ia, ib);
    case tape::Kind::string:
      if (a.view() != b.view()) leaf(ia, ib);
      return;
    case tape::Kind::false_:
    case tape::Kind::true_:
      if (a.kind != b.kind) leaf(ia, ib);
      return;
    case tape::Kind::null:
      return;
    default:
      if (!tape::numbers_equal(a, b)) leaf(ia, ib);
      return;
  }
}

namespace {
// Member look-up in a tape object: linear for small objects, a hash index built on first need
// for large ones (objects in the same order never need it).
class MemberIndex {
 public:
  MemberIndex(const tape::Tape& t, uint32_t obj) : t_(t), obj_(obj) {}
  // Index of the value for `key`, or 0 (never a value index: 0 is the root).
  uint32_t find(std::string_view key) {
    const auto& o = t_[obj_];
    if (o.len <= 16) {
      uint32_t c = obj_ + 1;
      for (uint32_t k = 0; k < o.len; ++k) {
        if (t_[c].view() == key) return c + 1;
        c = t_[c + 1].end;
      }
      return 0;
    }
    if (map_.empty()) {
      map_.reserve(o.len);
      uint32_t c = obj_ + 1;
      for (uint32_t k = 0; k < o.len; ++k) {
        map_.emplace(t_[c].view(), c + 1);  // first wins, like a linear scan
        c = t_[c + 1].end;
      }
    }
    auto it = map_.find(key);
    return it == map_.end() ? 0 : it->second;
  }

 private:
  const tape::Tape& t_;
  uint32_t obj_;
  std::unordered_map<std::string_view, uint32_t> map_;
};
}  // namespace

void ComparisonRun::object_diff(uint32_t ia, uint32_t ib) {
  const auto& A = *ta_;
  const auto& B = *tb_;
  // Same keys in the same order is the common case: walk both side by side and only fall
  // back to look-ups where the orders part.
  bool positional = A[ia].len == B[ib].len;
  MemberIndex index_b(B, ib);
  uint32_t ca = ia + 1, cb = ib + 1;
  for (uint32_t k = 0; k < A[ia].len; ++k) {
    const auto key = A[ca].view();
    uint32_t other = 0;
    if (positional && B[cb].view() == key) {
      other = cb + 1;
    } else {
      positional = false;
      other = index_b.find(key);
    }
    if (positional) cb = B[cb + 1].end;
    path_.push_back(PathElem::member(key));
    if (other)
      json_diff(ca + 1, other);
    else
      only_in_a(ca + 1);
    path_.pop_back();
    ca = A[ca + 1].end;
    if (full()) {
      // Stopped with members left unexamined: say the list is incomplete.
      out_.truncated = out_.truncated || k + 1 < A[ia].len || !positional;
      return;
    }
  }
  if (positional) return;
  MemberIndex index_a(A, ia);
  cb = ib + 1;
  for (uint32_t k = 0; k < B[ib].len; ++k) {
    const auto key = B[cb].view();
    if (!index_a.find(key)) {
      path_.push_back(PathElem::member(key));
      only_in_b(cb + 1);
      path_.pop_back();
    }
    cb = B[cb + 1].end;
  }
}

void ComparisonRun::array_diff(uint32_t ia, uint32_t ib) {
  for (const auto& rule : c_.arrays_) {
    if (rule.order != ArrayOrder::ordered && rule.path.matches(path_))
      return unordered_array_diff(ia, ib, rule.order);
  }
  const auto& A = *ta_;
  const auto& B = *tb_;
  const uint32_t na = A[ia].len, nb = B[ib].len;
  if (na != nb) {
    if (!(json_rules_ && suppressed(Target::json, {})))
      emit_json(DiffKind::array_length_changed, "length " + std::to_string(na),
                "length " + std::to_string(nb));
  }
  uint32_t ca = ia + 1, cb = ib + 1;
  const uint32_t n = std::min(na, nb);
  for (uint32_t i = 0; i < n; ++i) {
    path_.push_back(PathElem::element(i));
    json_diff(ca, cb);
    path_.pop_back();
    if (full()) {
      out_.truncated = out_.truncated || i + 1 < n;
      return;
    }
    ca = A[ca].end;
    cb = B[cb].end;
  }
}

void ComparisonRun::canonical(const tape::Tape& t, uint32_t i,
                              std::span<const NormalizerKind> kinds, std::string& out) {
  const auto& n = t[i];
  switch (n.kind) {
    case tape::Kind::object: {
      // Key order does not matter for equality; sort keys.
      std::vector<std::pair<std::string_view, uint32_t>> members;
      uint32_t c = i + 1;
      for (uint32_t k = 0; k < n.len; ++k) {
        members.emplace_back(t[c].view(), c + 1);
        c = t[c + 1].end;
      }
      std::sort(members.begin(), members.end());
      out += '{';
      for (auto& [key, v] : members) {
        tape::append_quoted(out, key);
        out += ':';
        canonical(t, v, kinds, out);
        out += ',';
      }
      out += '}';
      return;
    }
    case tape::Kind::array: {
      out += '[';
      uint32_t c = i + 1;
      for (uint32_t k = 0; k < n.len; ++k) {
        canonical(t, c, kinds, out);
        out += ',';
        c = t[c].end;
      }
      out += ']';
      return;
    }
    case tape::Kind::string:
      tape::append_quoted(
          out, kinds.empty() ? std::string(n.view()) : normalize_text(n.view(), kinds, o_));
      return;
    case tape::Kind::int64:
    case tape::Kind::uint64:
    case tape::Kind::double_: {
      // 1 and 1.0 are the same number.
      char buf[32];
      auto [p, ec] = std::to_chars(buf, buf + sizeof buf, tape::number_value(n));
      out.append(buf, p);
      return;
    }
    case tape::Kind::null:
      out += "null";
      return;
    case tape::Kind::false_:
      out += "false";
      return;
    case tape::Kind::true_:
      out += "true";
      return;
    case tape::Kind::key:
      return;
  }
}

void ComparisonRun::unordered_array_diff(uint32_t ia, uint32_t ib, ArrayOrder order) {
  const auto& A = *ta_;
  const auto& B = *tb_;
  applicable(Target::json, {}, scratch_);
  auto kinds = text_kinds(scratch_);
  std::vector<uint32_t> elems_a, elems_b;
  for (uint32_t c = ia + 1, k = 0; k < A[ia].len; ++k, c = A[c].end) elems_a.push_back(c);
  for (uint32_t c = ib + 1, k = 0; k < B[ib].len; ++k, c = B[c].end) elems_b.push_back(c);
  std::unordered_map<std::string, std::vector<size_t>> in_a;
  std::string key;
  for (size_t i = 0; i < elems_a.size(); ++i) {
    key.clear();
    canonical(A, elems_a[i], kinds, key);
    auto& slot = in_a[key];
    if (order == ArrayOrder::set && !slot.empty()) continue;
    slot.push_back(i);
  }
  std::unordered_map<std::string, size_t> seen_b;  // for sets: duplicates in B are one element
  std::vector<size_t> unmatched_b;
  for (size_t j = 0; j < elems_b.size(); ++j) {
    key.clear();
    canonical(B, elems_b[j], kinds, key);
    if (order == ArrayOrder::set) {
      if (seen_b.count(key)) continue;
      seen_b[key] = j;
    }
    auto it = in_a.find(key);
    if (it != in_a.end() && !it->second.empty()) {
      // Sets: every A copy is matched by one B element.
      if (order == ArrayOrder::set)
        it->second.clear();
      else
        it->second.erase(it->second.begin());
    } else {
      unmatched_b.push_back(j);
    }
  }
  std::vector<size_t> unmatched_a;
  for (auto& [k, idx] : in_a) unmatched_a.insert(unmatched_a.end(), idx.begin(), idx.end());
  std::sort(unmatched_a.begin(), unmatched_a.end());
  for (size_t i : unmatched_a) {
    path_.push_back(PathElem::element(i));
    only_in_a(elems_a[i]);
    path_.pop_back();
  }
  for (size_t j : unmatched_b) {
    path_.push_back(PathElem::element(j));
    only_in_b(elems_b[j]);
    path_.pop_back();
  }
}

// ---------------------------------------------------------------------------------------------
// Headers

namespace {
struct HeaderGroup {
  std::string name;  // lowercase
  std::vector<std::string_view> values;
};

std::vector<HeaderGroup> group_headers(const flow::Headers& h,
                                       const std::unordered_set<std::string>& ignored) {
  std::vector<HeaderGroup> out;
  std::string name;
  for (const auto& f : h) {
    name = lower(f.name);
    if (ignored.count(name)) continue;
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& g) { return g.name == name; });
    if (it == out.end()) {
      out.push_back({name, {}});
      it = out.end() - 1;
    }
    it->values.push_back(f.value);
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.name < y.name; });
  return out;
}

// Set-Cookie is compared by cookie names: values are session tokens.
std::vector<std::string> cookie_names(const std::vector<std::string_view>& values) {
  std::vector<std::string> names;
  for (auto v : values) names.emplace_back(trim(v.substr(0, v.find('='))));
  std::sort(names.begin(), names.end());
  return names;
}

std::string join(const std::vector<std::string_view>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    out += values[i];
  }
  return out;
}

std::string join(const std::vector<std::string>& values) {
  std::vector<std::string_view> views(values.begin(), values.end());
  return join(views);
}
}  // namespace

void ComparisonRun::headers(const flow::Headers& a, const flow::Headers& b) {
  if (!o_.compare_headers) return;
  auto ga = group_headers(a, c_.ignored_headers_);
  auto gb = group_headers(b, c_.ignored_headers_);
  size_t i = 0, j = 0;
  while (i < ga.size() || j < gb.size()) {
    int cmp = i == ga.size() ? 1 : j == gb.size() ? -1 : ga[i].name.compare(gb[j].name);
    if (cmp < 0) {
      if (!suppressed(Target::header, ga[i].name))
        emit(DiffKind::header_missing, "header:" + ga[i].name, "header:" + ga[i].name,
             join(ga[i].values), {});
      ++i;
      continue;
    }
    if (cmp > 0) {
      if (!suppressed(Target::header, gb[j].name))
        emit(DiffKind::header_added, "header:" + gb[j].name, "header:" + gb[j].name, {},
             join(gb[j].values));
      ++j;
      continue;
    }
    const auto& name = ga[i].name;
    const auto& va = ga[i].values;
    const auto& vb = gb[j].values;
    ++i, ++j;
    bool differ;
    std::string ra, rb;
    if (name == "set-cookie") {
      auto na = cookie_names(va), nb = cookie_names(vb);
      differ = na != nb;
      if (differ) ra = join(na), rb = join(nb);
    } else {
      differ = va != vb;
      if (differ) {
        applicable(Target::header, name, scratch_);
        auto kinds = text_kinds(scratch_);
        if (!kinds.empty() && va.size() == vb.size()) {
          differ = false;
          for (size_t k = 0; k < va.size() && !differ; ++k)
            differ = normalize_text(va[k], kinds, o_) != normalize_text(vb[k], kinds, o_);
        }
      }
      if (differ) ra = join(va), rb = join(vb);
    }
    if (differ && !suppressed(Target::header, name))
      emit(DiffKind::header_changed, "header:" + name, "header:" + name, ra, rb);
  }
}

// ---------------------------------------------------------------------------------------------
// Text: a line diff (Myers' O(ND) algorithm), bounded in lines and edit distance.

namespace {
std::vector<std::string_view> split_lines(std::string_view s, bool form) {
  std::vector<std::string_view> out;
  const char sep = form ? '&' : '\n';
  size_t start = 0;
  while (start < s.size()) {
    auto end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    auto line = s.substr(start, end - start);
    if (!form && !line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    start = end + 1;
  }
  return out;
}

enum class Op : uint8_t { equal, remove, insert };

// Returns the edit script turning a into b, or nullopt when more than max_d edits are needed.
template <class Eq>
std::optional<std::vector<Op>> myers(size_t n, size_t m, size_t max_d, Eq eq) {
  const long N = static_cast<long>(n), M = static_cast<long>(m);
  const long max = std::min<long>(N + M, static_cast<long>(max_d));
  const long off = max + 1;
  std::vector<long> v(2 * max + 3, 0);
  // trace[d] holds v[-d..d] as it was before round d: enough to walk back.
  std::vector<std::vector<long>> trace;
  for (long d = 0; d <= max; ++d) {
    trace.emplace_back(v.begin() + (off - d), v.begin() + (off + d + 1));
    for (long k = -d; k <= d; k += 2) {
      long x = (k == -d || (k != d && v[off + k - 1] < v[off + k + 1])) ? v[off + k + 1]
                                                                        : v[off + k - 1] + 1;
      long y = x - k;
      while (x < N && y < M && eq(x, y)) ++x, ++y;
      v[off + k] = x;
      if (x >= N && y >= M) {
        std::vector<Op> ops;
        long cx = N, cy = M;
        for (long dd = d; dd > 0; --dd) {
          const auto& pv = trace[dd];  // index k -> pv[k + dd]
          long ck = cx - cy;
          auto at = [&](long kk) { return pv[kk + dd]; };
          long pk = (ck == -dd || (ck != dd && at(ck - 1) < at(ck + 1))) ? ck + 1 : ck - 1;
          long px = at(pk), py = px - pk;
          while (cx > px && cy > py) ops.push_back(Op::equal), --cx, --cy;
          ops.push_back(pk == ck + 1 ? Op::insert : Op::remove);
          cx = px, cy = py;
        }
        while (cx > 0 && cy > 0) ops.push_back(Op::equal), --cx, --cy;
        std::reverse(ops.begin(), ops.end());
        return ops;
      }
    }
  }
  return std::nullopt;
}
}  // namespace

void ComparisonRun::text_diff(std::string_view a, std::string_view b, bool form) {
  auto la = split_lines(a, form), lb = split_lines(b, form);
  if (la.size() > o_.max_text_lines || lb.size() > o_.max_text_lines) {
    emit(DiffKind::body_changed, "body", "body",
         std::to_string(la.size()) + " lines, " + describe_bytes(a),
         std::to_string(lb.size()) + " lines, " + describe_bytes(b));
    return;
  }
  // Normalized copies, only when some normalizer applies to the text body.
  std::vector<std::string> na, nb;
  applicable(Target::body, {}, scratch_);
  auto kinds = text_kinds(scratch_);
  if (!kinds.empty()) {
    for (auto l : la) na.push_back(normalize_text(l, kinds, o_));
    for (auto l : lb) nb.push_back(normalize_text(l, kinds, o_));
  }
  auto line_a = [&](size_t i) -> std::string_view { return na.empty() ? la[i] : na[i]; };
  auto line_b = [&](size_t i) -> std::string_view { return nb.empty() ? lb[i] : nb[i]; };

  // Common prefix and suffix cost nothing in Myers' terms but shrink its working set.
  size_t pre = 0;
  while (pre < la.size() && pre < lb.size() && line_a(pre) == line_b(pre)) ++pre;
  size_t suf = 0;
  while (suf < la.size() - pre && suf < lb.size() - pre &&
         line_a(la.size() - 1 - suf) == line_b(lb.size() - 1 - suf))
    ++suf;
  size_t n = la.size() - pre - suf, m = lb.size() - pre - suf;
  if (n == 0 && m == 0) return;
  auto ops = myers(n, m, o_.max_edit_distance,
                   [&](long x, long y) { return line_a(pre + x) == line_b(pre + y); });
  if (!ops) {
    emit(DiffKind::body_changed, "body", "body",
         std::to_string(la.size()) + " lines, " + describe_bytes(a),
         std::to_string(lb.size()) + " lines, " + describe_bytes(b));
    return;
  }
  // Walk hunks: pair removals with insertions as changed lines, the rest missing/added.
  size_t x = pre, y = pre, k = 0;
  std::vector<size_t> removed, inserted;
  auto flush = [&] {
    size_t paired = std::min(removed.size(), inserted.size());
    for (size_t p = 0; p < paired; ++p) {
      if (emit(DiffKind::line_changed, "body:line " + std::to_string(removed[p] + 1), "body:line",
               la[removed[p]], lb[inserted[p]]))
        out_.differences.back().line_b = static_cast<uint32_t>(inserted[p] + 1);
    }
    for (size_t p = paired; p < removed.size(); ++p)
      emit(DiffKind::line_missing, "body:line " + std::to_string(removed[p] + 1), "body:line",
           la[removed[p]], {});
    for (size_t p = paired; p < inserted.size(); ++p)
      emit(DiffKind::line_added, "body:line " + std::to_string(inserted[p] + 1), "body:line", {},
           lb[inserted[p]]);
    removed.clear();
    inserted.clear();
  };
  for (; k < ops->size(); ++k) {
    switch ((*ops)[k]) {
      case Op::equal:
        flush();
        ++x, ++y;
        break;
      case Op::remove:
        removed.push_back(x++);
        break;
      case Op::insert:
        inserted.push_back(y++);
        break;
    }
  }
  flush();
}

// ---------------------------------------------------------------------------------------------
// Bodies

void ComparisonRun::body(const flow::Response& a, const flow::Response& b) {
  const auto ce_a = a.headers.get("content-encoding").value_or("");
  const auto ce_b = b.headers.get("content-encoding").value_or("");
  const auto ct =
      a.headers.get("content-type").value_or(b.headers.get("content-type").value_or(""));
  const auto media = media_type(ct);
  const size_t before = out_.differences.size();

  auto finish = [&] {
    // A "body" ignore rule swallows whatever the body produced.
    if (out_.differences.size() > before && suppressed(Target::body, {}))
      out_.differences.resize(before);
  };

  if (a.body.data == b.body.data && flow::iequals(ce_a, ce_b)) {
    out_.body_kind = a.body.data.empty()    ? BodyKind::none
                     : is_json_media(media) ? BodyKind::json
                     : is_text_media(media) ? BodyKind::text
                                            : BodyKind::binary;
    return;
  }
  // Identity bodies are compared in place; only encoded ones are decoded into buffers.
  std::string buf_a, buf_b;
  std::string_view ta = a.body.data, tb = b.body.data;
  Status sa, sb;
  if (!codec::parse_content_encoding(ce_a).empty()) {
    auto d = codec::decode_content(a.body.data, ce_a, o_.decoding);
    if (d.ok())
      buf_a = std::move(d.value()), ta = buf_a;
    else
      sa = d.status();
  }
  if (!codec::parse_content_encoding(ce_b).empty()) {
    auto d = codec::decode_content(b.body.data, ce_b, o_.decoding);
    if (d.ok())
      buf_b = std::move(d.value()), tb = buf_b;
    else
      sb = d.status();
  }
  if (!sa.ok() || !sb.ok()) {
    out_.body_kind = BodyKind::binary;
    emit(DiffKind::body_changed, "body", "body",
         sa.ok() ? describe_bytes(ta) : "undecodable: " + sa.message(),
         sb.ok() ? describe_bytes(tb) : "undecodable: " + sb.message());
    return finish();
  }
  if (ta == tb) return;

  bool try_json = is_json_media(media) || (media.empty() && starts_like_json(ta));
  if (try_json) {
    // Tapes live in the Comparator: their memory is reused by every comparison of a batch.
    auto& scratch = *c_.scratch_;
    if (scratch.a.parse(ta, o_.max_json_depth) && scratch.b.parse(tb, o_.max_json_depth)) {
      out_.body_kind = BodyKind::json;
      json_diff_documents(scratch.a, scratch.b);
      return finish();
    }
  }
  if (is_text_media(media) || try_json || (media.empty() && looks_text(ta) && looks_text(tb))) {
    out_.body_kind = BodyKind::text;
    text_diff(ta, tb, media == "application/x-www-form-urlencoded");
  } else {
    out_.body_kind = BodyKind::binary;
    binary_diff(ta, tb);
  }
  finish();
}

// ---------------------------------------------------------------------------------------------

Comparison Comparator::compare(const flow::Response& a, const flow::Response& b,
                               const flow::Request* request) {
  ++comparisons_;
  Comparison out;
  if (request) out.endpoint = endpoint_of(*request);
  ComparisonRun run(*this, out);
  run.status(a.status, b.status);
  run.headers(a.headers, b.headers);
  run.body(a, b);
  return out;
}

Comparison Comparator::compare(const flow::Flow& a, const flow::Flow& b) {
  if (a.response && b.response) return compare(*a.response, *b.response, &a.request);
  ++comparisons_;
  Comparison out;
  out.endpoint = endpoint_of(a.request);
  auto describe = [](const flow::Flow& f) -> std::string {
    if (f.response) return "status " + std::to_string(f.response->status);
    if (f.error)
      return std::string("error ") + flow::error_kind_name(f.error->kind) +
             (f.error->message.empty() ? "" : ": " + f.error->message);
    return "no response";
  };
  auto da = describe(a), db = describe(b);
  if (da != db) {
    ComparisonRun run(*this, out);
    run.emit(DiffKind::response_missing, "response", "response", da, db);
  }
  return out;
}

}  // namespace retake::diff
