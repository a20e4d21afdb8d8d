// Small helpers shared by the recorder's HTTP/1.1 path (recorder.cc) and its HTTP/2 front
// (h2_front.cc). Internal to src/record.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>

#include "flow/flow.h"
#include "record/recorder.h"
#include "record/websocket_frames.h"

namespace retake::record::detail {

// "1.2.3.4:80" / "[::1]:80".
inline std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep) {
  auto addr = ep.address();
  std::string out = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
  out += ':';
  out += std::to_string(ep.port());
  return out;
}

// "250 ms", for error messages naming a deadline.
inline std::string ms_text(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " ms";
}

// Sets Body::truncated once a body is complete.
inline void finish_body(flow::Body& b) {
  b.truncated = b.size > b.data.size();
}

// Appends decoded body bytes to `body`, keeping at most `cap` of them (Body::size counts all).
struct Capture {
  flow::Body* body;
  size_t cap;
  std::string* also = nullptr;  // when set, every byte is appended here too, uncapped
  void operator()(std::string_view d) const {
    body->size += d.size();
    if (body->data.size() < cap)
      body->data.append(d.data(), std::min(d.size(), cap - body->data.size()));
    if (also) also->append(d);
  }
};

// Both directions of one relayed WebSocket connection, watched into flow.websocket as the relay
// forwards them (the HTTP/1.1 relay and the HTTP/2 front share it). Made once the handshake's
// answer is in flow.response, which says whether permessage-deflate applies; `flow` and
// `options` must outlive it.
class WebSocketRecording {
 public:
  WebSocketRecording(flow::Flow& flow, const RecorderOptions& options)
      : flow_(flow),
        hooks_(options.hooks),
        client_(true, limits(options), negotiated_deflate(flow.response->headers)),
        upstream_(false, limits(options), negotiated_deflate(flow.response->headers)) {
    flow_.websocket.emplace();
  }
  // Parses the next relayed bytes of one direction and tells the hooks about each message they
  // completed.
  void feed(bool from_client, std::string_view bytes) {
    auto& messages = flow_.websocket->messages;
    size_t before = messages.size();
    (from_client ? client_ : upstream_).feed(bytes, *flow_.websocket, flow::now_ns());
    for (size_t i = before; i < messages.size(); ++i) {
      if (messages[i].opcode == 8) (from_client ? client_closed_ : upstream_closed_) = true;
      if (hooks_) hooks_->websocket_message(flow_, messages[i]);
    }
  }
  // Both sides sent their close frame: the WebSocket ended in order, whatever the transport does
  // next.
  bool closed_both_ways() const { return client_closed_ && upstream_closed_; }

 private:
  static WebSocketLimits limits(const RecorderOptions& options) {
    WebSocketLimits l;
    l.payload_cap = options.body_cap;
    return l;
  }
  flow::Flow& flow_;
  RecordHooks* hooks_;
  WebSocketWatcher client_, upstream_;
  bool client_closed_ = false, upstream_closed_ = false;
};

}  // namespace retake::record::detail
