// A throwaway host for measuring the recorder with wrk: runs a Recorder with a sink that only
// counts flows, until stdin closes or SIGINT/SIGTERM. Not a test; built next to the tests.
// Usage: retake_record_bench <mode> [listen_port] [threads]
//   e.g. retake_record_bench reverse:http://127.0.0.1:8081 8090 2
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "record/recorder.h"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop = true;
}

class CountingSink : public retake::flow::FlowSink {
 public:
  bool offer(retake::flow::Flow&& f) override {
    count.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  std::atomic<uint64_t> count{0};
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <mode> [listen_port] [threads]\n", argv[0]);
    return 2;
  }
  retake::record::RecorderOptions options;
  if (auto st = retake::record::parse_mode(argv[1], options); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.to_string().c_str());
    return 2;
  }
  options.listen_port = argc > 2 ? static_cast<uint16_t>(std::atoi(argv[2])) : 0;
  options.threads = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 0;
  CountingSink sink;
  auto rec = retake::record::Recorder::create(options, sink);
  if (!rec.ok()) {
    std::fprintf(stderr, "%s\n", rec.status().to_string().c_str());
    return 1;
  }
  auto addr = (*rec)->start();
  if (!addr.ok()) {
    std::fprintf(stderr, "%s\n", addr.status().to_string().c_str());
    return 1;
  }
  std::printf("listening on %s\n", addr->c_str());
  std::fflush(stdout);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (*rec)->stop();
  auto s = (*rec)->stats();
  std::printf("flows %llu dropped %llu errors %llu connections %llu upstream_connects %llu\n",
              (unsigned long long)s.flows, (unsigned long long)s.flows_dropped,
              (unsigned long long)s.errors, (unsigned long long)s.connections,
              (unsigned long long)s.upstream_connects);
  return 0;
}
