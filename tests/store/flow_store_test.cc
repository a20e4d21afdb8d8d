#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>

#include "store/flow_codec.h"
#include "store/flow_store.h"
#include "store/flow_store_testing.h"
#include "test_flows.h"
#include "test_support.h"

using namespace retake;
using namespace retake::store;
using store::test::Child;
using store::test::TempDir;

namespace {

std::unique_ptr<FlowStore> open_store(const std::string& path, bool read_only = false) {
  auto opened = FlowStore::open({.path = path, .read_only = read_only});
  REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
  return std::move(opened.value());
}

std::vector<uint64_t> scan_ids(FlowStore& s, const ScanOptions& o) {
  std::vector<uint64_t> ids;
  auto st = s.scan(o, [&](const flow::Flow& f) {
    ids.push_back(f.id);
    return true;
  });
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  return ids;
}

// Pages through a scan `page` flows at a time using after_id as the cursor.
std::vector<uint64_t> scan_paged(FlowStore& s, ScanOptions o, size_t page) {
  std::vector<uint64_t> all;
  o.limit = page;
  for (int guard = 0; guard < 1000; ++guard) {
    auto ids = scan_ids(s, o);
    all.insert(all.end(), ids.begin(), ids.end());
    if (ids.size() < page) break;
    o.after_id = ids.back();
  }
  return all;
}

std::vector<flow::Flow> put_small(FlowStore& s, int from, int count, const std::string& session) {
  std::vector<flow::Flow> flows;
  for (int i = from; i < from + count; ++i) flows.push_back(test::small_flow(i, session));
  auto ids = s.put(flows);
  REQUIRE_MESSAGE(ids.ok(), ids.status().to_string());
  return flows;
}

std::optional<SessionInfo> find_session(FlowStore& s, const std::string& name) {
  auto sessions = s.sessions();
  REQUIRE(sessions.ok());
  for (auto& info : *sessions)
    if (info.name == name) return info;
  return std::nullopt;
}

}  // namespace

TEST_CASE("a flow with every field set comes back equal") {
  TempDir dir;
  auto s = open_store(dir.path());
  flow::Flow f = test::full_flow();
  auto id = s->put(f);
  REQUIRE(id.ok());
  CHECK(*id != 0);
  CHECK(f.id == *id);

  auto back = s->get(*id);
  REQUIRE_MESSAGE(back.ok(), back.status().to_string());
  CHECK(*back == f);

  SUBCASE("and after reopening") {
    s.reset();
    auto again = open_store(dir.path());
    auto reread = again->get(*id);
    REQUIRE(reread.ok());
    CHECK(*reread == f);
  }
  SUBCASE("without bodies only the bytes are left out") {
    auto light = s->get(*id, false);
    REQUIRE(light.ok());
    CHECK(light->request.body.data.empty());
    CHECK(light->request.body.size == f.request.body.size);
    CHECK(light->request.body.truncated);
    CHECK(light->response->body.data.empty());
    CHECK(light->response->body.size == 5);
    flow::Flow expected = f;
    expected.request.body.data.clear();
    expected.response->body.data.clear();
    CHECK(*light == expected);
  }
}

TEST_CASE("a flow with nothing optional set comes back equal") {
  TempDir dir;
  auto s = open_store(dir.path());
  flow::Flow f;
  f.kind = flow::FlowKind::tunnel;
  f.bytes_from_client = 10;
  auto id = s->put(f);
  REQUIRE(id.ok());
  auto back = s->get(*id);
  REQUIRE(back.ok());
  CHECK(*back == f);
  CHECK_FALSE(back->response.has_value());
  CHECK_FALSE(back->error.has_value());
  CHECK_FALSE(back->websocket.has_value());
}

TEST_CASE("identical bodies across flows are stored once") {
  TempDir dir;
  auto s = open_store(dir.path());
  std::vector<flow::Flow> flows(3, test::small_flow(1));
  for (auto& f : flows) f.response->body.data = "the same bytes";
  flows[2].request.body.data = "the same bytes";  // request and response share too
  REQUIRE(s->put(flows).ok());
  auto stats = s->stats();
  REQUIRE(stats.ok());
  CHECK(stats->flows == 3);
  CHECK(stats->bodies == 1);
  CHECK(stats->body_bytes == std::string("the same bytes").size());

  // A later batch, after a reopen (no in-process memory of what was written), still dedups.
  s.reset();
  s = open_store(dir.path());
  flow::Flow again = test::small_flow(2);
  again.response->body.data = "the same bytes";
  flow::Flow other = test::small_flow(3);
  other.response->body.data = "different bytes";
  REQUIRE(s->put(again).ok());
  REQUIRE(s->put(other).ok());
  stats = s->stats();
  REQUIRE(stats.ok());
  CHECK(stats->flows == 5);
  CHECK(stats->bodies == 2);
  auto back = s->get(again.id);
  REQUIRE(back.ok());
  CHECK(back->response->body.data == "the same bytes");
}

