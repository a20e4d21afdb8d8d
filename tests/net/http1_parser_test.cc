// The HTTP/1 codec against wire fixtures (fixtures/http1), each re-fed at fragment sizes
// 1, 2, 3, ... 16, 31 and all at once: every split must give the same messages or the same error.
#include "net/http1.h"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <vector>

using namespace retake;
using flow::ErrorKind;
using net::Http1Parser;

namespace {

std::string read_fixture(const std::string& rel) {
  std::ifstream in(std::string(RETAKE_FIXTURES_DIR) + "/http1/" + rel, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << rel);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Message {
  std::string start;  // "GET /x HTTP/1.1" or "HTTP/1.1 200 OK"
  flow::Headers headers;
  std::string body;
  flow::Headers trailers;
  net::BodyFraming framing;
  bool keep_alive;
  bool expect_continue;
  bool operator==(const Message&) const = default;
};

struct Outcome {
  std::vector<Message> messages;
  ErrorKind error = ErrorKind::none;
  std::string error_message;
  bool operator==(const Outcome&) const = default;
};

// Feeds `wire` in pieces of `fragment` bytes (0: all at once) the way a connection does:
// append to a buffer, parse what is there, drop what was consumed.
Outcome parse_all(const std::string& wire, Http1Parser::Kind kind, size_t fragment) {
  Http1Parser p(kind);
  p.reset();
  Outcome out;
  std::string buf, body;
  size_t pos = 0;
  auto finish_message = [&] {
    auto& h = p.head();
    Message m;
    m.start = kind == Http1Parser::Kind::request
                  ? h.method + " " + h.target + " " + h.version
                  : h.version + " " + std::to_string(h.status) + " " + h.reason;
    m.headers = h.headers;
    m.body = body;
    m.trailers = p.trailers();
    m.framing = p.framing();
    m.keep_alive = p.keep_alive();
    m.expect_continue = p.expect_continue();
    out.messages.push_back(std::move(m));
    body.clear();
    p.reset();
  };
  auto fail = [&] {
    out.error = p.error();
    out.error_message = p.error_message();
    return out;
  };
  while (pos < wire.size()) {
    size_t n = fragment ? std::min(fragment, wire.size() - pos) : wire.size() - pos;
    buf.append(wire, pos, n);
    pos += n;
    for (;;) {
      if (!p.head_done()) {
        size_t used = p.parse_head(buf);
        if (p.failed()) return fail();
        if (used == 0) break;
        buf.erase(0, used);
      }
      if (!p.done()) {
        size_t used = p.parse_body(buf, [&](std::string_view d) { body.append(d); });
        if (p.failed()) return fail();
        buf.erase(0, used);
        if (!p.done()) break;
      }
      finish_message();
      if (buf.empty()) break;
    }
  }
  if (p.head_done() || !buf.empty()) {
    p.finish_eof();
    if (p.failed()) return fail();
    if (p.done()) finish_message();
  }
  return out;
}

std::vector<size_t> fragment_sizes() {
  std::vector<size_t> sizes;
  for (size_t i = 1; i <= 16; ++i) sizes.push_back(i);
  sizes.push_back(31);
  return sizes;
}

struct Case {
  const char* file;
  size_t messages;         // complete messages expected before the end or the error
  ErrorKind error;         // ErrorKind::none when the file parses cleanly
  const char* first_body;  // body of the first message, when it has one to check
};

void check_case(const Case& c, Http1Parser::Kind kind) {
  CAPTURE(c.file);
  std::string wire = read_fixture(c.file);
  Outcome whole = parse_all(wire, kind, 0);
  CHECK(whole.messages.size() == c.messages);
  CHECK(flow::error_kind_name(whole.error) == std::string(flow::error_kind_name(c.error)));
  if (c.first_body && !whole.messages.empty()) CHECK(whole.messages[0].body == c.first_body);
  for (size_t size : fragment_sizes()) {
    CAPTURE(size);
    Outcome split = parse_all(wire, kind, size);
    CHECK(split.messages.size() == whole.messages.size());
    CHECK(split.error == whole.error);
    CHECK(split.error_message == whole.error_message);
    CHECK(split == whole);
  }
}

}  // namespace

TEST_CASE("request fixtures parse identically at every fragment size") {
  const Case cases[] = {
      {"requests/get_simple.http", 1, ErrorKind::none, ""},
      {"requests/post_content_length.http", 1, ErrorKind::none, "hello world"},
      {"requests/chunked_trailers.http", 1, ErrorKind::none, "hello world"},
      {"requests/pipelined_pair.http", 2, ErrorKind::none, ""},
      {"requests/head.http", 1, ErrorKind::none, ""},
      {"requests/expect_100.http", 1, ErrorKind::none, "abcd"},
      {"requests/absolute_form.http", 1, ErrorKind::none, ""},
      {"requests/connect.http", 1, ErrorKind::none, ""},
      {"requests/http10_no_host.http", 1, ErrorKind::none, ""},
      {"requests/cl_list_same.http", 1, ErrorKind::none, "ok"},
      {"requests/smuggle_cl_te.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_cl_conflict.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_cl_list_conflict.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_te_not_last.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_te_gzip.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_te_http10.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_bad_chunk_size.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_chunk_size_overflow.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_chunk_ext_flood.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_chunk_no_crlf.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_chunk_bare_lf.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_obs_fold.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_bare_lf.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/smuggle_space_before_colon.http", 0, ErrorKind::smuggling_rejected, nullptr},
      {"requests/oversized_headers.http", 0, ErrorKind::headers_too_large, nullptr},
      {"requests/malformed_request_line.http", 0, ErrorKind::bad_request, nullptr},
      {"requests/bad_version.http", 0, ErrorKind::bad_request, nullptr},
      {"requests/missing_host.http", 0, ErrorKind::bad_request, nullptr},
      {"requests/duplicate_host.http", 0, ErrorKind::bad_request, nullptr},
      {"requests/bad_content_length.http", 0, ErrorKind::bad_request, nullptr},
      {"requests/nul_in_value.http", 0, ErrorKind::bad_request, nullptr},
      {"requests/truncated_body.http", 0, ErrorKind::client_closed, nullptr},
  };
  for (const auto& c : cases) check_case(c, Http1Parser::Kind::request);
}

TEST_CASE("response fixtures parse identically at every fragment size") {
  const Case cases[] = {
      {"responses/response_content_length.http", 1, ErrorKind::none, "hello"},
      {"responses/response_chunked_trailers.http", 1, ErrorKind::none, "abcdef"},
      {"responses/response_until_close.http", 1, ErrorKind::none, "all until the end"},
      {"responses/response_interim_then_final.http", 2, ErrorKind::none, ""},
      {"responses/response_no_reason.http", 1, ErrorKind::none, ""},
      {"responses/response_bad_status.http", 0, ErrorKind::upstream_protocol, nullptr},
      {"responses/response_cl_te.http", 0, ErrorKind::upstream_protocol, nullptr},
  };
  for (const auto& c : cases) check_case(c, Http1Parser::Kind::response);
}

TEST_CASE("a parsed request keeps header order, case and duplicates") {
  Outcome o = parse_all(read_fixture("requests/get_simple.http"), Http1Parser::Kind::request, 0);
  REQUIRE(o.messages.size() == 1);
  const auto& m = o.messages[0];
  CHECK(m.start == "GET /hello?x=1 HTTP/1.1");
  REQUIRE(m.headers.size() == 4);
  CHECK(m.headers.fields()[0] == flow::Header{"Host", "example.test"});
  CHECK(m.headers.fields()[2] == flow::Header{"X-Dup", "a"});
  CHECK(m.headers.fields()[3] == flow::Header{"x-dup", "b"});
  CHECK(m.keep_alive);
  CHECK(m.framing == net::BodyFraming::none);
}

TEST_CASE("chunked trailers are recorded and expect-continue is reported") {
  Outcome o =
      parse_all(read_fixture("requests/chunked_trailers.http"), Http1Parser::Kind::request, 0);
  REQUIRE(o.messages.size() == 1);
  CHECK(o.messages[0].framing == net::BodyFraming::chunked);
  CHECK(o.messages[0].trailers.get("x-checksum") == "abc");
  Outcome e = parse_all(read_fixture("requests/expect_100.http"), Http1Parser::Kind::request, 0);
  REQUIRE(e.messages.size() == 1);
  CHECK(e.messages[0].expect_continue);
  Outcome r = parse_all(read_fixture("responses/response_chunked_trailers.http"),
                        Http1Parser::Kind::response, 0);
  REQUIRE(r.messages.size() == 1);
  CHECK(r.messages[0].trailers.get("X-Digest") == "42");
}

TEST_CASE("an HTTP/1.0 request is not keep-alive unless it asks") {
  Outcome o =
      parse_all(read_fixture("requests/http10_no_host.http"), Http1Parser::Kind::request, 0);
  REQUIRE(o.messages.size() == 1);
  CHECK_FALSE(o.messages[0].keep_alive);
}

TEST_CASE("a response to HEAD has no body whatever its Content-Length says") {
  Http1Parser p(Http1Parser::Kind::response);
  p.reset(/*no_body=*/true);
  std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
  CHECK(p.parse_head(wire) == wire.size());
  CHECK(p.done());
  CHECK(p.framing() == net::BodyFraming::none);
}

TEST_CASE("forwarded fields drop hop-by-hop fields and those named by Connection") {
  flow::Headers h{{"Host", "a"},
                  {"Connection", "keep-alive, X-Hop"},
                  {"X-Hop", "1"},
                  {"Keep-Alive", "timeout=5"},
                  {"Proxy-Connection", "x"},
                  {"TE", "trailers"},
                  {"Upgrade", "h2c"},
                  {"Proxy-Authorization", "Basic x"},
                  {"Content-Length", "3"},
                  {"X-Keep", "yes"}};
  std::string out;
  net::append_forward_fields(out, h, false, "upstream:1");
  CHECK(out == "Host: upstream:1\r\nContent-Length: 3\r\nX-Keep: yes\r\n");
  out.clear();
  net::append_forward_fields(out, h, true, {}, "x-keep");
  CHECK(out == "Host: a\r\nTransfer-Encoding: chunked\r\n");
}

TEST_CASE("a Connection field naming many fields drops every one of them") {
  flow::Headers h{{"Connection", "x-1, x-2, x-3, x-4, x-5, x-6, x-7, x-8, x-9, x-10"}};
  for (int i = 1; i <= 10; ++i) h.add("X-" + std::to_string(i), "v");
  h.add("X-11", "kept");
  std::string out;
  net::append_forward_fields(out, h, false);
  CHECK(out == "X-11: kept\r\n");
}

TEST_CASE("absolute-form targets and authorities split into their parts") {
  net::AbsoluteTarget t;
  REQUIRE(net::parse_absolute_target("HTTP://h.test:81/p?q#frag", t));
  CHECK(t.scheme == "http");
  CHECK(t.authority == "h.test:81");
  CHECK(t.path == "/p?q");
  REQUIRE(net::parse_absolute_target("http://h.test?x", t));
  CHECK(t.path == "/?x");
  CHECK_FALSE(net::parse_absolute_target("/relative", t));
  CHECK_FALSE(net::parse_absolute_target("http://user@h.test/", t));
  std::string host;
  uint16_t port = 0;
  REQUIRE(net::split_host_port("[::1]:8443", 80, host, port));
  CHECK(host == "::1");
  CHECK(port == 8443);
  REQUIRE(net::split_host_port("h.test", 80, host, port));
  CHECK(port == 80);
  CHECK_FALSE(net::split_host_port("h.test:99999", 80, host, port));
  CHECK_FALSE(net::split_host_port(":80", 80, host, port));
}
