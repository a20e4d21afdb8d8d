#include "net/h2/h2_session.h"

#include <nghttp2/nghttp2.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <deque>
#include <unordered_map>
#include <vector>

namespace retake::h2 {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

std::string h2_error_code_name(uint32_t code) {
  static constexpr std::array<const char*, 14> kNames = {"NO_ERROR",
                                                         "PROTOCOL_ERROR",
                                                         "INTERNAL_ERROR",
                                                         "FLOW_CONTROL_ERROR",
                                                         "SETTINGS_TIMEOUT",
                                                         "STREAM_CLOSED",
                                                         "FRAME_SIZE_ERROR",
                                                         "REFUSED_STREAM",
                                                         "CANCEL",
                                                         "COMPRESSION_ERROR",
                                                         "CONNECT_ERROR",
                                                         "ENHANCE_YOUR_CALM",
                                                         "INADEQUATE_SECURITY",
                                                         "HTTP_1_1_REQUIRED"};
  if (code < kNames.size()) return kNames[code];
  char buf[32];
  std::snprintf(buf, sizeof buf, "UNKNOWN(0x%x)", code);
  return buf;
}

std::optional<std::string_view> connect_protocol(const flow::Request& request) {
  if (request.method != "CONNECT") return std::nullopt;
  return request.headers.get(kProtocolField);
}

namespace detail {

// A condition for coroutines on one serializing executor: wait() parks until notify_all() or
// the deadline. Callers re-check their condition after every wake-up.
class Waiters {
 public:
  asio::awaitable<void> wait(asio::any_io_executor ex, Clock::time_point deadline) {
    asio::steady_timer timer(ex, deadline);
    // Unregisters even when the coroutine frame is destroyed mid-wait (io_context teardown).
    struct Registration {
      std::vector<asio::steady_timer*>& list;
      asio::steady_timer* timer;
      ~Registration() { std::erase(list, timer); }
    } registration{timers_, &timer};
    timers_.push_back(&timer);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  void notify_all() {
    for (auto* t : timers_) t->cancel();
  }

 private:
  std::vector<asio::steady_timer*> timers_;
};

}  // namespace detail

// Per-stream state; touched by nghttp2 callbacks (filling) and by H2Stream calls (draining).
struct H2Stream::State {
  int32_t id = 0;
  flow::Request request;
  flow::Response response;
  bool head_done = false;  // request head (server) / final response head (client) received
  bool headers_too_large = false;
  uint32_t informational = 0;  // client: 1xx heads received
  size_t header_bytes = 0;     // decoded bytes of the block being received
  std::deque<std::string> in_chunks;
  bool in_end = false;       // END_STREAM received
  bool reader_gone = false;  // nobody will read: consume incoming bytes at arrival
  // Outgoing body.
  bool out_open = false;   // a data provider is attached (respond/open without end_stream)
  bool responded = false;  // server: respond() was called
  std::deque<std::string> out_chunks;
  size_t out_offset = 0;  // bytes of out_chunks.front() already handed to nghttp2
  size_t out_bytes = 0;   // queued bytes not yet handed to nghttp2
  bool out_end = false;   // the producer has no more body
  std::optional<flow::Headers> out_trailers;
  bool deferred = false;  // the data provider returned NGHTTP2_ERR_DEFERRED
  bool end_sent = false;  // a frame with END_STREAM went out
  bool decline_body = false;  // server: RST_STREAM(NO_ERROR) once end_sent, if in_end is not
  // Closure.
  bool closed = false;
  std::optional<uint32_t> close_code;
  Status error;              // set when the stream failed
  detail::Waiters in_wait;   // incoming data, head, end or failure
  detail::Waiters out_wait;  // send queue space or failure
};

namespace detail {

namespace {

bool is_connection_specific(std::string_view name, std::string_view value) {
  for (std::string_view n :
       {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"})
    if (flow::iequals(name, n)) return true;
  if (flow::iequals(name, "te")) return !flow::iequals(value, "trailers");
  return !name.empty() && name.front() == ':';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Owns the strings an nghttp2_nv array points at until the submit call has copied them.
struct NvList {
  std::deque<std::string> storage;
  std::vector<nghttp2_nv> nv;
  void add(std::string name, std::string_view value) {
    storage.push_back(std::move(name));
    const std::string& n = storage.back();
    storage.emplace_back(value);
    const std::string& v = storage.back();
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                  NGHTTP2_NV_FLAG_NONE});
  }
  void add_fields(const flow::Headers& headers) {
    for (const auto& h : headers)
      if (!is_connection_specific(h.name, h.value)) add(lower(h.name), h.value);
  }
};

constexpr uint32_t kMaxInformational = 8;

Status stream_error(uint32_t code) {
  if (code == NGHTTP2_REFUSED_STREAM)
    return {Errc::unavailable, "stream refused (REFUSED_STREAM): not processed, safe to retry"};
  return {Errc::unavailable, "stream reset: " + h2_error_code_name(code)};
}

}  // namespace

class SessionCore : public std::enable_shared_from_this<SessionCore> {
 public:
  SessionCore(bool server, asio::any_io_executor ex, std::unique_ptr<ByteStream> io,
              H2Options options, H2Handler handler, std::string initial)
      : server_(server),
        ex_(std::move(ex)),
        io_(std::move(io)),
        options_(options),
        handler_(std::move(handler)),
        initial_(std::move(initial)),
        read_timer_(ex_),
        write_timer_(ex_),
        grace_timer_(ex_),
        reset_tokens_(options.reset_burst),
        reset_refill_(Clock::now()) {}

