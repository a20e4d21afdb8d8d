// The recording proxy: N workers, each an io_context run by one thread with its own upstream
// pool (nginx's and nghttpx's worker model); one coroutine per client connection (nghttpx's
// Upstream side) pinned to a worker; a watchdog timer per connection that enforces every
// deadline without a timer operation per I/O.
//
// Why not one io_context shared by N threads with a strand per connection (ARCHITECTURE.md's
// first sketch): measured on the 2-core box, the shared scheduler hands completions between
// threads (futex wake-ups) on every read, which costs latency at low concurrency and lock
// contention at high concurrency; pinning removes both and needs no strands, because each
// connection's handlers can only ever run on its worker's thread.
#include "record/recorder.h"

#include <ctime>

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <iterator>
#include <optional>
#include <thread>
#include <tuple>
#include <unordered_map>

#include <re2/re2.h>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/http/status.hpp>

// Asio brings <netinet/in.h>, which must come before the netfilter header.
#include <linux/netfilter_ipv4.h>

#include "flow/thread_name.h"
#include "net/http1.h"
#include "net/read_buffer.h"
#include "net/tls/tls_context.h"
#include "net/upstream_pool.h"
#include "record/h2_front.h"
#include "record/record_util.h"
#include "record/websocket_frames.h"

namespace retake::record {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using detail::Capture;
using detail::endpoint_text;
using detail::finish_body;
using detail::ms_text;
using detail::WebSocketRecording;
using flow::ErrorKind;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kPeekAfterIdle = std::chrono::seconds(1);
// Bytes asked for per read while streaming a body (fewer syscalls for large bodies).
constexpr size_t kBodyRead = 16u << 10;
// Largest write coalesced into one TLS record (the TLS maximum record payload).
constexpr size_t kTlsCoalesce = 16u << 10;
using Executor = asio::io_context::executor_type;
using TlsStream = asio::ssl::stream<tcp::socket&>;
// ALPN offered to clients whose TLS we terminate, in our order of preference: HTTP/2 goes to
// the h2 front (ProxyConnection::serve_h2_handoff), HTTP/1.1 stays here.
const std::vector<std::string> kClientAlpn = {"h2", "http/1.1"};

// One side of a proxied connection: its TCP socket and, when that side speaks TLS, the TLS
// stream layered on it. I/O branches once per read or write on `tls` (no virtual call), so the
// plain path costs what it did before TLS existed.
struct Side {
  tcp::socket* socket;
  TlsStream* tls;
};

// What a TLS upstream connection keeps in net::UpstreamConnection::layer (pooled with it).
struct UpstreamTls {
  UpstreamTls(tcp::socket& socket, asio::ssl::context& context) : stream(socket, context) {}
  TlsStream stream;
  flow::TlsInfo info;  // collected once at the handshake, copied into every flow on it
  std::string key;     // pool key: the session cache's key too
  class UpstreamSessionCache* sessions = nullptr;
};

// Upstream TLS sessions kept for resumption, one per pool key (host, port and SNI): a new
// connection to an upstream we spoke to before resumes instead of running a full handshake (no
// chain to verify here, no signature there), which is most of the cost when clients open a
// connection per request. Bounded; thread-safe (a mutex around a map look-up, never across I/O).
class UpstreamSessionCache {
 public:
  static constexpr size_t kMaxSessions = 4096;
  UpstreamSessionCache() = default;
  UpstreamSessionCache(const UpstreamSessionCache&) = delete;
  UpstreamSessionCache& operator=(const UpstreamSessionCache&) = delete;
  ~UpstreamSessionCache() {
    for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
  }
  // Takes ownership of `session`.
  void put(const std::string& key, SSL_SESSION* session) {
    std::lock_guard lock(mutex_);
    if (sessions_.size() >= kMaxSessions && !sessions_.count(key)) {
      for (auto& [k, s] : sessions_) SSL_SESSION_free(s);
      sessions_.clear();  // crude but bounded; a full cache only costs full handshakes
    }
    auto [it, inserted] = sessions_.try_emplace(key, session);
    if (!inserted) {
      SSL_SESSION_free(it->second);
      it->second = session;
    }
  }
  // Sets the cached session for `key` (if any, and still resumable) on `ssl`.
  void apply(const std::string& key, SSL* ssl) {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(key);
    if (it != sessions_.end() && SSL_SESSION_is_resumable(it->second))
      SSL_set_session(ssl, it->second);  // takes its own reference
  }
  // OpenSSL's new-session callback (TLS 1.3 tickets arrive after the handshake, so the session
  // is taken when OpenSSL has it, not right after the handshake).
  static int on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* layer = static_cast<UpstreamTls*>(SSL_get_ex_data(ssl, ex_index()));
    if (layer == nullptr || layer->sessions == nullptr) return 0;
    // A copy: OpenSSL marks the connection's own session object not resumable when that
    // connection ends without a close_notify (upstreams often just close), which would spoil
    // the cached one.
    if (SSL_SESSION* copy = SSL_SESSION_dup(session)) layer->sessions->put(layer->key, copy);
    return 0;  // OpenSSL keeps its reference to `session`
  }
  static int ex_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, SSL_SESSION*> sessions_;
};

// Where every request of a client connection goes when the connection, not each request,
// decides it: reverse mode, an intercepted CONNECT, a transparent TLS connection.
struct Destination {
  std::string scheme;     // "http" or "https" (TLS to the upstream)
  std::string authority;  // recorded as Request::authority
  std::string host;       // connected to
  uint16_t port = 0;
  std::string sni;        // https: the name sent as SNI and verified
  std::string key;        // upstream pool key
  bool rewrite_host = false;  // reverse mode: the Host sent upstream is `authority`
  bool h2c = false;           // plain upstream spoken as HTTP/2 with prior knowledge
  bool tls() const { return scheme == "https"; }
};

std::string pool_key(const std::string& scheme, const std::string& host, uint16_t port,
                     const std::string& sni) {
  std::string key = host + ":" + std::to_string(port);
  // TLS connections are pooled apart from plain ones and per SNI (a different name may be a
  // different virtual host and certificate on the same address).
  if (scheme == "https") key = "https:" + key + "/" + sni;
  return key;
}

// One thread, its io_context and its upstream pool. Pooled sockets belong to the worker's
// io_context, so a connection only ever takes from its own worker's pool.
struct Worker {
  Worker(size_t per_upstream, size_t max_total, std::chrono::milliseconds idle)
      : ioc(std::make_unique<asio::io_context>(1)), pool(per_upstream, max_total, idle) {}
  std::unique_ptr<asio::io_context> ioc;
  net::UpstreamPool pool;
  std::optional<asio::executor_work_guard<Executor>> work;
  std::optional<asio::steady_timer> sweep_timer;
  std::thread thread;
};

// What a connection is waiting for; the watchdog reports which deadline passed.
enum class Phase : uint8_t {
  none,
  idle,            // between requests
  client_head,     // reading a request head
  client_body,     // reading a request body
  client_write,    // writing to the client
  connect,         // resolving / connecting to the upstream
  upstream_write,  // writing the request upstream
  upstream_head,   // waiting for the response head
  upstream_body,   // reading the response body
  tunnel,          // CONNECT tunnel / WebSocket relay inactivity
  client_tls,      // the client's TLS handshake
  upstream_tls,    // the upstream TLS handshake
};

// The destination a client connected to before the firewall redirected it here (iptables
// REDIRECT/DNAT), or nullopt when the connection was not redirected.
std::optional<tcp::endpoint> original_destination(tcp::socket& socket) {
  constexpr int kIp6tSoOriginalDst = 80;  // IP6T_SO_ORIGINAL_DST, without ip6_tables.h
  error_code ec;
  auto local = socket.local_endpoint(ec);
  if (ec) return std::nullopt;
  tcp::endpoint ep;
  socklen_t len = static_cast<socklen_t>(ep.capacity());
  int rc =
      local.address().is_v4()
          ? ::getsockopt(socket.native_handle(), SOL_IP, SO_ORIGINAL_DST, ep.data(), &len)
          : ::getsockopt(socket.native_handle(), SOL_IPV6, kIp6tSoOriginalDst, ep.data(), &len);
  if (rc != 0) return std::nullopt;
  ep.resize(len);
  if (ep == local) return std::nullopt;  // not redirected: it would loop back to us
  return ep;
}

bool idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

}  // namespace

class ProxyConnection;

class RecorderImpl final : public Recorder {
 public:
  RecorderImpl(const RecorderOptions& options, flow::FlowSink& sink)
      : options_(options),
        sink_(sink),
        threads_(options.threads ? options.threads
                                 : std::max(1u, std::thread::hardware_concurrency())) {
    for (unsigned i = 0; i < threads_; ++i)
      workers_.push_back(std::make_unique<Worker>(
          std::max<size_t>(options.pool_per_upstream, 1),
          std::max<size_t>(options.pool_per_upstream * 16, 1024), options.pool_idle_timeout));
  }
  ~RecorderImpl() override { stop(std::chrono::milliseconds(0)); }

  Result<std::string> start() override;
  void stop(std::chrono::milliseconds grace) override;
  RecorderStats stats() const override;

