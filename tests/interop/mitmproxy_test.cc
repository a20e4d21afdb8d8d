#include <doctest/doctest.h>

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
  CHECK(detect_format(bytes) == Format::mitmproxy);
  auto r = import_mitmproxy(bytes, options);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}
}  // namespace

TEST_CASE(
    "mitmdump's plain HTTP capture imports every flow with methods, URLs, statuses and bodies") {
  auto r = import_ok("mitm/http.mitm", with_session("imp"));
  REQUIRE(r.flows.size() == 6);
  CHECK(r.errors.empty());
  CHECK(r.unsupported_count() == 0);

  const auto& refused = r.flows[0];
  CHECK(refused.request.url() == "http://127.0.0.1:1/");
  CHECK_FALSE(refused.response.has_value());
  REQUIRE(refused.error.has_value());
  CHECK(refused.error->kind == flow::ErrorKind::upstream_unreachable);
  CHECK(refused.error->message.find("Connect call failed") != std::string::npos);

  const auto& json = r.flows[1];
  CHECK(json.session == "imp");
  CHECK(json.mode == "import");
  CHECK(json.id == 0);
  CHECK(json.request.method == "GET");
  CHECK(json.request.scheme == "http");
  CHECK(json.request.path == "/json?q=1&x=a%20b");
  CHECK(json.request.http_version == "HTTP/1.1");
  CHECK(json.request.headers.get("X-Retake") == "fixture");
  CHECK(json.request.headers.get("Proxy-Connection") == "Keep-Alive");
  CHECK(json.client_address.starts_with("127.0.0.1:"));
  CHECK(json.upstream_address == json.request.authority);
  REQUIRE(json.response.has_value());
  CHECK(json.response->status == 200);
  CHECK(json.response->reason == "OK");
  CHECK(json.response->headers.get("Content-Type") == "application/json");
  CHECK(json.response->body.data.starts_with("{\"ok\": true, \"path\": \"/json?q=1&x=a%20b\""));
  CHECK(json.response->body.size == json.response->body.data.size());
  CHECK_FALSE(json.response->body.truncated);
  CHECK(json.timing.client_connected > 1'700'000'000'000'000'000);
  CHECK(json.timing.request_started >= json.timing.client_connected);
  CHECK(json.timing.response_ended >= json.timing.response_started);
  CHECK(json.timing.response_started >= json.timing.request_ended);
  CHECK_FALSE(json.client_tls.present);

  // The gzip endpoint: mitmproxy stores the wire bytes, and so do we.
  const auto& gz = r.flows[2];
  REQUIRE(gz.response.has_value());
  CHECK(gz.response->headers.get("Content-Encoding") == "gzip");
  REQUIRE(gz.response->body.data.size() == 294);
  CHECK(static_cast<unsigned char>(gz.response->body.data[0]) == 0x1f);
  auto plain = detail::content_decode("gzip", gz.response->body.data, 1 << 20);
  REQUIRE(plain.has_value());
  REQUIRE(plain->size() == 512);
  CHECK(static_cast<unsigned char>((*plain)[255]) == 255);

  const auto& post = r.flows[3];
  CHECK(post.request.method == "POST");
  CHECK(post.request.body.data == R"({"name":"retake","n":1})");
  CHECK(post.response->status == 201);
  CHECK(post.response->body.data == post.request.body.data);

  const auto& bin = r.flows[4];
  CHECK(bin.request.body.data == std::string("\x00\x01\x02\xfe\xff", 5));
  CHECK(bin.response->body.data == std::string("\x00\x01\x02\xfe\xff", 5));

  const auto& head = r.flows[5];
  CHECK(head.request.method == "HEAD");
  CHECK(head.response->status == 200);
  CHECK(head.response->body.data.empty());
  CHECK(head.response->headers.get("Content-Length") == "45");
}

