// retake::store: the flow database. Flows serialized with Cap'n Proto into an embedded RocksDB.
//
// Knows nothing of sockets or HTTP parsing; depends only on src/flow. RocksDB and Cap'n Proto
// types stay out of this header.
//
// Layout (ARCHITECTURE.md). Column families:
//   `flows`   big-endian 64-bit id -> packed Cap'n Proto Flow (src/store/flow.capnp) whose
//             bodies are references (SHA-256, stored size, wire size, truncated flag).
//   `bodies`  32-byte SHA-256 of the bytes -> the bytes. Written once per distinct content, so
//             identical bodies across flows are stored once. Never deleted by remove().
//   `index`   secondary keys, value empty. Every key is <tag> \0 <value> \0 <be64 id>; since the
//             id is the last 8 bytes, a key belongs to value V exactly when it starts with
//             <tag>\0V\0 and is 8 bytes longer than that prefix (values may contain \0).
//               s  session name        (flows with a non-empty session)
//               r  run name            (flows with a non-empty run)
//               h  request host, ASCII-lowercased (Request::host(), non-empty)
//               c  response status as big-endian 16 bits (flows with a response, 0..65535)
//             Since schema 2:
//               d  the flow's other hosts, ASCII-lowercased: the Host header's host when it
//                  differs from the `h` value, and "" when Request::host() is empty. With `h`
//                  this covers every host the filter's ~d looks at, so a scan by host_test
//                  can walk the distinct values instead of decoding flows.
//               m  request method, as sent (every flow, "" included)
//               t  flow start time as big-endian 64 bits (see ScanOptions::since_ns; when not 0)
//               D, M  value "": the flow has a host (D) or method (M) containing \0, which
//                  the value walk cannot list; such flows are always candidates.
//             Since schema 3, `s` holds a session's recordings only (flows with an empty
//             run), and
//               S  session name of a replayed flow (non-empty session and run),
//             so that what a replay or a mock loads (ScanOptions::recorded_only) is one stream
//             that never reaches the flows runs of the session have added beside the
//             recordings; a scan by session unites `s` and `S`. (Version 2 stores had every
//             flow of a session under `s`.)
//             Each entry is one more memtable insert per flow on the recorder's write path,
//             so only what scan() drives by is indexed.
//   `meta`    internal keys start with "i\0":  i\0schema_version -> decimal text;
//             i\0session\0<name> -> be64 flow count, be64 first_ns, be64 last_ns.
//             Since schema 2, i\0values\0<tag>\0<value> -> "" for each distinct value of the
//             h, d and m index tags (values without \0), written in the batch of the first flow
//             that has it and never removed; i\0values\0<tag>\1 once a tag has more than 4096,
//             after which no more are recorded and scans check that condition on decoded flows.
//             A scan lists the values here instead of seeking through `index` once per value.
//             Keys of the generic metadata API (put_meta ...) are stored under "u\0", so no
//             caller key can reach an internal one.
// zstd compression (flows, bodies, index), WAL on. Each put() or remove() is one WriteBatch
// holding the flows, their new bodies, index entries and session counters, so a reader never
// sees half a flow nor counters that disagree with the flows.
//
// Memory (the recorder's budget is small): one 16 MB block cache per store, to which the
// memtables (at most 12 MB together) are charged; at most 256 open table files.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"

