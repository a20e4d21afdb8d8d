#include "interop/tnetstring.h"

#include <charconv>
#include <cmath>
#include <string>

#include "interop/codec.h"

namespace retake::interop::detail {

namespace {

// mitmproxy's writer never needs more than 12 digits (< 1 TB); longer prefixes are hostile.
constexpr size_t kMaxLengthDigits = 12;

[[noreturn]] void fail_at(size_t offset, const std::string& message) {
  throw BadInput("byte " + std::to_string(offset), message);
}

class Parser {
 public:
  Parser(std::string_view input, const TLimits& limits) : in_(input), limits_(limits) {}

  TValue parse(size_t pos, size_t depth) {
    if (depth > limits_.max_depth)
      fail_at(pos, "nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    if (++values_ > limits_.max_values)
      fail_at(pos, "more than " + std::to_string(limits_.max_values) + " values in one record");
    TFrame frame = read_tnetstring_frame(in_, pos);
    TValue v;
    v.offset = pos;
    std::string_view payload = in_.substr(frame.begin, frame.end - frame.begin);
    switch (frame.type) {
      case ',':
        v.type = TValue::Type::bytes;
        v.data = payload;
        break;
      case ';':
        v.type = TValue::Type::text;
        v.data = payload;
        break;
      case '#': {
        v.type = TValue::Type::integer;
        auto first = payload.data(), last = payload.data() + payload.size();
        if (!payload.empty() && *first == '+') ++first;
        auto [p, ec] = std::from_chars(first, last, v.integer);
        if (payload.empty() || ec != std::errc() || p != last)
          fail_at(pos, "bad integer \"" + std::string(payload.substr(0, 32)) + "\"");
        break;
      }
      case '^': {
        v.type = TValue::Type::floating;
        auto first = payload.data(), last = payload.data() + payload.size();
        if (!payload.empty() && *first == '+') ++first;
        auto [p, ec] = std::from_chars(first, last, v.floating);
        if (payload.empty() || ec != std::errc() || p != last || !std::isfinite(v.floating))
          fail_at(pos, "bad float \"" + std::string(payload.substr(0, 32)) + "\"");
        break;
      }
      case '!':
        v.type = TValue::Type::boolean;
        if (payload == "true")
          v.boolean = true;
        else if (payload == "false")
          v.boolean = false;
        else
          fail_at(pos, "bad boolean \"" + std::string(payload.substr(0, 32)) + "\"");
        break;
      case '~':
        v.type = TValue::Type::null;
        if (!payload.empty()) fail_at(pos, "null with a payload");
        break;
      case ']': {
        v.type = TValue::Type::list;
        size_t p = frame.begin;
        while (p < frame.end) {
          auto item = parse_within(p, frame.end, depth + 1);
          p = item.second;
          v.items.push_back(std::move(item.first));
        }
        break;
      }
      case '}': {
        v.type = TValue::Type::dict;
        size_t p = frame.begin;
        while (p < frame.end) {
          auto key = parse_within(p, frame.end, depth + 1);
          if (!key.first.is_text())
            fail_at(p, std::string("dict key is ") + tvalue_type_name(key.first.type) +
                           ", not bytes or text");
          if (key.second >= frame.end) fail_at(p, "dict key without a value");
          auto value = parse_within(key.second, frame.end, depth + 1);
          v.keys.push_back(key.first.data);
          v.items.push_back(std::move(value.first));
          p = value.second;
        }
        break;
      }
      default:
        fail_at(frame.end, std::string("unknown type tag '") +
                               (frame.type >= 32 && frame.type < 127 ? std::string(1, frame.type)
                                                                     : std::string("\\x??")) +
                               "'");
    }
    return v;
  }

 private:
  // Parses an element that must end at or before `limit` (its container's payload end).
  std::pair<TValue, size_t> parse_within(size_t pos, size_t limit, size_t depth) {
    TFrame frame = read_tnetstring_frame(in_.substr(0, limit), pos);
    auto v = parse(pos, depth);
    return {std::move(v), frame.end + 1};
  }

  std::string_view in_;
  const TLimits& limits_;
  size_t values_ = 0;
};

}  // namespace

const TValue* TValue::find(std::string_view key) const {
  if (type != Type::dict) return nullptr;
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i] == key) return &items[i];
  return nullptr;
}

const char* tvalue_type_name(TValue::Type type) {
  switch (type) {
    case TValue::Type::bytes:
      return "bytes";
    case TValue::Type::text:
      return "text";
    case TValue::Type::integer:
      return "an integer";
    case TValue::Type::floating:
      return "a float";
    case TValue::Type::boolean:
      return "a boolean";
    case TValue::Type::null:
      return "null";
    case TValue::Type::list:
      return "a list";
    case TValue::Type::dict:
      return "a dict";
  }
  return "?";
}

TFrame read_tnetstring_frame(std::string_view input, size_t pos) {
  size_t p = pos;
  uint64_t length = 0;
  size_t digits = 0;
  while (p < input.size() && input[p] >= '0' && input[p] <= '9') {
    if (++digits > kMaxLengthDigits)
      fail_at(pos, "length prefix longer than " + std::to_string(kMaxLengthDigits) + " digits");
    length = length * 10 + static_cast<uint64_t>(input[p] - '0');
    ++p;
  }
  if (p >= input.size()) {
    if (digits == 0) fail_at(pos, "expected a tnetstring, found the end of the data");
    fail_at(pos, "truncated: the length prefix is not followed by ':'");
  }
  if (digits == 0) fail_at(pos, "expected a tnetstring length, found a non-digit");
  if (input[p] != ':') fail_at(p, "expected ':' after the length prefix");
  ++p;
  // The payload plus its type character must fit in what is left.
  if (length >= input.size() - p)
    fail_at(pos, "length " + std::to_string(length) + " runs past the end of the data (" +
                     std::to_string(input.size() - p) + " bytes left)");
  TFrame frame;
  frame.begin = p;
  frame.end = p + static_cast<size_t>(length);
  frame.type = input[frame.end];
  return frame;
}

TValue parse_tnetstring(std::string_view input, size_t pos, const TLimits& limits) {
  Parser parser(input, limits);
  return parser.parse(pos, 1);
}

}  // namespace retake::interop::detail
