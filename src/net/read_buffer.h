// retake::net ReadBuffer: one growable byte buffer per connection direction, reused across
// messages so the steady state does no heap allocation.
//
// Pure memory management; no I/O. Not thread-safe (one owner: a connection's coroutine).
#pragma once

#include <cstring>
#include <string_view>
#include <vector>

namespace retake::net {

class ReadBuffer {
 public:
  // `initial` bytes are allocated up front; prepare() grows the storage up to `max` bytes.
  explicit ReadBuffer(size_t initial = 16u << 10, size_t max = 1u << 20)
      : storage_(initial), max_(max < initial ? initial : max) {}

  // The unconsumed bytes.
  std::string_view data() const { return {storage_.data() + begin_, end_ - begin_}; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }

  // Room for at least `min_free` more bytes (moving unconsumed bytes to the front, growing
  // up to max). Returns the writable region; empty when the buffer is full at max.
  std::pair<char*, size_t> prepare(size_t min_free = 4096) {
    if (storage_.size() - end_ < min_free && begin_ > 0) {
      std::memmove(storage_.data(), storage_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (storage_.size() - end_ < min_free && storage_.size() < max_) {
      size_t grown = storage_.size() * 2;
      while (grown - end_ < min_free) grown *= 2;
      storage_.resize(grown < max_ ? grown : max_);
    }
    return {storage_.data() + end_, storage_.size() - end_};
  }
  void commit(size_t n) { end_ += n; }
  size_t capacity() const { return storage_.size(); }

 private:
  std::vector<char> storage_;
  size_t max_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace retake::net
