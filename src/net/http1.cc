#include "net/http1.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace retake::net {

namespace {

using flow::ErrorKind;

// RFC 9110 tchar.
bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

// field-vchar, SP, HTAB, obs-text; never CTLs (NUL, CR, LF, DEL, ...).
bool is_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

bool is_target_char(unsigned char c) {
  return c > 0x20 && c != 0x7f;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(element) for each comma-separated element, OWS trimmed (empty elements included).
template <class F>
void for_each_element(std::string_view list, F&& f) {
  for (;;) {
    auto comma = list.find(',');
    f(trim_ows(list.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

bool parse_decimal(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  out = v;
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void Http1Parser::reset(bool no_body) {
  no_body_ = no_body;
  head_done_ = false;
  done_ = false;
  keep_alive_ = true;
  expect_continue_ = false;
  error_ = ErrorKind::none;
  error_message_.clear();
  scan_pos_ = 0;
  head_bytes_ = 0;
  head_.method.clear();
  head_.target.clear();
  head_.status = 0;
  head_.reason.clear();
  head_.version.clear();
  head_.minor = 1;
  head_.headers = {};
  trailers_ = {};
  framing_ = BodyFraming::none;
  content_length_ = 0;
  remaining_ = 0;
  chunk_state_ = ChunkState::size;
  chunk_digits_ = 0;
  chunk_line_ = 0;
  chunk_ext_total_ = 0;
  trailer_line_.clear();
  trailer_bytes_ = 0;
}

bool Http1Parser::fail(ErrorKind kind, std::string message) {
  if (error_ == ErrorKind::none) {
    error_ = kind;
    error_message_ = std::move(message);
  }
  return false;
}

size_t Http1Parser::parse_head(std::string_view in) {
  if (head_done_ || failed()) return 0;
  // Leading empty lines before a request line are tolerated (RFC 9112 §2.2) but only CRLF ones.
  // Scan for the end of the head, validating that every LF is preceded by CR: a bare LF is
  // a classic way to make two parsers disagree on where a header ends.
  size_t end = 0;
  size_t limit = in.size();
  for (size_t i = scan_pos_; i < limit; ++i) {
    char c = in[i];
    if (c == '\n') {
      if (i == 0 || in[i - 1] != '\r') {
        fail(ErrorKind::smuggling_rejected, "bare LF in the header block");
        return 0;
      }
      // Empty line: "\r\n" right after the previous "\n" ends the head (unless it is the first
      // line, which would be a leading empty line; those are rejected below).
      if (i >= 3 && in[i - 2] == '\n' && in[i - 3] == '\r') {
        end = i + 1;
        break;
      }
      if (i == 1) {
        fail(ErrorKind::bad_request, "empty line before the start line");
        return 0;
      }
    } else if (c == '\r') {
      if (i + 1 < limit && in[i + 1] != '\n') {
        fail(ErrorKind::smuggling_rejected, "bare CR in the header block");
        return 0;
      }
    }
    if (i + 1 > limits_.max_header_bytes) {
      fail(ErrorKind::headers_too_large,
           "header block larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
      return 0;
    }
  }
  if (end == 0) {
    // Resume at the end, or at a trailing CR whose successor is not known yet. The end-of-head
    // test looks back into `in`, so a CRLFCRLF split across calls is still seen.
    scan_pos_ = (limit > 0 && in[limit - 1] == '\r') ? limit - 1 : limit;
    return 0;
  }
  head_bytes_ = end;
  std::string_view block = in.substr(0, end - 2);  // without the final empty line's CRLF
  auto eol = block.find("\r\n");
  if (!parse_start_line(block.substr(0, eol))) return 0;
  block.remove_prefix(eol + 2);
  while (!block.empty()) {
    eol = block.find("\r\n");
    std::string_view line = block.substr(0, eol);
    if (!parse_field_line(line, head_.headers)) return 0;
    block.remove_prefix(eol + 2);
  }
  if (!decide_framing()) return 0;
  head_done_ = true;
  if (framing_ == BodyFraming::none) done_ = true;
  if (framing_ == BodyFraming::length && content_length_ == 0) done_ = true;
  return end;
}

bool Http1Parser::parse_start_line(std::string_view line) {
  auto version_ok = [&](std::string_view v) {
    if (v == "HTTP/1.1") {
      head_.minor = 1;
    } else if (v == "HTTP/1.0") {
      head_.minor = 0;
    } else {
      return false;
    }
    head_.version = v;
    return true;
  };
  if (kind_ == Kind::request) {
    auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0)
      return fail(ErrorKind::bad_request, "malformed request line");
    auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || sp2 == sp1 + 1)
      return fail(ErrorKind::bad_request, "malformed request line");
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    for (unsigned char c : method)
      if (!is_tchar(c)) return fail(ErrorKind::bad_request, "malformed method in request line");
    for (unsigned char c : target)
      if (!is_target_char(c)) return fail(ErrorKind::bad_request, "malformed request target");
    if (version.substr(0, 5) != "HTTP/")
      return fail(ErrorKind::bad_request, "malformed request line");
    if (!version_ok(version))
      return fail(ErrorKind::bad_request,
                  "unsupported HTTP version '" + std::string(version.substr(0, 16)) + "'");
    head_.method = method;
    head_.target = target;
    return true;
  }
  // status-line = HTTP-version SP status-code SP [ reason-phrase ]; a missing SP before an
  // empty reason is tolerated (common in the wild).
  if (line.size() < 12 || line[8] != ' ')
    return fail(ErrorKind::upstream_protocol, "malformed status line");
  if (!version_ok(line.substr(0, 8)))
    return fail(ErrorKind::upstream_protocol, "unsupported HTTP version in status line");
  int status = 0;
  for (int i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9')
      return fail(ErrorKind::upstream_protocol, "malformed status code");
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100) return fail(ErrorKind::upstream_protocol, "malformed status code");
  if (line.size() > 12) {
    if (line[12] != ' ') return fail(ErrorKind::upstream_protocol, "malformed status line");
    for (unsigned char c : line.substr(13))
      if (!is_value_char(c)) return fail(ErrorKind::upstream_protocol, "malformed reason phrase");
    head_.reason = line.substr(13);
  }
  head_.status = status;
  return true;
}

bool Http1Parser::parse_field_line(std::string_view line, flow::Headers& into) {
  ErrorKind bad = kind_ == Kind::request ? ErrorKind::bad_request : ErrorKind::upstream_protocol;
  ErrorKind smuggle =
      kind_ == Kind::request ? ErrorKind::smuggling_rejected : ErrorKind::upstream_protocol;
  if (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
    return fail(smuggle, "obsolete line folding (obs-fold) in a header field");
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return fail(bad, "header line without a colon");
  if (colon == 0) return fail(bad, "empty header field name");
  std::string_view name = line.substr(0, colon);
  for (unsigned char c : name) {
    if (c == ' ' || c == '\t')
      return fail(smuggle, "whitespace between a header field name and the colon");
    if (!is_tchar(c)) return fail(bad, "invalid character in a header field name");
  }
  std::string_view value = trim_ows(line.substr(colon + 1));
  for (unsigned char c : value)
    if (!is_value_char(c)) return fail(bad, "invalid character in a header field value");
  into.add(std::string(name), std::string(value));
  return true;
}

bool Http1Parser::decide_framing() {
  bool request = kind_ == Kind::request;
  ErrorKind smuggle = request ? ErrorKind::smuggling_rejected : ErrorKind::upstream_protocol;
  ErrorKind bad = request ? ErrorKind::bad_request : ErrorKind::upstream_protocol;

  bool have_te = false, te_chunked_last = false, te_bad = false;
  bool have_cl = false, cl_bad = false, cl_conflict = false;
  uint64_t cl = 0;
  bool conn_close = false, conn_keep_alive = false;
  int host_count = 0;
  for (const auto& f : head_.headers) {
    const std::string& n = f.name;
    if (flow::iequals(n, "transfer-encoding")) {
      have_te = true;
      for_each_element(f.value, [&](std::string_view e) {
        // "chunked" must be the last coding and appear once; anything after it is invalid.
        if (te_chunked_last) te_bad = true;
        if (e.empty()) te_bad = true;
        te_chunked_last = flow::iequals(e, "chunked");
      });
    } else if (flow::iequals(n, "content-length")) {
      for_each_element(f.value, [&](std::string_view e) {
        uint64_t v = 0;
        if (!parse_decimal(e, v)) {
          cl_bad = true;
          return;
        }
        if (have_cl && v != cl) cl_conflict = true;
        have_cl = true;
        cl = v;
      });
    } else if (flow::iequals(n, "connection")) {
      if (list_contains(f.value, "close")) conn_close = true;
      if (list_contains(f.value, "keep-alive")) conn_keep_alive = true;
    } else if (request && flow::iequals(n, "host")) {
      ++host_count;
    } else if (request && flow::iequals(n, "expect")) {
      if (flow::iequals(trim_ows(f.value), "100-continue")) expect_continue_ = true;
    }
  }
  keep_alive_ = head_.minor == 1 ? !conn_close : (conn_keep_alive && !conn_close);

  if (request) {
    if (host_count > 1) return fail(bad, "more than one Host header");
    if (host_count == 0 && head_.minor == 1) return fail(bad, "HTTP/1.1 request without Host");
  }

  // Responses without a body, whatever their framing headers say (RFC 9112 §6.3).
  if (!request && (no_body_ || head_.status < 200 || head_.status == 204 || head_.status == 304)) {
    framing_ = BodyFraming::none;
    return true;
  }
  if (cl_bad) return fail(bad, "invalid Content-Length value");
  if (cl_conflict) return fail(smuggle, "conflicting Content-Length values");
  if (have_te) {
    if (have_cl) return fail(smuggle, "both Content-Length and Transfer-Encoding");
    if (te_bad) return fail(smuggle, "malformed Transfer-Encoding");
    if (request && head_.minor == 0)
      return fail(smuggle, "Transfer-Encoding in an HTTP/1.0 request");
    if (!te_chunked_last) {
      if (request) return fail(smuggle, "Transfer-Encoding does not end in chunked");
      framing_ = BodyFraming::until_close;
      keep_alive_ = false;
      return true;
    }
    framing_ = BodyFraming::chunked;
    return true;
  }
  if (have_cl) {
    framing_ = BodyFraming::length;
    content_length_ = remaining_ = cl;
    return true;
  }
  if (request) {
    framing_ = BodyFraming::none;
  } else {
    framing_ = BodyFraming::until_close;
    keep_alive_ = false;
  }
  return true;
}

size_t Http1Parser::parse_chunked(std::string_view in, std::string_view& data, bool& have_data) {
  ErrorKind smuggle =
      kind_ == Kind::request ? ErrorKind::smuggling_rejected : ErrorKind::upstream_protocol;
  size_t i = 0;
  while (i < in.size()) {
    char c = in[i];
    switch (chunk_state_) {
      case ChunkState::size: {
        int h = hex_value(c);
        if (h >= 0) {
          if (++chunk_digits_ > 15) return fail(smuggle, "chunk size too large"), 0;
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(h);
          ++i;
          ++chunk_line_;
          break;
        }
        if (chunk_digits_ == 0) return fail(smuggle, "malformed chunk size"), 0;
        if (c == ';' || c == ' ' || c == '\t') {
          chunk_state_ = ChunkState::ext;
          break;  // the ext state consumes it
        }
        if (c == '\r') {
          chunk_state_ = ChunkState::size_lf;
          ++i;
          break;
        }
        return fail(smuggle, "malformed chunk size"), 0;
      }
      case ChunkState::ext: {
        // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ); we bound its length and
        // character set rather than interpret it; it is forwarded verbatim.
        if (c == '\r') {
          chunk_state_ = ChunkState::size_lf;
          ++i;
          break;
        }
        if (c == '\n') return fail(smuggle, "bare LF in a chunk size line"), 0;
        if (!is_value_char(static_cast<unsigned char>(c)))
          return fail(smuggle, "invalid character in a chunk extension"), 0;
        ++i;
        ++chunk_line_;
        if (++chunk_ext_total_ > limits_.max_chunk_ext_total)
          return fail(smuggle, "too many chunk extension bytes"), 0;
        if (chunk_line_ > limits_.max_chunk_line)
          return fail(smuggle, "chunk size line too long"), 0;
        break;
      }
      case ChunkState::size_lf:
        if (c != '\n') return fail(smuggle, "bare CR in a chunk size line"), 0;
        ++i;
        chunk_digits_ = 0;
        chunk_line_ = 0;
        if (remaining_ == 0) {
          chunk_state_ = ChunkState::trailer;
        } else {
          chunk_state_ = ChunkState::data;
        }
        break;
      case ChunkState::data: {
        size_t n = std::min<uint64_t>(remaining_, in.size() - i);
        // Return after each data run so the caller sees it as one contiguous view.
        data = in.substr(i, n);
        have_data = true;
        remaining_ -= n;
        i += n;
        if (remaining_ == 0) chunk_state_ = ChunkState::data_cr;
        return i;
      }
      case ChunkState::data_cr:
        if (c != '\r') return fail(smuggle, "chunk data not followed by CRLF"), 0;
        chunk_state_ = ChunkState::data_lf;
        ++i;
        break;
      case ChunkState::data_lf:
        if (c != '\n') return fail(smuggle, "chunk data not followed by CRLF"), 0;
        chunk_state_ = ChunkState::size;
        ++i;
        break;
      case ChunkState::trailer: {
        // Trailer section: field lines until an empty line, bounded like a header block.
        ++i;
        if (++trailer_bytes_ > limits_.max_header_bytes)
          return fail(kind_ == Kind::request ? ErrorKind::headers_too_large
                                             : ErrorKind::upstream_protocol,
                      "trailer section too large"),
                 0;
        if (c == '\n') {
          if (trailer_line_.empty() || trailer_line_.back() != '\r')
            return fail(smuggle, "bare LF in the trailer section"), 0;
          trailer_line_.pop_back();
          if (trailer_line_.empty()) {
            done_ = true;
            return i;
          }
          if (!parse_field_line(trailer_line_, trailers_)) return 0;
          trailer_line_.clear();
        } else {
          if (!trailer_line_.empty() && trailer_line_.back() == '\r')
            return fail(smuggle, "bare CR in the trailer section"), 0;
          trailer_line_.push_back(c);
        }
        break;
      }
    }
  }
  return i;
}

void Http1Parser::finish_eof() {
  if (done_ || failed()) return;
  if (head_done_ && framing_ == BodyFraming::until_close) {
    done_ = true;
    return;
  }
  fail(kind_ == Kind::request ? ErrorKind::client_closed : ErrorKind::upstream_closed,
       head_done_ ? "connection closed before the end of the body"
                  : "connection closed before the end of the header block");
}

bool is_hop_by_hop(std::string_view n) noexcept {
  switch (n.size()) {
    case 2:
      return flow::iequals(n, "te");
    case 7:
      return flow::iequals(n, "upgrade");
    case 10:
      return flow::iequals(n, "connection") || flow::iequals(n, "keep-alive");
    case 16:
      return flow::iequals(n, "proxy-connection");
    case 17:
      return flow::iequals(n, "transfer-encoding");
    case 18:
      return flow::iequals(n, "proxy-authenticate");
    case 19:
      return flow::iequals(n, "proxy-authorization");
    default:
      return false;
  }
}

bool list_contains(std::string_view list, std::string_view token) noexcept {
  bool found = false;
  for_each_element(list, [&](std::string_view e) {
    if (flow::iequals(e, token)) found = true;
  });
  return found;
}

bool named_by_connection(const flow::Headers& headers, std::string_view name) noexcept {
  for (const auto& f : headers)
    if (flow::iequals(f.name, "connection") && list_contains(f.value, name)) return true;
  return false;
}

void append_forward_fields(std::string& out, const flow::Headers& headers, bool chunked,
                           std::string_view host_override, std::string_view skip) {
  // Tokens named by Connection, gathered once (a handful at most; more than kMax falls back to
  // the full scan) so each field is checked in one pass.
  constexpr size_t kMax = 8;
  std::string_view named[kMax];
  size_t named_count = 0;
  bool overflow = false;
  for (const auto& f : headers) {
    if (!flow::iequals(f.name, "connection")) continue;
    for_each_element(f.value, [&](std::string_view e) {
      if (e.empty()) return;
      if (named_count < kMax) {
        named[named_count++] = e;
      } else {
        overflow = true;
      }
    });
  }
  auto is_named = [&](std::string_view name) {
    if (overflow) return named_by_connection(headers, name);
    for (size_t i = 0; i < named_count; ++i)
      if (flow::iequals(named[i], name)) return true;
    return false;
  };
  for (const auto& f : headers) {
    if (is_hop_by_hop(f.name)) continue;
    if (chunked && flow::iequals(f.name, "content-length")) continue;
    if (!skip.empty() && flow::iequals(f.name, skip)) continue;
    if (named_count && is_named(f.name)) continue;
    out.append(f.name);
    out.append(": ");
    if (!host_override.empty() && flow::iequals(f.name, "host")) {
      out.append(host_override);
    } else {
      out.append(f.value);
    }
    out.append("\r\n");
  }
  if (chunked) out.append("Transfer-Encoding: chunked\r\n");
}

void append_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  char size[20];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  out.append(size, static_cast<size_t>(n)).append(data).append("\r\n");
}

void append_last_chunk(std::string& out, const flow::Headers& trailers) {
  out.append("0\r\n");
  for (const auto& t : trailers) out.append(t.name).append(": ").append(t.value).append("\r\n");
  out.append("\r\n");
}

bool parse_absolute_target(std::string_view target, AbsoluteTarget& out) {
  auto sep = target.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  std::string scheme(target.substr(0, sep));
  // RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), e.g. "h2c".
  if (!std::isalpha(static_cast<unsigned char>(scheme.front()))) return false;
  for (auto& c : scheme) {
    auto u = static_cast<unsigned char>(c);
    if (!std::isalnum(u) && c != '+' && c != '-' && c != '.') return false;
    c = static_cast<char>(std::tolower(u));
  }
  std::string_view rest = target.substr(sep + 3);
  auto path_start = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_start);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
  std::string_view path =
      path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  auto hash = path.find('#');
  if (hash != std::string_view::npos) path = path.substr(0, hash);
  out.scheme = std::move(scheme);
  out.authority = authority;
  if (path.empty() || path.front() != '/') {
    out.path = "/";
    out.path.append(path);
  } else {
    out.path = path;
  }
  return true;
}

bool split_host_port(std::string_view a, uint16_t default_port, std::string& host, uint16_t& port) {
  std::string_view h = a, p;
  if (!a.empty() && a.front() == '[') {
    auto close = a.find(']');
    if (close == std::string_view::npos) return false;
    h = a.substr(1, close - 1);
    auto rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
      if (p.empty()) return false;
    }
  } else {
    auto colon = a.rfind(':');
    if (colon != std::string_view::npos) {
      if (a.find(':') != colon) return false;  // unbracketed IPv6
      h = a.substr(0, colon);
      p = a.substr(colon + 1);
      if (p.empty()) return false;
    }
  }
  if (h.empty()) return false;
  for (unsigned char c : h)
    if (c <= 0x20 || c == 0x7f || c == '/' || c == '@') return false;
  port = default_port;
  if (!p.empty()) {
    uint64_t v = 0;
    if (!parse_decimal(p, v) || v == 0 || v > 65535) return false;
    port = static_cast<uint16_t>(v);
  }
  host.assign(h);
  return true;
}

}  // namespace retake::net
