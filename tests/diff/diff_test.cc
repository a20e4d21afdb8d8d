#include "diff/diff.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "codec/content_coding.h"

using namespace retake;
using namespace retake::diff;
using retake::codec::encode_content;
using flow::Headers;
using flow::Response;

namespace {

Response json_resp(std::string body, int status = 200) {
  Response r;
  r.status = status;
  r.headers.add("Content-Type", "application/json; charset=utf-8");
  r.body.data = std::move(body);
  r.body.size = r.body.data.size();
  return r;
}

Response resp(std::string content_type, std::string body, int status = 200) {
  Response r;
  r.status = status;
  if (!content_type.empty()) r.headers.add("Content-Type", content_type);
  r.body.data = std::move(body);
  r.body.size = r.body.data.size();
  return r;
}

Comparator make(CompareOptions o = {}) {
  auto c = Comparator::create(std::move(o));
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  return std::move(c.value());
}

const Difference* find(const Comparison& c, std::string_view path) {
  for (const auto& d : c.differences)
    if (d.path == path) return &d;
  return nullptr;
}

std::string dump(const Comparison& c) {
  std::string s;
  for (const auto& d : c.differences)
    s += std::string(diff_kind_name(d.kind)) + " " + d.path + " [" + d.value_a + "] [" + d.value_b +
         "]\n";
  return s;
}

}  // namespace

TEST_CASE("identical responses have no differences") {
  auto c = make();
  auto a = json_resp(R"({"a":1,"b":[1,2,{"c":null}]})");
  auto cmp = c.compare(a, a);
  CHECK(cmp.identical());
  CHECK(cmp.body_kind == BodyKind::json);
  CHECK(c.comparisons() == 1);
}

TEST_CASE("a status change is a status_changed difference") {
  auto c = make();
  auto cmp = c.compare(json_resp("{}", 200), json_resp("{}", 500));
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].kind == DiffKind::status_changed);
  CHECK(cmp.differences[0].path == "status");
  CHECK(cmp.differences[0].value_a == "200");
  CHECK(cmp.differences[0].value_b == "500");
}

TEST_CASE("headers compare case-insensitively, as lists, minus the default ignore set") {
  auto c = make();
  Response a = json_resp("{}"), b = json_resp("{}");
  a.headers.add("Date", "Mon, 01 Jan 2024 00:00:00 GMT");
  b.headers.add("date", "Tue, 02 Jan 2024 00:00:00 GMT");
  a.headers.add("X-Request-Id", "abc");
  b.headers.add("X-Request-Id", "def");
  a.headers.add("Cache-Control", "no-store");
  b.headers.add("cache-control", "no-store");
  a.headers.add("Vary", "Accept");
  a.headers.add("Vary", "Origin");
  b.headers.add("Vary", "Origin");
  b.headers.add("Vary", "Accept");
  a.headers.add("X-Only-A", "1");
  b.headers.add("X-Only-B", "2");
  auto cmp = c.compare(a, b);
  INFO(dump(cmp));
  REQUIRE(cmp.differences.size() == 3);
  auto* vary = find(cmp, "header:vary");
  REQUIRE(vary);
  CHECK(vary->kind == DiffKind::header_changed);
  CHECK(vary->value_a == "Accept, Origin");
  CHECK(vary->value_b == "Origin, Accept");
  REQUIRE(find(cmp, "header:x-only-a"));
  CHECK(find(cmp, "header:x-only-a")->kind == DiffKind::header_missing);
  REQUIRE(find(cmp, "header:x-only-b"));
  CHECK(find(cmp, "header:x-only-b")->kind == DiffKind::header_added);
}

TEST_CASE("the ignored header list can be changed by the caller") {
  CompareOptions o;
  std::erase(o.ignored_headers, "date");
  o.ignored_headers.push_back("X-Only-A");
  auto c = make(o);
  Response a = json_resp("{}"), b = json_resp("{}");
  a.headers.add("Date", "1");
  b.headers.add("Date", "2");
  a.headers.add("X-Only-A", "1");
  auto cmp = c.compare(a, b);
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].path == "header:date");
}

