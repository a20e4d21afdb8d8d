// End-to-end TLS interception and WebSocket relay: real clients (curl, python3-websockets)
// through the Recorder in-process, to local upstreams (tests/record/http1_upstream.py with
// --tls, tests/record/ws_peer.py) whose certificates a test CA signs. Each test checks what the
// client got AND what was recorded.
#include <openssl/pem.h>

#include <algorithm>
#include <filesystem>

#include "../tls/tls_test_support.h"
#include "net/tls/certificate_authority.h"
#include "record_test_support.h"

namespace {

namespace fs = std::filesystem;
using retake::tls::test::KeyCert;
using retake::tls::test::make_test_ca;
using retake::tls::test::make_test_leaf;
using retake::tls::test::TempDir;

void write_key(const fs::path& path, EVP_PKEY* key) {
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  REQUIRE(PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  fclose(f);
}

// A directory with retake's CA (ca/), a test CA for upstreams (upstream-ca.pem) and upstream
// leaves it signed: good (localhost, 127.0.0.1), wrong-host (only wrong.test) and expired.
struct Pki {
  Pki() {
    auto ca = tls::CertificateAuthority::load_or_create(dir.path() / "ca");
    REQUIRE_MESSAGE(ca.ok(), ca.status().to_string());
    retake_ca = ca->certificate_path().string();
    KeyCert test_ca = make_test_ca("test upstream CA");
    upstream_ca = (dir.path() / "upstream-ca.pem").string();
    tls::test::write_pem(upstream_ca, test_ca.cert.get());
    leaf("good", make_test_leaf(test_ca, "localhost", "DNS:localhost,IP:127.0.0.1", -60, 86400));
    leaf("wrong", make_test_leaf(test_ca, "wrong.test", "DNS:wrong.test", -60, 86400));
    leaf("expired",
         make_test_leaf(test_ca, "localhost", "DNS:localhost,IP:127.0.0.1", -86400 * 3, -86400));
  }
  void leaf(const std::string& name, KeyCert kc) {
    tls::test::write_pem(dir.path() / (name + ".pem"), kc.cert.get());
    write_key(dir.path() / (name + ".key"), kc.key.get());
  }
  std::vector<std::string> upstream_args(const std::string& name) const {
    return {"--tls", (dir.path() / (name + ".pem")).string(),
            (dir.path() / (name + ".key")).string()};
  }
  record::RecorderOptions options() const {
    record::RecorderOptions o;
    o.ca_dir = (dir.path() / "ca").string();
    o.upstream_ca_file = upstream_ca;
    return o;
  }
  TempDir dir;
  std::string retake_ca;
  std::string upstream_ca;
};

std::string https_url(const Upstream& up, const std::string& path) {
  return "https://localhost:" + std::to_string(up.port) + path;
}

// curl through the explicit proxy, pinned to IPv4 loopback; prints the status code last.
std::string curl_via(const Proxy& proxy, const std::string& args) {
  return curl("-4 -w ' %{http_code}' -x " + proxy.url() + " " + args);
}

}  // namespace

TEST_CASE(
    "H1 over intercepted TLS: curl --cacert gets the bytes and both sides' TLS facts are "
    "recorded") {
  Pki pki;
  Upstream up(pki.upstream_args("good"));
  Proxy proxy(pki.options());
  std::string out =
      curl_via(proxy, "--http1.1 --cacert " + pki.retake_ca + " " + https_url(up, "/size/1000") +
                          " " + https_url(up, "/size/10"));
  CHECK(out == pattern(1000) + " 200" + pattern(10) + " 200");
  auto flows = proxy.sink.wait_for(2);
  REQUIRE(flows.size() == 2);
  CHECK(proxy.rec->stats().upstream_connects == 1);  // the CONNECT's connection, then reused
  for (const auto& f : flows) {
    CHECK(f.kind == flow::FlowKind::http);
    CHECK_FALSE(f.error.has_value());
    CHECK(f.request.scheme == "https");
    CHECK(f.request.authority == "localhost:" + std::to_string(up.port));
    CHECK(f.upstream_address == up.authority());
    CHECK(f.client_tls.present);
    CHECK(f.client_tls.sni == "localhost");
    CHECK(f.client_tls.alpn == "http/1.1");
    CHECK(f.client_tls.version.rfind("TLSv1.", 0) == 0);
    CHECK_FALSE(f.client_tls.cipher.empty());
    CHECK(f.upstream_tls.present);
    CHECK(f.upstream_tls.sni == "localhost");
    CHECK(f.upstream_tls.alpn == "http/1.1");
    CHECK(f.upstream_tls.peer_subject.find("CN=localhost") != std::string::npos);
    CHECK(f.upstream_tls.peer_issuer.find("CN=test upstream CA") != std::string::npos);
    REQUIRE(f.response.has_value());
    CHECK(f.response->status == 200);
  }
  CHECK(flows[0].request.path == "/size/1000");
  CHECK(flows[0].response->body.data == pattern(1000));
  CHECK(flows[1].request.path == "/size/10");
}

TEST_CASE("a new CONNECT takes the pooled upstream TLS connection of the one before") {
  Pki pki;
  Upstream up(pki.upstream_args("good"));
  auto o = pki.options();
  o.threads = 1;  // one pool: every client connection lands where the last one left its upstream
  Proxy proxy(o);
  // Three curl runs: three client connections, three CONNECTs, three client TLS handshakes.
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(curl_via(proxy, "--http1.1 --cacert " + pki.retake_ca + " " +
                              https_url(up, "/size/10")) == pattern(10) + " 200");
    proxy.sink.wait_for(static_cast<size_t>(i) + 1);
    // The connection is pooled when its client connection ends.
    for (int w = 0; w < 500 && proxy.rec->stats().active_connections > 0; ++w)
      std::this_thread::sleep_for(10ms);
    REQUIRE(proxy.rec->stats().active_connections == 0);
  }
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  // One upstream TCP (and TLS) connection served all three.
  CHECK(proxy.rec->stats().upstream_connects == 1);
  for (const auto& f : flows) {
    CHECK_FALSE(f.error.has_value());
    CHECK(f.upstream_address == up.authority());
    CHECK(f.upstream_tls.present);
    CHECK(f.upstream_tls.peer_subject.find("CN=localhost") != std::string::npos);
  }
}

