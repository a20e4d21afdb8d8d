#include "replay/server/matcher.h"
#include "replay/server/match_rules.h"

#include <doctest/doctest.h>

#include <thread>

using namespace retake;
using namespace retake::replay::server;

namespace {

flow::Flow make_flow(uint64_t id, std::string method, std::string url_path, std::string body = "",
                     std::string content_type = "", std::string response_body = "",
                     std::string authority = "api.example.com") {
  flow::Flow f;
  f.id = id;
  f.request.method = std::move(method);
  f.request.scheme = "http";
  f.request.authority = std::move(authority);
  f.request.path = std::move(url_path);
  f.request.http_version = "HTTP/1.1";
  if (!content_type.empty()) f.request.headers.add("Content-Type", content_type);
  f.request.body.data = body;
  f.request.body.size = body.size();
  f.timing.request_started = static_cast<int64_t>(id) * 1000;
  flow::Response r;
  r.status = 200;
  r.reason = "OK";
  r.body.data = response_body.empty() ? "response " + std::to_string(id) : response_body;
  r.body.size = r.body.data.size();
  f.response = r;
  return f;
}

flow::Request make_request(std::string method, std::string path, std::string body = "",
                           std::string content_type = "",
                           std::string authority = "api.example.com") {
  return make_flow(0, std::move(method), std::move(path), std::move(body), std::move(content_type),
                   "", std::move(authority))
      .request;
}

std::unique_ptr<Matcher> build(std::vector<flow::Flow> flows, MatchOptions options = {}) {
  auto m = Matcher::build(std::move(flows), std::move(options));
  REQUIRE(m.ok());
  return std::move(m.value());
}

const Difference* find_difference(const Candidate& c, Difference::Part part) {
  for (const auto& d : c.differences)
    if (d.part == part) return &d;
  return nullptr;
}

}  // namespace

TEST_CASE("a request with the recorded method, origin, path and query finds its flow") {
  auto m = build({make_flow(1, "GET", "/a?x=1"), make_flow(2, "GET", "/b")});
  auto r = m->lookup(make_request("GET", "/b"));
  REQUIRE(r.hit());
  CHECK(r.flow->id == 2);
  CHECK(r.use == 1);
  CHECK(r.count == 1);
  CHECK_FALSE(r.miss);
}

TEST_CASE("query parameters compare as a multiset: order does not matter, values and repeats do") {
  auto m = build({make_flow(1, "GET", "/s?a=1&b=2&a=3")});
  CHECK(m->lookup(make_request("GET", "/s?b=2&a=3&a=1")).hit());
  CHECK(m->lookup(make_request("GET", "/s?a=%31&b=2&a=3")).hit());  // percent-decoded
  CHECK_FALSE(m->lookup(make_request("GET", "/s?a=1&b=2")).hit());
  CHECK_FALSE(m->lookup(make_request("GET", "/s?a=1&b=2&a=4")).hit());
}

TEST_CASE("repeated identical requests get the recorded responses in recorded order") {
  // Inserted out of order: recorded order is request start time.
  auto m = build({make_flow(3, "GET", "/n"), make_flow(1, "GET", "/n"), make_flow(2, "GET", "/n")});
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(m->lookup(make_request("GET", "/n")).flow->id);
  CHECK(ids == std::vector<uint64_t>{1, 2, 3});
}

TEST_CASE("after the last recorded response, repeat-last keeps answering with the last one") {
  auto m = build({make_flow(1, "GET", "/n"), make_flow(2, "GET", "/n")});
  m->lookup(make_request("GET", "/n"));
  m->lookup(make_request("GET", "/n"));
  auto r = m->lookup(make_request("GET", "/n"));
  REQUIRE(r.hit());
  CHECK(r.flow->id == 2);
  CHECK(r.reused);
}

TEST_CASE("after the last recorded response, cycle starts over from the first") {
  MatchOptions o;
  o.on_exhausted = OnExhausted::cycle;
  auto m = build({make_flow(1, "GET", "/n"), make_flow(2, "GET", "/n")}, o);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(m->lookup(make_request("GET", "/n")).flow->id);
  CHECK(ids == std::vector<uint64_t>{1, 2, 1, 2, 1});
}

TEST_CASE("after the last recorded response, miss answers a miss that says the key was exhausted") {
  MatchOptions o;
  o.on_exhausted = OnExhausted::miss;
  auto m = build({make_flow(1, "GET", "/n")}, o);
  CHECK(m->lookup(make_request("GET", "/n")).hit());
  for (int i = 0; i < 3; ++i) {
    auto r = m->lookup(make_request("GET", "/n"));
    REQUIRE_FALSE(r.hit());
    REQUIRE(r.miss);
    CHECK(r.miss->reason == MissExplanation::Reason::exhausted);
    CHECK(r.miss->text.find("served already") != std::string::npos);
  }
  CHECK(m->served_counts() == std::vector<uint64_t>{1});
}

