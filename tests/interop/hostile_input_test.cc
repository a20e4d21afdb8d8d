// Bad input: truncated, malformed, huge or hostile files give clear errors with a position and
// never crash or hang. The fuzz-style cases use a fixed seed so failures reproduce.
#include <doctest/doctest.h>

#include <random>

#include "interop/codec.h"
#include "interop/interop.h"
#include "test_support.h"

using namespace retake;
using namespace retake::interop;
using namespace retake::interop::test;

TEST_CASE(
    "format detection tells HAR, mitmproxy and retake JSON apart after a BOM and whitespace") {
  CHECK(detect_format("\xEF\xBB\xBF \n {\"log\": {}}") == Format::har);
  CHECK(detect_format("{\"pages\": [], \"log\": {\"entries\": []}}") == Format::har);
  CHECK(detect_format("8:5:hello,]") == Format::unknown);  // not a dict record
  CHECK(detect_format(tn_dict({{"a", tn_int(1)}})) == Format::mitmproxy);
  CHECK(detect_format("123456:{partial") == Format::mitmproxy);
  CHECK(detect_format("{\"retake_flows\":1,\"flows\":[]}") == Format::retake_json);
  CHECK(detect_format("[]") == Format::retake_json);
  CHECK(detect_format("") == Format::unknown);
  CHECK(detect_format("GET / HTTP/1.1\r\n") == Format::unknown);
  CHECK(detect_format("{\"other\": 1}") == Format::unknown);
  CHECK_FALSE(import_any("hello").ok());
}

TEST_CASE("deeply nested JSON is refused with the depth limit and the byte offset") {
  std::string deep = "{\"log\":" + std::string(100000, '[');
  auto r = import_har(deep);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::parse_error);
  CHECK(r.status().message().find("nesting deeper than 64 levels") != std::string::npos);
  CHECK(r.status().message().find("at byte 70 ") != std::string::npos);
}

TEST_CASE("truncated JSON names where it ended") {
  auto bytes = read_fixture("har/fiddler-style.har");
  auto r = import_har(std::string_view(bytes).substr(0, 200));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().starts_with("JSON syntax error at byte 200 (line "));
  auto garbage = import_har("{\"log\":{\"entries\":[]}} trailing");
  REQUIRE_FALSE(garbage.ok());
  CHECK(garbage.status().message().find("at byte 23 (line 1, column 24)") != std::string::npos);
}

TEST_CASE("wrong types in HAR name the JSON path") {
  auto r = import_har(R"({"log":{"entries":[{"startedDateTime":"2026-01-01T00:00:00Z",
      "request":{"method":"GET","url":"http://x/","headers":{"a":"b"}},"response":{"status":200}}]}})");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "entry 0: log.entries[0].request.headers: expected an array");
  auto no_entries = import_har(R"({"log":{"entries":5}})");
  REQUIRE_FALSE(no_entries.ok());
  CHECK(no_entries.status().message() == "log.entries: expected an array");
  auto bad_time = import_har(R"({"log":{"entries":[{"startedDateTime":"yesterday",
      "request":{"method":"GET","url":"http://x/"},"response":{"status":200}}]}})");
  REQUIRE_FALSE(bad_time.ok());
  CHECK(bad_time.status().message().find("log.entries[0].startedDateTime: not an ISO 8601") !=
        std::string::npos);
  auto bad_ws = import_har(R"({"log":{"entries":[{"startedDateTime":"2026-01-01T00:00:00Z",
      "request":{"method":"GET","url":"ws://x/"},"response":{"status":101},
      "_webSocketMessages":[{"type":"send","opcode":2,"data":"%%%"}]}]}})");
  REQUIRE_FALSE(bad_ws.ok());
  CHECK(bad_ws.status().message() ==
        "entry 0: log.entries[0]._webSocketMessages[0].data: invalid base64");
}

TEST_CASE("deeply nested tnetstrings are refused at a bounded depth") {
  std::string nested = "0:]";
  for (int i = 0; i < 500; ++i) nested = tn(nested, ']');
  auto r = import_mitmproxy(nested);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("nesting deeper than 64 levels") != std::string::npos);
  CHECK(r.status().message().find("byte ") != std::string::npos);
}

TEST_CASE("absurd tnetstring lengths are refused before anything is read") {
  auto r = import_mitmproxy("99999999999:abc}");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() ==
        "byte 0, record 0: length 99999999999 runs past the end of the data (4 bytes left)");
  auto digits = import_mitmproxy("99999999999999999999:x}");
  REQUIRE_FALSE(digits.ok());
  CHECK(digits.status().message().find("longer than 12 digits") != std::string::npos);
  // Inside a record: an element claiming more than its container holds.
  auto inner = import_mitmproxy(tn("5:abc,", '}'));
  REQUIRE_FALSE(inner.ok());
  CHECK(inner.status().message().find("byte 2") != std::string::npos);
}

TEST_CASE("input size and entry count caps are enforced") {
  auto bytes = read_fixture("har/insomnia-style.har");
  ImportOptions small;
  small.max_input_bytes = 100;
  auto r = import_any(bytes, small);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::resource_exhausted);
  ImportOptions one;
  one.max_flows = 1;
  auto r2 = import_har(bytes, one);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.status().code() == Errc::resource_exhausted);
  auto r3 = import_mitmproxy(read_fixture("mitm/http.mitm"), one);
  REQUIRE_FALSE(r3.ok());
  CHECK(r3.status().code() == Errc::resource_exhausted);
}

