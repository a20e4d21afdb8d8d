// Flows for the store tests and their child process: one with every field set, and small
// deterministic ones (the same index always gives the same flow, so a second process can
// check what the first wrote).
#pragma once

#include <string>

#include "flow/flow.h"

namespace retake::store::test {

inline flow::Flow full_flow() {
  flow::Flow f;
  f.session = "full-session";
  f.run = "run-7";
  f.origin = 12345;
  f.kind = flow::FlowKind::http;
  f.mode = "reverse";
  f.client_address = "127.0.0.1:50000";
  f.upstream_address = "[::1]:8443";
  f.request.method = "POST";
  f.request.scheme = "https";
  f.request.authority = "API.Example.test:8443";
  f.request.path = "/v1/items?q=a%20b&x=1";
  f.request.http_version = "HTTP/1.1";
  f.request.headers = {{"Host", "API.Example.test:8443"},
                       {"X-Dup", "one"},
                       {"x-dup", "two"},
                       {"Content-Type", "application/json"},
                       {"Empty", ""}};
  f.request.body.data = std::string("{\"a\":1,\0\"b\":\"\xff\xfe\"}", 18);
  f.request.body.size = 4096;
  f.request.body.truncated = true;
  f.request.trailers = {{"X-Checksum", "abc"}};
  flow::Response r;
  r.status = 201;
  r.reason = "Created";
  r.http_version = "HTTP/1.1";
  r.headers = {{"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}, {"Content-Length", "5"}};
  r.body.data = "hello";
  r.body.size = 5;
  r.trailers = {{"Grpc-Status", "0"}};
  f.response = r;
  f.error = flow::Error{flow::ErrorKind::upstream_closed, "upstream closed after headers"};
  f.timing = {1700000000000000001, 1700000000000000002, 1700000000000000003,
              1700000000000000004, 1700000000000000005, 1700000000000000006};
  f.client_tls = {true, "api.example.test", "h2", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "", ""};
  f.upstream_tls = {true,
                    "api.example.test",
                    "http/1.1",
                    "TLSv1.2",
                    "ECDHE-RSA-AES128-GCM-SHA256",
                    "CN=api.example.test",
                    "CN=Test CA"};
  flow::WebSocket ws;
  ws.messages.push_back({true, 1, "hi", 1700000000000000010, false, true});  // was compressed
  ws.messages.push_back({false, 2, std::string("\0\x01\x02", 3), 1700000000000000011, true,
                         false});  // cut at the cap
  ws.messages.push_back({true, 8, "\x03\xe8", 1700000000000000012});
  ws.close_code = 1000;
  ws.close_reason = "bye";
  ws.closed_by_client = true;
  f.websocket = ws;
  f.bytes_from_client = 777;
  f.bytes_from_upstream = 888;
  f.marked = ":default:";
  f.comment = "a comment";
  f.tags = {"smoke", "auth", ""};
  return f;
}

// A small GET in `session` to host<i % 3>.test with status 200/404/500 by i % 3.
inline flow::Flow small_flow(int i, const std::string& session = "s1") {
  static const int kStatus[] = {200, 404, 500};
  flow::Flow f;
  f.session = session;
  f.mode = "explicit";
  f.client_address = "127.0.0.1:40000";
  f.request.method = i % 2 ? "POST" : "GET";
  f.request.scheme = "http";
  f.request.authority = "host" + std::to_string(i % 3) + ".test";
  f.request.path = "/item/" + std::to_string(i);
  f.request.http_version = "HTTP/1.1";
  f.request.headers = {{"Host", f.request.authority}, {"Accept", "*/*"}};
  flow::Response r;
  r.status = kStatus[i % 3];
  r.reason = "R";
  r.http_version = "HTTP/1.1";
  r.headers = {{"Content-Type", "text/plain"}};
  r.body.data = "body of " + std::to_string(i);
  r.body.size = r.body.data.size();
  f.response = r;
  f.timing.request_started = 1700000000000000000 + i;
  f.timing.response_ended = 1700000000000000000 + i + 1000;
  return f;
}

}  // namespace retake::store::test