TEST_CASE("a miss names the differing query parameter with both values") {
  auto m = build({make_flow(1, "GET", "/items?page=2&sort=asc"), make_flow(2, "POST", "/other")});
  auto r = m->lookup(make_request("GET", "/items?page=3&sort=asc&extra=1"));
  REQUIRE(r.miss);
  CHECK(r.miss->reason == MissExplanation::Reason::no_match);
  REQUIRE(r.miss->candidates.size() == 2);
  const auto& best = r.miss->candidates[0];
  CHECK(best.flow_id == 1);
  CHECK(best.parts_matched + 1 == best.parts_total);
  bool saw_changed = false, saw_added = false;
  for (const auto& d : best.differences) {
    if (d.part != Difference::Part::query) continue;
    if (d.name == "page" && d.change == Difference::Change::changed) {
      saw_changed = true;
      CHECK(d.recorded == "2");
      CHECK(d.requested == "3");
    }
    if (d.name == "extra" && d.change == Difference::Change::added) saw_added = true;
  }
  CHECK(saw_changed);
  CHECK(saw_added);
  CHECK(r.miss->text.find("query parameter 'page' differs (recorded '2', requested '3')") !=
        std::string::npos);
  CHECK(r.miss->to_json().find("\"name\":\"page\"") != std::string::npos);
}

TEST_CASE("a miss names the differing path and method") {
  auto m = build({make_flow(1, "GET", "/users/1")});
  auto r = m->lookup(make_request("DELETE", "/users/2"));
  REQUIRE(r.miss);
  const auto& c = r.miss->candidates.at(0);
  auto* path = find_difference(c, Difference::Part::path);
  REQUIRE(path);
  CHECK(path->recorded == "/users/1");
  CHECK(path->requested == "/users/2");
  REQUIRE(find_difference(c, Difference::Part::method));
  CHECK(find_difference(c, Difference::Part::host) == nullptr);
}

TEST_CASE("candidates are ranked by how many key parts match, at most three") {
  auto m = build({make_flow(1, "POST", "/zzz"), make_flow(2, "GET", "/zzz"),
                  make_flow(3, "GET", "/a?q=1"), make_flow(4, "PUT", "/b?q=2"),
                  make_flow(5, "GET", "/a?q=2")});
  auto r = m->lookup(make_request("GET", "/a?q=3"));
  REQUIRE(r.miss);
  REQUIRE(r.miss->candidates.size() == kMaxCandidates);
  CHECK(r.miss->candidates[0].flow_id == 3);
  CHECK(r.miss->candidates[1].flow_id == 5);
  CHECK(r.miss->candidates[0].parts_matched >= r.miss->candidates[2].parts_matched);
}

TEST_CASE("JSON bodies compare as values: member order and whitespace do not matter") {
  auto m = build({make_flow(1, "POST", "/j", R"({"a":1,"b":[1,2]})", "application/json")});
  CHECK(m->lookup(make_request("POST", "/j", "{ \"b\": [1, 2], \"a\": 1 }", "application/json"))
            .hit());
}

TEST_CASE("ignoring a JSON field by path lets a request with a fresh request id match") {
  std::string recorded = R"({"meta":{"requestId":"r-1","client":"x"},"items":[{"ts":1,"v":1}]})";
  std::string fresh = R"({"meta":{"requestId":"r-2","client":"x"},"items":[{"ts":9,"v":1}]})";
  {
    auto m = build({make_flow(1, "POST", "/j", recorded, "application/json")});
    auto r = m->lookup(make_request("POST", "/j", fresh, "application/json"));
    REQUIRE(r.miss);
    const auto& c = r.miss->candidates.at(0);
    bool named = false;
    for (const auto& d : c.differences)
      if (d.part == Difference::Part::json_field && d.name == "$.meta.requestId") {
        named = true;
        CHECK(d.recorded == "\"r-1\"");
        CHECK(d.requested == "\"r-2\"");
      }
    CHECK(named);
    CHECK(r.miss->text.find("$.meta.requestId") != std::string::npos);
  }
  MatchOptions o;
  o.ignore_fields = {"$.meta.requestId", "$.items[*].ts"};
  auto m = build({make_flow(1, "POST", "/j", recorded, "application/json")}, o);
  CHECK(m->lookup(make_request("POST", "/j", fresh, "application/json")).hit());
  CHECK_FALSE(m->lookup(make_request(
                            "POST", "/j",
                            R"({"meta":{"requestId":"r-3","client":"y"},"items":[{"ts":1,"v":1}]})",
                            "application/json"))
                  .hit());
}

