// FlowStore on RocksDB. Layout and key scheme: see flow_store.h.
#include "store/flow_store.h"

#include "flow/home.h"

#include <pwd.h>
#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "store/flow_codec.h"
#include "store/flow_store_testing.h"

namespace retake::store {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

enum Cf { kFlows = 0, kBodies, kIndex, kMeta, kCfCount };
constexpr const char* kCfNames[kCfCount] = {"flows", "bodies", "index", "meta"};

const std::string kVersionKey = "i\0schema_version"s;
const std::string kSessionPrefix = "i\0session\0"s;
const std::string kUserPrefix = "u\0"s;
// The distinct values of the h, d and m index tags (see flow_store.h): i\0values\0<tag>\0<v>.
// i\0values\0<tag>\1 marks a tag with more than kMaxValuesListed values (no more are kept).
const std::string kValuesPrefix = "i\0values\0"s;

std::string value_key(char tag, std::string_view value) {
  std::string key = kValuesPrefix;
  key.push_back(tag);
  key.push_back('\0');
  key.append(value);
  return key;
}

std::string overflow_key(char tag) {
  std::string key = kValuesPrefix;
  key.push_back(tag);
  key.push_back('\1');
  return key;
}

bool registered_tag(char tag) {
  return tag == 'h' || tag == 'd' || tag == 'm';
}

// Memory bounds: the recorder must stay small (well under 64 MB RSS after 100k flows).
// One budget for memtables and cached blocks together: memtables are charged to the block
// cache (WriteBufferManager), so the two cannot both be full.
constexpr size_t kBlockCacheBytes = 16u << 20;
constexpr size_t kAllMemtablesBytes = 12u << 20;
constexpr int kMaxOpenFiles = 256;
// Digests known to be in `bodies`, so repeated bodies skip the existence read. Cleared when
// full: it is only a shortcut, the read is the truth.
constexpr size_t kKnownBodiesMax = 4096;
constexpr const char* kSecondaryDirPrefix = "retake-secondary-";

void append_be64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

std::string be64(uint64_t v) {
  std::string out;
  append_be64(out, v);
  return out;
}

uint64_t load_be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// <tag>\0<value>\0: every index key of value is this plus the 8-byte id.
std::string index_prefix(char tag, std::string_view value) {
  std::string out;
  out.reserve(value.size() + 3 + 8);
  out.push_back(tag);
  out.push_back('\0');
  out.append(value);
  out.push_back('\0');
  return out;
}

std::optional<std::string> status_value(int status) {
  if (status < 0 || status > 0xffff) return std::nullopt;
  return std::string{static_cast<char>(status >> 8), static_cast<char>(status & 0xff)};
}

// The start time of the `t` index and of ScanOptions::since_ns (query::flow_start_ns).
int64_t start_ns(const flow::Flow& f) {
  return f.timing.request_started != 0 ? f.timing.request_started : f.timing.client_connected;
}

// A time as an index value: big-endian with the sign bit flipped, so byte order is time
// order even for times before 1970.
std::string time_value(int64_t t) {
  return be64(static_cast<uint64_t>(t) ^ (uint64_t{1} << 63));
}

// The host of the Host header (as Request::host() splits an authority), if there is one.
std::optional<std::string> header_host(const flow::Flow& f) {
  auto value = f.request.headers.get("host");
  if (!value) return std::nullopt;
  flow::Request r;
  r.authority.assign(value->data(), value->size());
  return r.host();
}

// Every host the filter's ~d may look at: [0] is Request::host(), [1] the Host header's
// when present. ASCII-lowercased.
struct FlowHosts {
  std::string authority;
  std::optional<std::string> header;
};

FlowHosts flow_hosts(const flow::Flow& f) {
  FlowHosts out{ascii_lower(f.request.host()), header_host(f)};
  if (out.header) *out.header = ascii_lower(*out.header);
  return out;
}

bool has_nul(std::string_view s) {
  return s.find('\0') != std::string_view::npos;
}

// Calls add(tag, value) for every index entry of f (see flow_store.h). `version` is the
// schema whose tags to produce.
template <typename Add>
void for_each_index_entry(const flow::Flow& f, uint32_t version, Add&& add) {
  if (!f.session.empty()) add(version >= 3 && !f.run.empty() ? 'S' : 's', f.session);
  if (!f.run.empty()) add('r', f.run);
  FlowHosts hosts = flow_hosts(f);
  if (!hosts.authority.empty()) add('h', hosts.authority);
  if (f.response)
    if (auto v = status_value(f.response->status)) add('c', *v);
  if (version < 2) return;
  if (hosts.authority.empty()) add('d', std::string_view());
  if (hosts.header && *hosts.header != hosts.authority) add('d', *hosts.header);
  if (has_nul(hosts.authority) || (hosts.header && has_nul(*hosts.header)))
    add('D', std::string_view());
  if (has_nul(f.request.method))
    add('M', std::string_view());
  else
    add('m', f.request.method);
  if (int64_t t = start_ns(f); t != 0) add('t', time_value(t));
}

// The schema that introduced an index tag.
uint32_t tag_since(char tag) {
  switch (tag) {
    case 's':
    case 'r':
    case 'h':
    case 'c':
      return 1;
    case 'S':
      return 3;
    default:
      return 2;
  }
}

std::vector<std::string> index_keys(const flow::Flow& f, uint32_t version = kSchemaVersion) {
  std::vector<std::string> keys;
  keys.reserve(8);
  for_each_index_entry(f, version, [&](char tag, std::string_view value) {
    keys.push_back(index_prefix(tag, value));
    append_be64(keys.back(), f.id);
  });
  return keys;
}

int64_t flow_time(const flow::Flow& f) {
  return f.timing.request_started != 0 ? f.timing.request_started : static_cast<int64_t>(f.id);
}

Status from_rocks(const rocksdb::Status& s, const std::string& what) {
  Errc code = Errc::io_error;
  if (s.IsCorruption())
    code = Errc::corruption;
  else if (s.IsNotFound())
    code = Errc::not_found;
  else if (s.IsInvalidArgument())
    code = Errc::invalid_argument;
  else if (s.IsNotSupported())
    code = Errc::failed_precondition;
  else if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain())
    code = Errc::unavailable;
  return Status(code, what + ": " + s.ToString());
}

struct SessionCounters {
  uint64_t count = 0;
  int64_t first = 0;
  int64_t last = 0;
};

std::string encode_counters(const SessionCounters& c) {
  std::string out;
  append_be64(out, c.count);
  append_be64(out, static_cast<uint64_t>(c.first));
  append_be64(out, static_cast<uint64_t>(c.last));
  return out;
}

std::optional<SessionCounters> decode_counters(std::string_view v) {
  if (v.size() != 24) return std::nullopt;
  return SessionCounters{load_be64(v.data()), static_cast<int64_t>(load_be64(v.data() + 8)),
                         static_cast<int64_t>(load_be64(v.data() + 16))};
}

// How one put() or remove() changes a session: flows added and flows taken away (removed,
// or replaced by a flow with the same id).
struct SessionChange {
  uint64_t added = 0;
  int64_t added_first = INT64_MAX;
  int64_t added_last = INT64_MIN;
  std::vector<int64_t> removed_times;
};

class SessionChanges {
 public:
  void add(const flow::Flow& f) {
    if (f.session.empty()) return;
    auto& c = changes_[f.session];
    int64_t t = flow_time(f);
    // A replaced flow that keeps its session and time changes nothing: cancel the pair so
    // that updating a mark never forces a recount.
    if (auto it = std::find(c.removed_times.begin(), c.removed_times.end(), t);
        it != c.removed_times.end()) {
      c.removed_times.erase(it);
      return;
    }
    ++c.added;
    c.added_first = std::min(c.added_first, t);
    c.added_last = std::max(c.added_last, t);
  }
  void remove(const flow::Flow& f) {
    if (f.session.empty()) return;
    changes_[f.session].removed_times.push_back(flow_time(f));
  }
  const std::unordered_map<std::string, SessionChange>& changes() const { return changes_; }

 private:
  std::unordered_map<std::string, SessionChange> changes_;
};

// Releases a snapshot when a read ends.
class SnapshotGuard {
 public:
  SnapshotGuard(rocksdb::DB* db, bool enabled) : db_(db) {
    if (enabled) snapshot_ = db->GetSnapshot();
  }
  ~SnapshotGuard() {
    if (snapshot_) db_->ReleaseSnapshot(snapshot_);
  }
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_ = nullptr;
};

// Removes secondary directories left by readers that died without closing (by pid).
void remove_stale_secondary_dirs(const fs::path& tmp) {
  std::error_code ec;
  for (fs::directory_iterator it(tmp, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind(kSecondaryDirPrefix, 0) != 0) continue;
    std::string_view rest = std::string_view(name).substr(std::strlen(kSecondaryDirPrefix));
    long pid = 0;
    auto [ptr, err] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
    if (err != std::errc() || ptr == rest.data() || *ptr != '-' || pid <= 0) continue;
    if (kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove_all(it->path(), ignored);
    }
  }
}

