// Helpers shared by the interop tests: fixture loading, a tnetstring writer for hand-made
// mitmproxy records, and a flow with every field set.
#pragma once

#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "flow/flow.h"
#include "interop/interop.h"

namespace retake::interop::test {

inline std::string fixture_path(const std::string& rel) {
  return std::string(RETAKE_FIXTURES_DIR) + "/interop/" + rel;
}

inline std::string read_fixture(const std::string& rel) {
  std::ifstream in(fixture_path(rel), std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// tnetstring writers, as mitmproxy's io/tnetstring.py dumps values.
inline std::string tn(std::string_view payload, char type) {
  return std::to_string(payload.size()) + ":" + std::string(payload) + type;
}
inline std::string tn_bytes(std::string_view s) {
  return tn(s, ',');
}
inline std::string tn_text(std::string_view s) {
  return tn(s, ';');
}
inline std::string tn_int(long long v) {
  return tn(std::to_string(v), '#');
}
inline std::string tn_float(double v) {
  std::ostringstream o;
  o.precision(17);
  o << v;
  return tn(o.str(), '^');
}
inline std::string tn_bool(bool v) {
  return tn(v ? "true" : "false", '!');
}
inline std::string tn_null() {
  return "0:~";
}
inline std::string tn_list(std::initializer_list<std::string> items) {
  std::string p;
  for (const auto& i : items) p += i;
  return tn(p, ']');
}
inline std::string tn_dict(std::initializer_list<std::pair<std::string, std::string>> items) {
  std::string p;
  for (const auto& [k, v] : items) p += tn_text(k) + v;
  return tn(p, '}');
}

inline ImportOptions lenient() {
  ImportOptions o;
  o.skip_bad = true;
  return o;
}
inline ImportOptions with_session(std::string session) {
  ImportOptions o;
  o.session = std::move(session);
  return o;
}

// A flow with every field set to something other than its default.
inline flow::Flow full_flow() {
  flow::Flow f;
  f.id = 42;
  f.session = "s1";
  f.run = "r1";
  f.origin = 7;
  f.kind = flow::FlowKind::http;
  f.mode = "reverse";
  f.client_address = "127.0.0.1:50000";
  f.upstream_address = "[::1]:8443";
  f.request.method = "POST";
  f.request.scheme = "https";
  f.request.authority = "api.retake.test:8443";
  f.request.path = "/v1/items?q=a%20b&x=1";
  f.request.http_version = "HTTP/1.1";
  f.request.headers = {{"Host", "api.retake.test:8443"},
                       {"Content-Type", "application/octet-stream"},
                       {"X-Dup", "1"},
                       {"x-dup", "2"},
                       {"Cookie", "a=1; b=2"}};
  f.request.body.data = std::string("\x00\x01\xff binary \xfe", 13);
  f.request.body.size = 13;
  f.request.trailers = {{"X-Checksum", "abc"}};
  flow::Response r;
  r.status = 200;
  r.reason = "OK";
  r.http_version = "HTTP/1.1";
  r.headers = {{"Content-Type", "text/plain; charset=utf-8"},
               {"Set-Cookie", "sid=xyz; Path=/; HttpOnly"}};
  r.body.data = "héllo wörld";
  r.body.size = 4096;
  r.body.truncated = true;
  r.trailers = {{"grpc-status", "0"}};
  f.response = r;
  f.error = flow::Error{flow::ErrorKind::upstream_closed, "closed early"};
  f.timing = {1'700'000'000'000'000'001, 1'700'000'000'100'000'002, 1'700'000'000'200'000'003,
              1'700'000'000'050'000'004, 1'700'000'000'300'000'005, 1'700'000'000'400'000'006};
  f.client_tls = {true, "api.retake.test", "http/1.1", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "", ""};
  f.upstream_tls = {true,
                    "api.retake.test",
                    "h2",
                    "TLSv1.2",
                    "ECDHE-RSA-AES128-GCM-SHA256",
                    "CN=api.retake.test",
                    "CN=Test CA"};
  flow::WebSocket ws;
  ws.messages = {{true, 1, "hello", 1'700'000'000'500'000'000},
                 {false, 2, std::string("\x00\xff", 2), 1'700'000'000'600'000'000},
                 {true, 8, std::string("\x03\xe8", 2), 1'700'000'000'700'000'000}};
  ws.close_code = 1000;
  ws.close_reason = "done";
  ws.closed_by_client = true;
  f.websocket = ws;
  f.bytes_from_client = 1234;
  f.bytes_from_upstream = 5678;
  f.marked = ":star:";
  f.comment = "a comment";
  f.tags = {"smoke", "ünïcode"};
  return f;
}

}  // namespace retake::interop::test
