// retake::flow http_date: the IMF-fixdate form of an HTTP date ("Sun, 06 Nov 1994 08:49:37
// GMT", RFC 9110 section 5.6.7), read and written without strptime, snprintf or the locale.
// Server replay refreshes a Date on every answer and client replay shifts dates in bodies;
// both go through here. Pure; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace retake::flow {

// Seconds since the epoch for text that is exactly an IMF-fixdate (English day and month
// names as written, 29 bytes, "GMT"); nullopt for anything else, including impossible dates.
// A leap second (:60) reads as the next second, as timegm makes it. The day name is not
// checked against the date.
std::optional<int64_t> parse_imf_fixdate(std::string_view text);

// The IMF-fixdate of `seconds` since the epoch; nullopt when its year is outside 0000-9999
// (the form has four year digits).
std::optional<std::string> format_imf_fixdate(int64_t seconds);

}  // namespace retake::flow
