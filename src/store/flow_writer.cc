// FlowWriter: a bounded queue in front of one writer thread that group-commits flows.
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "flow/thread_name.h"
#include "store/flow_store.h"

namespace retake::store {

namespace {

// "512 KiB", "63.9 MiB": free-space figures for the operator.
std::string format_bytes(uint64_t n) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[unit]);
  return text;
}

}  // namespace

struct FlowWriter::State {
  FlowStore& store;
  WriterOptions options;

  mutable std::mutex mu;
  std::condition_variable work_ready;  // the writer waits here for flows or stop
  std::condition_variable work_done;   // flush() waits here for the writer to catch up
  std::deque<flow::Flow> queue;
  bool stopping = false;
  bool idle = false;    // the writer waits for a first flow (offer() must wake it)
  size_t flushing = 0;  // flush() calls waiting: the writer stops lingering
  WriterStats stats;
  // Sequence numbers: how many flows were accepted, and how many of them are finished
  // (written or failed). flush() waits for finished to reach the accepted count it saw.
  uint64_t finished = 0;
  bool stalled = false;  // paused for disk space; flush() does not wait for the disk
  std::function<void(const flow::Flow&)> observer;
  std::chrono::steady_clock::time_point last_log{};
  uint64_t unlogged_failures = 0;
  std::mutex join_mu;  // stop() may be called from several threads at once
  std::thread thread;

  State(FlowStore& s, WriterOptions o) : store(s), options(o) {
    if (options.queue_capacity == 0) options.queue_capacity = 1;
    if (options.max_batch == 0) options.max_batch = 1;
  }

  // Queued flows that end the writer's linger early.
  size_t linger_target() const { return std::max<size_t>(1, options.max_batch / 2); }

  // Free space: measured every space_check_interval, or sooner once a quarter of the reserve
  // may have been written since the last measure (large bodies).
  static constexpr uint64_t kFlowOverhead = 512;  // a flow's record and index keys, roughly
  std::chrono::steady_clock::time_point last_space_check{};
  uint64_t bytes_since_check = 0;

  bool space_check_due() const {
    if (options.min_free_bytes == 0) return false;
    return bytes_since_check >= options.min_free_bytes / 4 ||
           std::chrono::steady_clock::now() - last_space_check >= options.space_check_interval;
  }
  std::optional<uint64_t> probe_free_space() {
    last_space_check = std::chrono::steady_clock::now();
    bytes_since_check = 0;
    if (options.free_space) return options.free_space();
    struct statvfs fs {};
    if (statvfs(store.path().c_str(), &fs) != 0) return std::nullopt;  // unknown: keep writing
    return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  }

  // Pauses writing while the store's filesystem has less than min_free_bytes free: flows wait
  // in the queue (offers past its capacity are refused and counted as dropped, as on any full
  // queue) and are written once space is back. The reserve keeps RocksDB from ever meeting a
  // full disk: after a failed WAL append it refuses every write until the store is reopened.
  // stop() ends the pause; what is queued is then written into the reserve.
  void wait_for_space(std::unique_lock<std::mutex>& lock, uint64_t free) {
    auto started = std::chrono::steady_clock::now();
    stalled = true;
    ++stats.stalls;
    work_done.notify_all();  // flush() callers return instead of waiting for the disk
    std::fprintf(stderr,
                 "retake: only %s free on the filesystem of %s (keeping %s free): recording "
                 "paused; flows wait in the queue (%zu of %zu), beyond it they are not "
                 "recorded\n",
                 format_bytes(free).c_str(), store.path().c_str(),
                 format_bytes(options.min_free_bytes).c_str(), queue.size(),
                 options.queue_capacity);
    std::optional<uint64_t> now_free = free;
    while (!stopping) {
      work_ready.wait_for(lock, options.space_check_interval, [&] { return stopping; });
      if (stopping) break;
      lock.unlock();
      now_free = probe_free_space();
      lock.lock();
      if (!now_free || *now_free >= options.min_free_bytes) break;
    }
    stalled = false;
    double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (stopping)
      std::fprintf(stderr,
                   "retake: stopping while the disk is low on space: writing the %zu queued "
                   "flows into the reserve\n",
                   queue.size());
    else
      std::fprintf(stderr,
                   "retake: %s free again after %.1f s: recording resumed with %zu queued "
                   "flows\n",
                   now_free ? format_bytes(*now_free).c_str() : "space", waited, queue.size());
  }

  void log_failure(size_t flows, const Status& status) {
    // One line per failure, but at most one per second so a full disk does not flood stderr.
    auto now = std::chrono::steady_clock::now();
    if (last_log != std::chrono::steady_clock::time_point{} &&
        now - last_log < std::chrono::seconds(1)) {
      unlogged_failures += flows;
      return;
    }
    last_log = now;
    std::fprintf(stderr,
                 "retake: store write of %zu flows failed (%llu more since the last "
                 "message): %s\n",
                 flows, static_cast<unsigned long long>(unlogged_failures),
                 status.to_string().c_str());
    unlogged_failures = 0;
  }