  // Hands a finished flow to the sink; never blocks.
  void offer(flow::Flow&& f) {
    if (f.error) errors_.fetch_add(1, std::memory_order_relaxed);
    // Count before handing over: once offered, the flow may be written (and seen by a
    // watcher) before offer() returns, and stats must never lag what a reader can see.
    flows_.fetch_add(1, std::memory_order_relaxed);
    if (!sink_.offer(std::move(f))) {
      flows_.fetch_sub(1, std::memory_order_relaxed);
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  void unregister(ProxyConnection* c) {
    std::lock_guard lock(registry_mutex_);
    registry_.erase(c);
  }

  // The context that terminates intercepted clients' TLS, built on first use (so a recorder
  // that never sees TLS never touches the CA directory). Thread-safe. A failure (unreadable CA)
  // is returned to every later caller too.
  Result<tls::InterceptTlsContext*> intercept_context() {
    std::lock_guard lock(intercept_mutex_);
    if (intercept_) return intercept_.get();
    if (!intercept_error_.ok()) return intercept_error_;
    auto fail = [&](Status st) -> Result<tls::InterceptTlsContext*> {
      intercept_error_ = Status(st.code(), "retake's CA: " + st.message());
      return intercept_error_;
    };
    std::filesystem::path dir = options_.ca_dir;
    if (dir.empty()) {
      auto d = tls::default_ca_dir();
      if (!d) return fail(d.status());
      dir = *d;
    }
    auto ca = tls::CertificateAuthority::load_or_create(dir);
    if (!ca) return fail(ca.status());
    auto leaves = tls::LeafCertCache::create(std::move(*ca));
    if (!leaves) return fail(leaves.status());
    tls::InterceptOptions io;
    io.alpn = kClientAlpn;
    io.default_host = options_.listen_host;
    auto ctx = tls::InterceptTlsContext::create(std::move(*leaves), io);
    if (!ctx) return fail(ctx.status());
    intercept_ = std::move(*ctx);
    return intercept_.get();
  }

  // True when a CONNECT to host:port must be relayed undecrypted (ignore_hosts / allow_hosts).
  bool passthrough(const std::string& host, uint16_t port) const {
    if (!ignore_hosts_ && !allow_hosts_) return false;
    std::string with_port = host + ":" + std::to_string(port);
    auto matches = [&](const RE2& re) {
      return RE2::PartialMatch(host, re) || RE2::PartialMatch(with_port, re);
    };
    if (ignore_hosts_ && matches(*ignore_hosts_)) return true;
    if (allow_hosts_ && !matches(*allow_hosts_)) return true;
    return false;
  }

  const RecorderOptions options_;
  flow::FlowSink& sink_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> connections_{0}, active_{0}, flows_{0}, dropped_{0}, errors_{0},
      upstream_connects_{0}, answered_{0};
  const unsigned threads_;
  std::mutex registry_mutex_;
  std::unordered_map<ProxyConnection*, std::weak_ptr<ProxyConnection>> registry_;
  // Declared before workers_ so that it outlives every upstream SSL that points to it.
  UpstreamSessionCache upstream_sessions_;
  // Their io_contexts are reset explicitly in stop(): destroying an io_context destroys
  // suspended coroutines, which touch the members above.
  std::vector<std::unique_ptr<Worker>> workers_;
  // The upstream TLS client context, made by the first connection that needs it: a recorder
  // whose upstreams are all plain never pays for an OpenSSL context (its start-up time and
  // about 0.7 MB of memory). create() makes it at once when an upstream CA file must be
  // checked or the reverse upstream is https. nullptr with the reason when making it failed.
  Result<tls::UpstreamTlsContext*> upstream_tls() {
    std::call_once(upstream_tls_once_, [this] {
      if (auto st = make_upstream_tls(); !st.ok()) upstream_tls_error_ = std::move(st);
    });
    if (!upstream_tls_error_.ok()) return upstream_tls_error_;
    return upstream_tls_.get();
  }
  Status make_upstream_tls() {
    tls::UpstreamTlsOptions uo;
    uo.insecure = options_.insecure_upstream;
    uo.extra_ca_file = options_.upstream_ca_file;
    uo.lazy_system_roots = true;  // every upstream handshake here runs prepare() first
    auto made = tls::UpstreamTlsContext::create(uo);
    if (!made)
      return Status(made.status().code(), "upstream_ca_file: " + made.status().message());
    upstream_tls_ = std::move(*made);
    SSL_CTX* ctx = upstream_tls_->native_handle();
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &UpstreamSessionCache::on_new_session);
    return {};
  }
  std::once_flag upstream_tls_once_;
  std::unique_ptr<tls::UpstreamTlsContext> upstream_tls_;
  Status upstream_tls_error_;
  // Set by create() before start(); immutable afterwards.
  std::unique_ptr<asio::ssl::context> listen_tls_files_;  // --cert/--key
  std::unique_ptr<RE2> ignore_hosts_, allow_hosts_;
  std::optional<Destination> reverse_destination_;

 private:
  std::mutex intercept_mutex_;
  std::unique_ptr<tls::InterceptTlsContext> intercept_;
  Status intercept_error_;

  awaitable<void> accept_loop();
  awaitable<void> sweep_loop(Worker& w);
  std::vector<std::shared_ptr<ProxyConnection>> snapshot();

  std::mutex lifecycle_mutex_;
  bool started_ = false;
  bool stopped_ = false;
  std::optional<tcp::acceptor> acceptor_;  // on worker 0
};

// One client connection: a loop of exchanges (or one CONNECT tunnel).
class ProxyConnection : public std::enable_shared_from_this<ProxyConnection> {
 public:
  ProxyConnection(RecorderImpl& rec, Worker& worker, tcp::socket socket)
      : rec_(rec),
        worker_(worker),
        opts_(rec.options_),
        hooks_(rec.options_.hooks),
        executor_(worker.ioc->get_executor()),
        client_(std::move(socket)),
        // Small at first (idle connections are cheap); grown to kBodyRead by body streaming
        // and up to the header limit by large heads.
        in_(4u << 10, rec.options_.max_header_bytes + kBodyRead),
        up_in_(4u << 10, rec.options_.max_header_bytes + kBodyRead),
        req_parser_(net::Http1Parser::Kind::request, limits()),
        resp_parser_(net::Http1Parser::Kind::response, limits()),
        timer_(executor_) {}
  ~ProxyConnection() {
    rec_.unregister(this);
    rec_.active_.fetch_sub(1, std::memory_order_relaxed);
  }

  const Executor& executor() const { return executor_; }
  // Serves the connection until it closes. Takes the owning pointer as a coroutine parameter so
  // the frame keeps the connection alive from its first suspension on.
  static awaitable<void> run(std::shared_ptr<ProxyConnection> self) { co_await self->serve(); }
  // Called on the worker by stop(): closes the connection if it is between requests.
  void close_if_idle() {
    if (auto h2 = h2_session_.lock()) {
      h2->shutdown();  // GOAWAY: in-flight streams finish, no new ones start
    } else if (phase_ == Phase::idle) {
      close_sockets();
    }
  }
  // Called on the worker by stop() after the grace period.
  void close_sockets() {
    error_code ec;
    client_.close(ec);
    if (up_) up_->socket.close(ec);
    if (watch_socket_) watch_socket_->close(ec);
  }

 private:
  net::Http1Limits limits() const {
    net::Http1Limits l;
    l.max_header_bytes = opts_.max_header_bytes;
    return l;
  }
  bool explicit_mode() const { return opts_.mode == Mode::explicit_proxy; }

  // Deadlines: arm() records the phase and deadline; the watchdog coroutine wakes at the
  // earliest deadline and closes `socket` when it has passed. Re-arming with a later deadline
  // costs no timer operation, which keeps the per-request cost flat.
  void arm(Phase p, std::chrono::milliseconds timeout, tcp::socket* socket) {
    phase_ = p;
    watch_socket_ = socket;
    deadline_ = Clock::now() + timeout;
    if (deadline_ < timer_expiry_) {
      timer_expiry_ = deadline_;
      timer_.expires_at(deadline_);
    }
  }
  void disarm() {
    phase_ = Phase::none;
    watch_socket_ = nullptr;
    deadline_ = Clock::time_point::max();
  }
  awaitable<void> serve();
  // What precedes the first exchange: the TLS listener's handshake, transparent mode's TLS
  // detection, the reverse destination. false when the connection is over already.
  awaitable<bool> start_connection();
  static awaitable<void> watchdog(std::shared_ptr<ProxyConnection> self) { co_await self->watch(); }
  awaitable<void> watch();

  Side client_side() { return {&client_, client_tls_.get()}; }
  Side up_side() {
    return {&up_->socket, up_->layer ? &static_cast<UpstreamTls*>(up_->layer.get())->stream
                                     : nullptr};
  }

  awaitable<std::pair<error_code, size_t>> read_into(Side s, net::ReadBuffer& b, Phase p,
                                                     std::chrono::milliseconds timeout,
                                                     size_t want = 4096) {
    auto [ptr, len] = b.prepare(want);
    if (len == 0) co_return std::pair{asio::error::no_buffer_space, size_t{0}};
    arm(p, timeout, s.socket);
    auto [ec, n] = s.tls ? co_await s.tls->async_read_some(asio::buffer(ptr, len), kTuple)
                         : co_await s.socket->async_read_some(asio::buffer(ptr, len), kTuple);
    disarm();
    b.commit(n);
    co_return std::pair{ec, n};
  }
  template <class Buffers>
  awaitable<error_code> write_to(Side s, const Buffers& bufs, Phase p,
                                 std::chrono::milliseconds timeout) {
    arm(p, timeout, s.socket);
    error_code ec;
    if (!s.tls) {
      std::tie(ec, std::ignore) = co_await asio::async_write(*s.socket, bufs, kTuple);
    } else if (size_t total = asio::buffer_size(bufs);
               total <= kTlsCoalesce &&
               std::next(asio::buffer_sequence_begin(bufs)) != asio::buffer_sequence_end(bufs)) {
      // TLS writes one record per buffer: a head and the first body bytes go out as one
      // record and one syscall instead of two.
      tls_scratch_.resize(total);
      asio::buffer_copy(asio::buffer(tls_scratch_), bufs);
      std::tie(ec, std::ignore) =
          co_await asio::async_write(*s.tls, asio::buffer(tls_scratch_), kTuple);
    } else {
      std::tie(ec, std::ignore) = co_await asio::async_write(*s.tls, bufs, kTuple);
    }
    disarm();
    co_return ec;
  }

  awaitable<bool> exchange();
  awaitable<bool> tunnel(flow::Flow& f, const std::string& host, uint16_t port);
  awaitable<void> pump(tcp::socket& from, tcp::socket& to, net::ReadBuffer& buf, uint64_t& count);
  // Terminates the client's TLS on client_ (bytes already read sit in in_ and feed the
  // handshake) with `context`; `intercept` (may be null: a --cert listener) mints the leaf for
  // the SNI or `fallback_host`. On failure records `f` as a tls_failed flow and returns false.
  awaitable<bool> accept_client_tls(flow::Flow& f, asio::ssl::context& context,
                                    const tls::InterceptTlsContext* intercept,
                                    const std::string& fallback_host);
  // The name to ask the upstream for: the client's SNI when it is a valid host name, else
  // `host` (some clients send "host:port" or nothing).
  std::string upstream_sni(const std::string& host) const {
    if (!client_tls_info_.sni.empty() && tls::parse_server_name(client_tls_info_.sni).ok())
      return client_tls_info_.sni;
    return host;
  }
  // Where a client speaking HTTP/2 goes (ALPN "h2", or the h2c preface; `initial` holds the
  // bytes already read). Serves the connection until it ends; requires dest_. The single
  // HTTP/2 hand-off point.
  // `dialed`: a fresh TCP connection to the destination for the front's first upstream use.
  awaitable<void> serve_h2_handoff(std::string initial,
                                   std::unique_ptr<net::UpstreamConnection> dialed = nullptr);
  // The request was read to its end: stamps request_ended, takes the trailers from the parser,
  // tells the hooks and settles the body's truncated flag. Later calls do nothing.
  void end_request(flow::Flow& f) {
    if (f.timing.request_ended != 0) return;
    f.timing.request_ended = flow::now_ns();
    f.request.trailers = std::move(req_parser_.trailers());
    if (hooks_) hooks_->request_complete(f);
    finish_body(f.request.body);
  }
  // Sends "100 Continue" (once: sets `sent`). On failure records the flow and returns false.
  awaitable<bool> send_continue(flow::Flow& f, bool& sent);
  // Reads more request body from the client and parses it into f.request.body (and, when
  // `decoded` is set, appends the decoded bytes there too). Returns how many raw bytes at the
  // front of in_ were parsed (maybe 0), or nullopt once the failure is recorded (malformed
  // framing also answered 400).
  awaitable<std::optional<size_t>> read_request_body(flow::Flow& f, std::string* decoded = nullptr);
  // Server replay: sends (or, for kill, withholds) the responder's answer and records the flow.
  // Returns whether the client connection stays open.
  awaitable<bool> send_answer(flow::Flow& f, ReplayAnswer answer, bool client_keep_alive,
                              bool client_minor1);
  // Forwards the request over the connection's HTTP/2 upstream session (reverse:h2c://): the
  // head, then `body` (decoded bytes read so far) and the rest of the body as the client sends
  // it (after a 100 Continue when `send_100`), then its trailers; streams the response back
  // as HTTP/1.1. Returns keep-alive.
  awaitable<bool> exchange_h2(flow::Flow& f, bool client_keep_alive, bool client_minor1,
                              std::string body, bool send_100);
  // Relays a WebSocket connection after its 101 and records its messages into `f`.
  awaitable<void> relay_websocket(flow::Flow& f);
  awaitable<void> ws_pump(Side from, Side to, net::ReadBuffer& buf, WebSocketRecording& recording,
                          bool from_client, uint64_t& count);
  // Connects a fresh upstream connection into up_. On failure returns false with `why` set
  // and `timed_out` telling whether the connect deadline passed.
  awaitable<bool> connect_upstream(const std::string& host, uint16_t port, std::string key,
                                   std::string& why, bool& timed_out);
  // Runs the TLS client handshake on up_ (connected, still plain) with SNI and verification for
  // `sni`. On failure returns false with `why` (the verification failure when there is one).
  awaitable<bool> upstream_tls_handshake(const std::string& sni, std::string& why);
  // Sends a one-line text/plain error response and closes the connection gracefully.
  awaitable<void> send_error(int status, std::string_view reason, std::string_view message);
  void record_error(flow::Flow& f, ErrorKind kind, std::string message);
  void drop_upstream() {
    if (up_) {
      error_code ec;
      up_->socket.close(ec);
      up_.reset();
    }
    up_in_.clear();
  }
  flow::Flow new_flow() const {
    flow::Flow f;
    f.session = opts_.session;
    f.mode = explicit_mode() ? "explicit" : opts_.mode == Mode::reverse ? "reverse" : "transparent";
    f.client_address = client_address_;
    f.timing.client_connected = client_connected_ns_;
    return f;
  }

