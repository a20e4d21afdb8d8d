#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "interop/codec.h"
#include "interop/interop.h"
#include "test_support.h"

using namespace retake;
using namespace retake::interop;
using namespace retake::interop::test;

namespace {
ImportResult import_ok(const std::string& rel, ImportOptions options = {}) {
  auto bytes = read_fixture(rel);
  REQUIRE_MESSAGE(!bytes.empty(), "fixture missing: " << rel);
  CHECK(detect_format(bytes) == Format::har);
  auto r = import_har(bytes, options);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}
}  // namespace

TEST_CASE(
    "a HAR recorded by headless Chromium through Playwright imports with bodies and WebSocket") {
  auto r = import_ok("har/chromium-playwright.har");
  REQUIRE(r.flows.size() == 5);
  CHECK(r.errors.empty());

  const auto& page = r.flows[0];
  CHECK(page.mode == "import");
  CHECK(page.request.method == "GET");
  CHECK(page.request.scheme == "http");
  CHECK(page.request.path == "/page");
  CHECK(page.request.authority.starts_with("127.0.0.1:"));
  CHECK(page.response->status == 200);
  CHECK(page.response->body.data.find("retake fixture") != std::string::npos);
  CHECK(page.upstream_address == page.request.authority);
  CHECK(page.timing.request_started > 1'700'000'000'000'000'000);
  CHECK(page.timing.response_ended > page.timing.request_started);

  const auto& json = r.flows[1];
  CHECK(json.request.path == "/json?from=page");
  CHECK(json.response->body.data.starts_with("{\"ok\": true"));

  // Chromium decoded the gzip body; we store it re-encoded, as it was on the wire.
  const auto& bin = r.flows[2];
  CHECK(bin.response->headers.get("Content-Encoding") == "gzip");
  CHECK(bin.response->headers.get("Content-Length") ==
        std::to_string(bin.response->body.data.size()));
  auto plain = detail::content_decode("gzip", bin.response->body.data, 1 << 20);
  REQUIRE(plain.has_value());
  REQUIRE(plain->size() == 512);
  for (size_t i = 0; i < 512; ++i) REQUIRE(static_cast<unsigned char>((*plain)[i]) == i % 256);

  const auto& post = r.flows[3];
  CHECK(post.request.method == "POST");
  CHECK(post.request.body.data == R"({"from":"browser"})");
  CHECK(post.response->status == 201);
  CHECK(post.response->body.data == R"({"from":"browser"})");

  const auto& ws = r.flows[4];
  CHECK(ws.request.scheme == "http");  // ws:// in the HAR
  CHECK(ws.request.path == "/chat");
  CHECK(ws.response->status == 101);
  REQUIRE(ws.websocket.has_value());
  const auto& m = ws.websocket->messages;
  REQUIRE(m.size() == 5);
  CHECK(m[0].from_client);
  CHECK(m[0].payload == "hello from browser");
  CHECK(m[1].opcode == 2);
  CHECK(m[1].payload == std::string("\x00\x01\x02\xff", 4));
  CHECK_FALSE(m[2].from_client);
  CHECK(m[4].payload == "close-me");
  // Playwright writes milliseconds since the epoch.
  CHECK(m[0].timestamp > 1'700'000'000'000'000'000);
  CHECK(m[0].timestamp < 2'000'000'000'000'000'000);
}

TEST_CASE("a Firefox-style HAR with a BOM, HTTP/2, no bodies and form params imports") {
  auto r = import_ok("har/firefox-style.har");
  REQUIRE(r.flows.size() == 2);
  const auto& get = r.flows[0];
  CHECK(get.request.http_version == "HTTP/2");
  CHECK(get.request.url() == "https://app.retake.test/api/items?page=2&sort=name");
  // "+01:00" offset: 02:35:16.891+01:00 is 01:35:16.891Z.
  CHECK(get.timing.request_started == *detail::parse_iso8601("2026-11-28T01:35:16.891Z"));
  CHECK(get.timing.response_ended - get.timing.request_started == 52'000'000);
  CHECK(get.timing.response_started - get.timing.request_started == 50'000'000);
  // The body was not saved: we know its size only.
  CHECK(get.response->body.data.empty());
  CHECK(get.response->body.size == 1234);
  CHECK(get.response->body.truncated);
  CHECK(get.upstream_address == "[::1]:443");
  const auto& post = r.flows[1];
  CHECK(post.request.body.data == "a=1&b=2");
  CHECK(post.response->status == 302);
  CHECK(post.response->headers.get("location") == "/home");
}

