#include "query/filter.h"

#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace retake;
using namespace retake::query;
using retake::flow::Flow;

namespace {

// 2026-11-01T10:00:00Z
constexpr int64_t kT0 = 1793527200LL * 1000'000'000;
constexpr int64_t kMs = 1000'000;
constexpr int64_t kSec = 1000'000'000;

// window_bits 15: zlib ("deflate" as HTTP means it); 31: gzip.
std::string compress(std::string_view text, int window_bits) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, text.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

void set_body(flow::Body& body, std::string data) {
  body.size = data.size();
  body.data = std::move(data);
}

Flow http_flow(uint64_t id, std::string method, std::string scheme, std::string authority,
               std::string path, int64_t start, int64_t duration) {
  Flow f;
  f.id = id;
  f.session = "shop";
  f.mode = "explicit";
  f.request.method = std::move(method);
  f.request.scheme = std::move(scheme);
  f.request.authority = std::move(authority);
  f.request.path = std::move(path);
  f.request.http_version = "HTTP/1.1";
  f.request.headers.add("Host", f.request.authority);
  f.request.headers.add("User-Agent", "curl/8.0");
  f.client_address = "127.0.0.1:500" + std::string(id < 10 ? "0" : "") + std::to_string(id);
  f.timing.request_started = start;
  if (duration > 0) f.timing.response_ended = start + duration;
  return f;
}

flow::Response response(int status, std::string content_type, std::string body) {
  flow::Response r;
  r.status = status;
  r.http_version = "HTTP/1.1";
  if (!content_type.empty()) r.headers.add("Content-Type", std::move(content_type));
  set_body(r.body, std::move(body));
  return r;
}

// The fixture session: 16 flows that differ in every way a filter can see.
std::vector<Flow> fixture() {
  std::vector<Flow> flows;

  auto f1 = http_flow(1, "GET", "https", "example.com", "/index.html", kT0, 120 * kMs);
  f1.response = response(200, "text/html; charset=utf-8", "<html>Hello World</html>");
  f1.response->headers.add("Server", "nginx");
  f1.upstream_address = "93.184.216.34:443";
  flows.push_back(f1);

  auto f2 =
      http_flow(2, "POST", "https", "api.example.com", "/v1/orders", kT0 + 60 * kSec, 300 * kMs);
  f2.request.headers.add("Content-Type", "application/json");
  set_body(f2.request.body, R"({"item":"a b","qty":2})");
  f2.response = response(201, "application/json", R"({"id":17})");
  f2.tags = {"checkout"};
  flows.push_back(f2);

  auto f3 =
      http_flow(3, "GET", "http", "static.example.org", "/app.js", kT0 + 120 * kSec, 20 * kMs);
  f3.response = response(200, "application/javascript",
                         compress("function hello(){return 'gzipped secret'}", 31));
  f3.response->headers.add("Content-Encoding", "gzip");
  flows.push_back(f3);

  auto f4 =
      http_flow(4, "GET", "http", "static.example.org", "/logo.png", kT0 + 180 * kSec, 15 * kMs);
  f4.response = response(200, "image/png", std::string("\x89PNG\r\n\x1a\n", 8));
  f4.marked = ":default:";
  flows.push_back(f4);

  auto f5 = http_flow(5, "DELETE", "https", "api.example.com", "/v1/orders/17", kT0 + 240 * kSec,
                      2500 * kMs);
  f5.response = response(500, "text/plain", "database exploded");
  f5.comment = "flaky backend\nsee ticket 42";
  flows.push_back(f5);

  auto f6 = http_flow(6, "GET", "https", "api.example.com", "/v1/slow", kT0 + 300 * kSec, 0);
  f6.error = flow::Error{flow::ErrorKind::upstream_timeout, "no answer in 30s"};
  f6.tags = {"slow"};
  flows.push_back(f6);

  auto f7 = http_flow(7, "CONNECT", "", "pinned.example.net:443", "", kT0 + 360 * kSec, 0);
  f7.kind = flow::FlowKind::tunnel;
  f7.upstream_address = "10.0.0.9:443";
  f7.bytes_from_client = 5000;
  f7.bytes_from_upstream = 70000;
  flows.push_back(f7);

  auto f8 =
      http_flow(8, "GET", "https", "chat.example.com", "/socket", kT0 + 420 * kSec, 1000 * kMs);
  f8.session = "chat";
  f8.request.headers.add("Upgrade", "websocket");
  f8.response = response(101, "", "");
  f8.websocket = flow::WebSocket{};
  f8.websocket->messages.push_back({true, 1, "hello server", kT0 + 420 * kSec});
  f8.websocket->messages.push_back({false, 1, "welcome client", kT0 + 420 * kSec});
  flows.push_back(f8);

  auto f9 =
      http_flow(9, "PUT", "http", "EXAMPLE.COM:8080", "/Upload", kT0 + 480 * kSec, 5000 * kMs);
  f9.session = "upload";
  f9.request.headers.add("Content-Type", "application/octet-stream");
  f9.request.body.data = std::string(1000, 'x');
  f9.request.body.size = 3'000'000;
  f9.request.body.truncated = true;
  f9.response = response(200, "", "");
  flows.push_back(f9);

  auto f10 =
      http_flow(10, "GET", "https", "example.com", "/index.html", kT0 + 86400 * kSec, 90 * kMs);
  f10.run = "run-1";
  f10.origin = 1;
  f10.mode = "replay";
  f10.response = response(200, "text/html", "<html>Hello World v2</html>");
  flows.push_back(f10);

  auto f11 = http_flow(11, "DELETE", "https", "api.example.com", "/v1/orders/17",
                       kT0 + 86401 * kSec, 40 * kMs);
  f11.run = "run-1";
  f11.origin = 5;
  f11.mode = "replay";
  f11.response = response(503, "text/plain", "try later");
  flows.push_back(f11);

  auto f12 =
      http_flow(12, "GET", "https", "cdn.example.com", "/styles.css", kT0 + 540 * kSec, 10 * kMs);
  f12.response = response(200, "text/css", compress("body { color: red }", 15));
  f12.response->headers.add("Content-Encoding", "deflate");
  flows.push_back(f12);

  auto f13 = http_flow(13, "HEAD", "http", "example.com", "/health", kT0 + 600 * kSec, 2 * kMs);
  f13.session = "health";
  f13.marked = ":star:";
  f13.response = response(404, "", "");
  flows.push_back(f13);

  auto f14 = http_flow(14, "GET", "http", "example.com", "/search?q=caf%C3%A9&x=1",
                       kT0 - 3600 * kSec, 50 * kMs);
  f14.request.headers.add("X-Trace-Id", "abc123");
  f14.response = response(302, "", "");
  f14.response->headers.add("Location", "/results");
  flows.push_back(f14);

  auto f15 =
      http_flow(15, "POST", "https", "api.example.com", "/v1/login", kT0 + 660 * kSec, 200 * kMs);
  f15.session = "auth";
  f15.request.headers.add("Content-Type", "application/x-www-form-urlencoded");
  set_body(f15.request.body, R"(user=alice&note=it's "quoted")");
  f15.response = response(200, "application/json", R"({"ok":true})");
  f15.response->headers.add("Set-Cookie", "sid=1; HttpOnly");
  flows.push_back(f15);

  Flow f16;  // a client whose TLS handshake failed: no request at all
  f16.id = 16;
  f16.session = "shop";
  f16.kind = flow::FlowKind::tls_failed;
  f16.client_address = "127.0.0.1:50016";
  f16.timing.client_connected = kT0 + 720 * kSec;
  f16.error = flow::Error{flow::ErrorKind::tls_handshake_failed, "unknown ca"};
  flows.push_back(f16);

  return flows;
}

const std::vector<Flow>& flows() {
  static const std::vector<Flow> all = fixture();
  return all;
}

std::vector<uint64_t> matching_ids(const Filter& filter) {
  std::vector<uint64_t> ids;
  for (const auto& f : flows())
    if (filter.matches(f)) ids.push_back(f.id);
  return ids;
}

std::string ids_text(const std::vector<uint64_t>& ids) {
  std::string out = "{";
  for (auto id : ids) out += (out.size() > 1 ? "," : "") + std::to_string(id);
  return out + "}";
}

std::vector<uint64_t> all_but(std::vector<uint64_t> excluded) {
  std::vector<uint64_t> ids;
  for (const auto& f : flows())
    if (std::find(excluded.begin(), excluded.end(), f.id) == excluded.end()) ids.push_back(f.id);
  return ids;
}

// The hint is a necessary condition: a flow that matches must satisfy it.
bool satisfies(const IndexHint& hint, const Flow& f) {
  if (hint.session && f.session != *hint.session) return false;
  if (hint.run && f.run != *hint.run) return false;
  if (hint.origin && f.origin != *hint.origin) return false;
  if (hint.status_min || hint.status_max) {
    if (!f.response) return false;
    if (hint.status_min && f.response->status < *hint.status_min) return false;
    if (hint.status_max && f.response->status > *hint.status_max) return false;
  }
  if (hint.since_ns && flow_start_ns(f) < *hint.since_ns) return false;
  if (hint.until_ns && flow_start_ns(f) >= *hint.until_ns) return false;
  return true;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// host_test()/method_test() are necessary conditions too, over the values a store indexes:
// the authority's host and the Host header's host, ASCII-lowercased, and the method as sent.
bool satisfies_value_tests(const Filter& filter, const Flow& f) {
  if (auto test = filter.method_test(); test && !test(f.request.method)) return false;
  if (auto test = filter.host_test()) {
    bool any = test(ascii_lower(f.request.host()));
    if (auto h = f.request.headers.get("host")) {
      retake::flow::Request r;
      r.authority = std::string(*h);
      any = any || test(ascii_lower(r.host()));
    }
    if (!any) return false;
  }
  return true;
}

struct Row {
  const char* expression;
  std::vector<uint64_t> expected;
};

}  // namespace

TEST_CASE("each expression of the table matches exactly the expected fixture flows") {
  const std::vector<uint64_t> with_response = {1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15};
  const std::vector<uint64_t> gets = {1, 3, 4, 6, 8, 10, 12, 14};
  const std::vector<uint64_t> status_200 = {1, 3, 4, 9, 10, 12, 15};
  const std::vector<Row> rows = {
      // flags
      {"~all", all_but({})},
      {"~q", {6}},
      {"~s", with_response},
      {"~e", {6, 16}},
      {"~a", {3, 4, 12}},
      {"~http", all_but({7, 16})},
      {"~tunnel", {7}},
      {"~tcp", {7}},
      {"~websocket", {8}},
      {"~marked", {4, 13}},
      {"~marker star", {13}},
      {"~replay", {10, 11}},
      {"~origin", {10, 11}},
      {"~origin 5", {11}},
      // regexes, case-insensitive
      {"~m GET", gets},
      {"~m get", gets},
      {"~m ^P", {2, 9, 15}},
      {"~d example.com", {1, 2, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15}},
      {"~d ^example\\.com$", {1, 9, 10, 13, 14}},
      {"~d '(?-i)^example'", {1, 10, 13, 14}},
      {"~d chat|cdn", {8, 12}},
      {"~u /v1/orders", {2, 5, 11}},
      {"~u EXAMPLE.ORG", {3, 4}},
      {"~u caf%C3%A9", {14}},
      {"~u ^https://example\\.com/index", {1, 10}},
      {"/v1/orders", {2, 5, 11}},
      {"\"v1/login\"", {15}},
      {"example.org", {3, 4}},
      {"~h \"content-type: application/json\"", {2, 15}},
      {"~hq x-trace-id", {14}},
      {"~hs '^set-cookie: sid=1'", {15}},
      // Unquoted, the space ends the regex: this is `~hs ^set-cookie: & ~u sid=1`.
      {"~hs ^set-cookie: sid=1", {}},
      {"~hs nginx$", {1}},
      {"~hq '^upgrade: websocket$'", {8}},
      {"~b 'a b'", {2}},
      {"~b \"gzipped secret\"", {3}},
      {"~b 'color: red'", {12}},
      {"~b hello", {1, 3, 8, 10}},
      {"~bq alice", {15}},
      {"~bs alice", {}},
      {"~bq welcome", {}},
      {"~bs welcome", {8}},
      {"~bq 'hello server'", {8}},
      {"~b \"it's \\\"quoted\\\"\"", {15}},
      {"~b 'it\\'s'", {15}},
      {"~b '^user=.*quoted\"$'", {15}},
      {"~t json", {2, 15}},
      {"~tq json", {2}},
      {"~ts json", {2, 15}},
      {"~t text/", {1, 5, 10, 11, 12}},
      {"~comment ticket", {5}},
      {"~comment ^see", {5}},
      {"~src 50016$", {16}},
      {"~dst '^10\\.'", {7}},
      // status
      {"~c 200", status_200},
      {"~c 5xx", {5, 11}},
      {"~c 2xx", {1, 2, 3, 4, 9, 10, 12, 15}},
      {"~c 404", {13}},
      // store fields
      {"~session shop", {1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 14, 16}},
      {"~session chat", {8}},
      {"~session SHOP", {}},
      {"~run run-1", {10, 11}},
      {"~tag checkout", {2}},
      {"~tag slow", {6}},
      // time: UTC without a zone; since inclusive, until exclusive
      {"~since 2026-11-01T10:00", all_but({14})},
      {"~until 2026-11-01T10:00", {14}},
      {"~since 2026-11-01T11:00+01:00", all_but({14})},
      {"~since 2026-11-02", {10, 11}},
      {"~since 2026-11-01T10:05 ~until 2026-11-01T10:10", {6, 7, 8, 9, 12}},
      {"~since 2026-11-01T05:05:00-05:00", {6, 7, 8, 9, 10, 11, 12, 13, 15, 16}},
      {"~since 2026-11-01T10:00:00.000000001Z", all_but({1, 14})},
      // durations and sizes
      {"~dur >250ms", {2, 5, 8, 9}},
      {"~dur <=20ms", {3, 4, 12, 13}},
      {"~dur > 1s", {5, 9}},
      {"~dur 2.5s", {5}},
      {"~dur <1000000us", {1, 2, 3, 4, 10, 11, 12, 13, 14, 15}},
      {"~size >1MB", {9}},
      {"~size >1kb", {9}},
      {"~sizeq >=2.5MiB", {9}},
      {"~sizeq >2.9MiB", {}},
      {"~sizes 9", {2, 11}},
      {"~sizes 0", {8, 9, 13, 14}},
      {"~sizeq 0", all_but({2, 9, 15})},
      // precedence: ! then & then |; juxtaposition is AND, looser than |
      {"~m GET | ~m POST & ~c 201", {1, 2, 3, 4, 6, 8, 10, 12, 14}},
      {"(~m GET | ~m POST) & ~c 201", {2}},
      {"!~c 200 & ~d example", {2, 5, 6, 7, 8, 11, 13, 14}},
      {"!(~c 200 & ~d example)", all_but({1, 3, 4, 9, 10, 12, 15})},
      {"~m GET ~c 200", {1, 3, 4, 10, 12}},
      {"~c 200 ~m GET | ~m POST", {1, 3, 4, 10, 12, 15}},
      {"~c 200 & ~m GET | ~m POST", {1, 2, 3, 4, 10, 12, 15}},
      {"(~c 200 ~m POST) | ~e", {6, 15, 16}},
      {"!!~e", {6, 16}},
      {"!(~s | ~e)", {7}},
      {"~e&~s", {}},
      {"~c 200&~m GET", {1, 3, 4, 10, 12}},
      {"~c 200&!~m GET", {9, 15}},
      {"  ( ( ~marked ) )  ", {4, 13}},
  };
  for (const auto& row : rows) {
    const std::string expression = row.expression;
    CAPTURE(expression);
    auto filter = Filter::parse(row.expression);
    REQUIRE_MESSAGE(filter.ok(), filter.status().to_string());
    CHECK(ids_text(matching_ids(*filter)) == ids_text(row.expected));
    for (const auto& f : flows())
      if (filter->matches(f)) {
        CHECK_MESSAGE(satisfies(filter->hint(), f), f.id);
        CHECK_MESSAGE(satisfies_value_tests(*filter, f), f.id);
      }
    // The canonical form means the same thing.
    auto again = Filter::parse(filter->to_string());
    REQUIRE_MESSAGE(again.ok(), filter->to_string());
    CHECK(ids_text(matching_ids(*again)) == ids_text(row.expected));
    CHECK(again->to_string() == filter->to_string());
    CHECK(again->hint() == filter->hint());
  }
}

TEST_CASE("the canonical form shows precedence, quoting and normalized arguments") {
  const std::vector<std::pair<const char*, const char*>> rows = {
      {"~m GET | ~m POST & ~c 201", "(~m GET | (~m POST & ~c 201))"},
      {"!~c 200 & ~d example", "(!~c 200 & ~d example)"},
      {"~c 200 ~m GET | ~m POST", "(~c 200 & (~m GET | ~m POST))"},
      {"a & (b & c) d", "(~u a & ~u b & ~u c & ~u d)"},
      {"a | (b | c)", "(~u a | ~u b | ~u c)"},
      {"foo", "~u foo"},
      {"~b 'a b'", "~b \"a b\""},
      {"~b \"it's \\\"q\\\"\"", "~b \"it's \\\"q\\\"\""},
      {"~u \"a\\d\"", "~u a\\d"},
      {"~u \"a\\\\\\\\\"", "~u a\\\\"},
      {"~u ''", "~u \"\""},
      {"~u '!x'", "~u \"!x\""},
      {"~tcp", "~tunnel"},
      {"~c 5XX", "~c 5xx"},
      {"~since 2026-11-01T11:00+01:00", "~since 2026-11-01T10:00:00Z"},
      {"~until 2026-11-01t10:00:00.25", "~until 2026-11-01T10:00:00.25Z"},
      {"~dur > 250ms", "~dur >250ms"},
      {"~size 1KiB", "~size =1KiB"},
      {"~origin 42", "~origin 42"},
      {"~origin ~e", "(~origin & ~e)"},
      {"~session 'my shop'", "~session \"my shop\""},
      {"!!~e", "!!~e"},
  };
  for (const auto& [input_text, canonical] : rows) {
    const std::string input = input_text;
    CAPTURE(input);
    auto filter = Filter::parse(input);
    REQUIRE_MESSAGE(filter.ok(), filter.status().to_string());
    CHECK(filter->to_string() == canonical);
  }
  CHECK(Filter().to_string() == "~all");
  CHECK(Filter().matches(flows().front()));
}

TEST_CASE("operators group exactly as mitmproxy's own parser groups them") {
  // fixtures/query/mitmproxy_canonical.tsv: expression, then the tree mitmproxy 8's
  // flowfilter.parse built for it, printed in our canonical form (see the .py beside it).
  std::ifstream in(std::string(RETAKE_FIXTURES_DIR) + "/query/mitmproxy_canonical.tsv");
  REQUIRE(in.good());
  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto tab = line.find('\t');
    REQUIRE(tab != std::string::npos);
    const std::string expression = line.substr(0, tab);
    const std::string mitmproxy_tree = line.substr(tab + 1);
    CAPTURE(expression);
    auto filter = Filter::parse(expression);
    REQUIRE_MESSAGE(filter.ok(), filter.status().to_string());
    CHECK(filter->to_string() == mitmproxy_tree);
    ++rows;
  }
  CHECK(rows >= 25);
}

