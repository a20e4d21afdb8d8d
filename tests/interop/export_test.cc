#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "interop/interop.h"
#include "test_support.h"

using namespace retake;
using namespace retake::interop;
using namespace retake::interop::test;

namespace {

flow::Flow simple_get() {
  flow::Flow f;
  f.request = {
      "GET",    "http",     "127.0.0.1:8080",
      "/a?b=1", "HTTP/1.1", {{"Host", "127.0.0.1:8080"}, {"Accept", "*/*"}, {"User-Agent", "t/1"}},
      {},       {}};
  flow::Response r;
  r.status = 200;
  r.reason = "OK";
  r.http_version = "HTTP/1.1";
  r.headers = {{"Content-Length", "2"}};
  r.body.data = "ok";
  r.body.size = 2;
  f.response = r;
  return f;
}

std::string python() {
  return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

// What a one-shot loopback server saw: the request line, header fields and body.
struct Received {
  std::string line;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string header(const std::string& name) const {
    for (const auto& [k, v] : headers)
      if (flow::iequals(k, name)) return v;
    return "<absent>";
  }
};

constexpr const char* kServer = R"PY(
import base64, json, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); s.settimeout(15)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.settimeout(15)
data = b""
while b"\r\n\r\n" not in data:
    chunk = c.recv(65536)
    if not chunk: break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
lines = head.split(b"\r\n")
headers = [l.split(b":", 1) for l in lines[1:]]
n = 0
for k, v in headers:
    if k.lower() == b"content-length": n = int(v)
while len(body) < n:
    chunk = c.recv(65536)
    if not chunk: break
    body += chunk
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
c.close()
print(json.dumps({"line": lines[0].decode("latin1"),
                  "headers": [[k.decode("latin1"), v.strip().decode("latin1")] for k, v in headers],
                  "body": base64.b64encode(body).decode()}), flush=True)
)PY";

// Runs the exported curl command (with the flow's authority pointed at a loopback server that
// the test starts) and returns what the server received.
std::optional<Received> run_curl(flow::Flow f) {
  if (std::system("command -v curl >/dev/null 2>&1") != 0) return std::nullopt;
  auto dir = std::filesystem::temp_directory_path() /
             ("retake-interop-curl-" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);
  auto script = (dir / "server.py").string();
  {
    std::FILE* s = std::fopen(script.c_str(), "w");
    std::fputs(kServer, s);
    std::fclose(s);
  }
  std::FILE* server = popen(("timeout 30 " + python() + " " + script).c_str(), "r");
  REQUIRE(server != nullptr);
  char port[32] = {};
  REQUIRE(std::fgets(port, sizeof port, server) != nullptr);
  f.request.authority = "127.0.0.1:" + std::to_string(std::atoi(port));
  f.request.headers.set("Host", f.request.authority);
  auto cmd = export_curl(f);
  REQUIRE_MESSAGE(cmd.ok(), cmd.status().to_string());
  auto cmd_file = (dir / "cmd.sh").string();
  {
    std::FILE* c = std::fopen(cmd_file.c_str(), "wb");
    std::fwrite(cmd->data(), 1, cmd->size(), c);
    std::fclose(c);
  }
  int rc = std::system(("timeout 20 sh " + cmd_file + " >/dev/null 2>&1").c_str());
  CHECK(rc == 0);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, server)) > 0) out.append(buf, n);
  pclose(server);
  std::filesystem::remove_all(dir);
  auto doc = boost::json::parse(out);
  Received r;
  r.line = doc.at("line").as_string().c_str();
  for (const auto& h : doc.at("headers").as_array())
    r.headers.emplace_back(h.at(0).as_string().c_str(), h.at(1).as_string().c_str());
  auto b64 = doc.at("body").as_string();
  // Decode via the library's own JSON path: a flow body in base64.
  auto parsed = flow_from_json(R"({"request":{"body":{"base64":")" + std::string(b64) + R"("}}})");
  REQUIRE(parsed.ok());
  r.body = parsed->request.body.data;
  return r;
}

}  // namespace

TEST_CASE("the curl command for a simple GET names the version, headers and URL") {
  auto cmd = export_curl(simple_get());
  REQUIRE(cmd.ok());
  CHECK(cmd.value() ==
        "curl \\\n  --http1.1 \\\n  --path-as-is \\\n  -H 'Accept: */*' \\\n  -H 'User-Agent: t/1' "
        "\\\n  'http://127.0.0.1:8080/a?b=1'\n");
}

