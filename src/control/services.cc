// The Recorder and Flows services: validate the request, call the library, translate back.
#include "control/services.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <mutex>
#include <string_view>
#include <vector>

#include "ops/select.h"
#include "ops/transfer.h"
#include "replay/server/proxy_responder.h"
#include "replay/client/run_store.h"

namespace retake::control {

namespace {

grpc::Status invalid(const std::string& field, const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, field + ": " + message};
}

grpc::Status check_name(const std::string& field, const std::string& value) {
  if (value.size() > kMaxNameBytes)
    return invalid(field, "at most " + std::to_string(kMaxNameBytes) + " bytes, got " +
                              std::to_string(value.size()));
  for (unsigned char c : value)
    if (c < 0x20 || c == 0x7f) return invalid(field, "control characters are not allowed");
  return grpc::Status::OK;
}


void headers_to_proto(const flow::Headers& headers,
                      google::protobuf::RepeatedPtrField<v1::Header>& out) {
  out.Reserve(static_cast<int>(headers.size()));
  for (const auto& h : headers) {
    auto* field = out.Add();
    field->set_name(h.name);
    field->set_value(h.value);
  }
}

void body_to_proto(const flow::Body& body, v1::Body& out) {
  out.set_data(body.data);
  out.set_size(body.size);
  out.set_truncated(body.truncated);
}

void tls_to_proto(const flow::TlsInfo& tls, v1::TlsInfo& out) {
  out.set_present(tls.present);
  out.set_sni(tls.sni);
  out.set_alpn(tls.alpn);
  out.set_version(tls.version);
  out.set_cipher(tls.cipher);
  out.set_peer_subject(tls.peer_subject);
  out.set_peer_issuer(tls.peer_issuer);
}

const char* kind_name(flow::FlowKind kind) {
  switch (kind) {
    case flow::FlowKind::http:
      return "http";
    case flow::FlowKind::tunnel:
      return "tunnel";
    case flow::FlowKind::tls_failed:
      return "tls_failed";
  }
  return "http";
}

std::mutex private_paths_mutex;
std::vector<std::string>& private_paths() {
  static std::vector<std::string> paths;
  return paths;
}

std::string redact_private_paths(std::string message) {
  std::lock_guard lock(private_paths_mutex);
  for (const auto& path : private_paths()) {
    for (size_t at = message.find(path); at != std::string::npos;
         at = message.find(path, at + 1)) {
      constexpr std::string_view kInstead = "the daemon's store";
      message.replace(at, path.size(), kInstead);
    }
  }
  return message;
}

}  // namespace

void register_private_path(const std::string& path) {
  if (path.empty()) return;
  std::lock_guard lock(private_paths_mutex);
  auto& paths = private_paths();
  if (std::find(paths.begin(), paths.end(), path) == paths.end()) paths.push_back(path);
}

grpc::Status to_grpc(const Status& status, const std::string& field) {
  using grpc::StatusCode;
  StatusCode code = StatusCode::UNKNOWN;
  switch (status.code()) {
    case Errc::ok:
      return grpc::Status::OK;
    case Errc::invalid_argument:
    case Errc::parse_error:
      code = StatusCode::INVALID_ARGUMENT;
      break;
    case Errc::not_found:
      code = StatusCode::NOT_FOUND;
      break;
    case Errc::already_exists:
      code = StatusCode::ALREADY_EXISTS;
      break;
    case Errc::failed_precondition:
    case Errc::version_mismatch:
      code = StatusCode::FAILED_PRECONDITION;
      break;
    case Errc::corruption:
      code = StatusCode::DATA_LOSS;
      break;
    case Errc::io_error:
    case Errc::unavailable:
      code = StatusCode::UNAVAILABLE;
      break;
    case Errc::timeout:
      code = StatusCode::DEADLINE_EXCEEDED;
      break;
    case Errc::resource_exhausted:
      code = StatusCode::RESOURCE_EXHAUSTED;
      break;
    case Errc::cancelled:
      code = StatusCode::CANCELLED;
      break;
    case Errc::internal:
      code = StatusCode::INTERNAL;
      break;
  }
  // A message that already names the field ("mode: unknown mode ...") is not prefixed twice.
  const std::string message = redact_private_paths(status.message());
  bool named = field.empty() || (message.size() > field.size() &&
                                 message.compare(0, field.size(), field) == 0 &&
                                 message[field.size()] == ':');
  return {code, named ? message : field + ": " + message};
}

