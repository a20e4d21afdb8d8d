// retake_query_bench: how fast the first page of a selective query comes back from a big store.
//
// Fills a store with N synthetic flows (default 1,000,000) through FlowWriter, the recorder's
// path, then times ops::select_flows for the first page (50 flows) of filters that an index
// answers and of one that none does. Each query runs once cold (first after open) and then
// 5 more times; the median of those is printed beside the first.
//
// Usage: retake_query_bench [--flows N] [--dir DIR] [--page N]
//   --dir DIR  keep the store in DIR (reused when it already holds flows: no refill);
//              default: a temporary directory removed at the end.
// Synthetic shape: 100 sessions in contiguous blocks (s0..s99), 200 hosts at random
// (api-K.example.test), methods GET 80% / POST 15% / PUT 3% / DELETE 2%, statuses
// 200 90% / 404 8% / 500 1% / 503 1%, request start 1 ms apart from 2026-11-01T10:00:00Z
// (ids are assigned at write time, so they do not follow those times: as for imported flows).
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ops/select.h"
#include "store/flow_store.h"

using namespace retake;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

int64_t base_ns() {
  std::tm tm{};
  tm.tm_year = 2026 - 1900;
  tm.tm_mon = 10;
  tm.tm_mday = 1;
  tm.tm_hour = 10;
  return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000;
}

flow::Flow synthetic(uint64_t i, uint64_t total, std::mt19937_64& rng) {
  flow::Flow f;
  f.kind = flow::FlowKind::http;
  f.mode = "reverse";
  f.session = "s" + std::to_string(i * 100 / total);
  int host = static_cast<int>(rng() % 200);
  int m = static_cast<int>(rng() % 100);
  int c = static_cast<int>(rng() % 100);
  f.client_address = "127.0.0.1:" + std::to_string(40000 + i % 20000);
  f.upstream_address = "127.0.0.1:8080";
  f.request.method = m < 80 ? "GET" : m < 95 ? "POST" : m < 98 ? "PUT" : "DELETE";
  f.request.scheme = "http";
  f.request.authority = "api-" + std::to_string(host) + ".example.test";
  f.request.path = "/v1/items/" + std::to_string(i) + "?view=full";
  f.request.http_version = "HTTP/1.1";
  f.request.headers = {
      {"Host", f.request.authority}, {"User-Agent", "bench/1.0"}, {"Accept", "application/json"}};
  if (f.request.method == "POST" || f.request.method == "PUT") {
    f.request.body.data = "{\"item\":" + std::to_string(i % 1000) + "}";
    f.request.body.size = f.request.body.data.size();
    f.request.headers.add("Content-Type", "application/json");
  }
  flow::Response r;
  r.status = c < 90 ? 200 : c < 98 ? 404 : c < 99 ? 500 : 503;
  r.reason = r.status == 200 ? "OK" : "Error";
  r.http_version = "HTTP/1.1";
  r.headers = {{"Content-Type", "application/json"}, {"Server", "bench"}};
  r.body.data = "{\"id\":" + std::to_string(i % 1000) +
                ",\"name\":\"item\",\"tags\":[\"a\",\"b\"],\"price\":12.5,\"ok\":true}";
  r.body.size = r.body.data.size();
  f.response = std::move(r);
  int64_t start = base_ns() + static_cast<int64_t>(i) * 1'000'000;
  f.timing.client_connected = start - 50'000;
  f.timing.request_started = start;
  f.timing.request_ended = start + 20'000;
  f.timing.upstream_connected = start + 30'000;
  f.timing.response_started = start + 400'000;
  f.timing.response_ended = start + 450'000;
  return f;
}