TEST_CASE(
    "a client SNI that is not a host name (hey sends host:port) falls back to the CONNECT "
    "host") {
  Pki pki;
  Upstream up(pki.upstream_args("good"));
  Proxy proxy(pki.options());
  // hey does not verify certificates; its SNI is "127.0.0.1:<port>".
  std::string out = run("timeout 30 hey -n 2 -c 1 -x " + proxy.url() + " https://" +
                        up.authority() + "/size/10 2>&1");
  CHECK(out.find("[200]\t2 responses") != std::string::npos);
  auto flows = proxy.sink.wait_for(2);
  REQUIRE(flows.size() == 2);
  CHECK_FALSE(flows[0].error.has_value());
  CHECK(flows[0].client_tls.sni == up.authority());  // recorded as the client sent it
  CHECK(flows[0].upstream_tls.sni.empty());          // an IP: no SNI upstream (RFC 6066)
  CHECK(flows[0].upstream_tls.present);
}

TEST_CASE("an upstream certificate for another host is answered 502 and recorded with the reason") {
  Pki pki;
  Upstream up(pki.upstream_args("wrong"));
  Proxy proxy(pki.options());
  std::string out = curl_via(proxy, "--cacert " + pki.retake_ca + " " + https_url(up, "/size/10"));
  CHECK(out.find("retake: upstream certificate verify failed") != std::string::npos);
  CHECK(out.substr(out.size() - 4) == " 502");
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  REQUIRE(flows[0].error.has_value());
  CHECK(flows[0].error->kind == ErrorKind::upstream_tls_failed);
  CHECK(flows[0].error->message.find("mismatch") != std::string::npos);
  CHECK(flows[0].request.scheme == "https");
  CHECK(flows[0].client_tls.present);
}