grpc::Status TokenCheck::check(const grpc::ServerContext& context) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end())
    return {grpc::StatusCode::UNAUTHENTICATED,
            "this daemon requires 'authorization: Bearer <token>'"};
  std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  bool ok = value.size() > kBearer.size() && value.substr(0, kBearer.size()) == kBearer;
  // Compare digests so neither the length nor the content of the token leaks through timing.
  unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token_.data()), token_.size(), want);
  std::string_view presented = ok ? value.substr(kBearer.size()) : value;
  SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), got);
  if (CRYPTO_memcmp(want, got, sizeof want) != 0 || !ok)
    return {grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token"};
  return grpc::Status::OK;
}

void to_proto(const flow::Flow& f, v1::Flow& out) {
  out.set_id(f.id);
  out.set_session(f.session);
  out.set_run(f.run);
  out.set_origin(f.origin);
  out.set_kind(kind_name(f.kind));
  out.set_mode(f.mode);
  out.set_client_address(f.client_address);
  out.set_upstream_address(f.upstream_address);
  auto& rq = *out.mutable_request();
  rq.set_method(f.request.method);
  rq.set_scheme(f.request.scheme);
  rq.set_authority(f.request.authority);
  rq.set_path(f.request.path);
  rq.set_http_version(f.request.http_version);
  headers_to_proto(f.request.headers, *rq.mutable_headers());
  body_to_proto(f.request.body, *rq.mutable_body());
  headers_to_proto(f.request.trailers, *rq.mutable_trailers());
  if (f.response) {
    auto& rs = *out.mutable_response();
    rs.set_status(f.response->status);
    rs.set_reason(f.response->reason);
    rs.set_http_version(f.response->http_version);
    headers_to_proto(f.response->headers, *rs.mutable_headers());
    body_to_proto(f.response->body, *rs.mutable_body());
    headers_to_proto(f.response->trailers, *rs.mutable_trailers());
  }
  if (f.error) {
    out.mutable_error()->set_kind(flow::error_kind_name(f.error->kind));
    out.mutable_error()->set_message(f.error->message);
  }
  auto& t = *out.mutable_timing();
  t.set_client_connected_ns(f.timing.client_connected);
  t.set_request_started_ns(f.timing.request_started);
  t.set_request_ended_ns(f.timing.request_ended);
  t.set_upstream_connected_ns(f.timing.upstream_connected);
  t.set_response_started_ns(f.timing.response_started);
  t.set_response_ended_ns(f.timing.response_ended);
  tls_to_proto(f.client_tls, *out.mutable_client_tls());
  tls_to_proto(f.upstream_tls, *out.mutable_upstream_tls());
  if (f.websocket) {
    auto& ws = *out.mutable_websocket();
    for (const auto& m : f.websocket->messages) {
      auto& pm = *ws.add_messages();
      pm.set_from_client(m.from_client);
      pm.set_opcode(m.opcode);
      pm.set_payload(m.payload);
      pm.set_timestamp_ns(m.timestamp);
      pm.set_truncated(m.truncated);
      pm.set_compressed(m.compressed);
    }
    ws.set_close_code(f.websocket->close_code);
    ws.set_close_reason(f.websocket->close_reason);
    ws.set_closed_by_client(f.websocket->closed_by_client);
  }
  out.set_bytes_from_client(f.bytes_from_client);
  out.set_bytes_from_upstream(f.bytes_from_upstream);
  out.set_marked(f.marked);
  out.set_comment(f.comment);
  for (const auto& tag : f.tags) out.add_tags(tag);
}

void to_summary(const flow::Flow& f, v1::FlowSummary& out) {
  out.set_id(f.id);
  out.set_session(f.session);
  out.set_run(f.run);
  out.set_time_ns(f.timing.request_started ? f.timing.request_started : f.timing.client_connected);
  out.set_method(f.request.method);
  out.set_url(f.request.url());
  out.set_scheme(f.request.scheme);
  out.set_authority(f.request.authority);
  out.set_path(f.request.path);
  out.set_status(f.response ? f.response->status : 0);
  out.set_response_size(f.response ? f.response->body.size : 0);
  out.set_duration_ns(f.duration());
  if (f.error) {
    out.set_error_kind(flow::error_kind_name(f.error->kind));
    out.set_error_message(f.error->message);
  }
}

// ---- FlowHub ----

std::shared_ptr<Watcher> FlowHub::subscribe(std::string session) {
  std::lock_guard lock(mutex_);
  if (closed_ || watchers_.size() >= kMaxWatchers) return nullptr;
  auto watcher = std::make_shared<Watcher>();
  watcher->session = std::move(session);
  watchers_.push_back(watcher);
  return watcher;
}

