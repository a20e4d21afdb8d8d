#include "diff/noise.h"

#include <doctest/doctest.h>

#include "diff/batch.h"

using namespace retake;
using namespace retake::diff;

namespace {

Difference D(std::string path, std::string pattern = {}) {
  Difference d;
  d.kind = DiffKind::value_changed;
  d.path = path;
  d.pattern = pattern.empty() ? path : pattern;
  d.value_a = "1";
  d.value_b = "2";
  return d;
}

Comparison with(std::vector<Difference> ds) {
  Comparison c;
  c.differences = std::move(ds);
  return c;
}

flow::Response json_resp(std::string body) {
  flow::Response r;
  r.status = 200;
  r.headers.add("Content-Type", "application/json");
  r.body.data = std::move(body);
  return r;
}

}  // namespace

TEST_CASE("the noise rule needs both the absolute and the relative threshold to call a difference real") {
  NoiseThresholds t;  // Diffy's: absolute 0.0003, relative 1.5
  struct Row {
    double c, n;
    bool noise;
    const char* why;
  };
  const Row rows[] = {
      {0.5, 0.0, false, "never seen in baselines"},
      {0.5, 0.4, true, "ratio 1.25 below 1.5"},
      {0.75, 0.5, false, "ratio exactly 1.5 is enough (inclusive)"},
      {0.7, 0.5, true, "ratio 1.4"},
      {0.0002, 0.0, true, "rate difference 0.0002 below the absolute 0.0003"},
      {0.0004, 0.0, false, "rate difference 0.0004 above the absolute"},
      {0.3, 0.3, true, "same rate as baseline"},
      {0.1, 0.5, true, "less often than in baselines"},
      {1.0, 1.0, true, "always differs, also in baselines"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.why);
    CHECK(is_noise(row.c, row.n, t) == row.noise);
  }
  NoiseThresholds strict;
  strict.absolute = 0.1;
  strict.relative = 1.5;
  CHECK(is_noise(0.15, 0.1, strict));   // ratio 1.5 but only 0.05 apart
  CHECK_FALSE(is_noise(0.25, 0.1, strict));
  NoiseThresholds loose;
  loose.relative = 1.4;
  CHECK(is_noise(0.3, 0.22, t));        // ratio 1.36 < 1.5
  CHECK(is_noise(0.3, 0.22, loose));    // 1.36 < 1.4
  CHECK_FALSE(is_noise(0.3, 0.21, loose));  // 1.43 >= 1.4
}

TEST_CASE("the noise model counts each pattern once per baseline comparison") {
  NoiseModel m;
  m.add_baseline("GET /a", with({D("$.items[0].ts", "$.items[*].ts"), D("$.items[1].ts", "$.items[*].ts")}));
  m.add_baseline("GET /a", with({}));
  m.add_baseline("GET /a", with({D("$.x")}));
  m.add_baseline("GET /a", with({D("$.items[5].ts", "$.items[*].ts")}));
  CHECK(m.comparisons("GET /a") == 4);
  CHECK(m.differences("GET /a", "$.items[*].ts") == 2);
  CHECK(m.rate("GET /a", "$.items[*].ts") == doctest::Approx(0.5));
  CHECK(m.rate("GET /a", "$.x") == doctest::Approx(0.25));
  CHECK(m.rate("GET /a", "$.y") == 0);
  CHECK(m.rate("GET /b", "$.x") == 0);
  CHECK(m.comparisons("GET /b") == 0);
}

TEST_CASE("the noise model survives a JSON round trip and merges") {
  NoiseModel m;
  m.add_baseline("GET /users/{id}", with({D("$.ts"), D("header:x-foo")}));
  m.add_baseline("GET /users/{id}", with({D("$.ts")}));
  m.add_baseline("POST /o\"rders", with({D("$['a b']")}));
  auto text = m.to_json();
  auto back = NoiseModel::from_json(text);
  REQUIRE_MESSAGE(back.ok(), back.status().to_string());
  CHECK(back->comparisons("GET /users/{id}") == 2);
  CHECK(back->differences("GET /users/{id}", "$.ts") == 2);
  CHECK(back->differences("GET /users/{id}", "header:x-foo") == 1);
  CHECK(back->differences("POST /o\"rders", "$['a b']") == 1);
  CHECK(back->to_json() == text);
  back->merge(m);
  CHECK(back->comparisons("GET /users/{id}") == 4);
  CHECK(back->differences("GET /users/{id}", "$.ts") == 4);
}