TEST_CASE("set-cookie compares cookie names, not values") {
  auto c = make();
  Response a = json_resp("{}"), b = json_resp("{}");
  a.headers.add("Set-Cookie", "session=abc; Path=/");
  a.headers.add("Set-Cookie", "theme=dark");
  b.headers.add("Set-Cookie", "theme=light");
  b.headers.add("set-cookie", "session=xyz; Path=/; HttpOnly");
  CHECK(c.compare(a, b).identical());
  b.headers.add("Set-Cookie", "tracking=1");
  auto cmp = c.compare(a, b);
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].kind == DiffKind::header_changed);
  CHECK(cmp.differences[0].value_b == "session, theme, tracking");
}

TEST_CASE("JSON bodies produce typed differences at canonical paths") {
  auto c = make();
  auto a = json_resp(R"({"name":"ann","age":30,"tags":["x","y","z"],"gone":1,
                         "obj":{"k":1},"n":1,"weird key":true})");
  auto b = json_resp(R"({"name":"bob","age":"30","tags":["x","q"],"new":{"a":[1]},
                         "obj":{"k":1},"n":1.0,"weird key":false})");
  auto cmp = c.compare(a, b);
  INFO(dump(cmp));
  REQUIRE(find(cmp, "$.name"));
  CHECK(find(cmp, "$.name")->kind == DiffKind::value_changed);
  CHECK(find(cmp, "$.name")->value_a == "\"ann\"");
  CHECK(find(cmp, "$.name")->value_b == "\"bob\"");
  REQUIRE(find(cmp, "$.age"));
  CHECK(find(cmp, "$.age")->kind == DiffKind::type_changed);
  REQUIRE(find(cmp, "$.tags"));
  CHECK(find(cmp, "$.tags")->kind == DiffKind::array_length_changed);
  CHECK(find(cmp, "$.tags")->value_a == "length 3");
  CHECK(find(cmp, "$.tags")->value_b == "length 2");
  REQUIRE(find(cmp, "$.tags[1]"));  // element-wise up to the shorter length
  CHECK(find(cmp, "$.tags[1]")->pattern == "$.tags[*]");
  CHECK_FALSE(find(cmp, "$.tags[0]"));
  CHECK_FALSE(find(cmp, "$.tags[2]"));
  REQUIRE(find(cmp, "$.gone"));
  CHECK(find(cmp, "$.gone")->kind == DiffKind::field_missing);
  CHECK(find(cmp, "$.gone")->value_b.empty());
  REQUIRE(find(cmp, "$.new"));
  CHECK(find(cmp, "$.new")->kind == DiffKind::field_added);
  CHECK(find(cmp, "$.new")->value_b == R"({"a":[1]})");
  CHECK(find(cmp, "$['weird key']"));
  CHECK_FALSE(find(cmp, "$.n"));    // 1 and 1.0 are the same number
  CHECK_FALSE(find(cmp, "$.obj"));  // equal subtree
  CHECK(cmp.differences.size() == 7);
}

TEST_CASE("member order does not matter in JSON objects") {
  auto c = make();
  CHECK(c.compare(json_resp(R"({"a":1,"b":2,"c":3})"), json_resp(R"({"c":3,"a":1,"b":2})"))
            .identical());
}

TEST_CASE("arrays can be compared as sets or multisets per path") {
  auto a = json_resp(R"({"tags":["a","b","b"],"roles":[{"r":1},{"r":2}],"list":[1,2]})");
  auto b = json_resp(R"({"tags":["b","a"],"roles":[{"r":2},{"r":1}],"list":[2,1]})");
  {
    CompareOptions o;
    o.arrays = {{"$.tags", ArrayOrder::set}, {"$.roles", ArrayOrder::multiset}};
    auto c = make(o);
    auto cmp = c.compare(a, b);
    INFO(dump(cmp));
    REQUIRE(cmp.differences.size() == 2);  // only $.list, which stays ordered
    CHECK(cmp.differences[0].path == "$.list[0]");
  }
  {
    CompareOptions o;
    o.arrays = {{"$.tags", ArrayOrder::multiset}};
    auto c = make(o);
    auto cmp = c.compare(a, b);
    auto* d = find(cmp, "$.tags[2]");  // the second "b" has no partner in B
    REQUIRE(d);
    CHECK(d->kind == DiffKind::field_missing);
  }
  {
    CompareOptions o;
    o.arrays = {{"$.tags", ArrayOrder::set}};
    auto c = make(o);
    auto cmp = c.compare(json_resp(R"({"tags":["a"]})"), json_resp(R"({"tags":["a","c"]})"));
    REQUIRE(cmp.differences.size() == 1);
    CHECK(cmp.differences[0].kind == DiffKind::field_added);
    CHECK(cmp.differences[0].path == "$.tags[1]");
  }
}