TEST_CASE("a syntax error names the column and what was expected") {
  struct Bad {
    const char* expression;
    size_t column;
    const char* expected;  // a part of ParseError::expected
    const char* message;   // a part of the Status message
  };
  const std::vector<Bad> rows = {
      {"~c abc", 4, "a status code (integer)", "~c abc: column 4: expected a status code"},
      {"(~m GET", 8, "')'", "column 8: expected ')', got end of input"},
      {"~zz", 1, "a known filter name", "unknown filter '~zz'"},
      {"~sesion shop", 1, "a known filter name", "did you mean ~session?"},
      {"~M GET", 1, "a known filter name", "did you mean ~m?"},
      {"~c200", 1, "a known filter name", "did you mean ~c 200?"},
      {"~e7", 1, "a known filter name", "unknown filter '~e7'"},
      {"", 1, "a filter expression", "got end of input"},
      {"   ", 4, "a filter expression", "column 4"},
      {"~m", 3, "a method regex after ~m", "column 3"},
      {"~m GET &", 9, "a filter expression", "column 9"},
      {"~m GET & | ~e", 10, "a filter expression", "got '|'"},
      {"| ~m GET", 1, "a filter expression", "got '|'"},
      {"()", 2, "a filter expression inside '()'", "column 2"},
      {"~e )", 4, "end of input", "unmatched ')'"},
      {"~u \"abc", 4, "a closing \"", "not closed"},
      {"~u 'abc\\'", 4, "a closing '", "not closed"},
      {"~u (", 4, "a URL regex after ~u", "column 4"},
      {"~m '('", 4, "a valid regex", "missing )"},
      {"~h x[", 4, "a valid regex", "column 4"},
      {"~dur fast", 6, "a duration", "got 'fast'"},
      {"~dur >250", 6, "a duration", "column 6"},
      {"~dur >", 7, "a duration", "end of input"},
      {"~size >1XB", 7, "a size", "column 7"},
      {"~since 2026-13-01", 8, "a time like", "column 8"},
      {"~since 2026-02-30", 8, "a time like", "column 8"},
      {"~until 2026-11-01T25:00", 8, "a time like", "column 8"},
      {"~until 2026-11-01 10:00", 19, "'T' between the date and the time", "column 19"},
      {"~c 1000", 4, "a status code", "column 4"},
      {"~c", 3, "a status code", "end of input"},
      {"~session", 9, "a session name after ~session", "end of input"},
      {"~", 1, "a filter name after '~'", "column 1"},
      {"~origin 0", 9, "a flow id", "column 9"},
      {"!", 2, "a filter expression", "end of input"},
      {"\xc3\xa9 ~c x", 6, "a status code", "column 6"},
      {"~u \xff(", 4, "a valid regex", "invalid UTF-8"},
  };
  for (const auto& row : rows) {
    const std::string expression = row.expression;
    CAPTURE(expression);
    ParseError error;
    auto filter = Filter::parse(row.expression, &error);
    REQUIRE_FALSE(filter.ok());
    CHECK(filter.status().code() == Errc::parse_error);
    CHECK(error.column == row.column);
    CHECK_MESSAGE(error.expected.find(row.expected) != std::string::npos, error.expected);
    CHECK_MESSAGE(filter.status().message().find(row.message) != std::string::npos,
                  filter.status().message());
    CHECK(error.message.rfind("column " + std::to_string(row.column) + ": expected ", 0) == 0);
  }
}

