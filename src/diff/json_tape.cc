#include "diff/json_tape.h"

#include <boost/json/basic_parser_impl.hpp>

#include <charconv>
#include <cstring>
#include <functional>

#include "diff/internal.h"

namespace retake::diff::tape {

namespace json = boost::json;

namespace {

constexpr size_t kBlock = 64 * 1024;

struct Handler {
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  Tape& t;

  void push(Kind kind, std::string_view text = {}) {
    Node n;
    n.kind = kind;
    n.text = text.empty() ? nullptr : t.keep(text);
    n.len = static_cast<uint32_t>(text.size());
    n.end = static_cast<uint32_t>(t.nodes_.size() + 1);
    t.nodes_.push_back(n);
  }
  void open(Kind kind) {
    t.open_.push_back(static_cast<uint32_t>(t.nodes_.size()));
    Node n;
    n.kind = kind;
    t.nodes_.push_back(n);
  }
  void close(std::size_t count) {
    auto& n = t.nodes_[t.open_.back()];
    n.len = static_cast<uint32_t>(count);
    n.end = static_cast<uint32_t>(t.nodes_.size());
    t.open_.pop_back();
  }
  // A string or key, possibly completed from earlier pieces.
  void text(Kind kind, json::string_view s) {
    if (t.part_.empty()) return push(kind, {s.data(), s.size()});
    t.part_.append(s.data(), s.size());
    push(kind, t.part_);
    t.part_.clear();
  }

  bool on_document_begin(std::error_code&) { return true; }
  bool on_document_end(std::error_code&) { return true; }
  bool on_object_begin(std::error_code&) { return open(Kind::object), true; }
  bool on_object_end(std::size_t n, std::error_code&) { return close(n), true; }
  bool on_array_begin(std::error_code&) { return open(Kind::array), true; }
  bool on_array_end(std::size_t n, std::error_code&) { return close(n), true; }
  bool on_key_part(json::string_view s, std::size_t, std::error_code&) {
    t.part_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, std::error_code&) {
    return text(Kind::key, s), true;
  }
  bool on_string_part(json::string_view s, std::size_t, std::error_code&) {
    t.part_.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t, std::error_code&) {
    return text(Kind::string, s), true;
  }
  bool on_number_part(json::string_view s, std::error_code&) {
    t.part_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t, json::string_view s, std::error_code&) {
    return text(Kind::int64, s), true;
  }
  bool on_uint64(std::uint64_t, json::string_view s, std::error_code&) {
    return text(Kind::uint64, s), true;
  }
  bool on_double(double, json::string_view s, std::error_code&) {
    return text(Kind::double_, s), true;
  }
  bool on_bool(bool b, std::error_code&) { return push(b ? Kind::true_ : Kind::false_), true; }
  bool on_null(std::error_code&) { return push(Kind::null), true; }
  bool on_comment_part(json::string_view, std::error_code&) { return true; }
  bool on_comment(json::string_view, std::error_code&) { return true; }
};

}  // namespace

const char* Tape::keep(std::string_view s) {
  if (std::greater_equal<const char*>()(s.data(), src_begin_) &&
      std::less_equal<const char*>()(s.data() + s.size(), src_end_))
    return s.data();
  if (block_left_ < s.size()) {
    size_t size = std::max(kBlock, s.size());
    blocks_.push_back(std::make_unique<char[]>(size));
    block_next_ = blocks_.back().get();
    block_left_ = size;
  }
  char* out = block_next_;
  std::memcpy(out, s.data(), s.size());
  block_next_ += s.size();
  block_left_ -= s.size();
  return out;
}

bool Tape::parse(std::string_view src, size_t max_depth) {
  nodes_.clear();
  open_.clear();
  part_.clear();
  blocks_.clear();
  block_left_ = 0;
  block_next_ = nullptr;
  src_begin_ = src.data();
  src_end_ = src.data() + src.size();
  // A rough guess that avoids most regrowth: one node per ~8 bytes of typical API JSON.
  if (nodes_.capacity() < src.size() / 8) nodes_.reserve(src.size() / 8);
  json::parse_options po;
  po.max_depth = max_depth;
  json::basic_parser<Handler> p(po, Handler{*this});
  std::error_code ec;
  size_t used = p.write_some(false, src.data(), src.size(), ec);
  return !ec && used == src.size() && p.done();
}

double number_value(const Node& n) {
  double v = 0;
  std::from_chars(n.text, n.text + n.len, v);
  return v;
}

bool numbers_equal(const Node& a, const Node& b) {
  if (a.view() == b.view()) return true;
  if (a.kind != Kind::double_ && b.kind != Kind::double_) {
    // Two integers with different text: only equal when one is written oddly ("-0", "0").
    if (a.kind == b.kind) {
      if (a.kind == Kind::int64) {
        int64_t x = 0, y = 0;
        std::from_chars(a.text, a.text + a.len, x);
        std::from_chars(b.text, b.text + b.len, y);
        return x == y;
      }
      return false;  // uint64 texts differ: values differ
    }
    return false;  // an int64 and a uint64 (> INT64_MAX) are never equal
  }
  return number_value(a) == number_value(b);
}

void append_quoted(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      switch (c) {
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 15];
      }
    } else {
      out += c;
    }
  }
  out += '"';
}

namespace {
// Writes node i; stops early once out exceeds limit. Returns the index past the subtree.
uint32_t render_rec(const Tape& t, uint32_t i, size_t limit, std::string& out) {
  const Node& n = t[i];
  if (out.size() > limit) return n.end;
  switch (n.kind) {
    case Kind::null:
      out += "null";
      break;
    case Kind::false_:
      out += "false";
      break;
    case Kind::true_:
      out += "true";
      break;
    case Kind::int64:
    case Kind::uint64:
    case Kind::double_:
      out += n.view();
      break;
    case Kind::string:
    case Kind::key:
      append_quoted(out, n.view());
      break;
    case Kind::array: {
      out += '[';
      uint32_t c = i + 1;
      for (uint32_t k = 0; k < n.len && out.size() <= limit; ++k) {
        if (k) out += ',';
        c = render_rec(t, c, limit, out);
      }
      out += ']';
      break;
    }
    case Kind::object: {
      out += '{';
      uint32_t c = i + 1;
      for (uint32_t k = 0; k < n.len && out.size() <= limit; ++k) {
        if (k) out += ',';
        append_quoted(out, t[c].view());
        out += ':';
        c = render_rec(t, c + 1, limit, out);
      }
      out += '}';
      break;
    }
  }
  return n.end;
}
}  // namespace

std::string render(const Tape& t, uint32_t i, size_t max) {
  std::string out;
  render_rec(t, i, max, out);
  return out.size() > max ? truncate_utf8(out, max) : out;
}

}  // namespace retake::diff::tape
