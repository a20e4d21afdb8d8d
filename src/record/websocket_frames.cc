// RFC 6455 §5.2 framing, watched passively. The relay has already forwarded these bytes; a
// framing error here only stops the recording of messages, never the relay.
#include "record/websocket_frames.h"

#include <algorithm>

namespace retake::record {

namespace {
constexpr uint8_t kContinuation = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10;

bool is_control(uint8_t op) {
  return op >= 8;
}
bool is_known(uint8_t op) {
  return op == kContinuation || op == kText || op == kBinary || op == kClose || op == kPing ||
         op == kPong;
}
}  // namespace

bool WebSocketWatcher::frame_started(flow::WebSocket& out) {
  (void)out;
  if (!is_known(opcode_)) return fail("reserved opcode " + std::to_string(opcode_));
  if (is_control(opcode_)) {
    if (!fin_) return fail("fragmented control frame");
    if (remaining_ > 125) return fail("control frame longer than 125 bytes");
    control_.clear();
    return true;
  }
  if (opcode_ == kContinuation) {
    if (!in_message_) return fail("continuation frame without a message to continue");
    return true;
  }
  if (in_message_) return fail("new data message before the previous one ended");
  in_message_ = true;
  message_ = flow::WebSocketMessage{};
  message_.from_client = from_client_;
  message_.opcode = opcode_;
  message_size_ = 0;
  return true;
}

void WebSocketWatcher::frame_ended(flow::WebSocket& out, int64_t now_ns) {
  auto store = [&](flow::WebSocketMessage&& m) {
    if (out.messages.size() >= limits_.max_messages) {
      ++dropped_;
      return;
    }
    out.messages.push_back(std::move(m));
  };
  if (is_control(opcode_)) {
    flow::WebSocketMessage m;
    m.from_client = from_client_;
    m.opcode = opcode_;
    m.timestamp = now_ns;
    m.payload = control_;
    if (opcode_ == kClose && out.close_code == 0 && control_.size() >= 2) {
      out.close_code = static_cast<uint16_t>((static_cast<uint8_t>(control_[0]) << 8) |
                                             static_cast<uint8_t>(control_[1]));
      out.close_reason = control_.substr(2);
      out.closed_by_client = from_client_;
    } else if (opcode_ == kClose && out.close_code == 0) {
      // A close frame without a status: RFC 6455 §7.4.1 reserves 1005 for "no status".
      out.close_code = 1005;
      out.closed_by_client = from_client_;
    }
    store(std::move(m));
    return;
  }
  if (!fin_) return;
  in_message_ = false;
  message_.timestamp = now_ns;
  // TODO(model): flow::WebSocketMessage has no truncated flag yet; count cut messages here.
  if (message_size_ > message_.payload.size()) ++truncated_;
  store(std::move(message_));
  message_ = flow::WebSocketMessage{};
}

bool WebSocketWatcher::feed(std::string_view bytes, flow::WebSocket& out, int64_t now_ns) {
  if (failed_) return false;
  size_t i = 0;
  while (i < bytes.size() || (in_payload_ && remaining_ == 0)) {
    if (!in_payload_) {
      // Gather the header: 2 bytes, then the extended length and the mask key.
      head_[head_len_++] = static_cast<uint8_t>(bytes[i++]);
      if (head_len_ < 2) continue;
      uint8_t len7 = head_[1] & 0x7f;
      bool masked = head_[1] & 0x80;
      size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
      if (head_len_ < need) continue;
      if (head_[0] & 0x70) return fail("reserved bits set (no extension was negotiated)");
      fin_ = head_[0] & 0x80;
      opcode_ = head_[0] & 0x0f;
      masked_ = masked;
      size_t p = 2;
      if (len7 == 126) {
        remaining_ = (uint64_t{head_[2]} << 8) | head_[3];
        p = 4;
      } else if (len7 == 127) {
        remaining_ = 0;
        for (size_t k = 0; k < 8; ++k) remaining_ = (remaining_ << 8) | head_[2 + k];
        if (remaining_ >> 63) return fail("payload length with the most significant bit set");
        p = 10;
      } else {
        remaining_ = len7;
      }
      if (masked_) std::copy(head_.begin() + p, head_.begin() + p + 4, mask_.begin());
      head_len_ = 0;
      offset_ = 0;
      in_payload_ = true;
      if (!frame_started(out)) return false;
      continue;
    }
    size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - i));
    std::string_view chunk = bytes.substr(i, n);
    i += n;
    remaining_ -= n;
    std::string* sink = is_control(opcode_) ? &control_ : &message_.payload;
    size_t room = is_control(opcode_) ? 125 : limits_.payload_cap;
    if (!is_control(opcode_)) message_size_ += n;
    size_t keep = sink->size() < room ? std::min(n, room - sink->size()) : 0;
    size_t at = sink->size();
    sink->append(chunk.data(), keep);
    if (masked_) {
      for (size_t k = 0; k < keep; ++k)
        (*sink)[at + k] = static_cast<char>((*sink)[at + k] ^ mask_[(offset_ + k) & 3]);
    }
    offset_ += n;
    if (remaining_ == 0) {
      in_payload_ = false;
      frame_ended(out, now_ns);
    }
  }
  return true;
}

}  // namespace retake::record