TEST_CASE("an expired upstream certificate is refused unless insecure_upstream is set") {
  Pki pki;
  Upstream up(pki.upstream_args("expired"));
  {
    Proxy proxy(pki.options());
    std::string out =
        curl_via(proxy, "--cacert " + pki.retake_ca + " " + https_url(up, "/size/10"));
    CHECK(out.find("expired") != std::string::npos);
    CHECK(out.substr(out.size() - 4) == " 502");
    auto flows = proxy.sink.wait_for(1);
    REQUIRE(flows.size() == 1);
    REQUIRE(flows[0].error.has_value());
    CHECK(flows[0].error->kind == ErrorKind::upstream_tls_failed);
    CHECK(flows[0].error->message.find("certificate has expired") != std::string::npos);
  }
  auto o = pki.options();
  o.insecure_upstream = true;
  Proxy proxy(o);
  std::string out = curl_via(proxy, "--cacert " + pki.retake_ca + " " + https_url(up, "/size/10"));
  CHECK(out == pattern(10) + " 200");
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  CHECK_FALSE(flows[0].error.has_value());
  CHECK(flows[0].upstream_tls.present);
}

TEST_CASE("a client that rejects retake's certificate is recorded as tls_failed with the alert") {
  Pki pki;
  Upstream up(pki.upstream_args("good"));
  Proxy proxy(pki.options());
  // No --cacert: curl does not trust retake's CA and aborts the handshake with an alert.
  std::string out = curl_via(proxy, https_url(up, "/size/10"));
  CHECK(out.find("certificate") != std::string::npos);
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  const auto& f = flows[0];
  CHECK(f.kind == flow::FlowKind::tls_failed);
  CHECK(f.request.method == "CONNECT");
  CHECK(f.request.authority == "localhost:" + std::to_string(up.port));
  CHECK(f.client_tls.sni == "localhost");
  REQUIRE(f.error.has_value());
  CHECK(f.error->kind == ErrorKind::tls_handshake_failed);
  CHECK(f.error->message.find("alert") != std::string::npos);
}

TEST_CASE("garbage or an aborted handshake after CONNECT is recorded, and the proxy goes on") {
  Pki pki;
  Upstream up(pki.upstream_args("good"));
  Proxy proxy(pki.options());
  std::string connect =
      "CONNECT localhost:" + std::to_string(up.port) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  // 1. A handshake record header followed by nonsense.
  std::string got =
      raw_exchange(proxy.port, connect + std::string("\x16\x03\x01\x00\x05hello", 10));
  CHECK(got.rfind("HTTP/1.1 200 Connection established\r\n\r\n", 0) == 0);
  // 2. The start of a handshake record, then the client hangs up.
  raw_exchange(proxy.port, connect + std::string("\x16\x03\x01\x02\x00\x01\x00", 7), 500ms);
  // 3. Not TLS and not HTTP: served as HTTP, so a 400.
  got = raw_exchange(proxy.port, connect + std::string("\x00\x01\x02garbage\r\n\r\n", 14));
  CHECK(got.find("HTTP/1.1 400") != std::string::npos);
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  int tls_failed = 0, bad_request = 0;
  for (const auto& f : flows) {
    REQUIRE(f.error.has_value());
    if (f.kind == flow::FlowKind::tls_failed) {
      ++tls_failed;
      CHECK(f.error->kind == ErrorKind::tls_handshake_failed);
      CHECK(f.error->message.find("client TLS handshake failed") == 0);
    } else {
      ++bad_request;
      CHECK(f.error->kind == ErrorKind::bad_request);
    }
  }
  CHECK(tls_failed == 2);
  CHECK(bad_request == 1);
  // The proxy still intercepts the next client.
  std::string out = curl_via(proxy, "--cacert " + pki.retake_ca + " " + https_url(up, "/size/5"));
  CHECK(out == pattern(5) + " 200");
}

