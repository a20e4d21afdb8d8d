// retake::diff: pure comparison of two HTTP responses (origin vs replayed, A vs B) into typed
// differences, after content decoding and optional normalizers, with ignore rules whose use is
// counted over a whole batch. Used by `retake diff`, replay (diff against the origin) and the
// gRPC API.
//
// Must not do I/O (no files, sockets or clocks); depends on src/flow, Boost.JSON and the codecs
// behind content_coding.h. Paths use the one project syntax of json_path.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "codec/content_coding.h"
#include "diff/json_path.h"
#include "flow/flow.h"
#include "flow/status.h"

namespace retake::diff {

// What kind of difference; the name (diff_kind_name) is stable for JSON output.
enum class DiffKind : uint8_t {
  status_changed,        // "status": the status codes differ
  response_missing,      // "response": one side has no response (an error flow)
  header_changed,        // "header:<name>": values differ (several fields compared as a list)
  header_missing,        // "header:<name>": in A, not in B
  header_added,          // "header:<name>": in B, not in A
  value_changed,         // JSON path: same type, different value
  type_changed,          // JSON path: different JSON types
  field_missing,         // JSON path: member or element present in A, not in B
  field_added,           // JSON path: member or element present in B, not in A
  array_length_changed,  // JSON path: sizes differ; elements are compared up to the shorter
  line_changed,          // "body:line N" (N in A): a line replaced
  line_missing,          // "body:line N" (N in A): a line only in A
  line_added,            // "body:line N" (N in B): a line only in B
  body_changed,          // "body": bodies differ and are not diffed finer (binary, too large,
                         // too many changes, undecodable); values give size and SHA-256
};
const char* diff_kind_name(DiffKind kind) noexcept;
std::optional<DiffKind> diff_kind_from_name(std::string_view name) noexcept;

struct Difference {
  DiffKind kind = DiffKind::value_changed;
  // Canonical place: "status", "response", "header:<lowercase name>", a concrete JSON path
  // ("$.items[3].ts"), "body" or "body:line N".
  std::string path;
  // `path` generalized for grouping (noise model, reports): JSON indexes become [*], line
  // numbers are dropped ("body:line").
  std::string pattern;
  // Compact renderings (JSON values as JSON text), at most CompareOptions::max_value_chars
  // bytes plus a trailing "…" when cut; empty when that side has nothing there.
  std::string value_a;
  std::string value_b;
  // line_changed only: the line's number in B (the path numbers it in A). 0 otherwise.
  uint32_t line_b = 0;
  bool operator==(const Difference&) const = default;
};

// Normalizers turn volatile values into placeholders before two differing values are compared
// again; equal after normalization means no difference.
enum class NormalizerKind : uint8_t {
  timestamp,  // RFC 3339 / ISO 8601 date-times, IMF-fixdate (HTTP-date) -> "<timestamp>";
              // numbers (or all-digit strings) that are epoch seconds or milliseconds inside
              // [epoch_min_seconds, epoch_max_seconds] -> "<timestamp>"
  uuid,       // 8-4-4-4-12 hex UUIDs -> "<uuid>"
  hex_id,     // runs of >= 16 hex digits between word boundaries -> "<hex>"
  number,     // numbers equal within absolute_tolerance or relative_tolerance
};
const char* normalizer_kind_name(NormalizerKind kind) noexcept;
std::optional<NormalizerKind> normalizer_kind_from_name(std::string_view name) noexcept;

struct Normalizer {
  NormalizerKind kind = NormalizerKind::timestamp;
  // Where it applies. "" everywhere; "header:<name>"; "body" (text bodies); or a JSON path
  // pattern, which covers the matched values and everything below them.
  std::string scope;
  // number only: equal when |a-b| <= absolute_tolerance or |a-b| <= relative_tolerance *
  // max(|a|,|b|). Default: 0 (exact).
  double absolute_tolerance = 0;
  double relative_tolerance = 0;
};

// How the elements of the arrays at `path` are compared.
enum class ArrayOrder : uint8_t {
  ordered,   // element i with element i (default for every array)
  set,       // as sets: duplicates and order ignored
  multiset,  // as multisets: order ignored, counts matter
};
struct ArrayRule {
  std::string path;  // JSON path pattern of the arrays (`$.tags`, `$.items[*].roles`)
  ArrayOrder order = ArrayOrder::set;
};

// The headers ignored unless the caller removes them: per-request identifiers, tracing, dates,
// caches and hop-by-hop framing, lowercase: date, age, expires, last-modified, etag,
// content-length and content-encoding (bodies are compared decoded instead; a replay may
// negotiate another coding), transfer-encoding, connection, keep-alive, via, server-timing,
// x-request-id, x-correlation-id, x-amzn-trace-id, x-amzn-requestid, x-amz-request-id, x-amz-id-2,
// x-amz-cf-id, x-amz-cf-pop, traceparent, tracestate, b3, x-b3-traceid, x-b3-spanid,
// x-b3-parentspanid, x-b3-sampled, x-cloud-trace-context, x-datadog-trace-id, x-datadog-parent-id,
// x-runtime, x-response-time, cf-ray, cf-cache-status, x-cache, x-cache-hits, x-served-by, x-timer,
// report-to, nel. Set-Cookie is not ignored but compared by cookie names only (values are session
// noise).
std::vector<std::string> default_ignored_headers();

// Options: plain values; every field says its default.
struct CompareOptions {
  bool compare_status = true;   // Default: true
  bool compare_headers = true;  // Default: true
  // Header names never compared (case-insensitive). Default: default_ignored_headers(); add or
  // erase names to taste. These are not counted as rules.
  std::vector<std::string> ignored_headers = default_ignored_headers();
  // Ignore rules, each counted (see Comparator::unused_rules): "status", "header:<name>",
  // "body" (the whole body), or a JSON path pattern (covers the matched values' subtrees).
  // Default: none.
  std::vector<std::string> ignore;
  std::vector<Normalizer> normalizers;  // Default: none
  std::vector<ArrayRule> arrays;        // Default: none (every array ordered)
  // Epoch window of the timestamp normalizer, seconds. Default: 2000-01-01 .. 2100-01-01.
  int64_t epoch_min_seconds = 946684800;
  int64_t epoch_max_seconds = 4102444800;
  codec::CodingLimits decoding;            // Default: 64 MiB per body
  size_t max_differences = 200;     // per comparison; the rest set `truncated`. Default: 200
  size_t max_value_chars = 160;     // Default: 160
  size_t max_text_lines = 200000;   // per side; above, text is compared whole. Default: 200000
  size_t max_edit_distance = 1000;  // line edits before giving up on a line diff. Default: 1000
  size_t max_json_depth = 512;      // deeper JSON is compared as text. Default: 512
};

// How a body was compared.
enum class BodyKind : uint8_t { none, json, text, binary };
const char* body_kind_name(BodyKind kind) noexcept;

// The outcome of one comparison.
struct Comparison {
  std::vector<Difference> differences;
  bool truncated = false;  // more than max_differences; the rest were dropped
  BodyKind body_kind = BodyKind::none;
  std::string endpoint;  // endpoint_of(request) when a request was given
  bool identical() const { return differences.empty(); }
};

// The endpoint a request belongs to: "<METHOD> <route_template(path)>".
std::string endpoint_of(const flow::Request& request);
// The path with its query and fragment dropped and id-like segments replaced by "{id}":
// all digits; a UUID; >= 16 hex digits; or a token of >= 8 characters of [A-Za-z0-9_-=]
// with at least 2 digits (base64url ids, "cus_9s6XKzkN"). "/users/42/orders" ->
// "/users/{id}/orders"; "" -> "/".
std::string route_template(std::string_view path);

// Replaces timestamps, UUIDs and hex ids inside `text` by their placeholders, for the kinds in
// `kinds` (number has no effect on text). Exposed for tests and for the replay matcher.
std::string normalize_text(std::string_view text, std::span<const NormalizerKind> kinds,
                           const CompareOptions& options = {});

// Compares responses under fixed options, counting how often each ignore rule is used.
// Not thread-safe: one Comparator per thread (merge counts with merge_rule_counts). Keeps the
// memory of the last parsed bodies for reuse (about 3x the JSON body sizes) until destroyed.
// Cost: bodies with identical bytes are not parsed; JSON is parsed into a flat tape (no DOM)
// and equal subtrees are compared without rendering anything.
class Comparator {
 public:
  // Compiles the options. Errors: parse_error naming the bad rule, scope or array path.
  static Result<Comparator> create(CompareOptions options);
  ~Comparator();
  Comparator(Comparator&&) noexcept;
  Comparator& operator=(Comparator&&) noexcept;

