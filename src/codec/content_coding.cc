#include "codec/content_coding.h"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <climits>
#include <memory>

namespace retake::codec {

namespace {

constexpr size_t kChunk = 64 * 1024;

std::string lower_trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Appends `n` bytes of `data` to `out` within `limit`. Returns false when the limit was hit
// (after appending the part that fits, which a partial decode keeps).
bool append_within(std::string& out, const char* data, size_t n, size_t limit) {
  size_t room = limit - std::min(limit, out.size());
  out.append(data, std::min(n, room));
  return n <= room;
}

// A failure after some output: a partial decode keeps what decoded before it.
Result<std::string> fail_or_keep(std::string& out, bool partial, Status status) {
  if (partial && !out.empty()) return std::move(out);
  return status;
}

Status too_big(const char* coding, size_t limit) {
  return Status(Errc::resource_exhausted, std::string(coding) + " output exceeds the limit of " +
                                              std::to_string(limit) + " bytes");
}

// zlib with windowBits chosen by the caller: 15+16 gzip, 15 zlib, -15 raw deflate.
Result<std::string> inflate_with(std::string_view in, int window_bits, const char* name,
                                 size_t limit, bool partial) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) return Status(Errc::internal, "inflateInit2 failed");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, inflateEnd);
  std::string out;
  const auto* next = reinterpret_cast<const Bytef*>(in.data());
  size_t left = in.size();
  char buf[kChunk];
  for (;;) {
    // zlib counts in uInt; feed at most UINT_MAX at a time.
    if (zs.avail_in == 0 && left > 0) {
      zs.next_in = const_cast<Bytef*>(next);
      zs.avail_in = static_cast<uInt>(std::min<size_t>(left, UINT_MAX));
      next += zs.avail_in;
      left -= zs.avail_in;
    }
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    int rc = inflate(&zs, Z_NO_FLUSH);
    size_t produced = sizeof buf - zs.avail_out;
    if (!append_within(out, buf, produced, limit))
      return partial ? Result<std::string>(std::move(out)) : too_big(name, limit);
    if (rc == Z_STREAM_END) {
      // gzip allows several members back to back (RFC 1952 2.2).
      bool more = zs.avail_in > 0 || left > 0;
      if (more && window_bits > 15) {
        if (inflateReset(&zs) != Z_OK) return Status(Errc::internal, "inflateReset failed");
        continue;
      }
      return out;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && left == 0)
      return fail_or_keep(out, partial,
                          Status(Errc::corruption, std::string(name) + " stream is truncated"));
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      return fail_or_keep(
          out, partial,
          Status(Errc::corruption, std::string(name) + " data does not decode" +
                                       (zs.msg ? std::string(": ") + zs.msg : std::string())));
  }
}

Result<std::string> deflate_with(std::string_view in, int window_bits) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    return Status(Errc::internal, "deflateInit2 failed");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, deflateEnd);
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 64);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) return Status(Errc::internal, "deflate failed");
  out.resize(zs.total_out);
  return out;
}

Result<std::string> brotli_decode(std::string_view in, size_t limit, bool partial) {
  std::unique_ptr<BrotliDecoderState, void (*)(BrotliDecoderState*)> st(
      BrotliDecoderCreateInstance(nullptr, nullptr, nullptr), BrotliDecoderDestroyInstance);
  if (!st) return Status(Errc::internal, "brotli decoder allocation failed");
  std::string out;
  size_t avail_in = in.size();
  const auto* next_in = reinterpret_cast<const uint8_t*>(in.data());
  uint8_t buf[kChunk];
  for (;;) {
    size_t avail_out = sizeof buf;
    uint8_t* next_out = buf;
    auto rc = BrotliDecoderDecompressStream(st.get(), &avail_in, &next_in, &avail_out, &next_out,
                                            nullptr);
    size_t produced = sizeof buf - avail_out;
    if (!append_within(out, reinterpret_cast<char*>(buf), produced, limit))
      return partial ? Result<std::string>(std::move(out)) : too_big("br", limit);
    if (rc == BROTLI_DECODER_RESULT_SUCCESS) return out;
    if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
      return fail_or_keep(out, partial, Status(Errc::corruption, "br stream is truncated"));
    if (rc == BROTLI_DECODER_RESULT_ERROR)
      return fail_or_keep(out, partial,
                          Status(Errc::corruption,
                                 std::string("br data does not decode: ") +
                                     BrotliDecoderErrorString(BrotliDecoderGetErrorCode(st.get()))));
    // NEEDS_MORE_OUTPUT: loop with a fresh buffer.
  }
}

Result<std::string> brotli_encode(std::string_view in) {
  size_t size = BrotliEncoderMaxCompressedSize(in.size());
  if (size == 0) size = in.size() + 1024;
  std::string out(size, '\0');
  if (!BrotliEncoderCompress(BROTLI_DEFAULT_QUALITY > 9 ? 9 : BROTLI_DEFAULT_QUALITY,
                             BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, in.size(),
                             reinterpret_cast<const uint8_t*>(in.data()), &size,
                             reinterpret_cast<uint8_t*>(out.data())))
    return Status(Errc::internal, "brotli compression failed");
  out.resize(size);
  return out;
}