TEST_CASE("plain HTTP inside CONNECT is detected and recorded as http flows") {
  Upstream up;
  Proxy proxy(explicit_options());
  // -p: curl sends CONNECT, then plain HTTP/1.1 through the tunnel.
  std::string out =
      curl("-p -x " + proxy.url() + " " + up.url("/size/3000") + " " + up.url("/size/7"));
  CHECK(out == pattern(3000) + pattern(7));
  auto flows = proxy.sink.wait_for(2);
  REQUIRE(flows.size() == 2);
  for (const auto& f : flows) {
    CHECK(f.kind == flow::FlowKind::http);
    CHECK(f.request.scheme == "http");
    CHECK(f.request.authority == up.authority());
    CHECK_FALSE(f.client_tls.present);
    CHECK_FALSE(f.error.has_value());
  }
  CHECK(flows[0].request.path == "/size/3000");
  CHECK(flows[1].request.path == "/size/7");
  CHECK(proxy.rec->stats().upstream_connects == 1);
}

TEST_CASE("ignore_hosts and allow_hosts pass TLS through undecrypted as a tunnel flow") {
  Pki pki;
  Upstream up(pki.upstream_args("good"));
  for (auto [ignore, allow] : {std::pair{"^localhost$", ""}, std::pair{"", "^example\\.com"}}) {
    CAPTURE(ignore);
    CAPTURE(allow);
    auto o = pki.options();
    o.ignore_hosts = ignore;
    o.allow_hosts = allow;
    Proxy proxy(o);
    // Passed through: the client sees the upstream's own certificate, signed by the test CA.
    std::string out =
        curl_via(proxy, "--cacert " + pki.upstream_ca + " " + https_url(up, "/size/100"));
    CHECK(out == pattern(100) + " 200");
    auto flows = proxy.sink.wait_for(1);
    REQUIRE(flows.size() == 1);
    CHECK(flows[0].kind == flow::FlowKind::tunnel);
    CHECK(flows[0].request.method == "CONNECT");
    CHECK(flows[0].bytes_from_client > 100);
    CHECK(flows[0].bytes_from_upstream > 100);
    CHECK_FALSE(flows[0].client_tls.present);
  }
}

TEST_CASE("create rejects an invalid ignore_hosts pattern and a missing upstream CA file") {
  CollectingSink sink;
  record::RecorderOptions o;
  o.ignore_hosts = "(unclosed";
  auto r = record::Recorder::create(o, sink);
  CHECK(r.status().code() == Errc::invalid_argument);
  CHECK(r.status().message().find("ignore_hosts") != std::string::npos);
  o = {};
  o.upstream_ca_file = "/nonexistent/ca.pem";
  // Checked at create although the upstream TLS context is otherwise made on first use.
  auto missing = record::Recorder::create(o, sink);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("upstream_ca_file") != std::string::npos);
  o = {};
  o.cert_file = "/nonexistent/cert.pem";
  CHECK(record::Recorder::create(o, sink).status().code() == Errc::invalid_argument);
}

TEST_CASE("reverse mode to an https upstream verifies it and records scheme https") {
  Pki pki;
  Upstream up(pki.upstream_args("good"));
  auto o = pki.options();
  REQUIRE(record::parse_mode("reverse:https://localhost:" + std::to_string(up.port), o).ok());
  Proxy proxy(o);
  std::string out =
      curl("-w ' %{http_code}' " + proxy.url() + "/size/50 " + proxy.url() + "/size/5");
  CHECK(out == pattern(50) + " 200" + pattern(5) + " 200");
  auto flows = proxy.sink.wait_for(2);
  REQUIRE(flows.size() == 2);
  CHECK(proxy.rec->stats().upstream_connects == 1);  // the TLS connection was pooled and reused
  for (const auto& f : flows) {
    CHECK(f.mode == "reverse");
    CHECK(f.request.scheme == "https");
    CHECK(f.request.authority == "localhost:" + std::to_string(up.port));
    CHECK_FALSE(f.client_tls.present);
    CHECK(f.upstream_tls.present);
    CHECK(f.upstream_tls.sni == "localhost");
  }
}