TEST_CASE("ignoring a form field by name lets a request with another token match") {
  auto form = "application/x-www-form-urlencoded";
  MatchOptions o;
  o.ignore_fields = {"csrf"};
  auto m = build({make_flow(1, "POST", "/f", "user=ann&csrf=abc", form)}, o);
  CHECK(m->lookup(make_request("POST", "/f", "csrf=zzz&user=ann", form)).hit());
  auto r = m->lookup(make_request("POST", "/f", "csrf=zzz&user=bob", form));
  REQUIRE(r.miss);
  auto* d = find_difference(r.miss->candidates.at(0), Difference::Part::form_field);
  REQUIRE(d);
  CHECK(d->name == "user");
}

TEST_CASE("an opaque body that differs is described by size and hash") {
  auto m = build(
      {make_flow(1, "PUT", "/bin", std::string("\x01\x02\x03", 3), "application/octet-stream")});
  auto r = m->lookup(
      make_request("PUT", "/bin", std::string("\x01\x02\x04\x05", 4), "application/octet-stream"));
  REQUIRE(r.miss);
  auto* d = find_difference(r.miss->candidates.at(0), Difference::Part::body);
  REQUIRE(d);
  CHECK(d->recorded.find("3 bytes, sha256 ") == 0);
  CHECK(d->requested.find("4 bytes, sha256 ") == 0);
}

TEST_CASE("ignore options drop their part from the key") {
  MatchOptions o;
  o.ignore_params = {"cb"};
  o.ignore_host = true;
  o.ignore_port = true;
  auto m = build({make_flow(1, "GET", "/p?cb=1&x=1", "", "", "", "api.example.com:8443")}, o);
  CHECK(m->lookup(make_request("GET", "/p?x=1&cb=999", "", "", "localhost:1")).hit());

  MatchOptions ob;
  ob.ignore_body = true;
  auto mb = build({make_flow(1, "POST", "/p", "one")}, ob);
  CHECK(mb->lookup(make_request("POST", "/p", "two")).hit());
}

TEST_CASE("the port and host are part of the default key and explained when they differ") {
  auto m = build({make_flow(1, "GET", "/p", "", "", "", "api.example.com:8080")});
  auto r = m->lookup(make_request("GET", "/p", "", "", "api.example.com:9090"));
  REQUIRE(r.miss);
  auto* port = find_difference(r.miss->candidates.at(0), Difference::Part::port);
  REQUIRE(port);
  CHECK(port->recorded == "8080");
  CHECK(port->requested == "9090");
  auto r2 = m->lookup(make_request("GET", "/p", "", "", "other.example.com:8080"));
  REQUIRE(r2.miss);
  CHECK(find_difference(r2.miss->candidates.at(0), Difference::Part::host));
}

TEST_CASE("named request headers join the key") {
  MatchOptions o;
  o.use_headers = {"X-Tenant"};
  auto f = make_flow(1, "GET", "/t");
  f.request.headers.add("X-Tenant", "blue");
  auto m = build({f}, o);
  auto req = make_request("GET", "/t");
  auto r = m->lookup(req);
  REQUIRE(r.miss);
  auto* d = find_difference(r.miss->candidates.at(0), Difference::Part::header);
  REQUIRE(d);
  CHECK(d->name == "X-Tenant");
  CHECK(d->change == Difference::Change::removed);
  req.headers.add("x-tenant", "blue");
  CHECK(m->lookup(req).hit());
}

TEST_CASE("conflicting or malformed options are refused with a clear message") {
  MatchOptions o;
  o.ignore_body = true;
  o.ignore_fields = {"$.a"};
  auto m = Matcher::build({}, o);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == Errc::invalid_argument);

  MatchOptions bad;
  bad.ignore_fields = {"$.items[oops"};
  auto m2 = Matcher::build({}, bad);
  REQUIRE_FALSE(m2.ok());
  CHECK(m2.status().message().find("$.items[oops") != std::string::npos);
}

TEST_CASE("flows without a response are not indexed and an empty matcher explains no_flows") {
  auto f = make_flow(1, "GET", "/x");
  f.response.reset();
  auto m = build({f});
  CHECK(m->skipped() == 1);
  auto r = m->lookup(make_request("GET", "/x"));
  REQUIRE(r.miss);
  CHECK(r.miss->reason == MissExplanation::Reason::no_flows);
}