TEST_CASE("an unknown filter is named without a far-fetched suggestion") {
  auto filter = Filter::parse("~zzzzzz");
  REQUIRE_FALSE(filter.ok());
  CHECK(filter.status().message().find("unknown filter '~zzzzzz'") != std::string::npos);
  CHECK(filter.status().message().find("did you mean") == std::string::npos);
}

TEST_CASE("nesting is bounded at 256 levels with a clear error") {
  std::string ok = std::string(256, '(') + "~e" + std::string(256, ')');
  auto deep = Filter::parse(ok);
  REQUIRE(deep.ok());
  CHECK(matching_ids(*deep) == std::vector<uint64_t>{6, 16});

  ParseError error;
  std::string too_deep = std::string(257, '(') + "~e" + std::string(257, ')');
  auto filter = Filter::parse(too_deep, &error);
  REQUIRE_FALSE(filter.ok());
  CHECK(error.column == 257);
  CHECK(error.expected.find("256") != std::string::npos);

  auto nots = Filter::parse(std::string(100000, '!') + "~e");
  REQUIRE_FALSE(nots.ok());  // too long, and too deep
  auto many_nots = Filter::parse(std::string(300, '!') + "~e", &error);
  REQUIRE_FALSE(many_nots.ok());
  CHECK(error.column == 257);
  auto even_nots = Filter::parse(std::string(256, '!') + "~e");
  REQUIRE(even_nots.ok());
  CHECK(matching_ids(*even_nots) == std::vector<uint64_t>{6, 16});
}

