// retake::net HTTP/1 codec: an incremental, allocation-light parser for requests and responses
// and the helpers that serialize a head for forwarding (hop-by-hop fields removed).
//
// Pure: no I/O, no sockets, no timers, so it can be fed byte by byte in tests. Depends only on
// src/flow (Headers, ErrorKind). It is strict on purpose: everything that could make two HTTP
// implementations disagree on where a message ends (request smuggling shapes) is an error.
//
// Why not Boost.Beast's parser: Beast silently accepts obs-fold, accepts a request
// Transfer-Encoding that does not end in chunked (treating the body as absent, which is a
// smuggling vector), and its fields container would be copied into flow::Headers anyway. This
// parser fills flow::Headers directly (order, case and duplicates kept) and reports each
// rejected shape precisely.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "flow/flow.h"

namespace retake::net {

// How a message body is delimited on the wire.
enum class BodyFraming : uint8_t {
  none,         // no body (HEAD response, 1xx/204/304, request without CL/TE)
  length,       // Content-Length
  chunked,      // Transfer-Encoding ending in chunked
  until_close,  // response read until the upstream closes
};

// A parsed start line and header block. Request fields are empty for responses and vice versa.
struct Http1Head {
  std::string method;     // request: "GET"
  std::string target;     // request: "/a?b", "http://h/a", "h:443", "*"
  int status = 0;         // response: 200
  std::string reason;     // response: "OK" (may be empty)
  std::string version;    // "HTTP/1.1" or "HTTP/1.0"
  int minor = 1;          // 1 for HTTP/1.1, 0 for HTTP/1.0
  flow::Headers headers;  // exactly as received: order, case, duplicates kept
};

struct Http1Limits {
  // Largest head (start line + header block), and separately the largest trailer block.
  // Default: 64 KiB.
  size_t max_header_bytes = 64u << 10;
  // Largest chunk-size line including extensions. Default: 1 KiB.
  size_t max_chunk_line = 1024;
  // Total chunk-extension bytes allowed in one message (extension floods). Default: 16 KiB.
  size_t max_chunk_ext_total = 16u << 10;
};

// Incremental HTTP/1 message parser. Usage per message:
//   1. parse_head(buffered) until it returns > 0 (head length) or failed();
//   2. drop that many bytes, then parse_body(buffered, on_data) until done() or failed(),
//      dropping the returned count each time; call finish_eof() if the peer closes;
//   3. reset() before the next message (pipelining/keep-alive).
// Not thread-safe; one per connection direction; reuse it to keep its buffers.
class Http1Parser {
 public:
  enum class Kind : uint8_t { request, response };

  explicit Http1Parser(Kind kind, Http1Limits limits = {}) : kind_(kind), limits_(limits) {}

  // Prepares for the next message. For responses, `no_body` says the request was HEAD (or
  // CONNECT answered 2xx) so the response has no body whatever its headers say.
  void reset(bool no_body = false);

  // Looks for a complete head at the start of `in` (all unconsumed bytes, the same prefix as
  // the previous call plus more). Returns the head length once complete (head() is then filled
  // and framing() known), 0 when more bytes are needed or on error (check failed()).
  size_t parse_head(std::string_view in);

  // Consumes body bytes from `in` (bytes after the head), calling on_data(std::string_view)
  // with decoded payload (chunk framing removed). Returns the raw bytes consumed; those raw
  // bytes are exactly what to forward (chunk framing included, validated). Stops at the end of
  // the message (done()). 0 with !done() means more bytes are needed or failed().
  template <class OnData>
  size_t parse_body(std::string_view in, OnData&& on_data);

  // The peer closed. Completes an until_close body; anything else unfinished is an error.
  void finish_eof();

  bool head_done() const { return head_done_; }
  bool done() const { return done_; }
  bool failed() const { return error_ != flow::ErrorKind::none; }
  flow::ErrorKind error() const { return error_; }
  const std::string& error_message() const { return error_message_; }

  Http1Head& head() { return head_; }
  const Http1Head& head() const { return head_; }
  flow::Headers& trailers() { return trailers_; }
  BodyFraming framing() const { return framing_; }
  uint64_t content_length() const { return content_length_; }
  // HTTP/1.1 without "Connection: close", or HTTP/1.0 with "Connection: keep-alive".
  bool keep_alive() const { return keep_alive_; }
  // The request carries "Expect: 100-continue".
  bool expect_continue() const { return expect_continue_; }
  // Raw bytes of the head seen so far (for accounting; valid after parse_head).
  size_t head_bytes() const { return head_bytes_; }

