#include "diff/json_path.h"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <vector>

using namespace retake;
using namespace retake::diff;
namespace json = boost::json;

namespace {
JsonPath P(std::string_view text) {
  auto r = JsonPath::parse(text);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return r.value();
}
PathElem K(std::string_view k) { return PathElem::member(k); }
PathElem I(size_t i) { return PathElem::element(i); }
}  // namespace

TEST_CASE("valid paths parse into the expected steps") {
  struct Row {
    const char* text;
    size_t steps;
    bool concrete;
  };
  const Row rows[] = {
      {"$", 0, true},
      {"$.a.b", 2, true},
      {"$['weird key']", 1, true},
      {"$[\"dq\"]", 1, true},
      {"$.items[0]", 2, true},
      {"$.items[*].updatedAt", 3, false},
      {"$..id", 1, false},
      {"$.a.*", 2, false},
      {"$.x-request-id", 1, true},
      {"$..[0]", 1, false},
      {"$['it\\'s'][12]['a\\\\b']", 3, true},
  };
  for (const auto& row : rows) {
    CAPTURE(row.text);
    auto p = JsonPath::parse(row.text);
    REQUIRE(p.ok());
    CHECK(p->steps().size() == row.steps);
    CHECK(p->is_concrete() == row.concrete);
    CHECK(p->text() == row.text);
  }
  auto p = P("$['it\\'s'][12]['a\\\\b']");
  CHECK(p.steps()[0].name == "it's");
  CHECK(p.steps()[1].kind == JsonPath::StepKind::index);
  CHECK(p.steps()[1].index == 12);
  CHECK(p.steps()[2].name == "a\\b");
  CHECK(P("$..id").steps()[0].descendant);
}

TEST_CASE("invalid paths fail with a message naming the column") {
  struct Row {
    const char* text;
    const char* column;  // prefix of the message
  };
  const Row rows[] = {
      {"", "column 1:"},          {"a.b", "column 1:"},        {"$.", "column 3:"},
      {"$..", "column 4:"},       {"$[", "column 3:"},         {"$[1", "column 4:"},
      {"$['abc", "column 7:"},    {"$[abc]", "column 3:"},     {"$.a b", "column 4:"},
      {"$[-1]", "column 3:"},     {"$.a[*", "column 6:"},      {"$['a\\x']", "column 5:"},
      {"$.a.#", "column 5:"},     {"$[99999999999999999999]", "column 3:"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.text);
    auto p = JsonPath::parse(row.text);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().code() == Errc::parse_error);
    CHECK(p.status().message().rfind(row.column, 0) == 0);
  }
}

TEST_CASE("concrete paths render canonically and round-trip through the parser") {
  std::vector<PathElem> path{K("items"), I(3), K("ts")};
  CHECK(render_path(path) == "$.items[3].ts");
  CHECK(render_path_generalized(path) == "$.items[*].ts");
  std::vector<PathElem> weird{K("a b"), K("it's"), K("x-id"), K("0"), K("_ok9")};
  auto text = render_path(weird);
  CHECK(text == "$['a b']['it\\'s']['x-id']['0']._ok9");
  auto reparsed = P(text);
  CHECK(reparsed.matches(weird));
  CHECK(render_path({}) == "$");
}

TEST_CASE("patterns match concrete paths with wildcards, indexes and recursive descent") {
  std::vector<PathElem> ts{K("items"), I(3), K("updatedAt")};
  CHECK(P("$.items[*].updatedAt").matches(ts));
  CHECK(P("$.items[3].updatedAt").matches(ts));
  CHECK_FALSE(P("$.items[2].updatedAt").matches(ts));
  CHECK(P("$.items.*.updatedAt").matches(ts));
  CHECK(P("$..updatedAt").matches(ts));
  CHECK(P("$..[3].updatedAt").matches(ts));
  CHECK(P("$.*.*.*").matches(ts));
  CHECK_FALSE(P("$.*.*").matches(ts));
  CHECK_FALSE(P("$.items[*].createdAt").matches(ts));
  CHECK_FALSE(P("$.items").matches(ts));
  CHECK(P("$.items").matches_prefix(ts));
  CHECK(P("$").matches_prefix(ts));
  CHECK_FALSE(P("$.other").matches_prefix(ts));
  CHECK(P("$").matches(std::vector<PathElem>{}));
  // An index step does not match a member named like a number, and vice versa.
  CHECK_FALSE(P("$.items[0]").matches(std::vector<PathElem>{K("items"), K("0")}));
  CHECK_FALSE(P("$.items['0']").matches(std::vector<PathElem>{K("items"), I(0)}));
  // Recursive descent at depth zero and deeper.
  CHECK(P("$..id").matches(std::vector<PathElem>{K("id")}));
  CHECK(P("$..id").matches(std::vector<PathElem>{K("a"), I(0), K("b"), K("id")}));
  CHECK_FALSE(P("$..id").matches(std::vector<PathElem>{K("id"), K("x")}));
  CHECK(P("$..a..id").matches(std::vector<PathElem>{K("x"), K("a"), K("y"), K("id")}));
}

