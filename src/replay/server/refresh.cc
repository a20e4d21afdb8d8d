#include "replay/server/refresh.h"

#include <ctime>
#include <string>

namespace retake::replay::server {

namespace {

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

std::optional<int64_t> parse_http_date(std::string_view text) {
  std::string s = trim(text);
  if (s.empty() || s.size() > 64) return std::nullopt;
  // strptime with the C locale's English names; %Z is not portable, so "GMT" is literal.
  static const char* const kFormats[] = {
      "%a, %d %b %Y %H:%M:%S GMT",  // IMF-fixdate
      // Two-digit years first: glibc's %Y happily reads "94" as the year 94.
      "%a, %d-%b-%y %H:%M:%S GMT",  // RFC 850 (glibc's %a also takes full day names)
      "%a, %d-%b-%Y %H:%M:%S GMT",  // cookie dates
      "%a %b %e %H:%M:%S %Y",       // asctime
      "%a, %d %b %Y %H:%M:%S +0000",
  };
  for (const char* format : kFormats) {
    std::tm tm{};
    const char* end = strptime(s.c_str(), format, &tm);
    if (end && *end == '\0') return static_cast<int64_t>(timegm(&tm));
  }
  return std::nullopt;
}

std::optional<std::string> format_http_date(int64_t seconds) {
  // 253402300799 is 9999-12-31T23:59:59Z: beyond that the 4-digit year of IMF-fixdate breaks.
  if (seconds < 0 || seconds > 253402300799) return std::nullopt;
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (!gmtime_r(&t, &tm)) return std::nullopt;
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return std::string(buf);
}

namespace {

// Shifts the Expires= attribute of one Set-Cookie value; nullopt when it has none that parses.
// An unformattable result drops the attribute.
std::optional<std::string> shift_cookie(std::string_view cookie, int64_t shift) {
  size_t pos = 0;
  while (pos < cookie.size()) {
    size_t semi = cookie.find(';', pos);
    if (semi == std::string_view::npos) semi = cookie.size();
    std::string_view attr = cookie.substr(pos, semi - pos);
    size_t lead = attr.find_first_not_of(' ');
    if (lead != std::string_view::npos && attr.size() - lead >= 8 &&
        flow::iequals(attr.substr(lead, 8), "expires=")) {
      auto when = parse_http_date(attr.substr(lead + 8));
      if (!when) return std::nullopt;
      auto text = format_http_date(*when + shift);
      std::string out(cookie.substr(0, pos));
      if (text) {
        out += std::string(attr.substr(0, lead)) + "Expires=" + *text;
        out += cookie.substr(semi);
      } else {
        // Drop "; Expires=..." entirely.
        while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
        out += cookie.substr(semi);
      }
      return out;
    }
    pos = semi + 1;
  }
  return std::nullopt;
}

}  // namespace

size_t refresh_dates(flow::Response& response, int64_t shift_seconds) {
  if (shift_seconds == 0) return 0;
  size_t changed = 0;
  auto& fields = response.headers.fields();
  for (size_t i = 0; i < fields.size();) {
    auto& h = fields[i];
    if (flow::iequals(h.name, "Date") || flow::iequals(h.name, "Expires") ||
        flow::iequals(h.name, "Last-Modified")) {
      if (auto when = parse_http_date(h.value)) {
        ++changed;
        if (auto text = format_http_date(*when + shift_seconds)) {
          h.value = *text;
        } else {
          fields.erase(fields.begin() + static_cast<std::ptrdiff_t>(i));
          continue;
        }
      }
    } else if (flow::iequals(h.name, "Set-Cookie")) {
      if (auto shifted = shift_cookie(h.value, shift_seconds)) {
        h.value = std::move(*shifted);
        ++changed;
      }
    }
    ++i;
  }
  return changed;
}

int64_t refresh_shift_seconds(const flow::Flow& flow, int64_t now_ns) {
  int64_t then =
      flow.timing.response_started ? flow.timing.response_started : flow.timing.request_started;
  if (then <= 0) return 0;
  return (now_ns - then) / 1'000'000'000;
}

}  // namespace retake::replay::server