void FlowHub::unsubscribe(const std::shared_ptr<Watcher>& watcher) {
  std::lock_guard lock(mutex_);
  std::erase(watchers_, watcher);
}

void FlowHub::publish(const flow::Flow& f) {
  std::lock_guard lock(mutex_);
  if (watchers_.empty()) return;
  std::optional<v1::FlowSummary> summary;  // built once, only if someone wants it
  for (const auto& w : watchers_) {
    if (!w->session.empty() && w->session != f.session) continue;
    if (!summary) to_summary(f, summary.emplace());
    {
      std::lock_guard wl(w->mutex);
      if (w->queue.size() >= kWatchQueueCapacity) {
        ++w->lost;
        continue;
      }
      w->queue.push_back(*summary);
    }
    w->ready.notify_one();
  }
}

void FlowHub::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  for (const auto& w : watchers_) {
    {
      std::lock_guard wl(w->mutex);
      w->closed = true;
    }
    w->ready.notify_one();
  }
}

// ---- Recorder ----

void RecorderService::describe(const Running& r, bool running, v1::RecorderStatus& out) const {
  out.set_recorder_id(r.id);
  out.set_mode(r.mode);
  out.set_bound_address(r.bound_address);
  out.set_session(r.session);
  out.set_running(running);
  auto s = r.recorder->stats();
  auto& st = *out.mutable_stats();
  st.set_connections(s.connections);
  st.set_active_connections(s.active_connections);
  st.set_flows(s.flows);
  st.set_flows_dropped(s.flows_dropped);
  st.set_errors(s.errors);
  st.set_upstream_connects(s.upstream_connects);
  auto w = writer_.stats();
  st.set_flows_waiting_for_space(w.waiting_for_space);
  st.set_disk_space_pauses(w.stalls);
}

