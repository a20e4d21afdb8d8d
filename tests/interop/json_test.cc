#include <doctest/doctest.h>

#include "interop/interop.h"
#include "test_support.h"

using namespace retake;
using namespace retake::interop;
using namespace retake::interop::test;

TEST_CASE("a flow with every field set survives flow_to_json and flow_from_json") {
  auto f = full_flow();
  auto json = flow_to_json(f);
  auto back = flow_from_json(json);
  REQUIRE_MESSAGE(back.ok(), back.status().to_string());
  CHECK(back.value() == f);
}

TEST_CASE("flow JSON writes UTF-8 bodies as text and other bytes as base64") {
  auto f = full_flow();
  auto json = flow_to_json(f);
  CHECK(json.find(R"("text":"héllo wörld")") != std::string::npos);
  CHECK(json.find(R"("base64":"AAH/IGJpbmFyeSD+AA==")") != std::string::npos);
  CHECK(json.find(R"("url":"https://api.retake.test:8443/v1/items?q=a%20b&x=1")") !=
        std::string::npos);
}

TEST_CASE("flow JSON without bodies keeps sizes and drops the bytes") {
  auto f = full_flow();
  auto json = flow_to_json(f, JsonOptions{.with_bodies = false});
  CHECK(json.find("héllo") == std::string::npos);
  CHECK(json.find("\"payload\"") == std::string::npos);
  CHECK(json.find(R"("size":4096)") != std::string::npos);
  auto back = flow_from_json(json);
  REQUIRE(back.ok());
  CHECK(back->response->body.data.empty());
  CHECK(back->response->body.size == 4096);
  CHECK(back->request.headers == f.request.headers);
}

TEST_CASE("non-UTF-8 header values and paths round trip through JSON") {
  auto f = full_flow();
  f.request.path = "/\xff\xfe";
  f.request.headers.add("X-Raw", "\x80\x81");
  auto back = flow_from_json(flow_to_json(f));
  REQUIRE(back.ok());
  CHECK(back.value() == f);
}

TEST_CASE("the JSON export document imports back, ids cleared and the session overridable") {
  auto a = full_flow();
  auto b = full_flow();
  b.response.reset();
  b.websocket.reset();
  b.kind = flow::FlowKind::tunnel;
  auto doc = export_json({a, b});
  CHECK(detect_format(doc) == Format::retake_json);
  auto r = import_retake_json(doc);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  REQUIRE(r->flows.size() == 2);
  CHECK(r->flows[0].id == 0);
  a.id = 0;
  b.id = 0;
  CHECK(r->flows[0] == a);
  CHECK(r->flows[1] == b);
  auto list = flows_to_json({a});
  CHECK(detect_format(list) == Format::retake_json);
  auto r2 = import_any(list, with_session("new"));
  REQUIRE(r2.ok());
  CHECK(r2->flows[0].session == "new");
  auto single = import_any(flow_to_json(a));
  REQUIRE(single.ok());
  CHECK(single->flows.size() == 1);
}

TEST_CASE("flow_from_json names the path of a wrong value") {
  auto f = full_flow();
  auto json = flow_to_json(f);
  auto pos = json.find(R"("status":200)");
  REQUIRE(pos != std::string::npos);
  json.replace(pos, 12, R"("status":"x")");
  auto r = flow_from_json(json);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "flow.response.status: expected an integer");
  auto bad_kind = flow_from_json(R"({"request":{},"error":{"kind":"nope"}})");
  REQUIRE_FALSE(bad_kind.ok());
  CHECK(bad_kind.status().message() == "flow.error.kind: unknown error kind \"nope\"");
  auto newer = import_retake_json(R"({"retake_flows":2,"flows":[]})");
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.status().code() == Errc::version_mismatch);
}
