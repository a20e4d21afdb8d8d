#include "query/content_decoding.h"

#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

#include <array>
#include <cstdint>
#include <vector>

#include "flow/flow.h"

namespace retake::query {

namespace {

constexpr size_t kChunk = 16 * 1024;
// More layers than this is not something a real server sends; refuse rather than loop.
constexpr size_t kMaxLayers = 4;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// window_bits as for inflateInit2: 15+32 auto-detects gzip or zlib, -15 is raw deflate.
bool inflate_into(std::string_view in, int window_bits, size_t cap, std::string& out) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) return false;
  out.clear();
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::array<char, kChunk> buf;
  int rc = Z_OK;
  while (out.size() < cap) {
    zs.next_out = reinterpret_cast<Bytef*>(buf.data());
    zs.avail_out = static_cast<uInt>(buf.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    size_t produced = buf.size() - zs.avail_out;
    out.append(buf.data(), std::min(produced, cap - out.size()));
    if (rc == Z_STREAM_END) break;
    // Out of input (a truncated body) or corrupt: keep what decoded so far.
    if (rc != Z_OK || (produced == 0 && zs.avail_in == 0)) break;
  }
  inflateEnd(&zs);
  return rc == Z_STREAM_END || !out.empty();
}

bool brotli_into(std::string_view in, size_t cap, std::string& out) {
  BrotliDecoderState* state = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
  if (state == nullptr) return false;
  out.clear();
  size_t avail_in = in.size();
  const uint8_t* next_in = reinterpret_cast<const uint8_t*>(in.data());
  std::array<uint8_t, kChunk> buf;
  BrotliDecoderResult rc = BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT;
  while (out.size() < cap && rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) {
    size_t avail_out = buf.size();
    uint8_t* next_out = buf.data();
    rc = BrotliDecoderDecompressStream(state, &avail_in, &next_in, &avail_out, &next_out, nullptr);
    size_t produced = buf.size() - avail_out;
    out.append(reinterpret_cast<const char*>(buf.data()), std::min(produced, cap - out.size()));
  }
  BrotliDecoderDestroyInstance(state);
  return rc == BROTLI_DECODER_RESULT_SUCCESS || !out.empty();
}

bool zstd_into(std::string_view in, size_t cap, std::string& out) {
  ZSTD_DStream* ds = ZSTD_createDStream();
  if (ds == nullptr) return false;
  out.clear();
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  std::vector<char> buf(ZSTD_DStreamOutSize());
  bool ok = true;
  bool finished = false;
  while (out.size() < cap) {
    ZSTD_outBuffer output{buf.data(), buf.size(), 0};
    size_t rc = ZSTD_decompressStream(ds, &output, &input);
    if (ZSTD_isError(rc)) {
      ok = false;
      break;
    }
    out.append(buf.data(), std::min(output.pos, cap - out.size()));
    if (rc == 0) {
      finished = true;
      break;
    }
    if (output.pos == 0 && input.pos == input.size) break;  // truncated input
  }
  ZSTD_freeDStream(ds);
  return (ok && finished) || !out.empty();
}

bool decode_one(std::string_view encoding, std::string_view in, size_t cap, std::string& out) {
  using flow::iequals;
  if (iequals(encoding, "gzip") || iequals(encoding, "x-gzip"))
    return inflate_into(in, 15 + 32, cap, out);
  if (iequals(encoding, "deflate")) {
    // "deflate" should be zlib-wrapped, but servers often send raw deflate.
    return inflate_into(in, 15, cap, out) || inflate_into(in, -15, cap, out);
  }
  if (iequals(encoding, "br")) return brotli_into(in, cap, out);
  if (iequals(encoding, "zstd")) return zstd_into(in, cap, out);
  return false;
}

}  // namespace

bool decode_content(std::string_view encoding, std::string_view data, size_t cap,
                    std::string& out) {
  std::array<std::string_view, kMaxLayers> layers;
  size_t count = 0;
  while (true) {
    size_t comma = encoding.find(',');
    std::string_view layer = trim(encoding.substr(0, comma));
    if (!layer.empty() && !flow::iequals(layer, "identity")) {
      if (count == kMaxLayers) return false;
      layers[count++] = layer;
    }
    if (comma == std::string_view::npos) break;
    encoding.remove_prefix(comma + 1);
  }
  if (count == 0) return false;
  // Layers were applied in the order listed, so they come off in reverse.
  std::string scratch;
  std::string_view input = data;
  for (size_t i = count; i-- > 0;) {
    std::string& target = ((count - 1 - i) % 2 == (count - 1) % 2) ? out : scratch;
    if (!decode_one(layers[i], input, cap, target)) return false;
    input = target;
  }
  return true;
}

}  // namespace retake::query
