// retake::store: the flow database. Flows serialized with Cap'n Proto into an embedded RocksDB.
//
// Knows nothing of sockets or HTTP parsing; depends only on src/flow. RocksDB and Cap'n Proto
// types stay out of this header.
//
// Layout (ARCHITECTURE.md): column families `flows` (big-endian 64-bit id -> Cap'n Proto Flow
// with bodies replaced by SHA-256 references), `bodies` (SHA-256 -> bytes, deduplicated),
// `index` (secondary keys: session|id, host|id, status|id, ...), `meta` (schema version,
// sessions). zstd compression, WAL on. A flow is written in one WriteBatch, so a reader never
// sees half of one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"

namespace retake::store {

// The schema version this build writes and the newest it can read.
inline constexpr uint32_t kSchemaVersion = 1;

struct StoreOptions {
  // Directory of the RocksDB database. Required.
  std::string path;
  // Open without write access, beside a live writer in another process (RocksDB secondary
  // instance, catching up at open). Default: false.
  bool read_only = false;
  // Create the database when it does not exist (ignored when read_only). Default: true.
  bool create_if_missing = true;
  // Fsync the WAL on every write batch. Default: false (the WAL is still written, so a killed
  // process loses nothing the OS has; a power cut may lose the last batches).
  bool sync = false;
};

struct SessionInfo {
  std::string name;
  uint64_t flow_count = 0;
  int64_t first_ns = 0;  // earliest request start (or flow id time)
  int64_t last_ns = 0;
};

// Which flows a scan visits. Empty fields do not restrict.
struct ScanOptions {
  std::string session;
  std::string run;
  std::string host;
  std::optional<int> status;
  uint64_t after_id = 0;    // start strictly after this id (paging cursor); 0: from the start
  size_t limit = 0;         // 0: no limit
  bool reverse = false;     // newest first
  bool with_bodies = true;  // false: Body::data left empty (size and truncated still set)
};

// The flow database. Thread-safe: any number of threads may read; writes are serialized.
// Create with FlowStore::open; destroy to close (pending writes are flushed).
class FlowStore {
 public:
  virtual ~FlowStore() = default;

  // Opens (or creates) the store at options.path. Errors: version_mismatch for a store written
  // by a newer schema, io_error when the directory cannot be used, corruption, not_found when
  // it does not exist and create_if_missing is false or read_only is true.
  static Result<std::unique_ptr<FlowStore>> open(const StoreOptions& options);

  // A fresh time-ordered id (nanoseconds since the epoch, strictly increasing in this process).
  virtual uint64_t next_id() = 0;

  // Writes the flows in one atomic WriteBatch. Flows with id 0 get next_id(). Bodies are
  // stored by content hash once. Returns the ids written, in order.
  virtual Result<std::vector<uint64_t>> put(std::vector<flow::Flow>& flows) = 0;
  Result<uint64_t> put(flow::Flow& flow);

  virtual Result<flow::Flow> get(uint64_t id, bool with_bodies = true) = 0;

  // Calls visit for each matching flow in id order (or reverse) until it returns false or
  // the limit is reached. Uses the secondary index when session/host/status is set.
  virtual Status scan(const ScanOptions& options,
                      const std::function<bool(const flow::Flow&)>& visit) = 0;

  // Deletes flows (and the index entries; bodies no longer referenced are left to compaction).
  virtual Status remove(const std::vector<uint64_t>& ids) = 0;

  virtual Result<std::vector<SessionInfo>> sessions() = 0;

  // For read-only stores: catch up with the writer's latest state.
  virtual Status refresh() = 0;

  virtual const std::string& path() const = 0;
};

struct WriterOptions {
  // Flows waiting for the writer before offer() refuses. Default: 8192.
  size_t queue_capacity = 8192;
  // Most flows in one WriteBatch. Default: 512.
  size_t max_batch = 512;
};

struct WriterStats {
  uint64_t accepted = 0;  // flows taken into the queue
  uint64_t dropped = 0;   // flows refused because the queue was full
  uint64_t written = 0;   // flows committed to the store
  uint64_t failed = 0;    // flows whose write failed (disk full, ...): counted and logged
  uint64_t batches = 0;
};

// The one writer thread: network threads offer() flows (never blocking), the writer
// group-commits them in batches. stop() drains the queue and joins.
class FlowWriter final : public flow::FlowSink {
 public:
  FlowWriter(FlowStore& store, WriterOptions options = {});
  ~FlowWriter() override;
  FlowWriter(const FlowWriter&) = delete;
  FlowWriter& operator=(const FlowWriter&) = delete;

  // Thread-safe, never blocks on I/O. False when the queue is full (counted as dropped).
  bool offer(flow::Flow&& flow) override;
  // Blocks until everything offered so far is written (or failed).
  void flush();
  // Drains and stops the thread. Idempotent.
  void stop();
  WriterStats stats() const;

  // Optional observer called on the writer thread after each committed flow (for live
  // streams to the CLI or gRPC). Set before the first offer().
  void on_written(std::function<void(const flow::Flow&)> observer);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// $RETAKE_HOME (default ~/.retake) and the default store directory $RETAKE_HOME/db.
std::string retake_home();
std::string default_db_path();

}  // namespace retake::store
