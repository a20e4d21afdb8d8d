#include "replay/server/server_replay.h"

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "flow/thread_name.h"
#include "net/h2/byte_stream.h"
#include "net/h2/h2_session.h"
#include "net/tls/certificate_authority.h"
#include "net/tls/tls_context.h"
#include "replay/server/refresh.h"

namespace retake::replay::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

const char* on_miss_name(OnMiss value) noexcept {
  switch (value) {
    case OnMiss::not_found:
      return "404";
    case OnMiss::bad_gateway:
      return "502";
    case OnMiss::forward:
      return "forward";
    case OnMiss::kill:
      return "kill";
  }
  return "unknown";
}

std::optional<OnMiss> on_miss_from_name(std::string_view name) noexcept {
  for (auto v : {OnMiss::not_found, OnMiss::bad_gateway, OnMiss::forward, OnMiss::kill})
    if (name == on_miss_name(v)) return v;
  return std::nullopt;
}

std::optional<Latency> Latency::parse(std::string_view text) {
  Latency l;
  if (text == "none") return l;
  if (text == "recorded") {
    l.mode = Mode::recorded;
    return l;
  }
  if (text.size() > 2 && text.substr(text.size() - 2) == "ms") text.remove_suffix(2);
  unsigned long ms = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  if (ms > static_cast<unsigned long>(std::chrono::milliseconds(kMaxLatency).count()))
    return std::nullopt;
  l.mode = Mode::fixed;
  l.fixed = std::chrono::milliseconds(ms);
  return l;
}

std::string ServeReport::to_text() const {
  std::string t = std::to_string(requests) + " requests: " + std::to_string(hits) +
                  " served from " + "recordings, " + std::to_string(misses) + " missed (" +
                  std::to_string(forwarded) + " forwarded), " + std::to_string(bad_requests) +
                  " malformed.\n";
  t += std::to_string(served_flows.size()) + " recorded flows served, " +
       std::to_string(unserved_flows.size()) + " never served";
  if (!unserved_flows.empty()) {
    t += ":";
    for (size_t i = 0; i < unserved_flows.size() && i < 20; ++i)
      t += " #" + std::to_string(unserved_flows[i]);
    if (unserved_flows.size() > 20) t += " ...";
  }
  t += ".\n";
  for (const auto& m : missed) t += "MISS " + m.request_line + ": " + m.explanation.text + "\n";
  return t;
}

namespace {

constexpr auto kTuple = asio::as_tuple(use_awaitable);
constexpr std::chrono::seconds kDrainTimeout{5};
constexpr const char* kLoopHeader = "X-Retake-Forwarded-By-Serve";
constexpr std::chrono::seconds kTlsHandshakeTimeout{10};

struct Origin {
  std::string scheme;     // lowercase
  std::string authority;  // as recorded
  std::string host;       // lowercase
  uint16_t port = 0;
};

bool bad_header_text(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool is_hop_by_hop_framing(std::string_view name) {
  return flow::iequals(name, "Content-Length") || flow::iequals(name, "Transfer-Encoding") ||
         flow::iequals(name, "Connection") || flow::iequals(name, "Keep-Alive") ||
         flow::iequals(name, "Proxy-Connection");
}

std::string hex(size_t n) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, n, 16);
  return std::string(buf, p);
}

void append_header(std::string& out, const flow::Header& h) {
  out.append(h.name).append(": ").append(h.value).append("\r\n");
}

// Serializes a response for the wire. Bodies go out byte-identical to what was recorded (no
// decoding; Content-Encoding as recorded); framing is ours: Content-Length for the stored body,
// or chunked when there are trailers to send to an HTTP/1.1 client.
std::string serialize_response(const flow::Response& r, bool head_request, bool http11,
                               bool keep_alive, const std::vector<flow::Header>& extra) {
  std::string out;
  out.reserve(256 + r.body.data.size());
  out += http11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  out += std::to_string(r.status);
  out += ' ';
  std::string reason = bad_header_text(r.reason) ? std::string() : r.reason;
  if (reason.empty())
    reason = std::string(http::obsolete_reason(static_cast<http::status>(r.status)));
  out += reason;
  out += "\r\n";
  bool no_body = r.status < 200 || r.status == 204 || r.status == 304 || head_request;
  std::optional<std::string> recorded_length;
  for (const auto& h : r.headers) {
    if (h.name.empty() || bad_header_text(h.name) || bad_header_text(h.value)) continue;
    if (flow::iequals(h.name, "Content-Length") && !recorded_length) recorded_length = h.value;
    if (is_hop_by_hop_framing(h.name)) continue;
    append_header(out, h);
  }
  for (const auto& h : extra) append_header(out, h);
  if (r.status != 101) out += keep_alive ? "" : "Connection: close\r\n";
  bool chunked = !no_body && http11 && !r.trailers.empty();
  if (no_body) {
    // HEAD and 304 describe the body they did not send: keep the recorded length.
    if (recorded_length && (head_request || r.status == 304))
      out += "Content-Length: " + *recorded_length + "\r\n";
  } else if (chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  } else {
    out += "Content-Length: " + std::to_string(r.body.data.size()) + "\r\n";
  }
  out += "\r\n";
  if (no_body) return out;
  if (!chunked) {
    out += r.body.data;
    return out;
  }
  if (!r.body.data.empty()) out += hex(r.body.data.size()) + "\r\n" + r.body.data + "\r\n";
  out += "0\r\n";
  for (const auto& h : r.trailers)
    if (!h.name.empty() && !bad_header_text(h.name) && !bad_header_text(h.value))
      append_header(out, h);
  out += "\r\n";
  return out;
}