TEST_CASE("concurrent lookups serve each recorded response exactly once") {
  std::vector<flow::Flow> flows;
  for (uint64_t i = 1; i <= 400; ++i) flows.push_back(make_flow(i, "GET", "/c"));
  MatchOptions o;
  o.on_exhausted = OnExhausted::miss;
  auto m = build(std::move(flows), o);
  std::atomic<int> hits{0}, misses{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 150; ++i) (m->lookup(make_request("GET", "/c")).hit() ? hits : misses)++;
    });
  for (auto& t : threads) t.join();
  CHECK(hits == 400);
  CHECK(misses == 200);
  for (auto c : m->served_counts()) CHECK(c == 1);
}

TEST_CASE("scoped options key each recorded flow by the first scope that accepts it") {
  MatchOptions options;
  ScopedMatch orders;
  orders.name = "orders";
  orders.when = [](const flow::Flow& f) { return f.request.path.starts_with("/orders"); };
  orders.options.ignore_params = {"ts"};
  orders.options.on_exhausted = OnExhausted::cycle;
  options.scopes.push_back(orders);
  auto m = build({make_flow(1, "GET", "/orders?ts=1&id=7"),
                  make_flow(2, "GET", "/orders?ts=2&id=7"), make_flow(3, "GET", "/items?ts=1")},
                 options);
  CHECK(m->key_count() == 2);
  // Under the scope, ts is left out, and its own on-exhausted policy (cycle) holds.
  CHECK(m->lookup(make_request("GET", "/orders?id=7&ts=999")).flow->id == 1);
  CHECK(m->lookup(make_request("GET", "/orders?id=7")).flow->id == 2);
  CHECK(m->lookup(make_request("GET", "/orders?id=7&ts=0")).flow->id == 1);
  CHECK(m->lookup(make_request("GET", "/orders?id=8")).miss);
  // Outside it, the base options: ts still counts, and the miss says so.
  CHECK(m->lookup(make_request("GET", "/items?ts=1")).flow->id == 3);
  auto miss = m->lookup(make_request("GET", "/items?ts=2"));
  REQUIRE(miss.miss);
  REQUIRE_FALSE(miss.miss->candidates.empty());
  CHECK(miss.miss->candidates[0].flow_id == 3);
  auto* d = find_difference(miss.miss->candidates[0], Difference::Part::query);
  REQUIRE(d);
  CHECK(d->name == "ts");
}

TEST_CASE("a match rules file adds to the base options per rule and names its mistakes") {
  MatchOptions base;
  base.ignore_params = {"nonce"};
  auto scopes = parse_match_rules(R"(
match:
  - name: orders
    when: "~u /orders"
    ignore_param: [ts]
    ignore_field: ["$.requestId"]
    use_header: X-Tenant
    ignore_host: true
    on_exhausted: miss
rules: []
)",
                                  "m.yaml", base);
  REQUIRE_MESSAGE(scopes.ok(), scopes.status().to_string());
  REQUIRE(scopes->size() == 1);
  const auto& o = (*scopes)[0].options;
  CHECK(o.ignore_params == std::vector<std::string>{"nonce", "ts"});
  CHECK(o.ignore_fields == std::vector<std::string>{"$.requestId"});
  CHECK(o.use_headers == std::vector<std::string>{"X-Tenant"});
  CHECK(o.ignore_host);
  CHECK_FALSE(o.ignore_port);
  CHECK(o.on_exhausted == OnExhausted::miss);
  REQUIRE((*scopes)[0].when);
  CHECK((*scopes)[0].when(make_flow(1, "GET", "/orders/1")));
  CHECK_FALSE((*scopes)[0].when(make_flow(1, "GET", "/items/1")));

  auto error = [&](const char* text) {
    auto r = parse_match_rules(text, "m.yaml", base);
    REQUIRE_FALSE(r.ok());
    return r.status().message();
  };
  CHECK(error("match:\n  - name: a\n    ignore_parm: [x]\n") ==
        "m.yaml line 3: match rule 'a': unknown key 'ignore_parm' (expected name, when, "
        "ignore_param, ignore_field, use_header, ignore_body, ignore_host, ignore_port, "
        "on_exhausted)");
  CHECK(error("match:\n  - name: a\n  - name: a\n") ==
        "m.yaml line 3: match rule 'a' is named twice");
  CHECK(error("match:\n  - ignore_host: true\n").find("needs a name") != std::string::npos);
  CHECK(error("match:\n  - name: a\n    when: \"~q (\"\n").find("line 3: match rule 'a': when:") !=
        std::string::npos);
  CHECK(error("mtach: []\n").find("unknown section 'mtach'") != std::string::npos);
  CHECK(error("rules: []\n") == "m.yaml: no match: section");
  CHECK(error("match:\n  - name: a\n    ignore_body: true\n    ignore_field: [x]\n")
            .find("ignore_body and ignore_field exclude each other") != std::string::npos);
}
