// RemoteFlows over gRPC: translate the call, the answer and the status; nothing else.
#include "control/client.h"
#include "control/module.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "control/services.h"
#include "retake/v1/diff.grpc.pb.h"
#include "retake/v1/flows.grpc.pb.h"
#include "retake/v1/recorder.grpc.pb.h"
#include "retake/v1/replay.grpc.pb.h"

namespace retake::control {

namespace {

Status from_grpc(const grpc::Status& status) {
  using grpc::StatusCode;
  Errc code = Errc::internal;
  switch (status.error_code()) {
    case StatusCode::OK:
      return {};
    case StatusCode::INVALID_ARGUMENT:
    case StatusCode::OUT_OF_RANGE:
      code = Errc::invalid_argument;
      break;
    case StatusCode::NOT_FOUND:
      code = Errc::not_found;
      break;
    case StatusCode::ALREADY_EXISTS:
      code = Errc::already_exists;
      break;
    case StatusCode::FAILED_PRECONDITION:
    case StatusCode::PERMISSION_DENIED:
    case StatusCode::UNAUTHENTICATED:
      code = Errc::failed_precondition;
      break;
    case StatusCode::DATA_LOSS:
      code = Errc::corruption;
      break;
    case StatusCode::UNAVAILABLE:
      code = Errc::unavailable;
      break;
    case StatusCode::DEADLINE_EXCEEDED:
      code = Errc::timeout;
      break;
    case StatusCode::RESOURCE_EXHAUSTED:
      code = Errc::resource_exhausted;
      break;
    case StatusCode::CANCELLED:
      code = Errc::cancelled;
      break;
    default:
      break;
  }
  std::string message = status.error_message();
  if (status.error_code() == StatusCode::UNAUTHENTICATED)
    message =
        "the daemon refused the call (" + message + "); give its token with --remote-token-file";
  else if (status.error_code() == StatusCode::UNAVAILABLE &&
           message.rfind("failed to connect", 0) == 0)
    message =
        "no daemon answers there; is `retake daemon --control ADDRESS` running? (" + message + ")";
  return {code, "remote: " + message};
}

flow::Headers headers_from(const google::protobuf::RepeatedPtrField<v1::Header>& in) {
  flow::Headers out;
  for (const auto& h : in) out.add(h.name(), h.value());
  return out;
}

flow::Body body_from(const v1::Body& in) {
  return {in.data(), in.size(), in.truncated()};
}

flow::TlsInfo tls_from(const v1::TlsInfo& in) {
  return {in.present(), in.sni(),          in.alpn(),       in.version(),
          in.cipher(),  in.peer_subject(), in.peer_issuer()};
}

flow::FlowKind kind_from(const std::string& name) {
  if (name == "tunnel") return flow::FlowKind::tunnel;
  if (name == "tls_failed") return flow::FlowKind::tls_failed;
  return flow::FlowKind::http;
}

flow::Error error_from(const std::string& kind, const std::string& message) {
  return {flow::error_kind_from_name(kind).value_or(flow::ErrorKind::internal), message};
}

flow::Flow from_proto(const v1::Flow& in) {
  flow::Flow f;
  f.id = in.id();
  f.session = in.session();
  f.run = in.run();
  f.origin = in.origin();
  f.kind = kind_from(in.kind());
  f.mode = in.mode();
  f.client_address = in.client_address();
  f.upstream_address = in.upstream_address();
  const auto& rq = in.request();
  f.request = {rq.method(),          rq.scheme(),
               rq.authority(),       rq.path(),
               rq.http_version(),    headers_from(rq.headers()),
               body_from(rq.body()), headers_from(rq.trailers())};
  if (in.has_response()) {
    const auto& rs = in.response();
    f.response = flow::Response{rs.status(),          rs.reason(),
                                rs.http_version(),    headers_from(rs.headers()),
                                body_from(rs.body()), headers_from(rs.trailers())};
  }
  if (in.has_error()) f.error = error_from(in.error().kind(), in.error().message());
  const auto& t = in.timing();
  f.timing = {t.client_connected_ns(),   t.request_started_ns(),  t.request_ended_ns(),
              t.upstream_connected_ns(), t.response_started_ns(), t.response_ended_ns()};
  f.client_tls = tls_from(in.client_tls());
  f.upstream_tls = tls_from(in.upstream_tls());
  if (in.has_websocket()) {
    auto& ws = f.websocket.emplace();
    for (const auto& m : in.websocket().messages())
      ws.messages.push_back({m.from_client(), static_cast<uint8_t>(m.opcode()), m.payload(),
                             m.timestamp_ns(), m.truncated(), m.compressed()});
    ws.close_code = static_cast<uint16_t>(in.websocket().close_code());
    ws.close_reason = in.websocket().close_reason();
    ws.closed_by_client = in.websocket().closed_by_client();
  }
  f.bytes_from_client = in.bytes_from_client();
  f.bytes_from_upstream = in.bytes_from_upstream();
  f.marked = in.marked();
  f.comment = in.comment();
  f.tags.assign(in.tags().begin(), in.tags().end());
  return f;
}

// A flow holding what a summary says, so list printers work unchanged.
flow::Flow from_summary(const v1::FlowSummary& in) {
  flow::Flow f;
  f.id = in.id();
  f.session = in.session();
  f.run = in.run();
  f.request.method = in.method();
  f.request.scheme = in.scheme();
  f.request.authority = in.authority();
  f.request.path = in.path();
  f.timing.request_started = in.time_ns();
  if (in.duration_ns()) f.timing.response_ended = in.time_ns() + in.duration_ns();
  if (in.status()) {
    f.response.emplace();
    f.response->status = in.status();
    f.response->body.size = in.response_size();
  }
  if (!in.error_kind().empty()) f.error = error_from(in.error_kind(), in.error_message());
  return f;
}

// A unary call's context: the deadline and the token of `options`.
std::unique_ptr<grpc::ClientContext> call_context(const RemoteOptions& options) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(options.timeout_seconds));
  if (!options.token.empty()) context->AddMetadata("authorization", "Bearer " + options.token);
  return context;
}

