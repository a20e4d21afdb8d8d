// Mutation rules: each action on a request, compressed bodies re-encoded, scopes, and errors
// that name the line and the rule.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "codec/content_coding.h"
#include "replay/client/rules.h"

using namespace retake;
using namespace retake::replay;

namespace {

flow::Request json_post() {
  flow::Request r;
  r.method = "POST";
  r.path = "/api/orders?utm_source=mail&page=2";
  r.headers.add("Host", "a.test");
  r.headers.add("X-Trace-Id", "abc");
  r.headers.add("Content-Type", "application/json");
  r.body.data = R"({"client":{"version":"1.0"},"items":[{"qty":5},{"qty":7}],"debug":true})";
  r.body.size = r.body.data.size();
  return r;
}

RuleSet parse_ok(const std::string& text, const ScopeCompiler& c = nullptr) {
  auto r = parse_rules(text, "rules.yaml", c);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  return std::move(*r);
}

}  // namespace

TEST_CASE("header, query and JSON path rules rewrite the request") {
  auto rules = parse_ok(R"(
rules:
  - name: staging
    set_header: {X-Env: staging}
    remove_header: [X-Trace-Id]
    set_query: {lang: en, page: "3"}
    remove_query: [utm_source]
    set_json: {"$.client.version": "9.9", "$.items[*].qty": 1}
    remove_json: ["$.debug"]
)");
  CHECK(rules.size() == 1);
  auto r = json_post();
  rules.apply(r, flow::Flow{});
  CHECK(r.headers.get("X-Env") == "staging");
  CHECK_FALSE(r.headers.contains("X-Trace-Id"));
  CHECK(r.path == "/api/orders?page=3&lang=en");
  auto doc = boost::json::parse(r.body.data).as_object();
  CHECK(doc.at("client").at("version").as_string() == "9.9");
  CHECK(doc.at("items").as_array()[0].at("qty").as_int64() == 1);
  CHECK(doc.at("items").as_array()[1].at("qty").as_int64() == 1);
  CHECK_FALSE(doc.contains("debug"));
  CHECK(r.body.size == r.body.data.size());
}

TEST_CASE("form fields and regex body replacements apply; Content-Length follows the body") {
  auto rules = parse_ok(R"Y(
rules:
  - name: form
    set_form: {comment: "replayed by retake", csrf: x}
  - name: rename
    replace_body: {pattern: "order-(\\d+)", with: "order-\\1-r"}
)Y");
  flow::Request r;
  r.method = "POST";
  r.path = "/f";
  r.headers.add("Content-Type", "application/x-www-form-urlencoded");
  r.headers.add("Content-Length", "20");
  r.body.data = "id=order-17&csrf=old";
  rules.apply(r, flow::Flow{});
  CHECK(r.body.data == "id=order-17-r&csrf=x&comment=replayed%20by%20retake");
  CHECK(r.headers.get("Content-Length") == std::to_string(r.body.data.size()));
}

TEST_CASE("a gzip body is decoded, mutated and re-encoded") {
  auto rules = parse_ok(R"({"rules": [{"name": "v", "set_json": {"$.v": 2}}]})");  // JSON works too
  flow::Request r;
  r.method = "POST";
  r.path = "/";
  r.headers.add("Content-Type", "application/json");
  r.headers.add("Content-Encoding", "gzip");
  r.body.data = codec::encode_content(R"({"v":1,"keep":"x"})", "gzip").value();
  rules.apply(r, flow::Flow{});
  auto plain = codec::decode_content(r.body.data, "gzip");
  REQUIRE(plain.ok());
  auto doc = boost::json::parse(*plain).as_object();
  CHECK(doc.at("v").as_int64() == 2);
  CHECK(doc.at("keep").as_string() == "x");
}

TEST_CASE("a rule scoped by a filter applies only to the flows the filter accepts") {
  ScopeCompiler compile = [](std::string_view expr) -> Result<FlowPredicate> {
    std::string host(expr);
    return FlowPredicate([host](const flow::Flow& f) { return f.request.host() == host; });
  };
  auto rules = parse_ok(R"(
rules:
  - name: only-api
    when: api.test
    set_header: {X-Scoped: "1"}
)",
                        compile);
  flow::Flow api, other;
  api.request.authority = "api.test";
  other.request.authority = "www.test";
  auto r1 = json_post(), r2 = json_post();
  rules.apply(r1, api);
  rules.apply(r2, other);
  CHECK(r1.headers.contains("X-Scoped"));
  CHECK_FALSE(r2.headers.contains("X-Scoped"));
}

