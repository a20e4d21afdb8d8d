// H2ServerSession against real clients: nghttp (multiplexed URLs), h2load, and python3-h2 for
// the precise cases (trailers, resets, floods, limits).
#include <doctest/doctest.h>

#include <string>

#include "h2_test_server.h"

namespace retake::h2::test {
namespace {

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size()))
    ++n;
  return n;
}

CommandResult python_case(const std::string& name, unsigned short port) {
  return run_command("/usr/bin/python3 " RETAKE_H2_CASES " " + name + " " + std::to_string(port));
}

// Runs the h2_cases.py client case `name` and checks that it passed.
void check_case_passes(const std::string& name, unsigned short port) {
  auto r = python_case(name, port);
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("PASS " + name) != std::string::npos);
}

TEST_CASE("nghttp fetches several paths multiplexed over one h2c connection") {
  TestH2Server server;
  auto r = run_command("nghttp -nv " + server.url("/echo") + " " + server.url("/big") + " " +
                       server.url("/trailers") + " " + server.url("/slow") + " " + server.url("/"));
  INFO(r.output.substr(0, 8000));
  CHECK(r.exit_code == 0);
  CHECK(count(r.output, "recv (stream_id=") > 0);
  CHECK(count(r.output, ":status: 200") == 5);
  CHECK(r.output.find("RST_STREAM") == std::string::npos);
  CHECK(r.output.find("grpc-status: 0") != std::string::npos);
  CHECK(r.output.find("x-request-trailer: none") != std::string::npos);
  CHECK(server.sessions() == 1);
  CHECK(server.wait_ended(1).size() == 1);
}

TEST_CASE("nghttp receives the whole 1 MiB body and an uploaded body comes back") {
  TestH2Server server;
  auto big = run_command("nghttp " + server.url("/big"));
  CHECK(big.exit_code == 0);
  CHECK(big.output.size() == kBigSize);
  CHECK(big.output == big_body(kBigSize));

  auto echo = run_command(
      "printf 'hello h2' > /tmp/retake-h2-upload.$$ && nghttp -d "
      "/tmp/retake-h2-upload.$$ " +
      server.url("/echo") + "; rm -f /tmp/retake-h2-upload.$$");
  CHECK(echo.exit_code == 0);
  CHECK(echo.output == "hello h2");
}

TEST_CASE("h2load completes 200 requests over 2 connections with 10 streams each") {
  TestH2Server server;
  auto r = run_command("h2load -n 200 -c 2 -m 10 " + server.url("/"));
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored") !=
        std::string::npos);
  CHECK(r.output.find("status codes: 200 2xx") != std::string::npos);
  CHECK(server.sessions() == 2);
}

TEST_CASE("trailers travel both ways (gRPC's grpc-status survives)") {
  TestH2Server server;
  auto r = python_case("trailers", server.port());
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("PASS trailers: grpc-status=0 request-trailer=from-python") !=
        std::string::npos);
}

TEST_CASE("a stream reset by the client mid-body is an error for its handler, not a hang") {
  TestH2Server server;
  check_case_passes("rst-mid-body", server.port());
  CHECK(server.wait_event("count: unavailable: stream reset: CANCEL") != "");
}

TEST_CASE("extended CONNECT is accepted only with SETTINGS_ENABLE_CONNECT_PROTOCOL") {
  H2Options options;
  options.enable_connect_protocol = true;
  TestH2Server server(options);
  check_case_passes("extended-connect", server.port());
  CHECK(server.wait_event("connect: websocket http /tunnel") != "");

  TestH2Server plain;
  check_case_passes("protocol-refused", plain.port());
}

TEST_CASE("a declined request body is reset with NO_ERROR only after the whole response") {
  TestH2Server server;
  check_case_passes("decline", server.port());
  CHECK(server.wait_event("decline: unavailable: stream closed early") != "");
}

TEST_CASE("a rapid-reset flood gets GOAWAY ENHANCE_YOUR_CALM and other connections go on") {
  TestH2Server server;
  check_case_passes("rapid-reset", server.port());
  auto ended = server.wait_ended(2);
  REQUIRE(ended.size() >= 1);
  bool calm = false;
  for (const auto& st : ended)
    if (st.code() == Errc::resource_exhausted &&
        st.message().find("rapid reset") != std::string::npos)
      calm = true;
  CHECK(calm);
}

TEST_CASE("streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused") {
  TestH2Server server;
  auto r = python_case("too-many-streams", server.port());
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("PASS too-many-streams: 50 refused with REFUSED_STREAM, first 201") !=
        std::string::npos);
  // The held streams fail when the client goes away; their handlers end.
  CHECK(server.wait_event("hold: unavailable") != "");
}

TEST_CASE("an oversized request header block is answered 431 and the connection goes on") {
  TestH2Server server;
  check_case_passes("big-header", server.port());
}

TEST_CASE("a CONTINUATION flood ends the session with ENHANCE_YOUR_CALM") {
  TestH2Server server;
  check_case_passes("continuation-flood", server.port());
  auto ended = server.wait_ended(1);
  REQUIRE(ended.size() == 1);
  INFO(ended[0].to_string());
  CHECK(ended[0].code() == Errc::resource_exhausted);
}

}  // namespace
}  // namespace retake::h2::test

namespace retake::h2::test {
namespace {

TEST_CASE("a silent connection is closed after the idle timeout") {
  H2Options options;
  options.idle_timeout = std::chrono::milliseconds(100);
  TestH2Server server(options);
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), server.port()});
  auto ended = server.wait_ended(1);
  REQUIRE(ended.size() == 1);
  CHECK(ended[0].code() == Errc::timeout);
}

TEST_CASE("a client that is not speaking HTTP/2 ends its session with a protocol error") {
  TestH2Server server;
  auto r = run_command("curl -sS --max-time 10 --http1.1 " + server.url("/"));
  CHECK(r.exit_code != 0);
  auto ended = server.wait_ended(1);
  REQUIRE(ended.size() == 1);
  CHECK(ended[0].code() == Errc::parse_error);
  CHECK(server.wait_ended(1).size() == 1);
}

}  // namespace
}  // namespace retake::h2::test
