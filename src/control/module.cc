// retake-control.so: the gRPC control API as a module the retake binary loads on first use.
// Its code calls the rest of retake (store, ops, record, replay) in the binary, which exports
// its symbols for it (cli/CMakeLists.txt).
#include "control/module.h"

extern "C" __attribute__((visibility("default"))) const retake::control::ControlApi*
retake_control_api() {
  static const retake::control::ControlApi api = retake::control::control_api();
  return &api;
}
