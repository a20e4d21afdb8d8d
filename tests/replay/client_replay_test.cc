// ClientReplay end to end: a sequence recorded against test-app instance A (whose clock runs an
// hour behind, so the recording is an hour old) is replayed against a FRESH instance B, where
// every step succeeds only because bindings and the time shift did their job; then the same
// replay without bindings and without the shift fails at exactly the expected steps.
#include <doctest/doctest.h>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <mutex>
#include <thread>

#include "net/client/http_client.h"
#include "replay/client/client_replay.h"
#include "support/app/process.h"

using namespace retake;
using namespace retake::replay;
using retake::testing::ChildServer;

namespace {

constexpr int64_t kHourNs = 3600 * kNsPerSecond;

ChildServer app(double skew = 0) {
  return ChildServer(
      {"python3", retake::testing::app_dir() + "/app.py", "--skew", std::to_string(skew)});
}

struct CollectingSink : flow::FlowSink {
  std::mutex mutex;
  std::vector<flow::Flow> flows;
  bool offer(flow::Flow&& f) override {
    std::lock_guard lock(mutex);
    flows.push_back(std::move(f));
    return true;
  }
};

flow::Request request(const std::string& method, const std::string& path, uint16_t port) {
  flow::Request r;
  r.method = method;
  r.scheme = "http";
  r.authority = "prod.example.test:" + std::to_string(port);
  r.path = path;
  r.http_version = "HTTP/1.1";
  r.headers.add("Host", r.authority);
  r.headers.add("User-Agent", "recorded-client/1.0");
  return r;
}

std::string iso_utc(int64_t ns) {
  std::time_t t = static_cast<std::time_t>(ns / kNsPerSecond);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string between(const std::string& s, const std::string& a, const std::string& b) {
  auto i = s.find(a);
  REQUIRE(i != std::string::npos);
  i += a.size();
  return s.substr(i, s.find(b, i) - i);
}

// Drives the five-step sequence against `port` (an instance whose clock is an hour behind),
// the way a real client would, and returns the flows as a recording would store them: ids,
// one client connection, request times an hour in the past.
std::vector<flow::Flow> record_sequence(uint16_t port) {
  net::HttpClient client;
  net::Endpoint ep{"http", "127.0.0.1", port, ""};
  const int64_t past = flow::now_ns() - kHourNs;
  std::vector<flow::Flow> flows;
  auto send = [&](flow::Request r) {
    auto f = client.send_sync(std::move(r), ep);
    REQUIRE_MESSAGE(f.response, (f.error ? f.error->message : ""));
    flows.push_back(f);
    return f;
  };

  auto login = request("POST", "/login", port);
  login.headers.add("Content-Type", "application/json");
  login.body.data = R"({"user":"ann"})";
  auto f1 = send(login);
  REQUIRE(f1.response->status == 200);
  std::string token =
      std::string(boost::json::parse(f1.response->body.data).at("token").as_string());

  auto form = request("GET", "/form", port);
  form.headers.add("Cookie", "sid=" + token);
  auto f2 = send(form);
  REQUIRE(f2.response->status == 200);
  std::string csrf = between(f2.response->body.data, "name=\"csrf\" value=\"", "\"");

  auto create = request("POST", "/items", port);
  create.headers.add("Cookie", "theme=dark; sid=" + token);
  create.headers.add("X-CSRF-Token", csrf);
  create.headers.add("Content-Type", "application/json");
  create.body.data = R"({"name":"widget","ts":")" + iso_utc(past) + R"("})";
  auto f3 = send(create);
  REQUIRE(f3.response->status == 201);
  std::string id = std::string(boost::json::parse(f3.response->body.data).at("id").as_string());

  auto read = request("GET", "/items/" + id, port);
  read.headers.add("Authorization", "Bearer " + token);
  auto f4 = send(read);
  REQUIRE(f4.response->status == 200);

  auto update = request("PUT", "/items/" + id, port);
  update.headers.add("Cookie", "sid=" + token);
  update.headers.add("X-Request-Time", std::to_string(past / kNsPerSecond));
  update.headers.add("Content-Type", "application/x-www-form-urlencoded");
  update.body.data = "csrf=" + csrf + "&name=gadget";
  auto f5 = send(update);
  REQUIRE(f5.response->status == 200);

  // As the recorder would have stored them: an hour ago, one client connection, fresh ids.
  uint64_t id_counter = 1000;
  for (auto& f : flows) {
    f.id = ++id_counter;
    f.session = "shop";
    f.mode = "reverse";
    f.client_address = "192.0.2.10:51000";
    for (int64_t* t :
         {&f.timing.client_connected, &f.timing.request_started, &f.timing.request_ended,
          &f.timing.upstream_connected, &f.timing.response_started, &f.timing.response_ended})
      if (*t) *t -= kHourNs;
  }
  return flows;
}

std::vector<int> statuses_by_origin(const ClientReplay& replay,
                                    const std::vector<flow::Flow>& flows) {
  std::vector<int> out;
  for (const auto& f : flows) {
    int status = -1;
    for (const auto& r : replay.results())
      if (r.origin == f.id) status = r.status;
    out.push_back(status);
  }
  return out;
}

ReplayOptions to(uint16_t port) {
  ReplayOptions o;
  o.target = "http://prod.example.test:" + std::to_string(port);
  o.host_map.push_back({"prod.example.test", "127.0.0.1", 0});
  return o;
}

}  // namespace

TEST_CASE(
    "a recording replayed against a fresh instance succeeds thanks to bindings and the time "
    "shift") {
  auto a = app(-3600);
  auto flows = record_sequence(a.port());
  auto b = app();
  CollectingSink sink;
  ClientReplay replay(flows, to(b.port()), &sink);
  auto summary = replay.run();
  REQUIRE(summary.ok());
  CHECK(statuses_by_origin(replay, flows) == std::vector<int>{200, 200, 201, 200, 200});
  // By default each result also keeps its flow (without body bytes), agreeing with the summary.
  for (const auto& r : replay.results()) {
    REQUIRE(r.replayed);
    REQUIRE(r.replayed->response);
    CHECK(r.replayed->response->status == r.status);
    CHECK(r.replayed->response->body.data.empty());
    CHECK(r.replayed->response->body.size > 0);
    CHECK(r.duration_ns == r.replayed->duration());
    CHECK(r.timing.request_started == r.replayed->timing.request_started);
    CHECK(r.request_line == r.replayed->request.method + " " + r.replayed->request.path);
  }
  CHECK(summary->sent == 5);
  CHECK(summary->completed == 5);
  CHECK(summary->mismatches == 0);
  CHECK(summary->transport_errors == 0);
  CHECK_FALSE(summary->interrupted);
  CHECK(exit_code(*summary, true) == 0);
  // token in 4 later requests, csrf in 2, item id in 2.
  CHECK(summary->bindings_applied == 8);
  CHECK(summary->bindings_unresolved == 0);
  CHECK(summary->time_shift.shifted >= 2);
  CHECK(summary->shift_ns > kHourNs - 60 * kNsPerSecond);
  bool cookie_bound = false, csrf_bound = false, id_bound = false;
  for (const auto& e : replay.binding_events()) {
    CHECK(e.resolved);
    if (e.capture == "cookie sid") cookie_bound = true;
    if (e.capture == "hidden csrf") csrf_bound = true;
    if (e.capture == "json id" && e.where.find("path") != std::string::npos) id_bound = true;
  }
  CHECK(cookie_bound);
  CHECK(csrf_bound);
  CHECK(id_bound);
  // Every replayed exchange went to the sink as a new flow of the run, linked to its origin.
  REQUIRE(sink.flows.size() == 5);
  for (const auto& f : sink.flows) {
    CHECK(f.run == replay.run_id());
    CHECK(f.origin > 1000);
    CHECK(f.session == "shop");
    CHECK(f.request.headers.get("Host") == "prod.example.test:" + std::to_string(b.port()));
  }
  CHECK(replay.run_id().rfind("run-", 0) == 0);
  auto meta = boost::json::parse(run_summary_json(*summary)).as_object();
  CHECK(meta.at("session").as_string() == "shop");
  CHECK(meta.at("completed").to_number<uint64_t>() == 5);
}

TEST_CASE("without bindings the replay fails from the first request that needs the session") {
  auto a = app(-3600);
  auto flows = record_sequence(a.port());
  auto b = app();
  auto options = to(b.port());
  options.bindings.automatic = false;
  options.keep_flows = false;  // results carry the summary fields only
  ClientReplay replay(flows, options);
  auto summary = replay.run();
  REQUIRE(summary.ok());
  CHECK(statuses_by_origin(replay, flows) == std::vector<int>{200, 401, 401, 401, 401});
  for (const auto& r : replay.results()) {
    CHECK_FALSE(r.replayed);
    CHECK(r.timing.request_started > 0);
    CHECK(r.duration_ns > 0);
    CHECK(r.request_line.find(' ') != std::string::npos);
  }
  CHECK(summary->mismatches == 4);
  CHECK(summary->transport_errors == 0);
  CHECK(exit_code(*summary, false) == 0);
  CHECK(exit_code(*summary, true) == 1);
  CHECK(replay.binding_events().empty());
}

TEST_CASE("without the time shift the timestamped writes are rejected as stale") {
  auto a = app(-3600);
  auto flows = record_sequence(a.port());
  auto b = app();
  auto options = to(b.port());
  options.shift_mode = TimeShiftMode::none;
  ClientReplay replay(flows, options);
  auto summary = replay.run();
  REQUIRE(summary.ok());
  // Step 3 carries a stale ts (400), so no item id exists for step 4 (404), and step 5's
  // X-Request-Time is stale (400).
  CHECK(statuses_by_origin(replay, flows) == std::vector<int>{200, 200, 400, 404, 400});
  CHECK(summary->bindings_unresolved == 2);
  size_t unresolved_id = 0;
  for (const auto& e : replay.binding_events())
    if (!e.resolved && e.capture == "json id") {
      ++unresolved_id;
      CHECK(e.where.find("has no json id") != std::string::npos);
    }
  CHECK(unresolved_id == 2);
}

TEST_CASE("a shift of a fixed offset moves the recorded times by exactly that much") {
  auto a = app(-3600);
  auto flows = record_sequence(a.port());
  auto b = app();
  auto options = to(b.port());
  options.shift_mode = TimeShiftMode::offset;
  options.shift_ns = kHourNs;
  ClientReplay replay(flows, options);
  auto summary = replay.run();
  REQUIRE(summary.ok());
  CHECK(summary->shift_ns == kHourNs);
  CHECK(statuses_by_origin(replay, flows) == std::vector<int>{200, 200, 201, 200, 200});
}

TEST_CASE("a target that is down counts transport errors and exits 1") {
  std::vector<flow::Flow> flows;
  for (int i = 0; i < 3; ++i) {
    flow::Flow f;
    f.id = static_cast<uint64_t>(i + 1);
    f.request = request("GET", "/x", 1);
    f.response = flow::Response{200, "OK", "HTTP/1.1", {}, {}, {}};
    f.timing.request_started = 1'000'000 + i;
    flows.push_back(f);
  }
  uint16_t port;
  {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor acc(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
    port = acc.local_endpoint().port();
  }
  ClientReplay replay(flows, to(port));
  auto summary = replay.run();
  REQUIRE(summary.ok());
  CHECK(summary->transport_errors == 3);
  CHECK(summary->completed == 0);
  CHECK(exit_code(*summary, false) == 1);
  for (const auto& r : replay.results()) {
    REQUIRE(r.error);
    CHECK(r.error->kind == flow::ErrorKind::upstream_unreachable);
  }
}

TEST_CASE("bad options are refused before anything is sent") {
  std::vector<flow::Flow> none;
  ReplayOptions o;
  o.target = "ftp://x";
  CHECK(ClientReplay(none, o).start().code() == Errc::invalid_argument);
  o.target = "http://x";
  o.speed = 0;
  CHECK(ClientReplay(none, o).start().code() == Errc::invalid_argument);
  o.speed = 1;
  o.concurrency = 0;
  CHECK(ClientReplay(none, o).start().code() == Errc::invalid_argument);
  CHECK(parse_host_mapping("prod.example.test=127.0.0.1:8443").ok());
  CHECK(parse_host_mapping("prod.example.test=127.0.0.1:8443")->port == 8443);
  CHECK(parse_host_mapping("h=[::1]:99")->address == "::1");
  CHECK_FALSE(parse_host_mapping("nohost").ok());
  CHECK_FALSE(parse_host_mapping("h=1.2.3.4:99999").ok());
}
