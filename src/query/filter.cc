#include "query/filter.h"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#include "codec/content_coding.h"

namespace retake::query {

namespace {

enum class Kind : uint8_t {
  // structure
  and_,
  or_,
  not_,
  // flags
  all,
  request_only,
  response,
  error,
  asset,
  http,
  tunnel,
  websocket,
  marked,
  replay,
  origin,
  // regexes
  url,
  domain,
  method,
  header,
  header_request,
  header_response,
  body,
  body_request,
  body_response,
  content_type,
  content_type_request,
  content_type_response,
  comment,
  marker,
  source,
  destination,
  // store fields and comparisons
  status,
  session,
  run,
  tag,
  since,
  until,
  duration,
  size,
  size_request,
  size_response,
};

enum class ArgKind : uint8_t { none, regex, status, name, optional_id, time, duration, size };

enum class Cmp : uint8_t { lt, le, gt, ge, eq };

// How a regex argument is compiled beyond the common options.
enum class RegexMode : uint8_t { plain, multiline, dot_all };

struct Spec {
  std::string_view name;  // without '~'
  Kind kind;
  ArgKind arg;
  RegexMode mode;
  const char* syntax;
  const char* help;
  const char* arg_expected;  // for "expected ... after ~x"
};

// Order: the help order (mitmproxy's first, then ours). ~tcp is an alias of ~tunnel and is
// printed as ~tunnel.
constexpr std::array kSpecs = {
    Spec{"all", Kind::all, ArgKind::none, RegexMode::plain, "~all", "every flow", ""},
    Spec{"q", Kind::request_only, ArgKind::none, RegexMode::plain, "~q",
         "an HTTP request without a response", ""},
    Spec{"s", Kind::response, ArgKind::none, RegexMode::plain, "~s", "has a response", ""},
    Spec{"e", Kind::error, ArgKind::none, RegexMode::plain, "~e", "has an error", ""},
    Spec{"a", Kind::asset, ArgKind::none, RegexMode::plain, "~a",
         "response is an asset: JavaScript, CSS, image, font", ""},
    Spec{"http", Kind::http, ArgKind::none, RegexMode::plain, "~http", "an HTTP flow", ""},
    Spec{"websocket", Kind::websocket, ArgKind::none, RegexMode::plain, "~websocket",
         "a flow with WebSocket messages", ""},
    Spec{"tunnel", Kind::tunnel, ArgKind::none, RegexMode::plain, "~tunnel",
         "an opaque tunnel (CONNECT or passed-through TLS); ~tcp is the same", ""},
    Spec{"tcp", Kind::tunnel, ArgKind::none, RegexMode::plain, "~tcp", "the same as ~tunnel", ""},
    Spec{"marked", Kind::marked, ArgKind::none, RegexMode::plain, "~marked", "a marked flow", ""},
    Spec{"replay", Kind::replay, ArgKind::none, RegexMode::plain, "~replay",
         "made by a replay (has a run or an origin)", ""},
    Spec{"u", Kind::url, ArgKind::regex, RegexMode::plain, "~u REGEX",
         "URL (a bare REGEX means ~u)", "a URL regex"},
    Spec{"d", Kind::domain, ArgKind::regex, RegexMode::plain, "~d REGEX",
         "request host (authority or Host header)", "a domain regex"},
    Spec{"m", Kind::method, ArgKind::regex, RegexMode::plain, "~m REGEX", "request method",
         "a method regex"},
    Spec{"h", Kind::header, ArgKind::regex, RegexMode::multiline, "~h REGEX",
         "a \"name: value\" header line of the request or response", "a header regex"},
    Spec{"hq", Kind::header_request, ArgKind::regex, RegexMode::multiline, "~hq REGEX",
         "a request header line", "a header regex"},
    Spec{"hs", Kind::header_response, ArgKind::regex, RegexMode::multiline, "~hs REGEX",
         "a response header line", "a header regex"},
    Spec{"b", Kind::body, ArgKind::regex, RegexMode::dot_all, "~b REGEX",
         "request or response body (decoded) or a WebSocket message", "a body regex"},
    Spec{"bq", Kind::body_request, ArgKind::regex, RegexMode::dot_all, "~bq REGEX",
         "request body or a WebSocket message from the client", "a body regex"},
    Spec{"bs", Kind::body_response, ArgKind::regex, RegexMode::dot_all, "~bs REGEX",
         "response body or a WebSocket message from the server", "a body regex"},
    Spec{"t", Kind::content_type, ArgKind::regex, RegexMode::plain, "~t REGEX",
         "Content-Type of the request or response", "a content-type regex"},
    Spec{"tq", Kind::content_type_request, ArgKind::regex, RegexMode::plain, "~tq REGEX",
         "request Content-Type", "a content-type regex"},
    Spec{"ts", Kind::content_type_response, ArgKind::regex, RegexMode::plain, "~ts REGEX",
         "response Content-Type", "a content-type regex"},
    Spec{"c", Kind::status, ArgKind::status, RegexMode::plain, "~c CODE",
         "response status: 200, or a class like 5xx", ""},
    Spec{"comment", Kind::comment, ArgKind::regex, RegexMode::multiline, "~comment REGEX",
         "flow comment", "a comment regex"},
    Spec{"marker", Kind::marker, ArgKind::regex, RegexMode::plain, "~marker REGEX",
         "the marker of a marked flow", "a marker regex"},
    Spec{"src", Kind::source, ArgKind::regex, RegexMode::plain, "~src REGEX",
         "client address ip:port", "an address regex"},
    Spec{"dst", Kind::destination, ArgKind::regex, RegexMode::plain, "~dst REGEX",
         "upstream address ip:port", "an address regex"},
    Spec{"session", Kind::session, ArgKind::name, RegexMode::plain, "~session NAME",
         "recorded into this session (exact)", "a session name"},
    Spec{"run", Kind::run, ArgKind::name, RegexMode::plain, "~run ID",
         "made by this replay run (exact)", "a run id"},
    Spec{"origin", Kind::origin, ArgKind::optional_id, RegexMode::plain, "~origin [ID]",
         "replays a stored flow (that one, when ID is given)", ""},
    Spec{"tag", Kind::tag, ArgKind::name, RegexMode::plain, "~tag NAME", "has this tag (exact)",
         "a tag"},
    Spec{"since", Kind::since, ArgKind::time, RegexMode::plain, "~since TIME",
         "started at or after TIME (2026-11-01T10:00[:SS][Z|+hh:mm]; UTC when no zone)", ""},
    Spec{"until", Kind::until, ArgKind::time, RegexMode::plain, "~until TIME",
         "started before TIME", ""},
    Spec{"dur", Kind::duration, ArgKind::duration, RegexMode::plain, "~dur [OP]N UNIT",
         "duration compared: >250ms; OP < <= > >= = ; UNIT ns us ms s", ""},
    Spec{"size", Kind::size, ArgKind::size, RegexMode::plain, "~size [OP]N[UNIT]",
         "request + response body bytes: >1MB; UNIT B KB KiB MB MiB GB GiB", ""},
    Spec{"sizeq", Kind::size_request, ArgKind::size, RegexMode::plain, "~sizeq [OP]N[UNIT]",
         "request body bytes", ""},
    Spec{"sizes", Kind::size_response, ArgKind::size, RegexMode::plain, "~sizes [OP]N[UNIT]",
         "response body bytes", ""},
};

constexpr std::array kOperatorHelp = {
    FilterHelp{"!X", "not X (binds tightest)"},
    FilterHelp{"X & Y", "X and Y"},
    FilterHelp{"X | Y", "X or Y (binds looser than &)"},
    FilterHelp{"X Y", "X and Y, binding looser than |"},
    FilterHelp{"(X)", "grouping"},
};

const std::vector<FilterHelp>& help_rows() {
  static const std::vector<FilterHelp> rows = [] {
    std::vector<FilterHelp> out;
    for (const auto& spec : kSpecs) out.push_back({spec.syntax, spec.help});
    for (const auto& row : kOperatorHelp) out.push_back(row);
    return out;
  }();
  return rows;
}

const Spec* find_spec(std::string_view name) {
  for (const auto& spec : kSpecs)
    if (spec.name == name) return &spec;
  return nullptr;
}

const Spec& spec_of(Kind kind) {
  for (const auto& spec : kSpecs)
    if (spec.kind == kind) return spec;  // the first one: ~tunnel before its alias ~tcp
  return kSpecs[0];
}

}  // namespace

struct Filter::Node {
  Kind kind = Kind::all;
  std::vector<Node> children;  // and_, or_ (two or more), not_ (one)
  std::string arg;             // canonical argument text; the regex source for regexes
  std::unique_ptr<RE2> re;
  std::string literal;  // lowercased; when set, searched for instead of running `re`
  int64_t lo = 0;       // status min, time, compared value, origin id
  int64_t hi = 0;       // status max; for origin: 1 when an id was given
  Cmp cmp = Cmp::eq;
};

struct Filter::Compiled {
  Node root;
  IndexHint hint;
  bool needs_bodies = false;
  // The top-level ~d and ~m that host_test()/method_test() run (nodes inside root).
  const Node* host_node = nullptr;
  const Node* method_node = nullptr;
};

namespace {

using Node = Filter::Node;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

char lower_ascii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

// A regex that is only printable ASCII without metacharacters matches exactly where its
// lowercased text occurs ignoring ASCII case, which is far cheaper to find than to run RE2
// (RE2's case folding also maps the Kelvin sign to k and long s to s; we accept that gap).
std::string plain_literal(std::string_view source) {
  constexpr std::string_view kMeta = "\\.+*?()|[]{}^$";
  if (source.empty() || source.size() > 64) return {};
  std::string out;
  for (char c : source) {
    if (c < 0x20 || c > 0x7e || kMeta.find(c) != std::string_view::npos) return {};
    out += lower_ascii(c);
  }
  return out;
}

// Text safe to show in a message: printable ASCII kept, everything else \xNN, at most `max`
// input bytes.
std::string printable(std::string_view s, size_t max = 32) {
  std::string out;
  bool cut = s.size() > max;
  if (cut) s = s.substr(0, max);
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (cut) out += "...";
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The known filter closest to a mistyped one, when it is close enough to be a likely typo.
const Spec* suggestion_for(std::string_view name) {
  if (name.size() > 32) return nullptr;
  std::string lower(name);
  for (auto& c : lower)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (const Spec* exact = find_spec(lower)) return exact;  // ~M -> ~m
  const Spec* best = nullptr;
  size_t best_distance = 3;
  for (const auto& spec : kSpecs) {
    // One-letter names are one edit from every short word; only suggest them for one letter.
    if (spec.name.size() == 1 && lower.size() != 1) continue;
    size_t d = edit_distance(lower, spec.name);
    size_t allowed = spec.name.size() <= 3 ? 1 : 2;
    if (d <= allowed && d < best_distance) {
      best = &spec;
      best_distance = d;
    }
  }
  return best;
}

// "~c200" is "~c 200" without its space: a filter that takes an argument, then digits.
std::optional<std::string> glued_argument(std::string_view name) {
  size_t digits = name.find_first_of("0123456789");
  if (digits == 0 || digits == std::string_view::npos || name.size() > 32) return std::nullopt;
  for (char c : name.substr(digits))
    if (!is_digit(c)) return std::nullopt;
  const Spec* spec = find_spec(name.substr(0, digits));
  if (spec == nullptr || spec->arg == ArgKind::none) return std::nullopt;
  return "~" + std::string(spec->name) + " " + std::string(name.substr(digits));
}

// ---- argument values ------------------------------------------------------------------------

const char* cmp_text(Cmp cmp) {
  switch (cmp) {
    case Cmp::lt:
      return "<";
    case Cmp::le:
      return "<=";
    case Cmp::gt:
      return ">";
    case Cmp::ge:
      return ">=";
    case Cmp::eq:
      return "=";
  }
  return "=";
}

bool compare(int64_t value, Cmp cmp, int64_t target) {
  switch (cmp) {
    case Cmp::lt:
      return value < target;
    case Cmp::le:
      return value <= target;
    case Cmp::gt:
      return value > target;
    case Cmp::ge:
      return value >= target;
    case Cmp::eq:
      return value == target;
  }
  return false;
}

// Splits a leading comparison operator off `s`.
Cmp take_cmp(std::string_view& s) {
  auto starts = [&](std::string_view p) {
    if (s.substr(0, p.size()) != p) return false;
    s.remove_prefix(p.size());
    return true;
  };
  if (starts("<=")) return Cmp::le;
  if (starts(">=")) return Cmp::ge;
  if (starts("==")) return Cmp::eq;
  if (starts("<")) return Cmp::lt;
  if (starts(">")) return Cmp::gt;
  starts("=");
  return Cmp::eq;
}

// "<digits>[.<digits>]<unit>" times the unit's multiplier from `units`, into an int64.
template <size_t N>
bool parse_quantity(std::string_view s,
                    const std::array<std::pair<std::string_view, int64_t>, N>& units,
                    bool unit_required, int64_t& out) {
  size_t i = 0;
  __int128 whole = 0;
  size_t whole_digits = 0;
  while (i < s.size() && is_digit(s[i])) {
    if (++whole_digits > 19) return false;
    whole = whole * 10 + (s[i] - '0');
    ++i;
  }
  if (whole_digits == 0) return false;
  __int128 frac = 0, frac_scale = 1;
  if (i < s.size() && s[i] == '.') {
    ++i;
    size_t frac_digits = 0;
    while (i < s.size() && is_digit(s[i])) {
      if (++frac_digits > 9) return false;
      frac = frac * 10 + (s[i] - '0');
      frac_scale *= 10;
      ++i;
    }
    if (frac_digits == 0) return false;
  }
  std::string_view unit = s.substr(i);
  int64_t multiplier = 0;
  if (unit.empty()) {
    if (unit_required) return false;
    multiplier = 1;
  } else {
    for (const auto& [name, value] : units)
      if (flow::iequals(unit, name)) multiplier = value;
    if (multiplier == 0) return false;
  }
  __int128 total = whole * multiplier + frac * multiplier / frac_scale;
  if (total > std::numeric_limits<int64_t>::max()) return false;
  out = static_cast<int64_t>(total);
  return true;
}

constexpr std::array<std::pair<std::string_view, int64_t>, 4> kDurationUnits = {
    {{"ns", 1}, {"us", 1000}, {"ms", 1000'000}, {"s", 1000'000'000}}};

constexpr std::array<std::pair<std::string_view, int64_t>, 7> kSizeUnits = {
    {{"b", 1},
     {"kb", 1000},
     {"kib", 1024},
     {"mb", 1000'000},
     {"mib", 1 << 20},
     {"gb", 1000'000'000},
     {"gib", int64_t{1} << 30}}};

// Reads exactly `n` digits at s[i...].
bool take_digits(std::string_view s, size_t& i, size_t n, int& out) {
  if (i + n > s.size()) return false;
  out = 0;
  for (size_t k = 0; k < n; ++k) {
    if (!is_digit(s[i + k])) return false;
    out = out * 10 + (s[i + k] - '0');
  }
  i += n;
  return true;
}

// YYYY-MM-DD[Thh:mm[:ss[.fraction]]][Z|±hh:mm|±hhmm], no zone meaning UTC.
bool parse_time(std::string_view s, int64_t& out_ns) {
  size_t i = 0;
  int y, mo, d, h = 0, mi = 0, sec = 0;
  int64_t frac_ns = 0;
  if (!take_digits(s, i, 4, y) || i >= s.size() || s[i++] != '-' || !take_digits(s, i, 2, mo) ||
      i >= s.size() || s[i++] != '-' || !take_digits(s, i, 2, d))
    return false;
  if (i < s.size() && (s[i] == 'T' || s[i] == 't')) {
    ++i;
    if (!take_digits(s, i, 2, h) || i >= s.size() || s[i++] != ':' || !take_digits(s, i, 2, mi))
      return false;
    if (i < s.size() && s[i] == ':') {
      ++i;
      if (!take_digits(s, i, 2, sec)) return false;
      if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
        ++i;
        size_t digits = 0;
        while (i < s.size() && is_digit(s[i])) {
          if (++digits > 9) return false;
          frac_ns = frac_ns * 10 + (s[i] - '0');
          ++i;
        }
        if (digits == 0) return false;
        for (size_t k = digits; k < 9; ++k) frac_ns *= 10;
      }
    }
  }
  int64_t offset_s = 0;
  if (i < s.size()) {
    if (s[i] == 'Z' || s[i] == 'z') {
      ++i;
    } else if (s[i] == '+' || s[i] == '-') {
      int sign = s[i++] == '-' ? -1 : 1;
      int oh, om;
      if (!take_digits(s, i, 2, oh)) return false;
      if (i < s.size() && s[i] == ':') ++i;
      if (!take_digits(s, i, 2, om) || oh > 23 || om > 59) return false;
      offset_s = sign * (oh * 3600 + om * 60);
    } else {
      return false;
    }
  }
  if (i != s.size()) return false;
  if (h > 23 || mi > 59 || sec > 59) return false;
  // int64 nanoseconds reach from 1677 to 2262; keep well inside.
  if (y < 1900 || y > 2261) return false;
  using namespace std::chrono;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return false;
  int64_t days_since_epoch = sys_days{ymd}.time_since_epoch().count();
  int64_t secs = days_since_epoch * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  out_ns = secs * 1000'000'000 + frac_ns;
  return true;
}

std::string format_time(int64_t ns) {
  using namespace std::chrono;
  auto tp = sys_time<nanoseconds>{nanoseconds{ns}};
  auto day_point = floor<days>(tp);
  year_month_day ymd{day_point};
  hh_mm_ss<nanoseconds> hms{tp - day_point};
  char buf[64];
  int n =
      std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(ymd.year()),
                    static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                    static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                    static_cast<int>(hms.seconds().count()));
  std::string out(buf, static_cast<size_t>(n));
  int64_t frac = hms.subseconds().count();
  if (frac != 0) {
    std::snprintf(buf, sizeof buf, ".%09lld", static_cast<long long>(frac));
    std::string f(buf);
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  out += 'Z';
  return out;
}

// ---- parser -------------------------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  bool parse(Node& out) {
    if (text_.size() > kMaxExpressionBytes)
      return fail(kMaxExpressionBytes, "an expression of at most 16384 bytes", "it is longer");
    skip_space();
    if (at_end()) return fail(pos_, "a filter expression");
    if (!parse_sequence(out)) return false;
    skip_space();
    if (!at_end()) return fail(pos_, "end of input (unmatched ')')");
    return true;
  }

  const ParseError& error() const { return error_; }

 private:
  // Sets the error (the first one wins) and returns false, so callers can `return fail(...)`.
  bool fail(size_t at, std::string expected, std::string detail = {}) {
    if (failed_) return false;
    failed_ = true;
    error_.column = column(at);
    error_.expected = std::move(expected);
    std::string got;
    if (detail.empty()) {
      if (at >= text_.size()) {
        got = "end of input";
      } else {
        got = "'" + printable(token_at(at)) + "'";
      }
      detail = "got " + got;
    }
    error_.message =
        "column " + std::to_string(error_.column) + ": expected " + error_.expected + ", " + detail;
    return false;
  }

  size_t column(size_t at) const {
    at = std::min(at, text_.size());
    size_t col = 1;
    for (size_t i = 0; i < at; ++i)
      if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) ++col;
    return col;
  }

  // The token starting at `at`, for messages.
  std::string_view token_at(size_t at) const {
    char c = text_[at];
    if (c == '(' || c == ')' || c == '!' || c == '&' || c == '|') return text_.substr(at, 1);
    size_t end = at + 1;
    while (end < text_.size() && !is_space(text_[end]) && text_[end] != '(' && text_[end] != ')')
      ++end;
    return text_.substr(at, end - at);
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }
  void skip_space() {
    while (!at_end() && is_space(peek())) ++pos_;
  }

  // seq := or { or }   (juxtaposition, AND, loosest)
  bool parse_sequence(Node& out) {
    std::vector<Node> items(1);
    if (!parse_or(items.back())) return false;
    for (;;) {
      skip_space();
      if (at_end() || peek() == ')') break;
      items.emplace_back();
      if (!parse_or(items.back())) return false;
    }
    out = combine(Kind::and_, std::move(items));
    return true;
  }

  // or := and { '|' and }
  bool parse_or(Node& out) {
    std::vector<Node> items(1);
    if (!parse_and(items.back())) return false;
    for (;;) {
      skip_space();
      if (at_end() || peek() != '|') break;
      ++pos_;
      items.emplace_back();
      if (!parse_and(items.back())) return false;
    }
    out = combine(Kind::or_, std::move(items));
    return true;
  }

  // and := unary { '&' unary }
  bool parse_and(Node& out) {
    std::vector<Node> items(1);
    if (!parse_unary(items.back())) return false;
    for (;;) {
      skip_space();
      if (at_end() || peek() != '&') break;
      ++pos_;
      items.emplace_back();
      if (!parse_unary(items.back())) return false;
    }
    out = combine(Kind::and_, std::move(items));
    return true;
  }

  // One node for a list: the item itself when alone, else an n-ary node whose children of the
  // same kind are spliced in (AND and OR are associative, and flat trees keep recursion short).
  static Node combine(Kind kind, std::vector<Node> items) {
    if (items.size() == 1) return std::move(items.front());
    Node node;
    node.kind = kind;
    for (auto& item : items) {
      if (item.kind == kind) {
        for (auto& child : item.children) node.children.push_back(std::move(child));
      } else {
        node.children.push_back(std::move(item));
      }
    }
    return node;
  }

  bool enter(size_t at) {
    if (++depth_ > kMaxNestingDepth)
      return fail(at, "at most 256 levels of '(' and '!' nesting", "the expression nests deeper");
    return true;
  }

  // unary := '!' unary | '(' seq ')' | '~'name [arg] | word
  bool parse_unary(Node& out) {
    skip_space();
    if (at_end()) return fail(pos_, "a filter expression");
    char c = peek();
    if (c == '!') {
      if (!enter(pos_)) return false;
      ++pos_;
      out.kind = Kind::not_;
      out.children.resize(1);
      if (!parse_unary(out.children[0])) return false;
      --depth_;
      return true;
    }
    if (c == '(') {
      size_t open = pos_;
      if (!enter(pos_)) return false;
      ++pos_;
      skip_space();
      if (!at_end() && peek() == ')') return fail(pos_, "a filter expression inside '()'");
      if (!parse_sequence(out)) return false;
      skip_space();
      if (at_end() || peek() != ')')
        return fail(pos_, "')'",
                    at_end() ? "got end of input (the '(' at column " +
                                   std::to_string(column(open)) + " is not closed)"
                             : std::string{});
      ++pos_;
      --depth_;
      return true;
    }
    if (c == ')' || c == '&' || c == '|') return fail(pos_, "a filter expression");
    if (c == '~') return parse_filter(out);
    // A bare (or quoted) argument is a URL regex.
    size_t start = pos_;
    std::string word;
    if (!read_argument(true, word)) return failed_ ? false : fail(start, "a filter expression");
    return compile_regex(Kind::url, RegexMode::plain, std::move(word), start, out);
  }

  bool parse_filter(Node& out) {
    size_t tilde = pos_++;
    size_t name_start = pos_;
    while (!at_end() && is_name_char(peek())) ++pos_;
    std::string_view name = text_.substr(name_start, pos_ - name_start);
    if (name.empty()) return fail(tilde, "a filter name after '~', like ~u or ~c");
    const Spec* spec = find_spec(name);
    if (spec == nullptr) {
      std::string detail = "got unknown filter '~" + printable(name) + "'";
      if (auto glued = glued_argument(name)) {
        detail += " (did you mean " + *glued + "?)";
      } else if (const Spec* near = suggestion_for(name)) {
        detail += " (did you mean ~" + std::string(near->name) + "?)";
      }
      return fail(tilde, "a known filter name", std::move(detail));
    }
    out.kind = spec->kind;
    size_t arg_start = pos_;
    std::string word;
    auto missing = [&](std::string what) {
      skip_space();
      what += " after ~" + std::string(spec->name);
      if (!at_end() && (peek() == '!' || peek() == '&' || peek() == '|'))
        what += " (quote an argument that starts with '!', '&' or '|')";
      return fail(pos_, std::move(what));
    };
    switch (spec->arg) {
      case ArgKind::none:
        return true;
      case ArgKind::regex:
        skip_space();
        arg_start = pos_;
        if (!read_argument(true, word)) return failed_ ? false : missing(spec->arg_expected);
        return compile_regex(spec->kind, spec->mode, std::move(word), arg_start, out);
      case ArgKind::name:
        skip_space();
        if (!read_argument(false, word)) return failed_ ? false : missing(spec->arg_expected);
        out.arg = std::move(word);
        return true;
      case ArgKind::status:
        skip_space();
        arg_start = pos_;
        if (!read_argument(false, word))
          return failed_ ? false : missing("a status code (integer) or a class like 5xx");
        if (!parse_status(word, out))
          return fail(arg_start, "a status code (integer) or a class like 5xx");
        return true;
      case ArgKind::optional_id: {
        // Only a run of digits is taken as the id; anything else is the next expression.
        skip_space();
        size_t end = pos_;
        while (end < text_.size() && is_digit(text_[end])) ++end;
        bool ends_word = end == text_.size() || is_space(text_[end]) || text_[end] == ')' ||
                         text_[end] == '&' || text_[end] == '|';
        if (end == pos_ || !ends_word) {
          pos_ = arg_start;
          return true;
        }
        int64_t id = 0;
        if (!parse_quantity(text_.substr(pos_, end - pos_), kDurationUnits, false, id) || id == 0)
          return fail(pos_, "a flow id (a positive integer below 2^63)");
        out.lo = id;
        out.hi = 1;
        out.arg = std::to_string(id);
        pos_ = end;
        return true;
      }
      case ArgKind::time:
        skip_space();
        arg_start = pos_;
        if (!read_argument(false, word))
          return failed_ ? false : missing("a time like 2026-11-01T10:00[:SS][Z|+hh:mm]");
        if (!parse_time(word, out.lo))
          return fail(arg_start, "a time like 2026-11-01T10:00[:SS][Z|+hh:mm] (UTC when no zone)");
        out.arg = format_time(out.lo);
        // "~until 2026-11-01 10:00" would otherwise quietly mean "... & ~u 10:00".
        if (word.find_first_of("Tt") == std::string::npos) {
          skip_space();
          size_t next = pos_;
          if (next + 5 <= text_.size() && is_digit(text_[next]) && is_digit(text_[next + 1]) &&
              text_[next + 2] == ':' && is_digit(text_[next + 3]) && is_digit(text_[next + 4]))
            return fail(next, "'T' between the date and the time, as in 2026-11-01T10:00",
                        "got a separate time");
        }
        return true;
      case ArgKind::duration:
      case ArgKind::size: {
        bool is_duration = spec->arg == ArgKind::duration;
        const char* expected = is_duration
                                   ? "a duration like >250ms (units ns, us, ms, s)"
                                   : "a size like >1MB (units B, KB, KiB, MB, MiB, GB, GiB)";
        skip_space();
        arg_start = pos_;
        if (!read_argument(false, word)) return failed_ ? false : missing(expected);
        // Allow a space after the operator: "~dur > 250ms".
        std::string_view view = word;
        Cmp cmp = take_cmp(view);
        if (view.empty() && !word.empty()) {
          skip_space();
          std::string rest;
          if (!read_argument(false, rest)) return failed_ ? false : fail(pos_, expected);
          word += rest;
          view = word;
          cmp = take_cmp(view);
        }
        int64_t value = 0;
        bool ok = is_duration ? parse_quantity(view, kDurationUnits, true, value)
                              : parse_quantity(view, kSizeUnits, false, value);
        if (!ok) return fail(arg_start, expected);
        out.cmp = cmp;
        out.lo = value;
        out.arg = std::string(cmp_text(cmp)) + std::string(view);
        return true;
      }
    }
    return fail(tilde, "a known filter name");
  }

  static bool parse_status(std::string_view s, Node& out) {
    if (s.size() == 3 && is_digit(s[0]) && (s[1] == 'x' || s[1] == 'X') &&
        (s[2] == 'x' || s[2] == 'X')) {
      out.lo = (s[0] - '0') * 100;
      out.hi = out.lo + 99;
      out.arg = std::string(1, s[0]) + "xx";
      return true;
    }
    if (s.empty() || s.size() > 3) return false;
    int code = 0;
    for (char c : s) {
      if (!is_digit(c)) return false;
      code = code * 10 + (c - '0');
    }
    out.lo = out.hi = code;
    out.arg = std::to_string(code);
    return true;
  }

  // Reads one argument at pos_: a quoted string, or an unquoted run that stops at whitespace,
  // ( ) ~ ' " (and & | unless `regex`). False when there is none here (the caller says what it
  // wanted) or when a quoted string is not closed (then the error is set).
  bool read_argument(bool regex, std::string& out) {
    out.clear();
    if (at_end()) return false;
    char c = peek();
    if (c == '"' || c == '\'') return read_quoted(out);
    if (c == '(' || c == ')' || c == '~' || c == '!' || c == '&' || c == '|') return false;
    size_t start = pos_;
    while (!at_end()) {
      char d = peek();
      if (is_space(d) || d == '(' || d == ')' || d == '~' || d == '"' || d == '\'') break;
      if (!regex && (d == '&' || d == '|')) break;
      ++pos_;
    }
    out.assign(text_.substr(start, pos_ - start));
    return true;
  }

  // \" \' and \\ stand for the character; any other backslash pair is kept whole so regex
  // escapes reach RE2 unchanged.
  bool read_quoted(std::string& out) {
    size_t open = pos_;
    char quote = text_[pos_++];
    while (!at_end()) {
      char c = text_[pos_];
      if (c == quote) {
        ++pos_;
        return true;
      }
      if (c == '\\' && pos_ + 1 < text_.size()) {
        char next = text_[pos_ + 1];
        if (next == '"' || next == '\'' || next == '\\') {
          out += next;
        } else {
          out += c;
          out += next;
        }
        pos_ += 2;
        continue;
      }
      out += c;
      ++pos_;
    }
    return fail(open, std::string("a closing ") + quote,
                "got end of input (the string opened here is not closed)");
  }

  bool compile_regex(Kind kind, RegexMode mode, std::string source, size_t at, Node& out) {
    if (++regexes_ > kMaxRegexes)
      return fail(at, "at most 64 regexes in one expression", "this is one more");
    RE2::Options options;
    options.set_case_sensitive(false);
    options.set_log_errors(false);
    options.set_max_mem(kRegexMaxMem);
    if (mode == RegexMode::dot_all) options.set_dot_nl(true);
    // (?m) before the user's text rather than around it, so an unbalanced ')' stays an error.
    std::string pattern = mode == RegexMode::multiline ? "(?m)" + source : source;
    auto re = std::make_unique<RE2>(pattern, options);
    if (!re->ok()) return fail(at, "a valid regex", "RE2 says: " + printable(re->error(), 120));
    out.kind = kind;
    // Bodies stay with RE2 so their search time is linear whatever the pattern.
    if (mode != RegexMode::dot_all) out.literal = plain_literal(source);
    out.arg = std::move(source);
    out.re = std::move(re);
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
  int regexes_ = 0;
  bool failed_ = false;
  ParseError error_;
};

// ---- printing -----------------------------------------------------------------------------

// Bare when read_argument would read the same text back (a regex may hold & and |, as in
// mitmproxy; other arguments stop there), quoted otherwise.
std::string quote_if_needed(const std::string& s, bool regex) {
  bool needs = s.empty() || s.front() == '!' || s.front() == '&' || s.front() == '|';
  for (char c : s)
    if (is_space(c) || c == '(' || c == ')' || c == '~' || c == '"' || c == '\'' ||
        (!regex && (c == '&' || c == '|')))
      needs = true;
  if (!needs) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

void print(const Node& node, std::string& out) {
  switch (node.kind) {
    case Kind::and_:
    case Kind::or_: {
      out += '(';
      for (size_t i = 0; i < node.children.size(); ++i) {
        if (i > 0) out += node.kind == Kind::and_ ? " & " : " | ";
        print(node.children[i], out);
      }
      out += ')';
      return;
    }
    case Kind::not_:
      out += '!';
      print(node.children[0], out);
      return;
    default:
      break;
  }
  const Spec& spec = spec_of(node.kind);
  out += '~';
  out += spec.name;
  switch (spec.arg) {
    case ArgKind::none:
      return;
    case ArgKind::optional_id:
      if (node.hi != 0) out += " " + node.arg;
      return;
    case ArgKind::regex:
    case ArgKind::name:
      out += ' ';
      out += quote_if_needed(node.arg, spec.arg == ArgKind::regex);
      return;
    default:
      out += ' ';
      out += node.arg;
      return;
  }
}

// ---- matching -----------------------------------------------------------------------------

// A content-decoded body, kept for the rest of one matches() call so `~b a | ~bs b` decodes
// each body once.
struct DecodedBody {
  const flow::Body* body = nullptr;
  uint64_t call = 0;  // the matches() call it belongs to
  bool decoded = false;
  std::string text;
};

// Per-thread buffers so matching does not allocate once they have grown.
struct Scratch {
  uint64_t call = 0;  // counts matches() calls on this thread
  std::string text;
  std::array<DecodedBody, 2> bodies;  // a flow has two: request and response
};
thread_local Scratch scratch;

// Match() directly: PartialMatch's argument plumbing costs more than a short search.
bool search(std::string_view text, const RE2& re) {
  return re.Match(re2::StringPiece(text.data(), text.size()), 0, text.size(), RE2::UNANCHORED,
                  nullptr, 0);
}

std::string_view host_of(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(1, close - 1);
  }
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos || authority.find(':') != colon) return authority;
  return authority.substr(0, colon);
}

// ASCII case-insensitive substring search for a lowercased needle.
bool contains_folded(std::string_view text, std::string_view needle) {
  if (needle.size() > text.size()) return false;
  const char first = needle[0];
  const char first_upper = (first >= 'a' && first <= 'z') ? static_cast<char>(first - 32) : first;
  for (size_t i = 0; i + needle.size() <= text.size(); ++i) {
    if (text[i] != first && text[i] != first_upper) continue;
    size_t k = 1;
    while (k < needle.size() && lower_ascii(text[i + k]) == needle[k]) ++k;
    if (k == needle.size()) return true;
  }
  return false;
}

// A regex argument searched in a short field (never a body: bodies always go to RE2, whose
// time is linear in the text whatever the pattern).
bool find(std::string_view text, const Node& n) {
  return n.literal.empty() ? search(text, *n.re) : contains_folded(text, n.literal);
}

bool any_content_type(const flow::Headers& headers, const Node& n) {
  for (const auto& h : headers)
    if (flow::iequals(h.name, "content-type") && find(h.value, n)) return true;
  return false;
}

bool headers_match(const flow::Headers& headers, const Node& n) {
  std::string& text = scratch.text;
  text.clear();
  for (const auto& h : headers) {
    text += h.name;
    text += ": ";
    text += h.value;
    text += '\n';
  }
  return find(text, n);
}

// The body as a person would read it: content-decoded when the headers say so and decoding
// works, else the stored bytes; at most kMaxBodyScanBytes either way.
std::string_view body_text(const flow::Body& body, const flow::Headers& headers) {
  std::string_view raw = body.data;
  auto encoding = headers.get("content-encoding");
  if (!encoding) return raw.substr(0, kMaxBodyScanBytes);
  DecodedBody* slot = nullptr;
  for (auto& candidate : scratch.bodies) {
    if (candidate.call == scratch.call && candidate.body == &body)
      return candidate.decoded ? std::string_view(candidate.text)
                               : raw.substr(0, kMaxBodyScanBytes);
    if (slot == nullptr && candidate.call != scratch.call) slot = &candidate;
  }
  if (slot == nullptr) slot = &scratch.bodies[0];
  slot->body = &body;
  slot->call = scratch.call;
  codec::CodingLimits limits;
  limits.max_output = kMaxBodyScanBytes;
  limits.partial = true;  // a body stored truncated at the cap is still searchable
  auto decoded = codec::decode_content(raw, *encoding, limits);
  slot->decoded = decoded.ok();
  if (decoded.ok()) slot->text = std::move(decoded.value());
  return slot->decoded ? std::string_view(slot->text) : raw.substr(0, kMaxBodyScanBytes);
}

bool body_matches(const flow::Body& body, const flow::Headers& headers, const RE2& re) {
  // As mitmproxy: an empty body is never searched, so `~b ""` means "has a body".
  if (body.data.empty()) return false;
  return search(body_text(body, headers), re);
}

// Called after each matches(): a thread that once decoded a large body does not keep the
// buffer alive.
void trim_scratch() {
  for (auto& slot : scratch.bodies) {
    if (slot.text.capacity() > (1u << 20)) {
      std::string().swap(slot.text);
      slot.body = nullptr;
      slot.call = 0;
    }
  }
}

// direction: 0 both, 1 client messages only, 2 server messages only.
bool websocket_matches(const flow::Flow& f, const RE2& re, int direction) {
  if (!f.websocket) return false;
  for (const auto& m : f.websocket->messages) {
    if (direction == 1 && !m.from_client) continue;
    if (direction == 2 && m.from_client) continue;
    if (!m.payload.empty() && search(std::string_view(m.payload).substr(0, kMaxBodyScanBytes), re))
      return true;
  }
  return false;
}

const Node& asset_node() {
  static const Node node = [] {
    RE2::Options options;
    options.set_case_sensitive(false);
    options.set_log_errors(false);
    Node n;
    n.kind = Kind::content_type_response;
    n.re = std::make_unique<RE2>(
        "text/javascript|application/x-javascript|application/javascript|text/css|image/|font/"
        "|application/font",
        options);
    return n;
  }();
  return node;
}

int64_t saturate(uint64_t v) {
  return v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
             ? std::numeric_limits<int64_t>::max()
             : static_cast<int64_t>(v);
}

bool eval(const Node& n, const flow::Flow& f) {
  const auto& req = f.request;
  const auto& resp = f.response;
  switch (n.kind) {
    case Kind::and_:
      for (const auto& c : n.children)
        if (!eval(c, f)) return false;
      return true;
    case Kind::or_:
      for (const auto& c : n.children)
        if (eval(c, f)) return true;
      return false;
    case Kind::not_:
      return !eval(n.children[0], f);
    case Kind::all:
      return true;
    case Kind::request_only:
      return f.kind == flow::FlowKind::http && !resp;
    case Kind::response:
      return resp.has_value();
    case Kind::error:
      return f.error.has_value();
    case Kind::asset:
      return resp && any_content_type(resp->headers, asset_node());
    case Kind::http:
      return f.kind == flow::FlowKind::http;
    case Kind::tunnel:
      return f.kind == flow::FlowKind::tunnel;
    case Kind::websocket:
      return f.websocket.has_value();
    case Kind::marked:
      return !f.marked.empty();
    case Kind::replay:
      return f.origin != 0 || !f.run.empty();
    case Kind::origin:
      return n.hi != 0 ? f.origin == static_cast<uint64_t>(n.lo) : f.origin != 0;
    case Kind::url: {
      std::string& text = scratch.text;
      text.clear();
      if (!req.scheme.empty()) {
        text += req.scheme;
        text += "://";
      }
      text += req.authority;
      if (!req.scheme.empty()) text += req.path;
      return find(text, n);
    }
    case Kind::domain: {
      if (find(host_of(req.authority), n)) return true;
      auto host_header = req.headers.get("host");
      return host_header && find(host_of(*host_header), n);
    }
    case Kind::method:
      return find(req.method, n);
    case Kind::header:
      return headers_match(req.headers, n) || (resp && headers_match(resp->headers, n));
    case Kind::header_request:
      return headers_match(req.headers, n);
    case Kind::header_response:
      return resp && headers_match(resp->headers, n);
    case Kind::body:
      return body_matches(req.body, req.headers, *n.re) ||
             (resp && body_matches(resp->body, resp->headers, *n.re)) ||
             websocket_matches(f, *n.re, 0);
    case Kind::body_request:
      return body_matches(req.body, req.headers, *n.re) || websocket_matches(f, *n.re, 1);
    case Kind::body_response:
      return (resp && body_matches(resp->body, resp->headers, *n.re)) ||
             websocket_matches(f, *n.re, 2);
    case Kind::content_type:
      return any_content_type(req.headers, n) || (resp && any_content_type(resp->headers, n));
    case Kind::content_type_request:
      return any_content_type(req.headers, n);
    case Kind::content_type_response:
      return resp && any_content_type(resp->headers, n);
    case Kind::comment:
      return find(f.comment, n);
    case Kind::marker:
      return find(f.marked, n);
    case Kind::source:
      return find(f.client_address, n);
    case Kind::destination:
      return find(f.upstream_address, n);
    case Kind::status:
      return resp && resp->status >= n.lo && resp->status <= n.hi;
    case Kind::session:
      return f.session == n.arg;
    case Kind::run:
      return f.run == n.arg;
    case Kind::tag:
      return std::find(f.tags.begin(), f.tags.end(), n.arg) != f.tags.end();
    case Kind::since: {
      int64_t t = flow_start_ns(f);
      return t != 0 && t >= n.lo;
    }
    case Kind::until: {
      int64_t t = flow_start_ns(f);
      return t != 0 && t < n.lo;
    }
    case Kind::duration: {
      int64_t d = f.duration();
      return d > 0 && compare(d, n.cmp, n.lo);
    }
    case Kind::size:
      return compare(saturate(req.body.size + (resp ? resp->body.size : 0)), n.cmp, n.lo);
    case Kind::size_request:
      return compare(saturate(req.body.size), n.cmp, n.lo);
    case Kind::size_response:
      return resp && compare(saturate(resp->body.size), n.cmp, n.lo);
  }
  return false;
}

// ---- analysis -----------------------------------------------------------------------------

bool reads_bodies(const Node& n) {
  switch (n.kind) {
    case Kind::body:
    case Kind::body_request:
    case Kind::body_response:
      return true;
    default:
      break;
  }
  for (const auto& c : n.children)
    if (reads_bodies(c)) return true;
  return false;
}

void add_hint(const Node& n, IndexHint& hint) {
  switch (n.kind) {
    case Kind::session:
      if (!hint.session) hint.session = n.arg;
      break;
    case Kind::run:
      if (!hint.run) hint.run = n.arg;
      break;
    case Kind::origin:
      if (n.hi != 0 && !hint.origin) hint.origin = static_cast<uint64_t>(n.lo);
      break;
    case Kind::status:
      // Both ranges are necessary, so their intersection is (possibly empty: min > max).
      hint.status_min = std::max<int>(hint.status_min.value_or(0), static_cast<int>(n.lo));
      hint.status_max = std::min<int>(hint.status_max.value_or(999), static_cast<int>(n.hi));
      break;
    case Kind::since:
      hint.since_ns = std::max(hint.since_ns.value_or(std::numeric_limits<int64_t>::min()), n.lo);
      break;
    case Kind::until:
      hint.until_ns = std::min(hint.until_ns.value_or(std::numeric_limits<int64_t>::max()), n.lo);
      break;
    default:
      break;
  }
}

// The first ~d and ~m of the top-level AND chain (see Filter::host_test()).
std::pair<const Node*, const Node*> value_test_nodes(const Node& root) {
  std::pair<const Node*, const Node*> out{nullptr, nullptr};
  auto take = [&](const Node& n) {
    if (n.kind == Kind::domain && !out.first && n.arg.find("(?") == std::string::npos)
      out.first = &n;
    if (n.kind == Kind::method && !out.second) out.second = &n;
  };
  if (root.kind == Kind::and_) {
    for (const auto& c : root.children) take(c);
  } else {
    take(root);
  }
  return out;
}

IndexHint hint_of(const Node& root) {
  IndexHint hint;
  if (root.kind == Kind::and_) {
    for (const auto& c : root.children) add_hint(c, hint);
  } else {
    add_hint(root, hint);
  }
  return hint;
}

}  // namespace

// ---- public -------------------------------------------------------------------------------

std::optional<int> IndexHint::exact_status() const {
  if (status_min && status_max && *status_min == *status_max) return status_min;
  return std::nullopt;
}

bool IndexHint::empty() const {
  return !session && !run && !origin && !status_min && !status_max && !since_ns && !until_ns;
}

Filter::Filter() {
  static const std::shared_ptr<const Compiled> match_all = std::make_shared<const Compiled>();
  compiled_ = match_all;
}

Filter::Filter(std::shared_ptr<const Compiled> compiled) : compiled_(std::move(compiled)) {}

Result<Filter> Filter::parse(std::string_view text, ParseError* error) {
  auto compiled = std::make_shared<Compiled>();
  Parser parser(text);
  if (!parser.parse(compiled->root)) {
    if (error != nullptr) *error = parser.error();
    return Status(Errc::parse_error, printable(text, 80) + ": " + parser.error().message);
  }
  compiled->hint = hint_of(compiled->root);
  compiled->needs_bodies = reads_bodies(compiled->root);
  std::tie(compiled->host_node, compiled->method_node) = value_test_nodes(compiled->root);
  return Filter(std::move(compiled));
}

bool Filter::matches(const flow::Flow& flow) const {
  ++scratch.call;
  bool hit = eval(compiled_->root, flow);
  if (compiled_->needs_bodies) trim_scratch();
  return hit;
}

std::string Filter::to_string() const {
  std::string out;
  print(compiled_->root, out);
  return out;
}

const IndexHint& Filter::hint() const {
  return compiled_->hint;
}

std::function<bool(std::string_view)> Filter::host_test() const {
  if (!compiled_->host_node) return {};
  return [compiled = compiled_](std::string_view host) { return find(host, *compiled->host_node); };
}

std::function<bool(std::string_view)> Filter::method_test() const {
  if (!compiled_->method_node) return {};
  return [compiled = compiled_](std::string_view method) {
    return find(method, *compiled->method_node);
  };
}

bool Filter::needs_bodies() const {
  return compiled_->needs_bodies;
}

std::span<const FilterHelp> Filter::help() {
  return help_rows();
}

int64_t flow_start_ns(const flow::Flow& flow) noexcept {
  return flow.timing.request_started != 0 ? flow.timing.request_started
                                          : flow.timing.client_connected;
}

}  // namespace retake::query