  RecorderImpl& rec_;
  Worker& worker_;
  const RecorderOptions& opts_;
  RecordHooks* hooks_;
  Executor executor_;
  tcp::socket client_;
  std::string client_address_;
  int64_t client_connected_ns_ = 0;
  std::optional<tcp::endpoint> original_dst_;  // transparent mode only
  std::unique_ptr<TlsStream> client_tls_;      // set once the client side speaks TLS
  flow::TlsInfo client_tls_info_;
  std::optional<Destination> dest_;  // set when the connection fixes the destination
  net::ReadBuffer in_;
  net::ReadBuffer up_in_;
  net::Http1Parser req_parser_;
  net::Http1Parser resp_parser_;
  std::string out_;  // serialized heads, reused
  std::string tls_scratch_;  // one TLS record's worth of coalesced buffers, reused
  std::unique_ptr<net::UpstreamConnection> up_;

  asio::steady_timer timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point timer_expiry_ = Clock::time_point::max();
  Phase phase_ = Phase::none;
  Phase fired_ = Phase::none;
  tcp::socket* watch_socket_ = nullptr;
  bool alive_ = true;
  bool first_exchange_ = true;
  std::weak_ptr<h2::H2ServerSession> h2_session_;  // while the h2 front serves the connection
  std::shared_ptr<h2::H2ClientSession> up_h2_;     // exchange_h2's upstream session
  std::string up_h2_address_;
  int64_t up_h2_connected_ns_ = 0;
};

awaitable<void> ProxyConnection::watch() {
  while (alive_) {
    auto [ec] = co_await timer_.async_wait(kTuple);
    if (!alive_) break;
    if (ec == asio::error::operation_aborted) continue;  // re-armed earlier by arm()
    auto now = Clock::now();
    if (phase_ != Phase::none && now >= deadline_) {
      fired_ = phase_;
      error_code ignored;
      if (phase_ == Phase::tunnel) {
        client_.close(ignored);
        if (up_) up_->socket.close(ignored);
      } else if (watch_socket_) {
        watch_socket_->close(ignored);
      }
      disarm();
    }
    timer_expiry_ = deadline_;
    timer_.expires_at(timer_expiry_);
  }
}

awaitable<void> ProxyConnection::serve() {
  error_code ec;
  client_connected_ns_ = flow::now_ns();
  auto remote = client_.remote_endpoint(ec);
  client_address_ = ec ? std::string("unknown") : endpoint_text(remote);
  client_.set_option(tcp::no_delay(true), ec);
  if (opts_.mode == Mode::transparent) original_dst_ = original_destination(client_);
  if (hooks_) hooks_->connection_opened(client_address_);
  asio::co_spawn(executor_, watchdog(shared_from_this()), asio::detached);
  try {
    if (co_await start_connection()) {
      for (;;) {
        if (!co_await exchange()) break;
      }
    }
  } catch (const std::exception&) {
    // Unexpected failures end this connection only.
  }
  alive_ = false;
  timer_.cancel();
  if (up_h2_) up_h2_->shutdown();
  if (up_ && up_in_.empty() && up_->socket.is_open()) {
    worker_.pool.give(std::move(up_));
  } else {
    drop_upstream();
  }
  client_.shutdown(tcp::socket::shutdown_both, ec);
  client_.close(ec);
}

awaitable<bool> ProxyConnection::start_connection() {
  if (opts_.mode == Mode::reverse) dest_ = rec_.reverse_destination_;
  const bool listen_tls = opts_.listen_tls || rec_.listen_tls_files_;
  if (opts_.mode == Mode::transparent && original_dst_ && !listen_tls) {
    // A redirected connection may be TLS for any host: look at the first bytes.
    fired_ = Phase::none;
    auto [ec, n] = co_await read_into(client_side(), in_, Phase::idle, opts_.idle_timeout);
    if (ec || n == 0) co_return false;
    if (static_cast<uint8_t>(in_.data()[0]) != 0x16) co_return true;  // plain HTTP
  } else if (!listen_tls) {
    co_return true;
  }
  flow::Flow f = new_flow();
  f.kind = flow::FlowKind::tls_failed;
  f.timing.request_started = flow::now_ns();
  tls::InterceptTlsContext* intercept = nullptr;
  asio::ssl::context* context = rec_.listen_tls_files_.get();
  if (!context) {
    auto ic = rec_.intercept_context();
    if (!ic) {
      record_error(f, ErrorKind::internal, ic.status().message());
      co_return false;
    }
    intercept = *ic;
    context = &intercept->asio_context();
  }
  std::string fallback =
      original_dst_ ? original_dst_->address().to_string() : opts_.listen_host;
  if (!co_await accept_client_tls(f, *context, intercept, fallback)) co_return false;
  if (opts_.mode == Mode::transparent && original_dst_) {
    // Connect where the client meant to go, and speak TLS to it with the name it asked for.
    std::string host = original_dst_->address().to_string();
    uint16_t port = original_dst_->port();
    std::string sni = upstream_sni(host);
    std::string authority =
        sni == host ? endpoint_text(*original_dst_) : sni + ":" + std::to_string(port);
    dest_ = Destination{"https", authority, host, port, sni, pool_key("https", host, port, sni),
                        false};
  }
  if (client_tls_info_.alpn == "h2") {
    co_await serve_h2_handoff({});
    co_return false;
  }
  co_return true;
}

void ProxyConnection::record_error(flow::Flow& f, ErrorKind kind, std::string message) {
  f.error = flow::Error{kind, std::move(message)};
  finish_body(f.request.body);
  if (f.response) finish_body(f.response->body);
  if (hooks_) hooks_->error(f);
  rec_.offer(std::move(f));
}

awaitable<void> ProxyConnection::send_error(int status, std::string_view reason,
                                            std::string_view message) {
  std::string body = "retake: ";
  body.append(message);
  body.push_back('\n');
  out_.clear();
  out_.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(reason);
  out_.append("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  out_.append(std::to_string(body.size())).append("\r\nConnection: close\r\n\r\n");
  out_.append(body);
  auto ec = co_await write_to(client_side(), asio::buffer(out_), Phase::client_write,
                              opts_.client_read_timeout);
  if (ec) co_return;
  // Lingering close: stop sending, then drain briefly so the client reads the response
  // instead of a reset caused by its unread bytes.
  client_.shutdown(tcp::socket::shutdown_send, ec);
  auto drain_limit = std::min(opts_.client_read_timeout, std::chrono::milliseconds(1000));
  for (size_t drained = 0; drained < (1u << 20);) {
    in_.clear();
    auto [rec, n] = co_await read_into(client_side(), in_, Phase::client_body, drain_limit);
    if (rec) break;
    drained += n;
  }
  in_.clear();
}

awaitable<bool> ProxyConnection::connect_upstream(const std::string& host, uint16_t port,
                                                  std::string key, std::string& why,
                                                  bool& timed_out) {
  timed_out = false;
  std::vector<tcp::endpoint> endpoints;
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) {
    endpoints.emplace_back(addr, port);
  } else {
    tcp::resolver resolver(executor_);
    arm(Phase::connect, opts_.connect_timeout, nullptr);
    auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port), kTuple);
    disarm();
    if (rec) {
      why = "cannot resolve upstream host '" + host + "': " + rec.message();
      co_return false;
    }
    for (const auto& r : results) endpoints.push_back(r.endpoint());
    if (endpoints.empty()) {
      why = "upstream host '" + host + "' has no address";
      co_return false;
    }
  }
  auto conn = std::make_unique<net::UpstreamConnection>(tcp::socket(executor_));
  for (const auto& ep : endpoints) {
    fired_ = Phase::none;
    arm(Phase::connect, opts_.connect_timeout, &conn->socket);
    auto [cec] = co_await conn->socket.async_connect(ep, kTuple);
    disarm();
    if (!cec) {
      conn->socket.set_option(tcp::no_delay(true), ec);
      conn->address = endpoint_text(ep);
      conn->connected_ns = flow::now_ns();
      conn->key = std::move(key);
      up_ = std::move(conn);
      rec_.upstream_connects_.fetch_add(1, std::memory_order_relaxed);
      co_return true;
    }
    if (fired_ == Phase::connect) {
      timed_out = true;
      why = "connecting to upstream " + endpoint_text(ep) + " timed out after " +
            ms_text(opts_.connect_timeout);
    } else {
      why = "cannot connect to upstream " + endpoint_text(ep) + ": " + cec.message();
    }
    conn->socket.close(ec);
  }
  co_return false;
}

