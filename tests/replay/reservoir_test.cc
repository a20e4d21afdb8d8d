// Reservoir: exact below capacity, bounded and uniform above it.
#include <doctest/doctest.h>

#include <algorithm>

#include "replay/client/reservoir.h"

using retake::replay::Reservoir;

TEST_CASE("below its capacity a reservoir holds every value in order") {
  Reservoir r(10);
  for (int64_t v = 0; v < 7; ++v) r.add(v);
  CHECK(r.seen() == 7);
  CHECK(r.values() == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});
}

TEST_CASE("past its capacity a reservoir stays bounded and samples the whole stream") {
  Reservoir r(1000);
  const int64_t n = 200'000;
  for (int64_t v = 0; v < n; ++v) r.add(v);
  CHECK(r.seen() == static_cast<uint64_t>(n));
  REQUIRE(r.values().size() == 1000);
  auto v = r.values();
  std::sort(v.begin(), v.end());
  // A uniform sample of 0..n-1: its quartiles sit near n/4, n/2, 3n/4 (the seed is fixed,
  // so this is deterministic; the bounds are about 5 standard errors wide), and values from
  // the whole stream are present, early and late.
  CHECK(v[250] > n / 4 - 10'000);
  CHECK(v[250] < n / 4 + 10'000);
  CHECK(v[500] > n / 2 - 10'000);
  CHECK(v[500] < n / 2 + 10'000);
  CHECK(v[750] > 3 * n / 4 - 10'000);
  CHECK(v[750] < 3 * n / 4 + 10'000);
  CHECK(v.front() < n / 20);
  CHECK(v.back() > n - n / 20);
}

TEST_CASE("a reservoir of capacity 0 holds nothing and still counts") {
  Reservoir r(0);
  for (int64_t v = 0; v < 5; ++v) r.add(v);
  CHECK(r.values().empty());
  CHECK(r.seen() == 5);
}
