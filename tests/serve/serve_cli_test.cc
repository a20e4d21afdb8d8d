// `retake serve` as a process: flows written into a real store, the command started on an
// ephemeral port, curl as the client, SIGTERM to stop, the report read from stderr.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "replay/server/session_flows.h"
#include "store/flow_store.h"

using namespace retake;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    static int counter = 0;
    path = "/tmp/retake_serve_cli_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

flow::Flow recorded(std::string session, std::string path, std::string body,
                    std::string request_body = "") {
  flow::Flow f;
  f.session = std::move(session);
  f.request.method = request_body.empty() ? "GET" : "POST";
  f.request.scheme = "http";
  f.request.authority = "api.example.com";
  f.request.path = std::move(path);
  f.request.http_version = "HTTP/1.1";
  if (!request_body.empty()) {
    f.request.headers.add("Content-Type", "application/json");
    f.request.body.data = request_body;
    f.request.body.size = request_body.size();
  }
  f.timing.request_started = flow::now_ns();
  flow::Response r;
  r.status = 200;
  r.reason = "OK";
  r.body.data = std::move(body);
  r.body.size = r.body.data.size();
  f.response = std::move(r);
  return f;
}

void write_store(const std::string& db, std::vector<flow::Flow> flows) {
  store::StoreOptions o;
  o.path = db;
  auto s = store::FlowStore::open(o);
  REQUIRE(s.ok());
  auto ids = (*s)->put(flows);
  REQUIRE(ids.ok());
}

struct Exit {
  int code = -1;
  std::string err;
};

// Runs the serve command to completion (for the error cases), stderr captured.
Exit run_cli(const std::string& args) {
  Exit e;
  FILE* p = popen(("timeout 20 " SERVE_CLI " " + args + " 2>&1 >/dev/null").c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) e.err.append(buf, n);
  int status = pclose(p);
  e.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return e;
}

// A running `serve`: started with stderr on a pipe; address parsed from its banner.
struct Running {
  pid_t pid = -1;
  int err_fd = -1;
  std::string err;
  std::string address;

