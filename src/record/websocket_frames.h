// retake::record WebSocketWatcher: a passive RFC 6455 frame parser for one direction of a
// relayed WebSocket connection. The relay forwards every byte unchanged; this only watches the
// same bytes and reassembles messages into flow::WebSocket. Messages compressed with
// permessage-deflate are stored inflated (what the applications exchanged). Also the pieces of
// the opening handshake the relays read or write (upgrade detection, extension offers, the
// key and its accept value).
//
// Pure computation on bytes: no I/O, no sockets. Depends on src/flow, zlib and OpenSSL's
// libcrypto (privately). Not thread-safe (one per direction, owned by the connection's
// coroutine).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "flow/flow.h"

namespace retake::record {

// Bounds on what one WebSocket flow stores. The relay forwards everything regardless.
struct WebSocketLimits {
  // Payload bytes stored per message; the rest is counted, not stored (message truncated).
  // Default: 16 MiB (the recorder passes its body_cap).
  size_t payload_cap = 16u << 20;
  // Messages stored per flow (both directions together); later ones are counted only.
  // Default: 100000.
  size_t max_messages = 100'000;
  // Inflated bytes of one compressed message past which the watcher gives up (a deflate bomb
  // would otherwise cost unbounded CPU). Default: 256 MiB.
  uint64_t max_inflated_message = 256ull << 20;
};

// permessage-deflate (RFC 7692) as the server accepted it in the 101 response.
struct PerMessageDeflate {
  bool enabled = false;
  // The sender of that direction resets its compressor after each message.
  bool client_no_context_takeover = false;
  bool server_no_context_takeover = false;
};

// True when an Upgrade field names "websocket" (a handshake request, or its 101 response).
bool is_websocket_upgrade(const flow::Headers& headers);

// A fresh Sec-WebSocket-Key: 16 random bytes, base64 (RFC 6455 §4.1).
std::string new_websocket_key();
// The Sec-WebSocket-Accept a server must answer `key` with: base64(SHA-1(key + the RFC 6455
// GUID)) (§4.2.2).
std::string websocket_accept(std::string_view key);

// Reads the Sec-WebSocket-Extensions fields of a 101 response. Window sizes need no reading:
// inflating with the largest window (15 bits) accepts a stream made with any smaller one.
PerMessageDeflate negotiated_deflate(const flow::Headers& response_headers);

// The request's Sec-WebSocket-Extensions offers reduced to the permessage-deflate ones, joined
// with ", " ("" when none): the one extension the watcher can read, so the only one forwarded.
std::string deflate_offers(const flow::Headers& request_headers);

class WebSocketWatcher {
 public:
  // `from_client`: direction of the bytes this watcher sees (client masks its frames).
  // `deflate`: what was negotiated; compressed messages (RSV1) are stored inflated.
  WebSocketWatcher(bool from_client, WebSocketLimits limits, PerMessageDeflate deflate = {});
  ~WebSocketWatcher();
  WebSocketWatcher(const WebSocketWatcher&) = delete;
  WebSocketWatcher& operator=(const WebSocketWatcher&) = delete;

  // Watches the next bytes of this direction. Completed messages (data messages reassembled
  // across continuation frames; control frames as they come) are appended to `out` with
  // timestamp `now_ns`; the first close frame seen sets out.close_code/close_reason/
  // closed_by_client. Returns false once the byte stream is not valid framing (a reserved
  // opcode, a continuation without a start, a fragmented or oversized control frame, a 64-bit
  // length with the high bit set); from then on feed() ignores its input and returns false.
  bool feed(std::string_view bytes, flow::WebSocket& out, int64_t now_ns);

  bool failed() const { return failed_; }
  // Messages not stored because max_messages was reached.
  uint64_t messages_dropped() const { return dropped_; }
  // Data messages whose payload was cut at payload_cap (stored with their first bytes only).
  uint64_t messages_truncated() const { return truncated_; }
  // Why feed() failed ("" while valid).
  const std::string& error() const { return error_; }

 private:
  bool fail(std::string why) {
    failed_ = true;
    error_ = std::move(why);
    return false;
  }
  bool frame_started(flow::WebSocket& out);
  void frame_ended(flow::WebSocket& out, int64_t now_ns);

  bool append_payload(std::string_view chunk);

  const bool from_client_;
  const WebSocketLimits limits_;
  const PerMessageDeflate deflate_;
  class Inflater;
  std::unique_ptr<Inflater> inflater_;  // created with the first compressed message
  bool rsv1_ = false;                    // of the current frame
  bool message_compressed_ = false;      // the data message being reassembled
  std::string scratch_;                  // unmasked compressed bytes of one chunk
  bool failed_ = false;
  std::string error_;
  uint64_t dropped_ = 0;
  uint64_t truncated_ = 0;

  // The frame header being read (2 to 14 bytes).
  std::array<uint8_t, 14> head_{};
  size_t head_len_ = 0;
  // The current frame, once its header is complete.
  bool in_payload_ = false;
  bool fin_ = false;
  uint8_t opcode_ = 0;
  bool masked_ = false;
  std::array<uint8_t, 4> mask_{};
  uint64_t remaining_ = 0;  // payload bytes of the current frame not yet seen
  uint64_t offset_ = 0;     // payload bytes of the current frame seen (mask position)
  // The data message being reassembled across frames, and the current control frame.
  bool in_message_ = false;
  flow::WebSocketMessage message_;
  uint64_t message_size_ = 0;
  std::string control_;
};

}  // namespace retake::record
