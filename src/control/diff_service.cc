// The Diff service: translate the request into ops::DiffRequest, run the one diff operation
// (src/ops/diff_run.h, also behind `retake diff`), stream its progress, the differing pairs and
// the rendered report.
#include <cctype>
#include <chrono>

#include "control/services.h"
#include "diff/report.h"
#include "ops/diff_run.h"
#include "ops/select.h"

namespace retake::control {

namespace {

grpc::Status invalid(const std::string& field, const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, field + ": " + message};
}

grpc::Status check_list(const std::string& field,
                        const google::protobuf::RepeatedPtrField<std::string>& values) {
  if (values.size() > 1000) return invalid(field, "at most 1000 entries");
  for (const auto& v : values) {
    if (v.empty()) return invalid(field, "an empty entry");
    if (v.size() > 4096) return invalid(field, "an entry over 4096 bytes");
  }
  return grpc::Status::OK;
}

grpc::Status check_run(const std::string& field, const std::string& value) {
  if (value.size() > kMaxNameBytes)
    return invalid(field, "at most " + std::to_string(kMaxNameBytes) + " bytes");
  for (unsigned char c : value)
    if (c < 0x20 || c == 0x7f) return invalid(field, "control characters are not allowed");
  return grpc::Status::OK;
}

// The side of a live A/B: the shared replay options with this side's target.
grpc::Status side_options(const v1::CompareRequest& in, const std::string& target,
                          const std::string& target_field, replay::ReplayOptions& out) {
  auto wanted = from_proto(in.replay());
  wanted.session = in.session();
  wanted.flow.clear();
  wanted.target = target;
  wanted.run_id.clear();  // each side gets its own generated run
  auto options = ops::replay_options(wanted);
  if (!options) {
    auto message = options.status().message();
    // "target: ..." is about this side's target; the rest is about the shared options.
    if (message.rfind("target:", 0) == 0) return invalid(target_field, message.substr(8));
    return to_grpc(options.status(), "replay");
  }
  out = std::move(*options);
  return grpc::Status::OK;
}

void difference_to_proto(const diff::Difference& d, v1::Difference& out) {
  out.set_kind(diff::diff_kind_name(d.kind));
  out.set_path(d.path);
  out.set_pattern(d.pattern);
  out.set_value_a(d.value_a);
  out.set_value_b(d.value_b);
}

}  // namespace

