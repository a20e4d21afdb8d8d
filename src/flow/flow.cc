#include "flow/flow.h"

#include <algorithm>
#include <chrono>
#include <charconv>

namespace retake::flow {

namespace {
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

void Headers::add(std::string name, std::string value) {
  fields_.push_back({std::move(name), std::move(value)});
}

void Headers::set(std::string_view name, std::string value) {
  auto first = std::find_if(fields_.begin(), fields_.end(),
                            [&](const Header& h) { return iequals(h.name, name); });
  if (first == fields_.end()) {
    fields_.push_back({std::string(name), std::move(value)});
    return;
  }
  first->value = std::move(value);
  auto next = std::next(first);
  fields_.erase(std::remove_if(next, fields_.end(),
                               [&](const Header& h) { return iequals(h.name, name); }),
                fields_.end());
}

size_t Headers::remove(std::string_view name) {
  auto before = fields_.size();
  std::erase_if(fields_, [&](const Header& h) { return iequals(h.name, name); });
  return before - fields_.size();
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& h : fields_)
    if (iequals(h.name, name)) return std::string_view(h.value);
  return std::nullopt;
}

std::vector<std::string_view> Headers::get_all(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& h : fields_)
    if (iequals(h.name, name)) out.emplace_back(h.value);
  return out;
}

namespace {
// Splits "host:port", "[v6]:port", "host" into host and optional port text.
std::pair<std::string_view, std::string_view> split_authority(std::string_view a) {
  if (!a.empty() && a.front() == '[') {
    auto close = a.find(']');
    if (close == std::string_view::npos) return {a, {}};
    auto host = a.substr(1, close - 1);
    auto rest = a.substr(close + 1);
    if (!rest.empty() && rest.front() == ':') return {host, rest.substr(1)};
    return {host, {}};
  }
  auto colon = a.rfind(':');
  if (colon == std::string_view::npos || a.find(':') != colon) return {a, {}};
  return {a.substr(0, colon), a.substr(colon + 1)};
}
}  // namespace

std::string Request::host() const { return std::string(split_authority(authority).first); }

uint16_t Request::port() const {
  auto port_text = split_authority(authority).second;
  unsigned value = 0;
  if (!port_text.empty()) {
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec == std::errc() && ptr == port_text.data() + port_text.size() && value <= 65535)
      return static_cast<uint16_t>(value);
  }
  return iequals(scheme, "https") || iequals(scheme, "wss") ? 443 : 80;
}

std::string Request::url() const {
  if (scheme.empty()) return authority;
  return scheme + "://" + authority + path;
}

const char* error_kind_name(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::none: return "none";
    case ErrorKind::bad_request: return "bad_request";
    case ErrorKind::headers_too_large: return "headers_too_large";
    case ErrorKind::body_too_large: return "body_too_large";
    case ErrorKind::client_timeout: return "client_timeout";
    case ErrorKind::client_closed: return "client_closed";
    case ErrorKind::upstream_unreachable: return "upstream_unreachable";
    case ErrorKind::upstream_timeout: return "upstream_timeout";
    case ErrorKind::upstream_closed: return "upstream_closed";
    case ErrorKind::upstream_protocol: return "upstream_protocol";
    case ErrorKind::tls_handshake_failed: return "tls_handshake_failed";
    case ErrorKind::upstream_tls_failed: return "upstream_tls_failed";
    case ErrorKind::smuggling_rejected: return "smuggling_rejected";
    case ErrorKind::policy: return "policy";
    case ErrorKind::internal: return "internal";
  }
  return "unknown";
}

std::optional<ErrorKind> error_kind_from_name(std::string_view name) noexcept {
  for (uint16_t k = 0; k <= static_cast<uint16_t>(ErrorKind::internal); ++k) {
    auto kind = static_cast<ErrorKind>(k);
    if (name == error_kind_name(kind)) return kind;
  }
  return std::nullopt;
}

int64_t Flow::duration() const {
  int64_t start = timing.request_started ? timing.request_started : timing.client_connected;
  int64_t end = timing.response_ended;
  if (!end) end = std::max({timing.response_started, timing.request_ended});
  return (start && end > start) ? end - start : 0;
}

std::optional<ListenAddress> parse_listen_address(std::string_view text) {
  ListenAddress out{"127.0.0.1", 0};
  std::string_view port_text = text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string_view::npos || close == 1) return std::nullopt;
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') != colon) return std::nullopt;  // bare IPv6 needs brackets
    if (colon > 0) out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  if (port_text.empty() || port_text.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return std::nullopt;
  out.port = static_cast<uint16_t>(value);
  return out;
}

int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace retake::flow
