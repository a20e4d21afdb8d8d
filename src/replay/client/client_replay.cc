// ClientReplay: a single-threaded scheduler io_context (one thread; all scheduling state lives
// there, so no locks) drives one coroutine per recorded client connection ("lane"). With one
// network thread (the default) the HTTP client's I/O runs on that same thread and context;
// with more, the client does the I/O on its own threads. Each request waits for: its planned time
// on the virtual timeline, the flows its bindings come from, a concurrency slot, a rate slot.
#include "replay/client/client_replay.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "flow/thread_name.h"
#include "net/client/http_client.h"
#include "replay/client/reservoir.h"

namespace retake::replay {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxBindingEvents = 10'000;

struct Target {
  std::string scheme, host, authority;
  uint16_t port = 0;
};

Result<Target> parse_target(const std::string& text) {
  auto url = boost::urls::parse_uri(text);
  if (!url)
    return Status(Errc::invalid_argument,
                  "--target: '" + text + "' is not a URL (https://host[:port])");
  Target t;
  t.scheme = std::string(url->scheme());
  for (auto& c : t.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t.scheme != "http" && t.scheme != "https")
    return Status(Errc::invalid_argument,
                  "--target: scheme must be http or https, got '" + t.scheme + "'");
  t.host = std::string(url->host_address());
  if (t.host.empty()) return Status(Errc::invalid_argument, "--target: '" + text + "' has no host");
  if (!url->encoded_path().empty() && url->encoded_path() != "/")
    return Status(Errc::invalid_argument, "--target: a path is not supported ('" + text + "')");
  uint16_t def = t.scheme == "https" ? 443 : 80;
  t.port = url->has_port() ? url->port_number() : def;
  if (url->has_port() && url->port_number() == 0)
    return Status(Errc::invalid_argument, "--target: bad port in '" + text + "'");
  bool v6 = t.host.find(':') != std::string::npos;
  t.authority = v6 ? "[" + t.host + "]" : t.host;
  if (t.port != def) t.authority += ":" + std::to_string(t.port);
  return t;
}

int64_t percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  k = k == 0 ? 0 : k - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

Result<HostMapping> parse_host_mapping(std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size())
    return Status(Errc::invalid_argument,
                  "--map-host: expected HOST=ADDRESS[:PORT], got '" + std::string(text) + "'");
  HostMapping m;
  m.host = std::string(text.substr(0, eq));
  std::string_view rest = text.substr(eq + 1);
  std::string_view port_text;
  if (rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos)
      return Status(Errc::invalid_argument,
                    "--map-host: unclosed '[' in '" + std::string(text) + "'");
    m.address = std::string(rest.substr(1, close - 1));
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':')
        return Status(Errc::invalid_argument,
                      "--map-host: bad address in '" + std::string(text) + "'");
      port_text = rest.substr(close + 2);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    m.address = std::string(rest.substr(0, colon));
    port_text = rest.substr(colon + 1);
  } else {
    m.address = std::string(rest);
  }
  if (!port_text.empty()) {
    unsigned v = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || v > 65535)
        return Status(Errc::invalid_argument,
                      "--map-host: bad port in '" + std::string(text) + "'");
      v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v == 0 || v > 65535)
      return Status(Errc::invalid_argument, "--map-host: bad port in '" + std::string(text) + "'");
    m.port = static_cast<uint16_t>(v);
  }
  if (m.address.empty())
    return Status(Errc::invalid_argument,
                  "--map-host: empty address in '" + std::string(text) + "'");
  return m;
}

int exit_code(const RunSummary& summary, bool fail_on_mismatch) {
  if (summary.transport_errors > 0) return 1;
  if (fail_on_mismatch && summary.mismatches > 0) return 1;
  return 0;
}

std::string make_run_id() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "run-%Y%m%d-%H%M%S-", &tm);
  std::random_device rd;
  char hex[8];
  std::snprintf(hex, sizeof hex, "%06x", rd() & 0xffffff);
  return std::string(buf) + hex;
}

