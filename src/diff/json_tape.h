// A compact, read-only JSON document for the comparator: one flat vector of nodes in document
// order (a "tape"), filled by Boost.JSON's SAX parser. Much cheaper to build than a DOM (no
// per-object hash tables, strings point into the source when they have no escapes), and
// subtrees are skipped in O(1) through `end`. Private to src/diff.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace retake::diff::tape {

enum class Kind : uint8_t {
  null,
  false_,
  true_,
  int64,
  uint64,
  double_,
  string,
  array,
  object,
  key
};

struct Node {
  const char* text = nullptr;  // string/key: unescaped content; number: its source text
  uint32_t len = 0;            // text length; for array/object: element/member count
  uint32_t end = 0;            // index just past this node's subtree
  Kind kind = Kind::null;

  std::string_view view() const { return {text, len}; }
  bool is_number() const {
    return kind == Kind::int64 || kind == Kind::uint64 || kind == Kind::double_;
  }
  bool is_bool() const { return kind == Kind::false_ || kind == Kind::true_; }
};

class Tape {
 public:
  // Parses `src`, which must outlive every use of the tape. Returns false for text that is not
  // exactly one JSON document, or nests deeper than max_depth. Reuses its memory across calls.
  bool parse(std::string_view src, size_t max_depth);

  const Node& operator[](uint32_t i) const { return nodes_[i]; }
  uint32_t size() const { return static_cast<uint32_t>(nodes_.size()); }

  // Internals for the SAX handler.
  std::vector<Node> nodes_;
  std::vector<uint32_t> open_;  // indexes of the containers being filled
  std::string part_;            // a string or key arriving in pieces
  std::vector<std::unique_ptr<char[]>> blocks_;
  size_t block_left_ = 0;
  char* block_next_ = nullptr;
  const char* src_begin_ = nullptr;
  const char* src_end_ = nullptr;
  const char* keep(std::string_view s);  // s itself when it lies in the source, else a copy
};

// The value of a number node as a double.
double number_value(const Node& n);
// Numerically equal (1 == 1.0, -0 == 0)?
bool numbers_equal(const Node& a, const Node& b);

// Compact JSON text of node i, at most `max` bytes (cut on a UTF-8 boundary, then "…").
std::string render(const Tape& t, uint32_t i, size_t max);
// Appends the JSON string literal for s.
void append_quoted(std::string& out, std::string_view s);

}  // namespace retake::diff::tape