grpc::Status RecorderService::Start(grpc::ServerContext* context,
                                    const v1::StartRecorderRequest* request,
                                    v1::StartRecorderResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  record::RecorderOptions options;
  std::string mode = request->mode().empty() ? "explicit" : request->mode();
  if (mode.size() > 4096) return invalid("mode", "at most 4096 bytes");
  if (auto st = record::parse_mode(mode, options); !st.ok()) return to_grpc(st, "mode");
  std::string listen = request->listen().empty() ? "127.0.0.1:0" : request->listen();
  auto address = listen.size() > 1024 ? std::nullopt : flow::parse_listen_address(listen);
  if (address) {
    options.listen_host = address->host;
    options.listen_port = address->port;
  }
  if (!address)
    return invalid("listen", "expected HOST:PORT, got '" + listen.substr(0, 1024) + "'");
  if (auto st = check_name("session", request->session()); !st.ok()) return st;
  options.session = request->session().empty() ? record::default_session_name() : request->session();
  if (request->body_cap_bytes() > (uint64_t{1} << 30))
    return invalid("body_cap_bytes", "at most 1 GiB");
  if (request->body_cap_bytes()) options.body_cap = request->body_cap_bytes();
  constexpr uint32_t kMaxTimeoutMs = 3'600'000;
  struct {
    const char* field;
    uint32_t value;
    std::chrono::milliseconds* target;
  } timeouts[] = {
      {"idle_timeout_ms", request->idle_timeout_ms(), &options.idle_timeout},
      {"upstream_timeout_ms", request->upstream_timeout_ms(), &options.upstream_timeout},
      {"connect_timeout_ms", request->connect_timeout_ms(), &options.connect_timeout}};
  for (auto& t : timeouts) {
    if (t.value > kMaxTimeoutMs) return invalid(t.field, "at most 3600000 (one hour)");
    if (t.value) *t.target = std::chrono::milliseconds(t.value);
  }
  if (request->threads() > 64) return invalid("threads", "at most 64");
  options.threads = request->threads();
  options.insecure_upstream = request->insecure_upstream();
  for (const auto* field : {&request->upstream_ca(), &request->ignore_hosts(),
                            &request->allow_hosts()})
    if (field->size() > 4096) return invalid("upstream_ca/ignore_hosts/allow_hosts", "at most 4096 bytes");
  if (!request->upstream_ca().empty() && request->upstream_ca().front() != '/')
    return invalid("upstream_ca", "must be an absolute path on the daemon's host");
  options.upstream_ca_file = request->upstream_ca();
  options.ignore_hosts = request->ignore_hosts();
  options.allow_hosts = request->allow_hosts();
  if (request->tls() && options.mode == record::Mode::explicit_proxy)
    return invalid("tls", "a TLS listener is for reverse and transparent modes");
  options.listen_tls = request->tls();
  for (auto [field, value] :
       {std::pair{"cert", &request->cert()}, std::pair{"key", &request->key()}}) {
    if (value->size() > 4096) return invalid(field, "at most 4096 bytes");
    if (!value->empty() && value->front() != '/')
      return invalid(field, "must be an absolute path on the daemon's host");
  }
  if (request->cert().empty() != request->key().empty())
    return invalid("cert", "cert and key go together");
  if (!request->cert().empty()) {
    if (request->tls()) return invalid("tls", "a minted certificate (tls) or cert/key, not both");
    if (options.mode == record::Mode::explicit_proxy)
      return invalid("cert", "a TLS listener is for reverse and transparent modes");
    options.cert_file = request->cert();
    options.key_file = request->key();
  }
  std::unique_ptr<replay::server::ServerReplay> server_replay;
  std::unique_ptr<record::Responder> responder;
  if (request->has_server_replay()) {
    ops::ServeRequest serve = from_proto(request->server_replay());
    if (serve.session.empty()) return invalid("server_replay.session", "required");
    if (serve.session == options.session)
      return invalid("server_replay.session", "cannot be the session recorded into");
    // The index is built here, once; the daemon has no terminal for per-request lines.
    auto prepared = ops::prepare_serve(store_, serve, [](std::string_view) {}, /*log_hits=*/false);
    if (!prepared) return to_grpc(prepared.status(), "server_replay");
    server_replay = std::move(prepared->server);
    responder = std::make_unique<replay::server::ProxyResponder>(*server_replay);
    options.responder = responder.get();
  }

  auto created = record::Recorder::create(options, writer_);
  if (!created) return to_grpc(created.status());
  auto running = std::make_shared<Running>();
  running->mode = mode;
  running->session = options.session;
  running->server_replay = std::move(server_replay);
  running->responder = std::move(responder);
  running->recorder = std::move(created.value());
  {
    // Held across start() so that two Starts cannot both pass the count check; binding is quick.
    std::lock_guard lock(mutex_);
    if (stopping_) return {grpc::StatusCode::UNAVAILABLE, "the daemon is stopping"};
    if (recorders_.size() >= kMaxRecorders)
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "at most " + std::to_string(kMaxRecorders) + " recorders run at once"};
    auto bound = running->recorder->start();
    if (!bound) return to_grpc(bound.status(), "listen");
    running->bound_address = *bound;
    running->id = "r" + std::to_string(++next_id_);
    recorders_[running->id] = running;
  }
  response->set_recorder_id(running->id);
  response->set_bound_address(running->bound_address);
  response->set_session(running->session);
  return grpc::Status::OK;
}

grpc::Status RecorderService::Stop(grpc::ServerContext* context, const v1::RecorderRef* request,
                                   v1::RecorderStatus* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::shared_ptr<Running> running;
  {
    std::lock_guard lock(mutex_);
    auto it = recorders_.find(request->recorder_id());
    if (it == recorders_.end())
      return {grpc::StatusCode::NOT_FOUND,
              "recorder_id: no running recorder '" + request->recorder_id().substr(0, 256) + "'"};
    running = it->second;
    recorders_.erase(it);
  }
  running->recorder->stop();  // outside the lock: the grace period may take seconds
  // The promise of Stop: its flows are stored once it returns (Flows.List, replays, diffs).
  writer_.flush();
  describe(*running, false, *response);
  return grpc::Status::OK;
}

grpc::Status RecorderService::Status(grpc::ServerContext* context, const v1::RecorderRef* request,
                                     v1::RecorderStatus* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::lock_guard lock(mutex_);
  auto it = recorders_.find(request->recorder_id());
  if (it == recorders_.end())
    return {grpc::StatusCode::NOT_FOUND,
            "recorder_id: no running recorder '" + request->recorder_id().substr(0, 256) + "'"};
  describe(*it->second, true, *response);
  return grpc::Status::OK;
}

grpc::Status RecorderService::List(grpc::ServerContext* context, const v1::ListRecordersRequest*,
                                   v1::ListRecordersResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::lock_guard lock(mutex_);
  for (const auto& [id, running] : recorders_) describe(*running, true, *response->add_recorders());
  return grpc::Status::OK;
}