std::string run_summary_json(const RunSummary& s) {
  boost::json::object o;
  o["run"] = s.run_id;
  o["session"] = s.session;
  o["target"] = s.target;
  o["started_ns"] = s.started_ns;
  o["ended_ns"] = s.ended_ns;
  o["interrupted"] = s.interrupted;
  o["total"] = s.total;
  o["sent"] = s.sent;
  o["completed"] = s.completed;
  o["status_mismatches"] = s.mismatches;
  o["transport_errors"] = s.transport_errors;
  o["sink_dropped"] = s.sink_dropped;
  o["latency_p50_ns"] = s.p50_ns;
  o["latency_p95_ns"] = s.p95_ns;
  o["latency_p99_ns"] = s.p99_ns;
  o["schedule_error_mean_ns"] = s.schedule_error_mean_ns;
  o["schedule_error_max_ns"] = s.schedule_error_max_ns;
  o["bindings_applied"] = s.bindings_applied;
  o["bindings_unresolved"] = s.bindings_unresolved;
  o["time_shift_ns"] = s.shift_ns;
  o["timestamps_shifted"] = s.time_shift.shifted;
  o["jwt_resigned"] = s.time_shift.jwt_resigned;
  o["jwt_not_resigned"] = s.time_shift.jwt_unsigned;
  return boost::json::serialize(o);
}

