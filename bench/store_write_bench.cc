// retake_store_write_bench: what one recorded flow costs on the store's write path.
//
// Prints, per flow: Cap'n Proto encoding, decoding, SHA-256 of its response body, the
// caller's side of FlowWriter::offer (what a network thread pays), and end-to-end throughput
// of FlowStore::put in batches and of FlowWriter (offer until flush). The flow looks like the
// ones bench/bench.py records (a GET, a 496-byte JSON response, a handful of headers).
//
// Usage: retake_store_write_bench [--flows N]   (default 100000; the store is temporary)
#include <stdlib.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "store/flow_codec.h"
#include "store/flow_store.h"

using namespace retake;
using Clock = std::chrono::steady_clock;

namespace {

double ns_per(Clock::time_point start, uint64_t n) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / n;
}

// CPU time, not wall time: on a shared machine other processes stretch wall time at random,
// while the CPU a piece of work needs stays put.
double cpu_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

flow::Flow recorded_like(uint64_t i) {
  flow::Flow f;
  f.kind = flow::FlowKind::http;
  f.mode = "reverse";
  f.session = "bench";
  f.client_address = "127.0.0.1:" + std::to_string(40000 + i % 20000);
  f.upstream_address = "127.0.0.1:8080";
  f.request.method = "GET";
  f.request.scheme = "http";
  f.request.authority = "127.0.0.1:8080";
  f.request.path = "/api/items?id=1";
  f.request.http_version = "HTTP/1.1";
  f.request.headers = {{"Host", "127.0.0.1:8080"}, {"User-Agent", "wrk"}};
  flow::Response r;
  r.status = 200;
  r.reason = "OK";
  r.http_version = "HTTP/1.1";
  r.headers = {{"Server", "nginx"},
               {"Date", "Sat, 28 Nov 2026 05:00:00 GMT"},
               {"Content-Type", "application/json"},
               {"Content-Length", "496"},
               {"Connection", "keep-alive"}};
  std::string item =
      "{\"id\":1,\"name\":\"item\",\"tags\":[\"a\",\"b\"],\"price\":12.5,\"ok\":true}";
  for (int k = 0; k < 8; ++k) r.body.data += item;
  r.body.size = r.body.data.size();
  f.response = std::move(r);
  int64_t t = 1'790'000'000'000'000'000 + static_cast<int64_t>(i) * 10'000;
  f.timing = {t, t + 1000, t + 2000, t + 3000, t + 50'000, t + 60'000};
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n = 100'000;
  if (argc == 3 && std::string(argv[1]) == "--flows") n = std::strtoull(argv[2], nullptr, 10);
  if (n == 0) return 2;

  std::vector<flow::Flow> flows;
  flows.reserve(n);
  for (uint64_t i = 0; i < n; ++i) flows.push_back(recorded_like(i));

  const uint64_t micro = std::min<uint64_t>(n, 50'000);
  std::string digest = store::sha256(flows[0].response->body.data);
  const clockid_t thread_clock = CLOCK_THREAD_CPUTIME_ID;
  double c = cpu_ns(thread_clock);
  auto t = Clock::now();
  size_t sink = 0;
  for (uint64_t i = 0; i < micro; ++i) sink += store::encode_flow(flows[i], "", digest).size();
  double encode_ns = (cpu_ns(thread_clock) - c) / micro;
  flow::Flow one = flows[0];
  one.id = 1;  // a stored flow names its own id, and decoding checks it
  std::string encoded = store::encode_flow(one, "", digest);
  if (auto check = store::decode_flow(encoded, 1); !check) {
    std::fprintf(stderr, "decode: %s\n", check.status().to_string().c_str());
    return 1;
  }
  c = cpu_ns(thread_clock);
  for (uint64_t i = 0; i < micro; ++i)
    sink += store::decode_flow(encoded, 1)->flow.request.path.size();
  double decode_ns = (cpu_ns(thread_clock) - c) / micro;
  c = cpu_ns(thread_clock);
  for (uint64_t i = 0; i < micro; ++i) sink += store::sha256(flows[i].response->body.data)[0];
  double sha_ns = (cpu_ns(thread_clock) - c) / micro;
  std::printf(
      "CPU per flow: encode %.0f ns (%zu bytes), decode %.0f ns, sha256 of the %zu-byte "
      "body %.0f ns\n",
      encode_ns, encoded.size(), decode_ns, flows[0].response->body.data.size(), sha_ns);

  std::string pattern = (std::filesystem::temp_directory_path() / "retake-wbench-XXXXXX");
  if (!mkdtemp(pattern.data())) return 1;
  {
    auto opened = store::FlowStore::open({.path = pattern + "/put"});
    if (!opened) return 1;
    auto& s = **opened;
    auto copy = flows;
    t = Clock::now();
    c = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (uint64_t i = 0; i < n; i += 512) {
      std::vector<flow::Flow> batch(std::make_move_iterator(copy.begin() + i),
                                    std::make_move_iterator(copy.begin() + std::min(n, i + 512)));
      if (!s.put(batch)) return 1;
    }
    double ns = ns_per(t, n);
    double cpu = (cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c) / n;
    std::printf(
        "FlowStore::put, batches of 512: %.0f ns CPU per flow (all threads); wall %.0f "
        "ns, %.0f flows/s\n",
        cpu, ns, 1e9 / ns);
  }
  {
    auto opened = store::FlowStore::open({.path = pattern + "/writer"});
    if (!opened) return 1;
    auto& s = **opened;
    auto copy = flows;
    store::FlowWriter writer(s);
    uint64_t retries = 0;
    double offer_ns_total = 0;
    t = Clock::now();
    c = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (uint64_t i = 0; i < n; ++i) {
      auto o = Clock::now();
      while (!writer.offer(std::move(copy[i]))) {
        ++retries;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        o = Clock::now();
      }
      offer_ns_total += std::chrono::duration<double, std::nano>(Clock::now() - o).count();
    }
    writer.flush();
    double ns = ns_per(t, n);
    double cpu = (cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c) / n;
    auto stats = writer.stats();
    std::printf(
        "FlowWriter: offer() %.0f ns wall on the caller's thread; %.0f ns CPU per flow "
        "(all threads); wall %.0f ns, %.0f flows/s (%llu batches, %llu offers waited)\n",
        offer_ns_total / n, cpu, ns, 1e9 / ns, static_cast<unsigned long long>(stats.batches),
        static_cast<unsigned long long>(retries));
  }
  std::error_code ignored;
  std::filesystem::remove_all(pattern, ignored);
  return sink == 42 ? 3 : 0;
}
