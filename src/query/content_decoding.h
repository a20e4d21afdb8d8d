// Internal to src/query: undoing Content-Encoding so ~b searches what a person would read.
// Bounded: output stops at a cap, so a decompression bomb costs at most the cap.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace retake::query {

// Decodes `data` encoded with the Content-Encoding header value `encoding` ("gzip", "br",
// "deflate", "zstd", "x-gzip", "identity", or a comma list applied in order) into `out`, keeping
// at most `cap` bytes. Returns false (and leaves `out` unspecified) when an encoding is unknown
// or nothing could be decoded; a stream that breaks off (a truncated body) yields what decoded
// before the break and counts as success.
bool decode_content(std::string_view encoding, std::string_view data, size_t cap, std::string& out);

}  // namespace retake::query