TEST_CASE("truncated body flags and wire sizes are preserved") {
  TempDir dir;
  auto s = open_store(dir.path());
  flow::Flow f = test::small_flow(0);
  f.request.body = {"first bytes", 1u << 30, true};
  f.response->body = {"", 5000, true};  // nothing kept, but the size and the flag are facts
  REQUIRE(s->put(f).ok());
  auto back = s->get(f.id);
  REQUIRE(back.ok());
  CHECK(back->request.body.data == "first bytes");
  CHECK(back->request.body.size == (1u << 30));
  CHECK(back->request.body.truncated);
  CHECK(back->response->body.data.empty());
  CHECK(back->response->body.size == 5000);
  CHECK(back->response->body.truncated);
  CHECK(*back == f);
}

TEST_CASE("a store stamped with a newer schema is refused, naming both versions") {
  TempDir dir;
  {
    auto s = open_store(dir.path());
    REQUIRE(testing::write_raw(*s, "meta", testing::schema_version_key(),
                               std::to_string(kSchemaVersion + 1))
                .ok());
  }
  for (bool read_only : {false, true}) {
    auto opened = FlowStore::open({.path = dir.path(), .read_only = read_only});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Errc::version_mismatch);
    const std::string message = opened.status().message();
    CHECK(message.find("schema " + std::to_string(kSchemaVersion + 1)) != std::string::npos);
    CHECK(message.find("up to " + std::to_string(kSchemaVersion)) != std::string::npos);
  }
}

TEST_CASE("a store with flows but no schema version is reported as corruption") {
  TempDir dir;
  {
    auto s = open_store(dir.path());
    put_small(*s, 0, 3, "s1");
    REQUIRE(testing::remove_raw(*s, "meta", testing::schema_version_key()).ok());
  }
  auto opened = FlowStore::open({.path = dir.path()});
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.status().code() == Errc::corruption);

  SUBCASE("and an unreadable version too") {
    TempDir other;
    {
      auto s = open_store(other.path());
      REQUIRE(testing::write_raw(*s, "meta", testing::schema_version_key(), "v1?").ok());
    }
    auto again = FlowStore::open({.path = other.path()});
    REQUIRE_FALSE(again.ok());
    CHECK(again.status().code() == Errc::corruption);
  }
}

TEST_CASE("opening a missing store fails with not_found unless it may be created") {
  TempDir dir;
  auto missing = FlowStore::open({.path = dir.sub("nope"), .create_if_missing = false});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == Errc::not_found);
  auto read_only = FlowStore::open({.path = dir.sub("nope"), .read_only = true});
  REQUIRE_FALSE(read_only.ok());
  CHECK(read_only.status().code() == Errc::not_found);
  // mkdir -p of a nested path.
  auto created = FlowStore::open({.path = dir.sub("a/b/c/db")});
  CHECK(created.ok());
  auto empty = FlowStore::open({.path = ""});
  CHECK(empty.status().code() == Errc::invalid_argument);
}

TEST_CASE("a writer killed with SIGKILL loses no acknowledged flow") {
  TempDir dir;
  std::vector<std::pair<int, uint64_t>> acked;
  {
    Child child({"ack", dir.path()});
    while (acked.size() < 300) {
      auto line = child.read_line();
      REQUIRE_MESSAGE(line.has_value(), "the child stopped acknowledging");
      std::istringstream in(*line);
      int index = 0;
      uint64_t id = 0;
      in >> index >> id;
      acked.emplace_back(index, id);
    }
    child.kill_now();  // mid-stream: it is putting the next flow right now
    // Acknowledgements already in the pipe count too.
    while (auto line = child.read_line(std::chrono::milliseconds(2000))) {
      std::istringstream in(*line);
      int index = 0;
      uint64_t id = 0;
      if (in >> index >> id) acked.emplace_back(index, id);
    }
  }
  auto s = open_store(dir.path());
  for (auto [index, id] : acked) {
    auto f = s->get(id);
    REQUIRE_MESSAGE(f.ok(), "flow " << id << ": " << f.status().to_string());
    flow::Flow expected = test::small_flow(index, "killed");
    expected.id = id;
    CHECK(*f == expected);
  }
  // Counters were written in the same batches as the flows, so they agree with them.
  auto stored = s->count({});
  REQUIRE(stored.ok());
  CHECK(*stored >= acked.size());
  auto info = find_session(*s, "killed");
  REQUIRE(info.has_value());
  CHECK(info->flow_count == *stored);
}

