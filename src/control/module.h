// The control API's entry points as one table. The `retake` binary does not link gRPC: it
// loads them from its control module (retake-control.so, beside the binary) the first time a
// command needs the daemon or a remote one (cli/control_loader.cc), so every other command
// starts without gRPC, protobuf and their ~45 libraries (start-up time and memory). Tests and
// other programs link retake_control, whose connect()/start() call these functions directly
// (direct.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "control/client.h"
#include "control/daemon.h"
#include "flow/status.h"

namespace retake::control {

// The gRPC implementations behind RemoteFlows::connect, ..., Daemon::start.
Result<std::unique_ptr<RemoteFlows>> grpc_remote_flows(const RemoteOptions& options);
Result<std::unique_ptr<RemoteRecorder>> grpc_remote_recorder(const RemoteOptions& options);
Result<std::unique_ptr<RemoteReplay>> grpc_remote_replay(const RemoteOptions& options);
Result<std::unique_ptr<RemoteDiff>> grpc_remote_diff(const RemoteOptions& options);
Result<std::unique_ptr<Daemon>> grpc_start_daemon(const DaemonOptions& options);

// Bumped whenever the table or a type crossing it changes shape.
inline constexpr uint32_t kControlAbi = 1;

// What the binary and the module must agree on: the ABI number and layout fingerprints, so a
// module built from other sources is refused instead of misreading the options it is handed.
// Computed on both sides without naming the module's functions, which the binary lacks.
struct ControlAbi {
  uint32_t abi = kControlAbi;
  size_t remote_options_size = sizeof(RemoteOptions);
  size_t daemon_options_size = sizeof(DaemonOptions);
  size_t replay_request_size = sizeof(ops::ReplayRequest);
  size_t flow_size = sizeof(flow::Flow);
  bool operator==(const ControlAbi&) const = default;
};

struct ControlApi {
  ControlAbi abi;
  Result<std::unique_ptr<RemoteFlows>> (*remote_flows)(const RemoteOptions&);
  Result<std::unique_ptr<RemoteRecorder>> (*remote_recorder)(const RemoteOptions&);
  Result<std::unique_ptr<RemoteReplay>> (*remote_replay)(const RemoteOptions&);
  Result<std::unique_ptr<RemoteDiff>> (*remote_diff)(const RemoteOptions&);
  Result<std::unique_ptr<Daemon>> (*start_daemon)(const DaemonOptions&);
};

}  // namespace retake::control

// The module's one exported symbol.
extern "C" const retake::control::ControlApi* retake_control_api();
