#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "store/flow_store.h"
#include "test_flows.h"
#include "test_support.h"

using namespace retake;
using namespace retake::store;
using store::test::TempDir;

namespace {

std::unique_ptr<FlowStore> open_store(const std::string& path, bool read_only = false) {
  auto opened = FlowStore::open({.path = path, .read_only = read_only});
  REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
  return std::move(opened.value());
}

// Holds the writer thread inside on_written until released, so a test can fill the queue
// deterministically while the writer is busy.
class Gate {
 public:
  void pass() {
    std::unique_lock lock(mu_);
    ++arrived_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void wait_arrived(int n) {
    std::unique_lock lock(mu_);
    REQUIRE(cv_.wait_for(lock, std::chrono::seconds(20), [&] { return arrived_ >= n; }));
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool open_ = false;
};

// A store whose put() fails while `failing` is set (a full disk, say); otherwise the real one.
class FailingStore final : public FlowStore {
 public:
  explicit FailingStore(FlowStore& inner) : inner_(inner) {}
  std::atomic<bool> failing{true};
  std::atomic<bool> throwing{false};

  uint64_t next_id() override { return inner_.next_id(); }
  Result<std::vector<uint64_t>> put(std::vector<flow::Flow>& flows) override {
    if (throwing) throw std::runtime_error("bug in the store");
    if (failing) return Result<std::vector<uint64_t>>(Errc::io_error, "no space left on device");
    return inner_.put(flows);
  }
  Result<flow::Flow> get(uint64_t id, bool with_bodies) override {
    return inner_.get(id, with_bodies);
  }
  Status scan(const ScanOptions& o, const std::function<bool(flow::Flow&)>& v) override {
    return inner_.scan(o, v);
  }
  Result<uint64_t> count(const ScanOptions& o) override { return inner_.count(o); }
  Status remove(const std::vector<uint64_t>& ids) override { return inner_.remove(ids); }
  Result<std::vector<SessionInfo>> sessions() override { return inner_.sessions(); }
  Status refresh() override { return inner_.refresh(); }
  Status put_meta(std::string_view k, std::string_view v) override { return inner_.put_meta(k, v); }
  Result<std::optional<std::string>> get_meta(std::string_view k) override {
    return inner_.get_meta(k);
  }
  Status scan_meta(std::string_view p,
                   const std::function<bool(std::string_view, std::string_view)>& v) override {
    return inner_.scan_meta(p, v);
  }
  Status remove_meta(std::string_view k) override { return inner_.remove_meta(k); }
  Result<StoreStats> stats() override { return inner_.stats(); }
  bool read_only() const override { return inner_.read_only(); }
  const std::string& path() const override { return inner_.path(); }

 private:
  FlowStore& inner_;
};

}  // namespace

TEST_CASE("the writer group-commits queued flows in batches of at most max_batch") {
  TempDir dir;
  auto s = open_store(dir.path());
  Gate gate;
  std::atomic<int> observed{0};
  {
    FlowWriter writer(*s, {.queue_capacity = 2000, .max_batch = 512});
    writer.on_written([&](const flow::Flow& f) {
      if (observed++ == 0) gate.pass();  // hold the writer after its first batch
    });
    REQUIRE(writer.offer(test::small_flow(0, "g")));
    gate.wait_arrived(1);
    for (int i = 1; i <= 1100; ++i) REQUIRE(writer.offer(test::small_flow(i, "g")));
    gate.open();
    writer.flush();
    auto stats = writer.stats();
    CHECK(stats.accepted == 1101);
    CHECK(stats.written == 1101);
    CHECK(stats.dropped == 0);
    CHECK(stats.failed == 0);
    // 1 + ceil(1100 / 512): the queued flows went in three batches, not 1100.
    CHECK(stats.batches == 4);
  }
  CHECK(observed == 1101);
  auto n = s->count({.session = "g"});
  REQUIRE(n.ok());
  CHECK(*n == 1101);
}

TEST_CASE("a full queue refuses offers without blocking and counts them dropped") {
  TempDir dir;
  auto s = open_store(dir.path());
  Gate gate;
  FlowWriter writer(*s, {.queue_capacity = 4, .max_batch = 2});
  std::atomic<bool> first{true};
  writer.on_written([&](const flow::Flow&) {
    if (first.exchange(false)) gate.pass();
  });
  REQUIRE(writer.offer(test::small_flow(0)));
  gate.wait_arrived(1);  // the writer is busy; the queue is empty
  for (int i = 1; i <= 4; ++i) CHECK(writer.offer(test::small_flow(i)));
  CHECK_FALSE(writer.offer(test::small_flow(5)));
  CHECK_FALSE(writer.offer(test::small_flow(6)));
  auto stats = writer.stats();
  CHECK(stats.accepted == 5);
  CHECK(stats.dropped == 2);
  gate.open();
  writer.flush();
  stats = writer.stats();
  CHECK(stats.written == 5);
  CHECK(s->count({}).value() == 5);
}

TEST_CASE("flush waits for what was offered; stop drains, joins and refuses later offers") {
  TempDir dir;
  auto s = open_store(dir.path());
  FlowWriter writer(*s, {.queue_capacity = 10000, .max_batch = 16});
  std::vector<std::thread> producers;
  for (int t = 0; t < 4; ++t)
    producers.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) writer.offer(test::small_flow(t * 100 + i, "p"));
    });
  for (auto& p : producers) p.join();
  writer.flush();
  CHECK(writer.stats().written == 400);
  CHECK(s->count({.session = "p"}).value() == 400);

  for (int i = 0; i < 300; ++i) REQUIRE(writer.offer(test::small_flow(i, "q")));
  writer.stop();
  CHECK(writer.stats().written == 700);
  CHECK(s->count({.session = "q"}).value() == 300);
  CHECK_FALSE(writer.offer(test::small_flow(0)));
  CHECK(writer.stats().dropped == 1);
  writer.stop();   // idempotent
  writer.flush();  // nothing pending: returns
}

