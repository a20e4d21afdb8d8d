// retake::replay::server matcher: finds the recorded flow that answers a request, and when none
// does, explains which recorded requests came closest and what differed.
//
// Pure: no I/O, no sockets, no store. The index is built once from a vector of flow::Flow; a
// lookup never touches disk. Depends on src/flow, src/diff (the project's one JSON path syntax
// and content decoding) and Boost.JSON / Boost.URL (privately).
//
// The match key of a request (each part can be switched off, in the spirit of mitmproxy's
// server_replay_* options):
//   method                 exact, case-sensitive (as HTTP says)
//   scheme                 case-insensitive; dropped with the host (--ignore-host)
//   host                   case-insensitive                           (ignore_host)
//   port                   the authority's port or the scheme default (ignore_port)
//   path                   the part before '?', byte-exact (no percent-decoding, no trailing-/
//   games) query                  the parameters as a MULTISET of decoded (name, value) pairs: the
//   order
//                          of parameters does not matter, repeated names and their values do
//                          (`a=1&a=2` matches `a=2&a=1` but not `a=1`). mitmproxy compares the
//                          ordered list; we do not, because clients and URL builders reorder
//                          parameters freely and servers almost never depend on the order.
//                          Parameters named in ignore_params are dropped first.
//   body                   (ignore_body drops it)
//                            - JSON (Content-Type */json or *+json, or a body that parses as a
//                              JSON object or array): compared as a JSON VALUE after removing
//                              every ignore_fields JSON path (`$.meta.requestId`, `$.items[*].ts`),
//                              so member order and whitespace do not matter;
//                            - form (application/x-www-form-urlencoded): a multiset of decoded
//                              fields after removing ignore_fields names (those not starting '$');
//                            - anything else: the bytes.
//                          A Content-Encoding'd request body is decoded first (gzip, br, ...).
//   headers                each name in use_headers: all its values joined by ", " (absent and
//                          present-but-empty differ).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"

