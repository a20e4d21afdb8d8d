// retake::ops: the user-visible operations that both the CLI and the gRPC API reach (choosing
// flows with a filter, importing and exporting them). One implementation of each; the CLI and
// the control service only parse, call and print.
//
// Depends on store, query and interop; knows nothing of sockets or terminals.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "store/flow_store.h"

namespace retake::ops {

// Which flows to choose. Empty fields do not restrict.
struct Selection {
  // Only these flows (by id, in the order given); not_found names the first missing one.
  // Default: empty (no restriction).
  std::vector<uint64_t> ids{};
  // A filter expression in mitmproxy's language (src/query/filter.h). Default: "" (all flows).
  std::string filter;
  // Only flows of this session / run. Default: "".
  std::string session{};
  std::string run{};
  // Only recordings, not the flows replay runs added (store::ScanOptions::recorded_only).
  // Default: false.
  bool recorded_only = false;
  // Stop after this many matching flows. Default: 0 (no limit).
  size_t limit = 0;
  // Start strictly after this flow id (a paging cursor). Default: 0.
  uint64_t after_id = 0;
  // Newest first. Default: false.
  bool reverse = false;
  // Load body bytes. The filter loads them anyway when it needs them (~b ...). Default: false.
  bool with_bodies = false;
};

// Checks the selection without touching a store (parse_error pointing at the column for a bad
// filter), so a caller can report a usage error before opening anything.
Status validate(const Selection& selection);

// Calls visit for each chosen flow in id order (or reverse) until it returns false or the
// limit is reached; visit may move from the flow it is given. The filter is compiled once;
// the store's secondary indexes (session, run, status, time, host and method) are used where
// the expression forces them, and only then are flows decoded.
// Errors: parse_error (the message points at the column) for a bad filter; whatever the
// store reports (corruption, io_error).
Status select_flows(store::FlowStore& store, const Selection& selection,
                    const std::function<bool(flow::Flow&)>& visit);

}  // namespace retake::ops