Result<RunSummary> parse_run_summary_json(std::string_view json) {
  boost::system::error_code ec;
  auto value = boost::json::parse(json, ec);
  const auto* o = ec ? nullptr : value.if_object();
  const auto* run = o ? o->if_contains("run") : nullptr;
  if (!run || !run->is_string())
    return Status(Errc::parse_error, "run metadata is not a JSON object with a \"run\" id");
  auto text = [&](const char* key) {
    const auto* v = o->if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  auto integer = [&](const char* key) -> int64_t {
    const auto* v = o->if_contains(key);
    if (!v) return 0;
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
    return 0;
  };
  auto count = [&](const char* key) { return static_cast<uint64_t>(std::max<int64_t>(0, integer(key))); };
  RunSummary s;
  s.run_id = std::string(run->get_string());
  s.session = text("session");
  s.target = text("target");
  s.started_ns = integer("started_ns");
  s.ended_ns = integer("ended_ns");
  const auto* interrupted = o->if_contains("interrupted");
  s.interrupted = interrupted && interrupted->is_bool() && interrupted->get_bool();
  s.total = count("total");
  s.sent = count("sent");
  s.completed = count("completed");
  s.mismatches = count("status_mismatches");
  s.transport_errors = count("transport_errors");
  s.sink_dropped = count("sink_dropped");
  s.p50_ns = integer("latency_p50_ns");
  s.p95_ns = integer("latency_p95_ns");
  s.p99_ns = integer("latency_p99_ns");
  s.schedule_error_mean_ns = integer("schedule_error_mean_ns");
  s.schedule_error_max_ns = integer("schedule_error_max_ns");
  s.bindings_applied = count("bindings_applied");
  s.bindings_unresolved = count("bindings_unresolved");
  s.shift_ns = integer("time_shift_ns");
  s.time_shift.shifted = count("timestamps_shifted");
  s.time_shift.jwt_resigned = count("jwt_resigned");
  s.time_shift.jwt_unsigned = count("jwt_not_resigned");
  return s;
}

struct ClientReplay::State {
  ReplayOptions options;
  std::vector<flow::Flow> flows;  // selected, in replay order
  flow::FlowSink* sink = nullptr;
  std::string run_id;
  std::optional<Target> target;
  BindingPlan plan;
  std::vector<std::vector<size_t>> lanes;
  int64_t rec0 = 0;  // earliest recorded request start

  // The scheduler's io_context: its own, or with one network thread the HTTP client's, so a
  // lane and its exchanges run on one thread without a hop (and a wake-up) each way.
  asio::io_context own_sched{1};
  asio::io_context* sched_ctx = &own_sched;
  asio::io_context& sched() { return *sched_ctx; }
  std::unique_ptr<net::HttpClient> client;
  std::thread thread;
  std::atomic<bool> started{false}, cancelled{false}, finished{false};
  std::mutex wait_mutex;
  bool joined = false;

  std::atomic<uint64_t> total{0}, sent{0}, completed{0}, errors{0}, mismatches{0}, dropped{0};
  std::atomic<int64_t> started_ns{0}, started_steady_ns{0};
  std::atomic<int64_t> ended_ns{0};  // when the scheduler ran out of work (or was stopped)

  // Scheduler-thread state.
  std::set<asio::steady_timer*> timers;
  size_t in_flight = 0;
  std::deque<asio::steady_timer*> slot_waiters;
  Clock::time_point next_rate_slot{};
  std::vector<char> done;
  std::vector<std::vector<asio::steady_timer*>> done_waiters;
  std::vector<std::optional<std::string>> live_values;
  std::vector<std::string> live_failure;
  size_t lanes_running = 0;
  asio::steady_timer* lanes_waiter = nullptr;
  TimeShiftReport shift_report;
  int64_t shift_ns = 0;
  std::vector<FlowResult> results;
  uint64_t results_dropped = 0;
  void keep(FlowResult&& r) {
    if (results.size() < options.max_results)
      results.push_back(std::move(r));
    else
      ++results_dropped;
  }
  std::vector<BindingEvent> events;
  uint64_t bindings_applied = 0, bindings_unresolved = 0;
  // Latency samples for the percentiles: every one up to 2^20, then a uniform sample of that
  // size, so a long --loop stays bounded.
  Reservoir latencies{size_t{1} << 20};
  // Scheduling error (Pace::recorded): running sum, count and max.
  long double schedule_error_sum = 0;
  uint64_t schedule_error_count = 0;
  int64_t schedule_error_max = 0;
  RunSummary summary;

  asio::awaitable<void> sleep_until(Clock::time_point tp) {
    asio::steady_timer t(sched(), tp);
    timers.insert(&t);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    timers.erase(&t);
  }

  // The timer wakes a little early and the last stretch is a yielding spin: timer wake-ups
  // carry the kernel's timer slack and epoll's rounding, which alone would be most of a
  // millisecond. The spin is bounded by kSpin per request.
  asio::awaitable<void> sleep_until_precise(Clock::time_point tp) {
    constexpr auto kSpin = std::chrono::microseconds(300);
    if (tp - Clock::now() > kSpin) co_await sleep_until(tp - kSpin);
    while (Clock::now() < tp && !cancelled) std::this_thread::yield();
  }

  // Parks the coroutine until `list` wakes it (cancel) or the run is cancelled.
  template <class List>
  asio::awaitable<void> park(List& list) {
    asio::steady_timer t(sched(), Clock::time_point::max());
    timers.insert(&t);
    list.push_back(&t);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    timers.erase(&t);
    auto it = std::find(list.begin(), list.end(), &t);
    if (it != list.end()) list.erase(it);
  }

  void cancel_all_timers() {
    for (auto* t : timers) t->cancel();
  }

  asio::awaitable<void> acquire_slot() {
    while (in_flight >= options.concurrency && !cancelled) co_await park(slot_waiters);
    ++in_flight;
  }
  void release_slot() {
    --in_flight;
    if (!slot_waiters.empty()) {
      slot_waiters.front()->cancel();
      slot_waiters.pop_front();
    }
  }

  asio::awaitable<void> rate_slot() {
    if (options.rate <= 0) co_return;
    auto interval = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / options.rate));
    auto now = Clock::now();
    auto slot = std::max(now, next_rate_slot);
    next_rate_slot = slot + interval;
    if (slot > now) co_await sleep_until(slot);
  }

  void mark_done(size_t idx) {
    done[idx] = 1;
    for (auto* t : done_waiters[idx]) t->cancel();
    done_waiters[idx].clear();
  }

  void add_event(BindingEvent e) {
    if (e.resolved)
      ++bindings_applied;
    else
      ++bindings_unresolved;
    if (events.size() < kMaxBindingEvents) events.push_back(std::move(e));
  }

  flow::Request build_request(size_t idx, const TimeShift* shift, net::Endpoint& endpoint) {
    const flow::Flow& origin = flows[idx];
    flow::Request req = origin.request;
    if (shift) shift->shift_request(req, &shift_report);
    if (options.mutate) options.mutate(req, origin);
    for (size_t b : plan.uses[idx]) {
      const Binding& binding = plan.bindings[b];
      BindingEvent e{
          b, binding.rule, binding.capture.describe(), binding.source_flow, origin.id, false, {}};
      if (!live_values[b]) {
        e.where = live_failure[b].empty() ? "value not captured" : live_failure[b];
        add_event(std::move(e));
        continue;
      }
      auto where = substitute(req, binding.recorded_value, *live_values[b]);
      if (where.empty() && shift) {
        // The time shift may have rewritten a value that contained a timestamp.
        where = substitute(req, shift->shift_text(binding.recorded_value), *live_values[b]);
      }
      if (where.empty() && binding.recorded_value == *live_values[b]) where.push_back("unchanged");
      e.resolved = !where.empty();
      for (size_t i = 0; i < where.size(); ++i) e.where += (i ? ", " : "") + where[i];
      if (where.empty()) e.where = "recorded value no longer in the request (mutated)";
      add_event(std::move(e));
    }
    if (target) {
      req.scheme = target->scheme;
      req.authority = target->authority;
      if (req.headers.contains("Host") || req.http_version != "HTTP/2")
        req.headers.set("Host", req.authority);
    }
    if (req.http_version.empty() || req.http_version == "HTTP/2") req.http_version = "HTTP/1.1";
    endpoint = net::endpoint_of(req);
    endpoint.server_name = endpoint.host;
    for (const auto& m : options.host_map) {
      if (flow::iequals(m.host, endpoint.host)) {
        endpoint.host = m.address;
        if (m.port) endpoint.port = m.port;
        break;
      }
    }
    return req;
  }

  asio::awaitable<void> run_lane(const std::vector<size_t>* lane, unsigned loop,
                                 Clock::time_point t0, const TimeShift* shift) {
    for (size_t idx : *lane) {
      if (cancelled) break;
      const flow::Flow& origin = flows[idx];
      FlowResult result;
      result.origin = origin.id;
      result.loop = loop;
      if (origin.response) result.recorded_status = origin.response->status;
      if (options.pace == Pace::recorded && rec0 != 0 && origin.timing.request_started != 0) {
        auto offset = static_cast<int64_t>(
            static_cast<double>(origin.timing.request_started - rec0) / options.speed);
        auto planned = t0 + std::chrono::nanoseconds(offset);
        co_await sleep_until_precise(planned);
        result.schedule_error_ns = (Clock::now() - planned).count();
      }
      for (size_t b : plan.uses[idx]) {
        size_t src = plan.bindings[b].source;
        while (!done[src] && !cancelled) co_await park(done_waiters[src]);
      }
      if (cancelled) break;
      co_await acquire_slot();
      co_await rate_slot();
      if (cancelled) {
        release_slot();
        break;
      }
      net::Endpoint endpoint;
      flow::Request req;
      try {
        req = build_request(idx, shift, endpoint);
      } catch (const std::exception& e) {
        release_slot();
        result.error = flow::Error{flow::ErrorKind::internal,
                                   std::string("building the request: ") + e.what()};
        result.request_line = origin.request.method + " " + origin.request.path;
        ++errors;
        keep(std::move(result));
        mark_done(idx);
        continue;
      }
      ++sent;
      flow::Flow f;
      if (sched_ctx == &client->context()) {
        // One thread runs the scheduler and the client: await the exchange in this coroutine
        // instead of spawning one per request.
        f = co_await client->send(std::move(req), endpoint);
      } else {
        f = co_await asio::co_spawn(client->executor(), client->send(std::move(req), endpoint),
                                    asio::use_awaitable);
      }
      release_slot();
      f.run = run_id;
      f.origin = origin.id;
      f.session = origin.session;
      f.mode = "replay";
      f.id = 0;
      if (f.error) {
        ++errors;
        result.error = f.error;
      }
      result.status = f.response ? f.response->status : 0;
      result.timing = f.timing;
      result.duration_ns = f.duration();
      result.request_line = f.request.method + " " + f.request.path;
      if (f.response) {
        ++completed;
        result.status_match = result.recorded_status == f.response->status;
        if (!result.status_match && result.recorded_status != 0) ++mismatches;
        if (f.timing.response_ended && f.timing.request_started)
          latencies.add(f.timing.response_ended - f.timing.request_started);
      }
      if (options.pace == Pace::recorded && rec0 != 0)
      {
        int64_t e = std::abs(result.schedule_error_ns);
        schedule_error_sum += e;
        ++schedule_error_count;
        schedule_error_max = std::max(schedule_error_max, e);
      }
      // Capture every binding this flow is the source of.
      for (auto& binding : plan.bindings) {
        if (binding.source != idx) continue;
        if (!f.response) {
          live_failure[binding.id] =
              "source flow failed: " + (f.error ? f.error->message : std::string("no response"));
          continue;
        }
        live_values[binding.id] = extract(binding.capture, *f.response);
        if (!live_values[binding.id])
          live_failure[binding.id] = "the target's response (status " +
                                     std::to_string(f.response->status) + ") has no " +
                                     binding.capture.describe();
      }
      // The result keeps the flow without its body bytes (sizes stay): a long run must not
      // hold every response body in memory, nor copy each one.
      if (options.keep_flows) {
        std::string request_body, response_body;
        request_body.swap(f.request.body.data);
        if (f.response) response_body.swap(f.response->body.data);
        result.replayed = std::make_shared<const flow::Flow>(f);
        f.request.body.data.swap(request_body);
        if (f.response) f.response->body.data.swap(response_body);
      }
      if (sink && !sink->offer(std::move(f))) ++dropped;
      keep(std::move(result));
      mark_done(idx);
    }
  }

  asio::awaitable<void> run_all() {
    for (unsigned loop = 0; loop < std::max(1u, options.loops) && !cancelled; ++loop) {
      done.assign(flows.size(), 0);
      done_waiters.assign(flows.size(), {});
      live_values.assign(plan.bindings.size(), std::nullopt);
      live_failure.assign(plan.bindings.size(), {});
      std::optional<TimeShift> shift;
      int64_t delta = 0;
      switch (options.shift_mode) {
        case TimeShiftMode::automatic:
          delta = rec0 ? flow::now_ns() - rec0 : 0;
          break;
        case TimeShiftMode::offset:
          delta = options.shift_ns;
          break;
        case TimeShiftMode::at:
          delta = rec0 ? options.at_ns - rec0 : 0;
          break;
        case TimeShiftMode::none:
          break;
      }
      shift_ns = delta;
      if (options.shift_mode != TimeShiftMode::none && (delta != 0 || !options.jwt_secret.empty()))
        shift.emplace(TimeShiftOptions{delta, rec0, kTenYearsNs, options.jwt_secret});
      // A short lead so that starting every lane coroutine does not make the first flows late.
      auto t0 = Clock::now() + std::chrono::milliseconds(options.pace == Pace::recorded ? 5 : 0);
      lanes_running = lanes.size();
      for (const auto& lane : lanes) {
        asio::co_spawn(sched(), run_lane(&lane, loop, t0, shift ? &*shift : nullptr),
                       [this](std::exception_ptr e) {
                         if (e) {
                           try {
                             std::rethrow_exception(e);
                           } catch (const std::exception& ex) {
                             FlowResult r;
                             r.error = flow::Error{flow::ErrorKind::internal, ex.what()};
                             keep(std::move(r));
                             ++errors;
                           }
                         }
                         if (--lanes_running == 0 && lanes_waiter) lanes_waiter->cancel();
                       });
      }
      while (lanes_running > 0) {
        asio::steady_timer t(sched(), Clock::time_point::max());
        lanes_waiter = &t;
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        lanes_waiter = nullptr;
      }
    }
  }
};