TEST_CASE("a Charles-style HAR with base64 and decoded gzip bodies imports") {
  auto r = import_ok("har/charles-style.har");
  REQUIRE(r.flows.size() == 2);
  const auto& png = r.flows[0];
  REQUIRE(png.response->body.data.size() == 16);
  CHECK(png.response->body.data.substr(1, 3) == "PNG");
  CHECK(png.upstream_address == "127.0.0.1:80");
  const auto& gz = r.flows[1];
  auto plain = detail::content_decode("gzip", gz.response->body.data, 1 << 20);
  REQUIRE(plain.has_value());
  CHECK(*plain == R"({"compressed":"on the wire"})");
}

TEST_CASE("a Fiddler-style HAR with 7 fraction digits and a bodyless 204 imports") {
  auto r = import_ok("har/fiddler-style.har");
  REQUIRE(r.flows.size() == 1);
  const auto& f = r.flows[0];
  CHECK(f.request.method == "PUT");
  CHECK(f.request.body.data == "hello");
  CHECK(f.response->status == 204);
  CHECK(f.response->body.data.empty());
  CHECK_FALSE(f.response->body.truncated);
  CHECK(f.timing.request_started == *detail::parse_iso8601("2026-11-28T01:35:16.891Z"));
}

TEST_CASE("an Insomnia-style HAR imports, and a status 0 entry becomes a flow with an error") {
  auto r = import_ok("har/insomnia-style.har");
  REQUIRE(r.flows.size() == 2);
  CHECK(r.flows[0].request.body.data == R"({"query":"{ me { id } }"})");
  CHECK(r.flows[0].response->body.data == R"({"me":null})");
  const auto& down = r.flows[1];
  CHECK_FALSE(down.response.has_value());
  REQUIRE(down.error.has_value());
  CHECK(down.error->kind == flow::ErrorKind::upstream_unreachable);
  CHECK(down.error->message == "net::ERR_CONNECTION_REFUSED");
  CHECK(down.request.http_version == "HTTP/1.1");
}

TEST_CASE("bad HAR entries fail the import with their JSON path, or are skipped with skip_bad") {
  auto bytes = read_fixture("har/bad-entries.har");
  auto strict = import_har(bytes);
  REQUIRE_FALSE(strict.ok());
  CHECK(strict.status().code() == Errc::parse_error);
  CHECK(strict.status().message() ==
        "entry 1: log.entries[1].response.status: expected an integer");

  auto r = import_har(bytes, lenient());
  REQUIRE(r.ok());
  REQUIRE(r->flows.size() == 2);
  CHECK(r->flows[1].request.path == "/second");
  REQUIRE(r->errors.size() == 2);
  CHECK(r->errors[0].index == 1);
  CHECK(r->errors[1].index == 2);
  CHECK(r->errors[1].where == "log.entries[2].response.content.text");
  CHECK(r->errors[1].message == "invalid base64");
}

