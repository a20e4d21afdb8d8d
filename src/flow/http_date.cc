#include "flow/http_date.h"

#include <algorithm>
#include <chrono>
#include <iterator>

namespace retake::flow {

namespace {

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

void two(std::string& out, int64_t v) {
  out.push_back(static_cast<char>('0' + v / 10));
  out.push_back(static_cast<char>('0' + v % 10));
}

}  // namespace

std::optional<int64_t> parse_imf_fixdate(std::string_view s) {
  if (s.size() != 29 || s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
      s[19] != ':' || s[22] != ':' || s.substr(25) != " GMT")
    return std::nullopt;
  if (std::none_of(std::begin(kDays), std::end(kDays),
                   [&](const char* d) { return s.substr(0, 3) == d; }))
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
  return days * 86400 + hour * 3600 + minute * 60 + second;
}

std::optional<std::string> format_imf_fixdate(int64_t seconds) {
  // -62167219200 is 0000-01-01T00:00:00Z, 253402300799 is 9999-12-31T23:59:59Z.
  if (seconds < -62167219200 || seconds > 253402300799) return std::nullopt;
  int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
  int64_t rest = seconds - days * 86400;
  std::chrono::sys_days day_point{std::chrono::days(days)};
  std::chrono::year_month_day ymd{day_point};
  std::string out;
  out.reserve(29);
  out.append(kDays[std::chrono::weekday(day_point).c_encoding()]).append(", ");
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

}  // namespace retake::flow
