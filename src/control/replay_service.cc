// The Replay service: client replays streamed to their caller, server replays kept by id.
// Requests are checked and translated by src/ops/replay_run (the code `retake replay` and
// `retake serve` run); this file only maps fields, runs, and streams.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>

#include "control/services.h"
#include "replay/client/run_store.h"

namespace retake::control {

namespace {

grpc::Status invalid(const std::string& field, const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, field + ": " + message};
}

std::string excerpt(const std::string& text) {
  return text.size() > 256 ? text.substr(0, 256) + "..." : text;
}

void progress_to_proto(const replay::Progress& p, v1::ReplayProgress& out) {
  out.set_total(p.total);
  out.set_sent(p.sent);
  out.set_completed(p.completed);
  out.set_errors(p.errors);
  out.set_mismatches(p.mismatches);
  out.set_elapsed_ns(p.elapsed_ns);
}

void result_to_proto(const replay::FlowResult& r, v1::ReplayFlowResult& out) {
  out.set_origin(r.origin);
  out.set_loop(r.loop);
  out.set_recorded_status(r.recorded_status);
  out.set_status(r.status);
  out.set_status_match(r.status_match);
  if (r.error) {
    out.set_error_kind(flow::error_kind_name(r.error->kind));
    out.set_error_message(r.error->message);
  }
  out.set_duration_ns(r.duration_ns);
  out.set_request_line(r.request_line);
}

}  // namespace

ops::ReplayRequest from_proto(const v1::StartClientReplayRequest& in) {
  ops::ReplayRequest r;
  r.session = in.session();
  r.flow.assign(in.flow().begin(), in.flow().end());
  r.filter = in.filter();
  r.target = in.target();
  r.map_host.assign(in.map_host().begin(), in.map_host().end());
  if (!in.pace().empty()) r.pace = in.pace();
  if (in.speed() != 0) r.speed = in.speed();
  r.rate = in.rate();
  if (in.concurrency()) r.concurrency = in.concurrency();
  if (in.loop()) r.loop = in.loop();
  r.shift_time = in.shift_time();
  r.at = in.at();
  r.no_shift = in.no_shift();
  r.jwt_secret = in.jwt_secret();
  if (!in.bind().empty()) r.bind = in.bind();
  r.bind_rule.assign(in.bind_rule().begin(), in.bind_rule().end());
  // Only the text travels: a name without text must not make the daemon open a file of its own.
  r.rules_text = in.rules_text();
  if (!r.rules_text.empty()) r.rules = in.rules_name();
  r.insecure = in.insecure();
  if (in.timeout_ms()) r.timeout_ms = in.timeout_ms();
  r.threads = in.threads();
  r.run_id = in.run_id();
  return r;
}

void to_proto(const ops::ReplayRequest& r, v1::StartClientReplayRequest& out) {
  out.set_session(r.session);
  for (auto id : r.flow) out.add_flow(id);
  out.set_filter(r.filter);
  out.set_target(r.target);
  for (const auto& m : r.map_host) out.add_map_host(m);
  out.set_pace(r.pace);
  out.set_speed(r.speed);
  out.set_rate(r.rate);
  out.set_concurrency(r.concurrency);
  out.set_loop(r.loop);
  out.set_shift_time(r.shift_time);
  out.set_at(r.at);
  out.set_no_shift(r.no_shift);
  out.set_jwt_secret(r.jwt_secret);
  out.set_bind(r.bind);
  for (const auto& b : r.bind_rule) out.add_bind_rule(b);
  out.set_rules_text(r.rules_text);
  out.set_rules_name(r.rules);
  out.set_insecure(r.insecure);
  out.set_timeout_ms(static_cast<uint32_t>(std::clamp<int64_t>(r.timeout_ms, 0, UINT32_MAX)));
  out.set_threads(r.threads);
  out.set_run_id(r.run_id);
}

ops::ServeRequest from_proto(const v1::StartServerReplayRequest& in) {
  ops::ServeRequest r;
  r.session = in.session();
  r.listen = in.listen().empty() ? "127.0.0.1:0" : in.listen();
  r.filter = in.filter();
  r.ignore_param.assign(in.ignore_param().begin(), in.ignore_param().end());
  r.ignore_body = in.ignore_body();
  r.ignore_host = in.ignore_host();
  r.ignore_port = in.ignore_port();
  r.ignore_field.assign(in.ignore_field().begin(), in.ignore_field().end());
  r.use_header.assign(in.use_header().begin(), in.use_header().end());
  r.match_rules = in.match_rules();
  if (!in.on_exhausted().empty()) r.on_exhausted = in.on_exhausted();
  if (!in.on_miss().empty()) r.on_miss = in.on_miss();
  if (!in.latency().empty()) r.latency = in.latency();
  r.no_refresh = in.no_refresh();
  r.shift_body_time = in.shift_body_time();
  r.jwt_secret = in.jwt_secret();
  r.no_match_header = in.no_match_header();
  r.origin = in.origin();
  r.cert = in.cert();
  r.key = in.key();
  r.tls = in.tls();
  r.threads = in.threads();
  return r;
}

