// End-to-end tests of the server replay with real clients (curl and python3's http.client)
// against a ServerReplay started on an ephemeral loopback port. Plain POSIX sockets for the
// raw-wire cases and for the counting upstream keep this file light to compile.
#include "replay/server/server_replay.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "replay/server/refresh.h"

using namespace retake;
using namespace retake::replay::server;

namespace {

const std::string kTestDir = TESTS_SERVE_DIR;

struct ProcessResult {
  int exit_code = -1;
  std::string out;
};

// Runs a shell command bounded by coreutils' timeout, capturing stdout.
ProcessResult run(const std::string& command) {
  ProcessResult r;
  FILE* p = popen(("timeout 20 " + command).c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string temp_path(const std::string& name) {
  static std::atomic<int> counter{0};
  return "/tmp/retake_serve_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++) +
         "_" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

flow::Flow make_flow(uint64_t id, std::string method, std::string path, int status,
                     std::string body, std::string authority = "api.example.com:8080") {
  flow::Flow f;
  f.id = id;
  f.session = "s";
  f.request.method = std::move(method);
  f.request.scheme = "http";
  f.request.authority = std::move(authority);
  f.request.path = std::move(path);
  f.request.http_version = "HTTP/1.1";
  f.timing.request_started = 1'000'000'000'000'000'000 + static_cast<int64_t>(id) * 1'000'000;
  f.timing.response_started = f.timing.request_started + 1'000'000;
  flow::Response r;
  r.status = status;
  r.reason = status == 200 ? "OK" : "Custom Reason";
  r.http_version = "HTTP/1.1";
  r.headers.add("Content-Type", "application/octet-stream");
  r.headers.add("Transfer-Encoding", "chunked");  // recorded framing: must be replaced
  r.body.data = std::move(body);
  r.body.size = r.body.data.size();
  f.response = std::move(r);
  return f;
}

ServeOptions quiet_options() {
  ServeOptions o;
  o.threads = 2;
  o.log = [](std::string_view) {};
  return o;
}

std::unique_ptr<ServerReplay> start_server(std::vector<flow::Flow> flows, ServeOptions options,
                                           std::string& address) {
  auto server = ServerReplay::create(std::move(flows), std::move(options));
  REQUIRE(server.ok());
  auto bound = (*server)->start();
  REQUIRE(bound.ok());
  address = bound.value();
  return std::move(server.value());
}

// A loopback listener that counts accepted connections and answers each with a fixed response.
class CountingUpstream {
 public:
  CountingUpstream() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd_, 16) == 0);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~CountingUpstream() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      ++accepted_;
      std::string got;
      char buf[2048];
      pollfd pc{c, POLLIN, 0};
      while (got.find("\r\n\r\n") == std::string::npos && poll(&pc, 1, 2000) > 0) {
        ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      std::string reply =
          "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nlive upstream";
      send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      close(c);
    }
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// Sends raw bytes to host:port and returns everything read until the peer closes (2 s cap).
std::string raw_exchange(const std::string& address, const std::string& bytes) {
  auto colon = address.rfind(':');
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  pollfd p{fd, POLLIN, 0};
  while (poll(&p, 1, 2000) > 0) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string curl(const std::string& args) {
  return run("curl -s " + args).out;
}

}  // namespace

TEST_CASE("curl gets the recorded status and a byte-identical body with recorded headers") {
  std::string binary("\x00\x01\xff\xfe gzip-looking bytes \x1f\x8b\x08", 26);
  auto f = make_flow(7, "GET", "/blob?v=1", 200, binary);
  f.response->headers.add("Content-Encoding", "gzip");
  f.response->headers.add("X-Recorded", "yes");
  auto g = make_flow(8, "GET", "/teapot", 418, "short and stout");
  std::string address;
  auto server = start_server({f, g}, quiet_options(), address);

  auto out_file = temp_path("body");
  auto code = curl("-o " + out_file + " -w '%{http_code}' http://" + address + "/blob?v=1");
  CHECK(code == "200");
  CHECK(read_file(out_file) == binary);
  std::remove(out_file.c_str());

  auto headers = curl("-D - -o /dev/null http://" + address + "/blob?v=1");
  CHECK(headers.find("Content-Encoding: gzip\r\n") != std::string::npos);
  CHECK(headers.find("X-Recorded: yes\r\n") != std::string::npos);
  CHECK(headers.find("Content-Length: 26\r\n") != std::string::npos);
  CHECK(headers.find("Transfer-Encoding") == std::string::npos);
  CHECK(headers.find("X-Retake-Match: 7\r\n") != std::string::npos);

  auto teapot = curl("-D - http://" + address + "/teapot");
  CHECK(teapot.find("HTTP/1.1 418 Custom Reason\r\n") == 0);
  CHECK(teapot.find("short and stout") != std::string::npos);

  auto report = server->report();
  CHECK(report.hits == 3);
  CHECK(report.misses == 0);
  CHECK(report.served_flows == std::vector<uint64_t>{7, 8});
}

TEST_CASE(
    "python's http.client on one keep-alive connection gets repeated requests in recorded order") {
  std::vector<flow::Flow> flows{make_flow(1, "GET", "/seq", 200, "first"),
                                make_flow(2, "GET", "/seq", 201, "second"),
                                make_flow(3, "GET", "/seq", 202, "third")};
  std::string address;
  auto server = start_server(flows, quiet_options(), address);
  auto r = run("python3 " + kTestDir + "/http_client.py " + address +
               " GET:/seq GET:/seq GET:/seq GET:/seq");
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.out);
  std::vector<std::string> got;
  for (std::string line; std::getline(lines, line);) got.push_back(line);
  REQUIRE(got.size() == 4);
  auto hex = [](std::string_view s) {
    std::string h;
    for (unsigned char c : s) {
      char b[3];
      std::snprintf(b, sizeof b, "%02x", c);
      h += b;
    }
    return h;
  };
  CHECK(got[0].find("\"status\": 200, \"body_hex\": \"" + hex("first") + "\"") !=
        std::string::npos);
  CHECK(got[1].find("\"status\": 201, \"body_hex\": \"" + hex("second") + "\"") !=
        std::string::npos);
  CHECK(got[2].find("\"status\": 202, \"body_hex\": \"" + hex("third") + "\"") !=
        std::string::npos);
  // Default repeat-last.
  CHECK(got[3].find("\"status\": 202, \"body_hex\": \"" + hex("third") + "\"") !=
        std::string::npos);
}

TEST_CASE("on-exhausted cycle and miss change what comes after the last recording") {
  std::vector<flow::Flow> flows{make_flow(1, "GET", "/n", 200, "a"),
                                make_flow(2, "GET", "/n", 200, "b")};
  {
    auto o = quiet_options();
    o.match.on_exhausted = OnExhausted::cycle;
    std::string address;
    auto server = start_server(flows, o, address);
    std::string got;
    for (int i = 0; i < 5; ++i) got += curl("http://" + address + "/n");
    CHECK(got == "ababa");
  }
  {
    auto o = quiet_options();
    o.match.on_exhausted = OnExhausted::miss;
    std::string address;
    auto server = start_server(flows, o, address);
    CHECK(curl("http://" + address + "/n") == "a");
    CHECK(curl("http://" + address + "/n") == "b");
    for (int i = 0; i < 2; ++i) {
      auto third = curl("-D - http://" + address + "/n");
      CHECK(third.find("HTTP/1.1 404") == 0);
      CHECK(third.find("X-Retake-Miss: exhausted") != std::string::npos);
    }
  }
}

TEST_CASE("each answered request is logged unless log_hits is off; misses always are") {
  std::vector<flow::Flow> flows{make_flow(7, "GET", "/n", 200, "a")};
  for (bool log_hits : {true, false}) {
    CAPTURE(log_hits);
    auto lines = std::make_shared<std::vector<std::string>>();
    auto mutex = std::make_shared<std::mutex>();
    auto o = quiet_options();
    o.match.on_exhausted = OnExhausted::miss;
    o.log_hits = log_hits;
    o.log = [lines, mutex](std::string_view line) {
      std::lock_guard lock(*mutex);
      lines->emplace_back(line);
    };
    std::string address;
    auto server = start_server(flows, o, address);
    CHECK(curl("http://" + address + "/n") == "a");
    curl("http://" + address + "/n");  // exhausted
    curl("http://" + address + "/other");
    server->stop();
    std::lock_guard lock(*mutex);
    REQUIRE(lines->size() == (log_hits ? 3u : 2u));
    size_t i = 0;
    if (log_hits)
      CHECK((*lines)[i++] == "GET http://api.example.com:8080/n -> 200 (flow #7, 1/1)");
    CHECK((*lines)[i].rfind("MISS GET http://api.example.com:8080/n ", 0) == 0);
    CHECK((*lines)[i++].find("Every recorded response for GET http://api.example.com:8080/n "
                             "was served already") != std::string::npos);
    CHECK((*lines)[i].rfind("MISS GET http://api.example.com:8080/other ", 0) == 0);
  }
}

TEST_CASE("a miss answers 404 explaining the differing path and query parameter, JSON on request") {
  auto o = quiet_options();
  std::string address;
  auto server = start_server({make_flow(1, "GET", "/items?page=2", 200, "x")}, o, address);
  auto text = curl("-D - 'http://" + address + "/items?page=3'");
  CHECK(text.find("HTTP/1.1 404") == 0);
  CHECK(text.find("query parameter 'page' differs (recorded '2', requested '3')") !=
        std::string::npos);
  auto path = curl("'http://" + address + "/itemz?page=2'");
  CHECK(path.find("path differs (recorded '/items', requested '/itemz')") != std::string::npos);
  auto json = curl("-H 'Accept: application/json' 'http://" + address + "/items?page=3'");
  CHECK(json.find("\"reason\":\"no_match\"") != std::string::npos);
  CHECK(json.find("\"part\":\"query\"") != std::string::npos);
  CHECK(json.find("\"name\":\"page\"") != std::string::npos);

  auto report = server->report();
  CHECK(report.requests == 3);
  CHECK(report.misses == 3);
  REQUIRE(report.missed.size() == 3);
  CHECK(report.missed[0].explanation.candidates.at(0).flow_id == 1);
  CHECK(report.unserved_flows == std::vector<uint64_t>{1});
  CHECK(report.to_text().find("MISS GET http://api.example.com:8080/items?page=3") !=
        std::string::npos);
}

TEST_CASE("the JSON-field ignore makes a request with a fresh request id match over HTTP") {
  auto f = make_flow(1, "POST", "/orders", 201, "created");
  f.request.headers.add("Content-Type", "application/json");
  f.request.body.data = R"({"meta":{"requestId":"abc"},"qty":2})";
  auto o = quiet_options();
  {
    std::string address;
    auto server = start_server({f}, o, address);
    auto miss = curl(
        "-H 'Content-Type: application/json' --data '{\"meta\":{\"requestId\":\"zzz\"},\"qty\":2}' "
        "http://" +
        address + "/orders");
    CHECK(miss.find(
              "JSON field $.meta.requestId differs (recorded '\"abc\"', requested '\"zzz\"')") !=
          std::string::npos);
  }
  o.match.ignore_fields = {"$.meta.requestId"};
  std::string address;
  auto server = start_server({f}, o, address);
  auto hit = curl(
      "-w ' %{http_code}' -H 'Content-Type: application/json' --data "
      "'{\"qty\":2,\"meta\":{\"requestId\":\"zzz\"}}' http://" +
      address + "/orders");
  CHECK(hit == "created 201");
}

TEST_CASE(
    "the default miss policy opens no upstream connection, even after every recording is used") {
  CountingUpstream upstream;
  std::string authority = "127.0.0.1:" + std::to_string(upstream.port());
  auto o = quiet_options();
  o.match.on_exhausted = OnExhausted::miss;
  std::string address;
  auto server = start_server({make_flow(1, "GET", "/once", 200, "one", authority)}, o, address);
  CHECK(curl("http://" + address + "/once") == "one");
  for (int i = 0; i < 3; ++i) {
    CHECK(curl("-o /dev/null -w '%{http_code}' http://" + address + "/once") == "404");
    CHECK(curl("-o /dev/null -w '%{http_code}' http://" + address + "/other") == "404");
  }
  CHECK(upstream.accepted() == 0);
}

TEST_CASE("on-miss 502, kill and forward") {
  CountingUpstream upstream;
  std::string authority = "127.0.0.1:" + std::to_string(upstream.port());
  std::vector<flow::Flow> flows{make_flow(1, "GET", "/known", 200, "recorded", authority)};
  {
    auto o = quiet_options();
    o.on_miss = OnMiss::bad_gateway;
    std::string address;
    auto server = start_server(flows, o, address);
    CHECK(curl("-o /dev/null -w '%{http_code}' http://" + address + "/unknown") == "502");
  }
  {
    auto o = quiet_options();
    o.on_miss = OnMiss::kill;
    std::string address;
    auto server = start_server(flows, o, address);
    auto r = run("curl -s http://" + address + "/unknown");
    CHECK(r.exit_code == 52);                                   // curl: empty reply from server
    CHECK(curl("http://" + address + "/known") == "recorded");  // hits still answered
  }
  CHECK(upstream.accepted() == 0);
  {
    auto o = quiet_options();
    o.on_miss = OnMiss::forward;
    std::string address;
    auto server = start_server(flows, o, address);
    CHECK(curl("http://" + address + "/unknown") == "live upstream");
    CHECK(curl("http://" + address + "/known") == "recorded");
    CHECK(upstream.accepted() == 1);
    CHECK(server->report().forwarded == 1);
  }
}

TEST_CASE("refresh moves Date and Expires to now; without refresh they stay as recorded") {
  auto f = make_flow(1, "GET", "/dated", 200, "d");
  // Recorded long ago: the shift is large, so a stale header cannot pass by accident.
  f.timing.request_started = 978'307'200'000'000'000;  // 2001-01-01T00:00:00Z
  f.timing.response_started = f.timing.request_started;
  f.response->headers.add("Date", "Mon, 01 Jan 2001 00:00:00 GMT");
  f.response->headers.add("Expires", "Mon, 01 Jan 2001 01:00:00 GMT");
  std::string address;
  auto server = start_server({f}, quiet_options(), address);
  auto headers = curl("-D - -o /dev/null http://" + address + "/dated");
  auto value_of = [&](const std::string& name) {
    auto at = headers.find(name + ": ");
    REQUIRE(at != std::string::npos);
    auto end = headers.find("\r\n", at);
    return headers.substr(at + name.size() + 2, end - at - name.size() - 2);
  };
  auto date = parse_http_date(value_of("Date"));
  auto expires = parse_http_date(value_of("Expires"));
  REQUIRE(date);
  REQUIRE(expires);
  int64_t now = time(nullptr);
  CHECK(std::llabs(*date - now) < 120);
  CHECK(*expires - *date == 3600);

  auto o = quiet_options();
  o.refresh = false;
  std::string address2;
  auto stale = start_server({f}, o, address2);
  auto h2 = curl("-D - -o /dev/null http://" + address2 + "/dated");
  CHECK(h2.find("Date: Mon, 01 Jan 2001 00:00:00 GMT") != std::string::npos);
}

TEST_CASE("latency recorded and fixed delay the answer; none does not") {
  auto f = make_flow(1, "GET", "/slow", 200, "s");
  f.timing.response_started = f.timing.request_started + 400'000'000;  // 400 ms think time
  auto elapsed_ms = [](const std::string& address) {
    auto t0 = std::chrono::steady_clock::now();
    CHECK(curl("http://" + address + "/slow") == "s");
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 t0)
        .count();
  };
  {
    auto o = quiet_options();
    o.latency = *Latency::parse("recorded");
    std::string address;
    auto server = start_server({f}, o, address);
    CHECK(elapsed_ms(address) >= 350);
  }
  {
    auto o = quiet_options();
    o.latency = *Latency::parse("300");
    std::string address;
    auto server = start_server({f}, o, address);
    CHECK(elapsed_ms(address) >= 250);
  }
  {
    auto o = quiet_options();
    std::string address;
    auto server = start_server({f}, o, address);
    CHECK(elapsed_ms(address) < 10'000);
  }
  CHECK_FALSE(Latency::parse("fast"));
  CHECK_FALSE(Latency::parse("-5"));
}

TEST_CASE("malformed input gets 400 and oversized headers 431, then the connection closes") {
  auto o = quiet_options();
  o.header_limit = 1024;
  std::string address;
  auto server = start_server({make_flow(1, "GET", "/", 200, "root")}, o, address);
  auto bad = raw_exchange(address, "THIS IS NOT HTTP\r\n\r\n");
  CHECK(bad.find("HTTP/1.1 400") == 0);
  auto big = raw_exchange(
      address, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n");
  CHECK(big.find("HTTP/1.1 431") == 0);
  auto smuggle = raw_exchange(
      address, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
  CHECK(smuggle.find("HTTP/1.1 400") == 0);
  CHECK(server->report().bad_requests == 3);
  // The server still answers well-formed requests.
  CHECK(curl("http://" + address + "/") == "root");
}

TEST_CASE("HEAD keeps the recorded length without a body; trailers are sent chunked") {
  auto head = make_flow(1, "HEAD", "/h", 200, "");
  head.response->headers.add("Content-Length", "1234");
  auto trailed = make_flow(2, "GET", "/t", 200, "payload");
  trailed.response->trailers.add("X-Checksum", "42");
  auto o = quiet_options();
  o.match_header = false;
  std::string address;
  auto server = start_server({head, trailed}, o, address);
  auto h = raw_exchange(
      address, "HEAD /h HTTP/1.1\r\nHost: api.example.com:8080\r\nConnection: close\r\n\r\n");
  CHECK(h.find("Content-Length: 1234\r\n") != std::string::npos);
  CHECK(h.substr(h.size() - 4) == "\r\n\r\n");
  CHECK(h.find("X-Retake-Match") == std::string::npos);
  auto t = raw_exchange(
      address, "GET /t HTTP/1.1\r\nHost: api.example.com:8080\r\nConnection: close\r\n\r\n");
  CHECK(t.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(t.find("\r\n\r\n7\r\npayload\r\n0\r\nX-Checksum: 42\r\n\r\n") != std::string::npos);
}

TEST_CASE("a multi-origin recording is matched by the Host header the client sends") {
  auto a = make_flow(1, "GET", "/who", 200, "alpha", "alpha.example:80");
  auto b = make_flow(2, "GET", "/who", 200, "beta", "beta.example:80");
  std::string address;
  auto server = start_server({a, b}, quiet_options(), address);
  CHECK(curl("-H 'Host: beta.example' http://" + address + "/who") == "beta");
  CHECK(curl("-H 'Host: alpha.example' http://" + address + "/who") == "alpha");
  auto other = curl("http://" + address + "/who");  // Host: 127.0.0.1:PORT names neither
  CHECK(other.find("host differs") != std::string::npos);
  auto o = quiet_options();
  o.match.ignore_host = true;
  o.match.ignore_port = true;
  std::string address2;
  auto lenient = start_server({a, b}, o, address2);
  CHECK(curl("http://" + address2 + "/who") == "alpha");
}

TEST_CASE("stop drains and a stopped server refuses new connections") {
  std::string address;
  auto server = start_server({make_flow(1, "GET", "/", 200, "x")}, quiet_options(), address);
  CHECK(curl("http://" + address + "/") == "x");
  server->stop();
  server->stop();  // idempotent
  auto r = run("curl -s --max-time 5 http://" + address + "/");
  CHECK(r.exit_code != 0);
}

TEST_CASE("bad serve options are refused at create") {
  auto o = quiet_options();
  o.cert_file = "/nonexistent/cert.pem";
  CHECK(ServerReplay::create({}, o).status().code() == Errc::invalid_argument);
  o.key_file = "/nonexistent/key.pem";
  CHECK(ServerReplay::create({}, o).status().code() == Errc::invalid_argument);
  auto p = quiet_options();
  p.origin = "ftp://x";
  CHECK(ServerReplay::create({}, p).status().code() == Errc::invalid_argument);
  CHECK(on_miss_from_name("404") == OnMiss::not_found);
  CHECK(on_miss_from_name("forward") == OnMiss::forward);
  CHECK_FALSE(on_miss_from_name("418"));
}

TEST_CASE("TLS serving with a given certificate and key answers curl over https") {
  auto dir = temp_path("tls");
  auto made = run(
      "sh -c 'mkdir -p " + dir + " && openssl req -x509 -newkey rsa:2048 -nodes -keyout " + dir +
      "/key.pem -out " + dir + "/cert.pem -days 1 -subj /CN=localhost 2>/dev/null && echo ok'");
  REQUIRE(made.out == "ok\n");
  auto o = quiet_options();
  o.cert_file = dir + "/cert.pem";
  o.key_file = dir + "/key.pem";
  std::string address;
  auto server = start_server({make_flow(1, "GET", "/secure", 200, "over tls")}, o, address);
  CHECK(curl("--cacert " + dir +
             "/cert.pem --resolve localhost:" + address.substr(address.rfind(':') + 1) +
             ":127.0.0.1 https://localhost:" + address.substr(address.rfind(':') + 1) +
             "/secure") == "over tls");
  server->stop();
  run("rm -rf " + dir);
}

TEST_CASE("a recorded WebSocket upgrade is answered with 101 and the recorded server messages") {
  auto f = make_flow(1, "GET", "/ws", 101, "");
  f.response->reason = "Switching Protocols";
  f.response->headers = {};
  f.response->headers.add("Upgrade", "websocket");
  f.response->headers.add("Connection", "Upgrade");
  f.request.headers.add("Upgrade", "websocket");
  flow::WebSocket ws;
  ws.messages.push_back({false, 1, "welcome", 0});
  ws.messages.push_back({true, 1, "hello server", 0});
  ws.messages.push_back({false, 1, "echo: hello server", 0});
  ws.close_code = 1000;
  f.websocket = ws;
  std::string address;
  auto server = start_server({f}, quiet_options(), address);
  auto r = run("python3 " + kTestDir + "/ws_client.py " + address + " /ws recv send:hi recv close");
  CHECK(r.exit_code == 0);
  CHECK(
      r.out ==
      "HTTP/1.1 101 Switching Protocols\nrecv 1 welcome\nrecv 1 echo: hello server\nclose 1000\n");
}
