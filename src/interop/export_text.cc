// One flow as text a person (or a shell) uses directly: a curl command and raw HTTP/1.1.
#include "interop/codec.h"
#include "interop/interop.h"

namespace retake::interop {

namespace {

// POSIX sh single quotes keep every byte but NUL literally; a quote itself is closed, escaped
// and reopened.
std::string sh_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

bool shell_word_safe(std::string_view s) {
  for (unsigned char c : s)
    if (c == 0 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return false;
  return detail::valid_utf8(s);
}

// Linux caps one argument at 128 KiB (MAX_ARG_STRLEN); each printf call gets less than that
// once escaped (4 bytes per input byte at worst).
constexpr size_t kPrintfChunk = 16 * 1024;
constexpr size_t kMaxDataRaw = 64 * 1024;

// `printf` format text that writes `bytes` exactly: printable ASCII as is, everything else
// (and \, %, ') as 3-digit octal escapes, which POSIX printf understands in its format.
std::string printf_format(std::string_view bytes) {
  std::string out;
  static const char* digits = "01234567";
  for (unsigned char c : bytes) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '%' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      out += '\\';
      out += digits[(c >> 6) & 7];
      out += digits[(c >> 3) & 7];
      out += digits[c & 7];
    }
  }
  return out;
}

bool hop_by_hop_or_computed(std::string_view name) {
  for (auto skip : {"Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
                    "Proxy-Connection", "TE"})
    if (flow::iequals(name, skip)) return true;
  return false;
}

std::string wire_version(std::string_view v) {
  if (v == "HTTP/1.0") return "HTTP/1.0";
  return "HTTP/1.1";  // HTTP/2 and /3 flows are written in HTTP/1.1 syntax
}

bool chunked(const flow::Headers& headers) {
  for (auto te : headers.get_all("Transfer-Encoding"))
    if (te.find("chunked") != std::string_view::npos ||
        te.find("CHUNKED") != std::string_view::npos)
      return true;
  return false;
}

// Header block and body of one message. The stored body is transfer-decoded, so a chunked
// message is re-chunked (one chunk, then trailers), and a body without any framing header (an
// HTTP/2 message) gets a Content-Length.
void append_message(std::string& out, const flow::Headers& headers, const flow::Body& body,
                    const flow::Headers& trailers, bool add_host, std::string_view authority) {
  if (add_host) out += "Host: " + std::string(authority) + "\r\n";
  for (const auto& h : headers) out += h.name + ": " + h.value + "\r\n";
  bool is_chunked = chunked(headers);
  if (!is_chunked && !headers.contains("Content-Length") && !body.data.empty())
    out += "Content-Length: " + std::to_string(body.data.size()) + "\r\n";
  out += "\r\n";
  if (is_chunked) {
    if (!body.data.empty()) {
      char size[32];
      std::snprintf(size, sizeof size, "%zx\r\n", body.data.size());
      out += size;
      out += body.data;
      out += "\r\n";
    }
    out += "0\r\n";
    for (const auto& h : trailers) out += h.name + ": " + h.value + "\r\n";
    out += "\r\n";
  } else {
    out += body.data;
  }
}

}  // namespace

