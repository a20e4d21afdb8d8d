// A throwaway measurement of the diff engine, not a test (no timings in tests):
//   ninja -C build retake_diff_bench && ./build/tests/diff/retake_diff_bench
// 1. structural JSON diff of two large bodies (parse both + compare), in MB/s;
// 2. 10k pairs of ~2 KB API responses with headers, an ignore rule and normalizers;
// 3. the same 10k pairs through `retake diff --run` (ops::run_diff): stored as a recording and
//    a run in a temporary store, paired by origin, read back, compared and classified.
// Run through bench/diff_bench.sh, which builds it and prints the targets beside the figures.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include <stdlib.h>

#include <filesystem>

#include "diff/diff.h"
#include "ops/diff_run.h"

using namespace retake;
using namespace retake::diff;
using Clock = std::chrono::steady_clock;

namespace {

std::string item(std::mt19937& rng, int i, bool changed) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                R"({"id":%d,"name":"item number %d","price":%d.%02d,"active":%s,)"
                R"("tags":["alpha","beta","gamma"],"owner":{"id":"%08x-1234-4abc-8def-%012x",)"
                R"("email":"user%d@example.com"},"updatedAt":"2024-0%d-1%dT10:00:00Z"})",
                i, i, static_cast<int>(rng() % 1000), static_cast<int>(rng() % 100),
                (i % 3) ? "true" : "false", static_cast<unsigned>(rng()), i, i, changed ? 2 : 1,
                i % 10);
  return buf;
}

flow::Response response(std::string body) {
  flow::Response r;
  r.status = 200;
  r.headers.add("Content-Type", "application/json");
  r.headers.add("Date", "Mon, 01 Jan 2024 00:00:00 GMT");
  r.headers.add("Cache-Control", "no-store");
  r.headers.add("X-Request-Id", "abc");
  r.headers.add("Vary", "Accept-Encoding");
  r.body.data = std::move(body);
  return r;
}

// Process CPU time, not wall time: the build machine is shared and often overloaded, and CPU
// time is what the engine costs.
struct Stopwatch {
  std::clock_t cpu = std::clock();
  Clock::time_point wall = Clock::now();
  double cpu_s() const { return static_cast<double>(std::clock() - cpu) / CLOCKS_PER_SEC; }
  double wall_s() const { return std::chrono::duration<double>(Clock::now() - wall).count(); }
};

}  // namespace

