// retake::replay::TimeShift: moves the timestamps inside a recorded request by a fixed delta
// so that a replay made later carries "current" times: RFC 3339 / ISO 8601 instants and dates
// (format, precision, separator and zone kept), HTTP-dates, and epoch seconds / milliseconds
// that fall inside a window around the recording time (so ordinary numbers are not touched).
// JWTs (three base64url parts) have their iat/nbf/exp claims shifted and are re-signed when an
// HS256 key is given; otherwise they are left alone and the report says so.
//
// Used by client replay (requests) and server replay (stored responses). Depends on src/flow,
// Boost.JSON and OpenSSL (HMAC) only; no I/O, no store, no sockets. Thread-safe: const methods
// may be called concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/fwd.hpp>

#include "flow/flow.h"

namespace retake::replay {

inline constexpr int64_t kNsPerSecond = 1'000'000'000;
inline constexpr int64_t kTenYearsNs = int64_t{3653} * 86400 * kNsPerSecond;

struct TimeShiftOptions {
  // Added to every recognised timestamp, in ns (may be negative). Default: 0.
  int64_t delta_ns = 0;
  // The recording time, ns since the epoch: epoch-second and epoch-millisecond numbers are
  // recognised only within `window_ns` of it. Default: 0 (then epoch numbers are never touched).
  int64_t reference_ns = 0;
  // Half-width of the plausibility window for epoch numbers. Default: 10 years.
  int64_t window_ns = kTenYearsNs;
  // HS256 key for re-signing JWTs whose claims were shifted. Default: "" (JWTs left alone).
  std::string jwt_secret{};
};

// What a shift did, for the run report. Counters add up over calls.
struct TimeShiftReport {
  uint64_t shifted = 0;         // timestamps rewritten (outside JWTs)
  uint64_t jwt_resigned = 0;    // JWTs whose claims were shifted and that were re-signed
  uint64_t jwt_unsigned = 0;    // JWTs with time claims left alone (no key, or not HS256)
  uint64_t skipped_bodies = 0;  // bodies not examined (undecodable, binary, truncated)
};

class TimeShift {
 public:
  explicit TimeShift(TimeShiftOptions options);

  const TimeShiftOptions& options() const { return options_; }

  // Every timestamp and JWT found in free text (a header value, a cookie string, a text body)
  // shifted; everything else byte for byte as given.
  std::string shift_text(std::string_view text, TimeShiftReport* report = nullptr) const;

  // A JSON document in place: strings through shift_text, integers that are epoch seconds or
  // milliseconds inside the window. Bounded depth (64) and node count.
  void shift_json(boost::json::value& value, TimeShiftReport* report = nullptr) const;

  // A whole request: header values (not framing headers), query parameter values
  // (percent-decoded, shifted, re-encoded), and the body when it is JSON, a form
  // (application/x-www-form-urlencoded) or text/*. Content-Length is left to the sender.
  void shift_request(flow::Request& request, TimeShiftReport* report = nullptr) const;

  // A message body alone (a request's or a stored response's): shifted when `headers` say it
  // is JSON, a form or text/*; a Content-Encoding is decoded and put back. Content-Length in
  // `headers` follows a changed size. Truncated and undecodable bodies are left alone
  // (counted in skipped_bodies).
  void shift_body(flow::Body& body, flow::Headers& headers,
                  TimeShiftReport* report = nullptr) const;

  // One JWT ("xxx.yyy.zzz"): claims shifted and re-signed, or nullopt when it is not a JWT,
  // has no time claims, or cannot be re-signed (then `report->jwt_unsigned` counts it).
  std::optional<std::string> shift_jwt(std::string_view token,
                                       TimeShiftReport* report = nullptr) const;

 private:
  TimeShiftOptions options_;
};

// "+2h", "-30m", "90s", "1d", "1500ms", "2h30m" -> ns. nullopt when malformed.
std::optional<int64_t> parse_shift(std::string_view text);
// An RFC 3339 / ISO 8601 instant ("2030-01-01T00:00:00Z", with offset or fraction) -> ns.
std::optional<int64_t> parse_instant(std::string_view text);
// HS256 JWT helpers (exported for tests and for server replay).
std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);
std::string hs256_sign(std::string_view key, std::string_view signing_input);

}  // namespace retake::replay