// ---- candidate id streams ----------------------------------------------------------------
// A scan turns each indexed condition into an ordered stream of ids (ascending, or descending
// for a reverse scan) and walks their intersection. seek(target) moves to the first id at or
// past target in the stream's direction; a stream never moves backwards.

class IdCursor {
 public:
  virtual ~IdCursor() = default;
  virtual bool valid() const = 0;
  virtual uint64_t id() const = 0;
  virtual void next() = 0;
  virtual void seek(uint64_t target) = 0;
  virtual Status status() const { return {}; }
  // About how many bytes of index keys the stream walks (RocksDB's estimate, memtables
  // included): what the scan compares to leave the widest streams out.
  uint64_t weight() const { return weight_; }

 protected:
  uint64_t weight_ = 0;
};

uint64_t sat_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}
uint64_t sat_mul(uint64_t a, uint64_t b) {
  return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

// RocksDB's estimate of the bytes in [lower, upper) of cf, memtables included.
uint64_t approximate_bytes(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf,
                           const rocksdb::Slice& lower, const rocksdb::Slice& upper) {
  rocksdb::SizeApproximationOptions options;
  options.include_memtables = true;
  options.include_files = true;
  rocksdb::Range range(lower, upper);
  uint64_t bytes = 0;
  if (!db.GetApproximateSizes(options, cf, &range, 1, &bytes).ok()) return UINT64_MAX;
  return bytes;
}

// The ids of one index value: the keys <prefix><be64 id>, skipping longer keys that belong to
// a value which merely starts like this one.
class IndexCursor final : public IdCursor {
 public:
  IndexCursor(rocksdb::DB& db, const rocksdb::ReadOptions& base, rocksdb::ColumnFamilyHandle* cf,
              std::string prefix, bool reverse)
      : prefix_(std::move(prefix)), reverse_(reverse) {
    // Prefixes end in '\0', so the first key past them ends in '\1' instead.
    upper_ = prefix_;
    upper_.back() = '\1';
    lower_slice_ = rocksdb::Slice(prefix_);
    upper_slice_ = rocksdb::Slice(upper_);
    rocksdb::ReadOptions ro = base;
    ro.iterate_lower_bound = &lower_slice_;
    ro.iterate_upper_bound = &upper_slice_;
    it_.reset(db.NewIterator(ro, cf));
    weight_ = approximate_bytes(db, cf, lower_slice_, upper_slice_);
  }
  IndexCursor(const IndexCursor&) = delete;
  IndexCursor& operator=(const IndexCursor&) = delete;

  bool valid() const override { return it_->Valid(); }
  uint64_t id() const override { return load_be64(it_->key().data() + prefix_.size()); }
  void next() override {
    reverse_ ? it_->Prev() : it_->Next();
    settle();
  }
  void seek(uint64_t target) override {
    // Leapfrogging through a dense stream mostly lands a few entries ahead: stepping there is
    // far cheaper than a Seek, which repositions in every table file (dozens of them while
    // level 0 waits for compaction). Running off the end while stepping means nothing is at
    // or past target, which is the answer too.
    if (it_->Valid()) {
      for (int step = 0; step < kStepsBeforeSeek; ++step) {
        if (!it_->Valid()) return;
        uint64_t at = id();
        if (reverse_ ? at <= target : at >= target) return;
        next();
      }
      if (!it_->Valid()) return;
    }
    std::string key = prefix_;
    append_be64(key, target);
    reverse_ ? it_->SeekForPrev(key) : it_->Seek(key);
    settle();
  }
  Status status() const override {
    if (!it_->status().ok()) return from_rocks(it_->status(), "walking the index");
    return {};
  }

 private:
  void settle() {
    while (it_->Valid() && it_->key().size() != prefix_.size() + 8)
      reverse_ ? it_->Prev() : it_->Next();
  }

  static constexpr int kStepsBeforeSeek = 32;
  std::string prefix_, upper_;
  rocksdb::Slice lower_slice_, upper_slice_;
  bool reverse_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

// A sorted list of ids (a time range's, gathered from the `t` index).
class ListCursor final : public IdCursor {
 public:
  ListCursor(std::vector<uint64_t> ids, bool reverse, uint64_t weight)
      : ids_(std::move(ids)), reverse_(reverse) {
    weight_ = weight;
    std::sort(ids_.begin(), ids_.end());
    ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
    if (reverse_) std::reverse(ids_.begin(), ids_.end());
  }
  bool valid() const override { return pos_ < ids_.size(); }
  uint64_t id() const override { return ids_[pos_]; }
  void next() override { ++pos_; }
  void seek(uint64_t target) override {
    auto it = reverse_ ? std::lower_bound(ids_.begin() + pos_, ids_.end(), target,
                                          [](uint64_t a, uint64_t b) { return a > b; })
                       : std::lower_bound(ids_.begin() + pos_, ids_.end(), target);
    pos_ = static_cast<size_t>(it - ids_.begin());
  }

 private:
  std::vector<uint64_t> ids_;
  bool reverse_;
  size_t pos_ = 0;
};

// Ids in any of the children (each id once).
class UnionCursor final : public IdCursor {
 public:
  UnionCursor(std::vector<std::unique_ptr<IdCursor>> children, bool reverse)
      : children_(std::move(children)), reverse_(reverse) {
    for (const auto& c : children_) weight_ = sat_add(weight_, c->weight());
  }
  bool valid() const override { return current_.has_value(); }
  uint64_t id() const override { return *current_; }
  void next() override {
    uint64_t at = *current_;
    for (auto& c : children_)
      if (c->valid() && c->id() == at) c->next();
    pick();
  }
  void seek(uint64_t target) override {
    for (auto& c : children_) c->seek(target);
    pick();
  }
  Status status() const override {
    for (const auto& c : children_)
      if (auto s = c->status(); !s) return s;
    return {};
  }

 private:
  void pick() {
    current_.reset();
    for (const auto& c : children_) {
      if (!c->valid()) continue;
      uint64_t id = c->id();
      if (!current_ || (reverse_ ? id > *current_ : id < *current_)) current_ = id;
    }
  }
  std::vector<std::unique_ptr<IdCursor>> children_;
  bool reverse_;
  std::optional<uint64_t> current_;
};

// Ids in every child: each child leaps to the furthest id any other stands on.
class IntersectionCursor final : public IdCursor {
 public:
  IntersectionCursor(std::vector<std::unique_ptr<IdCursor>> children, bool reverse)
      : children_(std::move(children)), reverse_(reverse) {}
  bool valid() const override { return valid_; }
  uint64_t id() const override { return id_; }
  void next() override {
    children_.front()->next();
    settle();
  }
  void seek(uint64_t target) override {
    for (auto& c : children_) c->seek(target);
    settle();
  }
  Status status() const override {
    for (const auto& c : children_)
      if (auto s = c->status(); !s) return s;
    return {};
  }

 private:
  void settle() {
    valid_ = false;
    for (;;) {
      uint64_t target = 0;
      bool first = true;
      for (const auto& c : children_) {
        if (!c->valid()) return;
        uint64_t id = c->id();
        if (first || (reverse_ ? id < target : id > target)) target = id;
        first = false;
      }
      bool agreed = true;
      for (auto& c : children_) {
        if (c->id() == target) continue;
        c->seek(target);
        if (!c->valid()) return;
        if (c->id() != target) agreed = false;
      }
      if (agreed) {
        valid_ = true;
        id_ = target;
        return;
      }
    }
  }
  std::vector<std::unique_ptr<IdCursor>> children_;
  bool reverse_;
  bool valid_ = false;
  uint64_t id_ = 0;
};

// Leaves out of an intersection the streams far wider than its narrowest one. Leapfrogging
// costs a seek in every stream per candidate, and a seek in a wide index range is what made
// `~m POST & ~d host` take 230 ms on a store fresh from a burst (dozens of level-0 files):
// checking the left-out conditions on the few decoded candidates is cheaper. scan's matches()
// checks every condition, so the result is the same. Time-range lists are kept: they are in
// memory already, and seeking them is a binary search.
std::atomic<uint64_t> streams_left_out{0};  // for testing::streams_left_out()

void drop_wide_streams(std::vector<std::unique_ptr<IdCursor>>& streams) {
  if (streams.size() < 2) return;
  constexpr uint64_t kWideRatio = 16;
  constexpr uint64_t kNarrowFloor = 4096;  // about one block: estimates below are mostly noise
  uint64_t narrowest = UINT64_MAX;
  for (const auto& s : streams) narrowest = std::min(narrowest, s->weight());
  const uint64_t limit = sat_mul(std::max(narrowest, kNarrowFloor), kWideRatio);
  size_t dropped = std::erase_if(streams, [&](const std::unique_ptr<IdCursor>& s) {
    return s->weight() > limit && !dynamic_cast<const ListCursor*>(s.get());
  });
  streams_left_out.fetch_add(dropped, std::memory_order_relaxed);
}

// Bounds on what a scan gathers before it prefers decoding flows.
constexpr size_t kMaxValuesListed = 4096;      // distinct hosts/methods/statuses walked
constexpr size_t kMaxValuesUnited = 64;        // streams merged for one condition
constexpr size_t kMaxTimeRangeIds = 1u << 18;  // ids of one time range held in memory (2 MiB)

class RocksFlowStore final : public FlowStore {
 public:
  explicit RocksFlowStore(const StoreOptions& options)
      : path_(options.path), read_only_(options.read_only), sync_(options.sync) {}

  ~RocksFlowStore() override {
    if (db_) {
      for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
      handles_.clear();
      db_->Close().PermitUncheckedError();
      db_.reset();
    }
    if (!secondary_dir_.empty()) {
      std::error_code ignored;
      fs::remove_all(secondary_dir_, ignored);
    }
  }

  Status open_db(bool exists);

  uint64_t next_id() override {
    uint64_t now = static_cast<uint64_t>(flow::now_ns());
    uint64_t last = last_id_.load(std::memory_order_relaxed);
    for (;;) {
      uint64_t candidate = std::max(now, last + 1);
      if (last_id_.compare_exchange_weak(last, candidate, std::memory_order_relaxed))
        return candidate;
    }
  }

  Result<std::vector<uint64_t>> put(std::vector<flow::Flow>& flows) override;
  Result<flow::Flow> get(uint64_t id, bool with_bodies) override;
  Status scan(const ScanOptions& options, const std::function<bool(flow::Flow&)>& visit) override;
  Result<uint64_t> count(const ScanOptions& options) override;
  Status remove(const std::vector<uint64_t>& ids) override;
  Result<std::vector<SessionInfo>> sessions() override;
  Status refresh() override;
  Status put_meta(std::string_view key, std::string_view value) override;
  Result<std::optional<std::string>> get_meta(std::string_view key) override;
  Status scan_meta(std::string_view prefix,
                   const std::function<bool(std::string_view, std::string_view)>& visit) override;
  Status remove_meta(std::string_view key) override;
  Result<StoreStats> stats() override;
  bool read_only() const override { return read_only_; }
  const std::string& path() const override { return path_; }

  // value nullopt: delete.
  Status write_raw(std::string_view cf_name, std::string_view key,
                   std::optional<std::string_view> value);

 private:
  rocksdb::ColumnFamilyOptions cf_options(Cf cf) const;
  Status check_version();
  Status writable() const {
    if (read_only_)
      return Status(Errc::failed_precondition, "store at " + path_ + " is open read-only");
    return {};
  }
  void observe_id(uint64_t id) {
    uint64_t last = last_id_.load(std::memory_order_relaxed);
    while (id > last && !last_id_.compare_exchange_weak(last, id, std::memory_order_relaxed)) {
    }
  }
  rocksdb::ReadOptions read_options(const SnapshotGuard& snapshot) const {
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot.get();
    return ro;
  }
  // Secondary instances do not support snapshots; a reader there sees the state of its last
  // catch-up, which only refresh() moves.
  bool snapshots() const { return !read_only_; }

  // Hashes data into digest; queues it in new_bodies unless `bodies` (or this batch) has it.
  Status store_body(const std::string& data, std::unordered_set<std::string>& batch_bodies,
                    std::vector<std::pair<std::string, const std::string*>>& new_bodies,
                    std::string& digest);
  Status load_body(const rocksdb::ReadOptions& ro, uint64_t id, const std::string& digest,
                   uint64_t stored, flow::Body& body);
  Status load_bodies(const rocksdb::ReadOptions& ro, uint64_t id, DecodedFlow& d);
  Result<flow::Flow> load_flow(const rocksdb::ReadOptions& ro, uint64_t id, std::string_view bytes,
                               bool with_bodies);
  // Lists the distinct values of one index tag from `from` up to `to` ("" : no end) into out.
  // False when there are more than kMaxValuesListed (out is then incomplete). A read error
  // lands in failure.
  bool list_values(const rocksdb::ReadOptions& ro, char tag, std::string_view from,
                   std::string_view to, std::vector<std::string>& out, Status& failure);
  // The union of the id streams of every value of `tags` that passes test, plus the stream of
  // always_tag's "" value; null when too many values pass (or exist) to merge.
  std::unique_ptr<IdCursor> value_union(const rocksdb::ReadOptions& ro,
                                        std::initializer_list<char> tags, char always_tag,
                                        const std::function<bool(std::string_view)>& test,
                                        bool reverse, Status& failure);
  // The ids whose start time is in [since, until), sorted; null when more than
  // kMaxTimeRangeIds.
  std::unique_ptr<IdCursor> time_range(const rocksdb::ReadOptions& ro, std::optional<int64_t> since,
                                       std::optional<int64_t> until, bool reverse, Status& failure);
  // Brings a store of schema `from` to kSchemaVersion: adds the entries of the tags newer than
  // `from` to every stored flow, moves replayed flows' session entries to S (from < 3), then
  // stamps the version.
  Status upgrade(uint32_t from);
  // Removes the stored flow `id` (if any) from the batch: its key, index keys and counters.
  Status take_out(rocksdb::WriteBatch& batch, uint64_t id, bool delete_flow_key,
                  SessionChanges& changes);
  Status apply_session_changes(rocksdb::WriteBatch& batch, const SessionChanges& changes,
                               const std::unordered_set<uint64_t>& touched);
  Status recount_session(const std::string& name, const std::unordered_set<uint64_t>& touched,
                         SessionCounters& out);
  // Walks the keys of one column family that belong to `prefix` and end in an 8-byte id, in
  // the order and from the cursor options asks; visit returns false to stop.
  Status walk_ids(const rocksdb::ReadOptions& ro, Cf cf, const std::string& prefix,
                  const ScanOptions& options,
                  const std::function<bool(uint64_t id, rocksdb::Iterator& it)>& visit);

  std::string path_;
  bool read_only_;
  bool sync_;
  std::string secondary_dir_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* cf_[kCfCount] = {};
  std::mutex write_mu_;  // serializes put/remove: session counters are read-modify-write
  std::atomic<uint64_t> last_id_{0};
  std::unordered_set<std::string> known_bodies_;  // guarded by write_mu_
  // Registers the values of f's h/d/m entries that the registry lacks: into batch, and into
  // registered_ at once, listed in `added` so that forget_values() can take them back out of
  // registered_ when the batch is not written. Under write_mu_.
  struct NewValue {
    char tag;
    std::string value;
    bool overflow;
  };
  void register_value(char tag, std::string_view value, rocksdb::WriteBatch& batch,
                      std::vector<NewValue>& added);
  void forget_values(std::vector<NewValue>& added);
  Status load_registry();

  // The registry of distinct index values, as stored (guarded by write_mu_; writers only).
  struct TagValues {
    std::unordered_set<std::string> values;
    bool overflow = false;
  };
  std::unordered_map<char, TagValues> registered_;
  // The schema the stored data follows (read at open and refresh): which index tags exist.
  std::atomic<uint32_t> schema_version_{kSchemaVersion};
};

rocksdb::ColumnFamilyOptions RocksFlowStore::cf_options(Cf cf) const {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache_;
  // Index and filter blocks count against the small cache instead of growing beside it.
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  if (cf != kMeta) table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  if (cf == kFlows || cf == kBodies) table.block_size = 16 * 1024;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  static const bool zstd = [] {
    auto supported = rocksdb::GetSupportedCompressions();
    return std::find(supported.begin(), supported.end(), rocksdb::kZSTD) != supported.end();
  }();
  o.compression = (cf != kMeta && zstd) ? rocksdb::kZSTD : rocksdb::kNoCompression;
  if (o.compression == rocksdb::kZSTD) {
    // Levels 0 and 1 are written at flush and rewritten by the next compaction within
    // seconds under load: compressing them cost the recorder CPU (zstd in every flush) for
    // bytes that do not stay. Deeper levels, where the data lives, are compressed.
    o.compression_per_level = {rocksdb::kNoCompression, rocksdb::kNoCompression, rocksdb::kZSTD};
  }
  switch (cf) {
    case kFlows:
    case kBodies:
      o.write_buffer_size = 4u << 20;
      break;
    case kIndex:
      o.write_buffer_size = 2u << 20;
      break;
    default:
      o.write_buffer_size = 1u << 20;
      break;
  }
  // A third memtable lets writes continue while two wait for a slow flush; the shared
  // WriteBufferManager still bounds their sum.
  o.max_write_buffer_number = 3;
  if (cf == kBodies) {
    // The dedup check asks the memtable about keys that are usually absent. The filter is
    // allocated and zeroed with each memtable: 1% of the 4 MiB budget (42 KB, ~10 bits per key
    // for 33k bodies, more than a 4 MiB memtable of bodies holds) instead of 5% (210 KB that
    // every recorder kept resident from its start).
    o.memtable_whole_key_filtering = true;
    o.memtable_prefix_bloom_size_ratio = 0.01;
  }
  // Memtables grow in 64 KiB steps rather than write_buffer_size/8 (512 KiB): an idle or
  // lightly used store holds less, and a busy one fills its blocks anyway.
  o.arena_block_size = 64u << 10;
  o.target_file_size_base = 16u << 20;
  o.max_bytes_for_level_base = 64u << 20;
  if (cf == kIndex) {
    // Every flow adds a key to each of a few streams (session, host, status, method, time),
    // each growing at its own end, so a level-0 file overlaps every level-1 file and each
    // L0->L1 compaction rewrote all of level 1: 220 MB written for 13 MB of new keys in 30 s
    // of recording, the compaction thread 15-20 us of a 50-60 us request. Merging 16 files at
    // a time instead of 4 writes level 1 a quarter as often: 8 us per request over 60 s
    // (RETAKE_EXP A/B, /proc/PID/task/*/stat). Index scans merge up to 16 small files; their
    // filter and index blocks stay pinned in the cache.
    o.level0_file_num_compaction_trigger = 16;
    o.level0_slowdown_writes_trigger = 40;
    o.level0_stop_writes_trigger = 56;
  }
  return o;
}

Status RocksFlowStore::open_db(bool exists) {
  // Four shards: one writer and a few readers never contend much, and each shard is a table.
  cache_ = rocksdb::NewLRUCache(kBlockCacheBytes, /*num_shard_bits=*/2);
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = !read_only_;
  db_options.create_missing_column_families = !read_only_;
  // Secondary instances require every file open (RocksDB's rule for OpenAsSecondary).
  db_options.max_open_files = read_only_ ? -1 : kMaxOpenFiles;
  db_options.max_background_jobs = 2;
  db_options.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(kAllMemtablesBytes, cache_);
  db_options.max_total_wal_size = 64u << 20;
  db_options.keep_log_file_num = 2;
  db_options.max_log_file_size = 1u << 20;
  // The WAL writer's buffer grows to this (default 1 MiB) and stays: a group commit of 512
  // small flows fits, a bigger one is written in more calls.
  db_options.writable_file_max_buffer_size = 256u << 10;
  db_options.table_cache_numshardbits = 4;
  db_options.stats_dump_period_sec = 0;  // nobody reads the LOG's periodic statistics

  std::vector<std::string> existing;
  if (exists) {
    auto st = rocksdb::DB::ListColumnFamilies(db_options, path_, &existing);
    if (!st.ok()) return from_rocks(st, "reading store at " + path_);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  // The default family is never written (RocksDB requires it): a token memtable budget.
  rocksdb::ColumnFamilyOptions unused;
  unused.write_buffer_size = 64u << 10;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, unused);
  for (int cf = 0; cf < kCfCount; ++cf) {
    if (read_only_ && std::find(existing.begin(), existing.end(), kCfNames[cf]) == existing.end())
      return Status(Errc::corruption, "store at " + path_ + " has no column family '" +
                                          kCfNames[cf] + "': not a retake store");
    descriptors.emplace_back(kCfNames[cf], cf_options(static_cast<Cf>(cf)));
  }
  // A writer must open every family that exists; unknown ones (a newer retake's) ride along.
  for (const auto& name : existing) {
    bool known = name == rocksdb::kDefaultColumnFamilyName ||
                 std::find_if(std::begin(kCfNames), std::end(kCfNames),
                              [&](const char* n) { return name == n; }) != std::end(kCfNames);
    if (!known) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }

  rocksdb::DB* raw = nullptr;
  rocksdb::Status st;
  if (read_only_) {
    std::error_code ec;
    fs::path tmp = fs::temp_directory_path(ec);
    if (ec) tmp = "/tmp";
    remove_stale_secondary_dirs(tmp);
    // mkdtemp: created atomically, mode 0700, with a name nobody could have prepared.
    std::string pattern =
        (tmp / (kSecondaryDirPrefix + std::to_string(getpid()) + "-XXXXXX")).string();
    if (!mkdtemp(pattern.data()))
      return Status(Errc::io_error,
                    "cannot create a directory in " + tmp.string() + ": " + std::strerror(errno));
    secondary_dir_ = pattern;
    st = rocksdb::DB::OpenAsSecondary(db_options, path_, secondary_dir_, descriptors, &handles_,
                                      &raw);
  } else {
    st = rocksdb::DB::Open(db_options, path_, descriptors, &handles_, &raw);
  }
  if (!st.ok()) {
    if (st.IsIOError() && st.ToString().find("lock") != std::string::npos)
      return Status(Errc::unavailable, "store at " + path_ +
                                           " is open for writing by another process (open it "
                                           "read-only to look at it): " +
                                           st.ToString());
    return from_rocks(st, "opening store at " + path_);
  }
  db_.reset(raw);
  for (int cf = 0; cf < kCfCount; ++cf) cf_[cf] = handles_[cf + 1];

  if (read_only_) {
    st = db_->TryCatchUpWithPrimary();
    if (!st.ok()) return from_rocks(st, "catching up with the writer of " + path_);
  }
  if (auto s = check_version(); !s) return s;

  if (!read_only_) {
    if (auto s = load_registry(); !s) return s;
    // Ids stay above everything stored, even if the clock went back since the last run.
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_[kFlows]));
    it->SeekToLast();
    if (it->Valid() && it->key().size() == 8) observe_id(load_be64(it->key().data()));
    if (!it->status().ok()) return from_rocks(it->status(), "reading store at " + path_);
  }
  return {};
}

