// retake::diff JSON paths: the ONE path syntax of the project, shared by the diff engine
// (differences, ignore rules, normalizer scopes), replay mutations (set/remove a field) and the
// server-replay matcher (select a field).
//
// Syntax (a subset of JSONPath, parsed once into a JsonPath):
//   $                 the root
//   $.a.b             member "a", then its member "b" (names: letters, digits, '_', '-', '$',
//                     and UTF-8 bytes; anything else needs the bracket form)
//   $['weird key']    member by quoted name ('...' or "..."; \\ \' \" escapes)
//   $.items[0]        array element 0
//   $.items[*].ts     any element (or any member) of "items", then its member "ts"
//   $.a.*             any member (or element) of "a"
//   $..id             recursive descent: "id" at any depth below (including directly under) here
// A concrete path (what a difference points at) renders canonically: `$.items[3].ts`,
// `$['a b']`, with the dot form only for names matching [A-Za-z_][A-Za-z0-9_]*.
//
// Depends on src/flow (Status/Result) and Boost.JSON only; no I/O.
#pragma once

#include <boost/json/value.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flow/status.h"

namespace retake::diff {

// One step of a concrete path: a member name or an array index. Non-owning: `key` points into
// the document (or a caller's string) and must outlive the element. Used transiently for
// matching and rendering.
struct PathElem {
  std::string_view key;
  size_t index = 0;
  bool is_index = false;

  static PathElem member(std::string_view k) { return {k, 0, false}; }
  static PathElem element(size_t i) { return {{}, i, true}; }
};

// How a concrete path is rendered: `$.items[3].ts`, `$['a b']`.
std::string render_path(std::span<const PathElem> path);
// Appends the rendering of one step to `out` (for building paths incrementally).
void append_path_elem(std::string& out, const PathElem& elem);
// The same path with every array index replaced by [*] (`$.items[*].ts`): the form the noise
// model and reports group by.
std::string render_path_generalized(std::span<const PathElem> path);

// A parsed path pattern. Immutable after parse; cheap to copy; thread-safe to share.
class JsonPath {
 public:
  enum class StepKind : uint8_t {
    member,    // a literal member name
    index,     // a literal array index
    wildcard,  // any member or element: `.*` or `[*]`
  };
  struct Step {
    StepKind kind = StepKind::member;
    bool descendant = false;  // preceded by `..`: matches at any depth (zero or more levels)
    std::string name;         // for member
    size_t index = 0;         // for index
  };

  // Parses `text`. Errors are Errc::parse_error with a message naming the 1-based column, e.g.
  // "column 7: expected ']' after index". Bounded: at most kMaxSteps steps.
  static Result<JsonPath> parse(std::string_view text);
  static constexpr size_t kMaxSteps = 256;

  // The root path `$`.
  JsonPath() = default;

  const std::vector<Step>& steps() const { return steps_; }
  // The text it was parsed from.
  const std::string& text() const { return text_; }
  // True when there is no wildcard and no descendant step (it names at most one place).
  bool is_concrete() const;

  // Does the pattern match exactly this concrete path?
  bool matches(std::span<const PathElem> path) const;
  // Does the pattern match this path or one of its prefixes (a rule on `$.meta` covers
  // `$.meta.x[2]`)?
  bool matches_prefix(std::span<const PathElem> path) const;

  // Every value the pattern selects in `root`, in document order (pre-order), without
  // duplicates. Pointers stay valid while `root` is not modified.
  std::vector<const boost::json::value*> select(const boost::json::value& root) const;
  std::vector<boost::json::value*> select(boost::json::value& root) const;

  // Replaces every selected value by a copy of `value`; returns how many were set. When nothing
  // is selected and the pattern is concrete, creates the place: missing members (and missing
  // intermediate objects) are added, an index equal to the array size appends. Errors:
  // invalid_argument when a concrete pattern runs into a value of the wrong type (a member
  // step on an array, an index past the end + 1). Setting `$` replaces the root.
  Result<size_t> set(boost::json::value& root, const boost::json::value& value) const;

  // Removes every selected member or element; returns how many were removed. Removing `$`
  // is not possible (returns 0). Elements are removed from the highest index down, so `[*]`
  // empties an array.
  size_t remove(boost::json::value& root) const;

 private:
  std::vector<Step> steps_;
  std::string text_ = "$";
};

}  // namespace retake::diff