  ~SessionCore() {
    if (ng_ != nullptr) nghttp2_session_del(ng_);
  }

  Status init();
  asio::awaitable<Status> run();
  void shutdown();
  Result<std::shared_ptr<H2Stream>> open(const flow::Request& request, bool end_stream);
  asio::awaitable<bool> extended_connect_enabled();
  bool accepting() const {
    return !finished_ && !shutdown_ && !stats_.goaway_received && ng_ != nullptr;
  }
  H2SessionStats stats() const { return stats_; }

  // Used by H2Stream.
  asio::any_io_executor executor() const { return ex_; }
  const H2Options& options() const { return options_; }
  bool is_server() const { return server_; }
  bool finished() const { return finished_; }
  nghttp2_session* ng() { return ng_; }
  void wake_writer() { write_wait_.notify_all(); }
  size_t send_buffered() const { return send_buffered_; }
  void add_send_buffered(size_t n) { send_buffered_ += n; }
  Waiters& send_space() { return send_space_; }
  // The handler / reader hands out `n` received bytes: reopen the windows.
  void consumed(H2Stream::State& s, size_t n);
  // Drops unread received bytes of `s` and returns their window to the connection.
  void discard_incoming(H2Stream::State& s);
  Status submit_response(H2Stream& stream, const flow::Response& head, bool end_stream);
  void resume(H2Stream::State& s);
  void submit_reset(H2Stream::State& s, uint32_t code);
  void decline_body(H2Stream::State& s);

