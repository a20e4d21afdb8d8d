// Normalizers (timestamps, UUIDs, hex ids) over text, and endpoint route templates.
#include <algorithm>
#include <charconv>
#include <cstring>

#include "diff/diff.h"
#include "diff/internal.h"

namespace retake::diff {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// n digits at s[p..p+n) as a number, or -1.
int digits(std::string_view s, size_t p, size_t n) {
  if (p + n > s.size()) return -1;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!is_digit(s[p + i])) return -1;
    v = v * 10 + (s[p + i] - '0');
  }
  return v;
}

bool boundary_after(std::string_view s, size_t end) { return end >= s.size() || !is_alnum(s[end]); }

// An RFC 3339 / ISO 8601 date-time starting at p: YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|±HH[:]MM|±HH].
// Returns its length, 0 when there is none.
size_t match_iso(std::string_view s, size_t p) {
  int year = digits(s, p, 4), month = digits(s, p + 5, 2), day = digits(s, p + 8, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > 31) return 0;
  if (s[p + 4] != '-' || s[p + 7] != '-') return 0;
  size_t q = p + 10;
  if (q >= s.size() || (s[q] != 'T' && s[q] != 't' && s[q] != ' ')) return 0;
  ++q;
  int hour = digits(s, q, 2), minute = digits(s, q + 3, 2);
  if (hour < 0 || hour > 24 || minute < 0 || minute > 59 || s[q + 2] != ':') return 0;
  q += 5;
  if (q < s.size() && s[q] == ':') {
    int second = digits(s, q + 1, 2);
    if (second < 0 || second > 60) return 0;
    q += 3;
    if (q < s.size() && (s[q] == '.' || s[q] == ',') && q + 1 < s.size() && is_digit(s[q + 1])) {
      ++q;
      while (q < s.size() && is_digit(s[q])) ++q;
    }
  }
  if (q < s.size() && (s[q] == 'Z' || s[q] == 'z')) {
    ++q;
  } else if (q < s.size() && (s[q] == '+' || s[q] == '-') && digits(s, q + 1, 2) >= 0) {
    size_t r = q + 3;
    if (r < s.size() && s[r] == ':' && digits(s, r + 1, 2) >= 0)
      r += 3;
    else if (digits(s, r, 2) >= 0)
      r += 2;
    q = r;
  }
  return boundary_after(s, q) ? q - p : 0;
}

// IMF-fixdate, the HTTP-date format: "Sun, 06 Nov 1994 08:49:37 GMT".
size_t match_http_date(std::string_view s, size_t p) {
  static constexpr const char* kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  constexpr size_t kLen = 29;
  if (p + kLen > s.size()) return 0;
  auto t = s.substr(p, kLen);
  if (std::none_of(std::begin(kDays), std::end(kDays),
                   [&](const char* d) { return t.substr(0, 3) == d; }))
    return 0;
  if (t.substr(3, 2) != ", " || digits(t, 5, 2) < 0 || t[7] != ' ') return 0;
  if (std::none_of(std::begin(kMonths), std::end(kMonths),
                   [&](const char* m) { return t.substr(8, 3) == m; }))
    return 0;
  if (t[11] != ' ' || digits(t, 12, 4) < 0 || t[16] != ' ') return 0;
  if (digits(t, 17, 2) < 0 || t[19] != ':' || digits(t, 20, 2) < 0 || t[22] != ':' ||
      digits(t, 23, 2) < 0 || t.substr(25, 4) != " GMT")
    return 0;
  return boundary_after(s, p + kLen) ? kLen : 0;
}

size_t match_uuid(std::string_view s, size_t p) {
  constexpr size_t kLen = 36;
  if (p + kLen > s.size()) return 0;
  for (size_t i = 0; i < kLen; ++i) {
    char c = s[p + i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !is_hex(c)) return 0;
  }
  return boundary_after(s, p + kLen) ? kLen : 0;
}

size_t match_hex(std::string_view s, size_t p) {
  size_t q = p;
  while (q < s.size() && is_hex(s[q])) ++q;
  return (q - p >= 16 && boundary_after(s, q)) ? q - p : 0;
}

bool has(std::span<const NormalizerKind> kinds, NormalizerKind k) {
  return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
}

bool is_uuid_segment(std::string_view s) { return s.size() == 36 && match_uuid(s, 0) == 36; }

}  // namespace

bool is_epoch_value(double v, const CompareOptions& o) {
  if (!(v >= 0)) return false;
  double lo = static_cast<double>(o.epoch_min_seconds), hi = static_cast<double>(o.epoch_max_seconds);
  return (v >= lo && v <= hi) || (v >= lo * 1000 && v <= hi * 1000);
}

std::string normalize_text(std::string_view s, std::span<const NormalizerKind> kinds,
                           const CompareOptions& options) {
  const bool ts = has(kinds, NormalizerKind::timestamp);
  const bool uuid = has(kinds, NormalizerKind::uuid);
  const bool hex = has(kinds, NormalizerKind::hex_id);
  if (ts && !s.empty() && s.size() <= 16 && std::all_of(s.begin(), s.end(), is_digit)) {
    // A whole value of digits: epoch seconds or milliseconds as a string.
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && is_epoch_value(static_cast<double>(v), options)) return "<timestamp>";
  }
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (i == 0 || !is_alnum(s[i - 1])) {
      size_t n = 0;
      if (ts && is_digit(s[i]) && (n = match_iso(s, i))) {
        out += "<timestamp>";
      } else if (ts && is_alpha(s[i]) && (n = match_http_date(s, i))) {
        out += "<timestamp>";
      } else if (uuid && is_hex(s[i]) && (n = match_uuid(s, i))) {
        out += "<uuid>";
      } else if (hex && is_hex(s[i]) && (n = match_hex(s, i))) {
        out += "<hex>";
      }
      if (n) {
        i += n;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

namespace {
bool is_id_segment(std::string_view seg) {
  if (seg.empty()) return false;
  if (std::all_of(seg.begin(), seg.end(), is_digit)) return true;
  if (is_uuid_segment(seg)) return true;
  if (seg.size() >= 16 && std::all_of(seg.begin(), seg.end(), is_hex)) return true;
  if (seg.size() >= 8) {
    size_t n_digits = 0;
    for (char c : seg) {
      if (is_digit(c))
        ++n_digits;
      else if (!is_alpha(c) && c != '-' && c != '_' && c != '=')
        return false;
    }
    return n_digits >= 2;
  }
  return false;
}
}  // namespace

std::string route_template(std::string_view path) {
  auto cut = path.find_first_of("?#");
  if (cut != std::string_view::npos) path = path.substr(0, cut);
  if (path.empty()) return "/";
  std::string out;
  out.reserve(path.size());
  size_t i = 0;
  while (i <= path.size()) {
    auto slash = path.find('/', i);
    auto seg = path.substr(i, slash == std::string_view::npos ? std::string_view::npos : slash - i);
    if (is_id_segment(seg))
      out += "{id}";
    else
      out += seg;
    if (slash == std::string_view::npos) break;
    out += '/';
    i = slash + 1;
  }
  return out;
}

std::string endpoint_of(const flow::Request& request) {
  std::string out = request.method.empty() ? std::string("GET") : request.method;
  out += ' ';
  // Absolute-form targets ("http://h/p") keep only the path.
  std::string_view p = request.path;
  if (auto scheme = p.find("://"); scheme != std::string_view::npos && p.front() != '/') {
    auto slash = p.find('/', scheme + 3);
    p = slash == std::string_view::npos ? std::string_view("/") : p.substr(slash);
  }
  out += route_template(p);
  return out;
}

}  // namespace retake::diff
