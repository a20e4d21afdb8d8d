// WebSocketWatcher on wire bytes fed at every fragment size (KJ's habit): the messages it
// reassembles must not depend on how the bytes were split.
#include "record/websocket_frames.h"

#include <doctest/doctest.h>

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

}  // namespace

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
  CHECK(w.messages_truncated() == 1);
  CHECK(w.messages_dropped() == 1);
}

TEST_CASE("invalid framing stops the watcher with a reason instead of misreading the stream") {
  for (auto [wire, why] :
       {std::pair{frame(true, 3, "x", true), "reserved opcode"},
        std::pair{frame(true, 0, "x", true), "continuation"},
        std::pair{frame(false, 9, "x", true), "fragmented control"},
        std::pair{frame(true, 8, std::string(126, 'x'), true), "125"},
        std::pair{std::string("\xc1\x80\x00\x00\x00\x00", 6), "reserved bits"}}) {
    CAPTURE(why);
    record::WebSocketWatcher w(true, {});
    flow::WebSocket out;
    CHECK_FALSE(w.feed(wire, out, 1));
    CHECK(w.failed());
    CHECK(w.error().find(why) != std::string::npos);
    CHECK_FALSE(w.feed("more", out, 1));
  }
}