std::string simple_response(int status, std::string_view content_type, std::string_view body,
                            bool keep_alive, const std::vector<flow::Header>& extra = {}) {
  flow::Response r;
  r.status = status;
  r.headers.add("Content-Type", std::string(content_type));
  for (const auto& h : extra) r.headers.add(h.name, h.value);
  r.body.data = std::string(body);
  return serialize_response(r, false, true, keep_alive, {});
}

bool accepts_json(const flow::Request& r) {
  for (auto v : r.headers.get_all("Accept")) {
    std::string lower(v);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.find("application/json") != std::string::npos) return true;
  }
  return false;
}

// A connection's stream, for the stop() registry: closing happens on the connection's strand.
struct Connection {
  beast::tcp_stream* tcp = nullptr;  // the lowest layer, owned by the coroutine frame
  bool busy = false;                 // touched only on the connection's strand
  bool closed = false;
  std::weak_ptr<h2::H2ServerSession> h2;  // set while the connection speaks HTTP/2
};

constexpr std::string_view kH2Preface = h2::kConnectionPreface;


// What one request gets, whatever HTTP version carried it.
struct Reply {
  enum class Kind : uint8_t {
    respond,    // send `response`
    kill,       // close (HTTP/1.1) or reset the stream (HTTP/2) without answering
    websocket,  // replay the recorded WebSocket conversation of `recorded`
  };
  Kind kind = Kind::respond;
  flow::Response response;  // extra headers (X-Retake-*) included
  bool close = false;       // end the connection after the answer
  const flow::Flow* recorded = nullptr;
};

}  // namespace

struct ServerReplay::State {
  ServeOptions options;
  std::unique_ptr<Matcher> matcher;
  std::vector<Origin> origins;          // distinct recorded origins, first-seen order
  std::optional<Origin> forced_origin;  // options.origin
  std::optional<ssl::context> tls;      // --cert/--key
  std::unique_ptr<tls::InterceptTlsContext> minted;  // --tls: leaves minted by retake's CA
  bool https() const { return tls.has_value() || minted != nullptr; }

  // Worker model (as the recorder's): each io_context is run by one thread and owns the
  // connections accepted onto it, so a connection's handlers never hop threads and strands
  // never contend. `ioc` (worker 0) also runs the acceptor.
  asio::io_context ioc{1};
  std::vector<std::unique_ptr<asio::io_context>> extra_workers;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_guards;
  size_t next_worker = 0;  // touched only by the accept loop
  asio::io_context& worker(size_t i) { return i == 0 ? ioc : *extra_workers[i - 1]; }
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  bool started = false;
  bool stopped = false;
  std::atomic<bool> stopping{false};
  std::atomic<int> active{0};

  std::mutex connections_mutex;
  uint64_t next_connection = 0;
  std::unordered_map<uint64_t, std::pair<asio::any_io_executor, std::shared_ptr<Connection>>>
      connections;

  mutable std::mutex report_mutex;
  uint64_t requests = 0, hits = 0, misses = 0, forwarded = 0, bad_requests = 0;
  std::vector<MissRecord> missed;

  std::mutex log_mutex;

  void log(const std::string& line) {
    if (options.log) {
      options.log(line);
      return;
    }
    std::lock_guard lock(log_mutex);
    std::cerr << "retake serve: " << line << '\n';
  }

  // Which origin a request received by the mock server is taken to be addressed to.
  Origin resolve_origin(std::string_view host_header) const {
    if (forced_origin) return *forced_origin;
    flow::Request probe;
    probe.scheme = https() ? "https" : "http";
    probe.authority = std::string(host_header);
    std::string host = probe.host();
    for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool has_port = probe.authority.find(':') != std::string::npos && probe.authority.back() != ']';
    const Origin* host_match = nullptr;
    for (const auto& o : origins) {
      if (o.host != host) continue;
      if (!has_port || o.port == probe.port()) return o;
      if (!host_match) host_match = &o;
    }
    if (host_match) return *host_match;
    if (origins.size() == 1) return origins.front();
    return Origin{probe.scheme, probe.authority, host, probe.port()};
  }

  void count_miss(const MissExplanation& e) {
    std::lock_guard lock(report_mutex);
    ++requests;
    ++misses;
    if (missed.size() < options.max_miss_records) missed.push_back({e.request_line, e});
  }
};

ServerReplay::ServerReplay(std::unique_ptr<State> state) : state_(std::move(state)) {}

ServerReplay::~ServerReplay() {
  stop();
}

