#include "flow/status.h"

namespace retake {

const char* errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::already_exists: return "already_exists";
    case Errc::failed_precondition: return "failed_precondition";
    case Errc::corruption: return "corruption";
    case Errc::version_mismatch: return "version_mismatch";
    case Errc::io_error: return "io_error";
    case Errc::unavailable: return "unavailable";
    case Errc::timeout: return "timeout";
    case Errc::resource_exhausted: return "resource_exhausted";
    case Errc::parse_error: return "parse_error";
    case Errc::cancelled: return "cancelled";
    case Errc::internal: return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(errc_name(code_)) + ": " + message_;
}

}  // namespace retake
