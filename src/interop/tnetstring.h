// Internal to src/interop: a bounded parser for tnetstrings as mitmproxy writes them
// (mitmproxy/io/tnetstring.py): `<length>:<payload><type>` with types ',' bytes, ';' text,
// '#' integer, '^' float, '!' boolean, '~' null, ']' list, '}' dict.
//
// The input is untrusted: lengths are checked against the remaining bytes before anything is
// read, nesting depth and the number of values are bounded, and every error names the byte
// offset where the bad element starts. Values point into the input (no copies): the input must
// outlive them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace retake::interop::detail {

struct TValue {
  enum class Type : uint8_t { bytes, text, integer, floating, boolean, null, list, dict };
  Type type = Type::null;
  size_t offset = 0;      // where this element starts in the whole input
  std::string_view data;  // bytes/text payload
  int64_t integer = 0;
  double floating = 0;
  bool boolean = false;
  std::vector<TValue> items;           // list elements, or dict values
  std::vector<std::string_view> keys;  // dict keys (bytes or text), parallel to items

  // The dict value for `key`, or nullptr (also when this is not a dict).
  const TValue* find(std::string_view key) const;
  bool is_text() const { return type == Type::bytes || type == Type::text; }
};

const char* tvalue_type_name(TValue::Type type);

struct TLimits {
  size_t max_depth = 64;
  size_t max_values = 4'000'000;  // per top-level record
};

// Reads the framing of one element at `pos`: its payload [begin, end) and type char. Throws
// BadInput("byte N", ...) when the length prefix is malformed or runs past the input.
struct TFrame {
  size_t begin = 0;
  size_t end = 0;  // payload end; the type char is at `end`
  char type = 0;
};
TFrame read_tnetstring_frame(std::string_view input, size_t pos);

// Parses one complete element starting at `pos` (its frame must lie inside `input`).
// Throws BadInput("byte N", ...) on any malformed element.
TValue parse_tnetstring(std::string_view input, size_t pos, const TLimits& limits);

}  // namespace retake::interop::detail