namespace {
// What HAR itself can hold, for comparing flows that went through HAR without `_retake`.
void check_har_equivalent(const flow::Flow& a, const flow::Flow& b) {
  CHECK(a.request.method == b.request.method);
  CHECK(a.request.url() == b.request.url());
  CHECK(a.request.http_version == b.request.http_version);
  CHECK(a.request.headers == b.request.headers);
  CHECK(a.request.body == b.request.body);
  REQUIRE(a.response.has_value() == b.response.has_value());
  if (a.response) {
    CHECK(a.response->status == b.response->status);
    CHECK(a.response->reason == b.response->reason);
    CHECK(a.response->headers == b.response->headers);
    auto decoded = [](const flow::Response& r) {
      auto c = r.headers.get("Content-Encoding");
      if (c && detail::zlib_coding(*c)) return *detail::content_decode(*c, r.body.data, 1 << 24);
      return r.body.data;
    };
    CHECK(decoded(*a.response) == decoded(*b.response));
  }
  CHECK(a.timing.request_started / 1'000'000 == b.timing.request_started / 1'000'000);
  CHECK(a.websocket == b.websocket);
  CHECK(a.upstream_address == b.upstream_address);
}
}  // namespace

TEST_CASE("Chromium's HAR survives import, export and import again") {
  auto first = import_ok("har/chromium-playwright.har");
  auto har = export_har(first.flows);
  CHECK(detect_format(har) == Format::har);
  auto second = import_har(har);
  REQUIRE_MESSAGE(second.ok(), second.status().to_string());
  REQUIRE(second->flows.size() == first.flows.size());
  for (size_t i = 0; i < first.flows.size(); ++i) {
    CAPTURE(i);
    check_har_equivalent(first.flows[i], second->flows[i]);
    // With `_retake` everything comes back, re-encoded bodies included.
    CHECK(first.flows[i] == second->flows[i]);
  }
}

TEST_CASE("our HAR export of a flow with every field set imports back to the same flow") {
  auto f = full_flow();
  f.id = 0;  // ids are the store's business: an import never carries them
  auto har = export_har({f});
  auto r = import_har(har);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  REQUIRE(r->flows.size() == 1);
  CHECK(r->flows[0] == f);
}

TEST_CASE(
    "our HAR export holds the spec's fields: timings, cookies, queryString, postData, content") {
  auto f = full_flow();
  f.response->body.truncated = false;
  f.response->body.size = f.response->body.data.size();
  f.websocket.reset();
  auto doc = boost::json::parse(export_har({f}));
  const auto& log = doc.at("log");
  CHECK(log.at("version") == "1.2");
  const auto& e = log.at("entries").at(0);
  CHECK(e.at("startedDateTime") == "2023-11-14T22:13:20.100Z");
  const auto& t = e.at("timings");
  CHECK(t.at("blocked").to_number<double>() == -1);
  CHECK(t.at("dns").to_number<double>() == -1);
  // The upstream connection predates the request (reused): no connect phase.
  CHECK(t.at("connect").to_number<double>() == -1);
  CHECK(t.at("send").to_number<double>() == doctest::Approx(100.0));
  CHECK(t.at("wait").to_number<double>() == doctest::Approx(100.0));
  CHECK(t.at("receive").to_number<double>() == doctest::Approx(100.0));
  CHECK(e.at("time").to_number<double>() == doctest::Approx(300.0));
  CHECK(e.at("serverIPAddress") == "::1");
  const auto& rq = e.at("request");
  CHECK(rq.at("url") == "https://api.retake.test:8443/v1/items?q=a%20b&x=1");
  CHECK(rq.at("queryString").at(0).at("name") == "q");
  CHECK(rq.at("queryString").at(0).at("value") == "a b");
  CHECK(rq.at("cookies").at(1).at("name") == "b");
  CHECK(rq.at("postData").at("encoding") == "base64");
  CHECK(rq.at("headers").as_array().size() == 5);
  const auto& rs = e.at("response");
  CHECK(rs.at("status").to_number<int>() == 200);
  CHECK(rs.at("content").at("text") == "héllo wörld");
  CHECK(rs.at("content").at("mimeType") == "text/plain; charset=utf-8");
  CHECK(rs.at("cookies").at(0).at("name") == "sid");
  CHECK(rs.at("cookies").at(0).at("httpOnly") == true);
  CHECK(e.at("_retake").at("error").at("kind") == "upstream_closed");
  CHECK(e.at("_retake").at("tags").at(0) == "smoke");
}

