// retake::replay::server refresh: makes a recorded response look fresh when it is served again,
// as mitmproxy's server replay does: the Date, Expires and Last-Modified headers and the
// Expires= attribute of each Set-Cookie move forward by (now - the recorded response time).
//
// Pure: no I/O, no clock reads (the caller passes "now"). Depends only on src/flow.
// Body timestamps are not this module's business: ServeOptions::body_refresher is the seam
// where the client replay's time-shift engine (src/replay/client/time_shift.h) plugs in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "flow/flow.h"

namespace retake::replay::server {

// Parses an HTTP date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", the obsolete RFC 850 and
// asctime forms, and the dashed cookie form "Sun, 06-Nov-1994 08:49:37 GMT") into seconds since
// the epoch. nullopt for anything else.
std::optional<int64_t> parse_http_date(std::string_view text);
// Seconds since the epoch -> IMF-fixdate. Years past 9999 or before 1970 -> nullopt.
std::optional<std::string> format_http_date(int64_t seconds);

// Shifts the date headers and Set-Cookie Expires= of `response` by `shift_seconds`. A value that
// does not parse is left as recorded; a shifted date that cannot be formatted is removed (as
// mitmproxy does). Returns how many values changed.
size_t refresh_dates(flow::Response& response, int64_t shift_seconds);

// The shift for a flow served at `now_ns`: now minus the recorded response start (or request
// start when the response time is unknown), in whole seconds; 0 when the flow has no times.
int64_t refresh_shift_seconds(const flow::Flow& flow, int64_t now_ns);

}  // namespace retake::replay::server