 private:
  static nghttp2_session_callbacks* callbacks();
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk_recv(nghttp2_session*, uint8_t flags, int32_t stream_id,
                                const uint8_t* data, size_t len, void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_frame_not_send(nghttp2_session*, const nghttp2_frame* frame, int lib_error,
                               void* user);
  static ssize_t read_data(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source* source, void* user);

  H2Stream* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  void calm(std::string reason);
  void fail_all(const Status& why);
  asio::awaitable<void> write_loop();
  static asio::awaitable<void> run_handler(std::shared_ptr<SessionCore> self,
                                           std::shared_ptr<H2Stream> stream);
  asio::awaitable<std::pair<boost::system::error_code, size_t>> read_some_timed(
      asio::mutable_buffer buf);
  void arm_idle_timer(uint64_t generation);

  bool server_;
  asio::any_io_executor ex_;
  std::unique_ptr<ByteStream> io_;
  H2Options options_;
  H2Handler handler_;
  std::string initial_;
  nghttp2_session* ng_ = nullptr;
  std::unordered_map<int32_t, std::shared_ptr<H2Stream>> streams_;
  std::vector<std::shared_ptr<H2Stream>> ready_;  // server: heads complete, handlers to spawn
  asio::steady_timer read_timer_;
  asio::steady_timer write_timer_;
  asio::steady_timer grace_timer_;
  Waiters write_wait_;
  Waiters send_space_;
  Waiters writer_done_wait_;
  bool writer_done_ = false;
  bool peer_settings_ = false;  // the peer's first SETTINGS frame arrived
  Waiters peer_settings_wait_;
  size_t send_buffered_ = 0;
  bool io_closed_ = false;
  bool draining_io_ = false;  // the reader is done: flush what nghttp2 has, then close
  uint64_t read_generation_ = 0;
  bool finished_ = false;
  bool shutdown_ = false;
  bool timed_out_ = false;
  bool calm_ = false;
  std::string calm_reason_;
  Status fatal_;  // first protocol or transport failure
  uint32_t goaway_code_ = 0;
  // Abuse accounting.
  double reset_tokens_;
  Clock::time_point reset_refill_;
  size_t block_bytes_ = 0;
  uint32_t block_continuations_ = 0;
  uint32_t empty_data_frames_ = 0;
  H2SessionStats stats_;
};

nghttp2_session_callbacks* SessionCore::callbacks() {
  // Built once; nghttp2 copies the table into each session.
  static nghttp2_session_callbacks* cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    nghttp2_session_callbacks_new(&c);
    nghttp2_session_callbacks_set_on_begin_frame_callback(c, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(c, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(c, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(c, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(c, on_frame_not_send);
    return c;
  }();
  return cbs;
}

Status SessionCore::init() {
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) return {Errc::internal, "nghttp2_option_new failed"};
  // Windows reopen only when read() hands bytes out: a slow handler pushes back on the peer
  // instead of buffering without bound.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_send_header_block_length(opt, options_.max_send_header_block_length);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, options_.max_deflate_dynamic_table_size);
  nghttp2_option_set_max_outbound_ack(opt, 1000);  // SETTINGS/PING ack floods
  nghttp2_option_set_max_settings(opt, 32);        // entries per SETTINGS frame
  if (!server_) nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
  int rv = server_ ? nghttp2_session_server_new2(&ng_, callbacks(), this, opt)
                   : nghttp2_session_client_new2(&ng_, callbacks(), this, opt);
  nghttp2_option_del(opt);
  if (rv != 0) return {Errc::internal, std::string("nghttp2 session: ") + nghttp2_strerror(rv)};

  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.initial_window_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_list_size},
  };
  if (!server_) settings.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  if (server_ && options_.enable_connect_protocol)
    settings.push_back({NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1});
  rv = nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  if (rv == 0)
    rv = nghttp2_session_set_local_window_size(
        ng_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(options_.connection_window_size));
  if (rv != 0) return {Errc::invalid_argument, std::string("h2 settings: ") + nghttp2_strerror(rv)};
  return {};
}

void SessionCore::calm(std::string reason) {
  if (calm_) return;
  calm_ = true;
  calm_reason_ = std::move(reason);
  stats_.enhance_your_calm = true;
  nghttp2_session_terminate_session(ng_, NGHTTP2_ENHANCE_YOUR_CALM);
}

// ---- nghttp2 callbacks: fill buffers, wake coroutines, never block ----------------------------

int SessionCore::on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
  auto* self = static_cast<SessionCore*>(user);
  const auto& o = self->options_;
  switch (hd->type) {
    case NGHTTP2_HEADERS:
      self->block_bytes_ = hd->length;
      self->block_continuations_ = 0;
      break;
    case NGHTTP2_CONTINUATION:
      self->block_bytes_ += hd->length;
      ++self->block_continuations_;
      if (self->block_bytes_ > o.max_header_block_bytes ||
          self->block_continuations_ > o.max_continuation_frames)
        self->calm("header block flood (CONTINUATION)");
      break;
    case NGHTTP2_DATA:
      if (hd->length == 0 && (hd->flags & NGHTTP2_FLAG_END_STREAM) == 0 &&
          ++self->empty_data_frames_ > o.max_empty_data_frames)
        self->calm("empty DATA frame flood");
      break;
    default:
      break;
  }
  if (self->block_bytes_ > o.max_header_block_bytes && hd->type == NGHTTP2_HEADERS)
    self->calm("oversized header block");
  return 0;
}

int SessionCore::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<SessionCore*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  int32_t id = frame->hd.stream_id;
  if (self->server_ && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    auto stream = std::shared_ptr<H2Stream>(new H2Stream(self->shared_from_this()));
    stream->s_->id = id;
    stream->s_->request.http_version = "HTTP/2";
    self->streams_[id] = std::move(stream);
    ++self->stats_.streams;
  }
  if (H2Stream* s = self->find(id)) s->s_->header_bytes = 0;
  return 0;
}

int SessionCore::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                           size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                           void* user) {
  auto* self = static_cast<SessionCore*>(user);
  H2Stream* stream = self->find(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  auto& s = *stream->s_;
  s.header_bytes += namelen + valuelen + 32;
  if (s.header_bytes > self->options_.max_header_list_size) {
    // A request head over the limit is answered 431 once complete; anything else (a response,
    // trailers) resets the stream: nghttp2 sends RST_STREAM for this return value.
    if (self->server_ && !s.head_done) {
      s.headers_too_large = true;
      return 0;
    }
    s.error = {Errc::resource_exhausted, "received header block exceeds " +
                                             std::to_string(self->options_.max_header_list_size) +
                                             " bytes"};
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (s.headers_too_large) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  bool trailers = s.head_done;
  if (!trailers && !n.empty() && n.front() == ':') {
    if (self->server_) {
      if (n == ":method")
        s.request.method = v;
      else if (n == ":scheme")
        s.request.scheme = v;
      else if (n == ":authority")
        s.request.authority = v;
      else if (n == ":path")
        s.request.path = v;
      else
        s.request.headers.add(std::string(n), std::string(v));  // :protocol (RFC 8441)
    } else if (n == ":status") {
      int status = 0;
      std::from_chars(v.data(), v.data() + v.size(), status);
      s.response.status = status;
    }
    return 0;
  }
  flow::Headers& into = trailers ? (self->server_ ? s.request.trailers : s.response.trailers)
                                 : (self->server_ ? s.request.headers : s.response.headers);
  into.add(std::string(n), std::string(v));
  return 0;
}

int SessionCore::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<SessionCore*>(user);
  switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM: {
      ++self->stats_.resets_received;
      if (self->server_) {
        auto now = Clock::now();
        double elapsed = std::chrono::duration<double>(now - self->reset_refill_).count();
        self->reset_refill_ = now;
        self->reset_tokens_ = std::min<double>(
            self->options_.reset_burst, self->reset_tokens_ + elapsed * self->options_.reset_rate);
        if (self->reset_tokens_ < 1.0)
          self->calm("rapid reset flood (RST_STREAM rate over the limit)");
        else
          self->reset_tokens_ -= 1.0;
      }
      return 0;
    }
    case NGHTTP2_GOAWAY:
      self->stats_.goaway_received = true;
      self->goaway_code_ = frame->goaway.error_code;
      return 0;
    case NGHTTP2_SETTINGS:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 && !self->peer_settings_) {
        self->peer_settings_ = true;
        self->peer_settings_wait_.notify_all();
      }
      return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
      break;
    default:
      return 0;
  }
  H2Stream* stream = self->find(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  auto& s = *stream->s_;
  if (frame->hd.type == NGHTTP2_HEADERS && !s.head_done) {
    if (self->server_) {
      s.head_done = true;
      if (s.headers_too_large) {
        // 431 straight away; the handler never sees the request.
        flow::Response head;
        head.status = 431;
        (void)self->submit_response(*stream, head, true);
        s.reader_gone = true;
      } else {
        self->ready_.push_back(self->streams_[frame->hd.stream_id]);
      }
    } else if (s.response.status >= 200 || s.response.status == 101) {
      s.head_done = true;
      s.response.http_version = "HTTP/2";
    } else if (++s.informational > kMaxInformational) {
      // Endless 1xx heads would keep the stream alive without a response.
      s.error = {Errc::resource_exhausted, "too many informational (1xx) responses"};
      nghttp2_submit_rst_stream(self->ng_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_ENHANCE_YOUR_CALM);
    } else {
      // An informational head (1xx): forget it and wait for the final one.
      s.response.headers = {};
      s.response.status = 0;
    }
  }
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) s.in_end = true;
  s.in_wait.notify_all();
  return 0;
}

int SessionCore::on_data_chunk_recv(nghttp2_session* ng, uint8_t, int32_t stream_id,
                                    const uint8_t* data, size_t len, void* user) {
  auto* self = static_cast<SessionCore*>(user);
  H2Stream* stream = self->find(stream_id);
  if (stream == nullptr || stream->s_->reader_gone) {
    nghttp2_session_consume(ng, stream_id, len);
    return 0;
  }
  stream->s_->in_chunks.emplace_back(reinterpret_cast<const char*>(data), len);
  stream->s_->in_wait.notify_all();
  return 0;
}

int SessionCore::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                 void* user) {
  auto* self = static_cast<SessionCore*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  std::shared_ptr<H2Stream> stream = std::move(it->second);
  self->streams_.erase(it);
  auto& s = *stream->s_;
  s.closed = true;
  s.close_code = error_code;
  bool complete = s.in_end && (!s.out_open || (s.out_end && s.out_bytes == 0));
  if (s.error.ok() && (error_code != NGHTTP2_NO_ERROR || !s.in_end))
    s.error = error_code != NGHTTP2_NO_ERROR ? stream_error(error_code)
                                             : Status(Errc::unavailable, "stream closed early");
  if (!complete || error_code != NGHTTP2_NO_ERROR) {
    // Bytes nobody will send any more leave the session's send budget.
    self->send_buffered_ -= std::min(self->send_buffered_, s.out_bytes);
    s.out_chunks.clear();
    s.out_bytes = 0;
  }
  if (!s.error.ok()) self->discard_incoming(s);
  s.in_wait.notify_all();
  s.out_wait.notify_all();
  self->send_space_.notify_all();
  return 0;
}

