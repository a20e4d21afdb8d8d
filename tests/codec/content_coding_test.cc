#include "codec/content_coding.h"

#include <doctest/doctest.h>

#include <fstream>
#include <random>
#include <sstream>

using namespace retake;
using namespace retake::codec;

namespace {
std::string fixture(const std::string& name) {
  std::ifstream in(std::string(RETAKE_FIXTURES_DIR) + "/diff/coding/" + name, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string sample(int lines = 2000) {
  std::string s;
  std::mt19937 rng(7);
  for (int i = 0; i < lines; ++i)
    s += "{\"id\":" + std::to_string(rng() % 1000) + ",\"name\":\"x\"}\n";
  return s;
}
}  // namespace

TEST_CASE("every supported coding and stacked list round-trips") {
  const std::string text = sample();
  for (const char* ce : {"gzip", "x-gzip", "deflate", "br", "zstd", "identity", "", "gzip, br",
                         "br, zstd", "deflate, gzip", "GZIP", " zstd ,identity"}) {
    CAPTURE(ce);
    auto enc = encode_content(text, ce);
    REQUIRE_MESSAGE(enc.ok(), enc.status().to_string());
    if (!parse_content_encoding(ce).empty()) CHECK(enc.value() != text);
    auto dec = decode_content(enc.value(), ce);
    REQUIRE_MESSAGE(dec.ok(), dec.status().to_string());
    CHECK(dec.value() == text);
  }
}

TEST_CASE("stacked codings are undone last-applied first") {
  auto gz = encode_content("hello", "gzip");
  REQUIRE(gz.ok());
  auto both = encode_content("hello", "gzip, br");
  REQUIRE(both.ok());
  // "gzip, br" means gzip first, then br: undoing only br leaves the gzip bytes.
  auto outer = decode_content(both.value(), "br");
  REQUIRE(outer.ok());
  CHECK(outer.value() == gz.value());
}

TEST_CASE("bodies encoded by independent tools decode") {
  const auto plain = fixture("plain.txt");
  struct Row {
    const char* file;
    const char* ce;
  };
  for (auto row : {Row{"plain.txt.gz", "gzip"}, Row{"plain.two-members.gz", "gzip"},
                   Row{"plain.txt.zst", "zstd"}, Row{"plain.zlib", "deflate"},
                   Row{"plain.deflate-raw", "deflate"}}) {
    CAPTURE(row.file);
    auto dec = decode_content(fixture(row.file), row.ce);
    REQUIRE_MESSAGE(dec.ok(), dec.status().to_string());
    CHECK(dec.value() == plain);
  }
}

TEST_CASE("a decompression bomb is an error past the output cap, not an allocation") {
  const std::string zeros(8 << 20, '\0');
  CodingLimits small;
  small.max_output = 1 << 20;
  for (const char* ce : {"gzip", "deflate", "br", "zstd"}) {
    CAPTURE(ce);
    auto enc = encode_content(zeros, ce);
    REQUIRE(enc.ok());
    CHECK(enc.value().size() < zeros.size() / 100);
    auto dec = decode_content(enc.value(), ce, small);
    REQUIRE_FALSE(dec.ok());
    CHECK(dec.status().code() == Errc::resource_exhausted);
    auto fits = decode_content(enc.value(), ce);  // the 64 MiB default holds 8 MiB
    REQUIRE(fits.ok());
    CHECK(fits.value().size() == zeros.size());
  }
}

TEST_CASE("corrupt, truncated and unknown inputs are errors") {
  const std::string text = sample();
  for (const char* ce : {"gzip", "deflate", "br", "zstd"}) {
    CAPTURE(ce);
    auto enc = encode_content(text, ce);
    REQUIRE(enc.ok());
    auto cut = enc.value().substr(0, enc.value().size() / 2);
    auto dec = decode_content(cut, ce);
    REQUIRE_FALSE(dec.ok());
    CHECK(dec.status().code() == Errc::corruption);
    auto garbage = decode_content("this is not compressed at all, not even a little", ce);
    REQUIRE_FALSE(garbage.ok());
    CHECK(garbage.status().code() == Errc::corruption);
  }
  auto unknown = decode_content("x", "compress");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.status().code() == Errc::invalid_argument);
  CHECK_FALSE(encode_content("x", "lzma").ok());
  CHECK_FALSE(decode_content("x", "gzip, gzip, gzip, gzip, gzip").ok());
  CHECK(is_supported_content_encoding("gzip, br"));
  CHECK_FALSE(is_supported_content_encoding("gzip, sdch"));
}

TEST_CASE("an empty body decodes to empty whatever the header says") {
  for (const char* ce : {"gzip", "br", "zstd", "deflate"}) {
    auto dec = decode_content("", ce);
    REQUIRE(dec.ok());
    CHECK(dec.value().empty());
  }
}

TEST_CASE("a partial decode keeps what decoded before a break and cuts at the limit") {
  // Several zstd blocks (128 KiB each) and brotli meta-blocks, so half the stream holds
  // complete ones.
  const std::string text = sample(40000);
  CodingLimits lenient;
  lenient.partial = true;
  for (const char* ce : {"gzip", "deflate", "br", "zstd"}) {
    std::string coding = ce;
    CAPTURE(coding);
    auto enc = encode_content(text, ce);
    REQUIRE(enc.ok());
    // A body stored truncated at the recorder's cap: the start still decodes.
    auto cut = enc.value().substr(0, enc.value().size() / 2);
    auto dec = decode_content(cut, ce, lenient);
    REQUIRE_MESSAGE(dec.ok(), dec.status().message());
    CHECK_FALSE(dec.value().empty());
    CHECK(dec.value().size() < text.size());
    CHECK(text.compare(0, dec.value().size(), dec.value()) == 0);

    CodingLimits capped = lenient;
    capped.max_output = 100;
    auto head = decode_content(enc.value(), ce, capped);
    REQUIRE(head.ok());
    CHECK(head.value() == text.substr(0, 100));

    // Nothing decodable is still an error.
    auto garbage = decode_content("this is not compressed at all, not even a little", ce, lenient);
    CHECK_FALSE(garbage.ok());
  }
}
