#include "replay/client/run_store.h"

#include <algorithm>

namespace retake::replay {

Result<std::vector<flow::Flow>> select_flows(
    store::FlowStore& store, const std::string& session, const std::vector<uint64_t>& ids,
    const std::function<bool(const flow::Flow&)>& predicate, size_t limit) {
  std::vector<flow::Flow> out;
  bool too_many = false;
  if (!session.empty()) {
    store::ScanOptions scan;
    scan.session = session;
    scan.recorded_only = true;  // replayed flows are not recordings
    // The index keys alone count them: one allocation instead of a flow-moving regrowth.
    if (auto n = store.count(scan); n.ok()) out.reserve(std::min<uint64_t>(*n, limit));
    auto st = store.scan(scan, [&](flow::Flow& f) {
      if (predicate && !predicate(f)) return true;
      if (out.size() >= limit) {
        too_many = true;
        return false;
      }
      out.push_back(std::move(f));
      return true;
    });
    if (!st.ok()) return st;
    if (too_many)
      return Status(Errc::resource_exhausted, "session '" + session + "' has more than " +
                                                  std::to_string(limit) + " flows to replay");
    if (out.empty()) {
      auto sessions = store.sessions();
      bool exists = false;
      if (sessions.ok())
        for (const auto& s : *sessions) exists = exists || s.name == session;
      return Status(Errc::not_found, exists
                                         ? "session '" + session + "' has no flows to replay"
                                         : "no session named '" + session + "' in " + store.path());
    }
  }
  for (uint64_t id : ids) {
    auto f = store.get(id);
    if (!f.ok()) {
      if (f.status().code() == Errc::not_found)
        return Status(Errc::not_found,
                      "no flow with id " + std::to_string(id) + " in " + store.path());
      return f.status();
    }
    if (predicate && !predicate(*f)) continue;
    out.push_back(std::move(*f));
  }
  return out;
}

Status save_run(store::FlowStore& store, const RunSummary& summary) {
  return store.put_meta(std::string(kRunMetaPrefix) + summary.run_id, run_summary_json(summary));
}

Result<std::vector<RunSummary>> list_runs(store::FlowStore& store, const std::string& session) {
  std::vector<RunSummary> out;
  Status bad;
  auto st = store.scan_meta(kRunMetaPrefix, [&](std::string_view key, std::string_view value) {
    auto run = parse_run_summary_json(value);
    if (!run) {
      bad = Status(Errc::corruption, "run metadata '" + std::string(key) + "': " +
                                         run.status().message());
      return false;
    }
    if (session.empty() || run->session == session) out.push_back(std::move(*run));
    return out.size() < 100'000;
  });
  if (!st.ok()) return st;
  if (!bad.ok()) return bad;
  return out;
}

}  // namespace retake::replay
