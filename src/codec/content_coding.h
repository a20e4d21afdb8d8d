// retake::codec content coding: decode and encode HTTP Content-Encoding (gzip, x-gzip, deflate,
// br, zstd, identity, and stacked lists such as "gzip, br").
//
// The one implementation shared by the diff engine (bodies are compared decoded), the filter
// language (~b searches decoded bodies), replay mutations (decode, mutate, re-encode) and the
// server-replay matcher. Pure: bytes in, bytes out; no I/O. Depends on
// src/flow (Status/Result); zlib, brotli and zstd stay out of this header.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "flow/status.h"

namespace retake::codec {

struct CodingLimits {
  // Most bytes any decoding step may produce; more is Errc::resource_exhausted (a
  // decompression bomb is an error, never an out-of-memory). Default: 64 MiB.
  size_t max_output = size_t{64} << 20;
  // Most codings in one Content-Encoding list. Default: 4.
  size_t max_layers = 4;
  // Best effort for reading what was recorded (a body stored truncated at the body cap, a
  // stream that breaks off): output past max_output is cut off instead of failing, and a
  // truncated or corrupt stream yields what decoded before the break. Still an error when
  // nothing at all decoded. Default: false (strict, for comparing and re-encoding).
  bool partial = false;
};

// The codings of a Content-Encoding value, lowercased, in the order they were applied
// ("gzip, br" -> {"gzip", "br"}); "identity" and empty entries are dropped.
std::vector<std::string> parse_content_encoding(std::string_view content_encoding);

// Does this implementation know every coding listed?
bool is_supported_content_encoding(std::string_view content_encoding);

// Undoes `content_encoding` (the header value; "" or "identity" return the data unchanged).
// Codings are undone last-applied first. `deflate` accepts both the zlib format (RFC 9110) and
// raw deflate (what some servers send). gzip accepts concatenated members.
// Errors: invalid_argument for an unknown coding or too many layers; corruption for bytes that
// do not decode (including a truncated stream); resource_exhausted past limits.max_output.
Result<std::string> decode_content(std::string_view data, std::string_view content_encoding,
                                   const CodingLimits& limits = {});

// Applies `content_encoding` in order (first listed, first applied), so that
// decode_content(encode_content(x, ce), ce) == x. `deflate` produces the zlib format.
// Errors: invalid_argument for an unknown coding or too many layers.
Result<std::string> encode_content(std::string_view data, std::string_view content_encoding,
                                   const CodingLimits& limits = {});

}  // namespace retake::codec
