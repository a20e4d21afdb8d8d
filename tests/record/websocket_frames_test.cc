// WebSocketWatcher on wire bytes fed at every fragment size (KJ's habit): the messages it
// reassembles must not depend on how the bytes were split.
#include "record/websocket_frames.h"

#include <doctest/doctest.h>
#include <zlib.h>

using namespace retake;

namespace {

// One frame as a client (masked) or a server (unmasked) sends it.
std::string frame(bool fin, uint8_t opcode, const std::string& payload, bool masked) {
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | opcode));
  uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() < 65536) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size() & 0xff));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xff));
  }
  const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) out.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < payload.size(); ++i)
    out.push_back(masked ? static_cast<char>(payload[i] ^ key[i & 3]) : payload[i]);
  return out;
}

flow::WebSocket feed_split(const std::string& wire, size_t piece, bool from_client,
                           record::WebSocketLimits limits = {}) {
  record::WebSocketWatcher w(from_client, limits);
  flow::WebSocket out;
  for (size_t i = 0; i < wire.size(); i += piece)
    CHECK(w.feed(std::string_view(wire).substr(i, piece), out, 42));
  return out;
}

// A raw-deflate compressor as a permessage-deflate sender runs it: one stream across messages
// (context takeover) unless reset, each message flushed with Z_SYNC_FLUSH and the 00 00 FF FF
// tail removed (RFC 7692 §7.2.1).
struct Deflater {
  z_stream z{};
  Deflater() { REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK); }
  ~Deflater() { deflateEnd(&z); }
  std::string message(const std::string& in) {
    std::string out(in.size() + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    size_t done = 0;
    do {
      if (done == out.size()) out.resize(out.size() * 2);
      z.next_out = reinterpret_cast<Bytef*>(out.data() + done);
      z.avail_out = static_cast<uInt>(out.size() - done);
      REQUIRE(deflate(&z, Z_SYNC_FLUSH) == Z_OK);
      done = out.size() - z.avail_out;
    } while (z.avail_out == 0);
    out.resize(done);
    REQUIRE(out.size() >= 4);
    REQUIRE(out.substr(out.size() - 4) == std::string("\x00\x00\xff\xff", 4));
    out.resize(out.size() - 4);
    return out;
  }
};

// A frame with RSV1 set (the first frame of a compressed message).
std::string compressed_frame(bool fin, uint8_t opcode, const std::string& payload, bool masked) {
  auto out = frame(fin, opcode, payload, masked);
  out[0] = static_cast<char>(out[0] | 0x40);
  return out;
}

flow::Headers extensions(std::initializer_list<const char*> values) {
  flow::Headers h;
  for (auto v : values) h.add("Sec-WebSocket-Extensions", v);
  return h;
}

}  // namespace

TEST_CASE("permessage-deflate negotiation is read from the 101 and offers are filtered") {
  auto none = record::negotiated_deflate(extensions({}));
  CHECK_FALSE(none.enabled);
  auto d = record::negotiated_deflate(
      extensions({"permessage-deflate; server_no_context_takeover; client_max_window_bits=10"}));
  CHECK(d.enabled);
  CHECK(d.server_no_context_takeover);
  CHECK_FALSE(d.client_no_context_takeover);
  CHECK(record::negotiated_deflate(extensions({"x-other", "Permessage-Deflate ;client_no_context_takeover"}))
            .client_no_context_takeover);
  CHECK_FALSE(record::negotiated_deflate(extensions({"x-webkit-deflate-frame"})).enabled);
  CHECK(record::deflate_offers(extensions(
            {"x-webkit-deflate-frame, permessage-deflate;client_max_window_bits",
             "permessage-deflate; server_no_context_takeover"})) ==
        "permessage-deflate; client_max_window_bits, permessage-deflate; server_no_context_takeover");
  CHECK(record::deflate_offers(extensions({"x-webkit-deflate-frame"})).empty());
}