TEST_CASE("scans by session, host and status page forward and backward") {
  TempDir dir;
  auto s = open_store(dir.path());
  auto s1 = put_small(*s, 0, 30, "s1");
  auto s2 = put_small(*s, 30, 12, "s2");
  std::vector<uint64_t> all_s1, all_ids;
  for (auto& f : s1) all_s1.push_back(f.id);
  for (auto& f : s1) all_ids.push_back(f.id);
  for (auto& f : s2) all_ids.push_back(f.id);

  CHECK(scan_ids(*s, {}) == all_ids);
  CHECK(scan_ids(*s, {.session = "s1"}) == all_s1);
  CHECK(scan_ids(*s, {.session = "nobody"}).empty());

  SUBCASE("host matches case-insensitively and combines with session") {
    std::vector<uint64_t> expected;
    for (auto& f : s1)
      if (f.request.authority == "host1.test") expected.push_back(f.id);
    CHECK(scan_ids(*s, {.session = "s1", .host = "HOST1.test"}) == expected);
    auto all_host1 = scan_ids(*s, {.host = "host1.test"});
    CHECK(all_host1.size() == 14);  // i % 3 == 1 for i in [0, 42)
  }
  SUBCASE("status alone and with session") {
    std::vector<uint64_t> expected;
    for (auto& f : s2)
      if (f.response->status == 404) expected.push_back(f.id);
    CHECK(scan_ids(*s, {.session = "s2", .status = 404}) == expected);
    CHECK(scan_ids(*s, {.status = 500}).size() == 14);
    CHECK(scan_ids(*s, {.status = 302}).empty());
    CHECK(scan_ids(*s, {.status = -1}).empty());
  }
  SUBCASE("paging with after_id visits every flow once, in both directions") {
    CHECK(scan_paged(*s, {.session = "s1"}, 7) == all_s1);
    CHECK(scan_paged(*s, {}, 5) == all_ids);
    auto reversed = all_s1;
    std::reverse(reversed.begin(), reversed.end());
    CHECK(scan_ids(*s, {.session = "s1", .reverse = true}) == reversed);
    CHECK(scan_paged(*s, {.session = "s1", .reverse = true}, 4) == reversed);
    auto all_reversed = all_ids;
    std::reverse(all_reversed.begin(), all_reversed.end());
    CHECK(scan_paged(*s, {.reverse = true}, 9) == all_reversed);
  }
  SUBCASE("limit and early stop") {
    CHECK(scan_ids(*s, {.session = "s2", .limit = 3}).size() == 3);
    int seen = 0;
    REQUIRE(s->scan({}, [&](const flow::Flow&) { return ++seen < 2; }).ok());
    CHECK(seen == 2);
  }
  SUBCASE("with_bodies false leaves body bytes out") {
    REQUIRE(s->scan({.session = "s2", .with_bodies = false}, [&](const flow::Flow& f) {
               CHECK(f.response->body.data.empty());
               CHECK(f.response->body.size > 0);
               return true;
             }).ok());
  }
  SUBCASE("count agrees with scan") {
    for (ScanOptions o :
         {ScanOptions{}, ScanOptions{.session = "s1"}, ScanOptions{.host = "host2.test"},
          ScanOptions{.status = 404}, ScanOptions{.session = "s2", .status = 200},
          ScanOptions{.session = "s1", .after_id = all_s1[10], .limit = 5}}) {
      auto n = s->count(o);
      REQUIRE(n.ok());
      CHECK(*n == scan_ids(*s, o).size());
    }
  }
}

TEST_CASE("sessions() counts flows and spans their times") {
  TempDir dir;
  auto s = open_store(dir.path());
  put_small(*s, 0, 10, "alpha");
  put_small(*s, 10, 5, "beta");
  put_small(*s, 15, 3, "alpha");
  auto sessions = s->sessions();
  REQUIRE(sessions.ok());
  REQUIRE(sessions->size() == 2);
  CHECK((*sessions)[0].name == "alpha");
  CHECK((*sessions)[0].flow_count == 13);
  CHECK((*sessions)[0].first_ns == test::small_flow(0).timing.request_started);
  CHECK((*sessions)[0].last_ns == test::small_flow(17).timing.request_started);
  CHECK((*sessions)[1].name == "beta");
  CHECK((*sessions)[1].flow_count == 5);
}