awaitable<bool> ProxyConnection::exchange() {
  req_parser_.reset();
  flow::Flow f = new_flow();

  // 1. The request head. Bytes may already be buffered (pipelining).
  bool any = !in_.empty();
  if (any) f.timing.request_started = flow::now_ns();
  size_t head_len = 0;
  for (;;) {
    if (any && first_exchange_ && dest_) {
      // HTTP/2 with prior knowledge (h2c): the client's first bytes are the connection preface.
      std::string_view seen = in_.data().substr(0, kH2Preface.size());
      if (seen != kH2Preface.substr(0, seen.size())) {
        first_exchange_ = false;
      } else if (seen.size() == kH2Preface.size()) {
        first_exchange_ = false;
        std::string initial(in_.data());
        in_.clear();
        co_await serve_h2_handoff(std::move(initial));
        co_return false;
      }
    }
    if (any && !(first_exchange_ && dest_)) {
      head_len = req_parser_.parse_head(in_.data());
      if (head_len || req_parser_.failed()) break;
    } else if (rec_.stopping_.load(std::memory_order_relaxed)) {
      co_return false;
    }
    fired_ = Phase::none;
    auto [ec, n] = co_await read_into(client_side(), in_, any ? Phase::client_head : Phase::idle,
                                      any ? opts_.client_read_timeout : opts_.idle_timeout);
    if (ec) {
      if (!any) co_return false;  // closed or idle between requests: nothing to record
      if (fired_ == Phase::client_head) {
        record_error(f, ErrorKind::client_timeout,
                     "request header not completed within " + ms_text(opts_.client_read_timeout));
      } else {
        record_error(f, ErrorKind::client_closed,
                     "client closed the connection before the request header was complete");
      }
      co_return false;
    }
    if (!any) {
      any = true;
      f.timing.request_started = flow::now_ns();
    }
  }
  if (req_parser_.failed()) {
    auto kind = req_parser_.error();
    std::string message = req_parser_.error_message();
    f.request.method = req_parser_.head().method;
    if (kind == ErrorKind::headers_too_large) {
      co_await send_error(431, "Request Header Fields Too Large", message);
    } else {
      co_await send_error(400, "Bad Request", message);
    }
    record_error(f, kind, std::move(message));
    co_return false;
  }
  in_.consume(head_len);
  f.bytes_from_client = head_len;

  net::Http1Head& head = req_parser_.head();
  f.request.method = head.method;
  f.request.http_version = head.version;
  f.request.headers = std::move(head.headers);
  const bool client_minor1 = head.minor == 1;
  const bool client_keep_alive = req_parser_.keep_alive();

  // 2. Where it goes.
  std::string host;
  uint16_t port = 0;
  std::string key;
  if (head.method == "CONNECT") {
    f.kind = flow::FlowKind::tunnel;
    f.request.authority = head.target;
    if (!explicit_mode() || dest_) {
      std::string m = "CONNECT is only accepted in explicit proxy mode";
      co_await send_error(400, "Bad Request", m);
      record_error(f, ErrorKind::bad_request, m);
      co_return false;
    }
    if (!net::split_host_port(head.target, 0, host, port) || port == 0) {
      std::string m = "CONNECT target must be host:port, got '" + head.target + "'";
      co_await send_error(400, "Bad Request", m);
      record_error(f, ErrorKind::bad_request, m);
      co_return false;
    }
    co_return co_await tunnel(f, host, port);
  }
  if (dest_) {
    // The connection decided where requests go (reverse mode, inside an intercepted CONNECT,
    // transparent TLS). Clients send origin-form; absolute-form is accepted for its path.
    net::AbsoluteTarget abs;
    if (!head.target.empty() && (head.target.front() == '/' || head.target == "*")) {
      f.request.path = head.target;
    } else if (net::parse_absolute_target(head.target, abs)) {
      f.request.path = std::move(abs.path);
    } else {
      std::string m = "malformed request target '" + head.target.substr(0, 200) + "'";
      co_await send_error(400, "Bad Request", m);
      record_error(f, ErrorKind::bad_request, m);
      co_return false;
    }
    f.request.scheme = dest_->scheme;
    f.request.authority = dest_->authority;
    host = dest_->host;
    port = dest_->port;
    key = dest_->key;
  } else if (explicit_mode()) {
    net::AbsoluteTarget abs;
    std::string m;
    if (head.target.empty() || head.target.front() == '/' || head.target == "*") {
      m = "this is an explicit proxy: the request target must be absolute-form "
          "(GET http://host/path), got '" +
          head.target.substr(0, 200) +
          "'; configure the client to use the proxy, or record in reverse mode";
    } else if (!net::parse_absolute_target(head.target, abs)) {
      m = "malformed absolute-form request target '" + head.target.substr(0, 200) + "'";
    } else if (abs.scheme != "http") {
      m = "scheme '" + abs.scheme + "' cannot be proxied without CONNECT";
    } else if (!net::split_host_port(abs.authority, 80, host, port)) {
      m = "malformed authority '" + abs.authority + "' in the request target";
    }
    if (!m.empty()) {
      co_await send_error(400, "Bad Request", m);
      record_error(f, ErrorKind::bad_request, m);
      co_return false;
    }
    f.request.scheme = "http";
    f.request.authority = std::move(abs.authority);
    f.request.path = std::move(abs.path);
    key = host + ":" + std::to_string(port);
  } else if (opts_.mode == Mode::transparent) {
    if (!original_dst_) {
      std::string m =
          "transparent mode: this connection was not redirected here by the firewall (no "
          "original destination); add an iptables REDIRECT rule or use explicit mode";
      co_await send_error(502, "Bad Gateway", m);
      record_error(f, ErrorKind::upstream_unreachable, m);
      co_return false;
    }
    net::AbsoluteTarget abs;
    if (!head.target.empty() && (head.target.front() == '/' || head.target == "*")) {
      f.request.path = head.target;
    } else if (net::parse_absolute_target(head.target, abs)) {
      f.request.path = std::move(abs.path);
    } else {
      std::string m = "malformed request target '" + head.target.substr(0, 200) + "'";
      co_await send_error(400, "Bad Request", m);
      record_error(f, ErrorKind::bad_request, m);
      co_return false;
    }
    // Connect where the client meant to go; name it as the client did (Host), falling back
    // to the address.
    key = endpoint_text(*original_dst_);
    host = original_dst_->address().to_string();
    port = original_dst_->port();
    f.request.scheme = "http";
    auto h = f.request.headers.get("host");
    f.request.authority = h && !h->empty() ? std::string(*h) : key;
  }
  const bool rewrite_host = dest_ && dest_->rewrite_host;
  const bool up_tls = dest_ && dest_->tls();
  const std::string& up_key = key;
  if (client_tls_) f.client_tls = client_tls_info_;
  const bool websocket = is_websocket_upgrade(f.request.headers);
  if (hooks_) hooks_->request_headers(f);

  // 3. Request body bytes that arrived with the head: validate (and capture) them before
  // anything is sent upstream, so a framing error never reaches the upstream.
  const size_t cap = opts_.body_cap;
  // A reverse:h2c:// upstream speaks only HTTP/2: the request goes over the connection's h2
  // session, its body decoded from HTTP/1.1 framing and streamed as DATA frames. `h2_body`
  // holds decoded bytes read but not yet sent.
  const bool to_h2 = dest_ && dest_->h2c && !websocket;
  std::string h2_body;
  size_t first_raw = 0;
  if (!req_parser_.done()) {
    first_raw = req_parser_.parse_body(in_.data(),
                                       Capture{&f.request.body, cap, to_h2 ? &h2_body : nullptr});
    if (req_parser_.failed()) {
      co_await send_error(400, "Bad Request", req_parser_.error_message());
      record_error(f, req_parser_.error(), req_parser_.error_message());
      co_return false;
    }
  }
  bool whole_request = req_parser_.done();
  const bool answer_continue = req_parser_.expect_continue() && !whole_request && client_minor1;
  const bool chunked = req_parser_.framing() == net::BodyFraming::chunked;
  bool sent_continue = false;

  // 3b. Server replay: the responder needs the whole request, so its body is read (and kept
  // raw in `held`, for forwarding) before anything else happens.
  std::string held;
  const bool holding = opts_.responder != nullptr && !websocket;
  if (holding) {
    held.assign(in_.data().data(), first_raw);
    in_.consume(first_raw);
    f.bytes_from_client += first_raw;
    first_raw = 0;
    if (answer_continue) {
      // No co_await inside a short-circuit condition: g++ 12 miscompiles those.
      bool sent = co_await send_continue(f, sent_continue);
      if (!sent) co_return false;
    }
    while (!req_parser_.done()) {
      if (held.size() > cap) {
        std::string m = "request body over " + std::to_string(cap) +
                        " bytes (--body-cap) cannot be matched under server replay";
        co_await send_error(413, "Content Too Large", m);
        record_error(f, ErrorKind::body_too_large, m);
        co_return false;
      }
      auto raw = co_await read_request_body(f, to_h2 ? &h2_body : nullptr);
      if (!raw) co_return false;
      held.append(in_.data().data(), *raw);
      in_.consume(*raw);
      f.bytes_from_client += *raw;
    }
    whole_request = true;
    end_request(f);
    if (opts_.responder) {
      ReplayAnswer answer = opts_.responder->answer(f);
      if (answer.action != ReplayAnswer::Action::forward) {
        rec_.answered_.fetch_add(1, std::memory_order_relaxed);
        co_return co_await send_answer(f, std::move(answer), client_keep_alive, client_minor1);
      }
      f.tags.insert(f.tags.end(), answer.tags.begin(), answer.tags.end());
    }
  }
  if (to_h2) {
    if (!holding) {
      in_.consume(first_raw);
      f.bytes_from_client += first_raw;
    }
    co_return co_await exchange_h2(f, client_keep_alive, client_minor1, std::move(h2_body),
                                   answer_continue && !sent_continue);
  }

  out_.clear();
  out_.append(f.request.method).append(" ").append(f.request.path).append(" ");
  out_.append(f.request.http_version).append("\r\n");
  net::append_forward_fields(out_, f.request.headers, chunked,
                             rewrite_host ? std::string_view(dest_->authority) : std::string_view(),
                             // A WebSocket handshake keeps only its permessage-deflate
                             // offers (appended below): the one extension whose frames the
                             // watcher reads (it inflates them), as mitmproxy does.
                             websocket         ? std::string_view("sec-websocket-extensions")
                             : answer_continue ? std::string_view("expect")
                                               : std::string_view());
  if (!f.request.headers.contains("host"))
    out_.append("Host: ").append(f.request.authority).append("\r\n");
  if (websocket) {
    // Upgrade is hop-by-hop, so append_forward_fields dropped it; a WebSocket handshake is
    // the one upgrade we relay (RFC 6455 §4.1).
    out_.append("Connection: Upgrade\r\nUpgrade: ")
        .append(*f.request.headers.get("upgrade"))
        .append("\r\n");
    if (auto offers = deflate_offers(f.request.headers); !offers.empty())
      out_.append("Sec-WebSocket-Extensions: ").append(offers).append("\r\n");
  }
  out_.append("\r\n");

  // 4. Upstream connection, head (+ buffered body) out, response head in; one retry when a
  // reused connection turns out dead and the request can be sent again safely.
  const bool is_head = f.request.method == "HEAD";
  size_t resp_head_len = 0;
  for (int attempt = 0;; ++attempt) {
    if (up_ && up_->key != up_key) {
      worker_.pool.give(std::move(up_));
      up_in_.clear();
    }
    // The connection kept from the previous exchange may have been closed by the upstream
    // meanwhile (its keep-alive timeout); one non-blocking peek avoids sending a request into
    // a dead connection. Skipped when it was busy within the last second: no upstream times
    // out that fast, the retry covers the rare race, and it saves a syscall per request.
    if (up_ && attempt == 0 && Clock::now() - up_->idle_since > kPeekAfterIdle &&
        !net::idle_socket_alive(up_->socket))
      drop_upstream();
    if (!up_) up_ = worker_.pool.take(up_key);
    const bool reused = up_ != nullptr && up_->exchanges > 0;
    if (!up_) {
      std::string why;
      bool timed_out = false;
      if (!co_await connect_upstream(host, port, up_key, why, timed_out)) {
        co_await send_error(502, "Bad Gateway", why);
        record_error(f, timed_out ? ErrorKind::upstream_timeout : ErrorKind::upstream_unreachable,
                     why);
        co_return false;
      }
    }
    if (up_tls && !up_->layer) {
      std::string why;
      if (!co_await upstream_tls_handshake(dest_->sni, why)) {
        f.upstream_address = up_->address;
        drop_upstream();
        co_await send_error(502, "Bad Gateway", why);
        record_error(f, ErrorKind::upstream_tls_failed, why);
        co_return false;
      }
    }
    if (up_tls) f.upstream_tls = static_cast<UpstreamTls*>(up_->layer.get())->info;
    const bool may_retry = reused && attempt == 0 && whole_request;
    f.upstream_address = up_->address;
    f.timing.upstream_connected = up_->connected_ns;

    fired_ = Phase::none;
    std::array<asio::const_buffer, 2> bufs{
        asio::buffer(out_), holding ? asio::buffer(held) : asio::buffer(in_.data().data(), first_raw)};
    auto wec = co_await write_to(up_side(), bufs, Phase::upstream_write, opts_.upstream_timeout);
    if (wec) {
      drop_upstream();
      if (may_retry && fired_ != Phase::upstream_write) continue;
      std::string m =
          fired_ == Phase::upstream_write
              ? "sending the request upstream timed out after " + ms_text(opts_.upstream_timeout)
              : "upstream closed the connection while the request was sent";
      co_await send_error(fired_ == Phase::upstream_write ? 504 : 502,
                          fired_ == Phase::upstream_write ? "Gateway Timeout" : "Bad Gateway", m);
      record_error(f,
                   fired_ == Phase::upstream_write ? ErrorKind::upstream_timeout
                                                   : ErrorKind::upstream_closed,
                   m);
      co_return false;
    }
    // A request held whole in in_ stays there until a response arrives, so a retry can send
    // the same bytes again; a streamed one must make room for the rest of its body.
    if (attempt == 0 && !whole_request) {
      in_.consume(first_raw);
      f.bytes_from_client += first_raw;
    }

    // The rest of the request body, streamed as it arrives.
    if (answer_continue && !sent_continue) {
      bool sent = co_await send_continue(f, sent_continue);
      if (!sent) {
        drop_upstream();
        co_return false;
      }
    }
    while (!req_parser_.done()) {
      auto parsed = co_await read_request_body(f);
      if (!parsed) {
        drop_upstream();
        co_return false;
      }
      size_t raw = *parsed;
      if (raw == 0) continue;
      auto wec2 = co_await write_to(up_side(), asio::buffer(in_.data().data(), raw),
                                    Phase::upstream_write, opts_.upstream_timeout);
      if (wec2) {
        bool to = fired_ == Phase::upstream_write;
        drop_upstream();
        std::string m = to ? "sending the request body upstream timed out"
                           : "upstream closed the connection during the request body";
        co_await send_error(to ? 504 : 502, to ? "Gateway Timeout" : "Bad Gateway", m);
        record_error(f, to ? ErrorKind::upstream_timeout : ErrorKind::upstream_closed, m);
        co_return false;
      }
      in_.consume(raw);
      f.bytes_from_client += raw;
    }
    end_request(f);

    // Response head; interim 1xx responses are relayed (our own 100 is not repeated).
    resp_parser_.reset(is_head);
    bool retry = false;
    for (;;) {
      resp_head_len = 0;
      for (;;) {
        if (!up_in_.empty()) {
          resp_head_len = resp_parser_.parse_head(up_in_.data());
          if (resp_head_len || resp_parser_.failed()) break;
        }
        fired_ = Phase::none;
        auto [ec, n] =
            co_await read_into(up_side(), up_in_, Phase::upstream_head, opts_.upstream_timeout);
        if (ec) {
          bool nothing = up_in_.empty() && f.timing.response_started == 0;
          drop_upstream();
          if (fired_ == Phase::upstream_head) {
            std::string m = "upstream did not answer within " + ms_text(opts_.upstream_timeout);
            co_await send_error(504, "Gateway Timeout", m);
            record_error(f, ErrorKind::upstream_timeout, m);
            co_return false;
          }
          if (nothing && may_retry && idempotent(f.request.method)) {
            retry = true;
            break;
          }
          std::string m = nothing ? "upstream closed the connection without a response"
                                  : "upstream closed the connection before the response "
                                    "header was complete";
          co_await send_error(502, "Bad Gateway", m);
          record_error(f, ErrorKind::upstream_closed, m);
          co_return false;
        }
        if (f.timing.response_started == 0) f.timing.response_started = flow::now_ns();
      }
      if (retry) break;
      if (resp_parser_.failed()) {
        drop_upstream();
        std::string m = "malformed response from upstream: " + resp_parser_.error_message();
        co_await send_error(502, "Bad Gateway", m);
        record_error(f, ErrorKind::upstream_protocol, m);
        co_return false;
      }
      int status = resp_parser_.head().status;
      if (status >= 100 && status < 200 && status != 101) {
        up_in_.consume(resp_head_len);
        f.bytes_from_upstream += resp_head_len;
        if (client_minor1 && !(status == 100 && sent_continue)) {
          const auto& h = resp_parser_.head();
          out_.clear();
          out_.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
          out_.append(h.reason).append("\r\n");
          net::append_forward_fields(out_, h.headers, false);
          out_.append("\r\n");
          if (co_await write_to(client_side(), asio::buffer(out_), Phase::client_write,
                                opts_.client_read_timeout)) {
            drop_upstream();
            record_error(f, ErrorKind::client_closed, "client went away during the exchange");
            co_return false;
          }
        }
        resp_parser_.reset(is_head);
        continue;
      }
      break;
    }
    if (retry) continue;
    break;
  }

  if (whole_request) {
    in_.consume(first_raw);
    f.bytes_from_client += first_raw;
  }

  // 5. The final response: head out, body streamed as it arrives.
  up_in_.consume(resp_head_len);
  f.bytes_from_upstream += resp_head_len;
  net::Http1Head& rh = resp_parser_.head();
  auto& resp = f.response.emplace();
  resp.status = rh.status;
  resp.reason = rh.reason;
  resp.http_version = rh.version;
  resp.headers = std::move(rh.headers);
  if (hooks_) hooks_->response_headers(f);
  const bool resp_chunked = resp_parser_.framing() == net::BodyFraming::chunked;
  const bool client_keep = client_keep_alive && resp.status != 101 &&
                           resp_parser_.framing() != net::BodyFraming::until_close &&
                           !rec_.stopping_.load(std::memory_order_relaxed);
  // The status line carries our own version towards the client (RFC 9110 §2.5: an
  // intermediary speaks its own version); the flow keeps the upstream's.
  out_.clear();
  out_.append(f.request.http_version).append(" ").append(std::to_string(resp.status)).append(" ");
  out_.append(resp.reason).append("\r\n");
  net::append_forward_fields(out_, resp.headers, resp_chunked);
  const bool relay_ws = websocket && resp.status == 101 && is_websocket_upgrade(resp.headers);
  if (relay_ws) {
    out_.append("Connection: Upgrade\r\nUpgrade: ")
        .append(*resp.headers.get("upgrade"))
        .append("\r\n");
  }
  if (resp_parser_.framing() == net::BodyFraming::until_close) {
    // A transfer coding other than chunked (rare) is relayed byte for byte, so its field must
    // go with it or the client could not decode the body.
    for (const auto& h : resp.headers)
      if (flow::iequals(h.name, "transfer-encoding"))
        out_.append("Transfer-Encoding: ").append(h.value).append("\r\n");
  }
  if (!client_keep) {
    out_.append("Connection: close\r\n");
  } else if (!client_minor1) {
    out_.append("Connection: keep-alive\r\n");
  }
  out_.append("\r\n");

  size_t raw =
      resp_parser_.done() ? 0 : resp_parser_.parse_body(up_in_.data(), Capture{&resp.body, cap});
  bool upstream_ok = true;
  for (bool first = true;; first = false) {
    if (resp_parser_.failed()) {
      drop_upstream();
      record_error(f, ErrorKind::upstream_protocol,
                   "malformed response body from upstream: " + resp_parser_.error_message());
      co_return false;
    }
    if (first || raw) {
      fired_ = Phase::none;
      std::array<asio::const_buffer, 2> bufs{
          first ? asio::const_buffer(out_.data(), out_.size()) : asio::const_buffer(),
          asio::buffer(up_in_.data().data(), raw)};
      if (co_await write_to(client_side(), bufs, Phase::client_write, opts_.client_read_timeout)) {
        drop_upstream();
        if (fired_ == Phase::client_write) {
          record_error(f, ErrorKind::client_timeout, "client stopped reading the response");
        } else {
          record_error(f, ErrorKind::client_closed,
                       "client closed the connection during the response");
        }
        co_return false;
      }
      up_in_.consume(raw);
      f.bytes_from_upstream += raw;
    }
    if (resp_parser_.done()) break;
    fired_ = Phase::none;
    auto [ec, n] = co_await read_into(up_side(), up_in_, Phase::upstream_body,
                                      opts_.upstream_timeout, kBodyRead);
    if (ec) {
      if (fired_ == Phase::upstream_body) {
        drop_upstream();
        record_error(f, ErrorKind::upstream_timeout,
                     "upstream response body stalled for " + ms_text(opts_.upstream_timeout));
        co_return false;
      }
      resp_parser_.finish_eof();
      upstream_ok = false;
      if (!resp_parser_.done()) {
        drop_upstream();
        record_error(f, ErrorKind::upstream_closed,
                     "upstream closed the connection before the end of the response body");
        co_return false;
      }
      raw = 0;
      continue;
    }
    raw = resp_parser_.parse_body(up_in_.data(), Capture{&resp.body, cap});
  }
  if (relay_ws) {
    finish_body(f.request.body);
    finish_body(resp.body);
    co_await relay_websocket(f);
    co_return false;
  }
  f.timing.response_ended = flow::now_ns();
  resp.trailers = std::move(resp_parser_.trailers());
  finish_body(f.request.body);
  finish_body(resp.body);

  if (!(upstream_ok && resp_parser_.keep_alive() && up_in_.empty() && resp.status != 101)) {
    drop_upstream();
  } else {
    ++up_->exchanges;
    up_->idle_since = Clock::now();
  }
  if (hooks_) hooks_->response_complete(f);
  rec_.offer(std::move(f));
  co_return client_keep;
}

