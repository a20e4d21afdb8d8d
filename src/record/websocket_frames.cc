// RFC 6455 §5.2 framing, watched passively. The relay has already forwarded these bytes; a
// framing error here only stops the recording of messages, never the relay.
#include "record/websocket_frames.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include <algorithm>
#include <vector>

namespace retake::record {

// One direction's raw-deflate decompressor, kept across messages (context takeover).
class WebSocketWatcher::Inflater {
 public:
  Inflater() { ok_ = inflateInit2(&z_, -15) == Z_OK; }
  ~Inflater() {
    if (ok_) inflateEnd(&z_);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Inflates `in`, appending to `out` up to `cap` bytes; `total` counts every inflated byte.
  // "" on success, else why not.
  std::string run(std::string_view in, std::string& out, size_t cap, uint64_t& total,
                  uint64_t max_total) {
    if (!ok_) return "zlib could not start";
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    unsigned char buf[16384];
    for (;;) {
      z_.next_out = buf;
      z_.avail_out = sizeof buf;
      int rc = inflate(&z_, Z_SYNC_FLUSH);
      size_t got = sizeof buf - z_.avail_out;
      total += got;
      if (out.size() < cap)
        out.append(reinterpret_cast<const char*>(buf), std::min(got, cap - out.size()));
      if (total > max_total)
        return "a compressed message inflates past " + std::to_string(max_total) + " bytes";
      if (rc == Z_STREAM_END) {
        // A final block (BFINAL) ends this deflate stream; the next message starts a new one.
        inflateReset(&z_);
        if (z_.avail_in == 0) return {};
        continue;
      }
      if (rc == Z_BUF_ERROR) return {};  // needs more input: the rest is in a later chunk
      if (rc != Z_OK) return std::string("corrupt deflate data (") + (z_.msg ? z_.msg : "?") + ")";
      if (z_.avail_in == 0 && z_.avail_out != 0) return {};
    }
  }
  void reset() {
    if (ok_) inflateReset(&z_);
  }

 private:
  z_stream z_{};
  bool ok_ = false;
};

namespace {
// Splits "a; b=1, c" into elements (by ',') of trimmed parameters (by ';').
std::vector<std::vector<std::string_view>> extension_list(std::string_view value) {
  auto trim = [](std::string_view t) {
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    return t;
  };
  std::vector<std::vector<std::string_view>> out;
  while (!value.empty()) {
    auto comma = value.find(',');
    auto element = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    std::vector<std::string_view> params;
    while (!element.empty()) {
      auto semi = element.find(';');
      params.push_back(trim(element.substr(0, semi)));
      element = semi == std::string_view::npos ? std::string_view() : element.substr(semi + 1);
    }
    if (!params.empty() && !params.front().empty()) out.push_back(std::move(params));
  }
  return out;
}

bool named(std::string_view param, std::string_view name) {
  auto eq = param.find('=');
  auto key = param.substr(0, eq);
  while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
  return flow::iequals(key, name);
}
}  // namespace

namespace {
std::string base64(const unsigned char* bytes, size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  int len =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes, static_cast<int>(n));
  out.resize(static_cast<size_t>(std::max(len, 0)));
  return out;
}
}  // namespace

bool is_websocket_upgrade(const flow::Headers& headers) {
  for (const auto& v : headers.get_all("upgrade")) {
    std::string_view s = v;
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    if (s.size() >= 9 && flow::iequals(s.substr(0, 9), "websocket")) return true;
  }
  return false;
}

std::string new_websocket_key() {
  unsigned char nonce[16];
  // The key only proves the server read this handshake (not a security boundary): should the
  // generator ever fail, a fixed nonce still makes a valid handshake.
  if (RAND_bytes(nonce, sizeof nonce) != 1) std::fill(std::begin(nonce), std::end(nonce), 0x5a);
  return base64(nonce, sizeof nonce);
}

std::string websocket_accept(std::string_view key) {
  std::string input(key);
  input += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha1(), nullptr) != 1) return {};
  return base64(digest, len);
}