TEST_CASE("the handshake's key and accept follow RFC 6455, and Upgrade names websocket") {
  // RFC 6455 §1.3's worked example.
  CHECK(record::websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  auto key = record::new_websocket_key();
  CHECK(key.size() == 24);  // 16 bytes in base64
  CHECK(key.substr(22) == "==");
  CHECK(record::new_websocket_key() != key);
  flow::Headers h;
  h.add("Upgrade", " WebSocket");
  CHECK(record::is_websocket_upgrade(h));
  flow::Headers other;
  other.add("upgrade", "h2c");
  CHECK_FALSE(record::is_websocket_upgrade(other));
}

TEST_CASE("compressed messages are stored inflated, with and without context takeover") {
  std::string big;
  for (int i = 0; i < 5000; ++i) big += "line " + std::to_string(i % 37) + " of a chatty feed\n";
  for (bool takeover : {true, false}) {
    CAPTURE(takeover);
    for (bool from_client : {true, false}) {
      CAPTURE(from_client);
      Deflater sender;
      auto message = [&](const std::string& text) {
        auto out = sender.message(text);
        if (!takeover) deflateReset(&sender.z);
        return out;
      };
      auto m1 = message("hello hello hello");
      auto m2 = message("hello hello hello again");  // back-references into m1 with takeover
      auto m3 = message(big);
      // m3 split in two frames: RSV1 on the first only.
      std::string wire = compressed_frame(true, 1, m1, from_client) +
                         frame(true, 9, "ping", from_client) +
                         compressed_frame(true, 1, m2, from_client) +
                         compressed_frame(false, 2, m3.substr(0, m3.size() / 2), from_client) +
                         frame(true, 0, m3.substr(m3.size() / 2), from_client) +
                         frame(true, 1, "plain", from_client);  // uncompressed still allowed
      record::PerMessageDeflate deflate;
      deflate.enabled = true;
      (from_client ? deflate.client_no_context_takeover : deflate.server_no_context_takeover) =
          !takeover;
      for (size_t piece : {size_t{1}, size_t{5}, size_t{64}, wire.size()}) {
        CAPTURE(piece);
        record::WebSocketWatcher w(from_client, {}, deflate);
        flow::WebSocket out;
        for (size_t i = 0; i < wire.size(); i += piece)
          REQUIRE_MESSAGE(w.feed(std::string_view(wire).substr(i, piece), out, 7), w.error());
        REQUIRE(out.messages.size() == 5);
        CHECK(out.messages[0].payload == "hello hello hello");
        CHECK(out.messages[0].compressed);
        CHECK_FALSE(out.messages[0].truncated);
        CHECK(out.messages[1].payload == "ping");
        CHECK_FALSE(out.messages[1].compressed);
        CHECK(out.messages[2].payload == "hello hello hello again");
        CHECK(out.messages[3].opcode == 2);
        CHECK(out.messages[3].payload == big);
        CHECK(out.messages[4].payload == "plain");
        CHECK_FALSE(out.messages[4].compressed);
      }
    }
  }
}

TEST_CASE("a compressed message is capped like any other, and a deflate bomb stops the watcher") {
  Deflater sender;
  std::string zeros(1u << 20, '\0');
  auto wire = compressed_frame(true, 2, sender.message(zeros), false) +
              compressed_frame(true, 1, sender.message("after"), false);
  record::PerMessageDeflate deflate;
  deflate.enabled = true;
  record::WebSocketLimits limits;
  limits.payload_cap = 1000;
  {
    record::WebSocketWatcher w(false, limits, deflate);
    flow::WebSocket out;
    REQUIRE_MESSAGE(w.feed(wire, out, 1), w.error());
    REQUIRE(out.messages.size() == 2);
    CHECK(out.messages[0].payload == zeros.substr(0, 1000));
    CHECK(out.messages[0].truncated);
    CHECK(w.messages_truncated() == 1);
    CHECK_FALSE(out.messages[1].truncated);
    CHECK(out.messages[1].payload == "after");  // the context survived the cut
  }
  limits.max_inflated_message = 64u << 10;
  record::WebSocketWatcher w(false, limits, deflate);
  flow::WebSocket out;
  CHECK_FALSE(w.feed(wire, out, 1));
  CHECK(w.error().find("inflates past") != std::string::npos);
  CHECK(out.messages.empty());
}

TEST_CASE("masked client frames are unmasked and fragments reassembled at every split size") {
  std::string big(70000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  std::string wire = frame(true, 1, "hello", true) + frame(false, 2, "ab", true) +
                     frame(true, 9, "ping!", true) +  // a control frame between fragments
                     frame(false, 0, "cd", true) + frame(true, 0, "", true) +
                     frame(true, 1, big.substr(0, 300), true) + frame(true, 2, big, true) +
                     frame(true, 8, std::string("\x03\xe8") + "bye", true);
  for (size_t piece :
       {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{16}, size_t{31}, wire.size()}) {
    CAPTURE(piece);
    auto ws = feed_split(wire, piece, true);
    REQUIRE(ws.messages.size() == 6);
    CHECK(ws.messages[0].payload == "hello");
    CHECK(ws.messages[0].opcode == 1);
    CHECK(ws.messages[0].from_client);
    CHECK(ws.messages[0].timestamp == 42);
    CHECK(ws.messages[1].opcode == 9);
    CHECK(ws.messages[1].payload == "ping!");
    CHECK(ws.messages[2].opcode == 2);
    CHECK(ws.messages[2].payload == "abcd");
    CHECK(ws.messages[3].payload == big.substr(0, 300));
    CHECK(ws.messages[4].payload == big);
    CHECK(ws.messages[5].opcode == 8);
    CHECK(ws.close_code == 1000);
    CHECK(ws.close_reason == "bye");
    CHECK(ws.closed_by_client);
  }
}

TEST_CASE("server frames are unmasked on the wire and a close without status records 1005") {
  std::string wire = frame(true, 1, "hi", false) + frame(true, 8, "", false);
  auto ws = feed_split(wire, 1, false);
  REQUIRE(ws.messages.size() == 2);
  CHECK_FALSE(ws.messages[0].from_client);
  CHECK(ws.messages[0].payload == "hi");
  CHECK(ws.close_code == 1005);
  CHECK_FALSE(ws.closed_by_client);
}

TEST_CASE("payloads beyond the cap are cut, and messages beyond the count limit are dropped") {
  record::WebSocketLimits limits;
  limits.payload_cap = 4;
  limits.max_messages = 2;
  record::WebSocketWatcher w(true, limits);
  flow::WebSocket out;
  std::string wire = frame(false, 1, "abcdef", true) + frame(true, 0, "gh", true) +
                     frame(true, 1, "x", true) + frame(true, 1, "y", true);
  CHECK(w.feed(wire, out, 1));
  REQUIRE(out.messages.size() == 2);
  CHECK(out.messages[0].payload == "abcd");
  CHECK(out.messages[0].truncated);
  CHECK_FALSE(out.messages[0].compressed);
  CHECK_FALSE(out.messages[1].truncated);
  CHECK(w.messages_truncated() == 1);
  CHECK(w.messages_dropped() == 1);
}

TEST_CASE("invalid framing stops the watcher with a reason instead of misreading the stream") {
  for (auto [wire, why] :
       {std::pair{frame(true, 3, "x", true), "reserved opcode"},
        std::pair{frame(true, 0, "x", true), "continuation"},
        std::pair{frame(false, 9, "x", true), "fragmented control"},
        std::pair{frame(true, 8, std::string(126, 'x'), true), "125"},
        std::pair{std::string("\xc1\x80\x00\x00\x00\x00", 6), "RSV1 set without"},
        std::pair{std::string("\xa1\x80\x00\x00\x00\x00", 6), "RSV2/RSV3"}}) {
    CAPTURE(why);
    record::WebSocketWatcher w(true, {});
    flow::WebSocket out;
    CHECK_FALSE(w.feed(wire, out, 1));
    CHECK(w.failed());
    CHECK(w.error().find(why) != std::string::npos);
    CHECK_FALSE(w.feed("more", out, 1));
  }
}

TEST_CASE("RSV1 where permessage-deflate forbids it, and corrupt deflate data, stop the watcher") {
  record::PerMessageDeflate deflate;
  deflate.enabled = true;
  for (auto [wire, why] :
       {std::pair{frame(false, 1, "a", true) + compressed_frame(true, 0, "b", true),
                  "continuation"},
        std::pair{compressed_frame(true, 9, "x", true), "control frame"},
        std::pair{compressed_frame(true, 1, std::string("\xff\xff\xff\xff", 4), true),
                  "corrupt deflate data"}}) {
    CAPTURE(why);
    record::WebSocketWatcher w(true, {}, deflate);
    flow::WebSocket out;
    CHECK_FALSE(w.feed(wire, out, 1));
    CHECK(w.error().find(why) != std::string::npos);
  }
}
