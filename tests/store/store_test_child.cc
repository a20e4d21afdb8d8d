// The other process of the store tests (and the throughput figure):
//   serve <path> <n>   open for writing, put n small flows, print "ready", then for each line
//                      "put <k>" on stdin put k more and print "ok"; exit at end of stdin.
//   ack <path>         open for writing, put small flows one at a time forever (bounded),
//                      printing "<index> <id>" after each put() returns; the test SIGKILLs it.
//   bench <path> <n>   put n small flows in batches of 512; print flows/s and max RSS.
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "store/flow_store.h"
#include "test_flows.h"

using namespace retake;

namespace {

std::unique_ptr<store::FlowStore> open_store(const char* path) {
  auto opened = store::FlowStore::open({.path = path});
  if (!opened) {
    std::fprintf(stderr, "open: %s\n", opened.status().to_string().c_str());
    std::exit(2);
  }
  return std::move(opened.value());
}

bool put_range(store::FlowStore& s, int from, int count, const std::string& session) {
  std::vector<flow::Flow> flows;
  for (int i = from; i < from + count; ++i) flows.push_back(store::test::small_flow(i, session));
  auto ids = s.put(flows);
  if (!ids) std::fprintf(stderr, "put: %s\n", ids.status().to_string().c_str());
  return ids.ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  std::string mode = argv[1];
  auto s = open_store(argv[2]);
  if (mode == "serve" && argc == 4) {
    int n = std::atoi(argv[3]);
    if (!put_range(*s, 0, n, "live")) return 1;
    std::cout << "ready" << std::endl;
    std::string line;
    int next = n;
    while (std::getline(std::cin, line)) {
      if (line.rfind("put ", 0) != 0) continue;
      int k = std::atoi(line.c_str() + 4);
      if (!put_range(*s, next, k, "live")) return 1;
      next += k;
      std::cout << "ok" << std::endl;
    }
    return 0;
  }
  if (mode == "ack") {
    // Bounded: the test kills us long before this.
    for (int i = 0; i < 1000000; ++i) {
      flow::Flow f = store::test::small_flow(i, "killed");
      auto id = s->put(f);
      if (!id) return 1;
      std::printf("%d %llu\n", i, static_cast<unsigned long long>(*id));
      std::fflush(stdout);
    }
    return 0;
  }
  if (mode == "bench" && argc == 4) {
    int n = std::atoi(argv[3]);
    auto thread_cpu = [] {
      timespec ts{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      return ts.tv_sec + ts.tv_nsec / 1e9;
    };
    // Only put() is timed: building the flows is the recorder's work, not the store's.
    double seconds = 0, cpu = 0;
    for (int i = 0; i < n; i += 512) {
      std::vector<flow::Flow> flows;
      for (int k = i; k < std::min(n, i + 512); ++k)
        flows.push_back(store::test::small_flow(k, "bench"));
      double cpu_start = thread_cpu();
      auto start = std::chrono::steady_clock::now();
      auto ids = s->put(flows);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      cpu += thread_cpu() - cpu_start;
      if (!ids) return 1;
    }
    long rss_now = 0;
    if (FILE* status = std::fopen("/proc/self/status", "r")) {
      char line[256];
      while (std::fgets(line, sizeof line, status))
        if (std::sscanf(line, "VmRSS: %ld", &rss_now) == 1) break;
      std::fclose(status);
    }
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    // Wall time depends on what else the machine runs; the writing thread's CPU time does not.
    std::printf("%d flows in %.3f s wall: %.0f flows/s; writing thread CPU %.3f s: %.0f flows "
                "per CPU-second; max RSS %ld KiB (now %ld KiB)\n",
                n, seconds, n / seconds, cpu, n / cpu, usage.ru_maxrss, rss_now);
    return 0;
  }
  return 2;
}
