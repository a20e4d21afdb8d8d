// ProxyResponder: the recording proxy's view of a server replay. Each answer is checked against
// what `retake serve` does for the same request: hits in recorded order, misses per policy.
#include "replay/server/proxy_responder.h"

#include <doctest/doctest.h>

using namespace retake;
using namespace retake::replay::server;
using Action = record::ReplayAnswer::Action;

namespace {

flow::Flow recorded(uint64_t id, std::string path, std::string body) {
  flow::Flow f;
  f.id = id;
  f.request.method = "GET";
  f.request.scheme = "http";
  f.request.authority = "api.test:80";
  f.request.path = std::move(path);
  f.request.http_version = "HTTP/1.1";
  f.timing.request_started = 1'700'000'000'000'000'000 + static_cast<int64_t>(id);
  f.response = flow::Response{200, "OK", "HTTP/1.1", {}, {}, {}};
  f.response->body.data = std::move(body);
  f.response->body.size = f.response->body.data.size();
  return f;
}

flow::Flow incoming(std::string path, std::string accept = "") {
  flow::Flow f;
  f.request.method = "GET";
  f.request.scheme = "http";
  f.request.authority = "api.test:80";
  f.request.path = std::move(path);
  if (!accept.empty()) f.request.headers.add("Accept", accept);
  return f;
}

std::unique_ptr<ServerReplay> make_replay(OnMiss on_miss,
                                          OnExhausted exhausted = OnExhausted::repeat_last) {
  ServeOptions o;
  o.on_miss = on_miss;
  o.match.on_exhausted = exhausted;
  o.log = [](std::string_view) {};
  return ServerReplay::create({recorded(1, "/seq", "first"), recorded(2, "/seq", "second"),
                               recorded(3, "/other", "x")},
                              o)
      .value();
}

}  // namespace

TEST_CASE("hits answer in recorded order with their origin; the report counts them") {
  auto server = make_replay(OnMiss::not_found, OnExhausted::miss);
  ProxyResponder responder(*server);
  auto a = responder.answer(incoming("/seq"));
  CHECK(a.action == Action::respond);
  CHECK(a.origin == 1);
  CHECK(a.response.body.data == "first");
  CHECK(a.response.headers.get("X-Retake-Match") == "1");
  CHECK(a.tags == std::vector<std::string>{"served"});
  auto b = responder.answer(incoming("/seq"));
  CHECK(b.origin == 2);
  CHECK(b.response.body.data == "second");
  // Exhausted with on_exhausted=miss: the third is a miss, explained.
  auto c = responder.answer(incoming("/seq"));
  CHECK(c.action == Action::respond);
  CHECK(c.origin == 0);
  CHECK(c.response.status == 404);
  CHECK(c.tags == std::vector<std::string>{"miss"});
  CHECK(c.response.headers.contains("X-Retake-Miss"));
  auto report = server->report();
  CHECK(report.requests == 3);
  CHECK(report.hits == 2);
  CHECK(report.misses == 1);
}

TEST_CASE("a miss follows the policy: 404 and 502 explain, forward and kill are the proxy's") {
  {
    auto server = make_replay(OnMiss::not_found);
    auto a = ProxyResponder(*server).answer(incoming("/nope"));
    CHECK(a.action == Action::respond);
    CHECK(a.response.status == 404);
    CHECK(a.response.body.data.rfind("retake: ", 0) == 0);
    auto json = ProxyResponder(*server).answer(incoming("/nope", "application/json"));
    CHECK(json.response.headers.get("Content-Type") == "application/json");
    CHECK(json.response.body.data.front() == '{');
  }
  {
    auto server = make_replay(OnMiss::bad_gateway);
    CHECK(ProxyResponder(*server).answer(incoming("/nope")).response.status == 502);
  }
  {
    auto server = make_replay(OnMiss::forward);
    auto a = ProxyResponder(*server).answer(incoming("/nope"));
    CHECK(a.action == Action::forward);
    CHECK(a.tags == std::vector<std::string>{"miss", "forwarded"});
    CHECK(server->report().forwarded == 1);
  }
  {
    auto server = make_replay(OnMiss::kill);
    CHECK(ProxyResponder(*server).answer(incoming("/nope")).action == Action::kill);
  }
}

TEST_CASE("--latency reaches the proxy as the answer's delay: recorded, fixed or none") {
  flow::Flow slow = recorded(1, "/slow", "s");
  slow.timing.response_started = slow.timing.request_started + 250'000'000;  // 250 ms
  flow::Flow untimed = recorded(2, "/untimed", "u");  // no response_started: no delay
  auto make = [&](std::string latency) {
    ServeOptions o;
    o.latency = *Latency::parse(latency);
    o.log = [](std::string_view) {};
    return ServerReplay::create({slow, untimed}, o).value();
  };
  auto rec = make("recorded");
  ProxyResponder r1(*rec);
  CHECK(r1.answer(incoming("/slow")).delay == std::chrono::milliseconds(250));
  CHECK(r1.answer(incoming("/untimed")).delay == std::chrono::milliseconds(0));
  CHECK(r1.answer(incoming("/missing")).delay == std::chrono::milliseconds(0));
  auto fixed = make("40");
  ProxyResponder r2(*fixed);
  CHECK(r2.answer(incoming("/untimed")).delay == std::chrono::milliseconds(40));
  auto none = make("none");
  ProxyResponder r3(*none);
  CHECK(r3.answer(incoming("/slow")).delay == std::chrono::milliseconds(0));
}