TEST_CASE("mitmdump's HTTPS capture carries client and upstream TLS facts") {
  auto r = import_ok("mitm/https.mitm");
  REQUIRE(r.flows.size() == 3);
  const auto& get = r.flows[1];
  CHECK(get.request.scheme == "https");
  CHECK(get.request.path == "/json?tls=1");
  CHECK(get.response->status == 200);
  CHECK(get.client_tls.present);
  CHECK(get.client_tls.version == "TLSv1.3");
  CHECK(get.client_tls.cipher == "TLS_AES_256_GCM_SHA384");
  CHECK(get.upstream_tls.present);
  CHECK(get.upstream_tls.sni == "127.0.0.1");
  CHECK(get.upstream_tls.version == "TLSv1.3");
  CHECK(get.upstream_tls.peer_subject == "O=retake fixtures,CN=upstream.retake.test");
  CHECK(get.upstream_tls.peer_issuer == "O=retake fixtures,CN=upstream.retake.test");
  CHECK(get.client_tls.peer_subject.empty());  // curl sent no client certificate
  CHECK(get.timing.upstream_connected > 0);
  const auto& post = r.flows[2];
  CHECK(post.request.body.data == "hello over tls");
  CHECK(post.response->status == 201);
  CHECK(post.response->body.data == "hello over tls");
  CHECK(post.request.url().starts_with("https://127.0.0.1:"));
}

TEST_CASE("mitmdump's WebSocket capture keeps messages in order and skips the tcp flow, counted") {
  auto r = import_ok("mitm/websocket.mitm");
  REQUIRE(r.flows.size() == 2);
  CHECK(r.unsupported_count() == 1);
  CHECK(r.unsupported.at("tcp") == 1);
  const auto& ws = r.flows[1];
  CHECK(ws.request.path == "/chat?room=1");
  CHECK(ws.response->status == 101);
  REQUIRE(ws.websocket.has_value());
  const auto& m = ws.websocket->messages;
  REQUIRE(m.size() == 5);
  CHECK(m[0].from_client);
  CHECK(m[0].opcode == 1);
  CHECK(m[0].payload == "hello retake");
  CHECK_FALSE(m[1].from_client);
  CHECK(m[1].payload == "hello retake");
  CHECK(m[2].opcode == 2);
  CHECK(m[2].payload == std::string("\x00\x01\x02\xff", 4));
  CHECK_FALSE(m[3].from_client);
  CHECK(m[4].payload == "close-me");
  CHECK(m[0].timestamp > 1'700'000'000'000'000'000);
  CHECK(m[4].timestamp >= m[0].timestamp);
  CHECK(ws.websocket->close_code == 1000);
  CHECK(ws.websocket->close_reason == "bye");
  CHECK_FALSE(ws.websocket->closed_by_client);
}

namespace {
// A minimal HTTP flow record in the shape of an older mitmproxy (flow format 10: mitmproxy 6):
// marked is a boolean, ALPN is "alpn_proto_negotiated", no comment.
std::string v10_record(const std::string& method) {
  auto conn = tn_dict({{"address", tn_list({tn_text("10.0.0.1"), tn_int(4000)})},
                       {"tls_established", tn_bool(true)},
                       {"sni", tn_bytes("old.retake.test")},
                       {"alpn_proto_negotiated", tn_bytes("h2")},
                       {"tls_version", tn_text("TLSv1.2")},
                       {"timestamp_start", tn_float(1600000000.25)}});
  return tn_dict(
      {{"version", tn_int(10)},
       {"type", tn_text("http")},
       {"id", tn_text("abc")},
       {"marked", tn_bool(true)},
       {"client_conn", conn},
       {"server_conn", tn_null()},
       {"error", tn_null()},
       {"request", tn_dict({{"method", tn_bytes(method)},
                            {"scheme", tn_bytes("https")},
                            {"host", tn_text("old.retake.test")},
                            {"port", tn_int(443)},
                            {"path", tn_bytes("/x")},
                            {"http_version", tn_bytes("HTTP/2.0")},
                            {"headers", tn_list({tn_list({tn_bytes("a"), tn_bytes("1")})})},
                            {"content", tn_bytes("")},
                            {"timestamp_start", tn_float(1600000000.5)},
                            {"timestamp_end", tn_float(1600000000.5)}})},
       {"response", tn_null()}});
}
}  // namespace

