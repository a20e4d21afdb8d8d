#include "replay/server/refresh.h"

#include <algorithm>
#include <chrono>
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

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Digits at s[at, at+n) as a number; -1 when any is not a digit.
int digits(std::string_view s, size_t at, size_t n) {
  int v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), what servers send nearly always, parsed
// without strptime: a served response's Date is refreshed on every request, and strptime
// (locale lookups, case-insensitive name matching) was a few percent of `retake serve`.
// nullopt when the text is not exactly that form; parse_http_date then tries the others.
std::optional<int64_t> parse_imf_fixdate(std::string_view s) {
  if (s.size() != 29 || s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
      s[19] != ':' || s[22] != ':' || s.substr(25) != " GMT")
    return std::nullopt;
  if (std::find_if(std::begin(kDays), std::end(kDays),
                   [&](const char* d) { return s.substr(0, 3) == d; }) == std::end(kDays))
    return std::nullopt;
  auto month = std::find_if(std::begin(kMonths), std::end(kMonths),
                            [&](const char* m) { return s.substr(8, 3) == m; });
  if (month == std::end(kMonths)) return std::nullopt;
  int day = digits(s, 5, 2), year = digits(s, 12, 4);
  int hour = digits(s, 17, 2), minute = digits(s, 20, 2), second = digits(s, 23, 2);
  if (day < 1 || year < 0 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 ||
      second > 60)
    return std::nullopt;
  std::chrono::year_month_day ymd{
      std::chrono::year(year),
      std::chrono::month(static_cast<unsigned>(month - std::begin(kMonths) + 1)),
      std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  // A leap second (:60) reads as the next second, as timegm would make it.
  return days * 86400 + hour * 3600 + minute * 60 + second;
}

}  // namespace

std::optional<int64_t> parse_http_date(std::string_view text) {
  if (auto fast = parse_imf_fixdate(text)) return fast;
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
  int64_t days = seconds / 86400, rest = seconds % 86400;
  std::chrono::year_month_day ymd{std::chrono::sys_days(std::chrono::days(days))};
  unsigned weekday =
      std::chrono::weekday(std::chrono::sys_days(std::chrono::days(days))).c_encoding();
  auto two = [](std::string& out, int64_t v) {
    out.push_back(static_cast<char>('0' + v / 10));
    out.push_back(static_cast<char>('0' + v % 10));
  };
  std::string out;
  out.reserve(29);
  out.append(kDays[weekday]).append(", ");
  two(out, static_cast<unsigned>(ymd.day()));
  out.push_back(' ');
  out.append(kMonths[static_cast<unsigned>(ymd.month()) - 1]).push_back(' ');
  int year = static_cast<int>(ymd.year());
  two(out, year / 100);
  two(out, year % 100);
  out.push_back(' ');
  two(out, rest / 3600);
  out.push_back(':');
  two(out, rest / 60 % 60);
  out.push_back(':');
  two(out, rest % 60);
  out.append(" GMT");
  return out;
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