class GrpcRemoteFlows final : public RemoteFlows {
 public:
  explicit GrpcRemoteFlows(const RemoteOptions& options)
      : options_(options),
        stub_(v1::Flows::NewStub(
            grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials()))) {}

  Status select(const ops::Selection& selection,
                const std::function<bool(const flow::Flow&)>& visit) override {
    v1::ListFlowsRequest request;
    request.set_filter(selection.filter);
    request.set_session(selection.session);
    request.set_run(selection.run);
    request.set_reverse(selection.reverse);
    request.set_page_token(selection.after_id);
    size_t seen = 0;
    for (;;) {
      size_t want = 1000;
      if (selection.limit) want = std::min(want, selection.limit - seen);
      request.set_page_size(static_cast<uint32_t>(want));
      v1::ListFlowsResponse page;
      auto context = make_context();
      if (auto st = stub_->List(context.get(), request, &page); !st.ok()) return from_grpc(st);
      for (const auto& summary : page.flows()) {
        ++seen;
        if (!visit(from_summary(summary))) return {};
      }
      if (page.next_page_token() == 0 || (selection.limit && seen >= selection.limit)) return {};
      request.set_page_token(page.next_page_token());
    }
  }

  Result<flow::Flow> get(uint64_t id, bool with_bodies) override {
    v1::GetFlowRequest request;
    request.set_id(id);
    request.set_with_bodies(with_bodies);
    v1::Flow response;
    auto context = make_context();
    if (auto st = stub_->Get(context.get(), request, &response); !st.ok()) return from_grpc(st);
    return from_proto(response);
  }

  Status remove(const std::vector<uint64_t>& ids) override {
    v1::DeleteFlowsRequest request;
    for (auto id : ids) request.add_ids(id);
    v1::DeleteFlowsResponse response;
    auto context = make_context();
    return from_grpc(stub_->Delete(context.get(), request, &response));
  }

  Result<std::vector<store::SessionInfo>> sessions() override {
    v1::ListSessionsResponse response;
    auto context = make_context();
    if (auto st = stub_->ListSessions(context.get(), v1::ListSessionsRequest(), &response);
        !st.ok())
      return from_grpc(st);
    std::vector<store::SessionInfo> out;
    for (const auto& s : response.sessions())
      out.push_back({s.name(), s.flow_count(), s.first_ns(), s.last_ns()});
    return out;
  }

  Result<std::string> export_flows(const ops::Selection& selection,
                                   ops::ExportFormat format) override {
    v1::ExportFlowsRequest request;
    request.set_session(selection.session);
    request.set_run(selection.run);
    request.set_filter(selection.filter);
    for (auto id : selection.ids) request.add_ids(id);
    request.set_format(ops::export_format_name(format));
    auto context = make_context();
    auto reader = stub_->Export(context.get(), request);
    std::string out;
    v1::ExportChunk chunk;
    while (reader->Read(&chunk)) out += chunk.data();
    if (auto st = reader->Finish(); !st.ok()) return from_grpc(st);
    return out;
  }

  Result<ops::ImportReport> import_flows(const ops::ImportRequest& request,
                                         std::string_view bytes) override {
    auto context = make_context();
    v1::ImportFlowsResponse response;
    auto writer = stub_->Import(context.get(), &response);
    constexpr size_t kChunk = 1u << 20;
    v1::ImportChunk chunk;
    chunk.set_session(request.session);
    chunk.set_skip_bad(request.skip_bad);
    chunk.set_name(request.path);
    for (size_t at = 0; at < bytes.size() || at == 0; at += kChunk) {
      chunk.set_data(std::string(bytes.substr(at, kChunk)));
      if (!writer->Write(chunk)) break;  // the daemon ended the call: Finish says why
      chunk.clear_session();
      chunk.clear_name();
      if (bytes.empty()) break;
    }
    writer->WritesDone();
    if (auto st = writer->Finish(); !st.ok()) return from_grpc(st);
    ops::ImportReport report;
    report.format = response.format();
    report.session = response.session();
    report.imported = response.imported();
    report.skipped.assign(response.skipped().begin(), response.skipped().end());
    for (const auto& [kind, n] : response.unsupported()) report.unsupported[kind] = n;
    return report;
  }

  Result<std::vector<replay::RunSummary>> runs(const std::string& session) override {
    v1::ListRunsRequest request;
    request.set_session(session);
    v1::ListRunsResponse response;
    auto context = make_context();
    if (auto st = stub_->ListRuns(context.get(), request, &response); !st.ok())
      return from_grpc(st);
    std::vector<replay::RunSummary> out;
    for (const auto& r : response.runs()) {
      // The JSON carries every field; the typed ones are for clients in other languages.
      auto parsed = replay::parse_run_summary_json(r.summary_json());
      if (!parsed) return Status(Errc::corruption, "run " + r.run_id() + ": " +
                                                       parsed.status().message());
      out.push_back(std::move(*parsed));
    }
    return out;
  }

 private:
  std::unique_ptr<grpc::ClientContext> make_context() const { return call_context(options_); }

  RemoteOptions options_;
  std::unique_ptr<v1::Flows::Stub> stub_;
};