TEST_CASE("remove deletes flows, their index entries and their share of the counters") {
  TempDir dir;
  auto s = open_store(dir.path());
  auto a = put_small(*s, 0, 10, "a");
  auto b = put_small(*s, 10, 4, "b");
  auto before = s->stats();
  REQUIRE(before.ok());

  // The first flow of "a" leaves: the session's first time moves to the next one.
  REQUIRE(s->remove({a[0].id, a[5].id, 424242}).ok());
  CHECK(s->get(a[0].id).status().code() == Errc::not_found);
  CHECK(s->get(a[1].id).ok());
  auto ids = scan_ids(*s, {.session = "a"});
  CHECK(ids.size() == 8);
  CHECK(std::find(ids.begin(), ids.end(), a[5].id) == ids.end());
  auto info = find_session(*s, "a");
  REQUIRE(info.has_value());
  CHECK(info->flow_count == 8);
  CHECK(info->first_ns == a[1].timing.request_started);
  CHECK(info->last_ns == a[9].timing.request_started);
  auto after = s->stats();
  REQUIRE(after.ok());
  CHECK(after->flows == before->flows - 2);
  // Each small flow has 5 index entries: session, host, status, method, start time (its Host
  // header names the authority's host, so no `d` entry).
  CHECK(after->index_entries == before->index_entries - 10);

  std::vector<uint64_t> all_b;
  for (auto& f : b) all_b.push_back(f.id);
  REQUIRE(s->remove(all_b).ok());
  CHECK_FALSE(find_session(*s, "b").has_value());
  CHECK(scan_ids(*s, {.session = "b"}).empty());
}

TEST_CASE("putting a stored id replaces the flow, its index entries and counters") {
  TempDir dir;
  auto s = open_store(dir.path());
  auto flows = put_small(*s, 0, 3, "x");
  flow::Flow changed = flows[0];  // status 200
  changed.response->status = 503;
  changed.marked = ":star:";
  REQUIRE(s->put(changed).ok());
  auto back = s->get(changed.id);
  REQUIRE(back.ok());
  CHECK(*back == changed);
  CHECK(scan_ids(*s, {.status = 200}).empty());
  CHECK(scan_ids(*s, {.status = 503}) == std::vector<uint64_t>{changed.id});
  auto info = find_session(*s, "x");
  REQUIRE(info.has_value());
  CHECK(info->flow_count == 3);

  changed.session = "y";
  REQUIRE(s->put(changed).ok());
  CHECK(find_session(*s, "x")->flow_count == 2);
  CHECK(find_session(*s, "x")->first_ns == flows[1].timing.request_started);
  CHECK(find_session(*s, "y")->flow_count == 1);

  std::vector<flow::Flow> twice{changed, changed};
  CHECK(s->put(twice).status().code() == Errc::invalid_argument);

  // A fresh id never collides with an id given later in the same batch.
  std::vector<flow::Flow> mixed{test::small_flow(7, "x"), test::small_flow(8, "x")};
  mixed[1].id = s->next_id() + 1;
  auto ids = s->put(mixed);
  REQUIRE(ids.ok());
  CHECK((*ids)[0] != (*ids)[1]);
  CHECK(find_session(*s, "x")->flow_count == 4);
}

TEST_CASE("ids are time-ordered, strictly increasing and above every stored id") {
  TempDir dir;
  uint64_t future = static_cast<uint64_t>(flow::now_ns()) + (uint64_t{1} << 50);
  {
    auto s = open_store(dir.path());
    uint64_t last = 0;
    for (int i = 0; i < 1000; ++i) {
      uint64_t id = s->next_id();
      CHECK(id > last);
      last = id;
    }
    flow::Flow f = test::small_flow(0);
    f.id = future;  // as if the clock had been far ahead when it was written
    REQUIRE(s->put(f).ok());
  }
  auto s = open_store(dir.path());
  CHECK(s->next_id() > future);
}