namespace retake::replay::server {

// What happens to a request whose recorded responses have all been served once.
enum class OnExhausted {
  repeat_last,  // keep answering with the last recorded response (default)
  cycle,        // start over from the first recorded response
  miss,         // treat it as a miss (explanation says "exhausted")
};
const char* on_exhausted_name(OnExhausted value) noexcept;
std::optional<OnExhausted> on_exhausted_from_name(std::string_view name) noexcept;

struct ScopedMatch;

struct MatchOptions {
  // Query parameter names left out of the key (exact, case-sensitive). Default: none.
  std::vector<std::string> ignore_params;
  // Leave the request body out of the key. Default: false. Conflicts with ignore_fields.
  bool ignore_body = false;
  // Leave scheme and host out of the key. Default: false.
  bool ignore_host = false;
  // Leave the port out of the key. Default: false.
  bool ignore_port = false;
  // Body fields left out of the key: a JSON path in the project's syntax (starts with '$', see
  // diff/json_path.h) for JSON bodies, otherwise a form field name. Default: none.
  std::vector<std::string> ignore_fields;
  // Request header names whose values join the key (case-insensitive names). Default: none.
  std::vector<std::string> use_headers;
  // Default: repeat_last.
  OnExhausted on_exhausted = OnExhausted::repeat_last;
  // Most bytes of a request body parsed as JSON or form for matching; larger bodies are compared
  // as bytes. Default: 8 MiB.
  size_t max_parsed_body = size_t{8} << 20;
  // Other options for some recorded flows (a rules file's `match:` entries): each recorded flow
  // is keyed with the options of the first scope whose `when` accepts it, the others with these.
  // A request is looked up under each scope's key in order, then under these; the first
  // recorded key it equals answers. Scopes inside scopes are ignored. Default: none.
  std::vector<ScopedMatch> scopes{};
};

// Matching options for the recorded flows a predicate accepts.
struct ScopedMatch {
  std::string name;                               // for explanations and errors
  std::function<bool(const flow::Flow&)> when{};  // null: every flow
  MatchOptions options;
};

// One part of the key that differed between a request and a recorded candidate.
struct Difference {
  enum class Part : uint8_t {
    method,
    scheme,
    host,
    port,
    path,
    query,
    json_field,
    form_field,
    body,
    header
  };
  enum class Change : uint8_t {
    changed,  // present on both sides with other values
    added,    // the request has it, the recording did not
    removed,  // the recording had it, the request does not
  };
  Part part = Part::path;
  Change change = Change::changed;
  std::string name;       // query parameter / form field / header name, JSON path; "" otherwise
  std::string recorded;   // the recorded value (bodies: "N bytes, sha256 abcd1234...")
  std::string requested;  // the request's value
};
const char* part_name(Difference::Part part) noexcept;
const char* change_name(Difference::Change change) noexcept;

// A recorded request that came close to a request that missed.
struct Candidate {
  uint64_t flow_id = 0;
  std::string request_line;             // "GET https://api.example.com/a?b=1"
  size_t parts_matched = 0;             // key parts equal (method, scheme, host, ...)
  size_t parts_total = 0;               // key parts compared
  size_t recorded_count = 0;            // recorded flows with this exact key
  std::vector<Difference> differences;  // at most kMaxDifferences, most telling first
};

// Why a request missed.
struct MissExplanation {
  enum class Reason : uint8_t {
    no_match,   // no recorded request has this key
    exhausted,  // the key was recorded, but every response was served (OnExhausted::miss)
    no_flows,   // nothing recorded at all
  };
  Reason reason = Reason::no_match;
  std::string request_line;
  std::vector<Candidate> candidates;  // the nearest first, at most kMaxCandidates
  // One paragraph for a person: what was asked, what came closest, what differed.
  std::string text;
  // The same as JSON (stable field names; for the miss response body and reports).
  std::string to_json() const;
};
const char* reason_name(MissExplanation::Reason reason) noexcept;

inline constexpr size_t kMaxCandidates = 3;
inline constexpr size_t kMaxDifferences = 12;
inline constexpr size_t kMaxValueChars = 120;  // values in explanations are cut beyond this

// The outcome of one lookup.
struct MatchResult {
  // The recorded flow answering the request; null on a miss. Valid while the Matcher lives.
  const flow::Flow* flow = nullptr;
  size_t use = 0;       // 1-based: which of the key's recorded responses this is
  size_t count = 0;     // how many recorded responses the key has
  bool reused = false;  // served again after the key was exhausted (repeat_last / cycle)
  std::optional<MissExplanation> miss;  // set exactly when flow is null

  bool hit() const { return flow != nullptr; }
};

// The index. Build once; look up from any number of threads.
class Matcher {
 public:
  // Indexes every flow of kind http that has a response (others are skipped and counted).
  // Flows with the same key are served in recorded order (request start time, then id).
  // Errors: invalid_argument for conflicting options (ignore_body with ignore_fields) or an
  // ignore_fields JSON path that does not parse (the message names the path and column).
  static Result<std::unique_ptr<Matcher>> build(std::vector<flow::Flow> flows,
                                                MatchOptions options = {});
  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // Finds the response for `request` and advances that key's cursor. Thread-safe; never blocks
  // on I/O (one short mutex per key). A miss carries its explanation.
  MatchResult lookup(const flow::Request& request);
  // Explains how `request` compares with the recorded requests without advancing anything.
  MissExplanation explain(const flow::Request& request) const;

  const MatchOptions& options() const;
  // The flows indexed, in recorded order.
  const std::vector<flow::Flow>& flows() const;
  size_t skipped() const;  // flows not indexed (no response, tunnels, failed TLS)
  size_t key_count() const;
  // How often each indexed flow was served so far, parallel to flows().
  std::vector<uint64_t> served_counts() const;

 private:
  struct State;
  explicit Matcher(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace retake::replay::server
