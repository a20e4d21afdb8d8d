// The recorder's server-replay seam (RecorderOptions::responder): answered requests never reach
// the upstream, forwarded ones arrive whole (body included), and every exchange is a flow.
#include <doctest/doctest.h>

#include <algorithm>
#include <mutex>

#include "record_test_support.h"

using namespace retake;

namespace {

// Answers by path: /served from "the recording", /kill by closing, anything else forwarded.
class PathResponder : public record::Responder {
 public:
  record::ReplayAnswer answer(const flow::Flow& f) override {
    {
      std::lock_guard lock(mutex_);
      seen_bodies_.push_back(f.request.body.data);
    }
    record::ReplayAnswer a;
    if (f.request.path == "/served") {
      a.action = record::ReplayAnswer::Action::respond;
      a.origin = 42;
      a.tags = {"served"};
      a.response.status = 201;
      a.response.reason = "Created";
      a.response.http_version = "HTTP/1.1";
      // Recorded framing that must not leak: chunked upstream, a hop-by-hop field.
      a.response.headers.add("Transfer-Encoding", "chunked");
      a.response.headers.add("Connection", "keep-alive");
      a.response.headers.add("X-From", "recording");
      a.response.body.data = "recorded body";
      a.response.body.size = a.response.body.data.size();
    } else if (f.request.path == "/late") {
      a.action = record::ReplayAnswer::Action::respond;
      a.delay = std::chrono::milliseconds(300);
      a.response.status = 200;
      a.response.body.data = "late";
      a.response.body.size = 4;
    } else if (f.request.path == "/kill") {
      a.action = record::ReplayAnswer::Action::kill;
      a.tags = {"miss"};
    } else {
      a.tags = {"forwarded"};
    }
    return a;
  }
  std::vector<std::string> seen_bodies() {
    std::lock_guard lock(mutex_);
    return seen_bodies_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> seen_bodies_;
};

const flow::Flow* by_path(const std::vector<flow::Flow>& flows, const std::string& path) {
  for (const auto& f : flows)
    if (f.request.path == path) return &f;
  return nullptr;
}

}  // namespace

TEST_CASE("server replay in the proxy: answered requests never reach the upstream") {
  Upstream up;
  PathResponder responder;
  auto o = reverse_options(up);
  o.responder = &responder;
  o.threads = 1;
  Proxy proxy(o);

  std::string out = curl("-i -d 'abc' " + proxy.url() + "/served");
  CHECK(out.find("HTTP/1.1 201 Created") != std::string::npos);
  CHECK(out.find("X-From: recording") != std::string::npos);
  CHECK(out.find("Content-Length: 13") != std::string::npos);
  CHECK(out.find("chunked") == std::string::npos);
  CHECK(out.find("recorded body") != std::string::npos);
  CHECK(proxy.rec->stats().upstream_connects == 0);

  // A forwarded request carries its whole body, sent chunked by the client, to the upstream.
  std::string sum = curl("-H 'Transfer-Encoding: chunked' --data-binary 'hello world' " +
                         proxy.url() + "/sum");
  CHECK(sum == "size=11 sum=1116");
  CHECK(proxy.rec->stats().upstream_connects == 1);

  bool closed = false;
  std::string killed =
      raw_exchange(proxy.port, "GET /kill HTTP/1.1\r\nHost: x\r\n\r\n", std::chrono::seconds(5), &closed);
  CHECK(killed.empty());
  CHECK(closed);

  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  const flow::Flow* served = by_path(flows, "/served");
  REQUIRE(served != nullptr);
  CHECK(served->origin == 42);
  CHECK(served->tags == std::vector<std::string>{"served"});
  REQUIRE(served->response);
  CHECK(served->response->status == 201);
  CHECK(served->request.body.data == "abc");
  CHECK_FALSE(served->error);
  const flow::Flow* forwarded = by_path(flows, "/sum");
  REQUIRE(forwarded != nullptr);
  CHECK(forwarded->tags == std::vector<std::string>{"forwarded"});
  CHECK(forwarded->request.body.data == "hello world");
  REQUIRE(forwarded->response);
  CHECK(forwarded->response->status == 200);
  const flow::Flow* kill = by_path(flows, "/kill");
  REQUIRE(kill != nullptr);
  REQUIRE(kill->error);
  CHECK(kill->error->kind == flow::ErrorKind::policy);
  CHECK(proxy.rec->stats().answered == 2);
  auto bodies = responder.seen_bodies();
  CHECK(std::find(bodies.begin(), bodies.end(), "hello world") != bodies.end());
}

TEST_CASE("server replay in the proxy: 100-continue is answered once and bodies over the cap get 413") {
  Upstream up;
  PathResponder responder;
  auto o = reverse_options(up);
  o.responder = &responder;
  o.body_cap = 1000;
  Proxy proxy(o);
  // curl sends Expect: 100-continue by itself only for large bodies; ask for it.
  std::string sum = curl("-H 'Expect: 100-continue' --data-binary '" + std::string(500, 'a') +
                         "' " + proxy.url() + "/sum");
  CHECK(sum == "size=500 sum=" + std::to_string(500 * 97));
  std::string big =
      curl("-i --data-binary '" + std::string(5000, 'a') + "' " + proxy.url() + "/sum");
  CHECK(big.find("413") != std::string::npos);
  auto flows = proxy.sink.wait_for(2);
  REQUIRE(flows.size() == 2);
  const flow::Flow* f = nullptr;
  for (const auto& x : flows)
    if (x.error) f = &x;
  REQUIRE(f != nullptr);
  CHECK(f->error->kind == flow::ErrorKind::body_too_large);
}

TEST_CASE("server replay in the proxy answers HTTP/2 clients too: respond, kill, forward") {
  Upstream up;
  PathResponder responder;
  auto o = reverse_options(up);
  o.responder = &responder;
  Proxy proxy(o);
  std::string out = curl("--http2-prior-knowledge -i -d 'abc' " + proxy.url() + "/served");
  CHECK(out.find("HTTP/2 201") != std::string::npos);
  CHECK(out.find("x-from: recording") != std::string::npos);
  CHECK(out.find("content-length: 13") != std::string::npos);
  CHECK(out.find("chunked") == std::string::npos);
  CHECK(out.find("recorded body") != std::string::npos);
  CHECK(proxy.rec->stats().upstream_connects == 0);
  // kill: the stream is reset, the connection's other streams go on.
  std::string killed = run("curl -sS -m 10 --http2-prior-knowledge " + proxy.url() + "/kill 2>&1");
  CHECK(killed.find("CANCEL") != std::string::npos);
  // forward: the body read for matching goes to the upstream whole.
  CHECK(curl("--http2-prior-knowledge --data-binary 'hello world' " + proxy.url() + "/sum") ==
        "size=11 sum=1116");
  auto flows = proxy.sink.wait_for(3);
  REQUIRE(flows.size() == 3);
  const flow::Flow* served = by_path(flows, "/served");
  REQUIRE(served != nullptr);
  CHECK(served->origin == 42);
  CHECK(served->request.http_version == "HTTP/2");
  CHECK(served->request.body.data == "abc");
  CHECK(std::find(served->tags.begin(), served->tags.end(), "served") != served->tags.end());
  const flow::Flow* kill = by_path(flows, "/kill");
  REQUIRE(kill != nullptr);
  REQUIRE(kill->error.has_value());
  CHECK(kill->error->kind == flow::ErrorKind::policy);
  const flow::Flow* sum = by_path(flows, "/sum");
  REQUIRE(sum != nullptr);
  CHECK_FALSE(sum->error.has_value());
  CHECK(sum->response->body.data == "size=11 sum=1116");
  CHECK(std::find(sum->tags.begin(), sum->tags.end(), "forwarded") != sum->tags.end());
}

TEST_CASE("an answer's delay (--latency) holds only its own exchange, over HTTP/1.1 and HTTP/2") {
  Upstream up;
  PathResponder responder;
  auto o = reverse_options(up);
  o.responder = &responder;
  Proxy proxy(o);
  for (std::string version : {"--http1.1", "--http2-prior-knowledge"}) {
    CAPTURE(version);
    auto start = std::chrono::steady_clock::now();
    CHECK(curl(version + " " + proxy.url() + "/late") == "late");
    CHECK(std::chrono::steady_clock::now() - start >= 300ms);
  }
  // Two delayed answers at once take one delay, not two: the wait blocks no thread.
  auto start = std::chrono::steady_clock::now();
  std::string both =
      run("(curl -sS -m 10 --http2-prior-knowledge " + proxy.url() +
          "/late & curl -sS -m 10 --http2-prior-knowledge " + proxy.url() + "/late; wait) 2>&1");
  CHECK(both == "latelate");
  CHECK(std::chrono::steady_clock::now() - start < 600ms);
}