TEST_CASE("a damaged flow value is reported as corruption naming the id, never a crash") {
  TempDir dir;
  auto s = open_store(dir.path());
  flow::Flow good = test::full_flow();
  REQUIRE(s->put(good).ok());
  std::string encoded =
      encode_flow(good, sha256(good.request.body.data), sha256(good.response->body.data));
  const uint64_t id = good.id + 1;

  auto expect_corruption = [&](const std::string& bytes) {
    REQUIRE(testing::write_raw(*s, "flows", testing::flow_key(id), bytes).ok());
    auto f = s->get(id);
    REQUIRE_FALSE(f.ok());
    CHECK(f.status().code() == Errc::corruption);
    CHECK(f.status().message().find(std::to_string(id)) != std::string::npos);
    Status scanned = s->scan({}, [](const flow::Flow&) { return true; });
    CHECK(scanned.code() == Errc::corruption);
  };
  expect_corruption("");
  expect_corruption("garbage");                              // not whole words
  expect_corruption(std::string(64, '\xff'));                // whole words, nonsense pointers
  expect_corruption(encoded.substr(0, encoded.size() / 2));  // cut short
  expect_corruption(encoded);                                // a valid flow stored under another id
  // Packed words: segment table (1 segment, 3 words), a root struct pointer with one pointer
  // field, and that pointer: a list claiming 2^29 8-byte elements far past the end.
  const std::string huge(
      "\x10\x03"
      "\x40\x01"
      "\xf1\x01\xfd\xff\xff\xff"
      "\x00\x00",
      12);
  expect_corruption(huge);

  // Random damage to a valid encoding: each outcome is a flow or corruption, never a crash.
  std::mt19937 rng(7);
  std::string key = testing::flow_key(good.id);
  for (int round = 0; round < 300; ++round) {
    std::string damaged = encoded;
    for (int k = 0; k < 4; ++k) damaged[rng() % damaged.size()] = static_cast<char>(rng());
    REQUIRE(testing::write_raw(*s, "flows", key, damaged).ok());
    auto f = s->get(good.id);
    if (!f.ok()) CHECK(f.status().code() == Errc::corruption);
  }
}

TEST_CASE("a flow whose body is missing from bodies is corruption") {
  TempDir dir;
  auto s = open_store(dir.path());
  flow::Flow f = test::small_flow(0);
  REQUIRE(s->put(f).ok());
  REQUIRE(testing::remove_raw(*s, "bodies", sha256(f.response->body.data)).ok());
  CHECK(s->get(f.id).status().code() == Errc::corruption);
  CHECK(s->get(f.id, false).ok());
}

TEST_CASE("the metadata API keeps caller keys apart from the store's own") {
  TempDir dir;
  {
    auto s = open_store(dir.path());
    REQUIRE(s->put_meta("noise/api", "ignore $.ts").ok());
    REQUIRE(s->put_meta("noise/web", "ignore Date").ok());
    REQUIRE(s->put_meta("runs/1", std::string("\0binary\xff", 8)).ok());
    // Looks like the internal version key, but lives in the caller's space.
    REQUIRE(s->put_meta(testing::schema_version_key(), "999").ok());
    REQUIRE(s->put_meta(std::string("i\0session\0s1", 12), "not counters").ok());

    auto got = s->get_meta("runs/1");
    REQUIRE(got.ok());
    REQUIRE(got->has_value());
    CHECK(**got == std::string("\0binary\xff", 8));
    auto absent = s->get_meta("runs/2");
    REQUIRE(absent.ok());
    CHECK_FALSE(absent->has_value());

    std::vector<std::pair<std::string, std::string>> seen;
    REQUIRE(s->scan_meta("noise/", [&](std::string_view k, std::string_view v) {
               seen.emplace_back(k, v);
               return true;
             }).ok());
    REQUIRE(seen.size() == 2);
    CHECK(seen[0] == std::pair<std::string, std::string>{"noise/api", "ignore $.ts"});
    CHECK(seen[1].first == "noise/web");

    size_t everything = 0;
    REQUIRE(s->scan_meta("", [&](std::string_view, std::string_view) {
               return ++everything, true;
             }).ok());
    CHECK(everything == 5);

    REQUIRE(s->remove_meta("noise/api").ok());
    CHECK_FALSE(s->get_meta("noise/api")->has_value());
    CHECK(s->put_meta("", "x").code() == Errc::invalid_argument);
    CHECK(s->put_meta(std::string(kMaxMetaKeySize + 1, 'k'), "x").code() == Errc::invalid_argument);
    auto sessions = s->sessions();
    REQUIRE(sessions.ok());
    CHECK(sessions->empty());
  }
  // The schema version was not clobbered.
  auto s = open_store(dir.path());
  CHECK(s->get_meta("noise/web")->value() == "ignore Date");
}