int main() {
  // 1. Large bodies: ~100k items, B differs in every 1000th item.
  {
    std::mt19937 ra(1), rb(1);
    std::string a = "{\"items\":[", b = "{\"items\":[";
    const int n = 100000;
    for (int i = 0; i < n; ++i) {
      if (i) a += ',', b += ',';
      a += item(ra, i, false);
      b += item(rb, i, i % 1000 == 0);
    }
    a += "]}";
    b += "]}";
    auto c = Comparator::create({});
    auto ra_ = response(a), rb_ = response(b);
    // Warm up once, then measure a few runs.
    auto warm = c->compare(ra_, rb_);
    const int runs = 5;
    Stopwatch t;
    size_t diffs = 0;
    for (int r = 0; r < runs; ++r) diffs += c->compare(ra_, rb_).differences.size();
    double s = t.cpu_s() / runs;
    std::printf("(wall %.1f ms per comparison)\n", t.wall_s() / runs * 1e3);
    double mb = static_cast<double>(a.size()) / 1e6;
    std::printf("large JSON: body %.1f MB each, %zu differences, %.1f ms CPU per comparison\n", mb,
                warm.differences.size(), s * 1e3);
    std::printf("  throughput: %.0f MB/s of one body, %.0f MB/s of both bodies\n", mb / s,
                2 * mb / s);
    (void)diffs;
  }
  // 2. 10k pairs of ~2 KB responses: 70% identical bytes, 30% with a changed value and a
  // changed timestamp (normalized away), with one ignore rule.
  {
    std::mt19937 rng(2);
    std::vector<std::pair<flow::Response, flow::Response>> pairs;
    size_t bytes = 0;
    for (int p = 0; p < 10000; ++p) {
      std::mt19937 ra(p), rb(p);
      std::string a = "{\"page\":1,\"items\":[", b = a;
      bool change = rng() % 10 < 3;
      for (int i = 0; i < 9; ++i) {
        if (i) a += ',', b += ',';
        a += item(ra, i, false);
        b += item(rb, i, change && i == 2);
      }
      a += "]}";
      b += change ? "],\"extra\":true}" : "]}";
      bytes += a.size();
      pairs.emplace_back(response(std::move(a)), response(std::move(b)));
    }
    CompareOptions o;
    o.ignore = {"$.items[*].owner.email"};
    o.normalizers = {{NormalizerKind::timestamp, "", 0, 0}};
    auto c = Comparator::create(o);
    flow::Request req;
    req.method = "GET";
    req.path = "/items/42?page=1";
    Stopwatch t;
    size_t different = 0;
    for (auto& [a, b] : pairs) different += c->compare(a, b, &req).identical() ? 0 : 1;
    double s = t.cpu_s();
    std::printf("(wall %.1f ms total)\n", t.wall_s() * 1e3);
    std::printf(
        "10k pairs: average body %zu bytes, %zu differing, %.1f ms CPU total (%.1f us/pair)\n",
        bytes / pairs.size(), different, s * 1e3, s * 1e6 / pairs.size());
  }
  // 3. The whole operation on 10k stored pairs: 70% identical, 30% with one changed value.
  {
    std::string dir = (std::filesystem::temp_directory_path() / "retake-diff-bench-XXXXXX");
    if (!mkdtemp(dir.data())) return std::fprintf(stderr, "mkdtemp failed\n"), 1;
    {
      store::StoreOptions so;
      so.path = dir + "/db";
      auto db = store::FlowStore::open(so);
      if (!db.ok()) return std::fprintf(stderr, "%s\n", db.status().to_string().c_str()), 1;
      std::mt19937 rng(3);
      std::vector<flow::Flow> origins, replays;
      for (int p = 0; p < 10000; ++p) {
        std::mt19937 ra(p), rb(p);
        std::string a = "{\"page\":1,\"items\":[", b = a;
        bool change = rng() % 10 < 3;
        for (int i = 0; i < 9; ++i) {
          if (i) a += ',', b += ',';
          a += item(ra, i, false);
          b += item(rb, i, change && i == 2);
        }
        a += "]}";
        b += change ? "],\"extra\":true}" : "]}";  // a real difference beside the timestamp
        flow::Flow f;
        f.session = "bench";
        f.request.method = "GET";
        f.request.scheme = "http";
        f.request.authority = "api.test";
        f.request.path = "/items/" + std::to_string(p);
        f.response = response(std::move(a));
        origins.push_back(f);
        f.response = response(std::move(b));
        replays.push_back(std::move(f));
      }
      for (size_t i = 0; i < origins.size(); i += 1000) {
        std::vector<flow::Flow> chunk(origins.begin() + i, origins.begin() + i + 1000);
        auto ids = (*db)->put(chunk);
        if (!ids.ok()) return std::fprintf(stderr, "%s\n", ids.status().to_string().c_str()), 1;
        for (size_t k = 0; k < chunk.size(); ++k) {
          replays[i + k].origin = (*ids)[k];
          replays[i + k].run = "bench-run";
        }
      }
      for (size_t i = 0; i < replays.size(); i += 1000) {
        std::vector<flow::Flow> chunk(replays.begin() + i, replays.begin() + i + 1000);
        if (auto put = (*db)->put(chunk); !put.ok())
          return std::fprintf(stderr, "%s\n", put.status().to_string().c_str()), 1;
      }
      ops::DiffRequest req;
      req.run = "bench-run";
      req.compare.normalizers = {{NormalizerKind::timestamp, "", 0, 0}};
      Stopwatch t;
      auto res = ops::run_diff(**db, req);
      double s = t.cpu_s();
      if (!res.ok()) return std::fprintf(stderr, "%s\n", res.status().to_string().c_str()), 1;
      std::printf("(wall %.1f ms total)\n", t.wall_s() * 1e3);
      std::printf(
          "10k stored pairs through ops::run_diff (retake diff --run): %llu compared, "
          "%llu different, %.1f ms CPU total\n",
          static_cast<unsigned long long>(res->compared),
          static_cast<unsigned long long>(res->different), s * 1e3);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return 0;
}