awaitable<void> ProxyConnection::pump(tcp::socket& from, tcp::socket& to, net::ReadBuffer& buf,
                                      uint64_t& count) {
  error_code ec;
  for (;;) {
    if (!buf.empty()) {
      auto [wec, n] = co_await asio::async_write(to, asio::buffer(buf.data()), kTuple);
      if (wec) break;
      count += buf.size();
      buf.clear();
    }
    auto [ptr, len] = buf.prepare(16u << 10);
    arm(Phase::tunnel, opts_.idle_timeout, nullptr);
    auto [rec, n] = co_await from.async_read_some(asio::buffer(ptr, len), kTuple);
    buf.commit(n);
    if (rec) {
      if (!buf.empty()) {
        auto [wec, m] = co_await asio::async_write(to, asio::buffer(buf.data()), kTuple);
        if (!wec) count += buf.size();
        buf.clear();
      }
      if (rec == asio::error::eof) {
        to.shutdown(tcp::socket::shutdown_send, ec);
      } else {
        // A reset or a timeout: end the other direction too.
        from.close(ec);
        to.close(ec);
      }
      break;
    }
  }
}

awaitable<bool> ProxyConnection::tunnel(flow::Flow& f, const std::string& host, uint16_t port) {
  using namespace asio::experimental::awaitable_operators;
  f.timing.request_ended = flow::now_ns();
  if (hooks_) hooks_->request_headers(f);
  drop_upstream();  // a tunnel never reuses a pooled connection
  std::string why;
  bool timed_out = false;
  // Under server replay the upstream is contacted only when a request is forwarded (a miss
  // with --on-miss forward): answering from recordings must not need, or touch, the network.
  const bool passthrough = rec_.passthrough(host, port);
  const bool lazy = opts_.responder != nullptr && !passthrough;
  // When this thread's pool holds an idle connection for what the tunnel will carry (TLS with
  // the SNI we send, or plain HTTP), the first request takes it: a client that opens a
  // connection per request then costs no upstream TCP and TLS handshake. The upstream
  // answered recently, so the CONNECT need not prove it reachable first.
  const bool pooled =
      !passthrough && (worker_.pool.has_idle(pool_key("https", host, port, upstream_sni(host))) ||
                       worker_.pool.has_idle(pool_key("http", host, port, "")));
  if (!lazy && !pooled) {
    bool connected =
        co_await connect_upstream(host, port, host + ":" + std::to_string(port), why, timed_out);
    if (!connected) {
      co_await send_error(502, "Bad Gateway", why);
      record_error(f, timed_out ? ErrorKind::upstream_timeout : ErrorKind::upstream_unreachable,
                   why);
      co_return false;
    }
    f.upstream_address = up_->address;
    f.timing.upstream_connected = up_->connected_ns;
  }
  static constexpr std::string_view k200 = "HTTP/1.1 200 Connection established\r\n\r\n";
  if (co_await write_to(client_side(), asio::buffer(k200), Phase::client_write,
                        opts_.client_read_timeout)) {
    drop_upstream();
    record_error(f, ErrorKind::client_closed, "client went away before the tunnel was set up");
    co_return false;
  }
  if (!passthrough) {
    // Detect, don't assume: a TLS ClientHello (a handshake record, 0x16) is intercepted;
    // anything else is served as plain HTTP inside the tunnel. A client that sends nothing
    // and closes falls through to the opaque relay, which records an empty tunnel.
    bool have = !in_.empty();
    if (!have) {
      fired_ = Phase::none;
      auto [ec, n] = co_await read_into(client_side(), in_, Phase::client_head,
                                        opts_.client_read_timeout);
      have = !ec && n > 0;
      if (ec && fired_ == Phase::client_head) {
        drop_upstream();
        record_error(f, ErrorKind::client_timeout,
                     "client sent nothing through the tunnel within " +
                         ms_text(opts_.client_read_timeout));
        co_return false;
      }
    }
    if (have) {
      const std::string authority = f.request.authority;
      if (static_cast<uint8_t>(in_.data()[0]) == 0x16) {
        auto context = rec_.intercept_context();
        if (!context) {
          drop_upstream();
          f.kind = flow::FlowKind::tls_failed;
          record_error(f, ErrorKind::internal, context.status().message());
          co_return false;
        }
        if (!co_await accept_client_tls(f, (*context)->asio_context(), *context, host)) {
          drop_upstream();
          co_return false;
        }
        std::string sni = upstream_sni(host);
        dest_ = Destination{"https", authority, host, port, sni,
                            pool_key("https", host, port, sni), false};
        if (client_tls_info_.alpn == "h2") {
          // The connection dialed for the CONNECT becomes the h2 front's first upstream
          // connection (its TLS handshake, offering h2, happens there).
          std::unique_ptr<net::UpstreamConnection> dialed;
          if (up_ && !up_->layer && up_->exchanges == 0 && up_in_.empty()) dialed = std::move(up_);
          drop_upstream();
          co_await serve_h2_handoff({}, std::move(dialed));
          co_return false;
        }
      } else {
        dest_ = Destination{"http", authority, host, port, "", pool_key("http", host, port, ""),
                            false};
      }
      // The connection made for the CONNECT serves the first request (over TLS once
      // exchange() ran the upstream handshake on it).
      if (up_) up_->key = dest_->key;
      co_return true;
    }
  }
  if (!up_) {
    // Lazy (server replay, or a pooled connection was to serve the first request) and the
    // client sent nothing to look at: relay opaquely after all.
    bool connected =
        co_await connect_upstream(host, port, host + ":" + std::to_string(port), why, timed_out);
    if (!connected) {
      record_error(f, timed_out ? ErrorKind::upstream_timeout : ErrorKind::upstream_unreachable,
                   why);
      co_return false;
    }
    f.upstream_address = up_->address;
    f.timing.upstream_connected = up_->connected_ns;
  }
  auto& resp = f.response.emplace();
  resp.status = 200;
  resp.reason = "Connection established";
  resp.http_version = "HTTP/1.1";
  f.timing.response_started = flow::now_ns();
  uint64_t from_client = 0, from_upstream = 0;
  up_in_.clear();
  co_await (pump(client_, up_->socket, in_, from_client) &&
            pump(up_->socket, client_, up_in_, from_upstream));
  disarm();
  f.bytes_from_client += from_client;
  f.bytes_from_upstream = from_upstream;
  f.timing.response_ended = flow::now_ns();
  drop_upstream();
  if (fired_ == Phase::tunnel) {
    record_error(f, ErrorKind::client_timeout, "tunnel idle for " + ms_text(opts_.idle_timeout));
    co_return false;
  }
  if (hooks_) hooks_->response_complete(f);
  rec_.offer(std::move(f));
  co_return false;
}