int SessionCore::on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<SessionCore*>(user);
  if (frame->hd.type == NGHTTP2_RST_STREAM) ++self->stats_.resets_sent;
  if (frame->hd.type == NGHTTP2_GOAWAY) self->stats_.goaway_sent = true;
  if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    if (H2Stream* stream = self->find(frame->hd.stream_id)) {
      // Queued behind the END_STREAM frame just written, so it cannot overtake it.
      stream->s_->end_sent = true;
      if (stream->s_->decline_body) self->decline_body(*stream->s_);
    }
  }
  return 0;
}

int SessionCore::on_frame_not_send(nghttp2_session*, const nghttp2_frame* frame, int lib_error,
                                   void* user) {
  auto* self = static_cast<SessionCore*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto it = self->streams_.find(frame->hd.stream_id);
  if (it == self->streams_.end()) return 0;
  auto& s = *it->second->s_;
  if (s.error.ok())
    s.error = {Errc::unavailable, std::string("request not sent: ") + nghttp2_strerror(lib_error)};
  s.closed = true;
  s.in_wait.notify_all();
  s.out_wait.notify_all();
  self->send_buffered_ -= std::min(self->send_buffered_, s.out_bytes);
  s.out_bytes = 0;
  s.out_chunks.clear();
  self->streams_.erase(it);
  return 0;
}

ssize_t SessionCore::read_data(nghttp2_session* ng, int32_t stream_id, uint8_t* buf, size_t length,
                               uint32_t* data_flags, nghttp2_data_source*, void* user) {
  auto* self = static_cast<SessionCore*>(user);
  H2Stream* stream = self->find(stream_id);
  if (stream == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  auto& s = *stream->s_;
  size_t copied = 0;
  while (copied < length && !s.out_chunks.empty()) {
    std::string& front = s.out_chunks.front();
    size_t n = std::min(length - copied, front.size() - s.out_offset);
    std::memcpy(buf + copied, front.data() + s.out_offset, n);
    copied += n;
    s.out_offset += n;
    if (s.out_offset == front.size()) {
      s.out_chunks.pop_front();
      s.out_offset = 0;
    }
  }
  s.out_bytes -= copied;
  self->send_buffered_ -= std::min(self->send_buffered_, copied);
  if (copied > 0) {
    s.out_wait.notify_all();
    self->send_space_.notify_all();
  }
  if (s.out_chunks.empty() && s.out_end) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s.out_trailers) {
      NvList nv;
      nv.add_fields(*s.out_trailers);
      // Allowed from this callback by nghttp2's contract; the HEADERS frame carries END_STREAM.
      if (nghttp2_submit_trailer(ng, stream_id, nv.nv.data(), nv.nv.size()) == 0)
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return static_cast<ssize_t>(copied);
  }
  if (copied == 0) {
    s.deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(copied);
}

// ---- stream plumbing used by H2Stream --------------------------------------------------------

void SessionCore::consumed(H2Stream::State& s, size_t n) {
  if (n == 0 || finished_) return;
  nghttp2_session_consume_connection(ng_, n);
  if (!s.closed) nghttp2_session_consume_stream(ng_, s.id, n);
  wake_writer();
}

void SessionCore::discard_incoming(H2Stream::State& s) {
  s.reader_gone = true;
  size_t n = 0;
  for (auto& c : s.in_chunks) n += c.size();
  s.in_chunks.clear();
  consumed(s, n);
}

void SessionCore::resume(H2Stream::State& s) {
  if (s.deferred && !s.closed && !finished_) {
    s.deferred = false;
    nghttp2_session_resume_data(ng_, s.id);
  }
  wake_writer();
}

void SessionCore::submit_reset(H2Stream::State& s, uint32_t code) {
  if (!s.closed && !finished_ && s.id > 0) {
    nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s.id, code);
    wake_writer();
  }
}

