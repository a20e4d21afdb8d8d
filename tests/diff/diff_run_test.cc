// ops::run_diff: pairing (run vs origin, two runs), the stored noise model, the filter, usage
// errors and cancellation on a real store; live A/B with noise learning against two instances
// of the test application (one with injected regressions).
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>

#include <stdlib.h>
#include "diff/report.h"
#include "ops/diff_run.h"

#include <filesystem>

#include "support/app/process.h"

using namespace retake;

namespace {

// A fresh directory under the system temp dir, removed at scope end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = std::filesystem::temp_directory_path() / "retake-diff-run-test-XXXXXX";
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::unique_ptr<store::FlowStore> open_store(const TempDir& dir) {
  store::StoreOptions o;
  o.path = dir.sub("db");
  auto db = store::FlowStore::open(o);
  REQUIRE(db.ok());
  return std::move(*db);
}

flow::Flow recorded(int n, const std::string& body, std::string path = {}) {
  flow::Flow f;
  f.session = "s";
  f.mode = "reverse";
  f.request.method = "GET";
  f.request.scheme = "http";
  f.request.authority = "127.0.0.1:9";
  f.request.path = path.empty() ? "/x/" + std::to_string(n) : path;
  f.request.http_version = "HTTP/1.1";
  f.request.headers.add("Host", "127.0.0.1:9");
  flow::Response r;
  r.status = 200;
  r.http_version = "HTTP/1.1";
  r.headers.add("Content-Type", "application/json");
  r.body.data = body;
  r.body.size = body.size();
  f.response = r;
  return f;
}

flow::Flow replayed(const flow::Flow& origin, const std::string& run, const std::string& body) {
  flow::Flow f = origin;
  f.id = 0;
  f.run = run;
  f.origin = origin.id;
  f.mode = "replay";
  f.response->body.data = body;
  f.response->body.size = body.size();
  return f;
}

std::string item(int n, int price) {
  return "{\"id\":" + std::to_string(n) + ",\"price\":" + std::to_string(price) + "}";
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<store::FlowStore> db;
  std::vector<flow::Flow> origins;
  Fixture() {
    db = open_store(dir);
    for (int n = 1; n <= 3; ++n) origins.push_back(recorded(n, item(n, 10 * n)));
    REQUIRE(db->put(origins).ok());
  }
  // Run `name`: a replay of every origin, with $.price changed where `changed` says.
  std::vector<uint64_t> add_run(const std::string& name, std::set<int> changed, size_t count = 3) {
    std::vector<flow::Flow> flows;
    for (size_t i = 0; i < count; ++i) {
      int n = static_cast<int>(i) + 1;
      flows.push_back(replayed(origins[i], name, item(n, 10 * n + (changed.count(n) ? 1 : 0))));
    }
    auto ids = db->put(flows);
    REQUIRE(ids.ok());
    return *ids;
  }
};

}  // namespace

TEST_CASE("a run is compared flow by flow with the recording it replays") {
  Fixture fx;
  auto ids = fx.add_run("r1", {2});
  ops::DiffRequest req;
  req.mode = ops::DiffMode::run;
  req.run = "r1";
  ops::DiffInfo info;
  int progress_calls = 0;
  auto res = ops::run_diff(
      *fx.db, req, [&](const ops::DiffProgress&) { ++progress_calls; }, nullptr, &info);
  REQUIRE(res.ok());
  CHECK(res->compared == 3);
  CHECK(res->identical == 2);
  CHECK(res->different == 1);
  CHECK(res->exit_code() == 1);
  REQUIRE(res->differing.size() == 1);
  CHECK(res->differing[0].flow_a == fx.origins[1].id);
  CHECK(res->differing[0].flow_b == ids[1]);
  CHECK(res->differing[0].endpoint == "GET /x/{id}");
  REQUIRE(res->differing[0].differences.size() == 1);
  CHECK(res->differing[0].differences[0].path == "$.price");
  CHECK(info.session == "s");
  CHECK(info.run_b == "r1");
  CHECK(info.run_a.empty());
  CHECK(info.unpaired == 0);
  CHECK_FALSE(info.noise_used);
  CHECK(progress_calls >= 1);
}