class GrpcRemoteReplay final : public RemoteReplay {
 public:
  explicit GrpcRemoteReplay(const RemoteOptions& options)
      : options_(options),
        stub_(v1::Replay::NewStub(
            grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials()))) {}

  Result<RemoteReplayOutcome> run(
      const ops::ReplayRequest& request, bool fail_on_mismatch,
      const std::function<bool(const replay::Progress&)>& on_progress) override {
    ops::ReplayRequest wanted = request;
    if (wanted.rules_text.empty() && !wanted.rules.empty()) {
      auto text = read_rules(wanted.rules);
      if (!text) return text.status();
      wanted.rules_text = std::move(*text);
    }
    v1::StartClientReplayRequest in;
    to_proto(wanted, in);
    in.set_fail_on_mismatch(fail_on_mismatch);

    grpc::ClientContext context;
    if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
    // No deadline on the whole call (a run may take hours) but one on silence: the daemon
    // streams progress every 250 ms, so a long gap means it or the network is gone.
    std::mutex mutex;
    std::condition_variable wake;
    auto last_event = std::chrono::steady_clock::now();
    bool done = false, timed_out = false;
    std::thread watchdog([&] {
      std::unique_lock lock(mutex);
      while (!done) {
        wake.wait_for(lock, std::chrono::milliseconds(100));
        if (!done && std::chrono::steady_clock::now() - last_event >
                         std::chrono::seconds(options_.timeout_seconds)) {
          timed_out = true;
          context.TryCancel();
          return;
        }
      }
    });
    struct Join {
      std::thread& t;
      std::mutex& m;
      std::condition_variable& cv;
      bool& done;
      ~Join() {
        {
          std::lock_guard lock(m);
          done = true;
        }
        cv.notify_all();
        t.join();
      }
    } join{watchdog, mutex, wake, done};

    auto reader = stub_->StartClientReplay(&context, in);
    v1::ClientReplayEvent event;
    RemoteReplayOutcome outcome;
    bool finished = false, cancel_asked = false;
    while (reader->Read(&event)) {
      {
        std::lock_guard lock(mutex);
        last_event = std::chrono::steady_clock::now();
      }
      if (event.has_started()) {
        outcome.run_id = event.started().run_id();
      } else if (event.has_progress()) {
        const auto& p = event.progress();
        replay::Progress progress{p.total(),  p.sent(),       p.completed(),
                                  p.errors(), p.mismatches(), p.elapsed_ns()};
        if (on_progress && !on_progress(progress) && !cancel_asked && !outcome.run_id.empty()) {
          cancel_asked = true;
          if (auto st = cancel(outcome.run_id); !st.ok() && st.code() != Errc::not_found)
            context.TryCancel();  // the explicit stop failed: dropping the call stops it too
        }
      } else if (event.has_finished()) {
        const auto& f = event.finished();
        finished = true;
        outcome.run_id = f.run_id();
        outcome.interrupted = f.interrupted();
        outcome.report_text = f.report_text();
        outcome.report_json = f.report_json();
        outcome.exit_code = f.exit_code();
      }
    }
    auto status = reader->Finish();
    bool silent;
    {
      std::lock_guard lock(mutex);
      silent = timed_out;
    }
    if (silent)
      return Status(Errc::timeout, "remote: the daemon sent nothing for " +
                                       std::to_string(options_.timeout_seconds) + " s");
    if (!status.ok()) return from_grpc(status);
    if (!finished)
      return Status(Errc::internal, "remote: the replay stream ended without a result");
    return outcome;
  }

 private:
  static Result<std::string> read_rules(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) return Status(Errc::not_found, "rules: cannot read '" + path + "'");
    std::string text(ops::kMaxRulesTextBytes + 1, '\0');
    file.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(file.gcount()));
    if (text.size() > ops::kMaxRulesTextBytes)
      return Status(Errc::invalid_argument, "rules: '" + path + "' is larger than 4 MiB");
    return text;
  }

  Result<RemoteServer> start_server(const ops::ServeRequest& request) override {
    v1::StartServerReplayRequest in;
    to_proto(request, in);
    v1::ServerReplayStatus status;
    auto context = make_context();
    if (auto st = stub_->StartServerReplay(context.get(), in, &status); !st.ok())
      return from_grpc(st);
    return RemoteServer{status.server_id(), status.bound_address(), status.scheme(),
                        status.flows_loaded(), status.flows_servable()};
  }

  Result<std::string> stop_server(const std::string& server_id) override {
    v1::ServerReplayRef ref;
    ref.set_server_id(server_id);
    v1::ServerReplayStatus status;
    auto context = make_context();
    if (auto st = stub_->StopServerReplay(context.get(), ref, &status); !st.ok())
      return from_grpc(st);
    return status.report_text();
  }

  Status cancel(const std::string& run_id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(options_.timeout_seconds));
    if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
    v1::ClientReplayRef ref;
    ref.set_run_id(run_id);
    v1::ClientReplayStatus status;
    return from_grpc(stub_->CancelClientReplay(&context, ref, &status));
  }

  std::unique_ptr<grpc::ClientContext> make_context() const { return call_context(options_); }

  RemoteOptions options_;
  std::unique_ptr<v1::Replay::Stub> stub_;
};

}  // namespace