void SessionCore::decline_body(H2Stream::State& s) {
  s.decline_body = true;
  if (s.end_sent && !s.in_end) submit_reset(s, NGHTTP2_NO_ERROR);
}

Status SessionCore::submit_response(H2Stream& stream, const flow::Response& head, bool end_stream) {
  auto& s = *stream.s_;
  NvList nv;
  nv.add(":status", std::to_string(head.status));
  nv.add_fields(head.headers);
  nghttp2_data_provider provider{};
  provider.read_callback = read_data;
  int rv = nghttp2_submit_response(ng_, s.id, nv.nv.data(), nv.nv.size(),
                                   end_stream ? nullptr : &provider);
  if (rv != 0) return {Errc::invalid_argument, std::string("respond: ") + nghttp2_strerror(rv)};
  s.responded = true;
  s.response = head;
  s.response.http_version = "HTTP/2";
  s.out_open = !end_stream;
  s.out_end = end_stream;
  wake_writer();
  return {};
}

Result<std::shared_ptr<H2Stream>> SessionCore::open(const flow::Request& request, bool end_stream) {
  if (!accepting())
    return Status(Errc::unavailable, stats_.goaway_received
                                         ? "upstream sent GOAWAY: no new streams on this session"
                                         : "HTTP/2 session is closing");
  NvList nv;
  nv.add(":method", request.method);
  std::string authority = request.authority;
  if (authority.empty()) authority = std::string(request.headers.get("host").value_or(""));
  if (auto protocol = connect_protocol(request)) {
    // Extended CONNECT (RFC 8441 §4): all four pseudo-headers besides :method.
    nv.add(std::string(kProtocolField), *protocol);
    nv.add(":scheme", request.scheme.empty() ? "http" : request.scheme);
    nv.add(":authority", authority);
    nv.add(":path", request.path.empty() ? "/" : request.path);
  } else if (request.method == "CONNECT") {
    nv.add(":authority", authority);
  } else {
    nv.add(":scheme", request.scheme.empty() ? "http" : request.scheme);
    if (!authority.empty()) nv.add(":authority", authority);
    nv.add(":path", request.path.empty() ? "/" : request.path);
  }
  nv.add_fields(request.headers);
  auto stream = std::shared_ptr<H2Stream>(new H2Stream(shared_from_this()));
  auto& s = *stream->s_;
  s.request = request;
  s.request.body = {};
  s.request.http_version = "HTTP/2";
  s.out_open = !end_stream;
  s.out_end = end_stream;
  nghttp2_data_provider provider{};
  provider.read_callback = read_data;
  int32_t id = nghttp2_submit_request(ng_, nullptr, nv.nv.data(), nv.nv.size(),
                                      end_stream ? nullptr : &provider, nullptr);
  if (id < 0) return Status(Errc::unavailable, std::string("open: ") + nghttp2_strerror(id));
  s.id = id;
  streams_[id] = stream;
  ++stats_.streams;
  wake_writer();
  return stream;
}

asio::awaitable<bool> SessionCore::extended_connect_enabled() {
  auto self = shared_from_this();
  auto deadline = Clock::now() + options_.stream_timeout;
  while (!peer_settings_ && !finished_ && Clock::now() < deadline)
    co_await peer_settings_wait_.wait(ex_, deadline);
  co_return peer_settings_ && !finished_ &&
      nghttp2_session_get_remote_settings(ng_, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) == 1;
}

// ---- the pump ---------------------------------------------------------------------------------

void SessionCore::arm_idle_timer(uint64_t generation) {
  read_timer_.expires_after(options_.idle_timeout);
  read_timer_.async_wait([weak = weak_from_this(), generation](boost::system::error_code ec) {
    if (ec) return;
    auto self = weak.lock();
    // A stale expiry (the read finished as the timer fired) must not close the connection.
    if (!self || self->read_generation_ != generation) return;
    if (!self->streams_.empty()) {
      // Open streams bound themselves (stream_timeout on every wait); look again later, so a
      // connection whose last stream closes while this read is pending still idles out.
      self->arm_idle_timer(generation);
      return;
    }
    self->timed_out_ = true;
    self->io_->close();
  });
}