grpc::Status RecorderService::WatchFlows(grpc::ServerContext* context,
                                         const v1::WatchFlowsRequest* request,
                                         grpc::ServerWriter<v1::FlowEvent>* writer) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  if (auto st = check_name("session", request->session()); !st.ok()) return st;
  auto watcher = hub_.subscribe(request->session());
  if (!watcher)
    return {grpc::StatusCode::RESOURCE_EXHAUSTED,
            "at most " + std::to_string(kMaxWatchers) +
                " WatchFlows streams at once, or the daemon is stopping"};
  struct Unsubscribe {
    FlowHub& hub;
    std::shared_ptr<Watcher>& w;
    ~Unsubscribe() { hub.unsubscribe(w); }
  } unsubscribe{hub_, watcher};
  // Tells the client the subscription is in place (it may wait for the initial metadata).
  writer->SendInitialMetadata();
  std::deque<v1::FlowSummary> batch;
  for (;;) {
    uint64_t lost = 0;
    bool closed = false;
    {
      std::unique_lock lock(watcher->mutex);
      // Wake now and then to notice a client that went away while nothing was recorded.
      watcher->ready.wait_for(lock, std::chrono::milliseconds(250),
                              [&] { return !watcher->queue.empty() || watcher->closed; });
      batch.swap(watcher->queue);
      lost = watcher->lost;
      closed = watcher->closed;
    }
    if (context->IsCancelled()) return {grpc::StatusCode::CANCELLED, "cancelled by the client"};
    for (auto& summary : batch) {
      v1::FlowEvent event;
      *event.mutable_flow() = std::move(summary);
      event.set_lost(lost);
      if (!writer->Write(event)) return {grpc::StatusCode::CANCELLED, "the client went away"};
    }
    batch.clear();
    if (closed) return {grpc::StatusCode::UNAVAILABLE, "the daemon is stopping"};
  }
}

void RecorderService::stop_all() {
  std::map<std::string, std::shared_ptr<Running>> running;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    running.swap(recorders_);
  }
  for (auto& [id, r] : running) r->recorder->stop();
}

// ---- Flows ----

grpc::Status FlowsService::List(grpc::ServerContext* context, const v1::ListFlowsRequest* request,
                                v1::ListFlowsResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  if (auto st = check_name("session", request->session()); !st.ok()) return st;
  if (auto st = check_name("run", request->run()); !st.ok()) return st;
  uint32_t page_size = request->page_size() ? request->page_size() : kDefaultPageSize;
  if (page_size > kMaxPageSize)
    return invalid("page_size", "must be 1.." + std::to_string(kMaxPageSize) + ", got " +
                                    std::to_string(page_size));
  ops::Selection selection;
  selection.filter = request->filter();
  selection.session = request->session();
  selection.run = request->run();
  selection.after_id = request->page_token();
  selection.reverse = request->reverse();
  selection.limit = page_size + 1;  // one more than a page tells whether another page exists
  if (auto st = ops::validate(selection); !st.ok()) return to_grpc(st, "filter");
  size_t taken = 0;
  bool more = false;
  auto status = ops::select_flows(store_, selection, [&](const flow::Flow& f) {
    if (taken == page_size) {
      more = true;
      return false;
    }
    to_summary(f, *response->add_flows());
    ++taken;
    return !context->IsCancelled();
  });
  if (!status.ok()) return to_grpc(status);
  if (more && taken)
    response->set_next_page_token(response->flows(static_cast<int>(taken) - 1).id());
  return grpc::Status::OK;
}

grpc::Status FlowsService::Get(grpc::ServerContext* context, const v1::GetFlowRequest* request,
                               v1::Flow* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  if (request->id() == 0) return invalid("id", "required");
  auto found = store_.get(request->id(), request->with_bodies());
  if (!found) return to_grpc(found.status());
  to_proto(*found, *response);
  return grpc::Status::OK;
}