awaitable<bool> ProxyConnection::upstream_tls_handshake(const std::string& sni, std::string& why) {
  auto made = rec_.upstream_tls();
  if (!made) {
    why = made.status().message();
    co_return false;
  }
  auto& context = **made;
  auto layer = std::make_shared<UpstreamTls>(up_->socket, context.asio_context());
  SSL* ssl = layer->stream.native_handle();
  if (auto st = context.prepare(ssl, sni); !st.ok()) {
    why = "upstream TLS: " + st.message();
    co_return false;
  }
  layer->key = up_->key;
  layer->sessions = &rec_.upstream_sessions_;
  SSL_set_ex_data(ssl, UpstreamSessionCache::ex_index(), layer.get());
  rec_.upstream_sessions_.apply(layer->key, ssl);
  fired_ = Phase::none;
  arm(Phase::upstream_tls, opts_.connect_timeout, &up_->socket);
  auto [ec] = co_await layer->stream.async_handshake(asio::ssl::stream_base::client, kTuple);
  disarm();
  if (ec) {
    if (auto reason = tls::verify_failure_reason(layer->stream.native_handle())) {
      why = *reason;
    } else if (fired_ == Phase::upstream_tls) {
      why = "upstream TLS handshake with " + up_->address + " timed out after " +
            ms_text(opts_.connect_timeout);
    } else {
      why = "upstream TLS handshake with " + up_->address + " failed: " + ec.message();
    }
    co_return false;
  }
  layer->info = tls::collect_tls_info(layer->stream.native_handle());
  up_->layer = std::move(layer);
  co_return true;
}

awaitable<bool> ProxyConnection::accept_client_tls(flow::Flow& f, asio::ssl::context& context,
                                                   const tls::InterceptTlsContext* intercept,
                                                   const std::string& fallback_host) {
  client_tls_ = std::make_unique<TlsStream>(client_, context);
  SSL* ssl = client_tls_->native_handle();
  if (intercept) {
    tls::InterceptParams params;
    params.fallback_host = fallback_host;
    params.alpn = kClientAlpn;
    if (auto st = intercept->prepare(ssl, params); !st.ok()) {
      client_tls_.reset();
      record_error(f, ErrorKind::internal, st.message());
      co_return false;
    }
  }
  fired_ = Phase::none;
  arm(Phase::client_tls, opts_.client_read_timeout, &client_);
  auto [ec, used] = co_await client_tls_->async_handshake(
      asio::ssl::stream_base::server, asio::buffer(in_.data()), kTuple);
  disarm();
  in_.clear();
  if (ec) {
    // Keep what the handshake learned (the SNI names the host the client wanted).
    if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) {
      f.client_tls.present = true;
      f.client_tls.sni = std::string(sni).substr(0, 255);
    }
    std::string m = fired_ == Phase::client_tls
                        ? "client TLS handshake not completed within " +
                              ms_text(opts_.client_read_timeout)
                        : "client TLS handshake failed: " + ec.message();
    std::string served = tls::InterceptTlsContext::served_name(ssl);
    if (!served.empty() && fired_ != Phase::client_tls)
      m += " (the client was shown a certificate for '" + served + "')";
    client_tls_.reset();
    f.kind = flow::FlowKind::tls_failed;
    record_error(f, ErrorKind::tls_handshake_failed, std::move(m));
    co_return false;
  }
  client_tls_info_ = tls::collect_tls_info(ssl);
  co_return true;
}

awaitable<bool> ProxyConnection::send_continue(flow::Flow& f, bool& sent) {
  static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
  sent = true;
  if (co_await write_to(client_side(), asio::buffer(k100), Phase::client_write,
                        opts_.client_read_timeout)) {
    record_error(f, ErrorKind::client_closed, "client went away before sending its body");
    co_return false;
  }
  co_return true;
}

awaitable<std::optional<size_t>> ProxyConnection::read_request_body(flow::Flow& f,
                                                                    std::string* decoded) {
  fired_ = Phase::none;
  auto [ec, n] = co_await read_into(client_side(), in_, Phase::client_body,
                                    opts_.client_read_timeout, kBodyRead);
  if (ec) {
    if (fired_ == Phase::client_body) {
      record_error(f, ErrorKind::client_timeout,
                   "request body stalled for " + ms_text(opts_.client_read_timeout));
    } else {
      record_error(f, ErrorKind::client_closed,
                   "client closed the connection before the end of the request body");
    }
    co_return std::nullopt;
  }
  size_t raw =
      req_parser_.parse_body(in_.data(), Capture{&f.request.body, opts_.body_cap, decoded});
  if (req_parser_.failed()) {
    co_await send_error(400, "Bad Request", req_parser_.error_message());
    record_error(f, req_parser_.error(), req_parser_.error_message());
    co_return std::nullopt;
  }
  co_return raw;
}

awaitable<bool> ProxyConnection::send_answer(flow::Flow& f, ReplayAnswer answer,
                                             bool client_keep_alive, bool client_minor1) {
  f.tags.insert(f.tags.end(), std::make_move_iterator(answer.tags.begin()),
                std::make_move_iterator(answer.tags.end()));
  if (answer.action == ReplayAnswer::Action::kill) {
    record_error(f, ErrorKind::policy,
                 "server replay: closed the connection without an answer (on-miss kill)");
    co_return false;
  }
  f.origin = answer.origin;
  if (answer.delay.count() > 0) {
    asio::steady_timer timer(executor_, answer.delay);
    co_await timer.async_wait(kTuple);
  }
  f.timing.response_started = flow::now_ns();
  flow::Response& resp = f.response.emplace(std::move(answer.response));
  if (hooks_) hooks_->response_headers(f);
  const int status = resp.status;
  const bool bodyless =
      f.request.method == "HEAD" || status < 200 || status == 204 || status == 304;
  const bool keep = client_keep_alive && !rec_.stopping_.load(std::memory_order_relaxed);
  out_.clear();
  out_.append(f.request.http_version).append(" ").append(std::to_string(status)).append(" ");
  out_.append(resp.reason).append("\r\n");
  // The recorded framing does not apply: the body is sent whole with its own length.
  net::append_forward_fields(out_, resp.headers, false, {},
                             bodyless ? std::string_view() : std::string_view("content-length"));
  if (!bodyless) out_.append("Content-Length: ").append(std::to_string(resp.body.data.size()))
                    .append("\r\n");
  if (!keep) {
    out_.append("Connection: close\r\n");
  } else if (!client_minor1) {
    out_.append("Connection: keep-alive\r\n");
  }
  out_.append("\r\n");
  fired_ = Phase::none;
  std::array<asio::const_buffer, 2> bufs{
      asio::buffer(out_), bodyless ? asio::const_buffer() : asio::buffer(resp.body.data)};
  if (co_await write_to(client_side(), bufs, Phase::client_write, opts_.client_read_timeout)) {
    if (fired_ == Phase::client_write) {
      record_error(f, ErrorKind::client_timeout, "client stopped reading the response");
    } else {
      record_error(f, ErrorKind::client_closed, "client closed the connection during the response");
    }
    co_return false;
  }
  f.timing.response_ended = flow::now_ns();
  if (hooks_) hooks_->response_complete(f);
  rec_.offer(std::move(f));
  co_return keep;
}

