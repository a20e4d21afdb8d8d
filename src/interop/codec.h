// Internal to src/interop: byte codecs shared by the importers and exporters (base64, UTF-8
// checks, gzip/deflate via zlib, ISO 8601 times, URL splitting). Not a public header.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "flow/flow.h"

namespace retake::interop::detail {

// Thrown inside one importer to unwind from a bad entry to the loop that owns it; never leaves
// the library (each importer turns it into a Status or an ImportError).
struct BadInput : std::runtime_error {
  std::string where;
  BadInput(std::string where_in, const std::string& message)
      : std::runtime_error(message), where(std::move(where_in)) {}
};

std::string base64_encode(std::string_view bytes);
// Standard alphabet; padding optional; ASCII whitespace ignored (some tools wrap lines).
// nullopt on any other character or an impossible length.
std::optional<std::string> base64_decode(std::string_view text);

bool valid_utf8(std::string_view bytes) noexcept;

// Content codings that zlib handles: "gzip"/"x-gzip" and "deflate" (zlib-wrapped, or raw as
// some servers send). Decoding stops with nullopt past max_out bytes or on corrupt input.
std::optional<std::string> content_decode(std::string_view coding, std::string_view bytes,
                                          size_t max_out);
std::optional<std::string> content_encode(std::string_view coding, std::string_view bytes);
bool zlib_coding(std::string_view coding) noexcept;  // gzip, x-gzip, deflate

// Float seconds since the epoch (as mitmproxy and Chrome write them) to ns; the whole and the
// fractional seconds are converted apart so that e.g. 1600000000.25 gives ...250000000 exactly.
int64_t seconds_to_ns(double seconds);

// "2026-11-28T01:35:16.891Z" (UTC, millisecond precision) from ns since the epoch.
std::string iso8601_ms(int64_t ns);
// Parses ISO 8601 date-times as HAR writers produce them: fractional seconds of any length,
// "Z" or "+hh:mm"/"-hhmm" offsets. nullopt when malformed.
std::optional<int64_t> parse_iso8601(std::string_view text);

struct SplitUrl {
  std::string scheme;     // lower-case
  std::string authority;  // as written (userinfo dropped)
  std::string path;       // origin-form, "/" when empty; fragment dropped
};
std::optional<SplitUrl> split_url(std::string_view url);

// "ip:port" with IPv6 bracketed.
std::string host_port(std::string_view host, int64_t port);

// Normalizes version spellings ("HTTP/2.0", "h2", "http/1.1", "") to ours.
std::string normalize_http_version(std::string_view version);

}  // namespace retake::interop::detail

namespace retake::interop::detail {

struct CertNames {
  std::string subject;  // RFC 4514 string: "O=retake fixtures,CN=upstream.retake.test"
  std::string issuer;
};
// Subject and issuer of the first certificate in a PEM text (or of DER bytes). A small bounded
// DER walk over the fields we need, so that src/interop needs no OpenSSL. nullopt when the bytes
// are not a certificate we can read.
std::optional<CertNames> certificate_names(std::string_view pem_or_der);

}  // namespace retake::interop::detail
