// The upstream pool over real loopback sockets: reuse, bounds, expiry, dead-peer detection.
#include "net/upstream_pool.h"

#include <doctest/doctest.h>

#include <thread>

#include <boost/asio.hpp>

using namespace retake;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// A connected pair of loopback sockets (client side wrapped for the pool, server side kept).
struct Pair {
  asio::io_context& ioc;
  tcp::socket server;
  std::unique_ptr<net::UpstreamConnection> conn;
};

Pair make_pair(asio::io_context& ioc, tcp::acceptor& acc, const std::string& key) {
  tcp::socket client(ioc);
  client.connect(acc.local_endpoint());
  tcp::socket server = acc.accept();
  auto conn = std::make_unique<net::UpstreamConnection>(std::move(client));
  conn->key = key;
  return Pair{ioc, std::move(server), std::move(conn)};
}
}  // namespace

TEST_CASE("the pool hands back a live idle connection for the same key only") {
  asio::io_context ioc;
  tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  net::UpstreamPool pool(2, 8, std::chrono::seconds(30));
  auto p = make_pair(ioc, acc, "a:1");
  auto* raw = p.conn.get();
  pool.give(std::move(p.conn));
  CHECK(pool.idle_count() == 1);
  CHECK(pool.take("b:1") == nullptr);
  auto back = pool.take("a:1");
  CHECK(back.get() == raw);
  CHECK(pool.idle_count() == 0);
}

TEST_CASE("the pool drops a connection the upstream closed while it was idle") {
  asio::io_context ioc;
  tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  net::UpstreamPool pool(2, 8, std::chrono::seconds(30));
  auto p = make_pair(ioc, acc, "a:1");
  pool.give(std::move(p.conn));
  p.server.close();
  // The FIN is queued on loopback at once; a short pause makes that certain.
  std::unique_ptr<net::UpstreamConnection> got;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  got = pool.take("a:1");
  CHECK(got == nullptr);
}

TEST_CASE("the pool keeps at most the per-upstream bound and expires idle connections") {
  asio::io_context ioc;
  tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  net::UpstreamPool pool(2, 8, std::chrono::milliseconds(30));
  std::vector<tcp::socket> servers;
  for (int i = 0; i < 3; ++i) {
    auto p = make_pair(ioc, acc, "a:1");
    servers.push_back(std::move(p.server));
    pool.give(std::move(p.conn));
  }
  CHECK(pool.idle_count() == 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  CHECK(pool.sweep() == 2);
  CHECK(pool.idle_count() == 0);
  auto p = make_pair(ioc, acc, "a:1");
  pool.close();
  pool.give(std::move(p.conn));
  CHECK(pool.idle_count() == 0);
}