void fill(store::FlowStore& s, uint64_t n) {
  std::mt19937_64 rng(42);
  store::FlowWriter writer(s, {.queue_capacity = 8192, .max_batch = 512});
  auto start = Clock::now();
  uint64_t retries = 0;
  for (uint64_t i = 0; i < n; ++i) {
    flow::Flow f = synthetic(i, n, rng);
    // The recorder drops flows when the queue is full; a bench wants them all: wait.
    while (!writer.offer(flow::Flow(f))) {
      ++retries;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  writer.flush();
  double ms = ms_since(start);
  auto stats = writer.stats();
  std::printf(
      "filled %llu flows in %.1f s: %.0f flows/s through FlowWriter (%llu batches, "
      "%llu offers retried, %llu failed)\n",
      static_cast<unsigned long long>(stats.written), ms / 1000, stats.written / ms * 1000,
      static_cast<unsigned long long>(stats.batches), static_cast<unsigned long long>(retries),
      static_cast<unsigned long long>(stats.failed));
}

std::string iso(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t flows = 1'000'000;
  size_t page = 50;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--flows" && i + 1 < argc)
      flows = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--page" && i + 1 < argc)
      page = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: retake_query_bench [--flows N] [--dir DIR] [--page N]\n");
      return 2;
    }
  }
  bool temporary = dir.empty();
  if (temporary) {
    std::string pattern = (std::filesystem::temp_directory_path() / "retake-qbench-XXXXXX");
    if (!mkdtemp(pattern.data())) return 1;
    dir = pattern;
  }
  int rc = 0;
  {
    auto opened = store::FlowStore::open({.path = dir + "/db"});
    if (!opened) {
      std::fprintf(stderr, "%s\n", opened.status().to_string().c_str());
      return 1;
    }
    auto& s = **opened;
    auto existing = s.count({});
    if (existing.ok() && *existing == 0) {
      fill(s, flows);
    } else if (existing.ok()) {
      flows = *existing;
      std::printf("reusing %llu flows in %s\n", static_cast<unsigned long long>(flows),
                  dir.c_str());
    }
  }
  {
    // Reopen: the queries see the store as a later `retake flows list` would.
    auto t0 = Clock::now();
    auto opened = store::FlowStore::open({.path = dir + "/db"});
    if (!opened) return 1;
    std::printf("reopened in %.1f ms\n", ms_since(t0));
    auto& s = **opened;
    int64_t mid = base_ns() + static_cast<int64_t>(flows / 2) * 1'000'000;
    std::vector<std::string> queries = {
        "~session s42",
        "~d api-7.example.test",
        "~d api-7\\.",
        "~c 500",
        "~c 5xx",
        "~m DELETE",
        "~m POST & ~d api-7\\.example",
        "~since " + iso(mid) + " ~until " + iso(mid + 2'000'000'000),
        "~since " + iso(mid) + " ~until " + iso(mid + 2'000'000'000) + " & ~m PUT",
        "~session s42 & ~c 503 & ~m DELETE",
        "~u /v1/items/" + std::to_string(flows - 1) + "\\?",
        "~u items/12345\\?",
    };
    std::printf("\n%-62s %7s %10s %10s\n", "first page of", "flows", "first ms", "median ms");
    for (const auto& q : queries) {
      std::vector<double> times;
      size_t got = 0;
      for (int run = 0; run < 6; ++run) {
        size_t n = 0;
        auto t = Clock::now();
        auto st = ops::select_flows(s, {.filter = q, .limit = page}, [&](const flow::Flow&) {
          ++n;
          return true;
        });
        times.push_back(ms_since(t));
        if (!st) {
          std::fprintf(stderr, "%s: %s\n", q.c_str(), st.to_string().c_str());
          rc = 1;
          break;
        }
        got = n;
        // A full scan costs seconds: once is enough to know.
        if (times.back() > 2000) break;
      }
      double first = times.front();
      std::vector<double> rest(times.begin() + (times.size() > 1 ? 1 : 0), times.end());
      std::sort(rest.begin(), rest.end());
      std::printf("%-62s %7zu %10.2f %10.2f\n", q.c_str(), got, first, rest[rest.size() / 2]);
    }
  }
  if (temporary) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return rc;
}