Status RocksFlowStore::check_version() {
  std::string value;
  auto st = db_->Get({}, cf_[kMeta], kVersionKey, &value);
  if (st.IsNotFound()) {
    bool empty = true;
    for (auto* h : handles_) {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, h));
      it->SeekToFirst();
      if (it->Valid()) empty = false;
      if (!it->status().ok()) return from_rocks(it->status(), "reading store at " + path_);
    }
    if (!empty)
      return Status(Errc::corruption, "store at " + path_ +
                                          " holds data but no schema version: it is damaged "
                                          "or not a retake store");
    // An empty store being created right now by a writer: it stamps the version next. Until
    // a refresh reads it, assume the oldest layout (scans then decode rather than trust tags
    // that may not exist).
    if (read_only_) {
      schema_version_ = 1;
      return {};
    }
    schema_version_ = kSchemaVersion;
    rocksdb::WriteOptions wo;
    wo.sync = true;
    st = db_->Put(wo, cf_[kMeta], kVersionKey, std::to_string(kSchemaVersion));
    if (!st.ok()) return from_rocks(st, "stamping the schema version of " + path_);
    return {};
  }
  if (!st.ok()) return from_rocks(st, "reading the schema version of " + path_);
  uint64_t version = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), version);
  if (ec != std::errc() || ptr != value.data() + value.size() || value.empty() || version == 0)
    return Status(Errc::corruption, "store at " + path_ + " has an unreadable schema version");
  if (version > kSchemaVersion)
    return Status(Errc::version_mismatch,
                  "store at " + path_ + " was written by schema " + std::to_string(version) +
                      "; this retake understands up to " + std::to_string(kSchemaVersion) +
                      " (upgrade retake to read it)");
  schema_version_ = static_cast<uint32_t>(version);
  if (version < kSchemaVersion && !read_only_) return upgrade(schema_version_);
  return {};
}

