// Private helpers shared by the src/diff translation units. Not a public header.
#pragma once

#include <boost/json/value.hpp>

#include <string>
#include <string_view>

#include "diff/diff.h"

namespace retake::diff {

// Is v epoch seconds or milliseconds inside the options' window?
bool is_epoch_value(double v, const CompareOptions& options);

// Compact JSON text of v, at most `max` bytes (cut on a UTF-8 boundary, then "…").
std::string render_json_value(const boost::json::value& v, size_t max);
// s cut to at most `max` bytes on a UTF-8 boundary, plus "…" when cut.
std::string truncate_utf8(std::string_view s, size_t max);

// Lowercase hex SHA-256 of data.
std::string sha256_hex(std::string_view data);

// The media type of a Content-Type value, lowercase, without parameters.
std::string media_type(std::string_view content_type);
bool is_json_media(std::string_view media);
bool is_text_media(std::string_view media);

}  // namespace retake::diff
