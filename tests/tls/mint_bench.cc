// Mean time to mint a leaf certificate for a new host name (not a test: no assertions).
// Usage: retake_tls_mint_bench [count] [rsa]   (count default 1000; "rsa" for an RSA leaf key)
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "net/tls/certificate_authority.h"

int main(int argc, char** argv) {
  using namespace retake::tls;
  int count = argc > 1 ? std::atoi(argv[1]) : 1000;
  if (count < 1 || count > 100000) count = 1000;
  bool rsa = argc > 2 && std::string(argv[2]) == "rsa";
  std::string dir = (std::filesystem::temp_directory_path() / "retake-mint-bench-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) return 1;
  auto ca = CertificateAuthority::load_or_create(dir);
  if (!ca) {
    std::fprintf(stderr, "%s\n", ca.status().to_string().c_str());
    return 1;
  }
  auto cache =
      LeafCertCache::create(*ca, {.key_type = rsa ? LeafKeyType::rsa_2048 : LeafKeyType::ec_p256});
  if (!cache) return 1;
  if (!(*cache)->get("warmup.test")) return 1;  // the first mint is excluded
  // CPU time of this thread as well as wall time: on a shared, loaded machine the wall figure
  // mostly measures the scheduler.
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
  };
  double cpu_start = cpu_now();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) {
    if (!(*cache)->get("host" + std::to_string(i) + ".bench.test")) return 1;
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  double us = std::chrono::duration<double, std::micro>(elapsed).count() / count;
  double cpu_us = (cpu_now() - cpu_start) / count;
  auto hit_start = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) (void)(*cache)->get("host" + std::to_string(i) + ".bench.test");
  double hit_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - hit_start)
          .count() /
      count;
  std::printf(
      "leaf key %s, CA key P-256: mean mint %.1f us wall, %.1f us CPU over %d new names; "
      "cache hit %.2f us\n",
      rsa ? "RSA-2048" : "P-256", us, cpu_us, count, hit_us);
  std::filesystem::remove_all(dir);
  return 0;
}
