// Internal to src/interop: reading untrusted JSON with Boost.JSON. Parsing is bounded (depth,
// size) and reports the byte offset of a syntax error; JsonAt walks a parsed document while
// carrying the path ("log.entries[3].response.status") that every error message names.
#pragma once

#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "flow/status.h"
#include "interop/codec.h"
#include "interop/interop.h"

namespace retake::interop::detail {

namespace json = boost::json;

// Depth-bounded parse; invalid UTF-8 inside strings is kept as bytes (tools write it).
// Errors: parse_error "JSON syntax error at byte N (line L, column C): <reason>".
// The parsed document may take at most `max_memory` bytes (0: 64 MiB + 8 x the input size);
// past that: resource_exhausted.
Result<json::value> parse_json(std::string_view bytes, size_t max_depth, uint64_t max_memory = 0);

// What every JSON importer does first: refuse input over options.max_input_bytes
// (resource_exhausted), drop a UTF-8 byte-order mark, and parse_json with the options' bounds.
Result<json::value> parse_import_json(std::string_view bytes, const ImportOptions& options);

// A value with its path. Accessors throw BadInput naming the path when the type is wrong.
class JsonAt {
 public:
  JsonAt(const json::value& value, std::string path) : value_(&value), path_(std::move(path)) {}

  const json::value& value() const { return *value_; }
  const std::string& path() const { return path_; }

  [[noreturn]] void fail(const std::string& message) const { throw BadInput(path_, message); }

  bool is_null() const { return value_->is_null(); }
  const json::object& object() const;
  const json::array& array() const;
  std::string_view string() const;
  int64_t integer() const;  // a number with no fraction (or one that rounds exactly)
  double number() const;
  bool boolean() const;

  // Required member (missing or null is an error).
  JsonAt get(std::string_view key) const;
  // Optional member: nullopt when missing or null.
  std::optional<JsonAt> find(std::string_view key) const;
  JsonAt at(size_t index) const;

  // Conveniences for optional members with defaults.
  std::string string_or(std::string_view key, std::string_view fallback) const;
  double number_or(std::string_view key, double fallback) const;
  int64_t integer_or(std::string_view key, int64_t fallback) const;
  bool boolean_or(std::string_view key, bool fallback) const;

 private:
  const json::value* value_;
  std::string path_;
};

// A bytes field written by bytes_value: a string, or {"base64": "..."}.
std::string read_bytes(const JsonAt& at);
json::value bytes_value(std::string_view bytes);

}  // namespace retake::interop::detail