 private:
  enum class ChunkState : uint8_t { size, ext, size_lf, data, data_cr, data_lf, trailer };

  bool fail(flow::ErrorKind kind, std::string message);
  bool parse_start_line(std::string_view line);
  bool parse_field_line(std::string_view line, flow::Headers& into);
  bool decide_framing();
  size_t parse_chunked(std::string_view in, std::string_view& data, bool& have_data);

  Kind kind_;
  Http1Limits limits_;
  bool no_body_ = false;
  bool head_done_ = false;
  bool done_ = false;
  bool keep_alive_ = true;
  bool expect_continue_ = false;
  flow::ErrorKind error_ = flow::ErrorKind::none;
  std::string error_message_;
  size_t scan_pos_ = 0;  // how far parse_head has validated line endings
  size_t head_bytes_ = 0;
  Http1Head head_;
  flow::Headers trailers_;
  BodyFraming framing_ = BodyFraming::none;
  uint64_t content_length_ = 0;
  uint64_t remaining_ = 0;  // length framing: bytes left; chunked: bytes left in this chunk
  ChunkState chunk_state_ = ChunkState::size;
  unsigned chunk_digits_ = 0;
  size_t chunk_line_ = 0;
  size_t chunk_ext_total_ = 0;
  std::string trailer_line_;
  size_t trailer_bytes_ = 0;
};

// True for fields that describe one connection rather than the message (RFC 9110 §7.6.1):
// Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade,
// Proxy-Authorization, Proxy-Authenticate, Trailer is NOT hop-by-hop.
bool is_hop_by_hop(std::string_view name) noexcept;

// True when `name` is listed as a token in any Connection field of `headers`.
bool named_by_connection(const flow::Headers& headers, std::string_view name) noexcept;

// True when the comma-separated `list` contains `token` (case-insensitive, OWS trimmed).
bool list_contains(std::string_view list, std::string_view token) noexcept;

// Appends the header fields of `headers` that may be forwarded: hop-by-hop fields and the
// fields named by Connection are dropped; so is Content-Length when `chunked`. When `chunked`,
// a single "Transfer-Encoding: chunked" is written because the chunk framing is forwarded
// verbatim. When `host_override` is non-empty, Host fields carry it instead of their value
// (reverse mode). `skip` names one more field to drop (e.g. "Expect" when answered locally).
void append_forward_fields(std::string& out, const flow::Headers& headers, bool chunked,
                           std::string_view host_override = {}, std::string_view skip = {});

// Chunked transfer coding (RFC 9112 §7.1) for a body relayed as it arrives: append_chunk adds
// "<hex size>\r\n<data>\r\n" (nothing for empty data: a zero-size chunk would end the
// body); append_last_chunk adds the last chunk, the trailer fields and the final CRLF.
void append_chunk(std::string& out, std::string_view data);
void append_last_chunk(std::string& out, const flow::Headers& trailers);

// An absolute-form target split into its parts: "http://h:1/p?q" -> {"http", "h:1", "/p?q"}.
struct AbsoluteTarget {
  std::string scheme;     // lower-case
  std::string authority;  // as written; port may be absent
  std::string path;       // "/" when absent
};
// Parses an absolute-form request target. false when it is not "scheme://authority[path]" with
// a non-empty authority and no userinfo.
bool parse_absolute_target(std::string_view target, AbsoluteTarget& out);

// Splits "host:port" / "[v6]:port" / "host" into host (brackets removed) and port
// (default_port when absent). false on an empty host or a bad port.
bool split_host_port(std::string_view authority, uint16_t default_port, std::string& host,
                     uint16_t& port);

// ---- template implementation ----

template <class OnData>
size_t Http1Parser::parse_body(std::string_view in, OnData&& on_data) {
  if (done_ || failed()) return 0;
  switch (framing_) {
    case BodyFraming::none:
      done_ = true;
      return 0;
    case BodyFraming::length: {
      size_t n = in.size() < remaining_ ? in.size() : static_cast<size_t>(remaining_);
      if (n) on_data(in.substr(0, n));
      remaining_ -= n;
      if (remaining_ == 0) done_ = true;
      return n;
    }
    case BodyFraming::until_close:
      if (!in.empty()) on_data(in);
      return in.size();
    case BodyFraming::chunked: {
      size_t total = 0;
      while (!done_ && !failed() && total < in.size()) {
        std::string_view data;
        bool have_data = false;
        size_t n = parse_chunked(in.substr(total), data, have_data);
        if (have_data && !data.empty()) on_data(data);
        if (n == 0) break;
        total += n;
      }
      return failed() ? 0 : total;
    }
  }
  return 0;
}

}  // namespace retake::net
