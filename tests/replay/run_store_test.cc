// Flow selection from a real store and run metadata through the store's meta API.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <filesystem>

#include "replay/client/run_store.h"

using namespace retake;

TEST_CASE("a session's recorded flows are selected, replayed flows skipped, runs listed") {
  auto dir =
      std::filesystem::temp_directory_path() / ("retake-runstore-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  {
    auto store = store::FlowStore::open({.path = dir.string()});
    REQUIRE(store.ok());
    std::vector<flow::Flow> flows(3);
    for (int i = 0; i < 3; ++i) {
      flows[i].session = "s1";
      flows[i].request.method = "GET";
      flows[i].request.path = "/" + std::to_string(i);
    }
    flows[2].run = "run-x";  // a replayed flow in the same session
    REQUIRE((*store)->put(flows).ok());
    auto selected = replay::select_flows(**store, "s1", {});
    REQUIRE(selected.ok());
    CHECK(selected->size() == 2);
    auto by_id = replay::select_flows(**store, "", {flows[1].id});
    REQUIRE(by_id.ok());
    REQUIRE(by_id->size() == 1);
    CHECK(by_id->front().request.path == "/1");
    auto missing = replay::select_flows(**store, "nope", {});
    CHECK(missing.status().code() == Errc::not_found);
    CHECK(missing.status().message().find("no session named 'nope'") != std::string::npos);
    CHECK(replay::select_flows(**store, "", {12345}).status().code() == Errc::not_found);

    replay::RunSummary s;
    s.run_id = "run-20300101-000000-abcdef";
    s.session = "s1";
    s.completed = 2;
    REQUIRE(replay::save_run(**store, s).ok());
    auto runs = replay::list_runs(**store);
    REQUIRE(runs.ok());
    REQUIRE(runs->size() == 1);
    auto doc = boost::json::parse(runs->front()).as_object();
    CHECK(doc.at("run").as_string() == s.run_id);
    CHECK(doc.at("session").as_string() == "s1");
  }
  std::filesystem::remove_all(dir);
}
