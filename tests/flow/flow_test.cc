#include "flow/flow.h"
#include "flow/http_date.h"
#include "flow/status.h"
#include "flow/thread_name.h"

#include <doctest/doctest.h>

#include <string>
#include <thread>

using namespace retake;
using namespace retake::flow;

TEST_CASE("headers keep order, case and duplicates and look up case-insensitively") {
  Headers h;
  h.add("Set-Cookie", "a=1");
  h.add("content-type", "text/plain");
  h.add("set-cookie", "b=2");
  REQUIRE(h.size() == 3);
  CHECK(h.fields()[0].name == "Set-Cookie");
  CHECK(h.get("SET-COOKIE") == "a=1");
  auto all = h.get_all("set-cookie");
  REQUIRE(all.size() == 2);
  CHECK(all[1] == "b=2");
  CHECK_FALSE(h.get("x-missing").has_value());
}

TEST_CASE("headers set replaces every duplicate in place of the first") {
  Headers h{{"A", "1"}, {"B", "2"}, {"a", "3"}};
  h.set("a", "9");
  REQUIRE(h.size() == 2);
  CHECK(h.fields()[0] == Header{"A", "9"});
  CHECK(h.fields()[1] == Header{"B", "2"});
  CHECK(h.remove("b") == 1);
  CHECK(h.remove("b") == 0);
}

TEST_CASE("request splits authority into host and port with scheme defaults") {
  Request r;
  r.scheme = "https";
  r.authority = "example.test";
  CHECK(r.host() == "example.test");
  CHECK(r.port() == 443);
  r.authority = "example.test:8443";
  CHECK(r.port() == 8443);
  r.authority = "[::1]:9000";
  CHECK(r.host() == "::1");
  CHECK(r.port() == 9000);
  r.scheme = "http";
  r.authority = "[::1]";
  CHECK(r.port() == 80);
  r.path = "/x?y=1";
  CHECK(r.url() == "http://[::1]/x?y=1");
}

TEST_CASE("error kinds round-trip through their names") {
  for (uint16_t k = 0; k <= static_cast<uint16_t>(ErrorKind::internal); ++k) {
    auto kind = static_cast<ErrorKind>(k);
    CHECK(error_kind_from_name(error_kind_name(kind)) == kind);
  }
  CHECK_FALSE(error_kind_from_name("nonsense").has_value());
}

TEST_CASE("result carries a value or a status") {
  Result<int> good = 3;
  CHECK(good.ok());
  CHECK(*good == 3);
  Result<int> bad(Errc::not_found, "no session 'x'");
  CHECK_FALSE(bad.ok());
  CHECK(bad.status().code() == Errc::not_found);
  CHECK(bad.status().to_string() == "not_found: no session 'x'");
}

TEST_CASE("flow duration runs from request start to response end") {
  Flow f;
  CHECK(f.duration() == 0);
  f.timing.request_started = 1000;
  f.timing.response_ended = 4000;
  CHECK(f.duration() == 3000);
}

TEST_CASE("listen addresses accept host:port, [v6]:port, :port and a bare port") {
  auto a = parse_listen_address("0.0.0.0:8080");
  REQUIRE(a);
  CHECK(a->host == "0.0.0.0");
  CHECK(a->port == 8080);
  a = parse_listen_address("[::1]:0");
  REQUIRE(a);
  CHECK(a->host == "::1");
  CHECK(a->port == 0);
  a = parse_listen_address(":9000");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  a = parse_listen_address("9001");
  REQUIRE(a);
  CHECK(a->port == 9001);
  for (const char* bad : {"", "host:", "host:99999", "host:12a", "::1:80", "[]:80", "[::1]80"})
    CHECK_MESSAGE(!parse_listen_address(bad), bad);
}

TEST_CASE("IMF-fixdate reads and writes the whole four-digit year range") {
  CHECK(flow::format_imf_fixdate(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(flow::format_imf_fixdate(-1) == "Wed, 31 Dec 1969 23:59:59 GMT");
  CHECK(flow::format_imf_fixdate(-62167219200) == "Sat, 01 Jan 0000 00:00:00 GMT");
  CHECK(flow::format_imf_fixdate(253402300799) == "Fri, 31 Dec 9999 23:59:59 GMT");
  CHECK_FALSE(flow::format_imf_fixdate(-62167219201));
  CHECK_FALSE(flow::format_imf_fixdate(253402300800));
  for (int64_t t :
       {int64_t{-62167219200}, int64_t{-1}, int64_t{0}, int64_t{951782400}, int64_t{253402300799}})
    CHECK(flow::parse_imf_fixdate(*flow::format_imf_fixdate(t)) == t);
  CHECK(flow::parse_imf_fixdate("Sun, 06 Nov 1994 08:49:60 GMT") == 784111800);
  CHECK_FALSE(flow::parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 UTC"));
  CHECK_FALSE(flow::parse_imf_fixdate("Sun, 30 Feb 1994 08:49:37 GMT"));
  CHECK_FALSE(flow::parse_imf_fixdate("sun, 06 Nov 1994 08:49:37 GMT"));
  CHECK_FALSE(flow::parse_imf_fixdate(" Sun, 06 Nov 1994 08:49:37 GMT"));
}

TEST_CASE("threads are named, and names longer than Linux keeps are cut, not refused") {
  auto name_of = [](const char* name) {
    std::string seen;
    std::thread t([&] {
      retake::name_this_thread(name);
      char buffer[32] = {};
      pthread_getname_np(pthread_self(), buffer, sizeof buffer);
      seen = buffer;
    });
    t.join();
    return seen;
  };
  CHECK(name_of("retake-writer") == "retake-writer");
  CHECK(name_of("retake-a-very-long-name") == "retake-a-very-l");
}