asio::awaitable<std::pair<boost::system::error_code, size_t>> SessionCore::read_some_timed(
    asio::mutable_buffer buf) {
  uint64_t generation = ++read_generation_;
  arm_idle_timer(generation);
  auto result = co_await io_->read_some(buf);
  ++read_generation_;
  read_timer_.cancel();
  co_return result;
}

asio::awaitable<void> SessionCore::write_loop() {
  auto self = shared_from_this();
  std::string out;
  while (!io_closed_) {
    out.clear();
    while (out.size() < (64u << 10)) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(ng_, &data);
      if (n < 0) {
        if (fatal_.ok())
          fatal_ = {Errc::internal,
                    std::string("nghttp2 send: ") + nghttp2_strerror(static_cast<int>(n))};
        io_closed_ = true;
        break;
      }
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (!out.empty()) {
      write_timer_.expires_after(options_.write_timeout);
      write_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        if (ec) return;
        if (auto s = weak.lock()) {
          s->timed_out_ = true;
          s->io_->close();
        }
      });
      auto ec = co_await io_->write_all(asio::buffer(out));
      write_timer_.cancel();
      if (ec) {
        if (fatal_.ok() && !io_closed_) fatal_ = {Errc::unavailable, "write: " + ec.message()};
        io_closed_ = true;
        break;
      }
      stats_.bytes_out += out.size();
      continue;
    }
    if (io_closed_ || draining_io_) break;
    if (nghttp2_session_want_read(ng_) == 0 && nghttp2_session_want_write(ng_) == 0) break;
    co_await write_wait_.wait(ex_, Clock::now() + std::chrono::hours(24));
  }
  io_closed_ = true;
  io_->close();  // ends the reader's pending read
  writer_done_ = true;
  writer_done_wait_.notify_all();
}

asio::awaitable<void> SessionCore::run_handler(std::shared_ptr<SessionCore> self,
                                               std::shared_ptr<H2Stream> stream) {
  try {
    co_await self->handler_(stream);
  } catch (const std::exception&) {
    stream->reset(H2ErrorCode::internal_error);
  }
  auto& s = *stream->s_;
  if (!s.closed && (!s.responded || !s.out_end)) stream->reset(H2ErrorCode::internal_error);
  // Nobody reads the rest of the request body: give its window back as it arrives.
  self->discard_incoming(s);
}

asio::awaitable<Status> SessionCore::run() {
  auto self = shared_from_this();
  asio::co_spawn(ex_, write_loop(), asio::detached);
  std::vector<char> buf(16u << 10);
  auto feed = [&](const char* data, size_t n) -> bool {
    ssize_t rv = nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(data), n);
    if (rv < 0) {
      // nghttp2 leaves fatal errors to us: tell the peer why before dropping the connection.
      // Debian's 1.52 carries the CVE-2024-28182 fix (NGHTTP2_ERR_TOO_MANY_CONTINUATIONS), which
      // usually fires before our own max_continuation_frames.
      std::string what = nghttp2_strerror(static_cast<int>(rv));
      if (rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
        calm(what);
      } else {
        nghttp2_session_terminate_session(ng_, NGHTTP2_PROTOCOL_ERROR);
        if (fatal_.ok()) fatal_ = {Errc::parse_error, "HTTP/2 protocol error from peer: " + what};
      }
      return false;
    }
    for (auto& stream : ready_)
      asio::co_spawn(ex_, run_handler(self, std::move(stream)), asio::detached);
    ready_.clear();
    wake_writer();
    return true;
  };
  bool ok = initial_.empty() || feed(initial_.data(), initial_.size());
  initial_.clear();
  while (ok && !io_closed_) {
    if (nghttp2_session_want_read(ng_) == 0) break;  // the writer flushes and closes
    auto [ec, n] = co_await read_some_timed(asio::buffer(buf));
    if (ec) {
      if (fatal_.ok() && !io_closed_) {
        if (timed_out_)
          fatal_ = {Errc::timeout, "HTTP/2 connection idle or stalled"};
        else if (!streams_.empty())
          fatal_ = {Errc::unavailable, "connection closed with streams open: " + ec.message()};
      }
      break;
    }
    stats_.bytes_in += n;
    ok = feed(buf.data(), n);
  }
  // A protocol error or want_read()==0: let the writer flush what nghttp2 still has (a GOAWAY)
  // and close. A read error or EOF: nothing more can be exchanged.
  if (ok && nghttp2_session_want_read(ng_) != 0)
    io_closed_ = true;
  else
    draining_io_ = true;
  wake_writer();
  while (!writer_done_) co_await writer_done_wait_.wait(ex_, Clock::now() + options_.write_timeout);
  grace_timer_.cancel();
  finished_ = true;
  peer_settings_wait_.notify_all();
  Status result;
  if (calm_)
    result = {Errc::resource_exhausted, "sent GOAWAY ENHANCE_YOUR_CALM: " + calm_reason_};
  else if (!fatal_.ok())
    result = fatal_;
  else if (timed_out_)
    result = {Errc::timeout, "HTTP/2 connection idle or stalled"};
  else if (stats_.goaway_received && goaway_code_ != NGHTTP2_NO_ERROR)
    result = {Errc::unavailable, "peer sent GOAWAY " + h2_error_code_name(goaway_code_)};
  fail_all(result.ok() ? Status(Errc::unavailable, "HTTP/2 connection closed") : result);
  co_return result;
}

