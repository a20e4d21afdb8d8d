#include "interop/codec.h"

#include <zlib.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace retake::interop::detail {

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> make_b64_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kB64[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr auto kB64Table = make_b64_table();

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
std::string lowered(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower(c);
  return out;
}
}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto b = [&](size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (bytes.size() - i == 1) {
    uint32_t v = b(i) << 16;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (bytes.size() - i == 2) {
    uint32_t v = (b(i) << 16) | (b(i + 1) << 8);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0, symbols = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad) return std::nullopt;  // data after padding
    int v = kB64Table[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    ++symbols;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (symbols % 4 == 1 || pad > 2) return std::nullopt;
  if (pad && (symbols + pad) % 4 != 0) return std::nullopt;
  return out;
}

bool valid_utf8(std::string_view s) noexcept {
  size_t i = 0, n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

bool zlib_coding(std::string_view coding) noexcept {
  return flow::iequals(coding, "gzip") || flow::iequals(coding, "x-gzip") ||
         flow::iequals(coding, "deflate");
}

namespace {
std::optional<std::string> inflate_with(std::string_view bytes, int window_bits, size_t max_out) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) return std::nullopt;
  std::string out;
  char buf[16384];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    out.append(buf, sizeof buf - zs.avail_out);
    if (out.size() > max_out) {
      rc = Z_MEM_ERROR;
      break;
    }
    // No progress possible: input ended before the stream did.
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      rc = Z_DATA_ERROR;
      break;
    }
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}
}  // namespace

std::optional<std::string> content_decode(std::string_view coding, std::string_view bytes,
                                          size_t max_out) {
  if (bytes.size() > UINT32_MAX) return std::nullopt;
  if (flow::iequals(coding, "gzip") || flow::iequals(coding, "x-gzip"))
    return inflate_with(bytes, 16 + MAX_WBITS, max_out);
  if (flow::iequals(coding, "deflate")) {
    if (auto out = inflate_with(bytes, MAX_WBITS, max_out)) return out;
    return inflate_with(bytes, -MAX_WBITS, max_out);  // raw deflate, as some servers send
  }
  return std::nullopt;
}

std::optional<std::string> content_encode(std::string_view coding, std::string_view bytes) {
  if (bytes.size() > UINT32_MAX / 2) return std::nullopt;
  int window_bits;
  if (flow::iequals(coding, "gzip") || flow::iequals(coding, "x-gzip"))
    window_bits = 16 + MAX_WBITS;
  else if (flow::iequals(coding, "deflate"))
    window_bits = MAX_WBITS;
  else
    return std::nullopt;
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    return std::nullopt;
  std::string out(deflateBound(&zs, static_cast<uLong>(bytes.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

int64_t seconds_to_ns(double seconds) {
  double whole = std::floor(seconds);
  return static_cast<int64_t>(whole) * 1'000'000'000 + std::llround((seconds - whole) * 1e9);
}

std::string iso8601_ms(int64_t ns) {
  using namespace std::chrono;
  auto ms_total = ns / 1'000'000 - (ns % 1'000'000 < 0 ? 1 : 0);
  auto days = floor<std::chrono::days>(sys_time<milliseconds>(milliseconds(ms_total)));
  year_month_day ymd(days);
  int64_t ms_of_day = ms_total - duration_cast<milliseconds>(days.time_since_epoch()).count();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", int(ymd.year()),
                unsigned(ymd.month()), unsigned(ymd.day()), int(ms_of_day / 3600000),
                int(ms_of_day / 60000 % 60), int(ms_of_day / 1000 % 60), int(ms_of_day % 1000));
  return buf;
}

std::optional<int64_t> parse_iso8601(std::string_view t) {
  using namespace std::chrono;
  auto num = [&](size_t pos, size_t len, int& out) {
    if (pos + len > t.size()) return false;
    auto [p, ec] = std::from_chars(t.data() + pos, t.data() + pos + len, out);
    return ec == std::errc() && p == t.data() + pos + len;
  };
  int y, mo, d, h = 0, mi = 0, s = 0;
  if (!num(0, 4, y) || t.size() < 10 || t[4] != '-' || !num(5, 2, mo) || t[7] != '-' ||
      !num(8, 2, d))
    return std::nullopt;
  size_t pos = 10;
  int64_t frac_ns = 0;
  if (pos < t.size() && (t[pos] == 'T' || t[pos] == ' ')) {
    if (!num(pos + 1, 2, h) || pos + 3 >= t.size() || t[pos + 3] != ':' || !num(pos + 4, 2, mi))
      return std::nullopt;
    pos += 6;
    if (pos < t.size() && t[pos] == ':') {
      if (!num(pos + 1, 2, s)) return std::nullopt;
      pos += 3;
    }
    if (pos < t.size() && (t[pos] == '.' || t[pos] == ',')) {
      ++pos;
      int64_t scale = 100'000'000;
      size_t digits = 0;
      while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
        frac_ns += (t[pos] - '0') * scale;
        scale /= 10;
        ++pos;
        ++digits;
      }
      if (!digits) return std::nullopt;
    }
  }
  int64_t offset_s = 0;
  if (pos < t.size()) {
    if (t[pos] == 'Z' || t[pos] == 'z') {
      ++pos;
    } else if (t[pos] == '+' || t[pos] == '-') {
      int sign = t[pos] == '-' ? -1 : 1;
      int oh, om = 0;
      if (!num(pos + 1, 2, oh)) return std::nullopt;
      pos += 3;
      if (pos < t.size() && t[pos] == ':') ++pos;
      if (pos < t.size()) {
        if (!num(pos, 2, om)) return std::nullopt;
        pos += 2;
      }
      offset_s = sign * (oh * 3600 + om * 60);
    }
  }
  if (pos != t.size()) return std::nullopt;
  year_month_day ymd{year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || s > 60) return std::nullopt;
  int64_t secs =
      sys_days(ymd).time_since_epoch().count() * 86400 + h * 3600 + mi * 60 + s - offset_s;
  return secs * 1'000'000'000 + frac_ns;
}

std::optional<SplitUrl> split_url(std::string_view url) {
  auto sep = url.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  SplitUrl out;
  out.scheme = lowered(url.substr(0, sep));
  for (char c : out.scheme)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))
      return std::nullopt;
  auto rest = url.substr(sep + 3);
  auto end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, end);
  if (auto at = authority.rfind('@'); at != std::string_view::npos)
    authority = authority.substr(at + 1);
  if (authority.empty()) return std::nullopt;
  out.authority = std::string(authority);
  std::string_view path = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (auto hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);
  out.path = path.empty() || path.front() != '/' ? "/" + std::string(path) : std::string(path);
  return out;
}

std::string host_port(std::string_view host, int64_t port) {
  std::string out;
  if (host.find(':') != std::string_view::npos && (host.empty() || host.front() != '['))
    out = "[" + std::string(host) + "]";
  else
    out = std::string(host);
  if (port > 0) out += ":" + std::to_string(port);
  return out;
}

std::string normalize_http_version(std::string_view v) {
  auto l = lowered(v);
  if (l == "h2" || l == "http/2" || l == "http/2.0" || l == "h2c") return "HTTP/2";
  if (l == "h3" || l == "http/3" || l == "http/3.0" || l.starts_with("h3-")) return "HTTP/3";
  if (l == "http/1.0") return "HTTP/1.0";
  if (l == "http/1.1" || l.empty() || l == "unknown") return "HTTP/1.1";
  return std::string(v);
}

}  // namespace retake::interop::detail