void to_proto(const ops::ServeRequest& r, v1::StartServerReplayRequest& out) {
  out.set_session(r.session);
  out.set_listen(r.listen);
  out.set_filter(r.filter);
  for (const auto& v : r.ignore_param) out.add_ignore_param(v);
  out.set_ignore_body(r.ignore_body);
  out.set_ignore_host(r.ignore_host);
  out.set_ignore_port(r.ignore_port);
  for (const auto& v : r.ignore_field) out.add_ignore_field(v);
  for (const auto& v : r.use_header) out.add_use_header(v);
  out.set_match_rules(r.match_rules);
  out.set_on_exhausted(r.on_exhausted);
  out.set_on_miss(r.on_miss);
  out.set_latency(r.latency);
  out.set_no_refresh(r.no_refresh);
  out.set_shift_body_time(r.shift_body_time);
  out.set_jwt_secret(r.jwt_secret);
  out.set_no_match_header(r.no_match_header);
  out.set_origin(r.origin);
  out.set_cert(r.cert);
  out.set_key(r.key);
  out.set_tls(r.tls);
  out.set_threads(r.threads);
}

void ReplayService::describe(const std::string& run_id, const RunningClient& r,
                             v1::ClientReplayStatus& out) {
  out.set_run_id(run_id);
  out.set_session(r.session);
  progress_to_proto(r.replay->progress(), *out.mutable_progress());
  out.set_cancelling(r.cancelling);
}

void ReplayService::describe(const RunningServer& r, bool running, bool with_lists,
                             v1::ServerReplayStatus& out) {
  out.set_server_id(r.id);
  out.set_session(r.session);
  out.set_bound_address(r.bound_address);
  out.set_scheme(r.scheme);
  out.set_flows_loaded(r.loaded);
  out.set_flows_servable(r.server->matcher().flows().size());
  out.set_running(running);
  auto report = r.server->report();
  out.set_requests(report.requests);
  out.set_hits(report.hits);
  out.set_misses(report.misses);
  out.set_forwarded(report.forwarded);
  out.set_bad_requests(report.bad_requests);
  if (!with_lists) return;
  for (auto id : report.served_flows) out.add_served_flows(id);
  for (auto id : report.unserved_flows) out.add_unserved_flows(id);
  for (const auto& m : report.missed) {
    auto& miss = *out.add_missed();
    miss.set_request_line(m.request_line);
    miss.set_reason(replay::server::reason_name(m.explanation.reason));
    miss.set_explanation(m.explanation.text);
    miss.set_explanation_json(m.explanation.to_json());
  }
  out.set_report_text(report.to_text());
}

