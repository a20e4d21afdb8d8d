// retake::query: flow filter expressions in mitmproxy's language, compiled once, matched many
// times (store scans, the recorder's capture filter, replay selection, the CLI's `--filter`).
//
// Depends only on src/flow (and, privately, RE2, zlib, brotli and zstd). Must not depend on the
// store, the network or anything that does I/O: a Filter is a pure predicate over a flow::Flow.
//
// Language (mitmproxy's, so its users know it; see help() for the full list):
//   ~q ~s ~e ~a ~all ~http ~websocket ~tunnel (alias ~tcp) ~marked ~replay   flags, no argument
//   ~u ~d ~m ~h ~hq ~hs ~b ~bq ~bs ~t ~tq ~ts ~comment ~marker ~src ~dst     take a regex
//   ~c 200, ~c 5xx                                           response status, exact or class
//   ~session NAME  ~run ID  ~tag NAME  ~origin [ID]          store fields, exact (case kept)
//   ~since TIME  ~until TIME     flow start time, TIME = YYYY-MM-DD[Thh:mm[:ss[.frac]]][Z|±hh:mm]
//                                (no zone means UTC, so a filter means the same on every host);
//                                since is inclusive, until exclusive
//   ~dur >250ms                  duration; units ns us ms s; operators < <= > >= = (default =)
//   ~size >1MB  ~sizeq  ~sizes   body bytes on the wire: request+response, request, response;
//                                units B KB KiB MB MiB GB GiB (KB = 1000, KiB = 1024)
//   !x   x & y   x | y   (x)     ! binds tightest, then &, then |
//   x y                          juxtaposition is AND, binding looser than | (as in mitmproxy:
//                                `~e ~s | ~q` means `~e & (~s | ~q)`)
//   word                         a bare argument without ~ means `~u word`
// Arguments: an unquoted run of characters other than whitespace, ( ) ~ ' and " (a regex
// argument may contain ! & |, as in mitmproxy: `~d foo|bar` is one regex; other arguments stop
// at & and |), or a "..." / '...' string in which \" \' and \\ stand for the character and any
// other backslash pair is kept as is, so regex escapes like \d and \. reach RE2 unchanged.
//
// Differences from mitmproxy, on purpose:
//   - Every regex is case-INSENSITIVE (mitmproxy ignores case only for ~d and ~m). Write
//     `(?-i)` at the start of a regex for a case-sensitive match.
//   - Regexes are RE2 (linear time, no backreferences or lookaround).
//   - `(a b)`, `(~e)` and `~e&~s` are accepted (mitmproxy's parser rejects them); `& x` is a
//     syntax error (mitmproxy reads the lone & as a URL regex).
//   - In quotes, a backslash before anything but a quote or a backslash is kept (mitmproxy drops
//     it, turning "\d" into "d").
//   - ~replay means "made by a replay run" (run set or origin set); mitmproxy's ~replayq,
//     ~replays, ~dns and ~meta have no counterpart in our flows and are unknown filters.
//   - Headers for ~h are matched as "name: value" lines joined by "\n" with ^ and $ matching at
//     line ends; names keep the case they had on the wire (the match ignores case anyway).
//   - ~b decodes gzip, deflate, br and zstd content encodings (like mitmproxy); when decoding
//     fails the raw bytes are searched. At most kMaxBodyScanBytes of each body are searched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "flow/flow.h"
#include "flow/status.h"

