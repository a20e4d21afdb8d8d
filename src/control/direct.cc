// connect() and start() for programs that link the control library itself (tests, tools):
// straight to the gRPC implementations. The retake binary defines them in
// cli/control_loader.cc instead, through the control module.
#include "control/module.h"

namespace retake::control {

Result<std::unique_ptr<RemoteFlows>> RemoteFlows::connect(const RemoteOptions& options) {
  return grpc_remote_flows(options);
}
Result<std::unique_ptr<RemoteRecorder>> RemoteRecorder::connect(const RemoteOptions& options) {
  return grpc_remote_recorder(options);
}
Result<std::unique_ptr<RemoteReplay>> RemoteReplay::connect(const RemoteOptions& options) {
  return grpc_remote_replay(options);
}
Result<std::unique_ptr<RemoteDiff>> RemoteDiff::connect(const RemoteOptions& options) {
  return grpc_remote_diff(options);
}
Result<std::unique_ptr<Daemon>> Daemon::start(const DaemonOptions& options) {
  return grpc_start_daemon(options);
}

}  // namespace retake::control