TEST_CASE("text bodies are diffed by lines") {
  auto c = make();
  auto a = resp("text/plain", "one\ntwo\nthree\nfour\nfive\n");
  auto b = resp("text/plain", "one\nTWO\nthree\nfive\nsix\n");
  auto cmp = c.compare(a, b);
  INFO(dump(cmp));
  CHECK(cmp.body_kind == BodyKind::text);
  REQUIRE(cmp.differences.size() == 3);
  CHECK(cmp.differences[0].kind == DiffKind::line_changed);
  CHECK(cmp.differences[0].path == "body:line 2");
  CHECK(cmp.differences[0].value_a == "two");
  CHECK(cmp.differences[0].value_b == "TWO");
  CHECK(cmp.differences[0].line_b == 2);
  CHECK(cmp.differences[1].kind == DiffKind::line_missing);
  CHECK(cmp.differences[1].path == "body:line 4");
  CHECK(cmp.differences[1].value_a == "four");
  CHECK(cmp.differences[2].kind == DiffKind::line_added);
  CHECK(cmp.differences[2].path == "body:line 5");  // numbered in B
  CHECK(cmp.differences[2].value_b == "six");
  CHECK(cmp.differences[2].pattern == "body:line");
}

TEST_CASE("a text diff with too many edits falls back to one body_changed") {
  CompareOptions o;
  o.max_edit_distance = 10;
  auto c = make(o);
  std::string x, y;
  for (int i = 0; i < 100; ++i)
    x += "a" + std::to_string(i) + "\n", y += "b" + std::to_string(i) + "\n";
  auto cmp = c.compare(resp("text/plain", x), resp("text/plain", y));
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].kind == DiffKind::body_changed);
  CHECK(cmp.differences[0].value_a.find("100 lines") == 0);
}

TEST_CASE("binary bodies compare by size and SHA-256") {
  auto c = make();
  auto cmp = c.compare(resp("image/png", std::string("\x89PNG\0\1", 6)),
                       resp("image/png", std::string("\x89PNG\0\2", 6)));
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.body_kind == BodyKind::binary);
  CHECK(cmp.differences[0].kind == DiffKind::body_changed);
  CHECK(cmp.differences[0].path == "body");
  CHECK(cmp.differences[0].value_a.rfind("6 bytes, sha256 ", 0) == 0);
  CHECK(cmp.differences[0].value_a != cmp.differences[0].value_b);
  // sha256("abc") is the FIPS 180-2 example.
  auto abc =
      c.compare(resp("application/octet-stream", "abc"), resp("application/octet-stream", "abd"));
  REQUIRE(abc.differences.size() == 1);
  CHECK(abc.differences[0].value_a ==
        "3 bytes, sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("bodies are compared after content decoding") {
  auto c = make();
  auto a = json_resp(R"({"a":[1,2,3]})");
  auto b = json_resp(R"({"a":[1,2,4]})");
  auto gz = encode_content(b.body.data, "gzip");
  REQUIRE(gz.ok());
  b.body.data = gz.value();
  b.headers.add("Content-Encoding", "gzip");
  auto cmp = c.compare(a, b);
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].path == "$.a[2]");

  auto same = json_resp(R"({"a":[1,2,3]})");
  auto br = encode_content(same.body.data, "br");
  REQUIRE(br.ok());
  same.body.data = br.value();
  same.headers.add("Content-Encoding", "br");
  CHECK(c.compare(a, same).identical());

  auto broken = json_resp("not gzip");
  broken.headers.add("Content-Encoding", "gzip");
  auto bad = c.compare(a, broken);
  REQUIRE(bad.differences.size() == 1);
  CHECK(bad.differences[0].kind == DiffKind::body_changed);
  CHECK(bad.differences[0].value_b.rfind("undecodable", 0) == 0);
}