TEST_CASE("new upstream TLS connections after the upstream hung up resume and still verify") {
  Pki pki;
  Upstream up(pki.upstream_args("good"));
  auto o = pki.options();
  REQUIRE(record::parse_mode("reverse:https://localhost:" + std::to_string(up.port), o).ok());
  Proxy proxy(o);
  // /size-close/N: the upstream closes after each response, so each request needs a new TLS
  // connection (resumed from the session of the one before).
  std::string url = proxy.url() + "/size-close/10";
  std::string out = curl("-w ' %{http_code}' " + url + " " + url + " " + url);
  CHECK(out == pattern(10) + " 200" + pattern(10) + " 200" + pattern(10) + " 200");
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  CHECK(proxy.rec->stats().upstream_connects == 3);
  for (const auto& f : flows) {
    CHECK_FALSE(f.error.has_value());
    CHECK(f.upstream_tls.peer_subject.find("CN=localhost") != std::string::npos);
  }
}

TEST_CASE("a TLS listener in reverse mode serves a minted certificate or the given one") {
  Pki pki;
  Upstream up;
  {
    auto o = reverse_options(up);
    o.ca_dir = pki.options().ca_dir;
    o.listen_tls = true;
    Proxy proxy(o);
    std::string out = curl("-w ' %{http_code}' --cacert " + pki.retake_ca + " https://" +
                           proxy.address + "/size/20");
    CHECK(out == pattern(20) + " 200");
    auto flows = proxy.sink.wait_for(1);
    REQUIRE(flows.size() == 1);
    CHECK(flows[0].client_tls.present);
    CHECK(flows[0].request.scheme == "http");  // the upstream is plain
    CHECK_FALSE(flows[0].upstream_tls.present);
  }
  auto o = reverse_options(up);
  o.cert_file = (pki.dir.path() / "good.pem").string();
  o.key_file = (pki.dir.path() / "good.key").string();
  Proxy proxy(o);
  std::string port = std::to_string(proxy.port);
  std::string out =
      curl("-w ' %{http_code}' --cacert " + pki.upstream_ca + " --resolve localhost:" + port +
           ":127.0.0.1 https://localhost:" + port + "/size/20");
  CHECK(out == pattern(20) + " 200");
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  CHECK(flows[0].client_tls.sni == "localhost");
}

TEST_CASE("WebSocket through the reverse proxy: messages both ways and the close are recorded") {
  struct MessageHooks : record::RecordHooks {
    void websocket_message(flow::Flow& f, const flow::WebSocketMessage& m) override {
      std::lock_guard lock(mutex);
      seen.push_back((m.from_client ? ">" : "<") + std::to_string(m.opcode) + ":" +
                     (m.opcode == 1 ? m.payload : ""));
    }
    std::mutex mutex;
    std::vector<std::string> seen;
  } hooks;
  WsServer server;
  record::RecorderOptions o;
  REQUIRE(record::parse_mode("reverse:http://127.0.0.1:" + std::to_string(server.port), o).ok());
  o.hooks = &hooks;
  Proxy proxy(o);
  CHECK(ws_client("ws://" + proxy.address + "/chat") == "ok\n");
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  CHECK(flows[0].request.path == "/chat");
  check_ws_flow(flows[0]);
  std::lock_guard lock(hooks.mutex);
  CHECK(hooks.seen.size() == flows[0].websocket->messages.size());
  CHECK(std::find(hooks.seen.begin(), hooks.seen.end(), ">1:hello") != hooks.seen.end());
  CHECK(std::find(hooks.seen.begin(), hooks.seen.end(), "<1:frag1frag2") != hooks.seen.end());
}

TEST_CASE("WebSocket over intercepted TLS through the explicit proxy is recorded") {
  Pki pki;
  WsServer server(
      {"--tls", (pki.dir.path() / "good.pem").string(), (pki.dir.path() / "good.key").string()});
  Proxy proxy(pki.options());
  CHECK(ws_client("wss://localhost:" + std::to_string(server.port) + "/tls --proxy " +
                  proxy.address + " --cafile " + pki.retake_ca) == "ok\n");
  auto flows = proxy.sink.wait_for(1);
  REQUIRE(flows.size() == 1);
  CHECK(flows[0].request.scheme == "https");
  CHECK(flows[0].client_tls.present);
  CHECK(flows[0].upstream_tls.present);
  check_ws_flow(flows[0]);
}
