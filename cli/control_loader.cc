// The control API in the retake binary: RemoteFlows::connect, ..., Daemon::start load the
// control module (retake-control.so) once, on first use, and call into it. Commands that never
// talk to a daemon never load gRPC.
#include <dlfcn.h>

#include <filesystem>
#include <string>
#include <vector>

#include "control/module.h"

namespace retake::control {
namespace {

struct Loaded {
  const ControlApi* api = nullptr;
  Status error;
};

Loaded load() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    return {nullptr, Status(Errc::unavailable,
                            "the control module cannot be found: /proc/self/exe: " + ec.message())};
  // Beside the binary (the build tree), then an installed layout (bin/ and lib/retake/).
  std::vector<fs::path> candidates{exe.parent_path() / "retake-control.so",
                                   exe.parent_path() / ".." / "lib" / "retake" /
                                       "retake-control.so"};
  std::string looked;
  for (const auto& path : candidates) {
    if (!fs::exists(path, ec)) {
      looked += (looked.empty() ? "" : ", ") + path.lexically_normal().string();
      continue;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      return {nullptr, Status(Errc::unavailable,
                              "the control module " + path.string() + " does not load: " +
                                  (why ? why : "unknown error"))};
    }
    auto entry = reinterpret_cast<const ControlApi* (*)()>(dlsym(handle, "retake_control_api"));
    const ControlApi* api = entry ? entry() : nullptr;
    if (api == nullptr || !(api->abi == ControlAbi{}))
      return {nullptr, Status(Errc::unavailable,
                              "the control module " + path.string() +
                                  " was built from other sources than this retake binary; "
                                  "rebuild both")};
    return {api, Status()};
  }
  return {nullptr, Status(Errc::unavailable,
                          "the control module (gRPC) is missing: looked for " + looked +
                              "; it is built beside the retake binary")};
}

const Loaded& loaded() {
  static const Loaded once = load();  // thread-safe; a failure is reported to every caller
  return once;
}

// The module's entry `Member`, or the reason the module is not there.
template <auto Member, class Options>
auto through_module(const Options& options) -> decltype((ControlApi{}.*Member)(options)) {
  if (!loaded().api) return loaded().error;
  return (loaded().api->*Member)(options);
}

}  // namespace

Result<std::unique_ptr<RemoteFlows>> RemoteFlows::connect(const RemoteOptions& options) {
  return through_module<&ControlApi::remote_flows>(options);
}
Result<std::unique_ptr<RemoteRecorder>> RemoteRecorder::connect(const RemoteOptions& options) {
  return through_module<&ControlApi::remote_recorder>(options);
}
Result<std::unique_ptr<RemoteReplay>> RemoteReplay::connect(const RemoteOptions& options) {
  return through_module<&ControlApi::remote_replay>(options);
}
Result<std::unique_ptr<RemoteDiff>> RemoteDiff::connect(const RemoteOptions& options) {
  return through_module<&ControlApi::remote_diff>(options);
}
Result<std::unique_ptr<Daemon>> Daemon::start(const DaemonOptions& options) {
  return through_module<&ControlApi::start_daemon>(options);
}

}  // namespace retake::control
