// retake::h2 ByteStream: the one thing an HTTP/2 session needs from its transport, type-erased
// so the same compiled session runs over a plain TCP socket (h2c, prior knowledge) and over
// boost::asio::ssl::stream after ALPN "h2", or an in-memory pipe in tests.
//
// Depends on Boost.Asio only. Must not depend on nghttp2, the proxy or the store.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <utility>

namespace retake::h2 {

// A bidirectional byte stream driven by coroutines. One reader and one writer may be in flight
// at once (the session's pump does exactly that); all calls happen on the session's executor.
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Reads at least one byte. An error (eof, operation_aborted after close()) ends the session.
  virtual boost::asio::awaitable<std::pair<boost::system::error_code, size_t>> read_some(
      boost::asio::mutable_buffer buffer) = 0;
  // Writes every byte of `buffer` or fails.
  virtual boost::asio::awaitable<boost::system::error_code> write_all(
      boost::asio::const_buffer buffer) = 0;
  // Closes the transport at once; pending reads and writes complete with an error.
  // Idempotent; never throws.
  virtual void close() noexcept = 0;
};

// ByteStream over any Asio AsyncStream (tcp::socket, ssl::stream<tcp::socket>, beast streams).
// close() closes the lowest layer (no TLS close_notify: the peer sees the TCP close, as when
// nghttpx drops a connection after GOAWAY).
template <class AsyncStream>
class AsioByteStream final : public ByteStream {
 public:
  // AsyncStream may be a reference type (the stream stays owned by the caller).
  explicit AsioByteStream(AsyncStream stream) : stream_(std::forward<AsyncStream>(stream)) {}

  boost::asio::awaitable<std::pair<boost::system::error_code, size_t>> read_some(
      boost::asio::mutable_buffer buffer) override {
    auto [ec, n] =
        co_await stream_.async_read_some(buffer, boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return std::pair{ec, n};
  }

  boost::asio::awaitable<boost::system::error_code> write_all(
      boost::asio::const_buffer buffer) override {
    auto [ec, n] = co_await boost::asio::async_write(
        stream_, buffer, boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return ec;
  }

  void close() noexcept override {
    boost::system::error_code ec;
    auto& lowest = boost::beast::get_lowest_layer(stream_);
    if constexpr (requires { lowest.close(ec); })
      lowest.close(ec);  // an Asio socket
    else
      lowest.close();  // beast::basic_stream, which ignores errors itself
  }

  AsyncStream& stream() { return stream_; }

 private:
  AsyncStream stream_;
};

// Wraps `stream` (moved in) as a ByteStream.
template <class AsyncStream>
std::unique_ptr<ByteStream> make_byte_stream(AsyncStream stream) {
  return std::make_unique<AsioByteStream<AsyncStream>>(std::move(stream));
}

}  // namespace retake::h2