TEST_CASE("select finds every matching value in document order") {
  auto doc = json::parse(R"({"items":[{"id":1,"t":"a"},{"id":2,"sub":{"id":3}}],"id":0})");
  auto ids = P("$..id").select(static_cast<const json::value&>(doc));
  REQUIRE(ids.size() == 4);
  std::vector<int64_t> got;
  for (auto* v : ids) got.push_back(v->as_int64());
  CHECK(std::count(got.begin(), got.end(), 0) == 1);
  CHECK(std::count(got.begin(), got.end(), 3) == 1);
  auto first = P("$.items[0].t").select(static_cast<const json::value&>(doc));
  REQUIRE(first.size() == 1);
  CHECK(first[0]->as_string() == "a");
  CHECK(P("$.items[*]").select(static_cast<const json::value&>(doc)).size() == 2);
  CHECK(P("$.nope").select(static_cast<const json::value&>(doc)).empty());
  CHECK(P("$.items[9]").select(static_cast<const json::value&>(doc)).empty());
  CHECK(P("$").select(static_cast<const json::value&>(doc)).size() == 1);
}

TEST_CASE("set replaces selected values and creates missing places for concrete paths") {
  auto doc = json::parse(R"({"items":[{"ts":1},{"ts":2}],"a":{}})");
  auto n = P("$.items[*].ts").set(doc, json::value("X"));
  REQUIRE(n.ok());
  CHECK(n.value() == 2);
  CHECK(doc.at("items").at(1).at("ts") == "X");

  REQUIRE(P("$.a.b.c").set(doc, json::value(5)).ok());
  CHECK(doc.at("a").at("b").at("c") == 5);
  REQUIRE(P("$.items[2]").set(doc, json::value(true)).ok());  // index == size appends
  CHECK(doc.at("items").as_array().size() == 3);
  REQUIRE(P("$.list[0].k").set(doc, json::value("v")).ok());  // null -> array -> object
  CHECK(doc.at("list").at(0).at("k") == "v");

  auto past_end = P("$.items[7]").set(doc, json::value(1));
  CHECK_FALSE(past_end.ok());
  CHECK(past_end.status().code() == Errc::invalid_argument);
  auto wrong_type = P("$.items.name").set(doc, json::value(1));
  CHECK_FALSE(wrong_type.ok());

  // A wildcard with no match sets nothing and is not an error.
  auto none = P("$.nothing[*].x").set(doc, json::value(1));
  REQUIRE(none.ok());
  CHECK(none.value() == 0);

  json::value root = 1;
  REQUIRE(P("$").set(root, json::parse("[1,2]")).ok());
  CHECK(root.as_array().size() == 2);
}

TEST_CASE("set with recursive descent replaces nested matches without touching freed values") {
  auto doc = json::parse(R"({"x":{"x":{"x":1}},"y":{"x":2}})");
  auto n = P("$..x").set(doc, json::value("S"));
  REQUIRE(n.ok());
  CHECK(n.value() == 4);
  CHECK(doc.at("x") == "S");
  CHECK(doc.at("y").at("x") == "S");
}

TEST_CASE("remove deletes members and elements, highest index first") {
  auto doc = json::parse(R"({"items":[{"id":1,"t":0},{"id":2,"t":0},{"id":3}],"meta":{"t":1}})");
  CHECK(P("$..t").remove(doc) == 3);
  CHECK_FALSE(doc.at("items").at(0).as_object().contains("t"));
  CHECK_FALSE(doc.at("meta").as_object().contains("t"));
  CHECK(P("$.items[1]").remove(doc) == 1);
  REQUIRE(doc.at("items").as_array().size() == 2);
  CHECK(doc.at("items").at(1).at("id") == 3);
  CHECK(P("$.items[*]").remove(doc) == 2);
  CHECK(doc.at("items").as_array().empty());
  CHECK(P("$.missing").remove(doc) == 0);
  CHECK(P("$").remove(doc) == 0);
  CHECK(P("$.*").remove(doc) == 2);
  CHECK(doc.as_object().empty());
}
