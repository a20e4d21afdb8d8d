// Filters evaluated through the store's indexes (ops::select_flows) choose exactly the flows
// that matching every stored flow chooses, in the same order, page after page.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "ops/select.h"
#include "query/filter.h"
#include "store/flow_store.h"

using namespace retake;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "retake-select-test-XXXXXX");
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// 2026-11-01T10:00:00Z
constexpr int64_t kT0 = 1'793'527'200'000'000'000;
constexpr int64_t kSec = 1'000'000'000;

// Flows spread over an hour; ids are assigned at write time, in an order unrelated to their
// start times (as for imported flows), so a time range is not an id range.
std::vector<flow::Flow> flows_for_filters() {
  std::mt19937 rng(99);
  const std::vector<std::string> hosts = {"api.example.com:8443", "Example.com", "cdn.example.org",
                                          "[::1]:9000", ""};
  const std::vector<std::string> methods = {"GET", "GET", "POST", "put", "DELETE"};
  std::vector<flow::Flow> out;
  for (int i = 0; i < 400; ++i) {
    flow::Flow f;
    f.session = i % 3 == 0 ? "shop" : "chat";
    f.request.method = methods[rng() % methods.size()];
    f.request.scheme = "http";
    f.request.authority = hosts[rng() % hosts.size()];
    f.request.path = "/v1/items/" + std::to_string(i);
    if (rng() % 4 == 0) f.request.headers.add("Host", "Virtual.Example.net");
    if (rng() % 6 != 0) {
      f.response.emplace();
      f.response->status = std::vector<int>{200, 201, 404, 500, 503}[rng() % 5];
    }
    if (rng() % 10 != 0) f.timing.request_started = kT0 + static_cast<int64_t>(rng() % 3600) * kSec;
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<uint64_t> select_ids(store::FlowStore& s, ops::Selection sel, size_t page) {
  std::vector<uint64_t> all;
  sel.limit = page;
  for (int guard = 0; guard < 1000; ++guard) {
    std::vector<uint64_t> ids;
    auto st = ops::select_flows(s, sel, [&](const flow::Flow& f) {
      ids.push_back(f.id);
      return true;
    });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    all.insert(all.end(), ids.begin(), ids.end());
    if (ids.size() < page) break;
    sel.after_id = ids.back();
  }
  return all;
}

}  // namespace

TEST_CASE("index-driven filters choose exactly what matching every flow chooses") {
  TempDir dir;
  auto opened = store::FlowStore::open({.path = dir.path() + "/db"});
  REQUIRE(opened.ok());
  auto& s = **opened;
  auto flows = flows_for_filters();
  REQUIRE(s.put(flows).ok());

  const std::vector<std::string> expressions = {
      "~since 2026-11-01T10:10 ~until 2026-11-01T10:12",
      "~since 2026-11-01T10:59:30",
      "~until 2026-11-01T10:00:30",
      "~since 2026-11-01T10:20 ~until 2026-11-01T10:10",
      "~d example.com",
      "~d ^example\\.com$",
      "~d virtual",
      "~d '(?-i)^Example'",
      "~d ^$",
      "~m GET",
      "~m ^p",
      "~m DELETE & ~d api",
      "~c 5xx",
      "~c 500",
      "~c 1xx",
      "~session shop & ~m POST & ~since 2026-11-01T10:30",
      "~d example & ~c 2xx & ~until 2026-11-01T10:45 & ~m get",
      "~m GET | ~d cdn",
      "!~m GET & ~since 2026-11-01T10:05",
      "~u items/1\\d$",
  };
  for (const auto& expression : expressions) {
    CAPTURE(expression);
    auto filter = query::Filter::parse(expression);
    REQUIRE_MESSAGE(filter.ok(), filter.status().to_string());
    std::vector<uint64_t> want;
    for (const auto& f : flows)
      if (filter->matches(f)) want.push_back(f.id);
    ops::Selection sel{.filter = expression};
    CHECK(select_ids(s, sel, 1000) == want);
    CHECK(select_ids(s, sel, 7) == want);
    sel.reverse = true;
    std::reverse(want.begin(), want.end());
    CHECK(select_ids(s, sel, 6) == want);
  }
}