TEST_CASE("an older mitmproxy flow format (version 10) imports with renamed keys understood") {
  auto r = import_mitmproxy(v10_record("GET"));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  REQUIRE(r->flows.size() == 1);
  const auto& f = r->flows[0];
  CHECK(f.marked == ":default:");
  CHECK(f.client_tls.present);
  CHECK(f.client_tls.alpn == "h2");
  CHECK(f.client_tls.sni == "old.retake.test");
  CHECK(f.request.http_version == "HTTP/2");
  CHECK(f.request.authority == "old.retake.test");
  CHECK(f.request.url() == "https://old.retake.test/x");
  CHECK(f.client_address == "10.0.0.1:4000");
  CHECK(f.timing.client_connected == 1'600'000'000'250'000'000);
}

TEST_CASE("mitmproxy files older than format 7 are refused with a clear message") {
  auto rec = tn_dict({{"version", tn_list({tn_int(0), tn_int(11)})}, {"type", tn_text("http")}});
  auto r = import_mitmproxy(rec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("not supported") != std::string::npos);
  auto r5 = import_mitmproxy(tn_dict({{"version", tn_int(5)}, {"type", tn_text("http")}}));
  REQUIRE_FALSE(r5.ok());
  CHECK(r5.status().message().find("version 5") != std::string::npos);
}

TEST_CASE("a bad mitmproxy record fails the import, or is skipped and listed with skip_bad") {
  auto good = v10_record("GET");
  // Well framed, wrong type inside: method is an integer.
  auto bad = tn_dict({{"version", tn_int(17)},
                      {"type", tn_text("http")},
                      {"request", tn_dict({{"method", tn_int(5)}, {"scheme", tn_bytes("http")}})}});
  auto data = good + bad + v10_record("PUT");
  auto strict = import_mitmproxy(data);
  REQUIRE_FALSE(strict.ok());
  CHECK(strict.status().code() == Errc::parse_error);
  // The offset of the bad value itself: right after its key inside the second record.
  auto method_at = data.find(tn_text("method") + tn_int(5)) + tn_text("method").size();
  CHECK(strict.status().message() == "byte " + std::to_string(method_at) +
                                         ", record 1, request.method: expected bytes or text, "
                                         "found an integer");

  auto skipped = import_mitmproxy(data, lenient());
  REQUIRE(skipped.ok());
  REQUIRE(skipped->flows.size() == 2);
  CHECK(skipped->flows[1].request.method == "PUT");
  REQUIRE(skipped->errors.size() == 1);
  CHECK(skipped->errors[0].index == 1);
  CHECK(skipped->errors[0].to_string().find("request.method") != std::string::npos);
}

TEST_CASE("broken tnetstring framing is fatal even with skip_bad and names the byte offset") {
  auto good = v10_record("GET");
  auto data = good + "12x:oops";
  auto r = import_mitmproxy(data, lenient());
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("byte " + std::to_string(good.size() + 2)) != std::string::npos);
  CHECK(r.status().message().find("record 1") != std::string::npos);
}

TEST_CASE("a newer mitmproxy record (peername instead of address) imports tolerantly") {
  auto rec = tn_dict(
      {{"version", tn_int(20)},
       {"type", tn_text("http")},
       {"client_conn", tn_dict({{"peername", tn_list({tn_text("::1"), tn_int(5000)})},
                                {"tls_established", tn_bool(false)}})},
       {"server_conn", tn_dict({{"peername", tn_list({tn_text("127.0.0.1"), tn_int(8080)})},
                                {"address", tn_list({tn_text("localhost"), tn_int(8080)})}})},
       {"request", tn_dict({{"method", tn_bytes("GET")},
                            {"scheme", tn_bytes("http")},
                            {"authority", tn_bytes("localhost:8080")},
                            {"host", tn_text("localhost")},
                            {"port", tn_int(8080)},
                            {"path", tn_bytes("/")},
                            {"http_version", tn_bytes("HTTP/1.1")},
                            {"headers", tn_list({})},
                            {"content", tn_null()}})},
       {"response", tn_null()},
       {"unknown_future_field", tn_dict({{"x", tn_int(1)}})}});
  auto r = import_mitmproxy(rec);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  REQUIRE(r->flows.size() == 1);
  CHECK(r->flows[0].client_address == "[::1]:5000");
  CHECK(r->flows[0].upstream_address == "127.0.0.1:8080");
  CHECK(r->flows[0].request.url() == "http://localhost:8080/");
  CHECK(r->flows[0].request.body.data.empty());
}
