// retake-control.so: the gRPC control API as a module the retake binary loads on first use.
// Its code calls the rest of retake (store, ops, record, replay) in the binary, which exports
// its symbols for it (cli/CMakeLists.txt).
#include "control/module.h"

extern "C" __attribute__((visibility("default"))) const retake::control::ControlApi*
retake_control_api() {
  using namespace retake::control;
  static const ControlApi api{ControlAbi{},        &grpc_remote_flows, &grpc_remote_recorder,
                              &grpc_remote_replay, &grpc_remote_diff,  &grpc_start_daemon};
  return &api;
}
