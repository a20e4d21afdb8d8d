// Format detection and dispatch.
#include "interop/interop.h"

namespace retake::interop {

const char* format_name(Format format) noexcept {
  switch (format) {
    case Format::unknown:
      return "unknown";
    case Format::har:
      return "har";
    case Format::mitmproxy:
      return "mitmproxy";
    case Format::retake_json:
      return "retake-json";
  }
  return "unknown";
}

std::string ImportError::to_string() const {
  return where + ": " + message;
}

size_t ImportResult::unsupported_count() const {
  size_t n = 0;
  for (const auto& [kind, count] : unsupported) n += count;
  return n;
}

namespace {

std::string_view skip_ws(std::string_view s) {
  auto first = s.find_first_not_of(" \t\r\n");
  return first == std::string_view::npos ? std::string_view() : s.substr(first);
}

// The first key of a JSON object starting at `s` ('{' already seen), if it is a plain string.
std::optional<std::string_view> first_key(std::string_view s) {
  s = skip_ws(s.substr(1));
  if (s.empty() || s.front() != '"') return std::nullopt;
  auto end = s.find('"', 1);
  if (end == std::string_view::npos || end > 256) return std::nullopt;
  return s.substr(1, end - 1);
}

}  // namespace

Format detect_format(std::string_view bytes) noexcept {
  if (bytes.starts_with("\xEF\xBB\xBF")) bytes.remove_prefix(3);
  auto s = skip_ws(bytes);
  if (s.empty()) return Format::unknown;
  if (s.front() >= '0' && s.front() <= '9') {
    // tnetstring: <digits>:<payload><type>; mitmproxy's records are dicts ('}').
    size_t i = 0;
    uint64_t length = 0;
    while (i < s.size() && i < 13 && s[i] >= '0' && s[i] <= '9')
      length = length * 10 + static_cast<uint64_t>(s[i++] - '0');
    if (i == 0 || i > 12 || i >= s.size() || s[i] != ':') return Format::unknown;
    // When the whole first record is in view its type tag must say dict; a cut prefix is
    // accepted on the shape alone (the importer reports what is wrong with it).
    if (length < s.size() - i - 1)
      return s[i + 1 + length] == '}' ? Format::mitmproxy : Format::unknown;
    return Format::mitmproxy;
  }
  if (s.front() == '[') return Format::retake_json;
  if (s.front() != '{') return Format::unknown;
  auto key = first_key(s);
  if (key == "log") return Format::har;
  if (key == "retake_flows" || key == "id") return Format::retake_json;
  // Some writers put other keys first: look for the telltale keys in a bounded prefix.
  auto prefix = s.substr(0, 1 << 16);
  if (prefix.find("\"log\"") != std::string_view::npos &&
      prefix.find("\"entries\"") != std::string_view::npos)
    return Format::har;
  if (prefix.find("\"log\"") != std::string_view::npos &&
      prefix.find("\"creator\"") != std::string_view::npos)
    return Format::har;
  if (prefix.find("\"retake_flows\"") != std::string_view::npos) return Format::retake_json;
  if (prefix.find("\"request\"") != std::string_view::npos &&
      prefix.find("\"client_tls\"") != std::string_view::npos)
    return Format::retake_json;
  return Format::unknown;
}

Result<ImportResult> import_any(std::string_view bytes, const ImportOptions& options) {
  switch (detect_format(bytes)) {
    case Format::har:
      return import_har(bytes, options);
    case Format::mitmproxy:
      return import_mitmproxy(bytes, options);
    case Format::retake_json:
      return import_retake_json(bytes, options);
    case Format::unknown:
      break;
  }
  return Result<ImportResult>(Errc::parse_error,
                              "unknown file format: expected HAR (JSON with \"log\"), a mitmproxy "
                              "flow file (tnetstrings) or retake JSON");
}

}  // namespace retake::interop