ClientReplay::ClientReplay(std::vector<flow::Flow> flows, ReplayOptions options,
                           flow::FlowSink* sink)
    : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.options = std::move(options);
  s.sink = sink;
  s.run_id = s.options.run_id.empty() ? make_run_id() : s.options.run_id;
  // Sorted through indexes: a flow is over a kilobyte, and each is moved once.
  std::vector<size_t> order;
  order.reserve(flows.size());
  for (size_t i = 0; i < flows.size(); ++i) {
    const auto& f = flows[i];
    if (f.kind != flow::FlowKind::http || f.request.method.empty() || f.request.method == "CONNECT")
      continue;
    if (s.options.select && !s.options.select(f)) continue;
    order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = flows[a];
    const auto& y = flows[b];
    if (x.timing.request_started != y.timing.request_started)
      return x.timing.request_started < y.timing.request_started;
    return x.id < y.id;
  });
  bool as_given = order.size() == flows.size();  // recordings come in id (= time) order
  for (size_t i = 0; as_given && i < order.size(); ++i) as_given = order[i] == i;
  if (as_given) {
    s.flows = std::move(flows);
    return;
  }
  s.flows.reserve(order.size());
  for (size_t i : order) s.flows.push_back(std::move(flows[i]));
}

ClientReplay::~ClientReplay() {
  cancel();
  wait();
}