Result<std::unique_ptr<ServerReplay>> ServerReplay::create(std::vector<flow::Flow> flows,
                                                           ServeOptions options) {
  auto state = std::make_unique<State>();
  if (options.cert_file.empty() != options.key_file.empty())
    return Status(Errc::invalid_argument, "TLS needs both a certificate and a key file");
  if (!options.cert_file.empty()) {
    state->tls.emplace(ssl::context::tls_server);
    boost::system::error_code ec;
    state->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                            ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                            ssl::context::no_tlsv1_1);
    state->tls->use_certificate_chain_file(options.cert_file, ec);
    if (ec)
      return Status(Errc::invalid_argument,
                    "certificate file '" + options.cert_file + "': " + ec.message());
    state->tls->use_private_key_file(options.key_file, ssl::context::pem, ec);
    if (ec)
      return Status(Errc::invalid_argument, "key file '" + options.key_file + "': " + ec.message());
    SSL_CTX_set_alpn_select_cb(state->tls->native_handle(), &tls::select_h2_or_http11, nullptr);
  }
  if (options.tls) {
    if (!options.cert_file.empty())
      return Status(Errc::invalid_argument,
                    "tls: serve either a minted certificate (tls) or a given one (cert/key)");
    std::filesystem::path dir = options.ca_dir;
    if (dir.empty()) {
      auto d = tls::default_ca_dir();
      if (!d) return Status(d.status().code(), "retake's CA: " + d.status().message());
      dir = *d;
    }
    auto ca = tls::CertificateAuthority::load_or_create(dir);
    if (!ca) return Status(ca.status().code(), "retake's CA: " + ca.status().message());
    auto leaves = tls::LeafCertCache::create(std::move(*ca));
    if (!leaves) return Status(leaves.status().code(), "retake's CA: " + leaves.status().message());
    tls::InterceptOptions io;
    io.alpn = {"h2", "http/1.1"};
    io.default_host = options.listen_host;
    auto ctx = tls::InterceptTlsContext::create(std::move(*leaves), io);
    if (!ctx) return ctx.status();
    state->minted = std::move(*ctx);
  }
  if (!options.origin.empty()) {
    auto sep = options.origin.find("://");
    flow::Request probe;
    if (sep != std::string::npos) {
      probe.scheme = options.origin.substr(0, sep);
      probe.authority = options.origin.substr(sep + 3);
      while (!probe.authority.empty() && probe.authority.back() == '/') probe.authority.pop_back();
    }
    if (sep == std::string::npos || probe.authority.empty() ||
        (probe.scheme != "http" && probe.scheme != "https") ||
        probe.authority.find('/') != std::string::npos)
      return Status(Errc::invalid_argument,
                    "origin: expected http://HOST[:PORT] or https://HOST[:PORT], got '" +
                        options.origin + "'");
    std::string host = probe.host();
    for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    state->forced_origin = Origin{probe.scheme, probe.authority, host, probe.port()};
  }
  auto matcher = Matcher::build(std::move(flows), options.match);
  if (!matcher.ok()) return matcher.status();
  state->matcher = std::move(matcher.value());
  for (const auto& f : state->matcher->flows()) {
    Origin o;
    o.scheme = f.request.scheme;
    for (char& c : o.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    o.authority = f.request.authority;
    o.host = f.request.host();
    for (char& c : o.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    o.port = f.request.port();
    bool seen = std::any_of(state->origins.begin(), state->origins.end(), [&](const Origin& x) {
      return x.scheme == o.scheme && x.host == o.host && x.port == o.port;
    });
    if (!seen) state->origins.push_back(std::move(o));
  }
  state->options = std::move(options);
  return std::unique_ptr<ServerReplay>(new ServerReplay(std::move(state)));
}

MatchResult ServerReplay::lookup(const flow::Request& request) {
  return state_->matcher->lookup(request);
}

namespace {
flow::Response prepare(const ServeOptions& options, const flow::Flow& recorded, int64_t now_ns) {
  flow::Response r = recorded.response ? *recorded.response : flow::Response{};
  if (options.refresh) {
    int64_t shift = refresh_shift_seconds(recorded, now_ns);
    refresh_dates(r, shift);
    if (options.body_refresher) options.body_refresher(r, recorded, shift);
  }
  return r;
}
}  // namespace

std::chrono::milliseconds latency_for(const Latency& l, const flow::Flow& f) {
  if (l.mode == Latency::Mode::fixed) return l.fixed;
  if (l.mode == Latency::Mode::none) return {};
  int64_t d = f.timing.response_started - f.timing.request_started;
  if (f.timing.response_started == 0 || f.timing.request_started == 0 || d <= 0) return {};
  return std::min(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(d)),
      std::chrono::milliseconds(kMaxLatency));
}

flow::Response ServerReplay::prepare_response(const flow::Flow& recorded, int64_t now_ns) const {
  return prepare(state_->options, recorded, now_ns);
}

