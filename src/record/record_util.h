// Small helpers shared by the recorder's HTTP/1.1 path (recorder.cc) and its HTTP/2 front
// (h2_front.cc). Internal to src/record.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>

#include "flow/flow.h"

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

}  // namespace retake::record::detail
