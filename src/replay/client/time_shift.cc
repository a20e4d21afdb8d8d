// TimeShift: one left-to-right scan with one RE2 alternation (JWT | ISO 8601 | HTTP-date |
// epoch number), each match re-parsed by a small exact parser and re-printed in its own layout.
#include "replay/client/time_shift.h"

#include <chrono>
#include <cstdio>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <re2/re2.h>
#include <boost/json.hpp>

#include "codec/content_coding.h"
#include "flow/http_date.h"

namespace retake::replay {

namespace {

using namespace std::chrono;

constexpr int64_t kNsPerDay = 86400 * kNsPerSecond;

// Groups: 1 JWT, 2 ISO, 3 HTTP-date, 4 epoch.
const RE2& scanner() {
  static const RE2 re(
      "(eyJ[A-Za-z0-9_-]{2,}\\.eyJ[A-Za-z0-9_-]{2,}\\.[A-Za-z0-9_-]*)"
      "|(\\d{4}-\\d{2}-\\d{2}(?:[Tt ]\\d{2}:\\d{2}(?::\\d{2}(?:[.,]\\d{1,9})?)?"
      "(?:[Zz]|[+-]\\d{2}(?::?\\d{2})?)?)?)"
      "|((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \\d{2} "
      "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
      " \\d{4} \\d{2}:\\d{2}:\\d{2} GMT)"
      "|(\\d{13}|\\d{10})");
  return re;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_word(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

int num(std::string_view s, size_t pos, size_t len) {
  int v = 0;
  for (size_t i = 0; i < len; ++i) v = v * 10 + (s[pos + i] - '0');
  return v;
}

int64_t days_from_civil(int y, int m, int d, bool& ok) {
  year_month_day ymd{year{y}, month{static_cast<unsigned>(m)}, day{static_cast<unsigned>(d)}};
  ok = ymd.ok();
  return sys_days{ymd}.time_since_epoch().count();
}

void civil_from_ns(int64_t ns, int& y, int& m, int& d, int& hh, int& mm, int& ss, int64_t& frac,
                   int& wd) {
  int64_t days = ns >= 0 ? ns / kNsPerDay : -((-ns + kNsPerDay - 1) / kNsPerDay);
  int64_t rem = ns - days * kNsPerDay;
  year_month_day ymd{sys_days{std::chrono::days{days}}};
  y = static_cast<int>(ymd.year());
  m = static_cast<int>(static_cast<unsigned>(ymd.month()));
  d = static_cast<int>(static_cast<unsigned>(ymd.day()));
  weekday w{sys_days{std::chrono::days{days}}};
  wd = static_cast<int>(w.c_encoding());
  int64_t secs = rem / kNsPerSecond;
  frac = rem % kNsPerSecond;
  hh = static_cast<int>(secs / 3600);
  mm = static_cast<int>(secs / 60 % 60);
  ss = static_cast<int>(secs % 60);
}

// An ISO 8601 text as matched by the scanner, taken apart so it can be printed back the same way.
struct IsoLayout {
  bool has_time = false;
  char sep = 'T';
  bool has_seconds = false;
  char frac_sep = '.';
  int frac_digits = 0;
  std::string zone;        // "", "Z", "z", "+02:00", "+0200", "+02"
  int offset_minutes = 0;  // zone offset east of UTC
};

// The instant the text names, treating a zone-less time as UTC wall clock.
std::optional<int64_t> parse_iso(std::string_view s, IsoLayout& lay) {
  if (s.size() < 10) return std::nullopt;
  int y = num(s, 0, 4), mo = num(s, 5, 2), d = num(s, 8, 2);
  bool ok = false;
  int64_t days = days_from_civil(y, mo, d, ok);
  if (!ok) return std::nullopt;
  int64_t ns = days * kNsPerDay;
  size_t p = 10;
  if (p < s.size()) {
    lay.has_time = true;
    lay.sep = s[p];
    int hh = num(s, p + 1, 2), mi = num(s, p + 4, 2);
    if (hh > 23 || mi > 59) return std::nullopt;
    ns += (int64_t{hh} * 3600 + mi * 60) * kNsPerSecond;
    p += 6;
    if (p < s.size() && s[p] == ':') {
      lay.has_seconds = true;
      int ss = num(s, p + 1, 2);
      if (ss > 60) return std::nullopt;
      ns += int64_t{ss} * kNsPerSecond;
      p += 3;
      if (p < s.size() && (s[p] == '.' || s[p] == ',')) {
        lay.frac_sep = s[p];
        size_t q = p + 1;
        int64_t frac = 0;
        while (q < s.size() && is_digit(s[q])) frac = frac * 10 + (s[q++] - '0');
        lay.frac_digits = static_cast<int>(q - p - 1);
        for (int i = lay.frac_digits; i < 9; ++i) frac *= 10;
        ns += frac;
        p = q;
      }
    }
    if (p < s.size()) {
      lay.zone = std::string(s.substr(p));
      if (lay.zone != "Z" && lay.zone != "z") {
        int sign = lay.zone[0] == '-' ? -1 : 1;
        int oh = num(lay.zone, 1, 2);
        int om = 0;
        if (lay.zone.size() == 6)
          om = num(lay.zone, 4, 2);
        else if (lay.zone.size() == 5)
          om = num(lay.zone, 3, 2);
        if (oh > 23 || om > 59) return std::nullopt;
        lay.offset_minutes = sign * (oh * 60 + om);
        ns -= int64_t{lay.offset_minutes} * 60 * kNsPerSecond;
      }
    }
  }
  return ns;
}

std::string format_iso(int64_t ns, const IsoLayout& lay) {
  int y, m, d, hh, mi, ss, wd;
  int64_t frac;
  civil_from_ns(ns + int64_t{lay.offset_minutes} * 60 * kNsPerSecond, y, m, d, hh, mi, ss, frac,
                wd);
  char buf[80];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", y, m, d);
  std::string out(buf, static_cast<size_t>(n));
  if (!lay.has_time) return out;
  n = std::snprintf(buf, sizeof buf, "%c%02d:%02d", lay.sep, hh, mi);
  out.append(buf, static_cast<size_t>(n));
  if (lay.has_seconds) {
    n = std::snprintf(buf, sizeof buf, ":%02d", ss);
    out.append(buf, static_cast<size_t>(n));
    if (lay.frac_digits > 0) {
      n = std::snprintf(buf, sizeof buf, "%09lld", static_cast<long long>(frac));
      out += lay.frac_sep;
      out.append(buf, static_cast<size_t>(lay.frac_digits));
    }
  }
  return out + lay.zone;
}

// The scanner matched an IMF-fixdate: whole seconds, so a shift's fraction is dropped (floor).
std::optional<int64_t> parse_http_date(std::string_view s) {
  auto seconds = flow::parse_imf_fixdate(s);
  if (!seconds) return std::nullopt;
  return *seconds * kNsPerSecond;
}

std::optional<std::string> format_http_date(int64_t ns) {
  int64_t seconds = ns >= 0 ? ns / kNsPerSecond : -((-ns + kNsPerSecond - 1) / kNsPerSecond);
  return flow::format_imf_fixdate(seconds);
}

bool is_framing_header(std::string_view name) {
  return flow::iequals(name, "Content-Length") || flow::iequals(name, "Transfer-Encoding") ||
         flow::iequals(name, "Host") || flow::iequals(name, "Content-Encoding") ||
         flow::iequals(name, "Content-Type") || flow::iequals(name, "Connection");
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string pct_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out += static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
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
    if (is_word(static_cast<char>(c)) || c == '-' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// A query string or form body: each value decoded, shifted, and re-encoded only when changed
// (so untouched parameters keep their exact original bytes).
std::string shift_params(const TimeShift& ts, std::string_view text, bool form,
                         TimeShiftReport* report) {
  std::string out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t amp = text.find('&', start);
    if (amp == std::string_view::npos) amp = text.size();
    std::string_view pair = text.substr(start, amp - start);
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos) {
      std::string_view raw = pair.substr(eq + 1);
      std::string decoded = pct_decode(raw, form);
      std::string shifted = ts.shift_text(decoded, report);
      out.append(pair.substr(0, eq + 1));
      out += shifted == decoded ? std::string(raw) : pct_encode(shifted);
    } else {
      out.append(pair);
    }
    if (amp == text.size()) break;
    out += '&';
    start = amp + 1;
  }
  return out;
}

void shift_json_node(const TimeShift& ts, boost::json::value& v, int depth, size_t& budget,
                     TimeShiftReport* report) {
  if (depth > 64 || budget == 0) return;
  --budget;
  const auto& opt = ts.options();
  auto in_window = [&](int64_t ns) {
    return opt.reference_ns != 0 && ns >= opt.reference_ns - opt.window_ns &&
           ns <= opt.reference_ns + opt.window_ns;
  };
  if (v.is_object()) {
    for (auto& kv : v.as_object()) shift_json_node(ts, kv.value(), depth + 1, budget, report);
  } else if (v.is_array()) {
    for (auto& e : v.as_array()) shift_json_node(ts, e, depth + 1, budget, report);
  } else if (v.is_string()) {
    std::string_view s = v.as_string();
    std::string shifted = ts.shift_text(s, report);
    if (shifted != s) v = shifted;
  } else if (v.is_int64() || v.is_uint64()) {
    int64_t n = v.is_int64() ? v.as_int64() : static_cast<int64_t>(v.as_uint64());
    if (n >= 1'000'000'000 && n <= 9'999'999'999 && in_window(n * kNsPerSecond)) {
      v = n + opt.delta_ns / kNsPerSecond;
      if (report) ++report->shifted;
    } else if (n >= 1'000'000'000'000 && n <= 9'999'999'999'999 && in_window(n * 1'000'000)) {
      v = n + opt.delta_ns / 1'000'000;
      if (report) ++report->shifted;
    }
  }
}

}  // namespace

TimeShift::TimeShift(TimeShiftOptions options) : options_(std::move(options)) {}

std::string TimeShift::shift_text(std::string_view text, TimeShiftReport* report) const {
  if (text.size() < 10) return std::string(text);
  const RE2& re = scanner();
  std::string out;
  out.reserve(text.size());
  re2::StringPiece input(text.data(), text.size());
  re2::StringPiece groups[5];
  size_t pos = 0;
  while (pos < text.size() && re.Match(input, pos, text.size(), RE2::UNANCHORED, groups, 5)) {
    size_t begin = static_cast<size_t>(groups[0].data() - text.data());
    size_t end = begin + groups[0].size();
    std::string_view m = text.substr(begin, end - begin);
    // A timestamp glued to other digits or letters is part of something else (an id, a hash).
    bool bounded = (begin == 0 || !is_word(text[begin - 1]) || !groups[1].empty()) &&
                   (end == text.size() || !is_digit(text[end]));
    if (!groups[4].empty())
      bounded = bounded && (begin == 0 || !is_word(text[begin - 1])) &&
                (end == text.size() || !is_word(text[end]));
    std::optional<std::string> replacement;
    if (bounded) {
      if (!groups[1].empty()) {
        replacement = shift_jwt(m, report);
      } else if (!groups[2].empty()) {
        IsoLayout lay;
        if (auto ns = parse_iso(m, lay)) {
          replacement = format_iso(*ns + options_.delta_ns, lay);
          if (report) ++report->shifted;
        }
      } else if (!groups[3].empty()) {
        if (auto ns = parse_http_date(m)) {
          replacement = format_http_date(*ns + options_.delta_ns);
          if (report && replacement) ++report->shifted;
        }
      } else if (!groups[4].empty() && options_.reference_ns != 0) {
        int64_t n = std::stoll(std::string(m));
        bool millis = m.size() == 13;
        int64_t ns = millis ? n * 1'000'000 : n * kNsPerSecond;
        if (ns >= options_.reference_ns - options_.window_ns &&
            ns <= options_.reference_ns + options_.window_ns) {
          int64_t shifted =
              millis ? n + options_.delta_ns / 1'000'000 : n + options_.delta_ns / kNsPerSecond;
          replacement = std::to_string(shifted);
          if (report) ++report->shifted;
        }
      }
    }
    out.append(text.substr(pos, begin - pos));
    out += replacement ? *replacement : std::string(m);
    pos = end > begin ? end : begin + 1;
  }
  if (pos < text.size()) out.append(text.substr(pos));
  return out;
}

void TimeShift::shift_json(boost::json::value& value, TimeShiftReport* report) const {
  size_t budget = 100'000;
  shift_json_node(*this, value, 0, budget, report);
}

std::optional<std::string> TimeShift::shift_jwt(std::string_view token,
                                                TimeShiftReport* report) const {
  size_t d1 = token.find('.');
  size_t d2 = token.find('.', d1 + 1);
  if (d1 == std::string_view::npos || d2 == std::string_view::npos) return std::nullopt;
  auto header_text = base64url_decode(token.substr(0, d1));
  auto payload_text = base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  if (!header_text || !payload_text) return std::nullopt;
  boost::system::error_code ec;
  auto header = boost::json::parse(*header_text, ec);
  if (ec || !header.is_object()) return std::nullopt;
  auto payload = boost::json::parse(*payload_text, ec);
  if (ec || !payload.is_object()) return std::nullopt;
  auto& claims = payload.as_object();
  bool has_time = false;
  for (const char* name : {"iat", "nbf", "exp"}) {
    auto* c = claims.if_contains(name);
    if (c && (c->is_int64() || c->is_uint64() || c->is_double())) has_time = true;
  }
  if (!has_time) return std::nullopt;
  const auto* alg = header.as_object().if_contains("alg");
  bool hs256 = alg && alg->is_string() && alg->as_string() == "HS256";
  if (options_.jwt_secret.empty() || !hs256) {
    if (report) ++report->jwt_unsigned;
    return std::nullopt;
  }
  int64_t delta_s = options_.delta_ns / kNsPerSecond;
  for (const char* name : {"iat", "nbf", "exp"}) {
    auto* c = claims.if_contains(name);
    if (!c) continue;
    if (c->is_int64())
      *c = c->as_int64() + delta_s;
    else if (c->is_uint64())
      *c = static_cast<int64_t>(c->as_uint64()) + delta_s;
    else if (c->is_double())
      *c = c->as_double() + static_cast<double>(delta_s);
  }
  std::string input =
      std::string(token.substr(0, d1)) + "." + base64url_encode(boost::json::serialize(payload));
  if (report) ++report->jwt_resigned;
  return input + "." + base64url_encode(hs256_sign(options_.jwt_secret, input));
}

namespace {

// Shifts a decoded body by its media type; true when it changed.
bool shift_body_text(const TimeShift& shift, std::string& body, std::string ctype,
                     TimeShiftReport* report) {
  for (auto& c : ctype) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string before = body;
  if (ctype.find("json") != std::string::npos) {
    boost::system::error_code ec;
    auto doc = boost::json::parse(body, ec);
    if (ec) {
      body = shift.shift_text(body, report);
    } else {
      TimeShiftReport local;
      shift.shift_json(doc, &local);
      if (local.shifted || local.jwt_resigned) body = boost::json::serialize(doc);
      if (report) {
        report->shifted += local.shifted;
        report->jwt_resigned += local.jwt_resigned;
        report->jwt_unsigned += local.jwt_unsigned;
      }
    }
  } else if (ctype.find("x-www-form-urlencoded") != std::string::npos) {
    body = shift_params(shift, body, true, report);
  } else if (ctype.rfind("text/", 0) == 0 || ctype.find("xml") != std::string::npos) {
    body = shift.shift_text(body, report);
  } else {
    if (report) ++report->skipped_bodies;
    return false;
  }
  return body != before;
}

}  // namespace

void TimeShift::shift_request(flow::Request& request, TimeShiftReport* report) const {
  for (auto& h : request.headers.fields())
    if (!is_framing_header(h.name)) h.value = shift_text(h.value, report);
  if (auto q = request.path.find('?'); q != std::string::npos)
    request.path = request.path.substr(0, q + 1) +
                   shift_params(*this, std::string_view(request.path).substr(q + 1), false, report);
  shift_body(request.body, request.headers, report);
}

void TimeShift::shift_body(flow::Body& message_body, flow::Headers& headers,
                           TimeShiftReport* report) const {
  if (message_body.data.empty()) return;
  if (message_body.truncated) {
    if (report) ++report->skipped_bodies;
    return;
  }
  std::string ctype(headers.get("Content-Type").value_or(""));
  std::string encoding(headers.get("Content-Encoding").value_or(""));
  const bool encoded = !encoding.empty() && !flow::iequals(encoding, "identity");
  std::string body;
  if (encoded) {
    // Compressed bodies are decoded, shifted and re-encoded with the same codings, as the
    // rules do; one that does not decode is left alone and counted.
    auto decoded = codec::decode_content(message_body.data, encoding);
    if (!decoded) {
      if (report) ++report->skipped_bodies;
      return;
    }
    body = std::move(*decoded);
  } else {
    body = std::move(message_body.data);
  }
  bool changed = shift_body_text(*this, body, ctype, report);
  if (!encoded) {
    message_body.data = std::move(body);
  } else if (changed) {
    auto reencoded = codec::encode_content(body, encoding);
    if (!reencoded) {
      if (report) ++report->skipped_bodies;
      return;
    }
    message_body.data = std::move(*reencoded);
  }
  if (!changed) return;
  message_body.size = message_body.data.size();
  if (headers.contains("Content-Length"))
    headers.set("Content-Length", std::to_string(message_body.data.size()));
}

std::optional<int64_t> parse_shift(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int sign = 1;
  size_t i = 0;
  if (text[0] == '+' || text[0] == '-') {
    sign = text[0] == '-' ? -1 : 1;
    i = 1;
  }
  int64_t total = 0;
  bool any = false;
  while (i < text.size()) {
    size_t start = i;
    int64_t n = 0;
    while (i < text.size() && is_digit(text[i])) {
      n = n * 10 + (text[i++] - '0');
      if (n > 1'000'000'000) return std::nullopt;
    }
    if (i == start) return std::nullopt;
    size_t ustart = i;
    while (i < text.size() && !is_digit(text[i])) ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    int64_t mult;
    if (unit == "ms")
      mult = 1'000'000;
    else if (unit == "s")
      mult = kNsPerSecond;
    else if (unit == "m" || unit == "min")
      mult = 60 * kNsPerSecond;
    else if (unit == "h")
      mult = 3600 * kNsPerSecond;
    else if (unit == "d")
      mult = kNsPerDay;
    else if (unit == "w")
      mult = 7 * kNsPerDay;
    else
      return std::nullopt;
    if (n > INT64_MAX / mult / 2) return std::nullopt;
    total += n * mult;
    any = true;
  }
  if (!any) return std::nullopt;
  return sign * total;
}

std::optional<int64_t> parse_instant(std::string_view text) {
  static const RE2 full(
      "\\d{4}-\\d{2}-\\d{2}(?:[Tt ]\\d{2}:\\d{2}(?::\\d{2}(?:[.,]\\d{1,9})?)?"
      "(?:[Zz]|[+-]\\d{2}(?::?\\d{2})?)?)?");
  if (!RE2::FullMatch(re2::StringPiece(text.data(), text.size()), full)) return std::nullopt;
  IsoLayout lay;
  return parse_iso(text, lay);
}

std::string base64url_encode(std::string_view bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) |
                 uint8_t(bytes[i + 2]);
    out += table[n >> 18];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += table[n & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t n = uint32_t(uint8_t(bytes[i])) << 16;
    out += table[n >> 18];
    out += table[(n >> 12) & 63];
  } else if (i + 2 == bytes.size()) {
    uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8);
    out += table[n >> 18];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-' || c == '+') return 62;
    if (c == '_' || c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = val(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string hs256_sign(std::string_view key, std::string_view signing_input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
       &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

}  // namespace retake::replay