class GrpcRemoteRecorder final : public RemoteRecorder {
 public:
  explicit GrpcRemoteRecorder(const RemoteOptions& options)
      : options_(options),
        stub_(v1::Recorder::NewStub(
            grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials()))) {}

  Result<RemoteRecorderInfo> start(const RemoteRecordRequest& r) override {
    v1::StartRecorderRequest request;
    request.set_mode(r.mode);
    request.set_listen(r.listen);
    request.set_session(r.session);
    request.set_body_cap_bytes(r.body_cap);
    request.set_idle_timeout_ms(r.idle_timeout_ms);
    request.set_upstream_timeout_ms(r.upstream_timeout_ms);
    request.set_connect_timeout_ms(r.connect_timeout_ms);
    request.set_threads(r.threads);
    request.set_insecure_upstream(r.insecure_upstream);
    request.set_upstream_ca(r.upstream_ca);
    request.set_ignore_hosts(r.ignore_hosts);
    request.set_allow_hosts(r.allow_hosts);
    request.set_tls(r.tls);
    request.set_cert(r.cert);
    request.set_key(r.key);
    if (!r.server_replay.session.empty()) to_proto(r.server_replay, *request.mutable_server_replay());
    v1::StartRecorderResponse response;
    auto context = call_context(options_);
    if (auto st = stub_->Start(context.get(), request, &response); !st.ok()) return from_grpc(st);
    return RemoteRecorderInfo{response.recorder_id(), response.bound_address(),
                              response.session()};
  }

  Status watch(const std::string& session,
               const std::function<void(const flow::Flow&)>& on_flow) override {
    v1::WatchFlowsRequest request;
    request.set_session(session);
    auto context = std::make_shared<grpc::ClientContext>();  // no deadline: it lasts
    if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) return {};
      watching_ = context;
    }
    auto reader = stub_->WatchFlows(context.get(), request);
    v1::FlowEvent event;
    while (reader->Read(&event)) on_flow(from_summary(event.flow()));
    auto st = reader->Finish();
    std::lock_guard lock(mutex_);
    watching_.reset();
    if (cancelled_ || st.error_code() == grpc::StatusCode::CANCELLED) return {};
    return from_grpc(st);
  }

  void cancel_watch() override {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    if (watching_) watching_->TryCancel();
  }

  Result<record::RecorderStats> stop(const std::string& recorder_id) override {
    v1::RecorderRef ref;
    ref.set_recorder_id(recorder_id);
    v1::RecorderStatus status;
    auto context = call_context(options_);
    if (auto st = stub_->Stop(context.get(), ref, &status); !st.ok()) return from_grpc(st);
    record::RecorderStats out;
    out.connections = status.stats().connections();
    out.active_connections = status.stats().active_connections();
    out.flows = status.stats().flows();
    out.flows_dropped = status.stats().flows_dropped();
    out.errors = status.stats().errors();
    out.upstream_connects = status.stats().upstream_connects();
    return out;
  }

 private:
  RemoteOptions options_;
  std::unique_ptr<v1::Recorder::Stub> stub_;
  std::mutex mutex_;
  std::shared_ptr<grpc::ClientContext> watching_;
  bool cancelled_ = false;
};