TEST_CASE("a rules file's bindings section gives explicit, scoped binding rules") {
  ScopeCompiler compile = [](std::string_view expr) -> Result<FlowPredicate> {
    std::string path(expr);
    return FlowPredicate([path](const flow::Flow& f) { return f.request.path == path; });
  };
  auto set = parse_ok(R"(
bindings:
  - name: token
    from: "json:$.data.token"
    when: /login
  - name: sid
    from: "cookie:sid"
)",
                      compile);
  CHECK(set.size() == 0);
  REQUIRE(set.bindings().size() == 2);
  const auto& token = set.bindings()[0];
  CHECK(token.name == "token");
  CHECK(token.capture.describe() == "json $.data.token");
  REQUIRE(token.scope);
  flow::Flow login, other;
  login.request.path = "/login";
  other.request.path = "/other";
  CHECK(token.scope(login));
  CHECK_FALSE(token.scope(other));
  CHECK(set.bindings()[1].capture.describe() == "cookie sid");
  CHECK_FALSE(set.bindings()[1].scope);

  // Rules and bindings side by side.
  auto both = parse_ok("rules:\n  - name: a\n    set_header: {X: 1}\nbindings:\n"
                       "  - name: h\n    from: header:X-Token\n");
  CHECK(both.size() == 1);
  CHECK(both.bindings().size() == 1);

  struct Row {
    const char* text;
    const char* expected;
  };
  const Row rows[] = {
      {"bindings:\n  - name: t\n", "line 2: rule 't': a binding needs a 'name' and 'from'"},
      {"bindings:\n  - name: t\n    from: \"json:$.a[\"\n", "line 3: rule 't': binding rule 't': bad JSON path"},
      {"bindings:\n  - name: t\n    from: header:X\n    whn: x\n",
       "line 4: rule 't': unknown binding key 'whn'"},
      {"bindings:\n  - name: t\n    from: header:X\n  - name: t\n    from: cookie:c\n",
       "line 4: rule 't': duplicate binding name"},
      {"bindngs: []\n", "line 1: rule '?': unknown top-level key 'bindngs'"},
      {"bindings: {a: 1}\n", "'bindings' must be a list"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.text);
    auto r = parse_rules(row.text, "rules.yaml", compile);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Errc::parse_error);
    CHECK_MESSAGE(r.status().message().find(row.expected) != std::string::npos,
                  r.status().message());
  }
}

TEST_CASE("rules file errors name the line and the rule") {
  struct Row {
    const char* text;
    const char* expected;
  };
  const Row rows[] = {
      {"rules:\n  - name: a\n    set_header: {X: 1}\n  - name: b\n    set_headr: {Y: 2}\n",
       "rules.yaml line 5: rule 'b': unknown action 'set_headr'"},
      {"rules:\n  - name: j\n    set_json: {\"$.items[\": 1}\n",
       "rules.yaml line 3: rule 'j': JSON path '$.items['"},
      {"rules:\n  - name: r\n    replace_body: {pattern: \"(\", with: x}\n",
       "rules.yaml line 3: rule 'r': bad regex"},
      {"rules:\n  - set_header: {X: 1}\n", "rules.yaml line 2: rule '?': a rule needs a 'name'"},
      {"rules:\n  - name: a\n    set_header: {X: 1}\n  - name: a\n    set_header: {X: 1}\n",
       "rules.yaml line 4: rule 'a': duplicate rule name"},
      {"rules:\n  - name: w\n    when: \"~d x\"\n    set_header: {X: 1}\n",
       "rules.yaml line 3: rule 'w': 'when' needs the filter language"},
      {"rules:\n  - name: e\n", "rules.yaml line 2: rule 'e': the rule has no action"},
      {"rules: [\n  {name: x\n", "rules.yaml line "},
      {"just text\n", "expected a list of rules"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.text);
    auto r = parse_rules(row.text, "rules.yaml");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Errc::parse_error);
    CHECK_MESSAGE(r.status().message().find(row.expected) != std::string::npos,
                  r.status().message());
  }
  auto missing = load_rules_file("/nonexistent/rules.yaml");
  CHECK(missing.status().code() == Errc::not_found);
}