grpc::Status DiffService::Compare(grpc::ServerContext* context, const v1::CompareRequest* in,
                                  grpc::ServerWriter<v1::DiffEvent>* writer) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  ops::DiffRequest request;
  for (auto [field, value] : {std::pair{"run", &in->run()}, std::pair{"run_b", &in->run_b()},
                              std::pair{"session", &in->session()}})
    if (auto st = check_run(field, *value); !st.ok()) return st;
  // Live A/B when a target is given; otherwise runs, or (learn_noise alone) only learning.
  const bool live = !in->a_target().empty() || !in->b_target().empty();
  request.session = in->session();
  if (live) {
    if (!in->run().empty() || !in->run_b().empty())
      return invalid("run", "a live A/B (session, a_target, b_target) takes no run");
    if (in->session().empty()) return invalid("session", "a live A/B needs the session to replay");
    if (in->a_target().empty()) return invalid("a_target", "a live A/B needs both targets");
    if (in->b_target().empty()) return invalid("b_target", "a live A/B needs both targets");
    request.mode = ops::DiffMode::live;
    if (auto st = side_options(*in, in->a_target(), "a_target", request.side_a); !st.ok())
      return st;
    if (auto st = side_options(*in, in->b_target(), "b_target", request.side_b); !st.ok())
      return st;
  } else if (in->run().empty()) {
    if (!in->run_b().empty()) return invalid("run", "run_b is compared with run: give both");
    if (!in->learn_noise() || in->session().empty())
      return invalid("run",
                     "give a run, two runs (run, run_b), session + a_target + b_target, "
                     "or session + learn_noise");
    request.mode = ops::DiffMode::none;
  } else {
    request.mode = in->run_b().empty() ? ops::DiffMode::run : ops::DiffMode::runs;
    request.run = in->run();
    request.run_b = in->run_b();
    // A run still replaying would be compared half-written: say so instead of a partial report.
    for (auto [field, run] : {std::pair{"run", &in->run()}, std::pair{"run_b", &in->run_b()}})
      if (!run->empty() && replays_.replaying(*run))
        return {grpc::StatusCode::FAILED_PRECONDITION,
                std::string(field) + ": run '" + *run +
                    "' is still replaying; compare it once its replay has finished"};
  }
  if (in->filter().size() > 4096) return invalid("filter", "at most 4096 bytes");
  if (!in->filter().empty()) {
    ops::Selection selection;
    selection.filter = in->filter();
    if (auto st = ops::validate(selection); !st.ok()) return to_grpc(st, "filter");
  }
  request.filter = in->filter();
  for (auto [field, list] :
       {std::pair{"ignore_header", &in->ignore_header()}, std::pair{"ignore", &in->ignore()},
        std::pair{"normalizer", &in->normalizer()}, std::pair{"array_as_set", &in->array_as_set()}})
    if (auto st = check_list(field, *list); !st.ok()) return st;
  for (const auto& name : in->ignore_header()) {
    std::string lower = name;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    request.compare.ignored_headers.push_back(std::move(lower));
  }
  request.compare.ignore.assign(in->ignore().begin(), in->ignore().end());
  for (const auto& name : in->normalizer()) {
    auto kind = diff::normalizer_kind_from_name(name);
    if (!kind)
      return invalid("normalizer", "expected timestamp, uuid, hex_id or number, got '" +
                                       name.substr(0, 64) + "'");
    request.compare.normalizers.push_back({*kind, "", 0, 0});
  }
  for (const auto& path : in->array_as_set())
    request.compare.arrays.push_back({path, diff::ArrayOrder::set});
  if (auto st = check_run("noise_name", in->noise_name()); !st.ok()) return st;
  request.noise.learn = in->learn_noise();
  request.noise.name = in->noise_name();
  request.noise.use_stored = !in->no_noise();
  std::string format = in->format().empty() ? "json" : in->format();
  if (format != "json" && format != "text" && format != "junit" && format != "html")
    return invalid("format",
                   "expected json, text, junit or html, got '" + format.substr(0, 64) + "'");
  uint32_t max_streamed = in->max_streamed() ? in->max_streamed() : 1000;
  if (max_streamed > 100'000) return invalid("max_streamed", "at most 100000");

  auto cancel = std::make_shared<std::atomic<bool>>(false);
  std::string id;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return {grpc::StatusCode::UNAVAILABLE, "the daemon is stopping"};
    if (running_.size() >= kMaxDiffs)
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "at most " + std::to_string(kMaxDiffs) + " diffs run at once"};
    id = "d" + std::to_string(++next_id_);
    running_[id] = cancel;
  }
  struct Forget {
    DiffService& service;
    const std::string& id;
    ~Forget() {
      std::lock_guard lock(service.mutex_);
      service.running_.erase(id);
    }
  } forget{*this, id};
  {
    v1::DiffEvent event;
    event.mutable_started()->set_diff_id(id);
    if (!writer->Write(event)) return {grpc::StatusCode::CANCELLED, "the client went away"};
  }

  auto last_progress = std::chrono::steady_clock::now();
  bool client_gone = false;
  auto on_progress = [&](const ops::DiffProgress& p) {
    if (context->IsCancelled()) {
      client_gone = true;
      *cancel = true;
      return;
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_progress < std::chrono::milliseconds(250)) return;
    last_progress = now;
    v1::DiffEvent event;
    auto& out = *event.mutable_progress();
    out.set_phase(ops::diff_phase_name(p.phase));
    out.set_done(p.done);
    out.set_total(p.total);
    out.set_run(p.run);
    if (!writer->Write(event)) {
      client_gone = true;
      *cancel = true;
    }
  };
  ops::DiffInfo info;
  auto result = ops::run_diff(store_, request, on_progress, cancel.get(), &info);
  if (client_gone) return {grpc::StatusCode::CANCELLED, "cancelled by the client"};
  if (!result) {
    auto status = result.status();
    // A filter the store rejects is still the request's filter.
    return to_grpc(status, status.code() == Errc::parse_error ? "filter" : "");
  }
  uint32_t streamed = 0;
  for (const auto& pair : result->differing) {
    if (streamed++ >= max_streamed) break;
    v1::DiffEvent event;
    auto& out = *event.mutable_difference();
    out.set_endpoint(pair.endpoint);
    out.set_flow_a(pair.flow_a);
    out.set_flow_b(pair.flow_b);
    out.set_request_line(pair.request_line);
    for (const auto& d : pair.differences) difference_to_proto(d, *out.add_differences());
    out.set_noise_differences(pair.noise_differences);
    out.set_truncated(pair.truncated);
    if (!writer->Write(event)) return {grpc::StatusCode::CANCELLED, "the client went away"};
  }
  v1::DiffEvent event;
  auto& report = *event.mutable_report();
  report.set_compared(result->compared);
  report.set_identical(result->identical);
  report.set_different(result->different);
  report.set_noise_suppressed(result->noise_suppressed);
  report.set_unexplained_differences(result->unexplained_differences());
  report.set_exit_code(result->exit_code());
  report.set_format(format);
  report.set_report_json(diff::render_json(*result));
  if (format == "json")
    report.set_content(report.report_json());
  else if (format == "text")
    report.set_content(diff::render_text(*result));
  else if (format == "junit")
    report.set_content(diff::render_junit(*result));
  else
    report.set_content(diff::render_html(*result));
  report.set_session(info.session);
  report.set_run_a(info.run_a);
  report.set_run_b(info.run_b);
  report.set_noise_name(info.noise_name);
  report.set_noise_learned(info.noise_learned);
  report.set_noise_used(info.noise_used);
  report.set_unpaired(info.unpaired);
  for (const auto& rule : result->unused_rules) report.add_unused_rules(rule);
  writer->Write(event);
  return grpc::Status::OK;
}

grpc::Status DiffService::CancelDiff(grpc::ServerContext* context, const v1::DiffRef* request,
                                     v1::CancelDiffResponse*) {
  if (auto st = auth_.check(*context); !st.ok()) return st;
  std::lock_guard lock(mutex_);
  auto it = running_.find(request->diff_id());
  if (it == running_.end())
    return {grpc::StatusCode::NOT_FOUND,
            "diff_id: no running diff '" + request->diff_id().substr(0, 256) + "'"};
  *it->second = true;
  return grpc::Status::OK;
}

void DiffService::stop_all() {
  std::lock_guard lock(mutex_);
  stopping_ = true;
  for (auto& [id, cancel] : running_) *cancel = true;
}

}  // namespace retake::control