TEST_CASE("a read-only store beside a live writer in another process sees its flows") {
  TempDir dir;
  Child writer({"serve", dir.path(), "50"});
  auto ready = writer.read_line();
  REQUIRE(ready == std::optional<std::string>("ready"));

  // The writer holds the lock: a second writer is refused with a clear status.
  auto second = FlowStore::open({.path = dir.path()});
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == Errc::unavailable);

  auto reader = open_store(dir.path(), true);
  CHECK(reader->read_only());
  auto n = reader->count({.session = "live"});
  REQUIRE(n.ok());
  CHECK(*n == 50);
  std::vector<flow::Flow> seen;
  REQUIRE(reader
              ->scan({.session = "live"},
                     [&](const flow::Flow& f) {
                       seen.push_back(f);
                       return true;
                     })
              .ok());
  REQUIRE(seen.size() == 50);
  for (int i = 0; i < 50; ++i) {
    flow::Flow expected = test::small_flow(i, "live");
    expected.id = seen[i].id;
    CHECK(seen[i] == expected);
  }
  auto info = find_session(*reader, "live");
  REQUIRE(info.has_value());
  CHECK(info->flow_count == 50);

  writer.write_line("put 25");
  REQUIRE(writer.read_line() == std::optional<std::string>("ok"));
  REQUIRE(reader->refresh().ok());
  n = reader->count({.session = "live"});
  REQUIRE(n.ok());
  CHECK(*n == 75);
  CHECK(find_session(*reader, "live")->flow_count == 75);

  flow::Flow f = test::small_flow(0);
  CHECK(reader->put(f).status().code() == Errc::failed_precondition);
  CHECK(reader->remove({seen[0].id}).code() == Errc::failed_precondition);
  CHECK(reader->put_meta("k", "v").code() == Errc::failed_precondition);

  // The secondary instance keeps its private directory only while open.
  auto secondary_dirs = [] {
    std::string mine = "retake-secondary-" + std::to_string(getpid()) + "-";
    int n = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator(std::filesystem::temp_directory_path()))
      if (entry.path().filename().string().rfind(mine, 0) == 0) ++n;
    return n;
  };
  CHECK(secondary_dirs() == 1);
  reader.reset();
  CHECK(secondary_dirs() == 0);

  writer.close_stdin();
  CHECK(writer.wait() == 0);
}

TEST_CASE("the default store lives in $RETAKE_HOME/db, then ~/.retake/db") {
  std::string saved_retake = std::getenv("RETAKE_HOME") ? std::getenv("RETAKE_HOME") : "";
  std::string saved_home = std::getenv("HOME") ? std::getenv("HOME") : "";
  setenv("RETAKE_HOME", "/srv/retake-test", 1);
  CHECK(default_db_path() == "/srv/retake-test/db");
  unsetenv("RETAKE_HOME");
  setenv("HOME", "/home/someone", 1);
  CHECK(default_db_path() == "/home/someone/.retake/db");
  unsetenv("HOME");
  CHECK(default_db_path().size() > std::string("/.retake/db").size() - 1);  // password database
  if (!saved_home.empty()) setenv("HOME", saved_home.c_str(), 1);
  if (!saved_retake.empty()) setenv("RETAKE_HOME", saved_retake.c_str(), 1);
}

TEST_CASE("index values that extend one another stay apart, even with NUL bytes") {
  TempDir dir;
  auto s = open_store(dir.path());
  const std::string longer("a\0b", 3);
  auto a = put_small(*s, 0, 3, "a");
  auto ab = put_small(*s, 3, 4, longer);
  auto a0 = put_small(*s, 7, 2, std::string("a\0", 2));
  CHECK(scan_ids(*s, {.session = "a"}).size() == 3);
  CHECK(scan_ids(*s, {.session = longer}).size() == 4);
  CHECK(scan_ids(*s, {.session = std::string("a\0", 2)}).size() == 2);
  CHECK(scan_ids(*s, {.session = "a", .reverse = true}).size() == 3);
  CHECK(scan_paged(*s, {.session = longer}, 1).size() == 4);
  CHECK(s->count({.session = "a"}).value() == 3);
  auto sessions = s->sessions();
  REQUIRE(sessions.ok());
  REQUIRE(sessions->size() == 3);
  CHECK(find_session(*s, longer)->flow_count == 4);
}