TEST_CASE("a body that does not parse as JSON is compared as text") {
  auto c = make();
  auto cmp = c.compare(json_resp("{\"a\":1}\n"), json_resp("{\"a\":1\n"));
  CHECK(cmp.body_kind == BodyKind::text);
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].kind == DiffKind::line_changed);
}

TEST_CASE("JSON is detected without a content type") {
  auto c = make();
  auto cmp = c.compare(resp("", R"({"x":1})"), resp("", R"({"x":2})"));
  CHECK(cmp.body_kind == BodyKind::json);
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].path == "$.x");
}

TEST_CASE("ignore rules suppress differences and are counted; unused ones are reported") {
  CompareOptions o;
  o.ignore = {"$.items[*].updatedAt", "$.meta", "header:x-foo", "$.items[*].updatedat", "status"};
  auto c = make(o);
  auto a = json_resp(R"({"items":[{"id":1,"updatedAt":"a"},{"id":2,"updatedAt":"b"}],
                         "meta":{"x":1,"y":[1]}})");
  auto b = json_resp(R"({"items":[{"id":1,"updatedAt":"c"},{"id":2,"updatedAt":"d"}],
                         "meta":{"x":2,"y":[]}})");
  a.headers.add("X-Foo", "1");
  b.headers.add("X-Foo", "2");
  auto cmp = c.compare(a, b);
  INFO(dump(cmp));
  CHECK(cmp.identical());
  auto uses = c.rule_uses();
  REQUIRE(uses.size() == 5);
  CHECK(uses[0].matches == 2);
  CHECK(uses[1].matches == 2);  // $.meta.x and the length of $.meta.y
  CHECK(uses[2].matches == 1);
  CHECK(uses[3].matches == 0);
  CHECK(c.unused_rules() == std::vector<std::string>{"$.items[*].updatedat", "status"});
  // Counting spans comparisons: a later status change uses "status".
  c.compare(json_resp("{}", 200), json_resp("{}", 201));
  CHECK(c.unused_rules() == std::vector<std::string>{"$.items[*].updatedat"});
}

TEST_CASE("a body ignore rule swallows every body difference") {
  CompareOptions o;
  o.ignore = {"body"};
  auto c = make(o);
  CHECK(c.compare(resp("text/plain", "a"), resp("text/plain", "b")).identical());
  CHECK(c.rule_uses()[0].matches == 1);
  CHECK_FALSE(c.compare(resp("text/plain", "a", 200), resp("text/plain", "b", 404)).identical());
}

TEST_CASE("bad rules are rejected with the rule named") {
  CompareOptions o;
  o.ignore = {"$.items[", "x"};
  auto c = Comparator::create(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Errc::parse_error);
  CHECK(c.status().message().find("$.items[") != std::string::npos);
  CHECK(c.status().message().find("column 9") != std::string::npos);
  CompareOptions o2;
  o2.ignore = {"headers:x"};
  CHECK_FALSE(Comparator::create(o2).ok());
  CompareOptions o3;
  o3.normalizers = {{NormalizerKind::uuid, "$..[", 0, 0}};
  CHECK_FALSE(Comparator::create(o3).ok());
  CompareOptions o4;
  o4.arrays = {{"tags", ArrayOrder::set}};
  CHECK_FALSE(Comparator::create(o4).ok());
}

TEST_CASE("the timestamp normalizer equates RFC 3339, HTTP-dates and epoch values") {
  CompareOptions o;
  o.normalizers = {{NormalizerKind::timestamp, "", 0, 0}};
  auto c = make(o);
  auto a = json_resp(R"({"iso":"2024-01-02T03:04:05Z","iso2":"2024-01-02T03:04:05.123+01:00",
     "http":"Mon, 01 Jan 2024 00:00:00 GMT","s":1700000000,"ms":1700000000123,
     "str":"1700000000","mixed":"created 2024-01-02 03:04:05 by x","small":5,"date":"2024-01-02"})");
  auto b = json_resp(R"({"iso":"2025-06-07T08:09:10.5Z","iso2":"2023-12-31T23:59:59-0500",
     "http":"Tue, 02 Jan 2024 10:00:00 GMT","s":1800000000,"ms":1700000999999,
     "str":"1800000000","mixed":"created 2025-01-01T00:00:00Z by x","small":6,"date":"2024-01-03"})");
  auto cmp = c.compare(a, b);
  INFO(dump(cmp));
  REQUIRE(cmp.differences.size() == 2);
  CHECK(find(cmp, "$.small"));  // 5 and 6 are not in the epoch window
  CHECK(find(cmp, "$.date"));   // a date without a time is data, not a timestamp
}