ServerReplay::Decision ServerReplay::decide(const flow::Request& request, int64_t now_ns) {
  State& s = *state_;
  Decision d;
  MatchResult m = s.matcher->lookup(request);
  if (m.hit()) {
    {
      std::lock_guard lock(s.report_mutex);
      ++s.requests;
      ++s.hits;
    }
    d.origin = m.flow->id;
    d.delay = latency_for(s.options.latency, *m.flow);
    d.response = prepare(s.options, *m.flow, now_ns);
    if (s.options.match_header)
      d.response.headers.add("X-Retake-Match", std::to_string(m.flow->id));
    if (d.response.status == 101) {
      // An upgrade needs the relay this path does not have: say so instead of hanging.
      d.response = flow::Response{};
      d.response.status = 502;
      d.response.reason = "Bad Gateway";
      d.response.headers.add("Content-Type", "text/plain; charset=utf-8");
      d.response.body.data = "retake: a recorded protocol upgrade is not replayed here\n";
    }
    return d;
  }
  const MissExplanation& e = *m.miss;
  s.count_miss(e);
  d.miss = e;
  switch (s.options.on_miss) {
    case OnMiss::forward:
      d.kind = Decision::Kind::forward;
      {
        std::lock_guard lock(s.report_mutex);
        ++s.forwarded;
      }
      return d;
    case OnMiss::kill:
      d.kind = Decision::Kind::kill;
      return d;
    case OnMiss::not_found:
    case OnMiss::bad_gateway:
      break;
  }
  bool json = accepts_json(request);
  d.response.status = s.options.on_miss == OnMiss::bad_gateway ? 502 : 404;
  d.response.reason = d.response.status == 502 ? "Bad Gateway" : "Not Found";
  d.response.headers.add("Content-Type", json ? "application/json" : "text/plain; charset=utf-8");
  d.response.headers.add("X-Retake-Miss", reason_name(e.reason));
  d.response.body.data = json ? e.to_json() : "retake: " + e.text + "\n";
  d.response.body.size = d.response.body.data.size();
  return d;
}

const Matcher& ServerReplay::matcher() const {
  return *state_->matcher;
}

ServeReport ServerReplay::report() const {
  ServeReport rep;
  {
    std::lock_guard lock(state_->report_mutex);
    rep.requests = state_->requests;
    rep.hits = state_->hits;
    rep.misses = state_->misses;
    rep.forwarded = state_->forwarded;
    rep.bad_requests = state_->bad_requests;
    rep.missed = state_->missed;
  }
  auto counts = state_->matcher->served_counts();
  const auto& flows = state_->matcher->flows();
  for (size_t i = 0; i < flows.size(); ++i)
    (counts[i] ? rep.served_flows : rep.unserved_flows).push_back(flows[i].id);
  return rep;
}

// The per-connection coroutine and its helpers need the State; they are members of this local
// struct so the header stays free of Asio.
struct ConnectionTask {
  ServerReplay::State& s;

  template <class Stream>
  static beast::tcp_stream& lowest(Stream& stream) {
    return beast::get_lowest_layer(stream);
  }

  flow::Request to_request(const http::request<http::string_body>& req) {
    flow::Request r;
    r.method = std::string(req.method_string());
    r.http_version = req.version() == 10 ? "HTTP/1.0" : "HTTP/1.1";
    for (const auto& f : req) r.headers.add(std::string(f.name_string()), std::string(f.value()));
    r.body.data = req.body();
    r.body.size = r.body.data.size();
    std::string_view target = req.target();
    // absolute-form (a client using us as a proxy): the URL names the origin.
    auto sep = target.find("://");
    if (sep != std::string_view::npos && sep < 6 && target.front() != '/') {
      r.scheme = std::string(target.substr(0, sep));
      auto rest = target.substr(sep + 3);
      auto slash = rest.find_first_of("/?");
      r.authority = std::string(rest.substr(0, slash));
      r.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
      if (!r.path.empty() && r.path.front() == '?') r.path = "/" + r.path;
      return r;
    }
    r.path = std::string(target);
    Origin o = s.resolve_origin(r.headers.get("Host").value_or(""));
    r.scheme = o.scheme;
    r.authority = o.authority;
    return r;
  }

  std::chrono::milliseconds delay_for(const flow::Flow& f) const {
    return latency_for(s.options.latency, f);
  }