awaitable<bool> ProxyConnection::exchange_h2(flow::Flow& f, bool client_keep_alive,
                                             bool client_minor1, std::string body, bool send_100) {
  // The connection's HTTP/2 upstream session, opened on first use and after a GOAWAY.
  if (!up_h2_ || !up_h2_->accepting()) {
    if (up_h2_) up_h2_->shutdown();
    up_h2_.reset();
    drop_upstream();
    std::string why;
    bool timed_out = false;
    if (!co_await connect_upstream(dest_->host, dest_->port, dest_->key, why, timed_out)) {
      co_await send_error(502, "Bad Gateway", why);
      record_error(f, timed_out ? ErrorKind::upstream_timeout : ErrorKind::upstream_unreachable,
                   why);
      co_return false;
    }
    up_h2_address_ = up_->address;
    up_h2_connected_ns_ = up_->connected_ns;
    tcp::socket socket = std::move(up_->socket);
    up_.reset();
    up_h2_ = start_upstream_h2(executor_, h2::make_byte_stream(std::move(socket)), opts_);
  }
  f.upstream_address = up_h2_address_;
  f.timing.upstream_connected = up_h2_connected_ns_;
  flow::Request req = f.request;
  req.body = {};
  req.trailers = {};
  if (dest_->rewrite_host) req.authority = dest_->authority;
  const bool has_body = !req_parser_.done() || !body.empty() || !f.request.trailers.empty();
  auto opened = up_h2_->open(req, !has_body);
  if (!opened.ok()) {
    std::string m =
        "the upstream HTTP/2 connection refused the request: " + opened.status().message();
    co_await send_error(502, "Bad Gateway", m);
    record_error(f, ErrorKind::upstream_closed, m);
    co_return false;
  }
  std::shared_ptr<h2::H2Stream> us = *opened;
  Status st;
  if (has_body) {
    // The body streams: what is read is written (the stream's flow control waits for the
    // upstream), so a body of any size passes with one read's worth held here.
    bool sent_continue = false;
    for (;;) {
      const bool last = req_parser_.done();
      // Trailers are in the parser, or in the flow already when the request was held whole.
      const bool trailers =
          last && (!req_parser_.trailers().empty() || !f.request.trailers.empty());
      if (!body.empty() || (last && !trailers)) {
        st = co_await us->write(std::move(body), last && !trailers);
        body.clear();
        if (!st.ok()) break;
      }
      if (last) {
        if (trailers) {
          flow::Headers t =
              f.request.trailers.empty() ? req_parser_.trailers() : f.request.trailers;
          st = co_await us->write_trailers(std::move(t));
        }
        break;
      }
      if (send_100 && !sent_continue) {
        bool sent = co_await send_continue(f, sent_continue);
        if (!sent) {
          us->reset(h2::H2ErrorCode::cancel);
          co_return false;
        }
      }
      auto raw = co_await read_request_body(f, &body);
      if (!raw) {
        us->reset(h2::H2ErrorCode::cancel);
        co_return false;
      }
      in_.consume(*raw);
      f.bytes_from_client += *raw;
    }
  }
  end_request(f);
  if (st.ok()) st = co_await us->wait_response();
  if (!st.ok()) {
    const bool to = st.code() == Errc::timeout;
    std::string m = to ? "upstream did not answer within " + ms_text(opts_.upstream_timeout)
                       : "upstream HTTP/2 stream failed before the response (" +
                             close_code_text(*us) + "): " + st.message();
    co_await send_error(to ? 504 : 502, to ? "Gateway Timeout" : "Bad Gateway", m);
    record_error(f, to ? ErrorKind::upstream_timeout : ErrorKind::upstream_closed, m);
    co_return false;
  }
  f.timing.response_started = flow::now_ns();
  flow::Response& resp = f.response.emplace();
  resp.status = us->response().status;
  resp.http_version = "HTTP/2";
  resp.headers = us->response().headers;
  if (hooks_) hooks_->response_headers(f);
  // HTTP/2 has no reason phrase: the client gets the standard one.
  std::string reason(
      boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(resp.status)));
  const bool bodyless = f.request.method == "HEAD" || resp.status == 204 || resp.status == 304;
  const bool has_length = resp.headers.contains("content-length");
  const bool chunked = !bodyless && !has_length && client_minor1;
  const bool keep = client_keep_alive && (bodyless || has_length || chunked) &&
                    !rec_.stopping_.load(std::memory_order_relaxed);
  out_.clear();
  out_.append(f.request.http_version).append(" ").append(std::to_string(resp.status)).append(" ");
  out_.append(reason).append("\r\n");
  net::append_forward_fields(out_, resp.headers, chunked);
  if (!keep) {
    out_.append("Connection: close\r\n");
  } else if (!client_minor1) {
    out_.append("Connection: keep-alive\r\n");
  }
  out_.append("\r\n");
  bool first = true;
  for (;;) {
    std::optional<std::string> chunk;
    bool end = bodyless || us->body_ended();
    if (!end) {
      auto r = co_await us->read();
      if (!r.ok()) {
        record_error(f, ErrorKind::upstream_closed,
                     "upstream ended the stream before the response body was complete (" +
                         close_code_text(*us) + ")");
        co_return false;
      }
      chunk = std::move(*r);
      end = !chunk.has_value();
    }
    if (chunk) {
      Capture{&resp.body, opts_.body_cap}(*chunk);
      if (chunked) {
        net::append_chunk(out_, *chunk);
      } else {
        out_.append(*chunk);
      }
    }
    if (end) {
      resp.trailers = us->response().trailers;
      if (chunked) net::append_last_chunk(out_, resp.trailers);
    }
    if (!out_.empty() || first) {
      fired_ = Phase::none;
      if (co_await write_to(client_side(), asio::buffer(out_), Phase::client_write,
                            opts_.client_read_timeout)) {
        us->reset(h2::H2ErrorCode::cancel);
        record_error(
            f, fired_ == Phase::client_write ? ErrorKind::client_timeout : ErrorKind::client_closed,
            "client stopped reading or closed the connection during the response");
        co_return false;
      }
      out_.clear();
    }
    first = false;
    if (end) break;
  }
  f.timing.response_ended = flow::now_ns();
  finish_body(f.request.body);
  finish_body(resp.body);
  if (hooks_) hooks_->response_complete(f);
  rec_.offer(std::move(f));
  co_return keep;
}

// ---- HTTP/2 HAND-OFF POINT ----
// The one place where a client connection that speaks HTTP/2 leaves this HTTP/1.1 code path
// for the h2 front (h2_front.h), which records one flow per stream (from new_flow() and the
// client's TLS facts).
awaitable<void> ProxyConnection::serve_h2_handoff(std::string initial,
                                                  std::unique_ptr<net::UpstreamConnection> dialed) {
  disarm();
  H2Destination d;
  d.scheme = dest_->scheme;
  d.authority = dest_->authority;
  d.host = dest_->host;
  d.port = dest_->port;
  d.sni = dest_->sni;
  d.rewrite_host = dest_->rewrite_host;
  // A plain upstream speaks HTTP/1.1 unless configured as h2c (reverse:h2c://); a TLS
  // upstream says what it speaks through ALPN.
  d.h2c = dest_->h2c;
  flow::Flow base = new_flow();
  if (client_tls_) base.client_tls = client_tls_info_;
  H2FrontEnv env;
  env.options = &opts_;
  RecorderImpl* rec = &rec_;
  env.upstream_tls = [rec] { return rec->upstream_tls(); };
  env.offer = [rec](flow::Flow&& flow) { rec->offer(std::move(flow)); };
  env.upstream_connected = [rec] {
    rec->upstream_connects_.fetch_add(1, std::memory_order_relaxed);
  };
  env.answered = [rec] { rec->answered_.fetch_add(1, std::memory_order_relaxed); };
  if (dialed) {
    env.connected = std::make_shared<tcp::socket>(std::move(dialed->socket));
    env.connected_address = dialed->address;
    env.connected_ns = dialed->connected_ns;
  }
  // Kept by the session's frame only while it runs; `self` keeps this connection alive.
  env.started = [self = shared_from_this()](std::shared_ptr<h2::H2ServerSession> s) {
    self->h2_session_ = s;
    if (self->rec_.stopping_.load(std::memory_order_relaxed)) s->shutdown();
  };
  std::unique_ptr<h2::ByteStream> stream;
  if (client_tls_)
    stream = std::make_unique<h2::AsioByteStream<TlsStream&>>(*client_tls_);
  else
    stream = std::make_unique<h2::AsioByteStream<tcp::socket&>>(client_);
  Status st = co_await serve_h2(std::move(stream), std::move(initial), std::move(d),
                                std::move(base), std::move(env));
  (void)st;
}

awaitable<void> ProxyConnection::ws_pump(Side from, Side to, net::ReadBuffer& buf,
                                         WebSocketRecording& recording, bool from_client,
                                         uint64_t& count) {
  error_code ec;
  for (;;) {
    if (!buf.empty()) {
      recording.feed(from_client, buf.data());
      auto [wec, n] = to.tls ? co_await asio::async_write(*to.tls, asio::buffer(buf.data()), kTuple)
                             : co_await asio::async_write(*to.socket, asio::buffer(buf.data()), kTuple);
      if (wec) {
        from.socket->close(ec);
        break;
      }
      count += buf.size();
      buf.clear();
    }
    auto [ptr, len] = buf.prepare(16u << 10);
    arm(Phase::tunnel, opts_.idle_timeout, nullptr);
    auto [rec, n] = from.tls ? co_await from.tls->async_read_some(asio::buffer(ptr, len), kTuple)
                             : co_await from.socket->async_read_some(asio::buffer(ptr, len), kTuple);
    buf.commit(n);
    if (rec) {
      if (!buf.empty()) {
        recording.feed(from_client, buf.data());
        auto [wec, m] = to.tls
                            ? co_await asio::async_write(*to.tls, asio::buffer(buf.data()), kTuple)
                            : co_await asio::async_write(*to.socket, asio::buffer(buf.data()), kTuple);
        if (!wec) count += buf.size();
        buf.clear();
      }
      if (rec == asio::error::eof && !to.tls) {
        to.socket->shutdown(tcp::socket::shutdown_send, ec);
      } else {
        // A reset, a timeout, or the end of a TLS side (whose close the other side learns
        // from the TCP close): end both directions.
        from.socket->close(ec);
        to.socket->close(ec);
      }
      break;
    }
  }
}

awaitable<void> ProxyConnection::relay_websocket(flow::Flow& f) {
  using namespace asio::experimental::awaitable_operators;
  WebSocketRecording recording(f, opts_);
  uint64_t client_bytes = 0, upstream_bytes = 0;
  fired_ = Phase::none;
  co_await (ws_pump(client_side(), up_side(), in_, recording, true, client_bytes) &&
            ws_pump(up_side(), client_side(), up_in_, recording, false, upstream_bytes));
  disarm();
  f.bytes_from_client += client_bytes;
  f.bytes_from_upstream += upstream_bytes;
  f.timing.response_ended = flow::now_ns();
  drop_upstream();
  in_.clear();
  if (fired_ == Phase::tunnel) {
    record_error(f, ErrorKind::client_timeout,
                 "WebSocket idle for " + ms_text(opts_.idle_timeout));
    co_return;
  }
  if (hooks_) hooks_->response_complete(f);
  rec_.offer(std::move(f));
}