namespace retake::query {

// Bounds that keep a hostile or mistaken expression from costing much.
inline constexpr size_t kMaxExpressionBytes = 16 * 1024;  // longer text is a parse error
inline constexpr int kMaxNestingDepth = 256;              // ( and ! nesting
inline constexpr int kMaxRegexes = 64;                    // regex arguments per expression
inline constexpr int64_t kRegexMaxMem = 2 << 20;          // RE2 max_mem per regex
inline constexpr size_t kMaxBodyScanBytes = 8 << 20;      // bytes of one (decoded) body searched

// Where and why an expression did not parse.
struct ParseError {
  size_t column = 0;     // 1-based, counted in UTF-8 code points; input length + 1 at the end
  std::string expected;  // what the parser wanted there: "')'", "a status code (integer)"
  std::string message;   // the whole sentence: "column 4: expected a status code ..., got 'abc'"
};

// Facts every flow matching the filter has, that a store can check with an index instead of
// decoding each flow. A hint is a NECESSARY condition only: every matching flow satisfies it,
// but a flow that satisfies it may still not match, so matches() must still be called on each
// candidate. Only constraints forced by the top-level AND chain are reported; nothing under
// `|` or `!` is. Empty fields do not restrict. Host and method are not here: ~d and ~m take
// case-insensitive regexes, which never force one exact value; Filter::host_test() and
// method_test() give them as predicates over an index's distinct values instead.
struct IndexHint {
  std::optional<std::string> session;  // flow.session == *session       (from ~session)
  std::optional<std::string> run;      // flow.run == *run                 (from ~run)
  std::optional<uint64_t> origin;      // flow.origin == *origin           (from ~origin ID)
  std::optional<int> status_min;       // a response with status in [status_min, status_max]
  std::optional<int> status_max;       //   (from ~c 200: both 200; from ~c 5xx: 500 and 599)
  std::optional<int64_t> since_ns;     // flow start time >= since_ns      (from ~since)
  std::optional<int64_t> until_ns;     // flow start time <  until_ns      (from ~until)

  // The exact status when the range is one code (what FlowStore's ScanOptions::status takes).
  std::optional<int> exact_status() const;
  bool empty() const;
  bool operator==(const IndexHint&) const = default;
};

// One row of the language reference, for `retake help filters` and the gRPC docs.
struct FilterHelp {
  const char* syntax;       // "~c CODE"
  const char* description;  // "response status code: 200, or a class like 5xx"
};

// A compiled filter expression. Immutable after parse: copies share the compiled form, and
// matches() may be called from any number of threads at once.
class Filter {
 public:
  // The filter that matches every flow (the same as parsing "~all").
  Filter();

  // Compiles `text`. Errors: parse_error, with a message naming the 1-based column and what was
  // expected (`~c abc` -> "column 4: expected a status code (integer) or a class like 5xx,
  // got 'abc'"); when `error` is not null it also receives the column and expectation. Never
  // crashes and never takes long, whatever the bytes (see the bounds above).
  static Result<Filter> parse(std::string_view text, ParseError* error = nullptr);

  // True when the flow satisfies the expression. Thread-safe; reuses thread-local buffers, so it
  // allocates only while those grow (URL, header block, decoded body).
  bool matches(const flow::Flow& flow) const;

  // A canonical form that parses back to the same filter: every AND and OR parenthesized,
  // arguments quoted only when they must be, times in UTC. `~m GET | ~m POST & ~c 201` ->
  // `(~m GET | (~m POST & ~c 201))`.
  std::string to_string() const;

  // What an index can use to skip flows; see IndexHint. Computed once at parse.
  const IndexHint& hint() const;

  // Predicates over the distinct values of a host or method index, from the first ~d (and the
  // first ~m) of the top-level AND chain: every flow that matches the filter has a host (the
  // authority's or the Host header's, ASCII-lowercased, as the store indexes them) for which
  // host_test is true, and a method for which method_test is true. Like the hint they are
  // NECESSARY conditions only. Empty functions when there is no such ~d / ~m, or for a ~d whose
  // regex contains "(?" (it may turn case sensitivity back on, and lowercased hosts would
  // then miss). The functions share the compiled filter and may outlive this object.
  std::function<bool(std::string_view host)> host_test() const;
  std::function<bool(std::string_view method)> method_test() const;

  // True when matching reads Body::data or WebSocket payloads (~b, ~bq, ~bs anywhere in the
  // expression). When false, flows loaded without bodies match exactly as with them (sizes come
  // from Body::size, which is kept without the data).
  bool needs_bodies() const;

  // The language reference, in a stable order.
  static std::span<const FilterHelp> help();

  struct Node;  // the compiled tree; defined in filter.cc

 private:
  struct Compiled;
  explicit Filter(std::shared_ptr<const Compiled> compiled);
  std::shared_ptr<const Compiled> compiled_;
};

// The time a flow is filtered by in ~since and ~until: timing.request_started, or
// timing.client_connected when there was no request; 0 when neither is known (such a flow
// matches neither ~since nor ~until).
int64_t flow_start_ns(const flow::Flow& flow) noexcept;

}  // namespace retake::query