  void run() {
    std::vector<flow::Flow> batch;
    std::deque<flow::Flow> taken;
    std::unique_lock lock(mu);
    for (;;) {
      idle = true;
      work_ready.wait(lock, [&] { return !queue.empty() || stopping; });
      idle = false;
      if (queue.empty()) break;  // stopping and drained
      if (options.linger.count() > 0)
        work_ready.wait_for(lock, options.linger, [&] {
          return queue.size() >= linger_target() || stopping || flushing > 0;
        });
      if (space_check_due()) {
        lock.unlock();
        std::optional<uint64_t> free = probe_free_space();
        lock.lock();
        if (free && *free < options.min_free_bytes && !stopping) wait_for_space(lock, *free);
      }
      // Take the flows out under the lock as cheaply as possible: network threads wait on it
      // in offer(). A whole queue is swapped out at once; moving each flow into the batch
      // vector happens after the lock is released.
      taken.clear();
      if (queue.size() <= options.max_batch) {
        taken.swap(queue);
      } else {
        for (size_t i = 0; i < options.max_batch; ++i) {
          taken.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      auto notify = observer;  // on_written may not race with offers; copy under the lock
      lock.unlock();
      batch.clear();
      batch.reserve(taken.size());
      for (auto& f : taken) batch.push_back(std::move(f));
      taken.clear();

      // A throwing store (out of memory, a bug) must not take the thread down with it:
      // that would leave flush() waiting forever. It counts as a failed batch.
      Result<std::vector<uint64_t>> ids(Errc::internal, "not written");
      try {
        ids = store.put(batch);
      } catch (const std::exception& e) {
        ids =
            Result<std::vector<uint64_t>>(Errc::internal, std::string("store threw: ") + e.what());
      }
      if (ids) {
        if (notify)
          for (const auto& f : batch) {
            try {
              notify(f);
            } catch (const std::exception& e) {
              std::fprintf(stderr, "retake: flow observer failed: %s\n", e.what());
            }
          }
      } else {
        log_failure(batch.size(), ids.status());
      }

      for (const auto& f : batch)
        bytes_since_check += kFlowOverhead + f.request.body.data.size() +
                             (f.response ? f.response->body.data.size() : 0);
      lock.lock();
      if (ids) {
        stats.written += batch.size();
        ++stats.batches;
      } else {
        stats.failed += batch.size();
      }
      finished += batch.size();
      work_done.notify_all();
    }
  }
};

FlowWriter::FlowWriter(FlowStore& store, WriterOptions options)
    : state_(std::make_unique<State>(store, options)) {
  state_->thread = std::thread([s = state_.get()] {
    name_this_thread("retake-writer");
    s->run();
  });
}

FlowWriter::~FlowWriter() {
  stop();
}

bool FlowWriter::offer(flow::Flow&& flow) {
  std::lock_guard lock(state_->mu);
  if (state_->stopping || state_->queue.size() >= state_->options.queue_capacity) {
    ++state_->stats.dropped;
    return false;
  }
  state_->queue.push_back(std::move(flow));
  ++state_->stats.accepted;
  // A wake-up is due for the first flow an idle writer sees, and for the flow that ends its
  // linger; every other offer finds it awake or already woken, and skips the futex call.
  size_t queued = state_->queue.size();
  if ((state_->idle && queued == 1) || queued == state_->linger_target())
    state_->work_ready.notify_one();
  return true;
}

void FlowWriter::flush() {
  std::unique_lock lock(state_->mu);
  uint64_t target = state_->stats.accepted;
  if (state_->finished >= target) return;
  ++state_->flushing;  // cut a linger short
  state_->work_ready.notify_one();
  state_->work_done.wait(lock, [&] { return state_->finished >= target || state_->stalled; });
  --state_->flushing;
}

void FlowWriter::stop() {
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
  }
  state_->work_ready.notify_all();
  std::lock_guard join_lock(state_->join_mu);
  if (state_->thread.joinable() && state_->thread.get_id() != std::this_thread::get_id())
    state_->thread.join();
}

WriterStats FlowWriter::stats() const {
  std::lock_guard lock(state_->mu);
  WriterStats out = state_->stats;
  out.waiting_for_space = state_->stalled ? state_->queue.size() : 0;
  return out;
}

void FlowWriter::on_written(std::function<void(const flow::Flow&)> observer) {
  std::lock_guard lock(state_->mu);
  state_->observer = std::move(observer);
}

}  // namespace retake::store