const std::string& ClientReplay::run_id() const {
  return state_->run_id;
}
bool ClientReplay::finished() const {
  return state_->finished;
}

Status ClientReplay::start() {
  auto& s = *state_;
  if (s.started.exchange(true)) return Status(Errc::failed_precondition, "replay already started");
  const auto& o = s.options;
  auto refuse = [&](std::string msg) {
    s.finished = true;
    s.joined = true;
    return Status(Errc::invalid_argument, std::move(msg));
  };
  if (!(o.speed > 0) || !std::isfinite(o.speed)) return refuse("--speed must be > 0");
  if (o.rate < 0 || !std::isfinite(o.rate)) return refuse("--rate must be >= 0");
  if (o.concurrency == 0) return refuse("--concurrency must be >= 1");
  if (!o.target.empty()) {
    auto t = parse_target(o.target);
    if (!t) return refuse(t.status().message());
    s.target = *t;
  }
  if (s.options.session.empty() && !s.flows.empty()) s.options.session = s.flows.front().session;
  for (const auto& f : s.flows)
    if (f.timing.request_started && (!s.rec0 || f.timing.request_started < s.rec0))
      s.rec0 = f.timing.request_started;
  s.plan = plan_bindings(s.flows, s.options.bindings);
  std::map<std::string, size_t> by_connection;
  for (size_t i = 0; i < s.flows.size(); ++i) {
    const auto& addr = s.flows[i].client_address;
    if (addr.empty()) {
      s.lanes.push_back({i});
      continue;
    }
    auto [it, fresh] = by_connection.emplace(addr, s.lanes.size());
    if (fresh) s.lanes.emplace_back();
    s.lanes[it->second].push_back(i);
  }
  s.total = s.flows.size() * std::max(1u, o.loops);
  // Regrowing the results vector mid-run moves every result and faults in fresh pages on the
  // scheduler thread. Reserving only maps address space; pages are touched as results arrive.
  s.results.reserve(std::min<uint64_t>({s.total, o.max_results, uint64_t{1} << 20}));
  net::ClientOptions co;
  co.threads = o.threads <= 1 ? 0 : o.threads;
  co.connect_timeout = o.connect_timeout;
  co.read_timeout = o.read_timeout;
  co.body_cap = o.body_cap;
  co.tls_context = o.tls_context;
  co.before_first_tls = o.before_first_tls;
  co.insecure = o.insecure;
  co.max_connections_per_endpoint = std::max<size_t>(o.concurrency, 1);
  s.client = std::make_unique<net::HttpClient>(co);
  if (co.threads == 0) s.sched_ctx = &s.client->context();
  s.started_ns = flow::now_ns();
  s.started_steady_ns = Clock::now().time_since_epoch().count();
  asio::co_spawn(s.sched(), s.run_all(), [&s](std::exception_ptr) {
    s.ended_ns = flow::now_ns();
    // The client's context always has work (its pool): the end of the run stops it.
    if (s.sched_ctx != &s.own_sched) s.sched().stop();
    s.finished = true;
  });
  s.thread = std::thread([&s] {
    name_this_thread("retake-replay");
    s.sched().run();
    if (s.ended_ns == 0) s.ended_ns = flow::now_ns();  // stopped (cancelled) before the end
    s.finished = true;
  });
  return {};
}

