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
    s.target = "http://127.0.0.1:9";
    s.started_ns = 1'900'000'000'000'000'000;
    s.ended_ns = s.started_ns + 5'000'000;
    s.total = 3;
    s.mismatches = 1;
    s.interrupted = true;
    s.time_shift.jwt_resigned = 4;
    REQUIRE(replay::save_run(**store, s).ok());
    replay::RunSummary other;
    other.run_id = "run-20300101-000001-000000";
    other.session = "s2";
    REQUIRE(replay::save_run(**store, other).ok());

    auto runs = replay::list_runs(**store);
    REQUIRE(runs.ok());
    REQUIRE(runs->size() == 2);
    const auto& back = runs->front();  // run ids sort by start time
    CHECK(back.run_id == s.run_id);
    CHECK(back.session == "s1");
    CHECK(back.target == s.target);
    CHECK(back.started_ns == s.started_ns);
    CHECK(back.ended_ns == s.ended_ns);
    CHECK(back.total == 3);
    CHECK(back.completed == 2);
    CHECK(back.mismatches == 1);
    CHECK(back.interrupted);
    CHECK(back.time_shift.jwt_resigned == 4);
    CHECK(runs->back().run_id == other.run_id);

    auto only_s2 = replay::list_runs(**store, "s2");
    REQUIRE(only_s2.ok());
    REQUIRE(only_s2->size() == 1);
    CHECK(only_s2->front().session == "s2");

    // A damaged entry is named, not skipped silently.
    REQUIRE((*store)->put_meta(std::string(replay::kRunMetaPrefix) + "run-x", "{not json").ok());
    auto damaged = replay::list_runs(**store);
    CHECK(damaged.status().code() == Errc::corruption);
    CHECK(damaged.status().message().find("run-x") != std::string::npos);
    CHECK(replay::parse_run_summary_json("[1]").status().code() == Errc::parse_error);
  }
  std::filesystem::remove_all(dir);
}
