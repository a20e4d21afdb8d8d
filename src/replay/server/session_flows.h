// retake::replay::server session loading: the flows a server replay answers from, read once
// from the store at start (lookups never touch disk afterwards).
//
// The one place server replay depends on src/store and src/query; the matcher and the server
// take a plain vector of flows.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "query/filter.h"
#include "replay/server/server_replay.h"
#include "store/flow_store.h"

namespace retake::replay::server {

// Most flows one server replay loads. Default bound of load_session_flows.
inline constexpr size_t kMaxServedFlows = 1'000'000;

// The recorded flows of `session` in recorded order, keeping those `filter` matches (null:
// all). Flows of client replay runs (Flow::run set) are left out: they were not recorded from
// the server being mocked.
// Errors: not_found when the store has no such session (the message lists up to 5 that exist);
// failed_precondition when the session (or what the filter keeps of it) has no flow with a
// response; resource_exhausted past `max_flows`; store errors as the store reports them.
Result<std::vector<flow::Flow>> load_session_flows(store::FlowStore& store,
                                                   const std::string& session,
                                                   const query::Filter* filter = nullptr,
                                                   size_t max_flows = kMaxServedFlows);

// load_session_flows then ServerReplay::create: a server replay of one session, not started
// (call start() for the bound address). For tests and embedders; the store may be closed after.
Result<std::unique_ptr<ServerReplay>> serve_session(store::FlowStore& store,
                                                    const std::string& session,
                                                    ServeOptions options = {},
                                                    const query::Filter* filter = nullptr);

}  // namespace retake::replay::server