void ClientReplay::cancel() {
  auto& s = *state_;
  if (!s.started || s.finished || s.cancelled.exchange(true)) return;
  asio::post(s.sched(), [&s] {
    s.cancel_all_timers();
    if (s.lanes_waiter) s.lanes_waiter->cancel();
    // Requests in flight get a grace period; then the scheduler stops without them.
    auto grace = std::make_shared<asio::steady_timer>(s.sched(), std::chrono::seconds(2));
    grace->async_wait([&s, grace](boost::system::error_code) { s.sched().stop(); });
  });
}

RunSummary ClientReplay::wait() {
  auto& s = *state_;
  std::lock_guard lock(s.wait_mutex);
  if (!s.started) return s.summary;
  if (!s.joined) {
    if (s.thread.joinable()) s.thread.join();
    // The client goes first: its threads may still complete a send whose continuation would
    // run on the scheduler.
    if (s.client) s.client->stop();
    s.joined = true;
    RunSummary& r = s.summary;
    r.run_id = s.run_id;
    r.session = s.options.session;
    r.target = s.options.target;
    r.started_ns = s.started_ns;
    // The run ended when its scheduler did, not when a caller got round to wait().
    r.ended_ns = s.ended_ns ? s.ended_ns.load() : flow::now_ns();
    r.interrupted = s.cancelled.load();
    r.total = s.total;
    r.sent = s.sent;
    r.completed = s.completed;
    r.mismatches = s.mismatches;
    r.transport_errors = s.errors;
    r.sink_dropped = s.dropped;
    auto lat = s.latencies.values();
    r.p50_ns = percentile(lat, 0.50);
    r.p95_ns = percentile(lat, 0.95);
    r.p99_ns = percentile(lat, 0.99);
    if (s.schedule_error_count > 0) {
      r.schedule_error_max_ns = s.schedule_error_max;
      r.schedule_error_mean_ns =
          static_cast<int64_t>(s.schedule_error_sum / s.schedule_error_count);
    }
    r.bindings_applied = s.bindings_applied;
    r.bindings_unresolved = s.bindings_unresolved;
    r.time_shift = s.shift_report;
    r.shift_ns = s.shift_ns;
  }
  return s.summary;
}

Result<RunSummary> ClientReplay::run() {
  if (auto st = start(); !st.ok()) return st;
  return wait();
}

Progress ClientReplay::progress() const {
  const auto& s = *state_;
  Progress p;
  p.total = s.total;
  p.sent = s.sent;
  p.completed = s.completed;
  p.errors = s.errors;
  p.mismatches = s.mismatches;
  if (s.started_steady_ns)
    p.elapsed_ns = Clock::now().time_since_epoch().count() - s.started_steady_ns;
  return p;
}

const std::vector<FlowResult>& ClientReplay::results() const {
  return state_->results;
}
uint64_t ClientReplay::results_dropped() const {
  return state_->results_dropped;
}
const std::vector<BindingEvent>& ClientReplay::binding_events() const {
  return state_->events;
}

}  // namespace retake::replay
