// H2ClientSession <-> H2ServerSession over an in-memory pipe whose reads hand out at most N
// bytes, for N = 1, 2, 3, ... (KJ's habit: every frame boundary gets split somewhere).
#include <doctest/doctest.h>

#include <boost/asio/steady_timer.hpp>

#include <string>

#include "h2_test_server.h"

namespace retake::h2::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// One direction of the pipe.
struct Channel {
  std::string data;
  bool closed = false;
  asio::steady_timer* reader = nullptr;
  void wake() {
    if (reader != nullptr) reader->cancel();
  }
};

class PipeStream final : public ByteStream {
 public:
  PipeStream(asio::any_io_executor ex, std::shared_ptr<Channel> in, std::shared_ptr<Channel> out,
             size_t max_read)
      : ex_(std::move(ex)), in_(std::move(in)), out_(std::move(out)), max_read_(max_read) {}

  asio::awaitable<std::pair<boost::system::error_code, size_t>> read_some(
      asio::mutable_buffer buffer) override {
    for (;;) {
      if (!in_->data.empty()) {
        size_t n = std::min({buffer.size(), max_read_, in_->data.size()});
        std::memcpy(buffer.data(), in_->data.data(), n);
        in_->data.erase(0, n);
        co_return std::pair{boost::system::error_code{}, n};
      }
      if (in_->closed) co_return std::pair{boost::system::error_code(asio::error::eof), size_t{0}};
      asio::steady_timer timer(ex_, 30s);
      in_->reader = &timer;
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      in_->reader = nullptr;
    }
  }

  asio::awaitable<boost::system::error_code> write_all(asio::const_buffer buffer) override {
    if (out_->closed) co_return asio::error::broken_pipe;
    out_->data.append(static_cast<const char*>(buffer.data()), buffer.size());
    out_->wake();
    co_return boost::system::error_code{};
  }

  void close() noexcept override {
    in_->closed = out_->closed = true;
    in_->wake();
    out_->wake();
  }

 private:
  asio::any_io_executor ex_;
  std::shared_ptr<Channel> in_, out_;
  size_t max_read_;
};

asio::awaitable<Status> pump_server(std::shared_ptr<H2ServerSession> s) {
  co_return co_await s->run();
}
asio::awaitable<Status> pump_client(std::shared_ptr<H2ClientSession> s) {
  co_return co_await s->run();
}

asio::awaitable<void> exchanges(std::shared_ptr<H2ClientSession> client, bool big,
                                std::vector<Result<flow::Response>>* out) {
  flow::Request echo;
  echo.method = "POST";
  echo.scheme = "http";
  echo.authority = "pipe.test";
  echo.path = "/echo";
  echo.headers.add("X-Case", "Kept");
  echo.body.data = "split me anywhere";
  out->push_back(co_await client->fetch(echo));
  flow::Request trailers = echo;
  trailers.path = "/trailers";
  trailers.trailers.add("x-req", "fragmented");
  out->push_back(co_await client->fetch(trailers));
  if (big) {
    flow::Request get = echo;
    get.method = "GET";
    get.path = "/big";
    get.body = {};
    out->push_back(co_await client->fetch(get));
  }
  client->shutdown();
}

TEST_CASE("sessions agree over a pipe that splits every read at 1, 2, 3, ... 31 bytes") {
  TestH2Server events;  // only its event log and handler are used
  for (size_t max_read : {1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 4096, 65536}) {
    CAPTURE(max_read);
    asio::io_context io;
    auto up = std::make_shared<Channel>();
    auto down = std::make_shared<Channel>();
    auto server = H2ServerSession::create(
        io.get_executor(), std::make_unique<PipeStream>(io.get_executor(), up, down, max_read),
        [&events](std::shared_ptr<H2Stream> s) { return serve(&events, std::move(s)); });
    auto client = H2ClientSession::create(
        io.get_executor(), std::make_unique<PipeStream>(io.get_executor(), down, up, max_read));
    std::optional<Status> server_status, client_status;
    asio::co_spawn(io, pump_server(server),
                   [&](std::exception_ptr, Status st) { server_status = std::move(st); });
    asio::co_spawn(io, pump_client(client),
                   [&](std::exception_ptr, Status st) { client_status = std::move(st); });
    std::vector<Result<flow::Response>> results;
    bool big = max_read >= 4096;
    asio::co_spawn(io, exchanges(client, big, &results), asio::detached);
    io.run_for(30s);

    REQUIRE(results.size() == (big ? 3u : 2u));
    for (auto& r : results) {
      INFO(r.status().to_string());
      REQUIRE(r.ok());
      CHECK(r->status == 200);
    }
    CHECK(results[0]->body.data == "split me anywhere");
    CHECK(results[1]->trailers.get("x-request-trailer") == "fragmented");
    CHECK(results[1]->trailers.get("grpc-status") == "0");
    if (big) CHECK(results[2]->body.data == big_body(kBigSize));
    REQUIRE(client_status.has_value());
    CHECK(client_status->ok());
    REQUIRE(server_status.has_value());
    CHECK(server_status->ok());
  }
}

}  // namespace
}  // namespace retake::h2::test
