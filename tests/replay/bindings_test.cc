// Binding planning on hand-made recordings: which values become bindings, which are left alone.
#include <doctest/doctest.h>

#include <algorithm>

#include "replay/client/bindings.h"

using namespace retake;
using namespace retake::replay;

namespace {

flow::Flow exchange(uint64_t id, std::string method, std::string path) {
  flow::Flow f;
  f.id = id;
  f.request.method = std::move(method);
  f.request.path = std::move(path);
  f.response = flow::Response{200, "OK", "HTTP/1.1", {}, {}, {}};
  return f;
}

}  // namespace

TEST_CASE("hidden inputs, CSRF headers and Location ids become bindings where they are reused") {
  auto page = exchange(1, "GET", "/form");
  page.response->headers.add("Content-Type", "text/html; charset=utf-8");
  page.response->headers.add("X-CSRF-Token", "hdrTok3nValue99");
  page.response->body.data =
      "<form><input value='Zq81xkP0aa' type=hidden name=\"nonce\"><INPUT TYPE=\"hidden\" "
      "NAME=\"csrf\" "
      "VALUE=\"c5rf0000abcd\"></form>";
  auto created = exchange(2, "POST", "/items");
  created.request.headers.add("X-CSRF-Token", "hdrTok3nValue99");
  created.request.body.data = "csrf=c5rf0000abcd&nonce=Zq81xkP0aa";
  created.response->status = 201;
  created.response->headers.add("Location", "https://a.test/items/it3m42xyz?x=1");
  auto read = exchange(3, "GET", "/items/it3m42xyz");
  auto plan = plan_bindings({page, created, read}, {});
  REQUIRE(plan.bindings.size() == 4);
  std::vector<std::string> captures;
  for (const auto& b : plan.bindings) captures.push_back(b.capture.describe());
  std::sort(captures.begin(), captures.end());
  CHECK(captures == std::vector<std::string>{"header X-CSRF-Token", "hidden csrf", "hidden nonce",
                                             "location segment 1"});
  CHECK(plan.uses[1].size() == 3);
  REQUIRE(plan.uses[2].size() == 1);
  const auto& id = plan.bindings[plan.uses[2][0]];
  CHECK(id.capture.describe() == "location segment 1");
  CHECK(id.source_flow == 2);
  CHECK(*extract(id.capture, *created.response) == "it3m42xyz");
}

TEST_CASE("values the client sent first, short values and glued substrings are not bindings") {
  auto a = exchange(1, "POST", "/echo");
  a.request.body.data = R"({"ref":"clientRef123"})";
  a.response->headers.add("Content-Type", "application/json");
  a.response->body.data = R"({"ref":"clientRef123","short":"ab12","id":"srv9id77q"})";
  auto b = exchange(2, "GET", "/x?ref=clientRef123&s=ab12&glued=xsrv9id77qx");
  auto plan = plan_bindings({a, b}, {});
  CHECK(plan.bindings.empty());
  CHECK(plan.uses[1].empty());
}

TEST_CASE("with automatic bindings off only explicit rules bind") {
  auto a = exchange(1, "POST", "/login");
  a.response->headers.add("Set-Cookie", "sid=s3ss10nvalue; Path=/");
  a.response->body.data = "token: tok_777abc;";
  auto b = exchange(2, "GET", "/me?t=tok_777abc");
  b.request.headers.add("Cookie", "sid=s3ss10nvalue");
  BindingPlanOptions o;
  o.automatic = false;
  CHECK(plan_bindings({a, b}, o).bindings.empty());
  auto rule = parse_binding_rule("tok=regex:token: (\\w+);");
  REQUIRE(rule.ok());
  o.rules.push_back(*rule);
  auto plan = plan_bindings({a, b}, o);
  REQUIRE(plan.bindings.size() == 1);
  CHECK(plan.bindings[0].rule == "tok");
  CHECK(plan.bindings[0].recorded_value == "tok_777abc");
  CHECK_FALSE(parse_binding_rule("x=json:$.items[").ok());
  CHECK_FALSE(parse_binding_rule("x=regex:(").ok());
  CHECK_FALSE(parse_binding_rule("x=xml:/a").ok());
}

TEST_CASE("an explicit JSON rule captures by the project's JSON path syntax") {
  auto login = exchange(1, "POST", "/login");
  login.response->headers.add("Content-Type", "application/json");
  login.response->body.data =
      R"({"data":{"items":[{"kind":"x","token":""},{"kind":"session","token":"T0k3nAbc"}]}})";
  auto me = exchange(2, "GET", "/me");
  me.request.headers.add("Authorization", "Bearer T0k3nAbc");
  auto rule = parse_binding_rule("session=json:$.data.items[*].token");
  REQUIRE(rule.ok());
  CHECK(rule->capture.describe() == "json $.data.items[*].token");
  // The first non-empty scalar the path selects.
  CHECK(extract(rule->capture, *login.response) == std::optional<std::string>("T0k3nAbc"));
  auto missing = parse_binding_rule("m=json:$.nope");
  REQUIRE(missing.ok());
  CHECK_FALSE(extract(missing->capture, *login.response).has_value());

  BindingPlanOptions o;
  o.automatic = false;
  o.rules.push_back(*rule);
  auto plan = plan_bindings({login, me}, o);
  REQUIRE(plan.bindings.size() == 1);
  CHECK(plan.bindings[0].rule == "session");
  CHECK(plan.bindings[0].source_flow == 1);
  CHECK(plan.uses[1] == std::vector<size_t>{plan.bindings[0].id});
}

TEST_CASE("substitution replaces bounded occurrences in path, headers and body") {
  flow::Request r;
  r.path = "/items/abc123xyz?next=abc123xyz";
  r.headers.add("Cookie", "sid=abc123xyz; other=abc123xyzz");
  r.body.data = R"({"id":"abc123xyz"})";
  auto where = substitute(r, "abc123xyz", "NEW");
  CHECK(where == std::vector<std::string>{"path", "header Cookie", "body"});
  CHECK(r.path == "/items/NEW?next=NEW");
  CHECK(r.headers.get("Cookie") == "sid=NEW; other=abc123xyzz");
  CHECK(r.body.data == R"({"id":"NEW"})");
}

TEST_CASE("planning a long recording binds each created id to the request that reuses it") {
  std::vector<flow::Flow> flows;
  for (uint64_t i = 0; i < 5000; ++i) {
    auto f =
        exchange(i + 1, "GET", i == 0 ? "/start" : "/items/itm" + std::to_string(i - 1) + "x7qz");
    f.response->headers.add("Content-Type", "application/json");
    f.response->body.data = R"({"next":"itm)" + std::to_string(i) + R"(x7qz","n":3})";
    flows.push_back(std::move(f));
  }
  auto plan = plan_bindings(flows, {});
  CHECK(plan.bindings.size() == 4999);
  for (size_t i = 1; i < flows.size(); ++i) {
    REQUIRE(plan.uses[i].size() == 1);
    CHECK(plan.bindings[plan.uses[i][0]].source == i - 1);
  }
}