grpc::Status ReplayService::StartClientReplay(grpc::ServerContext* context,
                                              const v1::StartClientReplayRequest* request,
                                              grpc::ServerWriter<v1::ClientReplayEvent>* writer) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  uint32_t interval_ms = request->progress_interval_ms() ? request->progress_interval_ms() : 250;
  if (interval_ms < 50 || interval_ms > 10'000)
    return invalid("progress_interval_ms", "must be 50..10000");
  auto wanted = from_proto(*request);
  // Checked before anything is loaded, so a bad field is reported as such, not as a store error.
  if (auto st = ops::validate(wanted); !st.ok()) return to_grpc(st);
  if (!wanted.run_id.empty()) {
    auto stored = store_.get_meta(std::string(replay::kRunMetaPrefix) + wanted.run_id);
    if (stored && stored->has_value())
      return {grpc::StatusCode::ALREADY_EXISTS,
              "run_id: a run '" + excerpt(wanted.run_id) + "' is already stored"};
  }
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return {grpc::StatusCode::UNAVAILABLE, "the daemon is stopping"};
    if (clients_.size() >= kMaxClientReplays)
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "at most " + std::to_string(kMaxClientReplays) + " client replays run at once"};
  }
  auto prepared = ops::prepare_replay(store_, wanted, &writer_);
  if (!prepared) return to_grpc(prepared.status());
  auto running = std::make_shared<RunningClient>();
  running->session = wanted.session;
  running->replay = std::move(*prepared);
  auto& replay = *running->replay;
  const std::string run_id = replay.run_id();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return {grpc::StatusCode::UNAVAILABLE, "the daemon is stopping"};
    if (clients_.size() >= kMaxClientReplays)
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "at most " + std::to_string(kMaxClientReplays) + " client replays run at once"};
    if (clients_.count(run_id))
      return {grpc::StatusCode::ALREADY_EXISTS,
              "run_id: a run '" + excerpt(run_id) + "' is running"};
    if (auto st = replay.start(); !st.ok()) return to_grpc(st);
    clients_[run_id] = running;
  }
  struct Forget {
    ReplayService& service;
    const std::string& id;
    ~Forget() {
      std::lock_guard lock(service.mutex_);
      service.clients_.erase(id);
    }
  } forget{*this, run_id};

  bool client_gone = false;
  auto stop_run = [&] {
    running->cancelling = true;
    replay.cancel();
  };
  {
    v1::ClientReplayEvent event;
    event.mutable_started()->set_run_id(run_id);
    event.mutable_started()->set_total(replay.progress().total);
    client_gone = !writer->Write(event);
  }
  if (client_gone) stop_run();
  // Progress every interval; the run is polled in short slices so that a client that cancels
  // the call stops the run promptly.
  auto next_progress = std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms);
  while (!replay.finished()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!client_gone && context->IsCancelled()) {
      client_gone = true;
      stop_run();
    }
    if (client_gone || std::chrono::steady_clock::now() < next_progress) continue;
    next_progress += std::chrono::milliseconds(interval_ms);
    v1::ClientReplayEvent event;
    progress_to_proto(replay.progress(), *event.mutable_progress());
    if (!writer->Write(event)) {
      client_gone = true;
      stop_run();
    }
  }
  auto summary = replay.wait();
  // The stream's promise: once `finished` arrives, every replayed flow can be read back.
  writer_.flush();
  auto saved = replay::save_run(store_, summary);
  if (client_gone) return {grpc::StatusCode::CANCELLED, "cancelled by the client; run stopped"};
  {
    v1::ClientReplayEvent event;
    progress_to_proto(replay.progress(), *event.mutable_progress());
    writer->Write(event);
  }
  const auto& results = replay.results();
  for (size_t i = 0; i < results.size(); i += kMaxResultsPerEvent) {
    v1::ClientReplayEvent event;
    auto& batch = *event.mutable_results();
    for (size_t j = i; j < std::min(results.size(), i + kMaxResultsPerEvent); ++j)
      result_to_proto(results[j], *batch.add_results());
    if (!writer->Write(event)) return {grpc::StatusCode::CANCELLED, "the client went away"};
  }
  v1::ClientReplayEvent event;
  auto& f = *event.mutable_finished();
  f.set_run_id(summary.run_id);
  f.set_session(summary.session);
  f.set_interrupted(summary.interrupted);
  f.set_total(summary.total);
  f.set_sent(summary.sent);
  f.set_completed(summary.completed);
  f.set_mismatches(summary.mismatches);
  f.set_transport_errors(summary.transport_errors);
  f.set_sink_dropped(summary.sink_dropped);
  f.set_p50_ns(summary.p50_ns);
  f.set_p95_ns(summary.p95_ns);
  f.set_p99_ns(summary.p99_ns);
  f.set_bindings_applied(summary.bindings_applied);
  f.set_bindings_unresolved(summary.bindings_unresolved);
  f.set_results_dropped(replay.results_dropped());
  std::string text = ops::replay_report_text(replay, summary);
  if (!saved.ok())
    text += "  warning: could not store the run's metadata: " + saved.to_string() + "\n";
  f.set_report_text(std::move(text));
  f.set_report_json(ops::replay_report_json(replay, summary));
  f.set_exit_code(replay::exit_code(summary, request->fail_on_mismatch()));
  writer->Write(event);
  return grpc::Status::OK;
}

bool ReplayService::replaying(const std::string& run) {
  std::lock_guard lock(mutex_);
  return clients_.count(run) != 0;
}

grpc::Status ReplayService::CancelClientReplay(grpc::ServerContext* context,
                                               const v1::ClientReplayRef* request,
                                               v1::ClientReplayStatus* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::shared_ptr<RunningClient> running;
  {
    std::lock_guard lock(mutex_);
    auto it = clients_.find(request->run_id());
    if (it == clients_.end())
      return {grpc::StatusCode::NOT_FOUND,
              "run_id: no running client replay '" + excerpt(request->run_id()) + "'"};
    running = it->second;
  }
  running->cancelling = true;
  running->replay->cancel();  // returns at once; the stream's thread drains and reports
  describe(request->run_id(), *running, *response);
  return grpc::Status::OK;
}

