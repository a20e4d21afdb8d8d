// retake::interop: flows in and out of other tools' formats.
//
// Turns bytes (a HAR 1.2 file, a mitmproxy flow file as `mitmdump -w` writes it, retake's own
// JSON) into std::vector<flow::Flow> and flows back into bytes (HAR, retake JSON, a curl
// command, raw HTTP/1.1 text). Everything here is pure: no store, no sockets, no files; the
// caller reads the file and stores the flows (in one batch, so a failed import touches nothing).
//
// Must not depend on: src/store, src/net, anything with I/O. Third-party types (Boost.JSON,
// zlib) stay out of this header.
//
// All functions are thread-safe (no shared state). Input is untrusted: every function bounds
// sizes, counts and nesting, and bad input yields a Status, never a crash or a hang.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"

namespace retake::interop {

enum class Format {
  unknown,
  har,          // HAR 1.2 (JSON with a top-level "log")
  mitmproxy,    // a stream of tnetstrings, one dict per flow
  retake_json,  // retake's own JSON: {"retake_flows": 1, "flows": [...]}, an array, or one flow
};
const char* format_name(Format format) noexcept;

// Guesses the format from the first bytes (a UTF-8 BOM and leading whitespace are skipped).
// Cheap: looks at a bounded prefix only; it does not validate the rest.
Format detect_format(std::string_view bytes) noexcept;

struct ImportOptions {
  // Default: false: the first bad entry fails the whole import. When true, bad entries are
  // skipped and listed in ImportResult::errors (a file whose framing is broken still fails).
  bool skip_bad = false;
  // Default: "": keep what the file says (our own HAR/JSON carry a session; others none).
  // Otherwise the session of every imported flow.
  std::string session;
  // Default: 1 GiB. Larger inputs are refused before parsing (resource_exhausted).
  uint64_t max_input_bytes = uint64_t{1} << 30;
  // Default: 1,000,000. More entries (HAR entries, mitmproxy records) are refused.
  size_t max_flows = 1'000'000;
  // Default: 64. Deeper JSON or tnetstring nesting is an error (real files nest < 10).
  size_t max_depth = 64;
  // Default: 0, meaning 64 MiB + 8 x the input size. Memory a JSON document (HAR, retake JSON)
  // may take once parsed; more is resource_exhausted (hostile files such as "[0,0,0,...]"
  // expand far beyond their size).
  uint64_t max_json_memory = 0;
};

// One skipped entry: which one and why.
struct ImportError {
  size_t index = 0;     // entry index (HAR) or record index (mitmproxy), from 0
  std::string where;    // "log.entries[3].response.status" or "byte 1234, record 2, request.method"
  std::string message;  // what is wrong there
  std::string to_string() const;  // "<where>: <message>"
};

struct ImportResult {
  Format format = Format::unknown;
  // Flow::id is 0 (the store assigns ids); mode is "import" unless our own export said else.
  std::vector<flow::Flow> flows;
  std::vector<ImportError> errors;  // entries skipped as bad (only with skip_bad)
  // Records of kinds that retake does not hold (mitmproxy "tcp", "udp", "dns"), by kind. Never
  // an error: counted and skipped.
  std::map<std::string, size_t> unsupported;
  size_t unsupported_count() const;
};

// HAR 1.2 as written by browsers (Chrome, Firefox, Playwright's recordHar), Charles, Fiddler,
// Insomnia and by export_har. Tolerates a UTF-8 BOM, missing optional fields, base64 bodies,
// "-1" sizes and "_"-prefixed extensions. HAR bodies are decoded; a response whose
// Content-Encoding is gzip or deflate is re-encoded so that Body keeps wire bytes (as recorded
// flows do); other encodings (br, zstd) lose their Content-Encoding header instead. Either way
// a Content-Length header is set to the size of the body kept.
// Errors name the place: "log.entries[3].response.status: expected a number".
Result<ImportResult> import_har(std::string_view bytes, const ImportOptions& options = {});

// A mitmproxy flow file (`mitmdump -w`): flow format versions 7 to 17 (mitmproxy 5 to 8;
// Debian 12 ships 8.1.1 = version 17) and, tolerantly, later ones. HTTP flows (with TLS facts
// and WebSocket messages) are imported; tcp/udp/dns flows are counted in `unsupported`.
// Errors name the byte offset: "byte 1234, record 2, request.method: expected bytes or text,
// found an integer".
Result<ImportResult> import_mitmproxy(std::string_view bytes, const ImportOptions& options = {});

// retake's own JSON (export_json, flows_to_json, or one flow_to_json object).
Result<ImportResult> import_retake_json(std::string_view bytes, const ImportOptions& options = {});

// detect_format, then the matching importer; unknown formats are a parse_error.
Result<ImportResult> import_any(std::string_view bytes, const ImportOptions& options = {});

// HAR 1.2 for a list of flows: timings (blocked/dns/connect/send/wait/receive in ms, -1 when
// unknown), startedDateTime in ISO 8601 (UTC, ms), headers, queryString, postData, content
// (decoded from gzip/deflate when possible; base64 with `encoding: "base64"` when not UTF-8),
// cookies, httpVersion, serverIPAddress; Chrome's `_webSocketMessages`; and `_retake` per entry
// for what HAR cannot hold (error, truncation, tags, exact timing, TLS, ...), so that
// import_har(export_har(f)) gives back f for everything HAR and `_retake` carry.
std::string export_har(const std::vector<flow::Flow>& flows);

struct JsonOptions {
  // Default: true. When false, bodies and WebSocket payloads are left out (sizes stay).
  bool with_bodies = true;
};

// One flow as a JSON object holding every field of flow::Flow. Bytes that are not valid UTF-8
// (bodies, header values, paths, payloads) are written as {"base64": "..."} instead of a string.
// This is the document `retake flows show --json` prints.
std::string flow_to_json(const flow::Flow& flow, const JsonOptions& options = {});
// The inverse: flow_from_json(flow_to_json(f)) == f (with bodies).
Result<flow::Flow> flow_from_json(std::string_view json);
// A JSON array of flow_to_json objects (what `retake flows list --json` prints).
std::string flows_to_json(const std::vector<flow::Flow>& flows, const JsonOptions& options = {});
// The export document: {"retake_flows": 1, "flows": [...]}.
std::string export_json(const std::vector<flow::Flow>& flows);

// A shell command (POSIX sh) that re-issues the flow's request with curl: -X, one -H per header
// (except the ones curl computes: Content-Length, Transfer-Encoding, hop-by-hop headers, and
// Host when it names the URL's authority), the body via --data-raw or, when it has bytes a shell
// word cannot carry, `printf '<octal escapes>' | curl ... --data-binary @-`, and
// --http1.0/--http1.1/--http2/--http3 per version. Headers curl would add on its own
// (User-Agent, Accept, Content-Type, Expect) are suppressed when the flow had none, so the
// request sent is the recorded one. Accept-Encoding is sent as recorded and no --compressed is
// added: curl fails on codings it cannot decode (zstd) and the output is the wire body, as
// recorded. Tunnels have no request to re-issue (invalid_argument). A truncated body cannot be
// re-sent (failed_precondition).
Result<std::string> export_curl(const flow::Flow& flow);

// The request and the response as HTTP/1.1 wire text (HTTP/2 flows get a Host header from the
// authority); bodies exactly as stored. export_raw_http adds a line
// "[retake: ... body truncated: N of M bytes stored]" after a truncated body and separates the
// request from the response with a blank line.
std::string raw_request(const flow::Flow& flow);
std::string raw_response(const flow::Flow& flow);  // "" when the flow has no response
std::string export_raw_http(const flow::Flow& flow);

}  // namespace retake::interop