TEST_CASE("the uuid and hex normalizers replace ids, also inside strings") {
  CompareOptions o;
  o.normalizers = {{NormalizerKind::uuid, "", 0, 0}, {NormalizerKind::hex_id, "", 0, 0}};
  auto c = make(o);
  auto a =
      json_resp(R"({"id":"123e4567-e89b-12d3-a456-426614174000","href":"/o/0123456789abcdef0123",
                         "short":"abc123","word":"user 123e4567-e89b-12d3-a456-426614174000 ok"})");
  auto b =
      json_resp(R"({"id":"00000000-0000-4000-8000-000000000000","href":"/o/fedcba9876543210ffff",
                         "short":"abc124","word":"user AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE ok"})");
  auto cmp = c.compare(a, b);
  INFO(dump(cmp));
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].path == "$.short");  // 6 hex chars are not an id

  const NormalizerKind kinds[] = {NormalizerKind::uuid, NormalizerKind::hex_id,
                                  NormalizerKind::timestamp};
  CHECK(normalize_text("a 123e4567-e89b-12d3-a456-426614174000 b", kinds) == "a <uuid> b");
  CHECK(normalize_text("sha deadbeefdeadbeef1234!", kinds) == "sha <hex>!");
  CHECK(normalize_text("xdeadbeefdeadbeef1234", kinds) == "xdeadbeefdeadbeef1234");
  CHECK(normalize_text("at 2024-01-02T03:04:05Z.", kinds) == "at <timestamp>.");
  CHECK(normalize_text("Sun, 06 Nov 1994 08:49:37 GMT", kinds) == "<timestamp>");
  CHECK(normalize_text("2024-13-02T03:04:05Z", kinds) == "2024-13-02T03:04:05Z");
}

TEST_CASE("the number normalizer accepts absolute and relative tolerances") {
  auto a = json_resp(R"({"price":100.0,"big":1000000,"other":1})");
  auto b = json_resp(R"({"price":100.4,"big":1000900,"other":2})");
  {
    CompareOptions o;
    o.normalizers = {{NormalizerKind::number, "$.price", 0.5, 0}};
    auto c = make(o);
    auto cmp = c.compare(a, b);
    INFO(dump(cmp));
    CHECK_FALSE(find(cmp, "$.price"));
    CHECK(find(cmp, "$.big"));  // out of scope
    CHECK(find(cmp, "$.other"));
  }
  {
    CompareOptions o;
    o.normalizers = {{NormalizerKind::number, "", 0.1, 0.001}};
    auto c = make(o);
    auto cmp = c.compare(a, b);
    INFO(dump(cmp));
    CHECK(find(cmp, "$.price"));      // 0.4 > 0.1 and > 0.1% of 100.4
    CHECK_FALSE(find(cmp, "$.big"));  // 900 <= 0.1% of 1000900
    CHECK(find(cmp, "$.other"));
  }
}

TEST_CASE("a scoped normalizer applies only under its path and to named headers") {
  CompareOptions o;
  o.normalizers = {{NormalizerKind::uuid, "$.request", 0, 0},
                   {NormalizerKind::uuid, "header:location", 0, 0}};
  auto c = make(o);
  auto a = json_resp(R"({"request":{"id":"123e4567-e89b-12d3-a456-426614174000"},
                         "user":"123e4567-e89b-12d3-a456-426614174000"})");
  auto b = json_resp(R"({"request":{"id":"00000000-0000-4000-8000-000000000000"},
                         "user":"00000000-0000-4000-8000-000000000000"})");
  a.headers.add("Location", "/x/123e4567-e89b-12d3-a456-426614174000");
  b.headers.add("Location", "/x/00000000-0000-4000-8000-000000000000");
  a.headers.add("Link", "/x/123e4567-e89b-12d3-a456-426614174000");
  b.headers.add("Link", "/x/00000000-0000-4000-8000-000000000000");
  auto cmp = c.compare(a, b);
  INFO(dump(cmp));
  REQUIRE(cmp.differences.size() == 2);
  CHECK(find(cmp, "$.user"));
  CHECK(find(cmp, "header:link"));
}

