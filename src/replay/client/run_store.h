// retake::replay run persistence: choosing recorded flows from the store and keeping a run's
// metadata in the store's meta API (key "replay/run/<run id>", value run_summary_json) so runs
// can be listed. The replayed flows themselves reach the store through store::FlowWriter.
//
// Depends on src/store and the client replay types; no I/O of its own.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "flow/status.h"
#include "replay/client/client_replay.h"
#include "store/flow_store.h"

namespace retake::replay {

inline constexpr std::string_view kRunMetaPrefix = "replay/run/";
// Most flows one replay loads. Default bound for select_flows.
inline constexpr size_t kMaxReplayFlows = 1'000'000;

// The recorded flows of `session` (when non-empty) plus the flows named in `ids`, filtered by
// `predicate` (the filter language's hook; null: all), in id order. Errors: not_found naming the
// session when it has no flows or naming an id that is not stored; resource_exhausted past
// `limit` flows.
Result<std::vector<flow::Flow>> select_flows(
    store::FlowStore& store, const std::string& session, const std::vector<uint64_t>& ids,
    const std::function<bool(const flow::Flow&)>& predicate = nullptr,
    size_t limit = kMaxReplayFlows);

// Writes the run's metadata under kRunMetaPrefix + run id.
Status save_run(store::FlowStore& store, const RunSummary& summary);

// Every stored run's metadata, by run id order (which is start time order); only the runs of
// `session` when it is not empty. corruption naming the key when a stored entry cannot be read.
Result<std::vector<RunSummary>> list_runs(store::FlowStore& store, const std::string& session = "");

}  // namespace retake::replay