TEST_CASE("failed writes are counted and the writer keeps running") {
  TempDir dir;
  auto real = open_store(dir.path());

  SUBCASE("a store that fails, then recovers") {
    FailingStore failing(*real);
    FlowWriter writer(failing, {.queue_capacity = 100, .max_batch = 8});
    for (int i = 0; i < 20; ++i) REQUIRE(writer.offer(test::small_flow(i, "f")));
    writer.flush();
    CHECK(writer.stats().failed == 20);
    CHECK(writer.stats().written == 0);
    failing.failing = false;
    for (int i = 0; i < 5; ++i) REQUIRE(writer.offer(test::small_flow(i, "f")));
    writer.flush();
    CHECK(writer.stats().written == 5);
    CHECK(writer.stats().failed == 20);
    CHECK(real->count({.session = "f"}).value() == 5);
  }
  SUBCASE("a store that throws") {
    FailingStore failing(*real);
    failing.throwing = true;
    FlowWriter writer(failing, {.queue_capacity = 100, .max_batch = 8});
    for (int i = 0; i < 10; ++i) REQUIRE(writer.offer(test::small_flow(i, "t")));
    writer.flush();
    CHECK(writer.stats().failed == 10);
    failing.throwing = false;
    failing.failing = false;
    REQUIRE(writer.offer(test::small_flow(0, "t")));
    writer.flush();
    CHECK(writer.stats().written == 1);
  }
  SUBCASE("a read-only store") {
    auto read_only = open_store(dir.path(), true);
    FlowWriter writer(*read_only, {});
    for (int i = 0; i < 3; ++i) REQUIRE(writer.offer(test::small_flow(i)));
    writer.flush();
    CHECK(writer.stats().failed == 3);
    CHECK(writer.offer(test::small_flow(9)));
    writer.stop();
    CHECK(writer.stats().failed == 4);
  }
}

TEST_CASE("on_written sees every committed flow with its assigned id") {
  TempDir dir;
  auto s = open_store(dir.path());
  std::mutex mu;
  std::set<uint64_t> ids;
  {
    FlowWriter writer(*s, {.max_batch = 7});
    writer.on_written([&](const flow::Flow& f) {
      std::lock_guard lock(mu);
      ids.insert(f.id);
    });
    for (int i = 0; i < 50; ++i) REQUIRE(writer.offer(test::small_flow(i)));
  }  // the destructor stops and drains
  REQUIRE(ids.size() == 50);
  CHECK(ids.count(0) == 0);
  for (uint64_t id : ids) CHECK(s->get(id).ok());
}