void SessionCore::fail_all(const Status& why) {
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) {
    auto& s = *stream->s_;
    s.closed = true;
    if (s.error.ok()) s.error = why;
    s.in_chunks.clear();
    s.in_wait.notify_all();
    s.out_wait.notify_all();
  }
  send_buffered_ = 0;
  send_space_.notify_all();
}

void SessionCore::shutdown() {
  if (shutdown_ || finished_ || ng_ == nullptr) return;
  shutdown_ = true;
  nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE,
                        server_ ? nghttp2_session_get_last_proc_stream_id(ng_) : 0,
                        NGHTTP2_NO_ERROR, nullptr, 0);
  grace_timer_.expires_after(options_.shutdown_grace);
  grace_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) {
      self->io_closed_ = true;
      self->io_->close();
      self->wake_writer();
    }
  });
  wake_writer();
}

}  // namespace detail

// ---- H2Stream ---------------------------------------------------------------------------------

H2Stream::H2Stream(std::shared_ptr<detail::SessionCore> core)
    : core_(std::move(core)), s_(std::make_unique<State>()) {}
H2Stream::~H2Stream() = default;

int32_t H2Stream::id() const {
  return s_->id;
}
flow::Request& H2Stream::request() {
  return s_->request;
}
flow::Response& H2Stream::response() {
  return s_->response;
}
bool H2Stream::body_ended() const {
  return s_->in_end && s_->in_chunks.empty() && s_->error.ok();
}
bool H2Stream::failed() const {
  return !s_->error.ok();
}
std::optional<uint32_t> H2Stream::close_code() const {
  return s_->close_code;
}

asio::awaitable<Result<std::optional<std::string>>> H2Stream::read() {
  return read(core_->options().stream_timeout);
}

asio::awaitable<Result<std::optional<std::string>>> H2Stream::read(
    std::chrono::milliseconds timeout) {
  auto keep = core_;
  auto deadline = Clock::now() + timeout;
  flow::Body& body = core_->is_server() ? s_->request.body : s_->response.body;
  for (;;) {
    if (!s_->in_chunks.empty()) {
      std::string chunk = std::move(s_->in_chunks.front());
      s_->in_chunks.pop_front();
      body.size += chunk.size();
      core_->consumed(*s_, chunk.size());
      co_return std::optional<std::string>(std::move(chunk));
    }
    if (!s_->error.ok()) co_return s_->error;
    if (s_->in_end) co_return std::optional<std::string>();
    if (s_->closed) co_return Status(Errc::unavailable, "stream closed before the body ended");
    if (Clock::now() >= deadline)
      co_return Status(Errc::timeout, "no body bytes from the peer in time");
    co_await s_->in_wait.wait(core_->executor(), deadline);
  }
}

asio::awaitable<Status> H2Stream::read_all(size_t cap) {
  flow::Body& body = core_->is_server() ? s_->request.body : s_->response.body;
  for (;;) {
    auto chunk = co_await read();
    if (!chunk.ok()) co_return chunk.status();
    if (!chunk->has_value()) co_return Status();
    const std::string& c = **chunk;
    size_t room = cap > body.data.size() ? cap - body.data.size() : 0;
    body.data.append(c, 0, std::min(room, c.size()));
    if (c.size() > room) body.truncated = true;
  }
}

asio::awaitable<Status> H2Stream::wait_response() {
  if (core_->is_server())
    co_return Status(Errc::failed_precondition, "wait_response on a server stream");
  auto keep = core_;
  auto deadline = Clock::now() + core_->options().stream_timeout;
  for (;;) {
    if (s_->head_done) co_return Status();
    if (!s_->error.ok()) co_return s_->error;
    if (s_->closed) co_return Status(Errc::unavailable, "stream closed before a response");
    if (Clock::now() >= deadline)
      co_return Status(Errc::timeout, "no response head from the upstream in time");
    co_await s_->in_wait.wait(core_->executor(), deadline);
  }
}

asio::awaitable<Status> H2Stream::respond(const flow::Response& head, bool end_stream) {
  if (!core_->is_server())
    co_return Status(Errc::failed_precondition, "respond on a client stream");
  if (s_->responded) co_return Status(Errc::failed_precondition, "respond called twice");
  if (!s_->error.ok()) co_return s_->error;
  if (s_->closed || core_->finished()) co_return Status(Errc::unavailable, "stream closed");
  co_return core_->submit_response(*this, head, end_stream);
}