  explicit Running(const std::vector<std::string>& args) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      dup2(fds[1], 2);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      close(fds[0]);
      std::vector<char*> argv{const_cast<char*>(SERVE_CLI)};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(SERVE_CLI, argv.data());
      _exit(127);
    }
    close(fds[1]);
    err_fd = fds[0];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    const std::string marker = "listening on http://";
    while (std::chrono::steady_clock::now() < deadline) {
      read_some(200);
      auto at = err.find(marker);
      if (at != std::string::npos) {
        auto end = err.find_first_of(" \n", at + marker.size());
        if (end != std::string::npos) {
          address = err.substr(at + marker.size(), end - at - marker.size());
          break;
        }
      }
    }
    REQUIRE_MESSAGE(!address.empty(), err);
  }

  bool read_some(int timeout_ms) {
    pollfd p{err_fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    ssize_t n = read(err_fd, buf, sizeof buf);
    if (n <= 0) return false;
    err.append(buf, static_cast<size_t>(n));
    return true;
  }

  // SIGTERM, then the exit code; the rest of stderr lands in `err`.
  int stop() {
    kill(pid, SIGTERM);
    while (read_some(10'000)) {
    }
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  ~Running() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (err_fd >= 0) close(err_fd);
  }
};

std::string curl(const std::string& args) {
  FILE* p = popen(("timeout 20 curl -s " + args).c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

}  // namespace

TEST_CASE("retake serve answers a stored session's responses and reports misses at exit") {
  TempDir dir;
  std::string db = dir.path + "/db";
  write_store(
      db, {recorded("shop", "/a", "first a"), recorded("shop", "/a", "second a"),
           recorded("shop", "/order", "ordered", R"({"requestId":"r1","sku":7})"),
           recorded("shop", "/unused", "never asked"), recorded("other", "/a", "other session")});
  Running serve({"serve", "--db", db, "--session", "shop", "--listen", "127.0.0.1:0",
                 "--ignore-field", "$.requestId", "--on-exhausted", "cycle"});
  CHECK(curl("http://" + serve.address + "/a") == "first a");
  CHECK(curl("http://" + serve.address + "/a") == "second a");
  CHECK(curl("http://" + serve.address + "/a") == "first a");
  CHECK(curl("-H 'Content-Type: application/json' --data '{\"sku\":7,\"requestId\":\"fresh\"}' "
             "http://" +
             serve.address + "/order") == "ordered");
  auto miss = curl("-w ' %{http_code}' http://" + serve.address + "/b");
  CHECK(miss.find("path differs (recorded '/a', requested '/b')") != std::string::npos);
  CHECK(miss.substr(miss.size() - 4) == " 404");
  CHECK(serve.stop() == 0);
  CHECK(serve.err.find("MISS GET http://api.example.com/b") != std::string::npos);
  CHECK_MESSAGE(
      serve.err.find("5 requests: 4 served from recordings, 1 missed") != std::string::npos,
      serve.err);
  CHECK(serve.err.find("1 never served") != std::string::npos);
}

TEST_CASE("retake serve filters the session with the query language") {
  TempDir dir;
  std::string db = dir.path + "/db";
  write_store(db, {recorded("s", "/keep", "kept"), recorded("s", "/drop", "dropped")});
  Running serve(
      {"serve", "--db", db, "--session", "s", "--listen", "127.0.0.1:0", "--filter", "~u keep"});
  CHECK(curl("http://" + serve.address + "/keep") == "kept");
  CHECK(curl("-o /dev/null -w '%{http_code}' http://" + serve.address + "/drop") == "404");
  CHECK(serve.stop() == 0);
}

TEST_CASE("retake serve refuses bad input with clear errors and exit codes") {
  TempDir dir;
  std::string db = dir.path + "/db";
  write_store(db, {recorded("s", "/x", "x")});

  auto unknown = run_cli("serve --db " + db + " --session nope --listen 127.0.0.1:0");
  CHECK(unknown.code == 1);
  CHECK(unknown.err.find("no session 'nope'") != std::string::npos);
  CHECK(unknown.err.find("sessions: s") != std::string::npos);

  auto no_store = run_cli("serve --db " + dir.path + "/missing --session s --listen 127.0.0.1:0");
  CHECK(no_store.code == 1);

  auto conflict = run_cli("serve --db " + db + " --session s --ignore-body --ignore-field '$.a'");
  CHECK(conflict.code == 2);
  CHECK(conflict.err.find("excludes") != std::string::npos);

  auto bad_policy = run_cli("serve --db " + db + " --session s --on-miss 418");
  CHECK(bad_policy.code == 2);
  CHECK(bad_policy.err.find("--on-miss") != std::string::npos);

  auto bad_path = run_cli("serve --db " + db + " --session s --ignore-field '$.items[oops'");
  CHECK(bad_path.code == 2);
  CHECK(bad_path.err.find("$.items[oops") != std::string::npos);

  auto bad_filter = run_cli("serve --db " + db + " --session s --filter '~c abc'");
  CHECK(bad_filter.code == 2);

  auto no_session = run_cli("serve --db " + db);
  CHECK(no_session.code == 2);

  auto filtered_empty =
      run_cli("serve --db " + db + " --session s --filter '~u nothing-like-this'");
  CHECK(filtered_empty.code == 1);
  CHECK(filtered_empty.err.find("no recorded response") != std::string::npos);
}

TEST_CASE(
    "load_session_flows returns the recorded flows in order, never a replay run's, and refuses "
    "an empty session") {
  TempDir dir;
  std::string db = dir.path + "/db";
  auto no_response = recorded("empty", "/x", "x");
  no_response.response.reset();
  auto replayed = recorded("s", "/1", "what a replay target answered");
  replayed.run = "run-1";  // a client replay's flow, stored in the session it replayed
  write_store(db, {recorded("s", "/1", "1"), recorded("s", "/2", "2"), no_response, replayed});
  store::StoreOptions o;
  o.path = db;
  auto s = store::FlowStore::open(o);
  REQUIRE(s.ok());
  auto flows = replay::server::load_session_flows(**s, "s");
  REQUIRE(flows.ok());
  REQUIRE(flows->size() == 2);  // the replayed flow is not served
  CHECK((*flows)[0].request.path == "/1");
  CHECK((*flows)[0].response->body.data == "1");
  CHECK((*flows)[1].request.path == "/2");
  auto empty = replay::server::load_session_flows(**s, "empty");
  CHECK(empty.status().code() == Errc::failed_precondition);
  auto missing = replay::server::load_session_flows(**s, "missing");
  CHECK(missing.status().code() == Errc::not_found);
}

TEST_CASE("serve_session starts a server replay of a stored session inside a test") {
  TempDir dir;
  std::string db = dir.path + "/db";
  write_store(db, {recorded("s", "/hello", "hello from the store")});
  store::StoreOptions o;
  o.path = db;
  auto s = store::FlowStore::open(o);
  REQUIRE(s.ok());
  replay::server::ServeOptions options;
  options.log = [](std::string_view) {};
  auto server = replay::server::serve_session(**s, "s", options);
  REQUIRE(server.ok());
  s->reset();  // the flows are in memory: the store is not needed any more
  auto bound = (*server)->start();
  REQUIRE(bound.ok());
  CHECK(curl("http://" + bound.value() + "/hello") == "hello from the store");
  CHECK(curl("-o /dev/null -w '%{http_code}' http://" + bound.value() + "/bye") == "404");
  (*server)->stop();
  auto report = (*server)->report();
  CHECK(report.hits == 1);
  CHECK(report.misses == 1);
  REQUIRE(report.missed.size() == 1);
  CHECK(report.missed[0].explanation.text.find("path differs") != std::string::npos);
}

TEST_CASE("--shift-body-time moves the timestamps inside recorded bodies with the Date headers") {
  TempDir dir;
  std::string db = dir.path + "/db";
  // Recorded on 2010-01-01T00:00:00Z: the shift to now is large, so a stale value cannot pass.
  const int64_t recorded_at = 1'262'304'000;
  auto f = recorded("old", "/order",
                    R"({"id":7,"created":"2010-01-01T00:00:00Z","expires":1262307600})");
  f.timing.request_started = recorded_at * 1'000'000'000LL;
  f.timing.response_started = f.timing.request_started;
  f.response->headers.add("Content-Type", "application/json");
  f.response->headers.add("Date", "Fri, 01 Jan 2010 00:00:00 GMT");
  write_store(db, {f});
  const std::string year = std::to_string(1900 + [] {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    return tm.tm_year;
  }());
  {
    Running serve(
        {"serve", "--db", db, "--session", "old", "--listen", "127.0.0.1:0", "--shift-body-time"});
    auto body = curl("http://" + serve.address + "/order");
    CHECK_MESSAGE(body.find("\"created\":\"" + year + "-") != std::string::npos, body);
    // The epoch seconds moved by the same shift: an hour after `created`, near now.
    auto at = body.find("\"expires\":");
    REQUIRE(at != std::string::npos);
    long long expires = std::stoll(body.substr(at + 10));
    long long now = std::time(nullptr);
    CHECK(expires > now + 3000);
    CHECK(expires < now + 3700);
    CHECK(body.find("\"id\":7") != std::string::npos);
    CHECK(serve.stop() == 0);
  }
  {
    Running serve({"serve", "--db", db, "--session", "old", "--listen", "127.0.0.1:0"});
    CHECK(curl("http://" + serve.address + "/order") ==
          R"({"id":7,"created":"2010-01-01T00:00:00Z","expires":1262307600})");
    CHECK(serve.stop() == 0);
  }
  auto bad = run_cli("serve --db " + db +
                     " --session old --listen 127.0.0.1:0 --shift-body-time "
                     "--no-refresh");
  CHECK(bad.code == 2);
  CHECK(bad.err.find("--shift-body-time") != std::string::npos);
  bad = run_cli("serve --db " + db + " --session old --listen 127.0.0.1:0 --jwt-secret k");
  CHECK(bad.code == 2);
  CHECK(bad.err.find("--jwt-secret: only used with shift_body_time") != std::string::npos);
}

TEST_CASE("retake serve --match-rules gives part of a session its own matching options") {
  TempDir dir;
  std::string db = dir.path + "/db";
  write_store(
      db, {recorded("r", "/orders?ts=1&id=7", "order 7"), recorded("r", "/items?ts=1", "items")});
  std::string rules = dir.path + "/rules.yaml";
  {
    std::ofstream out(rules);
    out << "match:\n  - name: orders\n    when: \"~u /orders\"\n    ignore_param: [ts]\n";
  }
  Running serve(
      {"serve", "--db", db, "--session", "r", "--listen", "127.0.0.1:0", "--match-rules", rules});
  CHECK(curl("'http://" + serve.address + "/orders?ts=42&id=7'") == "order 7");
  CHECK(curl("-o /dev/null -w '%{http_code}' 'http://" + serve.address + "/items?ts=42'") == "404");
  CHECK(curl("'http://" + serve.address + "/items?ts=1'") == "items");
  CHECK(serve.stop() == 0);

  {
    std::ofstream out(rules);
    out << "match:\n  - name: orders\n    ignore_parm: [ts]\n";
  }
  auto bad =
      run_cli("serve --db " + db + " --session r --listen 127.0.0.1:0 --match-rules " + rules);
  CHECK(bad.code != 0);
  CHECK_MESSAGE(bad.err.find(rules + " line 3: match rule 'orders': unknown key 'ignore_parm'") !=
                    std::string::npos,
                bad.err);
}