  // Forwards a missed request to its upstream; returns the relayed response or an error text.
  awaitable<std::optional<flow::Response>> forward(const flow::Request& r, std::string& error) {
    auto executor = co_await asio::this_coro::executor;
    tcp::resolver resolver(executor);
    std::string host = r.host();
    std::string port = std::to_string(r.port());
    auto [rec, endpoints] = co_await resolver.async_resolve(host, port, kTuple);
    if (rec) {
      error = "resolve " + host + ": " + rec.message();
      co_return std::nullopt;
    }
    http::request<http::string_body> out;
    out.method_string(r.method);
    out.target(r.path.empty() ? "/" : r.path);
    out.version(11);
    for (const auto& h : r.headers)
      if (!is_hop_by_hop_framing(h.name) && !flow::iequals(h.name, "Host"))
        out.insert(h.name, h.value);
    out.set(http::field::host, r.authority);
    // Marks the hop so a forward that comes back to this server (an origin naming ourselves)
    // is answered 508 instead of looping.
    out.set(kLoopHeader, "1");
    out.body() = r.body.data;
    out.prepare_payload();
    out.keep_alive(false);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(s.options.header_limit));
    parser.body_limit(s.options.body_limit);
    beast::error_code ec;
    if (flow::iequals(r.scheme, "https")) {
      ssl::context ctx(ssl::context::tls_client);
      ctx.set_default_verify_paths();
      ctx.set_verify_mode(ssl::verify_peer);
      beast::ssl_stream<beast::tcp_stream> stream(executor, ctx);
      if (!SSL_set_tlsext_host_name(stream.native_handle(), host.c_str())) {
        error = "bad SNI name " + host;
        co_return std::nullopt;
      }
      stream.set_verify_callback(ssl::host_name_verification(host));
      lowest(stream).expires_after(s.options.upstream_timeout);
      std::tie(ec, std::ignore) = co_await lowest(stream).async_connect(endpoints, kTuple);
      if (!ec) std::tie(ec) = co_await stream.async_handshake(ssl::stream_base::client, kTuple);
      if (!ec) std::tie(ec, std::ignore) = co_await http::async_write(stream, out, kTuple);
      if (!ec)
        std::tie(ec, std::ignore) = co_await http::async_read(stream, buffer, parser, kTuple);
      lowest(stream).close();
    } else {
      beast::tcp_stream stream(executor);
      stream.expires_after(s.options.upstream_timeout);
      std::tie(ec, std::ignore) = co_await stream.async_connect(endpoints, kTuple);
      if (!ec) std::tie(ec, std::ignore) = co_await http::async_write(stream, out, kTuple);
      if (!ec)
        std::tie(ec, std::ignore) = co_await http::async_read(stream, buffer, parser, kTuple);
      stream.close();
    }
    if (ec) {
      error = "upstream " + r.authority + ": " + ec.message();
      co_return std::nullopt;
    }
    auto& res = parser.get();
    flow::Response relayed;
    relayed.status = static_cast<int>(res.result_int());
    relayed.reason = std::string(res.reason());
    for (const auto& f : res)
      relayed.headers.add(std::string(f.name_string()), std::string(f.value()));
    relayed.body.data = std::move(res.body());
    relayed.body.size = relayed.body.data.size();
    co_return relayed;
  }

  // Replays a recorded WebSocket conversation after a recorded 101: server messages in recorded
  // order, waiting for one client message wherever the recording had one.
  template <class Stream>
  awaitable<void> replay_websocket(Stream& stream, http::request<http::string_body>& req,
                                   const flow::Flow& f) {
    beast::websocket::stream<Stream&> ws(stream);
    lowest(stream).expires_never();
    ws.set_option(beast::websocket::stream_base::timeout{
        std::chrono::milliseconds(s.options.read_timeout), s.options.read_timeout, false});
    const auto& recorded_headers = f.response->headers;
    ws.set_option(beast::websocket::stream_base::decorator(
        [&recorded_headers](beast::websocket::response_type& res) {
          for (const auto& h : recorded_headers) {
            if (flow::iequals(h.name, "Upgrade") || flow::iequals(h.name, "Connection") ||
                flow::iequals(h.name, "Sec-WebSocket-Accept") ||
                flow::iequals(h.name, "Sec-WebSocket-Extensions") || bad_header_text(h.value))
              continue;
            res.set(h.name, h.value);
          }
        }));
    auto [ec] = co_await ws.async_accept(req, kTuple);
    if (ec) co_return;
    beast::flat_buffer buffer;
    for (const auto& m : f.websocket->messages) {
      if (m.opcode != 1 && m.opcode != 2) continue;
      if (m.from_client) {
        auto [rec, n] = co_await ws.async_read(buffer, kTuple);
        if (rec) co_return;
        buffer.consume(buffer.size());
        continue;
      }
      ws.text(m.opcode == 1);
      auto [wec, n] = co_await ws.async_write(asio::buffer(m.payload), kTuple);
      if (wec) co_return;
    }
    beast::websocket::close_reason reason =
        f.websocket->close_code
            ? beast::websocket::close_reason(f.websocket->close_code)
            : beast::websocket::close_reason(beast::websocket::close_code::normal);
    co_await ws.async_close(reason, kTuple);
  }

  // What `request` gets: a recorded response (after its recorded latency, per the options), or
  // for a miss what the policy says (an explanation, a forwarded answer, or kill). Counts it in
  // the report and logs one line. `websocket`: the client asked for a WebSocket upgrade.
  awaitable<Reply> reply(const flow::Request& request, bool websocket) {
    Reply out;
    int64_t now = flow::now_ns();
    MatchResult m = s.matcher->lookup(request);
    if (m.hit()) {
      {
        std::lock_guard lock(s.report_mutex);
        ++s.requests;
        ++s.hits;
      }
      const flow::Flow& f = *m.flow;
      out.response = prepare(s.options, f, now);
      if (s.options.log_hits)
        s.log(request.method + " " + request.url() + " -> " +
              std::to_string(out.response.status) + " (flow #" + std::to_string(f.id) + ", " +
              std::to_string(m.use) + "/" + std::to_string(m.count) +
              (m.reused ? ", reused" : "") + ")");
      if (auto delay = delay_for(f); delay.count() > 0) {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        timer.expires_after(delay);
        co_await timer.async_wait(kTuple);
      }
      if (out.response.status == 101 && f.websocket && websocket) {
        out.kind = Reply::Kind::websocket;
        out.recorded = &f;
        co_return out;
      }
      if (out.response.status == 101) {
        // A recorded upgrade we cannot replay (not WebSocket, the client did not ask, or
        // HTTP/2): answering 101 would leave the client waiting on a protocol we do not speak.
        out.response = flow::Response{};
        out.response.status = 502;
        out.response.headers.add("Content-Type", "text/plain; charset=utf-8");
        out.response.body.data = "retake: recorded protocol upgrade cannot be replayed\n";
      }
      if (s.options.match_header) out.response.headers.add("X-Retake-Match", std::to_string(f.id));
      co_return out;
    }
    const MissExplanation& e = *m.miss;
    s.count_miss(e);
    const std::string& line = e.request_line;  // the explanation's, built once
    s.log("MISS " + line + " (on-miss " + on_miss_name(s.options.on_miss) + "): " + e.text);
    OnMiss policy = s.options.on_miss;
    auto text = [&out](int status, std::string content_type, std::string body,
                       const char* miss_reason) {
      out.response = flow::Response{};
      out.response.status = status;
      out.response.headers.add("Content-Type", std::move(content_type));
      out.response.headers.add("X-Retake-Miss", miss_reason);
      out.response.body.data = std::move(body);
    };
    if (policy == OnMiss::kill) {
      out.kind = Reply::Kind::kill;
    } else if (policy == OnMiss::forward && request.headers.contains(kLoopHeader)) {
      text(508, "text/plain; charset=utf-8",
           "retake: forwarding loop: the upstream of this miss is this server replay itself\n" +
               e.text + "\n",
           reason_name(e.reason));
      out.close = true;
    } else if (policy == OnMiss::forward) {
      std::string error;
      auto relayed = co_await forward(request, error);
      if (relayed) {
        {
          std::lock_guard lock(s.report_mutex);
          ++s.forwarded;
        }
        s.log(line + " -> " + std::to_string(relayed->status) + " (forwarded)");
        out.response = std::move(*relayed);
        out.response.headers.add("X-Retake-Forwarded", "1");
      } else {
        s.log("forward failed for " + line + ": " + error);
        text(502, "text/plain; charset=utf-8",
             "retake: forwarding the missed request failed: " + error + "\n" + e.text + "\n",
             reason_name(e.reason));
      }
    } else {
      bool json = accepts_json(request);
      text(policy == OnMiss::bad_gateway ? 502 : 404,
           json ? "application/json" : "text/plain; charset=utf-8",
           json ? e.to_json() : "retake: " + e.text + "\n", reason_name(e.reason));
    }
    co_return out;
  }

  // HTTP/1.x: requests in order on one connection; `buffer` may hold bytes already read.
  template <class Stream>
  awaitable<void> serve(Stream& stream, Connection& conn, beast::flat_buffer& buffer) {
    for (;;) {
      if (s.stopping) co_return;
      http::request_parser<http::string_body> parser;
      parser.header_limit(
          static_cast<uint32_t>(std::min<size_t>(s.options.header_limit, UINT32_MAX)));
      parser.body_limit(s.options.body_limit);
      lowest(stream).expires_after(s.options.read_timeout);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
      if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
          ec == beast::error::timeout || ec == asio::error::connection_reset ||
          ec == asio::error::eof || ec == ssl::error::stream_truncated)
        co_return;
      conn.busy = true;
      if (ec) {
        int status = ec == http::error::header_limit ? 431
                     : ec == http::error::body_limit ? 413
                                                     : 400;
        {
          std::lock_guard lock(s.report_mutex);
          ++s.requests;
          ++s.bad_requests;
        }
        s.log(std::to_string(status) + " malformed request: " + ec.message());
        std::string wire = simple_response(status, "text/plain; charset=utf-8",
                                           "malformed request: " + ec.message() + "\n", false);
        lowest(stream).expires_after(s.options.read_timeout);
        co_await asio::async_write(stream, asio::buffer(wire), kTuple);
        co_return;
      }
      auto& req = parser.get();
      flow::Request request = to_request(req);
      bool keep_alive = req.keep_alive() && !s.stopping;
      bool http11 = req.version() >= 11;
      bool head = req.method() == http::verb::head;
      Reply r = co_await reply(request, beast::websocket::is_upgrade(req));
      if (r.kind == Reply::Kind::kill) {
        lowest(stream).close();
        co_return;
      }
      if (r.kind == Reply::Kind::websocket) {
        co_await replay_websocket(stream, req, *r.recorded);
        co_return;
      }
      if (r.close) keep_alive = false;
      std::string wire = serialize_response(r.response, head, http11, keep_alive, {});
      lowest(stream).expires_after(s.options.read_timeout);
      auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(wire), kTuple);
      conn.busy = false;
      if (wec || !keep_alive) break;
    }
    // Graceful end: TLS close_notify, then FIN.
    if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
      lowest(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(kTuple);
    } else {
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  // HTTP/2 (ALPN h2, or the h2c preface in `initial`): each stream is answered by
  // serve_stream, concurrently, with the same decisions as HTTP/1.1.
  template <class Stream>
  awaitable<void> serve_h2(Stream& stream, Connection& conn, std::string initial) {
    lowest(stream).expires_never();  // the session has its own deadlines
    auto executor = co_await asio::this_coro::executor;
    h2::H2Options o;
    o.max_header_list_size =
        static_cast<uint32_t>(std::min<size_t>(s.options.header_limit, UINT32_MAX));
    o.idle_timeout = s.options.read_timeout;
    o.stream_timeout = std::max(s.options.read_timeout, s.options.upstream_timeout);
    ServerReplay::State* state = &s;
    auto session = h2::H2ServerSession::create(
        executor, std::make_unique<h2::AsioByteStream<Stream&>>(stream),
        [state](std::shared_ptr<h2::H2Stream> st) { return serve_stream(*state, std::move(st)); },
        o, std::move(initial));
    conn.h2 = session;
    if (s.stopping) session->shutdown();
    Status st = co_await session->run();
    if (!st.ok() && st.code() != Errc::timeout && st.code() != Errc::unavailable)
      s.log("HTTP/2 connection ended: " + st.message());
  }

  static awaitable<void> serve_stream(ServerReplay::State& s, std::shared_ptr<h2::H2Stream> st) {
    ConnectionTask task{s};
    Status read = co_await st->read_all(s.options.body_limit);
    if (!read.ok()) co_return;  // the client reset the stream or went away
    const flow::Request& in = st->request();
    if (in.body.truncated) {
      {
        std::lock_guard lock(s.report_mutex);
        ++s.requests;
        ++s.bad_requests;
      }
      s.log("413 request body over " + std::to_string(s.options.body_limit) + " bytes");
      flow::Response too_large;
      too_large.status = 413;
      too_large.headers.add("Content-Type", "text/plain; charset=utf-8");
      too_large.body.data = "malformed request: body limit exceeded\n";
      co_await respond_h2(*st, too_large, false);
      co_return;
    }
    flow::Request request;
    request.method = in.method;
    request.path = in.path.empty() ? "/" : in.path;
    request.http_version = "HTTP/2";
    request.headers = in.headers;
    request.body = in.body;
    request.trailers = in.trailers;
    // :authority plays the Host header's part in choosing the origin.
    std::string authority =
        in.authority.empty() ? std::string(in.headers.get("host").value_or("")) : in.authority;
    Origin o = s.resolve_origin(authority);
    request.scheme = o.scheme;
    request.authority = o.authority;
    Reply r = co_await task.reply(request, false);
    if (r.kind != Reply::Kind::respond) {
      st->reset(h2::H2ErrorCode::cancel);  // kill: the stream ends without an answer
      co_return;
    }
    co_await respond_h2(*st, r.response, request.method == "HEAD");
  }

  // Sends `r` on an HTTP/2 stream: framing headers are ours (content-length of the body sent;
  // the recorded one for HEAD and 304), the body as stored, trailers when recorded.
  static awaitable<void> respond_h2(h2::H2Stream& st, const flow::Response& r, bool head_request) {
    const bool no_body = r.status < 200 || r.status == 204 || r.status == 304 || head_request;
    flow::Response head;
    head.status = r.status < 200 ? 502 : r.status;
    std::optional<std::string> recorded_length;
    for (const auto& h : r.headers) {
      if (h.name.empty() || bad_header_text(h.name) || bad_header_text(h.value)) continue;
      if (flow::iequals(h.name, "Content-Length") && !recorded_length) recorded_length = h.value;
      if (is_hop_by_hop_framing(h.name)) continue;
      head.headers.add(h.name, h.value);
    }
    if (no_body) {
      if (recorded_length && (head_request || r.status == 304))
        head.headers.add("content-length", *recorded_length);
    } else {
      head.headers.add("content-length", std::to_string(r.body.data.size()));
    }
    const bool end = no_body || (r.body.data.empty() && r.trailers.empty());
    Status st_ = co_await st.respond(head, end);
    if (!st_.ok() || end) co_return;
    if (!r.body.data.empty()) st_ = co_await st.write(r.body.data, r.trailers.empty());
    if (st_.ok() && !r.trailers.empty()) st_ = co_await st.write_trailers(r.trailers);
  }
};