Result<std::unique_ptr<RemoteRecorder>> grpc_remote_recorder(const RemoteOptions& options) {
  if (options.address.empty())
    return Status(Errc::invalid_argument, "remote: an address is required");
  if (options.timeout_seconds <= 0)
    return Status(Errc::invalid_argument, "remote: timeout must be positive");
  return std::unique_ptr<RemoteRecorder>(std::make_unique<GrpcRemoteRecorder>(options));
}

class GrpcRemoteDiff final : public RemoteDiff {
 public:
  explicit GrpcRemoteDiff(const RemoteOptions& options)
      : options_(options),
        stub_(v1::Diff::NewStub(
            grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials()))) {}

  Result<RemoteDiffReport> compare(const RemoteDiffRequest& r,
                                   const std::function<void(const std::string&, uint64_t, uint64_t,
                                                            const std::string&)>& on_progress,
                                   const std::atomic<bool>* cancel) override {
    v1::CompareRequest in;
    in.set_run(r.run);
    in.set_run_b(r.run_b);
    in.set_session(r.session);
    in.set_a_target(r.a_target);
    in.set_b_target(r.b_target);
    if (!r.a_target.empty() || r.learn_noise) to_proto(r.replay, *in.mutable_replay());
    in.set_filter(r.filter);
    for (const auto& v : r.ignore_header) in.add_ignore_header(v);
    for (const auto& v : r.ignore) in.add_ignore(v);
    for (const auto& v : r.normalizer) in.add_normalizer(v);
    for (const auto& v : r.array_as_set) in.add_array_as_set(v);
    in.set_learn_noise(r.learn_noise);
    in.set_noise_name(r.noise_name);
    in.set_no_noise(r.no_noise);
    in.set_format(r.format);
    in.set_max_streamed(1);  // the report carries every pair; the stream is for other clients

    // No deadline on the whole call (a live A/B may take long): cancellation instead.
    grpc::ClientContext context;
    if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
    std::atomic<bool> done{false}, cancelled{false};
    std::thread watcher([&] {
      while (!done.load()) {
        if (cancel && cancel->load() && !cancelled.exchange(true)) context.TryCancel();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    struct Join {
      std::thread& t;
      std::atomic<bool>& done;
      ~Join() {
        done = true;
        t.join();
      }
    } join{watcher, done};
    auto reader = stub_->Compare(&context, in);
    v1::DiffEvent event;
    std::optional<RemoteDiffReport> report;
    while (reader->Read(&event)) {
      if (event.has_progress() && on_progress) {
        const auto& p = event.progress();
        on_progress(p.phase(), p.done(), p.total(), p.run());
      } else if (event.has_report()) {
        const auto& e = event.report();
        auto& out = report.emplace();
        out.exit_code = e.exit_code();
        out.content = e.content();
        out.compared = e.compared();
        out.different = e.different();
        out.unpaired = e.unpaired();
        out.session = e.session();
        out.run_a = e.run_a();
        out.run_b = e.run_b();
        out.noise_name = e.noise_name();
        out.noise_learned = e.noise_learned();
        out.noise_used = e.noise_used();
      }
    }
    auto status = reader->Finish();
    if (cancelled.load()) return Status(Errc::cancelled, "remote: the diff was cancelled");
    if (!status.ok()) return from_grpc(status);
    if (!report) return Status(Errc::internal, "remote: the diff stream ended without a report");
    return std::move(*report);
  }

 private:
  RemoteOptions options_;
  std::unique_ptr<v1::Diff::Stub> stub_;
};

Result<std::unique_ptr<RemoteDiff>> grpc_remote_diff(const RemoteOptions& options) {
  if (options.address.empty())
    return Status(Errc::invalid_argument, "remote: an address is required");
  if (options.timeout_seconds <= 0)
    return Status(Errc::invalid_argument, "remote: timeout must be positive");
  return std::unique_ptr<RemoteDiff>(std::make_unique<GrpcRemoteDiff>(options));
}

Result<std::unique_ptr<RemoteReplay>> grpc_remote_replay(const RemoteOptions& options) {
  if (options.address.empty())
    return Status(Errc::invalid_argument, "remote: an address is required");
  if (options.timeout_seconds <= 0)
    return Status(Errc::invalid_argument, "remote: timeout must be positive");
  return std::unique_ptr<RemoteReplay>(std::make_unique<GrpcRemoteReplay>(options));
}

Result<std::unique_ptr<RemoteFlows>> grpc_remote_flows(const RemoteOptions& options) {
  if (options.address.empty())
    return Status(Errc::invalid_argument, "remote: an address is required");
  if (options.timeout_seconds <= 0)
    return Status(Errc::invalid_argument, "remote: timeout must be positive");
  return std::unique_ptr<RemoteFlows>(std::make_unique<GrpcRemoteFlows>(options));
}

}  // namespace retake::control
