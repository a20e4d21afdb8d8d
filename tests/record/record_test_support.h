// Shared by the tests of src/record: a real upstream subprocess, a collecting sink, the
// Recorder in-process on an ephemeral loopback port, curl and raw-socket clients.
#pragma once
#include "record/recorder.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

extern char** environ;

using namespace retake;
using namespace std::chrono_literals;
using flow::ErrorKind;

namespace record_test {

// A child process with its stdin and stdout piped; killed and reaped on destruction.
class Subprocess {
 public:
  explicit Subprocess(std::vector<std::string> argv) {
    int in[2], out[2];
    REQUIRE(pipe(in) == 0);
    REQUIRE(pipe(out) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    REQUIRE(posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }
  ~Subprocess() {
    close(stdin_);
    close(stdout_);
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  // One line of stdout, waiting at most `timeout`.
  std::string read_line(std::chrono::milliseconds timeout = 10s) {
    std::string line;
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{stdout_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char c;
      if (read(stdout_, &c, 1) != 1) break;
      if (c == '\n') return line;
      line.push_back(c);
    }
    return line;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
};

struct Upstream {
  // `extra`: arguments for the script, e.g. {"--tls", cert, key} for an HTTPS upstream.
  explicit Upstream(std::vector<std::string> extra = {}) : proc(argv(std::move(extra))) {
    std::string line = proc.read_line();
    REQUIRE_MESSAGE(!line.empty(), "the test upstream did not start");
    port = static_cast<uint16_t>(std::stoi(line));
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
  std::string authority() const { return "127.0.0.1:" + std::to_string(port); }
  static std::vector<std::string> argv(std::vector<std::string> extra) {
    std::vector<std::string> a{"python3",
                               std::string(RETAKE_RECORD_TEST_DIR) + "/http1_upstream.py"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  Subprocess proc;
  uint16_t port = 0;
};

class CollectingSink : public flow::FlowSink {
 public:
  bool offer(flow::Flow&& f) override {
    std::lock_guard lock(mutex_);
    flows_.push_back(std::move(f));
    cv_.notify_all();
    return true;
  }
  // The first `n` flows, waiting (bounded) for them; fewer when they did not come.
  std::vector<flow::Flow> wait_for(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return flows_.size() >= n; });
    return flows_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<flow::Flow> flows_;
};

struct Proxy {
  explicit Proxy(record::RecorderOptions o) {
    o.listen_host = "127.0.0.1";
    o.listen_port = 0;
    if (o.threads == 0) o.threads = 2;
    auto r = record::Recorder::create(o, sink);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    rec = std::move(r.value());
    auto a = rec->start();
    REQUIRE_MESSAGE(a.ok(), a.status().to_string());
    address = a.value();
    port = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  }
  ~Proxy() { rec->stop(500ms); }
  std::string url() const { return "http://" + address; }
  CollectingSink sink;
  std::unique_ptr<record::Recorder> rec;
  std::string address;
  uint16_t port = 0;
};

inline record::RecorderOptions explicit_options() {
  return {};
}
inline record::RecorderOptions reverse_options(const Upstream& up) {
  record::RecorderOptions o;
  REQUIRE(record::parse_mode("reverse:" + up.url(""), o).ok());
  return o;
}

// Runs a shell command (always bounded by curl's -m) and returns its stdout.
inline std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}
inline std::string curl(const std::string& args) {
  return run("curl -sS -m 15 " + args + " 2>&1");
}

inline std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i % (251 * 64)) % 251);
  return s;
}

// Sends `bytes` on a fresh loopback connection, then reads until EOF or `timeout`.
inline std::string raw_exchange(uint16_t port, const std::string& bytes,
                                std::chrono::milliseconds timeout = 5s, bool* closed = nullptr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string got;
  bool eof = false;
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      eof = true;
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (closed) *closed = eof;
  return got;
}

inline uint16_t closed_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A WebSocket echo server (tests/record/ws_peer.py, python3-websockets) on an ephemeral port.
struct WsServer {
  explicit WsServer(std::vector<std::string> extra = {}) : proc(argv(std::move(extra))) {
    std::string line = proc.read_line();
    REQUIRE_MESSAGE(!line.empty(), "the WebSocket test server did not start");
    port = static_cast<uint16_t>(std::stoi(line));
  }
  static std::vector<std::string> argv(std::vector<std::string> extra) {
    std::vector<std::string> a{"/usr/bin/python3",
                               std::string(RETAKE_RECORD_TEST_DIR) + "/ws_peer.py", "server"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  Subprocess proc;
  uint16_t port = 0;
};

// ws_peer.py's client (python3-websockets) with `args`; its output ("ok\n" on success).
inline std::string ws_client(const std::string& args) {
  return run("timeout 30 /usr/bin/python3 " + std::string(RETAKE_RECORD_TEST_DIR) +
             "/ws_peer.py client " + args + " 2>&1");
}

// Whether `ws` holds a message with this direction, opcode and payload (and a timestamp).
inline bool has_message(const flow::WebSocket& ws, bool from_client, uint8_t opcode,
                        const std::string& payload) {
  for (const auto& m : ws.messages)
    if (m.from_client == from_client && m.opcode == opcode && m.payload == payload &&
        m.timestamp > 0)
      return true;
  return false;
}

// The flow of the exchange both WebSocket clients of these tests run (ws_peer.py client, and
// ws_h2_peer.py client echo): "hello", 00 01 02, "frag1"+"frag2" echoed, closed 4001 "done" by
// the client. `status`: the upstream's answer (101 over HTTP/1.1, 200 over HTTP/2); `deflate`:
// whether permessage-deflate was negotiated (the messages are then stored inflated).
inline void check_ws_flow(const flow::Flow& f, int status = 101, bool deflate = true) {
  CHECK(f.kind == flow::FlowKind::http);
  CHECK_MESSAGE(!f.error.has_value(), (f.error ? f.error->message : std::string()));
  REQUIRE(f.response.has_value());
  CHECK(f.response->status == status);
  auto accepted = f.response->headers.get("Sec-WebSocket-Extensions");
  CHECK((accepted.value_or("").find("permessage-deflate") != std::string_view::npos) == deflate);
  REQUIRE(f.websocket.has_value());
  const auto& ws = *f.websocket;
  CHECK(has_message(ws, true, 1, "hello"));
  CHECK(has_message(ws, false, 1, "hello"));
  CHECK(has_message(ws, true, 2, std::string("\x00\x01\x02", 3)));
  CHECK(has_message(ws, false, 2, std::string("\x00\x01\x02", 3)));
  CHECK(has_message(ws, true, 1, "frag1frag2"));  // reassembled from two frames
  CHECK(has_message(ws, false, 1, "frag1frag2"));
  for (const auto& m : ws.messages)
    if (m.opcode == 1 || m.opcode == 2) CHECK(m.compressed == deflate);
  CHECK(ws.close_code == 4001);
  CHECK(ws.close_reason == "done");
  CHECK(ws.closed_by_client);
  CHECK(f.bytes_from_client > 0);
  CHECK(f.bytes_from_upstream > 0);
}

}  // namespace record_test

using namespace record_test;