Status RocksFlowStore::upgrade(uint32_t from) {
  // Put is idempotent, so a pass cut short (killed, disk full) is simply run again at the next
  // open: the version is stamped only after every entry is written.
  constexpr size_t kEntriesPerBatch = 4096;
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  rocksdb::WriteBatch batch;
  std::vector<NewValue> added;
  std::lock_guard lock(write_mu_);
  if (auto s = load_registry(); !s) return s;
  struct Forget {
    RocksFlowStore* store;
    std::vector<NewValue>& values;
    ~Forget() { store->forget_values(values); }
  } forget{this, added};
  auto write = [&]() -> Status {
    if (batch.Count() == 0) return {};
    auto st = db_->Write(wo, &batch);
    batch.Clear();
    if (!st.ok())
      return from_rocks(st, "adding the schema " + std::to_string(kSchemaVersion) +
                                " index entries to " + path_);
    added.clear();  // written: keep them
    return {};
  };
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // one pass over everything: keep the cache for what follows
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[kFlows]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8) continue;
    uint64_t id = load_be64(it->key().data());
    // A damaged record cannot tell its entries; readers report it when they reach it.
    auto decoded = decode_flow(std::string_view(it->value().data(), it->value().size()), id);
    if (!decoded) continue;
    const auto& f = decoded->flow;
    if (from < 3 && !f.session.empty() && !f.run.empty()) {
      // Its session entry moves to S (added below): readers of every version unite s and S,
      // so the flow stays findable by session throughout.
      std::string key = index_prefix('s', f.session);
      append_be64(key, id);
      batch.Delete(cf_[kIndex], key);
    }
    for_each_index_entry(f, kSchemaVersion, [&](char tag, std::string_view value) {
      if (from < 2) register_value(tag, value, batch, added);  // the registry came with 2
      if (tag_since(tag) <= from) return;                       // the store has these already
      std::string key = index_prefix(tag, value);
      append_be64(key, id);
      batch.Put(cf_[kIndex], key, rocksdb::Slice());
    });
    if (batch.Count() >= kEntriesPerBatch)
      if (auto s = write(); !s) return s;
  }
  if (!it->status().ok()) return from_rocks(it->status(), "reading store at " + path_);
  if (auto s = write(); !s) return s;
  wo.sync = true;
  auto st = db_->Put(wo, cf_[kMeta], kVersionKey, std::to_string(kSchemaVersion));
  if (!st.ok()) return from_rocks(st, "stamping the schema version of " + path_);
  schema_version_ = kSchemaVersion;
  return {};
}