TEST_CASE("the curl command quotes hostile header values and picks flags per version") {
  auto f = simple_get();
  f.request.headers.add("X-Q", "it's $HOME `id` \"x\"");
  f.request.http_version = "HTTP/2";
  f.request.scheme = "https";
  auto cmd = export_curl(f);
  REQUIRE(cmd.ok());
  CHECK(cmd->find("-H 'X-Q: it'\\''s $HOME `id` \"x\"'") != std::string::npos);
  CHECK(cmd->find("--http2") != std::string::npos);
  f.request.scheme = "http";
  CHECK(export_curl(f)->find("--http2-prior-knowledge") != std::string::npos);
  f.request.method = "HEAD";
  CHECK(export_curl(f)->find("--head") != std::string::npos);
}

TEST_CASE("curl export refuses tunnels and truncated bodies") {
  auto f = simple_get();
  f.kind = flow::FlowKind::tunnel;
  CHECK(export_curl(f).status().code() == Errc::invalid_argument);
  f = simple_get();
  f.request.body = {"abc", 10, true};
  CHECK(export_curl(f).status().code() == Errc::failed_precondition);
}

TEST_CASE("running the exported curl command sends the recorded binary request byte for byte") {
  flow::Flow f = simple_get();
  f.request.method = "PATCH";
  f.request.path = "/a/../b?x=[1]&y={2}";
  f.request.headers = {{"Host", "x"},
                       {"X-Quote", "it's \"q\" $HOME `x` \\n"},
                       {"X-Empty", ""},
                       {"Content-Type", "application/octet-stream"},
                       {"Content-Length", "999"}};
  std::mt19937 rng(7);
  std::string body(40000, '\0');
  for (auto& c : body) c = static_cast<char>(rng() & 0xff);
  body += "'%\\\n\0end";
  f.request.body = {body, body.size(), false};
  auto got = run_curl(f);
  if (!got) {
    WARN_MESSAGE(false, "curl not installed: skipped");
    return;
  }
  CHECK(got->line == "PATCH /a/../b?x=[1]&y={2} HTTP/1.1");
  CHECK(got->body == body);
  CHECK(got->header("X-Quote") == "it's \"q\" $HOME `x` \\n");
  CHECK(got->header("X-Empty") == "");
  CHECK(got->header("Content-Type") == "application/octet-stream");
  CHECK(got->header("Content-Length") == std::to_string(body.size()));
  CHECK(got->header("User-Agent") == "<absent>");
  CHECK(got->header("Accept") == "<absent>");
  CHECK(got->header("Expect") == "<absent>");
  CHECK(got->headers.size() == 5);  // Host, X-Quote, X-Empty, Content-Type, Content-Length
}

TEST_CASE("running the exported curl command sends a text body starting with @ literally") {
  flow::Flow f = simple_get();
  f.request.method = "POST";
  f.request.headers = {{"Host", "x"}, {"User-Agent", "retake-test"}};
  f.request.body = {"@/etc/passwd 'q' \n line2 ünï", 0, false};
  f.request.body.size = f.request.body.data.size();
  auto got = run_curl(f);
  if (!got) return;
  CHECK(got->line == "POST /a?b=1 HTTP/1.1");
  CHECK(got->body == f.request.body.data);
  CHECK(got->header("User-Agent") == "retake-test");
  CHECK(got->header("Content-Type") == "<absent>");
}

TEST_CASE("raw HTTP export writes both messages as HTTP/1.1 wire text") {
  auto f = simple_get();
  CHECK(export_raw_http(f) ==
        "GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\nUser-Agent: t/1\r\n\r\n"
        "\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

TEST_CASE(
    "raw HTTP export adds Host and Content-Length to HTTP/2 flows and re-chunks chunked bodies") {
  flow::Flow f;
  f.request = {
      "POST",           "https", "h2.test", "/up", "HTTP/2", {{"content-type", "text/plain"}},
      {"hi", 2, false}, {}};
  CHECK(raw_request(f) ==
        "POST /up HTTP/1.1\r\nHost: h2.test\r\ncontent-type: text/plain\r\nContent-Length: "
        "2\r\n\r\nhi");
  flow::Response r;
  r.status = 200;
  r.http_version = "HTTP/1.1";
  r.headers = {{"Transfer-Encoding", "chunked"}};
  r.body = {"hello", 5, false};
  r.trailers = {{"X-T", "1"}};
  f.response = r;
  CHECK(raw_response(f) ==
        "HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n");
}

TEST_CASE("raw HTTP export notes truncated bodies and missing responses") {
  auto f = simple_get();
  f.response->body = {"ok", 5000, true};
  auto raw = export_raw_http(f);
  CHECK(raw.ends_with("ok\n[retake: response body truncated: 2 of 5000 bytes stored]\n"));
  f.response.reset();
  f.error = flow::Error{flow::ErrorKind::upstream_timeout, "no answer in 30s"};
  CHECK(export_raw_http(f).ends_with(
      "\n[retake: no response: upstream_timeout: no answer in 30s]\n"));
}
