#include "replay/server/refresh.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <ctime>

using namespace retake;
using namespace retake::replay::server;

TEST_CASE("HTTP dates in the three RFC 9110 forms and the cookie form parse to the same instant") {
  const int64_t t = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == t);
  CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == t);
  CHECK(parse_http_date("Sun Nov  6 08:49:37 1994") == t);
  CHECK(parse_http_date("Sun, 06-Nov-1994 08:49:37 GMT") == t);
  CHECK_FALSE(parse_http_date("yesterday"));
  CHECK_FALSE(parse_http_date(""));
  CHECK(format_http_date(t) == "Sun, 06 Nov 1994 08:49:37 GMT");
}

TEST_CASE("refresh shifts Date, Expires, Last-Modified and Set-Cookie Expires by the same amount") {
  flow::Response r;
  r.headers.add("Date", "Sun, 06 Nov 1994 08:49:37 GMT");
  r.headers.add("Expires", "Sun, 06 Nov 1994 09:49:37 GMT");
  r.headers.add("Last-Modified", "Sat, 05 Nov 1994 08:49:37 GMT");
  r.headers.add("Set-Cookie", "sid=1; Path=/; Expires=Mon, 07-Nov-1994 08:49:37 GMT; HttpOnly");
  r.headers.add("Set-Cookie", "plain=1; Path=/");
  r.headers.add("X-Other", "Sun, 06 Nov 1994 08:49:37 GMT");
  const int64_t day = 86400;
  CHECK(refresh_dates(r, day) == 4);
  CHECK(r.headers.get("Date") == "Mon, 07 Nov 1994 08:49:37 GMT");
  CHECK(r.headers.get("Expires") == "Mon, 07 Nov 1994 09:49:37 GMT");
  CHECK(r.headers.get("Last-Modified") == "Sun, 06 Nov 1994 08:49:37 GMT");
  auto cookies = r.headers.get_all("Set-Cookie");
  REQUIRE(cookies.size() == 2);
  CHECK(cookies[0] == "sid=1; Path=/; Expires=Tue, 08 Nov 1994 08:49:37 GMT; HttpOnly");
  CHECK(cookies[1] == "plain=1; Path=/");
  CHECK(r.headers.get("X-Other") == "Sun, 06 Nov 1994 08:49:37 GMT");
}

TEST_CASE("a date that does not parse is left as recorded; Expires: 0 stays 0") {
  flow::Response r;
  r.headers.add("Expires", "0");
  r.headers.add("Date", "garbage");
  CHECK(refresh_dates(r, 1000) == 0);
  CHECK(r.headers.get("Expires") == "0");
  CHECK(r.headers.get("Date") == "garbage");
}

TEST_CASE("the shift is now minus the recorded response time, in seconds") {
  flow::Flow f;
  f.timing.request_started = 1'000'000'000'000;
  f.timing.response_started = 2'000'000'000'000;
  CHECK(refresh_shift_seconds(f, 2'000'000'000'000 + 3'500'000'000) == 3);
  flow::Flow none;
  CHECK(refresh_shift_seconds(none, 5'000'000'000) == 0);
}

TEST_CASE("the IMF-fixdate fast path agrees with the general parser and with gmtime") {
  // A leading space sends the same text down the strptime path: both must agree everywhere,
  // and formatting must agree with gmtime_r.
  uint64_t x = 88172645463325252ull;  // xorshift: a fixed, spread-out sample of instants
  for (int i = 0; i < 20000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int64_t t = static_cast<int64_t>(x % 253402300800ull);  // 1970 .. 9999-12-31T23:59:59
    if (i == 0) t = 0;
    if (i == 1) t = 253402300799;
    if (i == 2) t = 951782400;  // 2000-02-29, a leap day in a century year
    CAPTURE(t);
    auto text = format_http_date(t);
    REQUIRE(text);
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    REQUIRE(gmtime_r(&tt, &tm));
    char want[40];
    REQUIRE(std::strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 29);
    CHECK(*text == want);
    CHECK(parse_http_date(*text) == t);
    CHECK(parse_http_date(" " + *text) == t);
  }
  CHECK_FALSE(format_http_date(-1));
  CHECK_FALSE(format_http_date(253402300800));
  // Near misses of the fixed form go to the general parser, which still rejects nonsense.
  CHECK_FALSE(parse_http_date("Sun, 06 Nov 1994 24:49:37 GMT"));
  CHECK_FALSE(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"));
  CHECK(parse_http_date("sun, 06 nov 1994 08:49:37 GMT") == 784111777);  // strptime: any case
}