TEST_CASE("two runs are paired by origin and flows without a partner are counted") {
  Fixture fx;
  fx.add_run("r1", {});
  fx.add_run("r2", {1}, 2);
  ops::DiffRequest req;
  req.mode = ops::DiffMode::runs;
  req.run = "r1";
  req.run_b = "r2";
  ops::DiffInfo info;
  auto res = ops::run_diff(*fx.db, req, {}, nullptr, &info);
  REQUIRE(res.ok());
  CHECK(res->compared == 2);
  CHECK(res->different == 1);
  CHECK(info.unpaired == 1);
  CHECK(info.run_a == "r1");
  CHECK(info.run_b == "r2");
  // Identical runs give exit code 0.
  req.run_b = "r1";
  auto same = ops::run_diff(*fx.db, req);
  REQUIRE(same.ok());
  CHECK(same->compared == 3);
  CHECK(same->exit_code() == 0);
}

TEST_CASE("a stored noise model is used by the session's name unless switched off") {
  Fixture fx;
  fx.add_run("r1", {1, 2, 3});
  // Baselines that always differed at $.price: the candidates' difference is noise.
  diff::NoiseModel model;
  diff::Comparison baseline;
  baseline.differences.push_back({diff::DiffKind::value_changed, "$.price", "$.price", "1", "2"});
  for (int i = 0; i < 10; ++i) model.add_baseline("GET /x/{id}", baseline);
  REQUIRE(ops::save_noise(*fx.db, "s", model).ok());
  auto loaded = ops::load_noise(*fx.db, "s");
  REQUIRE(loaded.ok());
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->comparisons("GET /x/{id}") == 10);

  ops::DiffRequest req;
  req.run = "r1";
  ops::DiffInfo info;
  auto res = ops::run_diff(*fx.db, req, {}, nullptr, &info);
  REQUIRE(res.ok());
  CHECK(info.noise_used);
  CHECK(info.noise_name == "s");
  CHECK(info.noise_comparisons == 10);
  CHECK(res->different == 0);
  CHECK(res->noise_suppressed == 3);

  req.noise.use_stored = false;
  res = ops::run_diff(*fx.db, req);
  REQUIRE(res.ok());
  CHECK(res->different == 3);

  req.noise.use_stored = true;
  req.noise.name = "another";
  res = ops::run_diff(*fx.db, req, {}, nullptr, &info);
  REQUIRE(res.ok());
  CHECK_FALSE(info.noise_used);
  CHECK(res->different == 3);
}

TEST_CASE("the filter narrows the pairs to those whose recorded flow matches") {
  Fixture fx;
  fx.add_run("r1", {1, 2});
  ops::DiffRequest req;
  req.run = "r1";
  req.filter = "~u /x/2$";
  auto res = ops::run_diff(*fx.db, req);
  REQUIRE(res.ok());
  CHECK(res->compared == 1);
  CHECK(res->different == 1);
  req.filter = "~c abc";
  res = ops::run_diff(*fx.db, req);
  REQUIRE_FALSE(res.ok());
  CHECK(res.status().code() == Errc::parse_error);
}

TEST_CASE("ignore rules suppress their paths and an unused one is reported") {
  Fixture fx;
  fx.add_run("r1", {1});
  ops::DiffRequest req;
  req.run = "r1";
  req.compare.ignore = {"$.price", "$.nope"};
  auto res = ops::run_diff(*fx.db, req);
  REQUIRE(res.ok());
  CHECK(res->different == 0);
  CHECK(res->unused_rules == std::vector<std::string>{"$.nope"});
  req.compare.ignore = {"$.items[oops"};
  res = ops::run_diff(*fx.db, req);
  CHECK(res.status().code() == Errc::parse_error);
}

TEST_CASE("requests without their runs or targets are refused before anything runs") {
  Fixture fx;
  ops::DiffRequest req;
  req.mode = ops::DiffMode::run;
  CHECK(ops::run_diff(*fx.db, req).status().code() == Errc::invalid_argument);
  req.run = "no-such-run";
  CHECK(ops::run_diff(*fx.db, req).status().code() == Errc::not_found);
  req.mode = ops::DiffMode::runs;
  req.run_b.clear();
  CHECK(ops::run_diff(*fx.db, req).status().code() == Errc::invalid_argument);
  req.mode = ops::DiffMode::live;
  req.session = "s";
  CHECK(ops::run_diff(*fx.db, req).status().code() == Errc::invalid_argument);
  req.mode = ops::DiffMode::none;
  CHECK(ops::run_diff(*fx.db, req).status().code() == Errc::invalid_argument);
  // No run was stored by any of these.
  size_t runs = 0;
  CHECK(fx.db->scan_meta("replay/run/", [&](auto, auto) { return ++runs, true; }).ok());
  CHECK(runs == 0);
}