grpc::Status FlowsService::Delete(grpc::ServerContext* context,
                                  const v1::DeleteFlowsRequest* request,
                                  v1::DeleteFlowsResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  if (request->ids().empty()) return invalid("ids", "at least one id is required");
  if (static_cast<size_t>(request->ids().size()) > kMaxDeleteIds)
    return invalid("ids", "at most " + std::to_string(kMaxDeleteIds) + " per call");
  std::vector<uint64_t> ids(request->ids().begin(), request->ids().end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  // All or nothing: an unknown id means the caller is confused; delete nothing.
  for (auto id : ids) {
    auto found = store_.get(id, false);
    if (!found) return to_grpc(found.status(), "ids");
  }
  if (auto st = store_.remove(ids); !st.ok()) return to_grpc(st);
  response->set_deleted(ids.size());
  return grpc::Status::OK;
}

grpc::Status FlowsService::ListSessions(grpc::ServerContext* context,
                                        const v1::ListSessionsRequest*,
                                        v1::ListSessionsResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  auto sessions = store_.sessions();
  if (!sessions) return to_grpc(sessions.status());
  for (const auto& s : *sessions) {
    auto& out = *response->add_sessions();
    out.set_name(s.name);
    out.set_flow_count(s.flow_count);
    out.set_first_ns(s.first_ns);
    out.set_last_ns(s.last_ns);
  }
  return grpc::Status::OK;
}

grpc::Status FlowsService::ListRuns(grpc::ServerContext* context,
                                    const v1::ListRunsRequest* request,
                                    v1::ListRunsResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  if (auto st = check_name("session", request->session()); !st.ok()) return st;
  auto runs = replay::list_runs(store_, request->session());
  if (!runs) return to_grpc(runs.status());
  for (const auto& r : *runs) {
    auto& out = *response->add_runs();
    out.set_run_id(r.run_id);
    out.set_session(r.session);
    out.set_target(r.target);
    out.set_started_ns(r.started_ns);
    out.set_ended_ns(r.ended_ns);
    out.set_interrupted(r.interrupted);
    out.set_total(r.total);
    out.set_sent(r.sent);
    out.set_completed(r.completed);
    out.set_status_mismatches(r.mismatches);
    out.set_transport_errors(r.transport_errors);
    out.set_summary_json(replay::run_summary_json(r));
  }
  return grpc::Status::OK;
}

grpc::Status FlowsService::Export(grpc::ServerContext* context,
                                  const v1::ExportFlowsRequest* request,
                                  grpc::ServerWriter<v1::ExportChunk>* writer) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  if (auto st = check_name("session", request->session()); !st.ok()) return st;
  if (auto st = check_name("run", request->run()); !st.ok()) return st;
  if (static_cast<size_t>(request->ids_size()) > kMaxDeleteIds)
    return invalid("ids", "at most " + std::to_string(kMaxDeleteIds));
  auto format = ops::parse_export_format(request->format());
  if (!format) return to_grpc(format.status(), "format");
  ops::Selection selection;
  selection.filter = request->filter();
  selection.session = request->session();
  selection.run = request->run();
  selection.ids.assign(request->ids().begin(), request->ids().end());
  if (auto st = ops::validate(selection); !st.ok()) return to_grpc(st, "filter");
  auto text = ops::export_flows(store_, selection, *format);
  if (!text) return to_grpc(text.status());
  constexpr size_t kChunk = 1u << 20;
  v1::ExportChunk chunk;
  for (size_t at = 0; at < text->size() || at == 0; at += kChunk) {
    chunk.set_data(text->substr(at, kChunk));
    if (context->IsCancelled() || !writer->Write(chunk))
      return {grpc::StatusCode::CANCELLED, "the caller went away"};
    if (text->empty()) break;
  }
  return grpc::Status::OK;
}

grpc::Status FlowsService::Import(grpc::ServerContext* context,
                                  grpc::ServerReader<v1::ImportChunk>* reader,
                                  v1::ImportFlowsResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  ops::ImportRequest request;
  std::string bytes;
  v1::ImportChunk chunk;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      if (auto st = check_name("session", chunk.session()); !st.ok()) return st;
      if (auto st = check_name("name", chunk.name()); !st.ok()) return st;
      request.session = chunk.session();
      request.skip_bad = chunk.skip_bad();
      request.path = chunk.name().empty() ? "upload" : chunk.name();
      first = false;
    }
    if (bytes.size() + chunk.data().size() > ops::kMaxImportBytes)
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, "an import is at most 1 GiB"};
    bytes += chunk.data();
  }
  if (context->IsCancelled()) return {grpc::StatusCode::CANCELLED, "the caller went away"};
  if (first) return invalid("data", "an import needs at least one chunk");
  auto report = ops::import_bytes(store_, request, bytes);
  if (!report) return to_grpc(report.status());
  response->set_format(report->format);
  response->set_session(report->session);
  response->set_imported(report->imported);
  for (const auto& s : report->skipped) response->add_skipped(s);
  for (const auto& [kind, n] : report->unsupported) (*response->mutable_unsupported())[kind] = n;
  return grpc::Status::OK;
}

}  // namespace retake::control