namespace {

awaitable<void> run_connection(ServerReplay::State& s, tcp::socket socket) {
  auto executor = socket.get_executor();
  auto conn = std::make_shared<Connection>();
  uint64_t id;
  beast::tcp_stream tcp_stream(std::move(socket));
  conn->tcp = &tcp_stream;
  {
    std::lock_guard lock(s.connections_mutex);
    id = s.next_connection++;
    s.connections.emplace(id, std::make_pair(executor, conn));
  }
  ConnectionTask task{s};
  try {
    if (s.https()) {
      ssl::context& context = s.minted ? s.minted->asio_context() : *s.tls;
      beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), context);
      conn->tcp = &beast::get_lowest_layer(stream);
      Status prepared;
      if (s.minted) {
        // A leaf for the SNI the client sends (the listen address when it sends none).
        tls::InterceptParams params;
        params.fallback_host = s.options.listen_host;
        params.alpn = {"h2", "http/1.1"};
        prepared = s.minted->prepare(stream.native_handle(), params);
        if (!prepared.ok()) s.log("TLS: " + prepared.message());
      }
      if (prepared.ok()) {
        beast::get_lowest_layer(stream).expires_after(kTlsHandshakeTimeout);
        auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, kTuple);
        if (!ec) {
          const unsigned char* alpn = nullptr;
          unsigned int alpn_len = 0;
          SSL_get0_alpn_selected(stream.native_handle(), &alpn, &alpn_len);
          if (std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) == "h2") {
            co_await task.serve_h2(stream, *conn, std::string());
          } else {
            beast::flat_buffer buffer;
            co_await task.serve(stream, *conn, buffer);
          }
        }
      }
      conn->tcp = nullptr;
    } else {
      // A prior-knowledge HTTP/2 client (h2c) opens with the connection preface: look at the
      // first bytes before choosing the protocol (HTTP/1.1 keeps them in `buffer`).
      beast::flat_buffer buffer;
      bool h2c = false;
      bool ended = false;
      tcp_stream.expires_after(s.options.read_timeout);
      for (;;) {
        std::string_view seen(static_cast<const char*>(buffer.data().data()), buffer.size());
        seen = seen.substr(0, kH2Preface.size());
        if (seen != kH2Preface.substr(0, seen.size())) break;
        if (seen.size() == kH2Preface.size()) {
          h2c = true;
          break;
        }
        auto [ec, n] = co_await tcp_stream.async_read_some(buffer.prepare(4096), kTuple);
        if (ec) {
          ended = true;
          break;
        }
        buffer.commit(n);
      }
      if (h2c) {
        co_await task.serve_h2(tcp_stream, *conn, beast::buffers_to_string(buffer.data()));
      } else if (!ended) {
        co_await task.serve(tcp_stream, *conn, buffer);
      }
      conn->tcp = nullptr;
    }
  } catch (const std::exception& e) {
    conn->tcp = nullptr;
    s.log(std::string("connection error: ") + e.what());
  }
  {
    std::lock_guard lock(s.connections_mutex);
    s.connections.erase(id);
  }
  --s.active;
}

