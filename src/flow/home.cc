#include "flow/home.h"

#include <pwd.h>
#include <unistd.h>

#include <array>
#include <cstdlib>

namespace retake {

Result<std::filesystem::path> retake_home() {
  namespace fs = std::filesystem;
  if (const char* home = std::getenv("RETAKE_HOME"); home != nullptr && *home != '\0')
    return fs::path(home);
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return fs::path(home) / ".retake";
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::array<char, 16384> buf{};
  if (::getpwuid_r(::getuid(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr &&
      found->pw_dir != nullptr && *found->pw_dir != '\0')
    return fs::path(found->pw_dir) / ".retake";
  return Status(Errc::not_found, "neither RETAKE_HOME nor HOME is set and the user has no home");
}

}  // namespace retake