namespace {

const char* kFixtures[] = {"mitm/http.mitm",        "mitm/https.mitm",
                           "mitm/websocket.mitm",   "har/chromium-playwright.har",
                           "har/firefox-style.har", "har/charles-style.har",
                           "har/fiddler-style.har", "har/insomnia-style.har",
                           "har/bad-entries.har"};

// Every importer on the bytes; every exporter on whatever imported. Must not crash; a failure
// must say something.
void exercise(std::string_view bytes, size_t& ok, size_t& failed) {
  for (int which = 0; which < 4; ++which) {
    ImportOptions options;
    options.skip_bad = which % 2 == 1;
    auto r = which == 0   ? import_any(bytes, options)
             : which == 1 ? import_har(bytes, options)
             : which == 2 ? import_mitmproxy(bytes, options)
                          : import_retake_json(bytes, options);
    if (!r.ok()) {
      ++failed;
      REQUIRE_FALSE(r.status().message().empty());
      continue;
    }
    ++ok;
    for (const auto& f : r->flows) {
      (void)export_curl(f);
      (void)export_raw_http(f);
      auto back = flow_from_json(flow_to_json(f));
      REQUIRE(back.ok());
      REQUIRE(back.value() == f);
    }
    if (!r->flows.empty()) REQUIRE(import_har(export_har(r->flows)).ok());
  }
}

}  // namespace

TEST_CASE("random bytes never crash an importer") {
  std::mt19937 rng(12345);
  size_t ok = 0, failed = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string bytes(rng() % 512, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() & 0xff);
    // Some start like the real thing, so the parsers get past the first byte.
    if (i % 3 == 1) bytes = "{\"log\":{\"entries\":[" + bytes;
    if (i % 3 == 2) bytes = std::to_string(bytes.size()) + ":" + bytes;
    exercise(bytes, ok, failed);
  }
  CHECK(failed > 0);
}

TEST_CASE("mutated and truncated real fixtures give a result or a clean error, never a crash") {
  std::mt19937 rng(2026);
  size_t ok = 0, failed = 0;
  for (const char* name : kFixtures) {
    CAPTURE(name);
    const std::string original = read_fixture(name);
    REQUIRE_FALSE(original.empty());
    exercise(original, ok, failed);
    for (int i = 0; i < 300; ++i) {
      std::string bytes = original;
      switch (i % 5) {
        case 0:  // truncate anywhere
          bytes.resize(rng() % bytes.size());
          break;
        case 1:  // flip a few bytes
          for (int k = 0; k < 1 + static_cast<int>(rng() % 8); ++k)
            bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
          break;
        case 2:  // a digit somewhere: lengths and numbers go wrong
          bytes[rng() % bytes.size()] = static_cast<char>('0' + rng() % 10);
          break;
        case 3: {  // cut a slice out
          size_t at = rng() % bytes.size();
          bytes.erase(at, rng() % 64);
          break;
        }
        case 4: {  // duplicate a slice
          size_t at = rng() % bytes.size();
          bytes.insert(rng() % bytes.size(), bytes.substr(at, rng() % 64));
          break;
        }
      }
      exercise(bytes, ok, failed);
    }
  }
  CHECK(ok > 0);
  CHECK(failed > 0);
}

TEST_CASE(
    "certificate name reading survives every truncation and corruption of a real certificate") {
  auto mitm = read_fixture("mitm/https.mitm");
  auto begin = mitm.find("-----BEGIN CERTIFICATE-----");
  auto end = mitm.find("-----END CERTIFICATE-----", begin);
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  auto pem = mitm.substr(begin, end + 25 - begin);
  auto names = detail::certificate_names(pem);
  REQUIRE(names.has_value());
  CHECK(names->subject == "O=retake fixtures,CN=upstream.retake.test");
  auto der = *detail::base64_decode(pem.substr(27, pem.size() - 27 - 25));
  size_t readable = 0;
  for (size_t n = 0; n < der.size(); ++n)
    if (detail::certificate_names(der.substr(0, n))) ++readable;
  CHECK(readable == 0);  // a cut certificate never reads as one
  std::mt19937 rng(99);
  for (int i = 0; i < 2000; ++i) {
    auto bad = der;
    bad[rng() % bad.size()] = static_cast<char>(rng() & 0xff);
    (void)detail::certificate_names(bad);
  }
}

TEST_CASE("whitespace between mitmproxy records is tolerated") {
  auto bytes = read_fixture("mitm/https.mitm");
  auto r = import_any("\n  " + bytes + "\n");
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->flows.size() == 3);
}

TEST_CASE("a JSON document that expands past the memory bound is refused") {
  std::string zeros = "{\"log\":{\"entries\":[";
  for (int i = 0; i < 200000; ++i) zeros += "0,";
  zeros += "0]}}";
  ImportOptions tight;
  tight.max_json_memory = 1 << 20;
  auto r = import_har(zeros, tight);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::resource_exhausted);
  CHECK(r.status().message().find("bytes of memory once parsed") != std::string::npos);
  // The default bound (64 MiB + 8 x size) lets the same file parse; its entries are wrong.
  auto d = import_har(zeros);
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().code() == Errc::parse_error);
  CHECK(d.status().message() == "entry 0: log.entries[0]: expected an object");
}