Result<std::string> zstd_decode(std::string_view in, size_t limit, bool partial) {
  std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> ds(ZSTD_createDStream(),
                                                              ZSTD_freeDStream);
  if (!ds) return Status(Errc::internal, "zstd decoder allocation failed");
  ZSTD_initDStream(ds.get());
  std::string out;
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  char buf[kChunk];
  for (;;) {
    ZSTD_outBuffer output{buf, sizeof buf, 0};
    size_t rc = ZSTD_decompressStream(ds.get(), &output, &input);
    if (ZSTD_isError(rc))
      return fail_or_keep(out, partial,
                          Status(Errc::corruption,
                                 std::string("zstd data does not decode: ") + ZSTD_getErrorName(rc)));
    if (!append_within(out, buf, output.pos, limit))
      return partial ? Result<std::string>(std::move(out)) : too_big("zstd", limit);
    if (rc == 0 && input.pos == input.size) return out;
    // All input consumed, output not full, frame not finished: the stream was cut short.
    if (input.pos == input.size && output.pos < output.size)
      return fail_or_keep(out, partial, Status(Errc::corruption, "zstd stream is truncated"));
  }
}

Result<std::string> zstd_encode(std::string_view in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  if (ZSTD_isError(n))
    return Status(Errc::internal, std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

bool known(std::string_view c) {
  return c == "gzip" || c == "x-gzip" || c == "deflate" || c == "br" || c == "zstd";
}

Result<std::vector<std::string>> checked_codings(std::string_view ce, const CodingLimits& limits) {
  auto codings = parse_content_encoding(ce);
  if (codings.size() > limits.max_layers)
    return Status(Errc::invalid_argument, "more than " + std::to_string(limits.max_layers) +
                                              " content codings in '" + std::string(ce) + "'");
  for (const auto& c : codings)
    if (!known(c)) return Status(Errc::invalid_argument, "unsupported content coding '" + c + "'");
  return codings;
}

}  // namespace

std::vector<std::string> parse_content_encoding(std::string_view ce) {
  std::vector<std::string> out;
  while (!ce.empty()) {
    auto comma = ce.find(',');
    auto item = lower_trim(ce.substr(0, comma));
    if (!item.empty() && item != "identity") out.push_back(std::move(item));
    if (comma == std::string_view::npos) break;
    ce.remove_prefix(comma + 1);
  }
  return out;
}

bool is_supported_content_encoding(std::string_view ce) {
  auto codings = parse_content_encoding(ce);
  return std::all_of(codings.begin(), codings.end(), [](const auto& c) { return known(c); });
}

Result<std::string> decode_content(std::string_view data, std::string_view ce,
                                   const CodingLimits& limits) {
  auto codings = checked_codings(ce, limits);
  if (!codings.ok()) return codings.status();
  std::string current(data);
  // An empty body stays empty whatever the header says (HEAD, 204, 304 keep the header).
  if (current.empty()) return current;
  for (auto it = codings->rbegin(); it != codings->rend(); ++it) {
    const auto& c = *it;
    Result<std::string> next = std::string();
    if (c == "gzip" || c == "x-gzip") {
      next = inflate_with(current, 15 + 16, "gzip", limits.max_output, limits.partial);
    } else if (c == "deflate") {
      // RFC 9110 says zlib format; some servers send raw deflate. A zlib header is a CMF byte with
      // method 8 and a check value making the first 16 bits a multiple of 31.
      bool zlib_header =
          current.size() >= 2 && (static_cast<uint8_t>(current[0]) & 0x0f) == 8 &&
          ((static_cast<uint8_t>(current[0]) << 8) | static_cast<uint8_t>(current[1])) % 31 == 0;
      next = inflate_with(current, zlib_header ? 15 : -15, "deflate", limits.max_output,
                          limits.partial);
    } else if (c == "br") {
      next = brotli_decode(current, limits.max_output, limits.partial);
    } else {
      next = zstd_decode(current, limits.max_output, limits.partial);
    }
    if (!next.ok()) return next.status();
    current = std::move(next.value());
  }
  return current;
}

Result<std::string> encode_content(std::string_view data, std::string_view ce,
                                   const CodingLimits& limits) {
  auto codings = checked_codings(ce, limits);
  if (!codings.ok()) return codings.status();
  std::string current(data);
  for (const auto& c : *codings) {
    Result<std::string> next = std::string();
    if (c == "gzip" || c == "x-gzip")
      next = deflate_with(current, 15 + 16);
    else if (c == "deflate")
      next = deflate_with(current, 15);
    else if (c == "br")
      next = brotli_encode(current);
    else
      next = zstd_encode(current);
    if (!next.ok()) return next.status();
    current = std::move(next.value());
  }
  return current;
}

}  // namespace retake::codec
