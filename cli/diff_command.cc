// `retake diff`: compare a run with its recording, two runs, or two live targets, classify the
// differences against the learned noise and report them. Thin: parse, call ops::run_diff,
// render with diff/report.h, write.
//
// Exit codes: 0 no unexplained difference, 1 some (or a failure), 2 usage error.
#include <pthread.h>
#include <unistd.h>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/command.h"
#include "cli/remote.h"
#include "cli/replay_options.h"
#include "control/client.h"
#include "diff/report.h"
#include "ops/diff_run.h"
#include "query/filter.h"
#include "store/flow_store.h"

namespace retake::cli {

namespace {

struct DiffArgs {
  std::string db;
  std::string run;
  std::vector<std::string> runs;
  std::string a, b, a2;
  std::string session;
  std::string filter;
  bool learn_noise = false;
  std::string noise_name;
  bool no_noise = false;
  std::vector<std::string> ignore_headers;
  std::vector<std::string> ignore;
  std::vector<std::string> normalize;
  std::vector<std::string> array_as_set;
  double tolerance = 0;
  double threshold_absolute = diff::NoiseThresholds{}.absolute;
  double threshold_relative = diff::NoiseThresholds{}.relative;
  std::string format = "text";
  std::string output;
  bool quiet = false;
  // The replay flags shared with `retake replay` (the request the gRPC API takes too).
  ops::ReplayRequest replay;
  std::string timeout = "30s";
  RemoteArgs remote;
};

// "KIND" or "KIND=SCOPE" (scope as in diff::Normalizer: "", "header:<name>", "body", a JSON path).
diff::Normalizer parse_normalizer(const std::string& text) {
  auto eq = text.find('=');
  std::string kind = text.substr(0, eq);
  auto k = diff::normalizer_kind_from_name(kind);
  if (!k)
    throw UsageError("--normalize: expected timestamp, uuid, hex_id or number, got '" + kind + "'");
  diff::Normalizer n;
  n.kind = *k;
  if (eq != std::string::npos) n.scope = text.substr(eq + 1);
  return n;
}

ops::DiffRequest build_request(const DiffArgs& args) {
  ops::DiffRequest r;
  const bool live = !args.a.empty() || !args.b.empty();
  int modes = !args.run.empty() + !args.runs.empty() + (live && !args.b.empty());
  if (modes > 1) throw UsageError("give one of --run R, --runs R1 R2, or --a URL --b URL");
  if (!args.b.empty() && args.a.empty()) throw UsageError("--b needs --a (the baseline side)");
  if (!args.a.empty() && args.b.empty() && !args.learn_noise)
    throw UsageError("--a needs --b (live A/B) or --learn-noise (a baseline to learn from)");
  if (!args.a2.empty() && !args.learn_noise)
    throw UsageError("--a2 is a second baseline for --learn-noise");
  if (args.learn_noise && args.no_noise)
    throw UsageError("--learn-noise and --no-noise exclude each other");
  if (!args.runs.empty() && args.runs.size() != 2) throw UsageError("--runs takes two run ids");
  if (!args.run.empty()) {
    r.mode = ops::DiffMode::run;
    r.run = args.run;
  } else if (!args.runs.empty()) {
    r.mode = ops::DiffMode::runs;
    r.run = args.runs[0];
    r.run_b = args.runs[1];
  } else if (!args.b.empty()) {
    r.mode = ops::DiffMode::live;
    if (args.session.empty()) throw UsageError("a live diff (--a, --b) needs --session S");
  } else if (args.learn_noise) {
    r.mode = ops::DiffMode::none;
    if (args.session.empty() || args.a.empty())
      throw UsageError("--learn-noise alone needs --a URL (the baseline) and --session S");
  } else {
    throw UsageError("give --run R, --runs R1 R2, or --a URL --b URL --session S");
  }
  if (!args.filter.empty()) {
    auto parsed = query::Filter::parse(args.filter);
    if (!parsed.ok()) throw UsageError("--filter: " + parsed.status().message());
    r.filter = args.filter;
  }
  r.session = args.session;

  // Comparison options: defaults plus the user's additions.
  for (const auto& h : args.ignore_headers) r.compare.ignored_headers.push_back(h);
  r.compare.ignore = args.ignore;
  for (const auto& n : args.normalize) r.compare.normalizers.push_back(parse_normalizer(n));
  if (args.tolerance < 0) throw UsageError("--tolerance must be >= 0");
  if (args.tolerance > 0) {
    diff::Normalizer n;
    n.kind = diff::NormalizerKind::number;
    n.absolute_tolerance = args.tolerance;
    r.compare.normalizers.push_back(n);
  }
  for (const auto& p : args.array_as_set) r.compare.arrays.push_back({p, diff::ArrayOrder::set});
  // Bad paths are usage errors, found before anything is replayed.
  if (auto c = diff::Comparator::create(r.compare); !c.ok()) throw UsageError(c.status().message());
  if (args.threshold_absolute < 0 || args.threshold_relative < 1)
    throw UsageError("--threshold-absolute must be >= 0 and --threshold-relative >= 1");
  r.batch.thresholds.absolute = args.threshold_absolute;
  r.batch.thresholds.relative = args.threshold_relative;

  r.noise.learn = args.learn_noise;
  r.noise.use_stored = !args.no_noise;
  r.noise.name = args.noise_name;
  r.noise.baseline2_target = args.a2;
  if (live || args.learn_noise) {
    ops::ReplayRequest wanted = args.replay;
    // ops::validate wants a session; run_diff sets the one it replays on each side's options.
    wanted.session = args.session.empty() ? "-" : args.session;
    replay::ReplayOptions base = build_replay_options(std::move(wanted), args.timeout);
    r.side_a = base;
    r.side_a.target = args.a;
    r.side_b = base;
    r.side_b.target = args.b;
    if (args.learn_noise) {
      r.noise.baseline = base;
      r.noise.baseline->target = args.a;  // "" : runs mode takes run A's target
    }
  }
  if (args.format != "text" && args.format != "json" && args.format != "junit" &&
      args.format != "html")
    throw UsageError("--format: expected text, json, junit or html, got '" + args.format + "'");
  return r;
}

void draw_progress(const ops::DiffProgress& p) {
  std::fprintf(stderr, "\r%-12s %llu/%llu %s   ", ops::diff_phase_name(p.phase),
               static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(p.total),
               p.run.c_str());
  std::fflush(stderr);
}

void print_info(const ops::DiffInfo& info) {
  if (info.noise_learned)
    std::cerr << "retake: learned noise '" << info.noise_name << "' from baseline runs "
              << info.noise_run_a << " and " << info.noise_run_b << " (" << info.noise_comparisons
              << " pairs)\n";
  else if (info.noise_used)
    std::cerr << "retake: using stored noise '" << info.noise_name << "' ("
              << info.noise_comparisons << " baseline pairs)\n";
  if (!info.run_a.empty() || !info.run_b.empty())
    std::cerr << "retake: compared " << (info.run_a.empty() ? "the recording" : info.run_a)
              << " with " << info.run_b << "\n";
  if (info.unpaired)
    std::cerr << "retake: " << info.unpaired << " flows had no partner and were not compared\n";
}

// SIGINT/SIGTERM become `cancel` (seen by the diff's polling) while a diff runs; SIGPIPE is
// ignored. finish() (or the destructor) ends the watcher thread.
struct StopSignals {
  StopSignals() {
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    watcher = std::thread([this] {
      timespec tick{0, 100'000'000};
      while (!done.load()) {
        if (sigtimedwait(&signals, nullptr, &tick) > 0 && !cancel.exchange(true))
          std::cerr << "\nretake: stopping the diff...\n";
      }
    });
  }
  ~StopSignals() { finish(); }
  void finish() {
    done = true;
    if (watcher.joinable()) watcher.join();
  }
  sigset_t signals;
  std::atomic<bool> cancel{false}, done{false};
  std::thread watcher;
};

// Writes the rendered report to --output (stdout when absent or "-"). false when the file
// cannot be written.
bool write_report(const DiffArgs& args, const std::string& doc) {
  if (args.output.empty() || args.output == "-") {
    std::cout << doc;
    std::cout.flush();
    return true;
  }
  std::ofstream out(args.output, std::ios::binary | std::ios::trunc);
  out << doc;
  out.close();
  if (!out) return false;
  if (!args.quiet) std::cerr << "retake: wrote " << args.output << "\n";
  return true;
}

// Through a daemon: the same request, as v1::CompareRequest; the daemon renders the report.
int run_remote_diff(const DiffArgs& args, const ops::DiffRequest& checked) {
  // What the Diff service does not take is refused rather than silently dropped.
  if (args.tolerance > 0) throw UsageError("--tolerance is not available with --remote");
  if (!args.a2.empty()) throw UsageError("--a2 is not available with --remote");
  if (args.threshold_absolute != diff::NoiseThresholds{}.absolute ||
      args.threshold_relative != diff::NoiseThresholds{}.relative)
    throw UsageError("--threshold-absolute/--threshold-relative are not available with --remote");
  for (const auto& n : args.normalize)
    if (n.find('=') != std::string::npos)
      throw UsageError("--normalize KIND=SCOPE is not available with --remote (KIND alone is)");
  control::RemoteDiffRequest r;
  switch (checked.mode) {
    case ops::DiffMode::run:
      r.run = checked.run;
      break;
    case ops::DiffMode::runs:
      r.run = checked.run;
      r.run_b = checked.run_b;
      break;
    case ops::DiffMode::live:
    case ops::DiffMode::none:
      r.session = args.session;
      r.a_target = args.a;
      r.b_target = args.b;
      r.replay = args.replay;
      r.replay.session = args.session;
      apply_timeout(args.timeout, r.replay);
      break;
  }
  if (checked.mode == ops::DiffMode::run || checked.mode == ops::DiffMode::runs)
    r.session = args.session;
  r.filter = args.filter;
  r.ignore_header = args.ignore_headers;
  r.ignore = args.ignore;
  r.normalizer = args.normalize;
  r.array_as_set = args.array_as_set;
  r.learn_noise = args.learn_noise;
  r.noise_name = args.noise_name;
  r.no_noise = args.no_noise;
  r.format = args.format;

  auto client = connected(control::RemoteDiff::connect(remote_options(args.remote)));
  StopSignals stop;
  const bool tty = isatty(STDERR_FILENO) && !args.quiet;
  auto progress = [&](const std::string& phase, uint64_t d, uint64_t total,
                      const std::string& run) {
    if (!tty) return;
    std::fprintf(stderr, "\r%-12s %llu/%llu %s   ", phase.c_str(),
                 static_cast<unsigned long long>(d), static_cast<unsigned long long>(total),
                 run.c_str());
    std::fflush(stderr);
  };
  auto report = client->compare(r, progress, &stop.cancel);
  stop.finish();
  if (tty) std::fputs("\r\x1b[K", stderr);
  if (!report) {
    if (report.status().code() == Errc::invalid_argument)
      throw UsageError(remote_flag_message(report.status()));
    return fail(report.status());
  }
  if (!args.quiet) {
    if (report->noise_learned)
      std::cerr << "retake: learned noise '" << report->noise_name << "'\n";
    else if (report->noise_used)
      std::cerr << "retake: using stored noise '" << report->noise_name << "'\n";
    if (!report->run_a.empty() || !report->run_b.empty())
      std::cerr << "retake: compared " << (report->run_a.empty() ? "the recording" : report->run_a)
                << " with " << report->run_b << "\n";
    if (report->unpaired)
      std::cerr << "retake: " << report->unpaired
                << " flows had no partner and were not compared\n";
  }
  if (checked.mode == ops::DiffMode::none) return kExitOk;
  std::string doc = report->content;
  if (args.format == "json") doc += "\n";
  if (!write_report(args, doc)) return fail("cannot write " + args.output);
  return report->exit_code;
}

int run_diff_command(const DiffArgs& args) {
  ops::DiffRequest request = build_request(args);
  if (!args.remote.address.empty()) return run_remote_diff(args, request);
  store::StoreOptions so;
  so.path = resolve_db(args.db);
  so.create_if_missing = false;
  auto store = store::FlowStore::open(so);
  if (!store) return fail(store.status());

  StopSignals stop;
  const bool tty = isatty(STDERR_FILENO) && !args.quiet;
  ops::DiffInfo info;
  auto result = ops::run_diff(**store, request,
                              tty ? std::function<void(const ops::DiffProgress&)>(draw_progress)
                                  : std::function<void(const ops::DiffProgress&)>(),
                              &stop.cancel, &info);
  stop.finish();
  if (tty) std::fputs("\r\x1b[K", stderr);
  if (!result.ok()) {
    if (result.status().code() == Errc::invalid_argument)
      throw UsageError(result.status().message());
    return fail(result.status());
  }
  if (!args.quiet) print_info(info);
  if (request.mode == ops::DiffMode::none) return kExitOk;

  std::string doc;
  if (args.format == "json") {
    doc = diff::render_json(*result) + "\n";
  } else if (args.format == "junit") {
    doc = diff::render_junit(*result);
  } else if (args.format == "html") {
    doc = diff::render_html(*result);
  } else {
    diff::TextReportOptions to;
    to.color = args.output.empty() && isatty(STDOUT_FILENO);
    doc = diff::render_text(*result, to);
  }
  if (!write_report(args, doc)) return fail("cannot write " + args.output);
  return result->exit_code();
}

}  // namespace

void add_diff_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<DiffArgs>();
  args->replay.pace = "asap";  // a diff wants answers, not the recorded timing
  auto* cmd = app.add_subcommand(
      "diff",
      "Compare a run with its recording, two runs, or two live targets (exit 1 on "
      "unexplained differences)");
  add_db_option(*cmd, args->db);
  cmd->add_option("--run", args->run, "Each flow of this run against the flow it replays")
      ->type_name("RUN");
  cmd->add_option("--runs", args->runs, "Two runs of one session, paired by origin")
      ->type_name("R1 R2")
      ->expected(2);
  cmd->add_option("--a", args->a, "Live A/B: the baseline target scheme://host[:port]")
      ->type_name("URL");
  cmd->add_option("--b", args->b, "Live A/B: the candidate target")->type_name("URL");
  cmd->add_option("--a2", args->a2, "A second baseline instance for --learn-noise")
      ->type_name("URL");
  cmd->add_option("--session", args->session, "The recorded session (live A/B, learning)")
      ->type_name("NAME");
  cmd->add_option("--filter", args->filter, "Only flows matching this filter expression")
      ->type_name("EXPR");
  cmd->add_flag("--learn-noise", args->learn_noise,
                "Replay against the baseline twice (or --a and --a2) and store the noise first");
  cmd->add_option("--noise", args->noise_name, "Name of the stored noise model (default: session)")
      ->type_name("NAME");
  cmd->add_flag("--no-noise", args->no_noise, "Ignore the stored noise model");
  cmd->add_option("--ignore-header", args->ignore_headers, "Never compare this header (repeatable)")
      ->type_name("NAME");
  cmd->add_option("--ignore", args->ignore,
                  "Ignore this path: $.a[*].b, status, header:<name>, body (repeatable)")
      ->type_name("PATH");
  cmd->add_option("--normalize", args->normalize,
                  "Normalizer timestamp|uuid|hex_id|number, optionally =SCOPE (repeatable)")
      ->type_name("KIND[=SCOPE]");
  cmd->add_option("--tolerance", args->tolerance,
                  "Numbers within this absolute difference are equal");
  cmd->add_option("--array-as-set", args->array_as_set,
                  "Compare the arrays at this path as sets (repeatable)")
      ->type_name("PATH");
  cmd->add_option("--threshold-absolute", args->threshold_absolute,
                  "Noise rule: candidate rate - noise rate must reach this (default 0.0003)");
  cmd->add_option("--threshold-relative", args->threshold_relative,
                  "Noise rule: candidate rate / noise rate must reach this (default 1.5)");
  cmd->add_option("--format", args->format, "text (default), json, junit or html")
      ->type_name("FORMAT");
  cmd->add_option("--output,-o", args->output, "Write the report to FILE (default: stdout)")
      ->type_name("FILE");
  cmd->add_flag("--quiet,-q", args->quiet, "No progress or notes on stderr");
  add_replay_flags(*cmd, args->replay, args->timeout);
  add_remote_options(*cmd, args->remote);
  cmd->callback([args, &action] { action = [args] { return run_diff_command(*args); }; });
}

}  // namespace retake::cli