namespace retake::store {

// The schema version this build writes and the newest it can read.
// 1: the first layout. 2: adds the index tags d, m, t, D, M. 3: moves the session entries of
// replayed flows from s to S (see above). A writer opening an older store adds the entries of
// the newer tags for every stored flow and takes the moved ones out (one pass, in batches)
// and then stamps the new version, so an older build refuses it afterwards
// instead of writing flows the new indexes would miss. A read-only open of an older store
// scans without the newer tags.
inline constexpr uint32_t kSchemaVersion = 3;

struct StoreOptions {
  // Directory of the RocksDB database. Required.
  std::string path;
  // Open without write access, beside a live writer in another process (RocksDB secondary
  // instance, catching up at open and at refresh()). Its private directory is made under the
  // system temp dir and removed at close. Default: false.
  bool read_only = false;
  // Create the database when it does not exist (ignored when read_only). Default: true.
  bool create_if_missing = true;
  // Fsync the WAL on every write batch. Default: false (the WAL is still written, so a killed
  // process loses nothing the OS has; a power cut may lose the last batches).
  bool sync = false;
};

// A session's summary, kept as counters in `meta` (no flow is decoded to list sessions).
// A flow's time is its request start, or its id when the request start is 0.
struct SessionInfo {
  std::string name;
  uint64_t flow_count = 0;
  int64_t first_ns = 0;  // earliest flow time in the session
  int64_t last_ns = 0;   // latest flow time in the session
};

// Exact key counts per column family (walks every key: for tests and `retake db stats`).
struct StoreStats {
  uint64_t flows = 0;
  uint64_t bodies = 0;
  uint64_t body_bytes = 0;  // sum of stored body sizes (uncompressed)
  uint64_t index_entries = 0;
  uint64_t meta_entries = 0;  // internal and user keys
};

// Which flows a scan visits. Empty fields do not restrict.
struct ScanOptions {
  std::string session;
  std::string run;
  // Only recordings: flows that no replay run produced (empty run). With a session, one index
  // stream (`s`). Default: false.
  bool recorded_only = false;
  std::string host;  // compared ASCII case-insensitively with Request::host()
  std::optional<int> status;
  // Response status within [status_min, status_max] (either bound may be left open).
  std::optional<int> status_min;
  std::optional<int> status_max;
  // Flow start time in [since_ns, until_ns): timing.request_started, or
  // timing.client_connected when there was no request (query::flow_start_ns, the time ~since
  // and ~until filter by); a flow whose start is 0 is outside every range.
  std::optional<int64_t> since_ns;
  std::optional<int64_t> until_ns;
  // True for at least one of the flow's hosts: Request::host() and the Host header's host,
  // each ASCII-lowercased. Must be pure and cheap: the scan may call it on every distinct
  // host in the store (a bounded number) as well as on candidate flows. Default: none.
  std::function<bool(std::string_view host)> host_test;
  // True for the request method (as sent). Same rules as host_test. Default: none.
  std::function<bool(std::string_view method)> method_test;
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

  // A fresh time-ordered id (nanoseconds since the epoch, strictly increasing in this process,
  // and greater than every id stored when the store was opened, even if the clock went back).
  virtual uint64_t next_id() = 0;

  // Writes the flows in one atomic WriteBatch. Flows with id 0 get next_id() (written into
  // the flow). A flow whose id is already stored replaces it (index and session counters
  // follow). Bodies are stored by content hash once. Returns the ids written, in order.
  // Errors: failed_precondition on a read-only store, invalid_argument when an id appears
  // twice in one call, io_error when the disk refuses (nothing of the batch is written).
  virtual Result<std::vector<uint64_t>> put(std::vector<flow::Flow>& flows) = 0;
  Result<uint64_t> put(flow::Flow& flow);

  // not_found when absent; corruption (naming the id) when the stored bytes do not decode or a
  // referenced body is missing.
  virtual Result<flow::Flow> get(uint64_t id, bool with_bodies = true) = 0;

  // Calls visit for each matching flow in id order (or reverse) until it returns false or
  // the limit is reached. Every condition that an index answers becomes an ordered stream of
  // candidate ids (the union of the streams of each distinct host, method or status that
  // passes; a time range's ids sorted); the streams are intersected, and only the ids in
  // all of them are decoded and checked against every condition. A condition whose stream
  // would be too wide (more than a bounded number of values or time-range ids) is checked on
  // decoded flows only. With no usable condition, walks `flows`.
  // Stops with corruption at the first flow that does not decode. visit may call get(), and
  // may move from the flow it is given (the scan does not use it afterwards).
  virtual Status scan(const ScanOptions& options,
                      const std::function<bool(flow::Flow&)>& visit) = 0;

  // How many flows scan(options) would visit. With at most one of run/session/host/status
  // set, counts index keys without decoding flows.
  virtual Result<uint64_t> count(const ScanOptions& options) = 0;

  // Deletes flows (and the index entries; bodies no longer referenced are left to compaction).
  // Ids not stored are ignored. failed_precondition on a read-only store.
  virtual Status remove(const std::vector<uint64_t>& ids) = 0;

  // Every session with at least one flow, by name. Reads only the counters in `meta`.
  virtual Result<std::vector<SessionInfo>> sessions() = 0;

