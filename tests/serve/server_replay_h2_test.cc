// Server replay over HTTP/2: real clients (curl --http2 / --http2-prior-knowledge, nghttp,
// python3-grpcio) against a ServerReplay on an ephemeral loopback port, over h2c and over TLS
// with a certificate minted by retake's CA.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>

#include "replay/server/server_replay.h"

using namespace retake;
using namespace retake::replay::server;

namespace {

struct Output {
  int exit_code = -1;
  std::string out;
};
Output run(const std::string& command) {
  Output r;
  FILE* p = popen(("timeout 30 " + command).c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

flow::Flow flow_of(uint64_t id, const std::string& method, const std::string& path, int status,
                   std::string body, std::string request_body = {}) {
  flow::Flow f;
  f.id = id;
  f.session = "s";
  f.request.method = method;
  f.request.scheme = "http";
  f.request.authority = "api.test:8080";
  f.request.path = path;
  f.request.http_version = "HTTP/2";
  f.request.body.data = std::move(request_body);
  f.request.body.size = f.request.body.data.size();
  flow::Response r;
  r.status = status;
  r.http_version = "HTTP/2";
  r.headers.add("content-type", "text/plain");
  r.headers.add("content-length", "999");  // recorded framing: replaced by the real length
  r.body.data = std::move(body);
  r.body.size = r.body.data.size();
  f.response = std::move(r);
  return f;
}

struct Served {
  Served(std::vector<flow::Flow> flows, ServeOptions o) {
    o.threads = 2;
    o.log = [](std::string_view) {};
    auto s = ServerReplay::create(std::move(flows), std::move(o));
    REQUIRE_MESSAGE(s.ok(), s.status().to_string());
    server = std::move(*s);
    auto bound = server->start();
    REQUIRE(bound.ok());
    address = *bound;
    port = address.substr(address.rfind(':') + 1);
  }
  std::unique_ptr<ServerReplay> server;
  std::string address, port;
};

std::string temp_dir() {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("retake_serve_h2_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace

TEST_CASE("h2c clients get the recorded responses; misses are explained; kill resets the stream") {
  std::vector<flow::Flow> flows{flow_of(1, "GET", "/a", 200, "alpha"),
                                flow_of(2, "GET", "/b", 201, "beta"),
                                flow_of(3, "POST", "/echo", 200, "posted", "payload")};
  flows[2].request.headers.add("content-type", "application/x-www-form-urlencoded");
  Served s(flows, {});
  std::string base = "http://" + s.address;
  auto a =
      run("curl -sS --http2-prior-knowledge -w '|%{http_code}|%{http_version}' " + base + "/a");
  CHECK(a.out == "alpha|200|2");
  auto post = run("curl -sS --http2-prior-knowledge -d payload " + base + "/echo");
  CHECK(post.out == "posted");
  // Three streams multiplexed on one connection by nghttp.
  auto many = run("nghttp -n -s " + base + "/a " + base + "/b " + base + "/nope 2>&1");
  CHECK_MESSAGE(many.exit_code == 0, many.out);
  CHECK(many.out.find(" 201 ") != std::string::npos);
  CHECK(many.out.find(" 404 ") != std::string::npos);
  auto miss = run("curl -sS --http2-prior-knowledge -i " + base + "/a?x=1");
  CHECK(miss.out.find("HTTP/2 404") != std::string::npos);
  CHECK(miss.out.find("x-retake-miss:") != std::string::npos);
  CHECK(miss.out.find("query parameter") != std::string::npos);
  auto report = s.server->report();
  CHECK(report.hits == 4);  // /a (curl), /echo, /a and /b (nghttp)
  CHECK(report.misses == 2);

  ServeOptions kill;
  kill.on_miss = OnMiss::kill;
  Served k(flows, kill);
  auto killed = run("curl -sS --http2-prior-knowledge http://" + k.address + "/nope 2>&1");
  CHECK(killed.exit_code != 0);
  CHECK(killed.out.find("CANCEL") != std::string::npos);
  // The connection's other streams are unaffected.
  CHECK(run("curl -sS --http2-prior-knowledge http://" + k.address + "/a").out == "alpha");
}

TEST_CASE("serve over TLS with a minted certificate speaks h2 and HTTP/1.1 by ALPN") {
  std::string ca = temp_dir();
  ServeOptions o;
  o.tls = true;
  o.ca_dir = ca;
  Served s({flow_of(1, "GET", "/a", 200, "alpha"), flow_of(2, "HEAD", "/h", 200, "")}, o);
  std::string curl = "curl -sS --cacert " + ca + "/retake-ca.pem ";
  std::string url = "https://localhost:" + s.port;
  auto h2 = run(curl + "--http2 -w '|%{http_version}' " + url + "/a");
  CHECK_MESSAGE(h2.out == "alpha|2", h2.out);
  auto h1 = run(curl + "--http1.1 -w '|%{http_version}' " + url + "/a");
  CHECK(h1.out == "alpha|1.1");
  // HEAD keeps the recorded content-length and sends no body.
  auto head = run(curl + "--http2 -I " + url + "/h");
  CHECK(head.out.find("content-length: 999") != std::string::npos);
  std::filesystem::remove_all(ca);
}

TEST_CASE("serve refuses a minted and a given certificate together") {
  ServeOptions o;
  o.tls = true;
  o.cert_file = "/nonexistent.pem";
  o.key_file = "/nonexistent.key";
  auto s = ServerReplay::create({flow_of(1, "GET", "/a", 200, "alpha")}, o);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == Errc::invalid_argument);
}

TEST_CASE("a recorded gRPC conversation replays with its status, message and trailers") {
  auto grpc = [](uint64_t id, const std::string& method, std::string request, std::string reply) {
    flow::Flow f =
        flow_of(id, "POST", "/test.Echo/" + method, 200, std::move(reply), std::move(request));
    f.request.headers.add("content-type", "application/grpc");
    f.request.headers.add("te", "trailers");
    f.response->headers = {};
    f.response->headers.add("content-type", "application/grpc");
    return f;
  };
  using namespace std::string_literals;
  flow::Flow say = grpc(1, "Say", "\0\0\0\0\x02hi"s, "\0\0\0\0\x07"s + "echo:hi");
  say.response->trailers.add("grpc-status", "0");
  say.response->trailers.add("x-trail", "yes");
  // A trailers-only answer: the status in the only header block, no body.
  flow::Flow fail = grpc(2, "Fail", "\0\0\0\0\x01x"s, "");
  fail.response->headers.add("grpc-status", "5");
  fail.response->headers.add("grpc-message", "no such thing");
  flow::Flow stream =
      grpc(3, "Stream", "\0\0\0\0\0"s, "\0\0\0\0\x02r0"s + "\0\0\0\0\x02r1"s + "\0\0\0\0\x02r2"s);
  stream.response->trailers.add("grpc-status", "0");
  Served s({say, fail, stream}, {});
  auto out =
      run("/usr/bin/python3 " TESTS_SERVE_DIR "/../record/grpc_peer.py client " + s.port + " 2>&1");
  CHECK(out.out ==
        "Say OK echo:hi yes\n"
        "Fail NOT_FOUND no such thing\n"
        "Stream OK r0,r1,r2\n");
  CHECK(s.server->report().hits == 3);
}