TEST_CASE("text bodies are normalized line by line") {
  CompareOptions o;
  o.normalizers = {{NormalizerKind::timestamp, "body", 0, 0}};
  auto c = make(o);
  auto cmp = c.compare(resp("text/html", "<p>at 2024-01-01T00:00:00Z</p>\n<p>x</p>"),
                       resp("text/html", "<p>at 2024-02-01T00:00:00Z</p>\n<p>y</p>"));
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].path == "body:line 2");
}

TEST_CASE("rendered values are truncated to the bound and differences are capped") {
  CompareOptions o;
  o.max_value_chars = 20;
  o.max_differences = 5;
  auto c = make(o);
  std::string long_a(500, 'a'), long_b(500, 'b');
  std::string xa = "{", xb = "{";
  for (int i = 0; i < 20; ++i) {
    xa += "\"k" + std::to_string(i) + "\":\"" + long_a + "\",";
    xb += "\"k" + std::to_string(i) + "\":\"" + long_b + "\",";
  }
  xa.back() = '}';
  xb.back() = '}';
  auto cmp = c.compare(json_resp(xa), json_resp(xb));
  CHECK(cmp.differences.size() == 5);
  CHECK(cmp.truncated);
  CHECK(cmp.differences[0].value_a.size() <= 20 + 3);
  CHECK(cmp.differences[0].value_a.ends_with("\xE2\x80\xA6"));
}

TEST_CASE("flows without a response compare by their errors") {
  auto c = make();
  flow::Flow a, b;
  a.request.method = "GET";
  a.request.path = "/users/42";
  a.response = json_resp("{}");
  b.error = flow::Error{flow::ErrorKind::upstream_timeout, "no answer"};
  auto cmp = c.compare(a, b);
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].kind == DiffKind::response_missing);
  CHECK(cmp.differences[0].value_b == "error upstream_timeout: no answer");
  CHECK(cmp.endpoint == "GET /users/{id}");
  b.response = json_resp("{}");
  b.error.reset();
  auto ok = c.compare(a, b);
  CHECK(ok.identical());
  CHECK(ok.endpoint == "GET /users/{id}");
}

TEST_CASE("routes collapse id-like segments and drop the query") {
  struct Row {
    const char* path;
    const char* route;
  };
  const Row rows[] = {
      {"/users/42/orders", "/users/{id}/orders"},
      {"/users/42/orders?page=2#x", "/users/{id}/orders"},
      {"/o/123e4567-e89b-12d3-a456-426614174000", "/o/{id}"},
      {"/blobs/0123456789abcdef0123", "/blobs/{id}"},
      {"/c/cus_9s6XKzkNRiz8i3", "/c/{id}"},
      {"/v/dQw4w9WgXcQ", "/v/{id}"},
      {"/api/v2/items", "/api/v2/items"},
      {"/oauth2-callback", "/oauth2-callback"},
      {"/deadbeef", "/deadbeef"},  // 8 hex letters and no digits: a word
      {"/", "/"},
      {"", "/"},
      {"/a//b/", "/a//b/"},
      {"/2024-01-02/report", "/{id}/report"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.path);
    CHECK(route_template(row.path) == row.route);
  }
  flow::Request r;
  r.method = "POST";
  r.path = "/users/42/orders?x=1";
  CHECK(endpoint_of(r) == "POST /users/{id}/orders");
}

TEST_CASE("kind names round-trip") {
  for (int k = 0; k <= static_cast<int>(DiffKind::body_changed); ++k) {
    auto kind = static_cast<DiffKind>(k);
    CHECK(diff_kind_from_name(diff_kind_name(kind)) == kind);
  }
  CHECK_FALSE(diff_kind_from_name("nope"));
  CHECK(normalizer_kind_from_name("hex_id") == NormalizerKind::hex_id);
}