  // Compares A with B. `request`, when given, names the endpoint. Never fails: undecodable or
  // unparsable bodies are compared as bytes and reported as body_changed.
  Comparison compare(const flow::Response& a, const flow::Response& b,
                     const flow::Request* request = nullptr);
  // Compares two flows' responses (a missing response is a response_missing difference unless
  // both are missing); the endpoint comes from a's request.
  Comparison compare(const flow::Flow& a, const flow::Flow& b);

  struct RuleUse {
    std::string rule;
    uint64_t matches = 0;  // differences this rule suppressed
  };
  // Every ignore rule with its count, in option order.
  std::vector<RuleUse> rule_uses() const;
  // Ignore rules that suppressed nothing in any comparison so far (typos, stale rules).
  std::vector<std::string> unused_rules() const;
  // Adds another comparator's counts (same options) into this one.
  void merge_rule_counts(const Comparator& other);
  uint64_t comparisons() const { return comparisons_; }
  const CompareOptions& options() const { return options_; }

  // Implementation detail, public so the .cc helpers can reach it.
  struct Rule {
    enum class Target : uint8_t { status, header, body, json } target = Target::json;
    std::string header;  // lowercase, for header rules; "*" any
    JsonPath path;       // for json rules
  };
  struct ScopedNormalizer {
    Normalizer normalizer;
    Rule scope;  // target json/header/body; `global` when the scope string is empty
    bool global = false;
  };
  struct CompiledArrayRule {
    JsonPath path;
    ArrayOrder order = ArrayOrder::set;
  };

 private:
  Comparator();
  friend class ComparisonRun;
  struct Scratch;  // parsed-body memory reused across comparisons (diff.cc)

  CompareOptions options_;
  std::unordered_set<std::string> ignored_headers_;  // lowercase
  std::vector<Rule> rules_;
  std::vector<uint64_t> rule_matches_;
  std::vector<ScopedNormalizer> normalizers_;
  std::vector<CompiledArrayRule> arrays_;
  uint64_t comparisons_ = 0;
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace retake::diff