Result<std::string> export_curl(const flow::Flow& f) {
  const auto& rq = f.request;
  if (f.kind != flow::FlowKind::http || rq.method == "CONNECT" || rq.scheme.empty())
    return Result<std::string>(Errc::invalid_argument,
                               "a tunnel or failed TLS handshake has no request to re-issue");
  if (rq.body.truncated)
    return Result<std::string>(Errc::failed_precondition,
                               "the request body was truncated when recorded (" +
                                   std::to_string(rq.body.data.size()) + " of " +
                                   std::to_string(rq.body.size) + " bytes stored)");
  for (const auto& h : rq.headers)
    if (h.name.find('\0') != std::string::npos || h.value.find('\0') != std::string::npos ||
        h.name.find_first_of("\r\n") != std::string::npos ||
        h.value.find_first_of("\r\n") != std::string::npos)
      return Result<std::string>(Errc::invalid_argument,
                                 "header \"" + h.name + "\" holds bytes curl cannot send");

  const std::string& body = rq.body.data;
  bool has_body = !body.empty();
  bool body_via_printf = has_body && (!shell_word_safe(body) || body.size() > kMaxDataRaw);

  std::string cmd;
  if (body_via_printf) {
    // Feed the exact bytes on stdin; printf in chunks keeps each argument under the OS cap.
    cmd += "{ ";
    for (size_t i = 0; i < body.size(); i += kPrintfChunk)
      cmd += "printf '" + printf_format(std::string_view(body).substr(i, kPrintfChunk)) + "'; ";
    cmd += "} | ";
  }
  cmd += "curl";
  auto arg = [&](const std::string& a) { cmd += " \\\n  " + a; };

  const auto& v = rq.http_version;
  if (v == "HTTP/1.0")
    arg("--http1.0");
  else if (v == "HTTP/2")
    arg(flow::iequals(rq.scheme, "https") ? "--http2" : "--http2-prior-knowledge");
  else if (v == "HTTP/3")
    arg("--http3");
  else
    arg("--http1.1");

  if (rq.method == "HEAD" && !has_body)
    arg("--head");
  else if (rq.method != "GET" || has_body)
    arg("-X " + sh_quote(rq.method));

  std::string url = rq.url();
  // curl would otherwise squash "/../" and expand [] and {} as globs.
  arg("--path-as-is");
  if (url.find_first_of("[]{}") != std::string::npos) arg("--globoff");

  for (const auto& h : rq.headers) {
    if (hop_by_hop_or_computed(h.name)) continue;
    if (flow::iequals(h.name, "Host") && flow::iequals(h.value, rq.authority)) continue;
    // "Name;" is curl's spelling of a header with an empty value ("Name:" would remove it).
    arg("-H " + sh_quote(h.value.empty() ? h.name + ";" : h.name + ": " + h.value));
  }
  // curl adds these on its own when the request had none; an empty -H removes them.
  if (!rq.headers.contains("User-Agent")) arg("-H 'User-Agent:'");
  if (!rq.headers.contains("Accept")) arg("-H 'Accept:'");
  if (has_body && !rq.headers.contains("Content-Type")) arg("-H 'Content-Type:'");
  // curl asks for 100-continue on large bodies (over 1 MiB in curl 7.88) unless told not to.
  if (has_body && !rq.headers.contains("Expect")) arg("-H 'Expect:'");

  if (body_via_printf)
    arg("--data-binary @-");
  else if (has_body)
    arg("--data-raw " + sh_quote(body));
  arg(sh_quote(url));
  cmd += "\n";
  return cmd;
}

std::string raw_request(const flow::Flow& f) {
  const auto& rq = f.request;
  std::string out;
  // A tunnel's target is its authority; an extended CONNECT (WebSocket over HTTP/2) has a path.
  std::string target =
      (rq.method == "CONNECT" && rq.path.empty()) || rq.scheme.empty() ? rq.authority : rq.path;
  if (target.empty()) target = "/";
  out += rq.method + " " + target + " " + wire_version(rq.http_version) + "\r\n";
  bool add_host = !rq.headers.contains("Host") && !rq.authority.empty();
  append_message(out, rq.headers, rq.body, rq.trailers, add_host, rq.authority);
  return out;
}

std::string raw_response(const flow::Flow& f) {
  if (!f.response) return {};
  const auto& r = *f.response;
  std::string out = wire_version(r.http_version) + " " + std::to_string(r.status);
  if (!r.reason.empty()) out += " " + r.reason;
  out += "\r\n";
  append_message(out, r.headers, r.body, r.trailers, false, {});
  return out;
}

std::string export_raw_http(const flow::Flow& f) {
  auto note = [](std::string_view what, const flow::Body& b) {
    return "\n[retake: " + std::string(what) + " body truncated: " + std::to_string(b.data.size()) +
           " of " + std::to_string(b.size) + " bytes stored]\n";
  };
  std::string out = raw_request(f);
  if (f.request.body.truncated) out += note("request", f.request.body);
  out += "\n";
  if (f.response) {
    out += raw_response(f);
    if (f.response->body.truncated) out += note("response", f.response->body);
  } else if (f.error) {
    out += "[retake: no response: " + std::string(flow::error_kind_name(f.error->kind)) + ": " +
           f.error->message + "]\n";
  } else {
    out += "[retake: no response]\n";
  }
  return out;
}

}  // namespace retake::interop