TEST_CASE("JSON strings compare unescaped and numbers by value") {
  auto c = make();
  auto same = c.compare(
      json_resp(R"({"k\u0041":"\u00e9\n","n":100,"z":0,"big":18446744073709551615})"),
      json_resp("{\"kA\":\"\xC3\xA9\\n\",\"n\":1e2,\"z\":-0,\"big\":18446744073709551615}"));
  INFO(dump(same));
  CHECK(same.identical());
  auto cmp = c.compare(json_resp(R"({"s":"a\"b\\c\u0001","big":18446744073709551615,"i":-5})"),
                       json_resp(R"({"s":"x","big":18446744073709551614,"i":-5.5})"));
  INFO(dump(cmp));
  REQUIRE(cmp.differences.size() == 3);
  CHECK(find(cmp, "$.s")->value_a == R"("a\"b\\c\u0001")");
  CHECK(find(cmp, "$.big")->kind == DiffKind::value_changed);
  CHECK(find(cmp, "$.i")->value_b == "-5.5");
}

TEST_CASE("large objects in different member orders are matched by key") {
  auto c = make();
  std::string a = "{", b = "{";
  for (int i = 0; i < 40; ++i) {
    if (i) a += ',', b += ',';
    a += "\"k" + std::to_string(i) + "\":" + std::to_string(i);
    b += "\"k" + std::to_string(39 - i) + "\":" + std::to_string(39 - i == 7 ? 70 : 39 - i);
  }
  a += ",\"onlya\":1}";
  b += ",\"onlyb\":2}";
  auto cmp = c.compare(json_resp(a), json_resp(b));
  INFO(dump(cmp));
  REQUIRE(cmp.differences.size() == 3);
  CHECK(find(cmp, "$.k7")->value_b == "70");
  CHECK(find(cmp, "$.onlya")->kind == DiffKind::field_missing);
  CHECK(find(cmp, "$.onlyb")->kind == DiffKind::field_added);
}

TEST_CASE("JSON nested deeper than the limit is compared as text, not recursed") {
  CompareOptions o;
  o.max_json_depth = 16;
  auto c = make(o);
  std::string deep_a(100, '['), deep_b(100, '[');
  deep_a += "1" + std::string(100, ']');
  deep_b += "2" + std::string(100, ']');
  auto cmp = c.compare(json_resp(deep_a), json_resp(deep_b));
  CHECK(cmp.body_kind == BodyKind::text);
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].kind == DiffKind::line_changed);
}

TEST_CASE("form bodies are diffed field by field") {
  auto c = make();
  auto cmp = c.compare(resp("application/x-www-form-urlencoded", "a=1&b=2&c=3"),
                       resp("application/x-www-form-urlencoded", "a=1&b=9&c=3"));
  REQUIRE(cmp.differences.size() == 1);
  CHECK(cmp.differences[0].path == "body:line 2");
  CHECK(cmp.differences[0].value_b == "b=9");
}

TEST_CASE("mangled bodies and random path text never crash the engine") {
  std::mt19937 rng(11);
  const std::string base =
      R"({"a":[1,2,{"b":"x\u00e9","c":[true,null,-1.5e3]}],"d":{"e":"2024-01-02T03:04:05Z"}})";
  CompareOptions o;
  o.normalizers = {{NormalizerKind::timestamp, "", 0, 0}, {NormalizerKind::number, "", 0.1, 0}};
  o.arrays = {{"$.a", ArrayOrder::multiset}};
  o.ignore = {"$..b"};
  auto c = make(o);
  const std::string alphabet = "{}[]\":,.\\u0aZ-+eE$*' \x80\xff";
  for (int round = 0; round < 2000; ++round) {
    std::string m = base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % m.size();
      switch (rng() % 3) {
        case 0: m.erase(at, 1 + rng() % 3); break;
        case 1: m.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        default: m[at] = alphabet[rng() % alphabet.size()];
      }
      if (m.empty()) m = "{";
    }
    auto cmp = c.compare(json_resp(base), json_resp(m));
    CHECK(cmp.differences.size() <= o.max_differences);
    auto p = JsonPath::parse("$" + m.substr(0, 12));
    (void)p;
  }
}