Status RocksFlowStore::store_body(
    const std::string& data, std::unordered_set<std::string>& batch_bodies,
    std::vector<std::pair<std::string, const std::string*>>& new_bodies, std::string& digest) {
  digest.clear();
  if (data.empty()) return {};
  digest = sha256(data);
  if (known_bodies_.count(digest) || !batch_bodies.insert(digest).second) return {};
  bool present = false;
  std::string value;
  bool value_found = false;
  // Bloom filters (memtable and tables) answer "surely absent" for new content without
  // reading any bytes.
  if (db_->KeyMayExist({}, cf_[kBodies], digest, &value, &value_found)) {
    if (value_found) {
      present = true;
    } else {
      rocksdb::PinnableSlice existing;
      auto st = db_->Get({}, cf_[kBodies], digest, &existing);
      if (st.ok())
        present = true;
      else if (!st.IsNotFound())
        return from_rocks(st, "reading bodies of " + path_);
    }
  }
  if (!present) new_bodies.emplace_back(digest, &data);
  return {};
}

Status RocksFlowStore::take_out(rocksdb::WriteBatch& batch, uint64_t id, bool delete_flow_key,
                                SessionChanges& changes) {
  std::string key = be64(id);
  std::string old;
  auto st = db_->Get({}, cf_[kFlows], key, &old);
  if (st.IsNotFound()) return {};
  if (!st.ok()) return from_rocks(st, "reading flow " + std::to_string(id));
  if (delete_flow_key) batch.Delete(cf_[kFlows], key);
  // A damaged record cannot tell us its index keys; they stay behind and readers skip
  // entries whose flow is gone.
  auto decoded = decode_flow(old, id);
  if (!decoded) return {};
  for (const auto& k : index_keys(decoded->flow)) batch.Delete(cf_[kIndex], k);
  changes.remove(decoded->flow);
  return {};
}

Result<std::vector<uint64_t>> RocksFlowStore::put(std::vector<flow::Flow>& flows) {
  if (auto s = writable(); !s) return s;
  std::unordered_set<uint64_t> touched;
  touched.reserve(flows.size() * 2);
  for (const auto& f : flows) {
    if (f.id == 0) continue;
    if (!touched.insert(f.id).second)
      return Result<std::vector<uint64_t>>(
          Errc::invalid_argument, "flow " + std::to_string(f.id) + " appears twice in one put");
    // Before any id is assigned, so a fresh one cannot collide with one given in this batch.
    observe_id(f.id);
  }

  std::lock_guard lock(write_mu_);
  rocksdb::WriteBatch batch;
  SessionChanges changes;
  std::unordered_set<std::string> batch_bodies;
  std::vector<uint64_t> ids;
  ids.reserve(flows.size());
  std::string request_digest, response_digest;
  std::vector<std::string> new_index;
  new_index.reserve(flows.size() * 4);
  std::vector<std::pair<std::string, const std::string*>> new_bodies;
  std::vector<NewValue> new_values;
  // Unless the batch is written, the registry in memory must not claim its values.
  struct Forget {
    RocksFlowStore* store;
    std::vector<NewValue>& values;
    ~Forget() { store->forget_values(values); }
  } forget{this, new_values};
  for (auto& f : flows) {
    if (f.id == 0) {
      // Above every stored id: nothing to replace.
      f.id = next_id();
      touched.insert(f.id);
    } else {
      if (auto s = take_out(batch, f.id, false, changes); !s) return s;
    }
    if (auto s = store_body(f.request.body.data, batch_bodies, new_bodies, request_digest); !s)
      return s;
    response_digest.clear();
    if (f.response)
      if (auto s = store_body(f.response->body.data, batch_bodies, new_bodies, response_digest); !s)
        return s;
    batch.Put(cf_[kFlows], be64(f.id), encode_flow(f, request_digest, response_digest));
    for_each_index_entry(f, kSchemaVersion, [&](char tag, std::string_view value) {
      new_index.push_back(index_prefix(tag, value));
      append_be64(new_index.back(), f.id);
      register_value(tag, value, batch, new_values);
    });
    changes.add(f);
    ids.push_back(f.id);
  }
  // Key order makes the memtable's skiplist inserts sequential (it reuses its last position):
  // interleaved index tags and random digests otherwise cost a search from the top each.
  std::sort(new_index.begin(), new_index.end());
  for (const auto& k : new_index) batch.Put(cf_[kIndex], k, rocksdb::Slice());
  std::sort(new_bodies.begin(), new_bodies.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [digest, data] : new_bodies) batch.Put(cf_[kBodies], digest, *data);
  if (auto s = apply_session_changes(batch, changes, touched); !s) return s;

  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  auto st = db_->Write(wo, &batch);
  if (!st.ok())
    return from_rocks(st, "writing " + std::to_string(flows.size()) + " flows to " + path_);
  if (known_bodies_.size() + batch_bodies.size() > kKnownBodiesMax) known_bodies_.clear();
  known_bodies_.merge(batch_bodies);
  new_values.clear();  // written: keep them
  return ids;
}

Status RocksFlowStore::remove(const std::vector<uint64_t>& ids) {
  if (auto s = writable(); !s) return s;
  std::lock_guard lock(write_mu_);
  rocksdb::WriteBatch batch;
  SessionChanges changes;
  std::unordered_set<uint64_t> touched;
  for (uint64_t id : ids) {
    if (!touched.insert(id).second) continue;
    if (auto s = take_out(batch, id, true, changes); !s) return s;
  }
  if (batch.Count() == 0) return {};
  if (auto s = apply_session_changes(batch, changes, touched); !s) return s;
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  auto st = db_->Write(wo, &batch);
  if (!st.ok()) return from_rocks(st, "removing flows from " + path_);
  return {};
}

Status RocksFlowStore::recount_session(const std::string& name,
                                       const std::unordered_set<uint64_t>& touched,
                                       SessionCounters& out) {
  out = SessionCounters{0, INT64_MAX, INT64_MIN};
  ScanOptions all;
  rocksdb::ReadOptions ro;
  auto count = [&](uint64_t id, rocksdb::Iterator&) {
    if (touched.count(id)) return true;
    std::string bytes;
    if (!db_->Get(ro, cf_[kFlows], be64(id), &bytes).ok()) return true;
    auto decoded = decode_flow(bytes, id);
    if (!decoded) return true;
    int64_t t = flow_time(decoded->flow);
    ++out.count;
    out.first = std::min(out.first, t);
    out.last = std::max(out.last, t);
    return true;
  };
  for (char tag : {'s', 'S'})
    if (auto st = walk_ids(ro, kIndex, index_prefix(tag, name), all, count); !st) return st;
  return {};
}

Status RocksFlowStore::apply_session_changes(rocksdb::WriteBatch& batch,
                                             const SessionChanges& changes,
                                             const std::unordered_set<uint64_t>& touched) {
  for (const auto& [name, change] : changes.changes()) {
    std::string key = kSessionPrefix + name;
    std::string value;
    auto st = db_->Get({}, cf_[kMeta], key, &value);
    if (!st.ok() && !st.IsNotFound()) return from_rocks(st, "reading session " + name);
    std::optional<SessionCounters> current;
    if (st.ok()) current = decode_counters(value);
    bool had = st.ok();

    SessionCounters next;
    // Counters move incrementally unless a flow at the session's edge leaves (then the new
    // edge is unknown) or the stored counters are unreadable: then count the session afresh,
    // leaving out every flow this batch touches, and add this batch's flows on top.
    bool edge_left = false;
    if (current)
      for (int64_t t : change.removed_times)
        if (t <= current->first || t >= current->last) edge_left = true;
    // TODO(perf): a recount decodes the whole session (seconds for a million flows); it only
    // happens when an edge flow is removed or moved, which the recorder never does.
    bool recount = (had && !current) || (!had && !change.removed_times.empty()) || edge_left;
    if (recount) {
      if (auto s = recount_session(name, touched, next); !s) return s;
    } else if (current) {
      next = *current;
      next.count -= std::min<uint64_t>(next.count, change.removed_times.size());
    } else {
      next = SessionCounters{0, INT64_MAX, INT64_MIN};
    }
    next.count += change.added;
    next.first = std::min(next.first, change.added_first);
    next.last = std::max(next.last, change.added_last);
    if (next.count == 0)
      batch.Delete(cf_[kMeta], key);
    else
      batch.Put(cf_[kMeta], key, encode_counters(next));
  }
  return {};
}

