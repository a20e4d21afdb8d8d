// retake::control client side: the operations of a daemon's Flows service as plain calls, so
// the CLI's `--remote HOST:PORT` reaches the same code (ops::select_flows, FlowStore) that
// runs locally without it, and prints what comes back with its usual code.
//
// Depends on flow, store (SessionInfo) and ops (Selection); gRPC types stay in client.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "ops/select.h"
#include "store/flow_store.h"

namespace retake::control {

struct RemoteOptions {
  // "HOST:PORT" of a `retake daemon`. Required.
  std::string address;
  // Bearer token sent with every call; "" for none. Default: "".
  std::string token;
  // Deadline of each call. Default: 30 s.
  int timeout_seconds = 30;
};

// A connection to a daemon's Flows service. Errors carry the project's codes mapped back from
// the gRPC status (NOT_FOUND -> not_found, ...; an unreachable daemon is `unavailable`) with the
// daemon's message. Thread-compatible.
class RemoteFlows {
 public:
  virtual ~RemoteFlows() = default;
  // Does not contact the daemon yet. invalid_argument for an empty address.
  static Result<std::unique_ptr<RemoteFlows>> connect(const RemoteOptions& options);

  // Like ops::select_flows, run by the daemon and fetched page by page (1000 per call). The
  // flows passed to visit carry only what a flow list shows: id, session, run, method,
  // scheme/authority/path, status, response size, duration, error; no headers or bodies.
  virtual Status select(const ops::Selection& selection,
                        const std::function<bool(const flow::Flow&)>& visit) = 0;
  // The complete flow.
  virtual Result<flow::Flow> get(uint64_t id, bool with_bodies = true) = 0;
  // All or nothing: not_found (naming the id) when one is unknown.
  virtual Status remove(const std::vector<uint64_t>& ids) = 0;
  virtual Result<std::vector<store::SessionInfo>> sessions() = 0;
};

}  // namespace retake::control