grpc::Status ReplayService::GetClientReplay(grpc::ServerContext* context,
                                            const v1::ClientReplayRef* request,
                                            v1::ClientReplayStatus* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::lock_guard lock(mutex_);
  auto it = clients_.find(request->run_id());
  if (it == clients_.end())
    return {grpc::StatusCode::NOT_FOUND,
            "run_id: no running client replay '" + excerpt(request->run_id()) + "'"};
  describe(it->first, *it->second, *response);
  return grpc::Status::OK;
}

grpc::Status ReplayService::ListClientReplays(grpc::ServerContext* context,
                                              const v1::ListClientReplaysRequest*,
                                              v1::ListClientReplaysResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::lock_guard lock(mutex_);
  for (const auto& [id, running] : clients_) describe(id, *running, *response->add_replays());
  return grpc::Status::OK;
}

grpc::Status ReplayService::StartServerReplay(grpc::ServerContext* context,
                                              const v1::StartServerReplayRequest* in,
                                              v1::ServerReplayStatus* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  ops::ServeRequest r = from_proto(*in);
  // Relative paths would depend on the daemon's working directory, which the caller cannot see.
  if (!r.cert.empty() && r.cert.front() != '/') return invalid("cert", "must be an absolute path");
  if (!r.key.empty() && r.key.front() != '/') return invalid("key", "must be an absolute path");
  if (auto st = ops::serve_options(r); !st) return to_grpc(st.status());
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return {grpc::StatusCode::UNAVAILABLE, "the daemon is stopping"};
    if (servers_.size() >= kMaxServerReplays)
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "at most " + std::to_string(kMaxServerReplays) + " server replays run at once"};
  }
  // The daemon has no terminal: per-request lines are dropped; misses stay in the report.
  auto prepared = ops::prepare_serve(store_, r, [](std::string_view) {}, /*log_hits=*/false);
  if (!prepared) return to_grpc(prepared.status());
  auto running = std::make_shared<RunningServer>();
  running->session = r.session;
  running->scheme = r.cert.empty() && !r.tls ? "http" : "https";
  running->loaded = prepared->loaded;
  running->server = std::move(prepared->server);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return {grpc::StatusCode::UNAVAILABLE, "the daemon is stopping"};
    if (servers_.size() >= kMaxServerReplays)
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "at most " + std::to_string(kMaxServerReplays) + " server replays run at once"};
    auto bound = running->server->start();
    if (!bound) return to_grpc(bound.status(), "listen");
    running->bound_address = *bound;
    running->id = "s" + std::to_string(++next_server_id_);
    servers_[running->id] = running;
  }
  describe(*running, true, false, *response);
  return grpc::Status::OK;
}

grpc::Status ReplayService::StopServerReplay(grpc::ServerContext* context,
                                             const v1::ServerReplayRef* request,
                                             v1::ServerReplayStatus* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::shared_ptr<RunningServer> running;
  {
    std::lock_guard lock(mutex_);
    auto it = servers_.find(request->server_id());
    if (it == servers_.end())
      return {grpc::StatusCode::NOT_FOUND,
              "server_id: no running server replay '" + excerpt(request->server_id()) + "'"};
    running = it->second;
    servers_.erase(it);
  }
  running->server->stop();  // outside the lock: draining may take seconds
  describe(*running, false, true, *response);
  return grpc::Status::OK;
}

grpc::Status ReplayService::GetServerReplay(grpc::ServerContext* context,
                                            const v1::ServerReplayRef* request,
                                            v1::ServerReplayStatus* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::shared_ptr<RunningServer> running;
  {
    std::lock_guard lock(mutex_);
    auto it = servers_.find(request->server_id());
    if (it == servers_.end())
      return {grpc::StatusCode::NOT_FOUND,
              "server_id: no running server replay '" + excerpt(request->server_id()) + "'"};
    running = it->second;
  }
  describe(*running, true, true, *response);
  return grpc::Status::OK;
}

grpc::Status ReplayService::ListServerReplays(grpc::ServerContext* context,
                                              const v1::ListServerReplaysRequest*,
                                              v1::ListServerReplaysResponse* response) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::lock_guard lock(mutex_);
  for (const auto& [id, running] : servers_)
    describe(*running, true, false, *response->add_servers());
  return grpc::Status::OK;
}

void ReplayService::stop_all() {
  std::map<std::string, std::shared_ptr<RunningServer>> servers;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [id, running] : clients_) {
      running->cancelling = true;
      running->replay->cancel();
    }
    servers.swap(servers_);
  }
  for (auto& [id, running] : servers) running->server->stop();
  // The streams finish their runs (2 s grace for requests in flight) and store what completed
  // before the daemon stops its store writer; bounded, so a stuck stream cannot hold shutdown.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mutex_);
      if (clients_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace retake::control