awaitable<void> accept_loop(ServerReplay::State& s) {
  for (;;) {
    auto& worker = s.worker(s.next_worker++ % (s.extra_workers.size() + 1));
    auto [ec, socket] = co_await s.acceptor->async_accept(worker.get_executor(), kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || s.stopping) co_return;
      // EMFILE and friends: back off briefly instead of spinning.
      asio::steady_timer t(s.ioc, std::chrono::milliseconds(50));
      co_await t.async_wait(kTuple);
      continue;
    }
    if (s.stopping) co_return;
    ++s.active;
    auto executor = socket.get_executor();
    asio::co_spawn(executor, run_connection(s, std::move(socket)), asio::detached);
  }
}

}  // namespace

Result<std::string> ServerReplay::start() {
  auto& s = *state_;
  if (s.started) return Status(Errc::failed_precondition, "server replay already started");
  boost::system::error_code ec;
  auto address = asio::ip::make_address(s.options.listen_host, ec);
  if (ec)
    return Status(Errc::invalid_argument,
                  "listen address '" + s.options.listen_host + "': " + ec.message());
  tcp::endpoint endpoint(address, s.options.listen_port);
  s.acceptor.emplace(asio::make_strand(s.ioc));
  if (s.acceptor->open(endpoint.protocol(), ec); ec)
    return Status(Errc::io_error, "socket: " + ec.message());
  s.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (s.acceptor->bind(endpoint, ec); ec)
    return Status(ec == asio::error::address_in_use ? Errc::already_exists : Errc::io_error,
                  "bind " + s.options.listen_host + ":" + std::to_string(s.options.listen_port) +
                      ": " + ec.message());
  if (s.acceptor->listen(asio::socket_base::max_listen_connections, ec); ec)
    return Status(Errc::io_error, "listen: " + ec.message());
  auto bound = s.acceptor->local_endpoint();
  s.started = true;
  asio::co_spawn(s.acceptor->get_executor(), accept_loop(s), asio::detached);
  unsigned n = s.options.threads ? s.options.threads : std::thread::hardware_concurrency();
  n = std::clamp(n, 1u, 64u);
  for (unsigned i = 1; i < n; ++i) {
    s.extra_workers.push_back(std::make_unique<asio::io_context>(1));
    s.work_guards.push_back(asio::make_work_guard(*s.extra_workers.back()));
  }
  for (unsigned i = 0; i < n; ++i)
    s.threads.emplace_back([&s, i] {
      name_this_thread("retake-serve");
      s.worker(i).run();
    });
  std::string host = bound.address().to_string();
  if (bound.address().is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(bound.port());
}

void ServerReplay::stop() {
  auto& s = *state_;
  if (!s.started || s.stopped) return;
  s.stopped = true;
  s.stopping = true;
  asio::post(s.acceptor->get_executor(), [&s] {
    boost::system::error_code ignored;
    s.acceptor->close(ignored);
  });
  // Idle connections (waiting for a request) close now; busy ones finish their response.
  auto close_connections = [&s](bool even_busy) {
    std::lock_guard lock(s.connections_mutex);
    for (auto& [id, entry] : s.connections) {
      asio::post(entry.first, [conn = entry.second, even_busy] {
        auto h2 = conn->h2.lock();
        if (h2 && !even_busy) {
          h2->shutdown();  // GOAWAY: streams in flight finish, no new ones
        } else if (conn->tcp && (even_busy || !conn->busy)) {
          conn->tcp->cancel();
        }
      });
    }
  };
  close_connections(false);
  auto deadline = std::chrono::steady_clock::now() + kDrainTimeout;
  while (s.active > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    close_connections(false);
  }
  if (s.active > 0) close_connections(true);
  auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (s.active > 0 && std::chrono::steady_clock::now() < hard)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  s.work_guards.clear();
  s.ioc.stop();
  for (auto& w : s.extra_workers) w->stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
}

}  // namespace retake::replay::server