asio::awaitable<Status> H2Stream::write(std::string data, bool end_stream) {
  auto keep = core_;
  if (!s_->out_open || s_->out_end)
    co_return Status(Errc::failed_precondition, "no open body to write to on this stream");
  const auto& o = core_->options();
  auto deadline = Clock::now() + o.stream_timeout;
  size_t pos = 0;
  // Queue in pieces so one large write still respects the queue caps.
  constexpr size_t kPiece = 64u << 10;
  do {
    for (;;) {
      if (!s_->error.ok()) co_return s_->error;
      if (s_->closed || core_->finished()) co_return Status(Errc::unavailable, "stream closed");
      if (s_->out_bytes < o.max_stream_send_queue &&
          core_->send_buffered() < o.max_buffered_send_bytes)
        break;
      if (Clock::now() >= deadline)
        co_return Status(Errc::timeout, "peer did not open its flow-control window in time");
      if (s_->out_bytes >= o.max_stream_send_queue)
        co_await s_->out_wait.wait(core_->executor(), deadline);
      else
        co_await core_->send_space().wait(core_->executor(), deadline);
    }
    size_t n = std::min(kPiece, data.size() - pos);
    if (n > 0) {
      s_->out_chunks.emplace_back(data, pos, n);
      s_->out_bytes += n;
      core_->add_send_buffered(n);
      pos += n;
    }
    core_->resume(*s_);
  } while (pos < data.size());
  if (end_stream) {
    s_->out_end = true;
    core_->resume(*s_);
  }
  co_return Status();
}

asio::awaitable<Status> H2Stream::write_trailers(flow::Headers trailers) {
  if (!s_->out_open || s_->out_end)
    co_return Status(Errc::failed_precondition, "no open body to end with trailers");
  if (!s_->error.ok()) co_return s_->error;
  if (s_->closed || core_->finished()) co_return Status(Errc::unavailable, "stream closed");
  if (core_->is_server())
    s_->response.trailers = trailers;
  else
    s_->request.trailers = trailers;
  s_->out_trailers = std::move(trailers);
  s_->out_end = true;
  core_->resume(*s_);
  co_return Status();
}

void H2Stream::reset(H2ErrorCode code) {
  core_->submit_reset(*s_, static_cast<uint32_t>(code));
  if (s_->error.ok())
    s_->error = {Errc::cancelled,
                 "stream reset locally: " + h2_error_code_name(static_cast<uint32_t>(code))};
  core_->discard_incoming(*s_);
  s_->in_wait.notify_all();
  s_->out_wait.notify_all();
}

void H2Stream::decline_request_body() {
  if (core_->is_server()) core_->decline_body(*s_);
}

// ---- sessions -----------------------------------------------------------------------------------

std::shared_ptr<H2ServerSession> H2ServerSession::create(asio::any_io_executor executor,
                                                         std::unique_ptr<ByteStream> stream,
                                                         H2Handler handler, H2Options options,
                                                         std::string initial_bytes) {
  auto core =
      std::make_shared<detail::SessionCore>(true, std::move(executor), std::move(stream), options,
                                            std::move(handler), std::move(initial_bytes));
  return std::shared_ptr<H2ServerSession>(new H2ServerSession(std::move(core)));
}
H2ServerSession::~H2ServerSession() = default;

asio::awaitable<Status> H2ServerSession::run() {
  auto core = core_;
  if (Status st = core->init(); !st.ok()) co_return st;
  co_return co_await core->run();
}
void H2ServerSession::shutdown() {
  core_->shutdown();
}
H2SessionStats H2ServerSession::stats() const {
  return core_->stats();
}

std::shared_ptr<H2ClientSession> H2ClientSession::create(asio::any_io_executor executor,
                                                         std::unique_ptr<ByteStream> stream,
                                                         H2Options options) {
  auto core = std::make_shared<detail::SessionCore>(false, std::move(executor), std::move(stream),
                                                    options, H2Handler{}, std::string{});
  // Initialized here so open() works before run() is first resumed.
  (void)core->init();
  return std::shared_ptr<H2ClientSession>(new H2ClientSession(std::move(core)));
}
H2ClientSession::~H2ClientSession() = default;

asio::awaitable<Status> H2ClientSession::run() {
  auto core = core_;
  if (core->ng() == nullptr) co_return Status(Errc::internal, "nghttp2 client session failed");
  co_return co_await core->run();
}

Result<std::shared_ptr<H2Stream>> H2ClientSession::open(const flow::Request& request,
                                                        bool end_stream) {
  return core_->open(request, end_stream);
}

asio::awaitable<Result<flow::Response>> H2ClientSession::fetch(flow::Request request,
                                                               size_t body_cap) {
  bool has_body = !request.body.data.empty() || !request.trailers.empty();
  auto opened = open(request, !has_body);
  if (!opened.ok()) co_return opened.status();
  auto stream = std::move(opened.value());
  if (has_body) {
    if (!request.body.data.empty() || request.trailers.empty()) {
      Status st = co_await stream->write(std::move(request.body.data), request.trailers.empty());
      if (!st.ok()) co_return st;
    }
    if (!request.trailers.empty()) {
      Status st = co_await stream->write_trailers(request.trailers);
      if (!st.ok()) co_return st;
    }
  }
  if (Status st = co_await stream->wait_response(); !st.ok()) co_return st;
  if (Status st = co_await stream->read_all(body_cap); !st.ok()) {
    stream->reset();
    co_return st;
  }
  co_return std::move(stream->response());
}

asio::awaitable<bool> H2ClientSession::extended_connect_enabled() {
  auto core = core_;
  co_return co_await core->extended_connect_enabled();
}

bool H2ClientSession::accepting() const {
  return core_->accepting();
}
void H2ClientSession::shutdown() {
  core_->shutdown();
}
H2SessionStats H2ClientSession::stats() const {
  return core_->stats();
}

}  // namespace retake::h2