TEST_CASE("expressions beyond the length and regex-count bounds are refused") {
  ParseError error;
  auto long_one = Filter::parse(std::string(kMaxExpressionBytes + 1, 'a'), &error);
  REQUIRE_FALSE(long_one.ok());
  CHECK(error.expected.find("16384") != std::string::npos);

  std::string many;
  for (int i = 0; i < kMaxRegexes; ++i) many += "~u a" + std::to_string(i) + " | ";
  auto at_limit = Filter::parse(many + "~e");
  CHECK(at_limit.ok());
  auto over = Filter::parse(many + "~u one_more", &error);
  REQUIRE_FALSE(over.ok());
  CHECK(error.expected.find("64 regexes") != std::string::npos);

  // RE2 refuses a regex whose program would outgrow max_mem instead of using the memory.
  auto huge = Filter::parse("~u '\\pL{1000}'", &error);
  REQUIRE_FALSE(huge.ok());
  CHECK(error.expected == "a valid regex");
  CHECK(huge.status().message().find("pattern too large") != std::string::npos);
  auto nested = Filter::parse("~u '((((a{100}){100}){100}){100})'", &error);
  REQUIRE_FALSE(nested.ok());
  CHECK(error.expected == "a valid regex");
}

TEST_CASE("a plain-text argument matches exactly where the same text as a regex does") {
  // Plain ASCII text without regex metacharacters takes a substring fast path; wrapping it in
  // (?:...) forces RE2. Both must agree on every fixture flow.
  const std::vector<std::string> filters = {"~m", "~d",  "~u",       "~h",      "~hq",  "~hs",
                                            "~t", "~ts", "~comment", "~marker", "~src", "~dst"};
  const std::vector<std::string> texts = {"get",
                                          "GET",
                                          "Example",
                                          "v1/ORD",
                                          "content-type: application/json",
                                          "X-TRACE",
                                          "json",
                                          "ticket",
                                          "500",
                                          "nginx",
                                          ": ",
                                          "e",
                                          " ",
                                          "/",
                                          "=",
                                          "%C3",
                                          "CAF",
                                          "star:",
                                          "zzz",
                                          "https://example.com/index.html",
                                          "127.0.0.1:50016",
                                          "sid=1; httponly"};
  int matched = 0;
  for (const auto& name : filters) {
    for (const auto& text : texts) {
      auto fast = Filter::parse(name + " '" + text + "'");
      auto slow = Filter::parse(name + " '(?:" + text + ")'");
      REQUIRE(fast.ok());
      REQUIRE(slow.ok());
      const std::string expression = name + " " + text;
      CAPTURE(expression);
      CHECK(ids_text(matching_ids(*fast)) == ids_text(matching_ids(*slow)));
      matched += static_cast<int>(matching_ids(*fast).size());
    }
  }
  CHECK(matched > 100);
}