TEST_CASE("a lingering writer is cut short by half a batch, by flush and by stop") {
  TempDir dir;
  auto s = open_store(dir.path());
  // An hour of linger: nothing in this test may wait for it to run out.
  FlowWriter writer(*s, {.queue_capacity = 100, .max_batch = 8, .linger = std::chrono::hours(1)});
  std::mutex mu;
  std::condition_variable cv;
  int written = 0;
  writer.on_written([&](const flow::Flow&) {
    std::lock_guard lock(mu);
    ++written;
    cv.notify_all();
  });

  // Half a batch (4 flows) is written without anyone asking.
  for (int i = 0; i < 4; ++i) REQUIRE(writer.offer(test::small_flow(i, "half")));
  {
    std::unique_lock lock(mu);
    CHECK(cv.wait_for(lock, std::chrono::seconds(20), [&] { return written == 4; }));
  }
  CHECK(s->count({.session = "half"}).value() == 4);

  // One flow waits for more, until flush() asks for it.
  REQUIRE(writer.offer(test::small_flow(10, "one")));
  writer.flush();
  CHECK(s->count({.session = "one"}).value() == 1);

  // stop() ends a linger too, and drains.
  REQUIRE(writer.offer(test::small_flow(11, "last")));
  writer.stop();
  CHECK(s->count({.session = "last"}).value() == 1);
  CHECK(writer.stats().written == 6);
}

namespace {

// Polls `done` for up to 10 s: the writer re-measures free space on its own schedule.
template <class Done>
bool eventually(Done done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

constexpr uint64_t kMiB = 1u << 20;

}  // namespace

TEST_CASE("writing pauses while free space is under the reserve and loses nothing") {
  TempDir dir;
  auto s = open_store(dir.path());
  std::atomic<uint64_t> free_bytes{1 * kMiB};
  std::atomic<int> probes{0};
  WriterOptions options;
  options.queue_capacity = 40;
  options.min_free_bytes = 4 * kMiB;
  options.space_check_interval = std::chrono::milliseconds(5);
  options.free_space = [&]() -> std::optional<uint64_t> {
    ++probes;
    return free_bytes.load();
  };
  FlowWriter writer(*s, options);
  for (int i = 0; i < 30; ++i) REQUIRE(writer.offer(test::small_flow(i, "d")));
  writer.flush();  // returns once paused: it does not wait for the disk
  auto stats = writer.stats();
  CHECK(stats.stalls == 1);
  CHECK(stats.written == 0);
  CHECK(stats.waiting_for_space == 30);
  CHECK(s->count({.session = "d"}).value() == 0);
  // The queue still bounds what waits: past its capacity offers are refused and counted.
  for (int i = 30; i < 45; ++i) writer.offer(test::small_flow(i, "d"));
  CHECK(writer.stats().dropped == 5);
  // Still short after several measures: still paused.
  int seen = probes.load();
  REQUIRE(eventually([&] { return probes.load() >= seen + 3; }));
  CHECK(writer.stats().written == 0);

  free_bytes = 100 * kMiB;
  REQUIRE(eventually([&] { return writer.stats().written == 40; }));
  stats = writer.stats();
  CHECK(stats.waiting_for_space == 0);
  CHECK(stats.failed == 0);
  CHECK(stats.stalls == 1);
  CHECK(s->count({.session = "d"}).value() == 40);
}

TEST_CASE("stopping while paused for space writes the queue into the reserve") {
  TempDir dir;
  auto s = open_store(dir.path());
  WriterOptions options;
  options.min_free_bytes = 4 * kMiB;
  options.free_space = []() -> std::optional<uint64_t> { return 1 * kMiB; };
  {
    FlowWriter writer(*s, options);
    for (int i = 0; i < 12; ++i) REQUIRE(writer.offer(test::small_flow(i, "r")));
    writer.flush();
    CHECK(writer.stats().stalls == 1);
    writer.stop();
    CHECK(writer.stats().written == 12);
  }
  CHECK(s->count({.session = "r"}).value() == 12);
}

TEST_CASE("an unknown free space or a zero reserve never pauses writing") {
  TempDir dir;
  auto s = open_store(dir.path());
  SUBCASE("unknown") {
    WriterOptions options;
    options.free_space = []() -> std::optional<uint64_t> { return std::nullopt; };
    FlowWriter writer(*s, options);
    REQUIRE(writer.offer(test::small_flow(0, "u")));
    writer.flush();
    CHECK(writer.stats().written == 1);
    CHECK(writer.stats().stalls == 0);
  }
  SUBCASE("zero reserve") {
    WriterOptions options;
    options.min_free_bytes = 0;
    options.free_space = []() -> std::optional<uint64_t> { return 0; };
    FlowWriter writer(*s, options);
    REQUIRE(writer.offer(test::small_flow(0, "z")));
    writer.flush();
    CHECK(writer.stats().written == 1);
    CHECK(writer.stats().stalls == 0);
  }
}