Status RocksFlowStore::load_body(const rocksdb::ReadOptions& ro, uint64_t id,
                                 const std::string& digest, uint64_t stored, flow::Body& body) {
  if (digest.empty()) return {};
  rocksdb::PinnableSlice bytes;
  auto st = db_->Get(ro, cf_[kBodies], digest, &bytes);
  if (st.IsNotFound())
    return Status(Errc::corruption,
                  "flow " + std::to_string(id) + " references a body that is not stored");
  if (!st.ok()) return from_rocks(st, "reading a body of flow " + std::to_string(id));
  if (bytes.size() != stored)
    return Status(Errc::corruption, "flow " + std::to_string(id) + " expects a body of " +
                                        std::to_string(stored) + " bytes, the store holds " +
                                        std::to_string(bytes.size()));
  body.data.assign(bytes.data(), bytes.size());
  return {};
}

Status RocksFlowStore::load_bodies(const rocksdb::ReadOptions& ro, uint64_t id, DecodedFlow& d) {
  if (auto s = load_body(ro, id, d.request_digest, d.request_stored, d.flow.request.body); !s)
    return s;
  if (d.flow.response)
    return load_body(ro, id, d.response_digest, d.response_stored, d.flow.response->body);
  return {};
}

Result<flow::Flow> RocksFlowStore::load_flow(const rocksdb::ReadOptions& ro, uint64_t id,
                                             std::string_view bytes, bool with_bodies) {
  auto decoded = decode_flow(bytes, id);
  if (!decoded) return decoded.status();
  auto& d = decoded.value();
  if (with_bodies)
    if (auto s = load_bodies(ro, id, d); !s) return s;
  return std::move(d.flow);
}

Result<flow::Flow> RocksFlowStore::get(uint64_t id, bool with_bodies) {
  SnapshotGuard snapshot(db_.get(), snapshots());
  auto ro = read_options(snapshot);
  rocksdb::PinnableSlice bytes;
  auto st = db_->Get(ro, cf_[kFlows], be64(id), &bytes);
  if (st.IsNotFound()) return Result<flow::Flow>(Errc::not_found, "no flow " + std::to_string(id));
  if (!st.ok()) return from_rocks(st, "reading flow " + std::to_string(id));
  return load_flow(ro, id, std::string_view(bytes.data(), bytes.size()), with_bodies);
}

Status RocksFlowStore::walk_ids(const rocksdb::ReadOptions& base, Cf cf, const std::string& prefix,
                                const ScanOptions& options,
                                const std::function<bool(uint64_t, rocksdb::Iterator&)>& visit) {
  rocksdb::ReadOptions ro = base;
  std::string upper;
  rocksdb::Slice lower_slice(prefix), upper_slice;
  if (!prefix.empty()) {
    // Prefixes end in '\0', so the first key past them ends in '\1' instead.
    upper = prefix;
    upper.back() = '\1';
    upper_slice = rocksdb::Slice(upper);
    ro.iterate_lower_bound = &lower_slice;
    ro.iterate_upper_bound = &upper_slice;
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[cf]));
  uint64_t after = options.after_id;
  if (!options.reverse) {
    if (after == UINT64_MAX) return {};
    it->Seek(prefix + be64(after == 0 ? 0 : after + 1));
  } else {
    if (after == 1) return {};
    it->SeekForPrev(prefix + be64(after == 0 ? UINT64_MAX : after - 1));
  }
  const size_t key_size = prefix.size() + 8;
  for (; it->Valid(); options.reverse ? it->Prev() : it->Next()) {
    auto key = it->key();
    // Longer keys belong to another value that merely starts like ours (see flow_store.h).
    if (key.size() != key_size) {
      if (cf == kFlows)
        return Status(Errc::corruption, "store at " + path_ + " has a flow key of " +
                                            std::to_string(key.size()) + " bytes");
      continue;
    }
    if (!visit(load_be64(key.data() + prefix.size()), *it)) break;
  }
  if (!it->status().ok()) return from_rocks(it->status(), "scanning " + path_);
  return {};
}

Status RocksFlowStore::load_registry() {
  registered_.clear();
  std::string upper = kValuesPrefix;
  upper.back() = '\1';
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[kMeta]));
  for (it->Seek(kValuesPrefix); it->Valid(); it->Next()) {
    std::string_view key(it->key().data(), it->key().size());
    key.remove_prefix(kValuesPrefix.size());
    if (key.size() < 2) continue;
    auto& tag = registered_[key[0]];
    if (key[1] == '\1')
      tag.overflow = true;
    else
      tag.values.emplace(key.substr(2));
  }
  if (!it->status().ok()) return from_rocks(it->status(), "reading the index values of " + path_);
  return {};
}

void RocksFlowStore::register_value(char tag, std::string_view value, rocksdb::WriteBatch& batch,
                                    std::vector<NewValue>& added) {
  {
    // Values with \0 are reached through the D/M entries instead.
    if (!registered_tag(tag) || has_nul(value)) return;
    auto& known = registered_[tag];
    if (known.overflow) return;
    std::string v(value);
    if (known.values.count(v)) return;
    if (known.values.size() >= kMaxValuesListed) {
      // Too many to list: scans stop driving by this tag. The marker is written once.
      known.overflow = true;
      batch.Put(cf_[kMeta], overflow_key(tag), rocksdb::Slice());
      added.push_back({tag, {}, true});
      return;
    }
    batch.Put(cf_[kMeta], value_key(tag, v), rocksdb::Slice());
    added.push_back({tag, v, false});
    known.values.insert(std::move(v));
  }
}

void RocksFlowStore::forget_values(std::vector<NewValue>& added) {
  for (auto it = added.rbegin(); it != added.rend(); ++it) {
    auto& known = registered_[it->tag];
    if (it->overflow)
      known.overflow = false;
    else
      known.values.erase(it->value);
  }
  added.clear();
}

bool RocksFlowStore::list_values(const rocksdb::ReadOptions& base, char tag, std::string_view from,
                                 std::string_view to, std::vector<std::string>& out,
                                 Status& failure) {
  if (registered_tag(tag)) {
    // The registry in `meta` lists them in one short range instead of a seek per value.
    std::string prefix = value_key(tag, "");
    std::string overflow;
    auto st = db_->Get(base, cf_[kMeta], overflow_key(tag), &overflow);
    if (st.ok()) return false;
    if (!st.IsNotFound()) {
      failure = from_rocks(st, "reading the index values of " + path_);
      return true;
    }
    std::string upper = prefix;
    upper.back() = '\1';
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro = base;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[kMeta]));
    size_t listed = 0;
    for (it->Seek(prefix + std::string(from)); it->Valid(); it->Next()) {
      std::string_view value(it->key().data() + prefix.size(), it->key().size() - prefix.size());
      if (!to.empty() && value > to) break;
      if (++listed > kMaxValuesListed) return false;
      out.emplace_back(value);
    }
    if (!it->status().ok()) failure = from_rocks(it->status(), "listing index values of " + path_);
    return true;
  }
  std::string lower = index_prefix(tag, "");
  lower.pop_back();
  std::string upper = lower;
  upper.back() = '\1';
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro = base;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[kIndex]));
  std::string target = lower;
  target.append(from);
  size_t listed = 0;
  for (it->Seek(target); it->Valid();) {
    auto key = it->key();
    if (key.size() < lower.size() + 9 || key[key.size() - 9] != '\0') {
      it->Next();  // not a key of this layout: a newer retake's, or damage
      continue;
    }
    std::string_view value(key.data() + lower.size(), key.size() - lower.size() - 9);
    if (!to.empty() && value > to) break;
    if (++listed > kMaxValuesListed) return false;
    out.emplace_back(value);
    // Past every key of this value (and of values that extend it with \0..., which carry
    // the D/M entry instead, see flow_store.h).
    target = lower;
    target.append(value);
    target.push_back('\1');
    it->Seek(target);
  }
  if (!it->status().ok()) failure = from_rocks(it->status(), "listing index values of " + path_);
  return true;
}