TEST_CASE("hints come from the top-level AND chain only") {
  auto hint_of = [](const char* expression) {
    auto filter = Filter::parse(expression);
    REQUIRE_MESSAGE(filter.ok(), filter.status().to_string());
    return filter->hint();
  };

  auto h = hint_of("~session shop & ~c 200 & ~since 2026-11-01T10:00");
  CHECK(h.session == "shop");
  CHECK(h.exact_status() == 200);
  CHECK(h.since_ns == kT0);
  CHECK_FALSE(h.run.has_value());
  CHECK_FALSE(h.until_ns.has_value());

  h = hint_of("~session shop ~run run-1 ~origin 5");  // juxtaposition is AND too
  CHECK(h.session == "shop");
  CHECK(h.run == "run-1");
  CHECK(h.origin == 5u);

  h = hint_of("~run run-1");
  CHECK(h.run == "run-1");
  CHECK_FALSE(h.session.has_value());

  CHECK(hint_of("~session shop | ~session chat").empty());
  CHECK(hint_of("!~session shop").empty());
  CHECK(hint_of("!(~session shop & ~c 200)").empty());
  CHECK(hint_of("~d example.com & ~m GET & ~u /x").empty());  // regexes are never exact
  CHECK(hint_of("~origin").empty());

  h = hint_of("~session shop & (~run a | ~c 200)");
  CHECK(h.session == "shop");
  CHECK_FALSE(h.run.has_value());
  CHECK_FALSE(h.status_min.has_value());

  h = hint_of("~c 5xx & ~c 503");
  CHECK(h.status_min == 503);
  CHECK(h.status_max == 503);
  h = hint_of("~c 5xx ~m GET");
  CHECK(h.status_min == 500);
  CHECK(h.status_max == 599);
  CHECK_FALSE(h.exact_status().has_value());

  h = hint_of("~since 2026-11-01 ~until 2026-11-03 ~since 2026-11-02 ~until 2026-11-04");
  CHECK(h.since_ns == kT0 - 10 * 3600 * kSec + 86400 * kSec);
  CHECK(h.until_ns == kT0 - 10 * 3600 * kSec + 2 * 86400 * kSec);
}