// ---- RecorderImpl ----

awaitable<void> RecorderImpl::accept_loop() {
  asio::steady_timer backoff(acceptor_->get_executor());
  size_t next = 0;
  for (;;) {
    if (active_.load(std::memory_order_relaxed) >= options_.max_connections) {
      // At the bound: leave further clients in the listen backlog until one closes.
      backoff.expires_after(std::chrono::milliseconds(5));
      co_await backoff.async_wait(kTuple);
      if (stopping_) co_return;
      continue;
    }
    // Round robin over the workers; the socket is created on the chosen worker's io_context.
    Worker& worker = *workers_[next];
    next = (next + 1) % workers_.size();
    auto [ec, socket] = co_await acceptor_->async_accept(*worker.ioc, kTuple);
    if (stopping_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
      // EMFILE and friends: wait instead of spinning.
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(kTuple);
      continue;
    }
    connections_.fetch_add(1, std::memory_order_relaxed);
    active_.fetch_add(1, std::memory_order_relaxed);
    auto conn = std::make_shared<ProxyConnection>(*this, worker, std::move(socket));
    {
      std::lock_guard lock(registry_mutex_);
      registry_.emplace(conn.get(), conn);
    }
    auto executor = conn->executor();
    asio::co_spawn(executor, ProxyConnection::run(std::move(conn)), [](std::exception_ptr) {});
  }
}

awaitable<void> RecorderImpl::sweep_loop(Worker& w) {
  auto period = std::max(options_.pool_idle_timeout / 2, std::chrono::milliseconds(500));
  while (!stopping_) {
    w.sweep_timer->expires_after(period);
    auto [ec] = co_await w.sweep_timer->async_wait(kTuple);
    if (ec || stopping_) co_return;
    w.pool.sweep();
  }
}

Result<std::string> RecorderImpl::start() {
  std::lock_guard lock(lifecycle_mutex_);
  if (started_ || stopped_)
    return Status(Errc::failed_precondition, "recorder already started (or stopped)");
  error_code ec;
  auto addr = asio::ip::make_address(options_.listen_host, ec);
  if (ec)
    return Status(Errc::invalid_argument,
                  "listen_host '" + options_.listen_host + "' is not an IP address");
  tcp::endpoint ep(addr, options_.listen_port);
  tcp::acceptor acceptor(*workers_[0]->ioc);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (ec == asio::error::address_in_use)
    return Status(Errc::already_exists, "address " + endpoint_text(ep) + " is already in use");
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status(Errc::io_error, "cannot listen on " + endpoint_text(ep) + ": " + ec.message());
  auto bound = acceptor.local_endpoint(ec);
  acceptor_.emplace(std::move(acceptor));
  asio::co_spawn(*workers_[0]->ioc, accept_loop(), asio::detached);
  for (auto& w : workers_) {
    w->sweep_timer.emplace(*w->ioc);
    w->work.emplace(w->ioc->get_executor());
    asio::co_spawn(*w->ioc, sweep_loop(*w), asio::detached);
    w->thread = std::thread([ioc = w->ioc.get()] {
      name_this_thread("retake-net");
      ioc->run();
    });
  }
  started_ = true;
  return endpoint_text(bound);
}

std::vector<std::shared_ptr<ProxyConnection>> RecorderImpl::snapshot() {
  std::vector<std::shared_ptr<ProxyConnection>> out;
  std::lock_guard lock(registry_mutex_);
  for (auto& [ptr, weak] : registry_)
    if (auto c = weak.lock()) out.push_back(std::move(c));
  return out;
}

void RecorderImpl::stop(std::chrono::milliseconds grace) {
  std::lock_guard lock(lifecycle_mutex_);
  if (stopped_) return;
  stopped_ = true;
  stopping_ = true;
  if (started_) {
    asio::post(*workers_[0]->ioc, [this] {
      error_code ec;
      acceptor_->close(ec);
    });
    for (auto& w : workers_) asio::post(*w->ioc, [w = w.get()] { w->sweep_timer->cancel(); });
    for (auto& c : snapshot()) asio::post(c->executor(), [c] { c->close_if_idle(); });
    auto wait_idle = [this](std::chrono::milliseconds limit) {
      auto until = Clock::now() + limit;
      while (active_.load() > 0 && Clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    };
    wait_idle(grace);
    for (auto& c : snapshot()) asio::post(c->executor(), [c] { c->close_sockets(); });
    wait_idle(std::chrono::milliseconds(1000));
    for (auto& w : workers_) {
      w->work.reset();
      w->ioc->stop();
    }
    for (auto& w : workers_)
      if (w->thread.joinable()) w->thread.join();
  }
  acceptor_.reset();
  for (auto& w : workers_) {
    w->pool.close();
    w->sweep_timer.reset();
  }
  // Destroys whatever coroutine is still suspended; their sockets go with their io_context.
  for (auto& w : workers_) w->ioc.reset();
}

RecorderStats RecorderImpl::stats() const {
  RecorderStats s;
  s.connections = connections_.load();
  s.active_connections = active_.load();
  s.flows = flows_.load();
  s.flows_dropped = dropped_.load();
  s.errors = errors_.load();
  s.upstream_connects = upstream_connects_.load();
  s.answered = answered_.load();
  return s;
}

// ---- factory and mode parsing ----

Result<std::unique_ptr<Recorder>> Recorder::create(const RecorderOptions& options,
                                                   flow::FlowSink& sink) {
  if (options.body_cap > (size_t{1} << 30))
    return Status(Errc::invalid_argument, "body_cap: at most 1 GiB");
  if (options.max_header_bytes < 256 || options.max_header_bytes > (size_t{16} << 20))
    return Status(Errc::invalid_argument, "max_header_bytes: must be between 256 B and 16 MiB");
  if (options.max_connections == 0)
    return Status(Errc::invalid_argument, "max_connections: must be at least 1");
  using std::chrono::milliseconds;
  for (auto [name, value] : {std::pair{"idle_timeout", options.idle_timeout},
                             std::pair{"client_read_timeout", options.client_read_timeout},
                             std::pair{"connect_timeout", options.connect_timeout},
                             std::pair{"upstream_timeout", options.upstream_timeout},
                             std::pair{"pool_idle_timeout", options.pool_idle_timeout}})
    if (value <= milliseconds(0))
      return Status(Errc::invalid_argument, std::string(name) + ": must be positive");
  std::string scheme, authority, host;
  uint16_t port = 0;
  bool upstream_h2c = false;
  if (options.mode == Mode::reverse) {
    net::AbsoluteTarget t;
    if (options.upstream.empty())
      return Status(Errc::invalid_argument, "upstream: required in reverse mode");
    if (!net::parse_absolute_target(options.upstream, t) || t.path != "/")
      return Status(Errc::invalid_argument,
                    "upstream: expected http://host[:port], got '" + options.upstream + "'");
    if (t.scheme != "http" && t.scheme != "https" && t.scheme != "h2c")
      return Status(Errc::invalid_argument,
                    "upstream: scheme '" + t.scheme + "' is not supported (http, https or h2c)");
    if (!net::split_host_port(t.authority, t.scheme == "https" ? 443 : 80, host, port))
      return Status(Errc::invalid_argument, "upstream: malformed authority '" + t.authority + "'");
    upstream_h2c = t.scheme == "h2c";
    scheme = upstream_h2c ? "http" : t.scheme;
    authority = t.authority;
  }
  if (options.cert_file.empty() != options.key_file.empty())
    return Status(Errc::invalid_argument, "cert_file and key_file: give both or neither");
  auto compile = [](const std::string& field, const std::string& pattern,
                    std::unique_ptr<RE2>& out) -> Status {
    if (pattern.empty()) return {};
    RE2::Options o;
    o.set_log_errors(false);
    o.set_max_mem(8 << 20);  // bounded: a pattern is user input
    out = std::make_unique<RE2>(pattern, o);
    if (!out->ok())
      return Status(Errc::invalid_argument, field + ": invalid regular expression: " + out->error());
    return {};
  };
  std::unique_ptr<RE2> ignore, allow;
  if (auto st = compile("ignore_hosts", options.ignore_hosts, ignore); !st.ok()) return st;
  if (auto st = compile("allow_hosts", options.allow_hosts, allow); !st.ok()) return st;
  std::unique_ptr<asio::ssl::context> listen_files;
  if (!options.cert_file.empty()) {
    listen_files = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    error_code ec;
    listen_files->set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                              asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    listen_files->use_certificate_chain_file(options.cert_file, ec);
    if (ec)
      return Status(Errc::invalid_argument,
                    "cert_file: cannot load '" + options.cert_file + "': " + ec.message());
    listen_files->use_private_key_file(options.key_file, asio::ssl::context::pem, ec);
    if (ec)
      return Status(Errc::invalid_argument,
                    "key_file: cannot load '" + options.key_file + "': " + ec.message());
    SSL_CTX_set_alpn_select_cb(listen_files->native_handle(), &tls::select_h2_or_http11, nullptr);
  }
  std::optional<Destination> reverse_destination;
  if (options.mode == Mode::reverse)
    reverse_destination =
        Destination{scheme, authority,   host, port, host, pool_key(scheme, host, port, host),
                    true,   upstream_h2c};
  auto impl = std::make_unique<RecorderImpl>(options, sink);
  // A bad upstream CA file is a start-up error, not the first https request's.
  if (!options.upstream_ca_file.empty() || (reverse_destination && scheme == "https"))
    if (auto made = impl->upstream_tls(); !made) return made.status();
  impl->listen_tls_files_ = std::move(listen_files);
  impl->ignore_hosts_ = std::move(ignore);
  impl->allow_hosts_ = std::move(allow);
  impl->reverse_destination_ = std::move(reverse_destination);
  return std::unique_ptr<Recorder>(std::move(impl));
}

std::string default_session_name() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "rec-%Y%m%d-%H%M%S", &tm);
  return buf;
}

Status parse_mode(std::string_view text, RecorderOptions& options) {
  if (text == "explicit" || text == "regular") {
    options.mode = Mode::explicit_proxy;
    options.upstream.clear();
    return {};
  }
  if (text == "transparent") {
    options.mode = Mode::transparent;
    options.upstream.clear();
    return {};
  }
  constexpr std::string_view kReverse = "reverse:";
  if (text.substr(0, kReverse.size()) == kReverse) {
    std::string_view spec = text.substr(kReverse.size());
    net::AbsoluteTarget t;
    std::string host;
    uint16_t port = 0;
    if (!net::parse_absolute_target(spec, t) || t.path != "/" ||
        !net::split_host_port(t.authority, t.scheme == "https" ? 443 : 80, host, port))
      return Status(Errc::invalid_argument,
                    "mode: expected reverse:http[s]://host[:port], got '" + std::string(text) + "'");
    if (t.scheme != "http" && t.scheme != "https" && t.scheme != "h2c")
      return Status(Errc::invalid_argument, "mode: reverse upstream scheme '" + t.scheme +
                                                "' is not supported (http, https or h2c)");
    options.mode = Mode::reverse;
    options.upstream = std::string(spec);
    if (!options.upstream.empty() && options.upstream.back() == '/') options.upstream.pop_back();
    return {};
  }
  return Status(Errc::invalid_argument,
                "mode: unknown mode '" + std::string(text) +
                    "'; expected explicit, regular, reverse:http[s]://host:port, "
                    "reverse:h2c://host:port or transparent");
}

}  // namespace retake::record