  // For read-only stores: catch up with the writer's latest state. A no-op for a writer.
  virtual Status refresh() = 0;

  // Generic metadata for other modules (diff's learned noise, replay's runs, ...). Keys are
  // caller-chosen (at most kMaxMetaKeySize bytes, non-empty), values at most kMaxMetaValueSize.
  // They live apart from the store's internal keys: no key can overwrite the schema version.
  // put_meta/remove_meta: failed_precondition on a read-only store; invalid_argument for
  // sizes. get_meta: nullopt when absent. scan_meta visits keys starting with prefix in
  // byte order until visit returns false.
  virtual Status put_meta(std::string_view key, std::string_view value) = 0;
  virtual Result<std::optional<std::string>> get_meta(std::string_view key) = 0;
  virtual Status scan_meta(
      std::string_view prefix,
      const std::function<bool(std::string_view key, std::string_view value)>& visit) = 0;
  virtual Status remove_meta(std::string_view key) = 0;

  // Exact key counts (walks every key; slow on big stores).
  virtual Result<StoreStats> stats() = 0;

  virtual bool read_only() const = 0;
  virtual const std::string& path() const = 0;
};

inline constexpr size_t kMaxMetaKeySize = 4096;
inline constexpr size_t kMaxMetaValueSize = 64u << 20;

struct WriterOptions {
  // Flows waiting for the writer before offer() refuses. Default: 8192.
  size_t queue_capacity = 8192;
  // Most flows in one WriteBatch. Default: 512.
  size_t max_batch = 512;
  // How long the writer, woken by a first flow, waits for more before it writes (unless half
  // a batch is queued first, or flush() or stop() is called). Under load this turns a
  // wake-up and a small write per few flows into one per batch: fewer futex calls, WAL
  // writes and per-write overheads. It is also how much later a flow reaches the store.
  // Zero writes as soon as the writer is woken. Default: 2 ms.
  std::chrono::microseconds linger{2000};
  // Bytes kept free on the store's filesystem. Below it, writing pauses (flows wait in the
  // queue) until space is freed, so the store never meets a full disk. 0: no check.
  // Default: 64 MiB.
  uint64_t min_free_bytes = 64u << 20;
  // How often free space is measured while writing (sooner after large bodies), and while
  // paused. Default: 100 ms.
  std::chrono::milliseconds space_check_interval{100};
  // Measures the free bytes; nullopt when unknown (writing goes on). Default: statvfs of the
  // store's directory. Tests replace it.
  std::function<std::optional<uint64_t>()> free_space{};
};

struct WriterStats {
  uint64_t accepted = 0;  // flows taken into the queue
  uint64_t dropped = 0;   // flows refused because the queue was full
  uint64_t written = 0;   // flows committed to the store
  uint64_t failed = 0;    // flows whose write failed (read-only store, ...): counted, logged
  uint64_t batches = 0;
  uint64_t stalls = 0;             // times writing paused because the disk was low on space
  uint64_t waiting_for_space = 0;  // flows queued while writing is paused for space
};

// The one writer thread: network threads offer() flows (never blocking), the writer
// group-commits them in batches. stop() drains the queue and joins. The store must outlive
// the writer. When free disk space falls under WriterOptions::min_free_bytes, writing pauses
// until space is back (flows wait in the queue). A failed batch (read-only store, a disk
// filled by someone else within the reserve) is counted in `failed`, logged as one line on
// stderr (repeats are rate-limited), and the writer keeps going.
class FlowWriter final : public flow::FlowSink {
 public:
  FlowWriter(FlowStore& store, WriterOptions options = {});
  ~FlowWriter() override;
  FlowWriter(const FlowWriter&) = delete;
  FlowWriter& operator=(const FlowWriter&) = delete;

  // Thread-safe, never blocks on I/O. False when the queue is full (counted as dropped).
  bool offer(flow::Flow&& flow) override;
  // Blocks until everything offered so far is written (or failed), or until writing pauses
  // for disk space (it does not wait for a disk to be freed). Any thread but the writer's
  // own (not from on_written).
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

// The default store directory: $RETAKE_HOME/db (retake::retake_home(), flow/home.h).
// FlowStore::open creates missing directories (mkdir -p).
std::string default_db_path();

}  // namespace retake::store