TEST_CASE("a set cancel flag stops the diff with cancelled") {
  Fixture fx;
  fx.add_run("r1", {});
  std::atomic<bool> cancel{true};
  ops::DiffRequest req;
  req.run = "r1";
  CHECK(ops::run_diff(*fx.db, req, {}, &cancel).status().code() == Errc::cancelled);
}

TEST_CASE("a damaged stored noise model is an error, not a crash") {
  Fixture fx;
  fx.add_run("r1", {});
  REQUIRE(fx.db->put_meta(std::string(ops::kNoiseMetaPrefix) + "s", "{not json").ok());
  ops::DiffRequest req;
  req.run = "r1";
  CHECK(ops::run_diff(*fx.db, req).status().code() == Errc::parse_error);
  req.noise.use_stored = false;
  CHECK(ops::run_diff(*fx.db, req).ok());
}

TEST_CASE("live A/B learns the noise and reports exactly the injected regressions") {
  retake::testing::ChildServer a({"python3", retake::testing::app_dir() + "/app.py"});
  retake::testing::ChildServer b({"python3", retake::testing::app_dir() + "/app.py", "--regress"});
  TempDir dir;
  auto db = open_store(dir);
  std::vector<flow::Flow> session;
  for (int n = 1; n <= 6; ++n)
    session.push_back(recorded(n, "{}", "/products/" + std::to_string(n)));
  session.push_back(recorded(0, "{}", "/health"));
  for (auto& f : session) f.session = "shop";
  REQUIRE(db->put(session).ok());

  ops::DiffRequest req;
  req.mode = ops::DiffMode::live;
  req.session = "shop";
  req.side_a.target = "http://127.0.0.1:" + std::to_string(a.port());
  req.side_b.target = "http://127.0.0.1:" + std::to_string(b.port());
  req.side_a.pace = req.side_b.pace = replay::Pace::asap;
  req.side_a.read_timeout = req.side_b.read_timeout = std::chrono::seconds(10);
  req.noise.learn = true;
  ops::DiffInfo info;
  std::set<ops::DiffProgress::Phase> phases;
  auto res = ops::run_diff(
      *db, req, [&](const ops::DiffProgress& p) { phases.insert(p.phase); }, nullptr, &info);
  REQUIRE(res.ok());
  CHECK(info.noise_learned);
  CHECK(info.noise_used);
  CHECK(info.noise_name == "shop");
  CHECK(info.noise_comparisons == 7);
  CHECK(phases.count(ops::DiffProgress::Phase::learning) == 1);
  CHECK(phases.count(ops::DiffProgress::Phase::replaying_b) == 1);
  CHECK(res->compared == 7);
  std::set<std::tuple<std::string, std::string, std::string>> found;
  for (const auto& pair : res->differing)
    for (const auto& d : pair.differences)
      found.insert({pair.endpoint, d.pattern, diff::diff_kind_name(d.kind)});
  std::set<std::tuple<std::string, std::string, std::string>> expected = {
      {"GET /products/{id}", "$.price", "value_changed"},
      {"GET /products/{id}", "$.currency", "field_missing"},
      {"GET /health", "status", "status_changed"},
      {"GET /health", "$.ok", "value_changed"},
  };
  CHECK(found == expected);
  CHECK(res->different == 7);
  // The noise (random ids, timestamps, a trace header) is what the learned model suppressed.
  std::set<std::string> noise;
  for (const auto& e : res->endpoints)
    for (const auto& p : e.paths)
      if (p.noise) noise.insert(p.pattern);
  CHECK(noise.count("$.trace") == 1);
  CHECK(noise.count("$.served_at") == 1);
  CHECK(noise.count("header:x-trace-id") == 1);
  CHECK(noise.count("$.time") == 1);

  // The model is stored and reused by a later diff of the same runs without learning.
  auto stored = ops::load_noise(*db, "shop");
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  ops::DiffRequest again;
  again.mode = ops::DiffMode::runs;
  again.run = info.run_a;
  again.run_b = info.run_b;
  ops::DiffInfo info2;
  auto res2 = ops::run_diff(*db, again, {}, nullptr, &info2);
  REQUIRE(res2.ok());
  CHECK(info2.noise_used);
  CHECK_FALSE(info2.noise_learned);
  CHECK(res2->different == res->different);
  CHECK(res2->unexplained_differences() == res->unexplained_differences());
  // Without it, the noise shows up as differences everywhere.
  again.noise.use_stored = false;
  auto raw = ops::run_diff(*db, again);
  REQUIRE(raw.ok());
  CHECK(raw->unexplained_differences() > res->unexplained_differences());
}