TEST_CASE("host and method tests come from the first ~d and ~m of the top-level AND chain") {
  auto parse = [](const char* expression) {
    auto filter = Filter::parse(expression);
    REQUIRE_MESSAGE(filter.ok(), filter.status().to_string());
    return *filter;
  };
  auto f = parse("~d api\\.example & ~m ^P & ~u /x");
  auto host = f.host_test();
  auto method = f.method_test();
  REQUIRE(host);
  REQUIRE(method);
  CHECK(host("api.example.test"));
  CHECK_FALSE(host("apixexample.test"));
  CHECK(method("POST"));
  CHECK(method("patch"));  // regexes ignore case
  CHECK_FALSE(method("GET"));

  f = parse("~d example.org");  // the literal fast path
  REQUIRE(f.host_test());
  CHECK(f.host_test()("www.example.org"));
  CHECK_FALSE(f.host_test()("example.com"));
  CHECK_FALSE(f.method_test());

  // Nothing forced at the top: no tests.
  CHECK_FALSE(parse("~d a | ~m GET").host_test());
  CHECK_FALSE(parse("~d a | ~m GET").method_test());
  CHECK_FALSE(parse("!~d a").host_test());
  CHECK_FALSE(parse("~m GET | ~c 200").method_test());
  // A regex that may turn case sensitivity back on cannot run on lowercased hosts.
  CHECK_FALSE(parse("~d '(?-i)Example'").host_test());
  CHECK(parse("~m '(?-i)GET'").method_test());

  // The tests outlive the filter they came from.
  std::function<bool(std::string_view)> kept;
  {
    auto gone = parse("~m DELETE");
    kept = gone.method_test();
  }
  CHECK(kept("DELETE"));
}

