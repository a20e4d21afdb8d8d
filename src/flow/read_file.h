// retake::read_small_file: the whole of a small text file a person names (a rules file), read
// with a size bound so that a wrong path (a disk image, /dev/zero) cannot take the memory.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "flow/status.h"

namespace retake {

// The file's bytes. not_found "<what> <path> cannot be opened"; resource_exhausted "<what>
// <path> is larger than <N> MiB" when it does not end within `max_bytes` (a whole number of
// MiB).
Result<std::string> read_small_file(const std::string& path, size_t max_bytes,
                                    std::string_view what);

}  // namespace retake