TEST_CASE("a malformed noise model is a parse error, not a crash") {
  for (const char* bad : {"", "[]", "nope", R"({"version":2,"endpoints":{}})",
                          R"({"endpoints":{}})", R"({"version":1})",
                          R"({"version":1,"endpoints":{"a":{"comparisons":-1}}})",
                          R"({"version":1,"endpoints":{"a":{"comparisons":1,"paths":{"$.x":2}}}})",
                          R"({"version":1,"endpoints":{"a":{"comparisons":1,"paths":[1]}}})",
                          R"({"version":1,"endpoints":{"a":5}})"}) {
    CAPTURE(bad);
    auto m = NoiseModel::from_json(bad);
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == Errc::parse_error);
  }
}

TEST_CASE("a batch classifies differences by comparing candidate and baseline rates per endpoint") {
  NoiseModel noise;
  for (int i = 0; i < 10; ++i) noise.add_baseline("GET /items/{id}", with({D("$.ts")}));
  noise.add_baseline("GET /other", with({}));

  Batch batch;
  for (uint64_t i = 0; i < 10; ++i) {
    std::vector<Difference> ds{D("$.ts")};
    if (i < 3) ds.push_back(D("$.price"));
    batch.add("GET /items/{id}", i, 100 + i, with(ds));
  }
  batch.add("GET /other", 50, 150, with({}));
  batch.add("GET /other", 51, 151, with({}));
  auto r = batch.finish(&noise, {"$.typo"});
  REQUIRE(r.endpoints.size() == 2);
  const auto& items = r.endpoints[0];
  CHECK(items.endpoint == "GET /items/{id}");
  CHECK(items.compared == 10);
  CHECK(items.identical == 0);
  CHECK(items.different == 3);
  CHECK(items.noise_suppressed == 7);
  REQUIRE(items.paths.size() == 2);
  CHECK(items.paths[0].pattern == "$.price");
  CHECK_FALSE(items.paths[0].noise);
  CHECK(items.paths[0].candidate_rate == doctest::Approx(0.3));
  CHECK(items.paths[1].pattern == "$.ts");
  CHECK(items.paths[1].noise);
  CHECK(items.paths[1].noise_rate == doctest::Approx(1.0));
  CHECK(r.endpoints[1].identical == 2);
  CHECK(r.compared == 12);
  CHECK(r.different == 3);
  CHECK(r.noise_suppressed == 7);
  REQUIRE(r.differing.size() == 3);
  CHECK(r.differing[0].flow_a == 0);
  CHECK(r.differing[0].flow_b == 100);
  REQUIRE(r.differing[0].differences.size() == 1);
  CHECK(r.differing[0].differences[0].path == "$.price");
  CHECK(r.differing[0].noise_differences == 1);
  CHECK(r.unexplained_differences() == 3);
  CHECK(r.unused_rules == std::vector<std::string>{"$.typo"});
  CHECK(r.exit_code() == 1);
}

TEST_CASE("without baseline evidence nothing is noise, and a clean batch exits 0") {
  NoiseModel empty;
  Batch batch;
  batch.add("GET /a", 1, 2, with({D("$.ts")}));
  auto r1 = batch.finish(nullptr);
  CHECK(r1.different == 1);
  CHECK(r1.exit_code() == 1);
  auto r2 = batch.finish(&empty);
  CHECK(r2.different == 1);

  NoiseModel all_noise;
  all_noise.add_baseline("GET /a", with({D("$.ts")}));
  auto r3 = batch.finish(&all_noise);
  CHECK(r3.different == 0);
  CHECK(r3.noise_suppressed == 1);
  CHECK(r3.exit_code() == 0);

  Batch clean;
  clean.add("GET /a", 1, 2, with({}));
  CHECK(clean.finish().exit_code() == 0);
  CHECK(clean.size() == 1);
}

TEST_CASE("a batch of flows keeps response snapshots for the first differing pairs only") {
  BatchOptions o;
  o.max_examples = 1;
  Batch batch(o);
  auto c = Comparator::create({});
  REQUIRE(c.ok());
  for (uint64_t i = 1; i <= 3; ++i) {
    flow::Flow a, b;
    a.id = i;
    b.id = 10 + i;
    a.request.method = "GET";
    a.request.path = "/users/" + std::to_string(i);
    a.response = json_resp(R"({"n":1})");
    b.response = json_resp(R"({"n":2})");
    batch.add(a, b, c->compare(a, b));
  }
  auto r = batch.finish();
  REQUIRE(r.differing.size() == 3);
  CHECK(r.differing[0].endpoint == "GET /users/{id}");
  CHECK(r.differing[0].request_line == "GET /users/1");
  REQUIRE(r.differing[0].a.has_value());
  CHECK(r.differing[0].a->body == R"({"n":1})");
  CHECK(r.differing[0].b->status == 200);
  CHECK_FALSE(r.differing[1].a.has_value());
  CHECK_FALSE(r.differing[2].b.has_value());
}