TEST_CASE("only body filters need body bytes") {
  auto needs = [](const char* expression) {
    auto filter = Filter::parse(expression);
    REQUIRE(filter.ok());
    return filter->needs_bodies();
  };
  CHECK(needs("~b x"));
  CHECK(needs("~e | !~bs x"));
  CHECK(needs("~bq x"));
  CHECK_FALSE(needs("~size >1MB & ~sizes 0 & ~sizeq 1"));
  CHECK_FALSE(needs("~h x ~t json ~a ~u y"));
  CHECK_FALSE(Filter().needs_bodies());

  // Without bodies a size filter matches exactly as with them.
  auto filter = Filter::parse("~size >1MB");
  REQUIRE(filter.ok());
  Flow without = flows()[8];
  without.request.body.data.clear();
  CHECK(filter->matches(without));
}

TEST_CASE("body search decodes content encodings and falls back to the raw bytes") {
  const std::string text = "first half of the story; second half with the needle";
  auto with_body = [](std::string encoding, std::string data) {
    Flow f;
    f.response = flow::Response{};
    f.response->status = 200;
    if (!encoding.empty()) f.response->headers.add("Content-Encoding", encoding);
    set_body(f.response->body, std::move(data));
    return f;
  };
  auto needle = Filter::parse("~bs needle");
  auto first = Filter::parse("~bs 'first half'");
  REQUIRE(needle.ok());
  REQUIRE(first.ok());

  CHECK(needle->matches(with_body("gzip", compress(text, 31))));
  CHECK(needle->matches(with_body("x-gzip", compress(text, 31))));
  CHECK(needle->matches(with_body("deflate", compress(text, 15))));
  CHECK(needle->matches(with_body("deflate", compress(text, -15))));  // raw deflate, as sent
  // Layers listed in the order applied: deflate first, then gzip.
  CHECK(needle->matches(with_body("deflate, gzip", compress(compress(text, 15), 31))));
  // Labelled br but zlib inside: brotli fails, the compressed bytes are searched in vain.
  CHECK_FALSE(needle->matches(with_body("br", compress(text, 15))));
  // Not compressed at all although the header says so: the raw bytes are searched.
  CHECK(needle->matches(with_body("gzip", text)));
  CHECK(needle->matches(with_body("snappy", text)));
  // A truncated body yields what decoded before the cut.
  std::string tail;
  for (int i = 0; i < 4000; ++i) tail += std::to_string(i * 7919 % 10007);
  std::string gz = compress(text + tail, 31);
  std::string cut = gz.substr(0, gz.size() / 2);
  CHECK(first->matches(with_body("gzip", cut)));
  CHECK_FALSE(needle->matches(with_body("gzip", compress(text, 31).substr(0, 12))));

  // Several body filters in one expression, and a body changed in place between calls (same
  // address): each call sees the body as it is now.
  auto both = Filter::parse("~bs alpha & ~bs 'alpha b' | ~bs beta ~bs 'beta$'");
  REQUIRE(both.ok());
  Flow changing = with_body("gzip", compress("alpha beta", 31));
  CHECK(both->matches(changing));
  set_body(changing.response->body, compress("gamma", 31));
  CHECK_FALSE(both->matches(changing));
  set_body(changing.response->body, compress("the beta", 31));
  CHECK(both->matches(changing));

  // A decompression bomb costs at most kMaxBodyScanBytes: the needle after 16 MiB is not seen.
  std::string bomb = compress(std::string(16 << 20, '0') + "needle", 31);
  CHECK(bomb.size() < 100 * 1024);
  CHECK_FALSE(needle->matches(with_body("gzip", bomb)));
  auto zeros = Filter::parse("~bs 0000");
  REQUIRE(zeros.ok());
  CHECK(zeros->matches(with_body("gzip", bomb)));
}

