#include "ops/diff_run.h"

#include <chrono>
#include <deque>
#include <thread>
#include <unordered_map>

#include <boost/json.hpp>

#include "ops/select.h"
#include "query/filter.h"
#include "replay/client/run_store.h"

namespace retake::ops {

namespace {

using ProgressFn = std::function<void(const DiffProgress&)>;

bool cancelled(const std::atomic<bool>* cancel) {
  return cancel && cancel->load(std::memory_order_relaxed);
}

Status cancelled_status() {
  return Status(Errc::cancelled, "diff cancelled");
}

// The first flow of a run, to learn its session; not_found when the run has no flows.
Result<flow::Flow> first_flow_of_run(store::FlowStore& store, const std::string& run) {
  std::optional<flow::Flow> first;
  store::ScanOptions scan;
  scan.run = run;
  scan.limit = 1;
  scan.with_bodies = false;
  auto st = store.scan(scan, [&](const flow::Flow& f) {
    first = f;
    return false;
  });
  if (!st.ok()) return st;
  if (!first) return Status(Errc::not_found, "no run named '" + run + "' in " + store.path());
  return std::move(*first);
}

// The target a run was replayed against, from its stored metadata ("" when unknown).
std::string run_target(store::FlowStore& store, const std::string& run) {
  auto meta = store.get_meta(std::string(replay::kRunMetaPrefix) + run);
  if (!meta.ok() || !*meta) return {};
  boost::system::error_code ec;
  auto doc = boost::json::parse(**meta, ec);
  if (ec || !doc.is_object()) return {};
  if (auto* t = doc.as_object().if_contains("target"); t && t->is_string())
    return std::string(t->as_string());
  return {};
}

// Replays `flows` as one run into the store and returns the run id. The writer's queue holds a
// whole run so that no replayed flow is dropped (a dropped flow would be an unpaired one).
Result<std::string> replay_run(store::FlowStore& store, std::vector<flow::Flow> flows,
                               replay::ReplayOptions options, DiffProgress::Phase phase,
                               const ProgressFn& progress, const std::atomic<bool>* cancel) {
  if (cancelled(cancel)) return cancelled_status();
  options.run_id.clear();  // every replay is a new run
  store::WriterOptions wo;
  wo.queue_capacity = std::max<size_t>(8192, flows.size() * std::max(1u, options.loops) + 16);
  store::FlowWriter writer(store, wo);
  replay::ClientReplay replay(std::move(flows), std::move(options), &writer);
  if (auto st = replay.start(); !st.ok()) return st;
  DiffProgress p;
  p.phase = phase;
  p.run = replay.run_id();
  while (!replay.finished()) {
    if (cancelled(cancel)) replay.cancel();
    if (progress) {
      auto rp = replay.progress();
      p.done = rp.completed + rp.errors;
      p.total = rp.total;
      progress(p);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto summary = replay.wait();
  writer.stop();
  if (auto st = replay::save_run(store, summary); !st.ok()) return st;
  if (summary.interrupted || cancelled(cancel)) return cancelled_status();
  if (progress) {
    p.done = summary.completed + summary.transport_errors;
    p.total = summary.total;
    progress(p);
  }
  return summary.run_id;
}

// The recorded flows of the session that the filter accepts, through the one selection path
// (ops::select_flows); flows of earlier runs in the session are not recordings.
Result<std::vector<flow::Flow>> recorded_flows(store::FlowStore& store, const std::string& session,
                                               const std::string& filter) {
  Selection selection;
  selection.session = session;
  selection.filter = filter;
  selection.with_bodies = true;
  selection.recorded_only = true;
  std::vector<flow::Flow> out;
  bool too_many = false;
  auto st = select_flows(store, selection, [&](flow::Flow& f) {
    if (out.size() >= replay::kMaxReplayFlows) {
      too_many = true;
      return false;
    }
    out.push_back(std::move(f));
    return true;
  });
  if (!st.ok()) return st;
  if (too_many)
    return Status(Errc::resource_exhausted, "session '" + session + "' has more than " +
                                                std::to_string(replay::kMaxReplayFlows) +
                                                " flows to replay");
  if (out.empty())
    return Status(Errc::not_found, "session '" + session + "' has no recorded flows" +
                                       (filter.empty() ? "" : " matching the filter") + " in " +
                                       store.path());
  return out;
}

// Calls visit(a, b) for each pair: run mode pairs each flow of run_b with its origin; runs
// mode pairs the k-th flow of run_a replaying origin O with the k-th of run_b replaying O.
// Counts flows without a partner in *unpaired.
Status for_each_pair(store::FlowStore& store, const std::string& run_a, const std::string& run_b,
                     bool origin_is_a, uint64_t* unpaired,
                     const std::function<Status(const flow::Flow&, const flow::Flow&)>& visit) {
  std::unordered_map<uint64_t, std::deque<uint64_t>> a_by_origin;
  uint64_t a_count = 0;
  if (!origin_is_a) {
    store::ScanOptions scan;
    scan.run = run_a;
    scan.with_bodies = false;
    auto st = store.scan(scan, [&](const flow::Flow& f) {
      if (f.origin) {
        a_by_origin[f.origin].push_back(f.id);
        ++a_count;
      } else {
        ++*unpaired;
      }
      return true;
    });
    if (!st.ok()) return st;
  }
  Status failure;
  uint64_t paired = 0;
  store::ScanOptions scan;
  scan.run = run_b;
  auto st = store.scan(scan, [&](const flow::Flow& b) {
    uint64_t a_id = 0;
    if (origin_is_a) {
      a_id = b.origin;
    } else if (auto it = a_by_origin.find(b.origin);
               it != a_by_origin.end() && !it->second.empty()) {
      a_id = it->second.front();
      it->second.pop_front();
    }
    if (!a_id) {
      ++*unpaired;
      return true;
    }
    auto a = store.get(a_id);
    if (!a.ok()) {
      if (a.status().code() == Errc::not_found) {
        ++*unpaired;  // the origin was deleted since
        return true;
      }
      failure = a.status();
      return false;
    }
    ++paired;
    failure = visit(*a, b);
    return failure.ok();
  });
  if (!st.ok()) return st;
  if (!origin_is_a) *unpaired += a_count - std::min(a_count, paired);
  return failure;
}

// Compares the pairs of two runs (or of a run and its origins) into `batch`, with the
// comparator's rule counts kept.
Status compare_runs(
    store::FlowStore& store, const std::string& run_a, const std::string& run_b, bool origin_is_a,
    const std::optional<query::Filter>& filter, diff::Comparator& comparator, size_t max_pairs,
    const std::function<void(const flow::Flow&, const flow::Flow&, const diff::Comparison&)>& sink,
    const ProgressFn& progress, const std::atomic<bool>* cancel, DiffProgress::Phase phase,
    uint64_t* unpaired) {
  DiffProgress p;
  p.phase = phase;
  store::ScanOptions count;
  count.run = run_b;
  if (auto n = store.count(count); n.ok()) p.total = *n;
  if (progress) progress(p);
  uint64_t compared = 0;
  auto st = for_each_pair(store, run_a, run_b, origin_is_a, unpaired,
                          [&](const flow::Flow& a, const flow::Flow& b) -> Status {
                            if (cancelled(cancel)) return cancelled_status();
                            ++p.done;
                            if (progress && p.done % 1000 == 0) progress(p);
                            if (filter && !filter->matches(a)) return {};
                            if (++compared > max_pairs)
                              return Status(
                                  Errc::resource_exhausted,
                                  "more than " + std::to_string(max_pairs) + " pairs to compare");
                            sink(a, b, comparator.compare(a, b));
                            return {};
                          });
  if (!st.ok()) return st;
  if (progress) progress(p);
  return {};
}

std::optional<std::string> noise_name_for(const DiffRequest& r, const std::string& session) {
  if (!r.noise.name.empty()) return r.noise.name;
  if (!session.empty()) return session;
  return std::nullopt;
}

}  // namespace

const char* diff_phase_name(DiffProgress::Phase phase) noexcept {
  switch (phase) {
    case DiffProgress::Phase::learning:
      return "learning";
    case DiffProgress::Phase::replaying_a:
      return "replaying_a";
    case DiffProgress::Phase::replaying_b:
      return "replaying_b";
    case DiffProgress::Phase::comparing:
      return "comparing";
  }
  return "?";
}

Result<std::optional<diff::NoiseModel>> load_noise(store::FlowStore& store, std::string_view name) {
  auto value = store.get_meta(std::string(kNoiseMetaPrefix) + std::string(name));
  if (!value.ok()) return value.status();
  if (!*value) return std::optional<diff::NoiseModel>();
  auto model = diff::NoiseModel::from_json(**value);
  if (!model.ok())
    return Status(model.status().code(),
                  "stored noise model '" + std::string(name) + "': " + model.status().message());
  return std::optional<diff::NoiseModel>(std::move(*model));
}

Status save_noise(store::FlowStore& store, std::string_view name, const diff::NoiseModel& model) {
  if (name.empty()) return Status(Errc::invalid_argument, "a noise model needs a name");
  return store.put_meta(std::string(kNoiseMetaPrefix) + std::string(name), model.to_json());
}

Result<diff::BatchResult> run_diff(store::FlowStore& store, const DiffRequest& request,
                                   const ProgressFn& progress, const std::atomic<bool>* cancel,
                                   DiffInfo* info_out) {
  DiffInfo info;
  const auto& r = request;
  // Everything that can be checked without touching the network is checked first, so a usage
  // error never leaves half a replay behind.
  switch (r.mode) {
    case DiffMode::run:
      if (r.run.empty()) return Status(Errc::invalid_argument, "diff of a run needs the run id");
      break;
    case DiffMode::runs:
      if (r.run.empty() || r.run_b.empty())
        return Status(Errc::invalid_argument, "diff of two runs needs both run ids");
      break;
    case DiffMode::live:
      if (r.side_a.target.empty() || r.side_b.target.empty())
        return Status(Errc::invalid_argument, "a live A/B diff needs a target for each side");
      if (r.session.empty())
        return Status(Errc::invalid_argument, "a live A/B diff needs the session to replay");
      break;
    case DiffMode::none:
      if (!r.noise.learn)
        return Status(Errc::invalid_argument, "nothing to do: no runs, no targets, no learning");
      break;
  }
  std::optional<query::Filter> filter;
  if (!r.filter.empty()) {
    auto parsed = query::Filter::parse(r.filter);
    if (!parsed.ok()) return parsed.status();
    filter = std::move(*parsed);
  }
  auto comparator = diff::Comparator::create(r.compare);
  if (!comparator.ok()) return comparator.status();

  // The session: given, or the one the compared run replays.
  info.session = r.session;
  if (info.session.empty() && (r.mode == DiffMode::run || r.mode == DiffMode::runs)) {
    auto first = first_flow_of_run(store, r.run);
    if (!first.ok()) return first.status();
    info.session = first->session;
  }
  if (r.mode == DiffMode::runs) {
    if (auto b = first_flow_of_run(store, r.run_b); !b.ok()) return b.status();
  }
  auto name = noise_name_for(r, info.session);
  if (name) info.noise_name = *name;

  std::optional<diff::NoiseModel> noise;
  if (r.noise.learn) {
    if (info.session.empty())
      return Status(Errc::invalid_argument, "learning noise needs the session to replay");
    replay::ReplayOptions base;
    base.pace = replay::Pace::asap;  // learning wants answers, not the recorded timing
    if (r.noise.baseline) {
      base = *r.noise.baseline;
    } else if (r.mode == DiffMode::live) {
      base = r.side_a;
    }
    if (base.target.empty() && r.mode == DiffMode::runs) base.target = run_target(store, r.run);
    base.session = info.session;
    auto flows = recorded_flows(store, info.session, r.filter);
    if (!flows.ok()) return flows.status();
    auto run1 = replay_run(store, *flows, base, DiffProgress::Phase::learning, progress, cancel);
    if (!run1.ok()) return run1.status();
    replay::ReplayOptions base2 = base;
    if (!r.noise.baseline2_target.empty()) base2.target = r.noise.baseline2_target;
    auto run2 = replay_run(store, std::move(*flows), base2, DiffProgress::Phase::learning, progress,
                           cancel);
    if (!run2.ok()) return run2.status();
    info.noise_run_a = *run1;
    info.noise_run_b = *run2;
    // Baselines are compared with the candidates' options so the patterns line up; their rule
    // counts stay out of the candidates' unused-rule report.
    auto baseline_comparator = diff::Comparator::create(r.compare);
    if (!baseline_comparator.ok()) return baseline_comparator.status();
    diff::NoiseModel model;
    uint64_t unpaired = 0;
    auto st = compare_runs(
        store, *run1, *run2, false, std::nullopt, *baseline_comparator, r.max_pairs,
        [&](const flow::Flow&, const flow::Flow&, const diff::Comparison& c) {
          model.add_baseline(c.endpoint, c);
        },
        progress, cancel, DiffProgress::Phase::learning, &unpaired);
    if (!st.ok()) return st;
    if (auto saved = save_noise(store, info.noise_name, model); !saved.ok()) return saved;
    noise = std::move(model);
    info.noise_learned = true;
  } else if (r.noise.use_stored && name && r.mode != DiffMode::none) {
    auto stored = load_noise(store, *name);
    if (!stored.ok()) return stored.status();
    noise = std::move(*stored);
  }
  if (noise) {
    info.noise_used = r.mode != DiffMode::none;
    for (const auto& [endpoint, e] : noise->endpoints()) info.noise_comparisons += e.comparisons;
  }

  diff::Batch batch(r.batch);
  if (r.mode != DiffMode::none) {
    std::string run_a = r.run, run_b = r.run_b;
    bool origin_is_a = r.mode == DiffMode::run;
    if (r.mode == DiffMode::run) {
      run_b = r.run;
      run_a.clear();
    }
    const std::optional<query::Filter>* pair_filter = &filter;
    std::optional<query::Filter> no_filter;
    if (r.mode == DiffMode::live) {
      auto flows = recorded_flows(store, r.session, r.filter);
      if (!flows.ok()) return flows.status();
      auto a_options = r.side_a, b_options = r.side_b;
      a_options.session = b_options.session = r.session;
      auto ra = replay_run(store, *flows, std::move(a_options), DiffProgress::Phase::replaying_a,
                           progress, cancel);
      if (!ra.ok()) return ra.status();
      auto rb = replay_run(store, std::move(*flows), std::move(b_options),
                           DiffProgress::Phase::replaying_b, progress, cancel);
      if (!rb.ok()) return rb.status();
      run_a = *ra;
      run_b = *rb;
      pair_filter = &no_filter;  // the selection was filtered before replaying
    }
    info.run_a = run_a;
    info.run_b = run_b;
    auto st = compare_runs(
        store, run_a, run_b, origin_is_a, *pair_filter, *comparator, r.max_pairs,
        [&](const flow::Flow& a, const flow::Flow& b, const diff::Comparison& c) {
          batch.add(a, b, c);
        },
        progress, cancel, DiffProgress::Phase::comparing, &info.unpaired);
    if (!st.ok()) return st;
  }
  auto result = batch.finish(info.noise_used ? &*noise : nullptr, comparator->unused_rules());
  if (info_out) *info_out = std::move(info);
  return result;
}

}  // namespace retake::ops