TEST_CASE("our HAR export decodes gzip bodies for the content text and says how much was saved") {
  flow::Flow f;
  f.request = {"GET", "http", "h.test", "/", "HTTP/1.1", {}, {}, {}};
  flow::Response r;
  r.status = 200;
  r.headers = {{"Content-Encoding", "gzip"}, {"Content-Type", "text/plain"}};
  std::string plain(1000, 'a');
  r.body.data = *detail::content_encode("gzip", plain);
  r.body.size = r.body.data.size();
  f.response = r;
  f.timing.request_started = 1'700'000'000'000'000'000;
  auto doc = boost::json::parse(export_har({f}));
  const auto& content = doc.at("log").at("entries").at(0).at("response").at("content");
  CHECK(content.at("text").as_string() == plain);
  CHECK(content.at("size").to_number<size_t>() == 1000);
  CHECK(content.at("compression").to_number<size_t>() == 1000 - r.body.data.size());
  auto back = import_har(export_har({f}));
  REQUIRE(back.ok());
  CHECK(*detail::content_decode("gzip", back->flows[0].response->body.data, 1 << 20) == plain);
}

TEST_CASE("a brotli body that HAR holds decoded loses its Content-Encoding on import") {
  std::string har = R"({"log":{"entries":[{"startedDateTime":"2026-01-01T00:00:00Z","time":1,
    "request":{"method":"GET","url":"https://x.test/"},
    "response":{"status":200,"headers":[{"name":"Content-Encoding","value":"br"},
                                        {"name":"Content-Length","value":"7"}],
                "content":{"text":"plain text"}}}]}})";
  auto r = import_har(har);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->flows[0].response->body.data == "plain text");
  CHECK_FALSE(r->flows[0].response->headers.contains("Content-Encoding"));
  CHECK(r->flows[0].response->headers.get("Content-Length") == "10");
}

TEST_CASE("Chrome's HTTP/2 pseudo-headers and WebSocket times in seconds are understood") {
  std::string har = R"({"log":{"entries":[{"startedDateTime":"2026-01-01T00:00:00.000Z","time":5,
    "request":{"method":"GET","url":"wss://chat.test/socket","httpVersion":"http/2.0",
      "headers":[{"name":":method","value":"GET"},{"name":":authority","value":"chat.test:8443"},
                 {"name":":path","value":"/socket"},{"name":"origin","value":"https://chat.test"}]},
    "response":{"status":101,"httpVersion":"http/2.0","headers":[],"content":{"size":0}},
    "_webSocketMessages":[{"type":"receive","time":1767225600.25,"opcode":1,"data":"hi"}]}]}})";
  auto r = import_har(har);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  const auto& f = r->flows[0];
  CHECK(f.request.scheme == "https");
  CHECK(f.request.authority == "chat.test:8443");
  CHECK(f.request.http_version == "HTTP/2");
  REQUIRE(f.request.headers.size() == 1);
  CHECK(f.request.headers.fields()[0].name == "origin");
  REQUIRE(f.websocket.has_value());
  REQUIRE(f.websocket->messages.size() == 1);
  CHECK_FALSE(f.websocket->messages[0].from_client);
  CHECK(f.websocket->messages[0].timestamp == 1'767'225'600'250'000'000);
}

TEST_CASE("a WebSocket over HTTP/2 flow (extended CONNECT) keeps :protocol and its path") {
  auto f = full_flow();
  f.id = 0;
  f.request.method = "CONNECT";
  f.request.path = "/chat";
  f.request.http_version = "HTTP/2";
  f.request.headers = {};
  f.request.headers.add(":protocol", "websocket");
  f.request.headers.add("sec-websocket-version", "13");
  f.request.body = {};
  f.request.trailers = {};
  auto r = import_har(export_har({f}));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  REQUIRE(r->flows.size() == 1);
  const auto& back = r->flows[0];
  CHECK(back.request.method == "CONNECT");
  CHECK(back.request.path == "/chat");
  CHECK(back.request.headers.get(":protocol") == std::optional<std::string_view>("websocket"));
  CHECK(back == f);
}
