// FlowWriter: a bounded queue in front of one writer thread that group-commits flows.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "flow/thread_name.h"
#include "store/flow_store.h"

namespace retake::store {

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
  state_->work_done.wait(lock, [&] { return state_->finished >= target; });
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
  return state_->stats;
}

void FlowWriter::on_written(std::function<void(const flow::Flow&)> observer) {
  std::lock_guard lock(state_->mu);
  state_->observer = std::move(observer);
}

}  // namespace retake::store