TEST_CASE("matching from several threads at once gives the single-threaded answers") {
  auto filter = Filter::parse("~b 'secret|red|hello' | ~h json & ~u example | ~c 5xx");
  REQUIRE(filter.ok());
  const auto expected = matching_ids(*filter);
  CHECK(expected.size() > 3);
  std::vector<int> agree(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i)
        if (matching_ids(*filter) == expected) ++agree[t];
    });
  }
  for (auto& t : threads) t.join();
  for (int n : agree) CHECK(n == 200);
}

TEST_CASE("the help lists every filter and the operators") {
  auto rows = Filter::help();
  CHECK(rows.size() > 30);
  auto has = [&](std::string_view syntax) {
    return std::any_of(rows.begin(), rows.end(),
                       [&](const FilterHelp& r) { return std::string_view(r.syntax) == syntax; });
  };
  CHECK(has("~c CODE"));
  CHECK(has("~session NAME"));
  CHECK(has("X | Y"));
  // Every filter name in the help parses.
  for (const auto& row : rows) {
    std::string_view syntax = row.syntax;
    if (syntax.front() != '~') continue;
    std::string name(syntax.substr(0, syntax.find(' ')));
    std::string arg;
    if (syntax.find("REGEX") != std::string_view::npos || syntax.find("NAME") != syntax.npos ||
        syntax.find(" ID") != syntax.npos)
      arg = " x";
    else if (syntax.find("CODE") != syntax.npos)
      arg = " 200";
    else if (syntax.find("TIME") != syntax.npos)
      arg = " 2026-11-01";
    else if (syntax.find("UNIT") != syntax.npos)
      arg = name == "~dur" ? " >1s" : " >1KB";
    CHECK_MESSAGE(Filter::parse(name + arg).ok(), (name + arg));
  }
}

TEST_CASE("random bytes and mutated expressions never crash and round-trip when they parse") {
  std::mt19937_64 rng(20261128);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::string grammar = "~!&|()'\" \\\t\nabcmuhqsedtzx0123456789<>=.:-+TZ*[]{}?^$";
  const std::vector<std::string> seeds = {
      "~m GET | ~m POST & ~c 201",
      "!~c 200 & ~d example",
      "~h \"content-type: application/json\" ~b 'a b'",
      "~since 2026-11-01T10:00 ~until 2026-11-02T00:00:00+02:00 ~dur >250ms",
      "(~session shop | ~run run-1) & !~origin 5 & ~size >1MB",
      "~b 'it\\'s' | ~comment ^see | ~tag slow ~c 5xx",
      "~websocket ~marked ~a ~q ~s ~e ~all ~tunnel ~replay",
      "~bq x ~bs y ~hq z ~hs w ~t a ~tq b ~ts c ~src d ~dst e ~marker f",
  };

  int parsed = 0, refused = 0;
  auto exercise = [&](const std::string& text) {
    ParseError error;
    auto filter = Filter::parse(text, &error);
    if (!filter.ok()) {
      ++refused;
      CHECK(filter.status().code() == Errc::parse_error);
      CHECK(error.column >= 1);
      CHECK(error.column <= text.size() + 1);
      CHECK_FALSE(error.expected.empty());
      return;
    }
    ++parsed;
    for (const auto& f : flows()) (void)filter->matches(f);
    for (const auto& f : flows())
      if (filter->matches(f)) CHECK(satisfies(filter->hint(), f));
    auto canonical = filter->to_string();
    auto again = Filter::parse(canonical);
    REQUIRE_MESSAGE(again.ok(), (canonical + " <- " + text));
    CHECK(again->to_string() == canonical);
    CHECK(matching_ids(*again) == matching_ids(*filter));
    CHECK(again->hint() == filter->hint());
    CHECK(again->needs_bodies() == filter->needs_bodies());
  };

  for (int i = 0; i < 1500; ++i) {
    std::string text(pick(48), '\0');
    for (auto& c : text)
      c = pick(3) == 0 ? static_cast<char>(rng()) : grammar[pick(grammar.size())];
    exercise(text);
  }
  for (int i = 0; i < 2500; ++i) {
    std::string text = seeds[pick(seeds.size())];
    int edits = 1 + static_cast<int>(pick(4));
    for (int e = 0; e < edits; ++e) {
      size_t at = text.empty() ? 0 : pick(text.size() + 1);
      char c = pick(4) == 0 ? static_cast<char>(rng()) : grammar[pick(grammar.size())];
      switch (pick(3)) {
        case 0:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        case 1:
          if (at < text.size()) text.erase(at, 1 + pick(3));
          break;
        default:
          if (at < text.size()) text[at] = c;
          break;
      }
    }
    exercise(text);
  }
  // Both outcomes must have been exercised, or the fuzz proves little.
  CHECK(parsed > 500);
  CHECK(refused > 500);
}