PerMessageDeflate negotiated_deflate(const flow::Headers& response_headers) {
  PerMessageDeflate d;
  for (auto value : response_headers.get_all("Sec-WebSocket-Extensions"))
    for (const auto& params : extension_list(value)) {
      if (!flow::iequals(params.front(), "permessage-deflate")) continue;
      d.enabled = true;
      for (auto p : params) {
        d.client_no_context_takeover |= named(p, "client_no_context_takeover");
        d.server_no_context_takeover |= named(p, "server_no_context_takeover");
      }
    }
  return d;
}

std::string deflate_offers(const flow::Headers& request_headers) {
  std::string out;
  for (auto value : request_headers.get_all("Sec-WebSocket-Extensions"))
    for (const auto& params : extension_list(value)) {
      if (!flow::iequals(params.front(), "permessage-deflate")) continue;
      if (!out.empty()) out += ", ";
      for (size_t i = 0; i < params.size(); ++i) {
        if (i) out += "; ";
        out += params[i];
      }
    }
  return out;
}

WebSocketWatcher::WebSocketWatcher(bool from_client, WebSocketLimits limits,
                                   PerMessageDeflate deflate)
    : from_client_(from_client), limits_(limits), deflate_(deflate) {}

WebSocketWatcher::~WebSocketWatcher() = default;

bool WebSocketWatcher::append_payload(std::string_view chunk) {
  if (!message_compressed_) {
    message_size_ += chunk.size();
    size_t room = limits_.payload_cap;
    size_t keep = message_.payload.size() < room
                      ? std::min(chunk.size(), room - message_.payload.size())
                      : 0;
    message_.payload.append(chunk.data(), keep);
    return true;
  }
  if (!inflater_) inflater_ = std::make_unique<Inflater>();
  auto why = inflater_->run(chunk, message_.payload, limits_.payload_cap, message_size_,
                            limits_.max_inflated_message);
  if (!why.empty()) return fail("permessage-deflate: " + why);
  return true;
}

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
  if (rsv1_ && opcode_ == kContinuation)
    return fail("RSV1 set on a continuation frame (only a message's first frame carries it)");
  if (rsv1_ && is_control(opcode_)) return fail("RSV1 set on a control frame");
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
  message_compressed_ = rsv1_;
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
  if (message_compressed_) {
    // RFC 7692 §7.2.2: the sender removed the empty stored block's tail 00 00 FF FF.
    static constexpr char kTail[4] = {0, 0, static_cast<char>(0xff), static_cast<char>(0xff)};
    if (!append_payload(std::string_view(kTail, 4))) return;
    bool reset = from_client_ ? deflate_.client_no_context_takeover
                              : deflate_.server_no_context_takeover;
    if (reset) inflater_->reset();
  }
  in_message_ = false;
  message_.compressed = message_compressed_;
  message_compressed_ = false;
  message_.timestamp = now_ns;
  if (message_size_ > message_.payload.size()) {
    message_.truncated = true;
    ++truncated_;
  }
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
      if (head_[0] & 0x30) return fail("reserved bits RSV2/RSV3 set (no such extension)");
      rsv1_ = head_[0] & 0x40;
      if (rsv1_ && !deflate_.enabled)
        return fail("reserved bit RSV1 set without permessage-deflate negotiated");
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
    if (masked_) {
      // Unmask into scratch: a compressed payload must be inflated whole, and a plain one is
      // copied once more at most (control frames are at most 125 bytes).
      scratch_.assign(chunk.data(), n);
      for (size_t k = 0; k < n; ++k)
        scratch_[k] = static_cast<char>(scratch_[k] ^ mask_[(offset_ + k) & 3]);
      chunk = scratch_;
    }
    offset_ += n;
    if (is_control(opcode_)) {
      control_.append(chunk.data(), std::min<size_t>(chunk.size(), 125 - std::min<size_t>(125, control_.size())));
    } else if (!append_payload(chunk)) {
      return false;
    }
    if (remaining_ == 0) {
      in_payload_ = false;
      frame_ended(out, now_ns);
      if (failed_) return false;
    }
  }
  return true;
}

}  // namespace retake::record