std::unique_ptr<IdCursor> RocksFlowStore::value_union(
    const rocksdb::ReadOptions& ro, std::initializer_list<char> tags, char always_tag,
    const std::function<bool(std::string_view)>& test, bool reverse, Status& failure) {
  std::vector<std::unique_ptr<IdCursor>> streams;
  for (char tag : tags) {
    std::vector<std::string> values;
    if (!list_values(ro, tag, "", "", values, failure) || !failure) return nullptr;
    for (const auto& v : values) {
      if (has_nul(v) || !test(v)) continue;
      if (streams.size() >= kMaxValuesUnited) return nullptr;
      streams.push_back(
          std::make_unique<IndexCursor>(*db_, ro, cf_[kIndex], index_prefix(tag, v), reverse));
    }
  }
  if (always_tag != 0)
    streams.push_back(std::make_unique<IndexCursor>(*db_, ro, cf_[kIndex],
                                                    index_prefix(always_tag, ""), reverse));
  return std::make_unique<UnionCursor>(std::move(streams), reverse);
}

std::unique_ptr<IdCursor> RocksFlowStore::time_range(const rocksdb::ReadOptions& base,
                                                     std::optional<int64_t> since,
                                                     std::optional<int64_t> until, bool reverse,
                                                     Status& failure) {
  std::string lower = index_prefix('t', "");
  lower.pop_back();
  std::string upper = lower;
  if (until) {
    upper += time_value(*until);
  } else {
    upper.back() = '\1';
  }
  std::string start = lower + time_value(since.value_or(std::numeric_limits<int64_t>::min()));
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions ro = base;
  ro.iterate_lower_bound = &lower_slice;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[kIndex]));
  std::vector<uint64_t> ids;
  const size_t key_size = lower.size() + 8 + 1 + 8;
  for (it->Seek(start); it->Valid(); it->Next()) {
    auto key = it->key();
    if (key.size() != key_size) continue;
    if (ids.size() >= kMaxTimeRangeIds) return nullptr;
    ids.push_back(load_be64(key.data() + key_size - 8));
  }
  if (!it->status().ok()) failure = from_rocks(it->status(), "walking the time index of " + path_);
  uint64_t weight = approximate_bytes(*db_, cf_[kIndex], rocksdb::Slice(start), upper_slice);
  return std::make_unique<ListCursor>(std::move(ids), reverse, weight);
}

Status RocksFlowStore::scan(const ScanOptions& options,
                            const std::function<bool(flow::Flow&)>& visit) {
  SnapshotGuard snapshot(db_.get(), snapshots());
  auto ro = read_options(snapshot);
  std::string host = ascii_lower(options.host);
  std::optional<std::string> status_key;
  if (options.status) status_key = status_value(*options.status);
  const bool time_range_set = options.since_ns || options.until_ns;

  auto matches = [&](const flow::Flow& f) {
    if (!options.session.empty() && f.session != options.session) return false;
    if (!options.run.empty() && f.run != options.run) return false;
    if (options.recorded_only && !f.run.empty()) return false;
    if (!host.empty() && !flow::iequals(f.request.host(), host)) return false;
    if (options.status && (!f.response || f.response->status != *options.status)) return false;
    if ((options.status_min || options.status_max) &&
        (!f.response || f.response->status < options.status_min.value_or(INT_MIN) ||
         f.response->status > options.status_max.value_or(INT_MAX)))
      return false;
    if (time_range_set) {
      int64_t t = start_ns(f);
      if (t == 0 || (options.since_ns && t < *options.since_ns) ||
          (options.until_ns && t >= *options.until_ns))
        return false;
    }
    if (options.method_test && !options.method_test(f.request.method)) return false;
    if (options.host_test) {
      FlowHosts hosts = flow_hosts(f);
      if (!options.host_test(hosts.authority) &&
          !(hosts.header && options.host_test(*hosts.header)))
        return false;
    }
    return true;
  };

  // Every condition an index answers becomes a stream of candidate ids.
  Status failure;
  std::vector<std::unique_ptr<IdCursor>> streams;
  auto index_stream = [&](char tag, std::string_view value) -> std::unique_ptr<IdCursor> {
    return std::make_unique<IndexCursor>(*db_, ro, cf_[kIndex], index_prefix(tag, value),
                                         options.reverse);
  };
  auto add_value = [&](char tag, std::string_view value) {
    streams.push_back(index_stream(tag, value));
  };
  if (!options.run.empty()) add_value('r', options.run);
  if (!options.session.empty()) {
    if (options.recorded_only) {
      add_value('s', options.session);
    } else {
      // Recordings and replayed flows (S exists from schema 3 on; before, it is empty).
      std::vector<std::unique_ptr<IdCursor>> both;
      for (char tag : {'s', 'S'}) both.push_back(index_stream(tag, options.session));
      streams.push_back(std::make_unique<UnionCursor>(std::move(both), options.reverse));
    }
  }
  if (!host.empty()) add_value('h', host);
  if (status_key) add_value('c', *status_key);
  if (!options.status && (options.status_min || options.status_max)) {
    int lo = std::max(0, options.status_min.value_or(0));
    int hi = std::min(0xffff, options.status_max.value_or(0xffff));
    if (lo > hi) return {};  // no status is in the range
    std::vector<std::string> values;
    if (list_values(ro, 'c', *status_value(lo), *status_value(hi), values, failure) &&
        values.size() <= kMaxValuesUnited) {
      std::vector<std::unique_ptr<IdCursor>> united;
      for (const auto& v : values)
        if (v.size() == 2) united.push_back(index_stream('c', v));
      streams.push_back(std::make_unique<UnionCursor>(std::move(united), options.reverse));
    }
    if (!failure) return failure;
  }
  // The tags below exist from schema 2 on; a reader of an older store checks flows instead.
  if (schema_version_ >= 2) {
    if (options.method_test) {
      if (auto u = value_union(ro, {'m'}, 'M', options.method_test, options.reverse, failure))
        streams.push_back(std::move(u));
      if (!failure) return failure;
    }
    if (options.host_test) {
      if (auto u = value_union(ro, {'h', 'd'}, 'D', options.host_test, options.reverse, failure))
        streams.push_back(std::move(u));
      if (!failure) return failure;
    }
    if (time_range_set) {
      if (options.since_ns && options.until_ns && *options.since_ns >= *options.until_ns) return {};
      if (auto l = time_range(ro, options.since_ns, options.until_ns, options.reverse, failure))
        streams.push_back(std::move(l));
      if (!failure) return failure;
    }
  }

  size_t visited = 0;
  // Checks one stored flow and hands it to visit; false stops the scan.
  auto consider = [&](uint64_t id, std::string_view value) {
    auto decoded = decode_flow(value, id);
    if (!decoded) {
      failure = decoded.status();
      return false;
    }
    auto& d = decoded.value();
    if (!matches(d.flow)) return true;
    if (options.with_bodies) {
      if (auto s = load_bodies(ro, id, d); !s) {
        failure = s;
        return false;
      }
    }
    ++visited;
    if (!visit(d.flow)) return false;
    return options.limit == 0 || visited < options.limit;
  };

  if (streams.empty()) {
    auto walked = walk_ids(ro, kFlows, "", options, [&](uint64_t id, rocksdb::Iterator& it) {
      return consider(id, std::string_view(it.value().data(), it.value().size()));
    });
    if (!walked) return walked;
    return failure;
  }

  drop_wide_streams(streams);
  std::unique_ptr<IdCursor> cursor = streams.size() == 1 ? std::move(streams.front())
                                                         : std::make_unique<IntersectionCursor>(
                                                               std::move(streams), options.reverse);
  uint64_t after = options.after_id;
  if (!options.reverse) {
    if (after == UINT64_MAX) return {};
    cursor->seek(after == 0 ? 0 : after + 1);
  } else {
    if (after == 1) return {};
    cursor->seek(after == 0 ? UINT64_MAX : after - 1);
  }
  rocksdb::PinnableSlice bytes;
  for (; cursor->valid(); cursor->next()) {
    uint64_t id = cursor->id();
    bytes.Reset();
    auto st = db_->Get(ro, cf_[kFlows], be64(id), &bytes);
    // An index entry whose flow is gone (removed since, or left by a damaged record).
    if (st.IsNotFound()) continue;
    if (!st.ok()) return from_rocks(st, "reading flow " + std::to_string(id));
    if (!consider(id, std::string_view(bytes.data(), bytes.size()))) break;
  }
  if (!failure) return failure;
  return cursor->status();
}

Result<uint64_t> RocksFlowStore::count(const ScanOptions& options) {
  int conditions = !options.run.empty() + !options.session.empty() + !options.host.empty() +
                   options.status.has_value();
  // Before schema 3, `s` also held replayed flows: recorded_only then needs the flows.
  bool others = options.status_min || options.status_max || options.since_ns || options.until_ns ||
                options.host_test || options.method_test ||
                (options.recorded_only && (options.session.empty() || schema_version_ < 3));
  std::optional<std::string> status_key;
  if (options.status) status_key = status_value(*options.status);
  if (conditions > 1 || others || (options.status && !status_key)) {
    uint64_t n = 0;
    ScanOptions o = options;
    o.with_bodies = false;
    auto s = scan(o, [&](const flow::Flow&) { return ++n, true; });
    if (!s) return s;
    return n;
  }
  // One condition or none: the keys alone answer (a session's: s, and S unless recorded_only).
  std::vector<std::string> prefixes;
  if (!options.run.empty()) {
    prefixes.push_back(index_prefix('r', options.run));
  } else if (!options.session.empty()) {
    prefixes.push_back(index_prefix('s', options.session));
    if (!options.recorded_only) prefixes.push_back(index_prefix('S', options.session));
  } else if (!options.host.empty()) {
    prefixes.push_back(index_prefix('h', ascii_lower(options.host)));
  } else if (status_key) {
    prefixes.push_back(index_prefix('c', *status_key));
  } else {
    prefixes.emplace_back();
  }
  SnapshotGuard snapshot(db_.get(), snapshots());
  uint64_t n = 0;
  for (const auto& prefix : prefixes) {
    if (options.limit != 0 && n >= options.limit) break;
    auto s = walk_ids(read_options(snapshot), prefix.empty() ? kFlows : kIndex, prefix, options,
                      [&](uint64_t, rocksdb::Iterator&) {
                        ++n;
                        return options.limit == 0 || n < options.limit;
                      });
    if (!s) return s;
  }
  return n;
}

Result<std::vector<SessionInfo>> RocksFlowStore::sessions() {
  std::vector<SessionInfo> out;
  auto s = [&]() -> Status {
    rocksdb::ReadOptions ro;
    std::string upper = kSessionPrefix;
    upper.back() = '\1';
    rocksdb::Slice upper_slice(upper);
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[kMeta]));
    for (it->Seek(kSessionPrefix); it->Valid(); it->Next()) {
      auto key = it->key();
      auto counters = decode_counters(std::string_view(it->value().data(), it->value().size()));
      std::string name(key.data() + kSessionPrefix.size(), key.size() - kSessionPrefix.size());
      if (!counters)
        return Status(Errc::corruption,
                      "store at " + path_ + " has unreadable counters for session '" + name + "'");
      out.push_back({std::move(name), counters->count, counters->first, counters->last});
    }
    if (!it->status().ok()) return from_rocks(it->status(), "listing sessions of " + path_);
    return {};
  }();
  if (!s) return s;
  return out;
}

Status RocksFlowStore::refresh() {
  if (!read_only_) return {};
  auto st = db_->TryCatchUpWithPrimary();
  if (!st.ok()) return from_rocks(st, "catching up with the writer of " + path_);
  // The writer may have created the store or upgraded its schema since.
  return check_version();
}

Status check_meta_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxMetaKeySize)
    return Status(Errc::invalid_argument,
                  "metadata keys are 1 to " + std::to_string(kMaxMetaKeySize) + " bytes");
  return {};
}

Status RocksFlowStore::put_meta(std::string_view key, std::string_view value) {
  if (auto s = writable(); !s) return s;
  if (auto s = check_meta_key(key); !s) return s;
  if (value.size() > kMaxMetaValueSize)
    return Status(Errc::invalid_argument,
                  "metadata values are at most " + std::to_string(kMaxMetaValueSize) + " bytes");
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  auto st = db_->Put(wo, cf_[kMeta], kUserPrefix + std::string(key),
                     rocksdb::Slice(value.data(), value.size()));
  if (!st.ok()) return from_rocks(st, "writing metadata to " + path_);
  return {};
}

Result<std::optional<std::string>> RocksFlowStore::get_meta(std::string_view key) {
  if (auto s = check_meta_key(key); !s) return s;
  std::string value;
  auto st = db_->Get({}, cf_[kMeta], kUserPrefix + std::string(key), &value);
  if (st.IsNotFound()) return std::optional<std::string>();
  if (!st.ok()) return from_rocks(st, "reading metadata of " + path_);
  return std::optional<std::string>(std::move(value));
}

Status RocksFlowStore::scan_meta(
    std::string_view prefix, const std::function<bool(std::string_view, std::string_view)>& visit) {
  std::string lower = kUserPrefix + std::string(prefix);
  std::string upper = kUserPrefix;
  upper.back() = '\1';
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[kMeta]));
  for (it->Seek(lower); it->Valid(); it->Next()) {
    std::string_view key(it->key().data(), it->key().size());
    if (key.substr(0, lower.size()) != lower) break;
    key.remove_prefix(kUserPrefix.size());
    if (!visit(key, std::string_view(it->value().data(), it->value().size()))) break;
  }
  if (!it->status().ok()) return from_rocks(it->status(), "scanning metadata of " + path_);
  return {};
}

Status RocksFlowStore::remove_meta(std::string_view key) {
  if (auto s = writable(); !s) return s;
  if (auto s = check_meta_key(key); !s) return s;
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  auto st = db_->Delete(wo, cf_[kMeta], kUserPrefix + std::string(key));
  if (!st.ok()) return from_rocks(st, "removing metadata from " + path_);
  return {};
}

Result<StoreStats> RocksFlowStore::stats() {
  StoreStats out;
  SnapshotGuard snapshot(db_.get(), snapshots());
  auto ro = read_options(snapshot);
  uint64_t* counters[kCfCount] = {&out.flows, &out.bodies, &out.index_entries, &out.meta_entries};
  for (int cf = 0; cf < kCfCount; ++cf) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[cf]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++*counters[cf];
      if (cf == kBodies) out.body_bytes += it->value().size();
    }
    if (!it->status().ok()) return from_rocks(it->status(), "counting keys of " + path_);
  }
  return out;
}

Status RocksFlowStore::write_raw(std::string_view cf_name, std::string_view key,
                                 std::optional<std::string_view> value) {
  if (auto s = writable(); !s) return s;
  for (int cf = 0; cf < kCfCount; ++cf) {
    if (cf_name != kCfNames[cf]) continue;
    rocksdb::Slice k(key.data(), key.size());
    auto st = value ? db_->Put({}, cf_[cf], k, rocksdb::Slice(value->data(), value->size()))
                    : db_->Delete({}, cf_[cf], k);
    if (!st.ok()) return from_rocks(st, "raw write");
    return {};
  }
  return Status(Errc::invalid_argument, "no column family '" + std::string(cf_name) + "'");
}

}  // namespace

Result<std::unique_ptr<FlowStore>> FlowStore::open(const StoreOptions& options) {
  if (options.path.empty())
    return Result<std::unique_ptr<FlowStore>>(Errc::invalid_argument, "store path is empty");
  std::error_code ec;
  bool exists = fs::exists(fs::path(options.path) / "CURRENT", ec);
  if (!exists && (options.read_only || !options.create_if_missing))
    return Result<std::unique_ptr<FlowStore>>(Errc::not_found, "no store at " + options.path);
  if (!options.read_only) {
    fs::create_directories(options.path, ec);
    if (ec)
      return Result<std::unique_ptr<FlowStore>>(
          Errc::io_error, "cannot create " + options.path + ": " + ec.message());
  }
  auto store = std::make_unique<RocksFlowStore>(options);
  if (auto s = store->open_db(exists); !s) return s;
  return std::unique_ptr<FlowStore>(std::move(store));
}

Result<uint64_t> FlowStore::put(flow::Flow& flow) {
  std::vector<flow::Flow> one;
  one.push_back(std::move(flow));
  auto ids = put(one);
  flow = std::move(one.front());
  if (!ids) return ids.status();
  return ids->front();
}

std::string default_db_path() {
  // No home at all (a bare container): a relative directory is the least surprising place.
  auto home = retake::retake_home();
  return ((home ? *home : std::filesystem::path(".retake")) / "db").string();
}

namespace testing {

Status write_raw(FlowStore& store, std::string_view column_family, std::string_view key,
                 std::string_view value) {
  auto* rocks = dynamic_cast<RocksFlowStore*>(&store);
  if (!rocks) return Status(Errc::invalid_argument, "not a RocksDB flow store");
  return rocks->write_raw(column_family, key, value);
}

Status remove_raw(FlowStore& store, std::string_view column_family, std::string_view key) {
  auto* rocks = dynamic_cast<RocksFlowStore*>(&store);
  if (!rocks) return Status(Errc::invalid_argument, "not a RocksDB flow store");
  return rocks->write_raw(column_family, key, std::nullopt);
}

std::string flow_key(uint64_t id) {
  return be64(id);
}

std::string schema_version_key() {
  return kVersionKey;
}

uint64_t streams_left_out() {
  return store::streams_left_out.load(std::memory_order_relaxed);
}

std::string index_key(char tag, std::string_view value, uint64_t id) {
  std::string key = index_prefix(tag, value);
  append_be64(key, id);
  return key;
}

}  // namespace testing

}  // namespace retake::store
