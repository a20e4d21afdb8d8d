// retake::ops diff operation: the one implementation of `retake diff` that the CLI and the
// gRPC Diff service both call. It pairs flows (a run against its recorded origins, two runs of
// one session, or a live A/B replay it runs itself), compares each pair with the diff engine,
// learns or loads the noise model kept in the flow database, and classifies the batch.
//
// Depends on store, diff, query and replay/client (for live A/B and noise learning); knows
// nothing of terminals, files or gRPC. Reports are rendered by the caller (diff/report.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "diff/batch.h"
#include "diff/diff.h"
#include "diff/noise.h"
#include "flow/status.h"
#include "replay/client/client_replay.h"
#include "store/flow_store.h"

namespace retake::ops {

// Where learned noise models live in the store's meta API: kNoiseMetaPrefix + name, the value
// being diff::NoiseModel::to_json().
inline constexpr std::string_view kNoiseMetaPrefix = "diff/noise/";

enum class DiffMode : uint8_t {
  run,   // every flow of `run` (B) against the recorded flow it replays (its origin, A)
  runs,  // flows of `run` (A) against flows of `run_b` (B) that replay the same origin
  live,  // replay `session` against side_a and side_b (two runs stored), then as `runs`
  none,  // compare nothing: only learn noise (noise.learn) and return an empty result
};

struct NoiseOptions {
  // Replay the selected flows of the session against the baseline twice (or against
  // `baseline` and `baseline2_target`), compare the two baseline runs pairwise and store the
  // model under the noise name, replacing an older one. Default: false.
  bool learn = false;
  // The baseline side for learning (target, mutations, bindings, pacing...). Default: empty
  // target, which means: live mode uses side_a; runs mode uses the target stored with run A;
  // run mode replays to where each flow was recorded going (Pace::asap unless given).
  std::optional<replay::ReplayOptions> baseline;
  // A second baseline instance ("scheme://host[:port]"); "": the baseline twice. Default: "".
  std::string baseline2_target;
  // The model's name in the store. Default: "" (the session's name).
  std::string name;
  // Classify with the stored model of that name when one exists (a learned one is always
  // used). Default: true.
  bool use_stored = true;
};

struct DiffRequest {
  DiffMode mode = DiffMode::run;  // Default: run
  std::string run;                // run / runs: run A (run mode: the replayed side)
  std::string run_b;              // runs: run B
  // live and learning: the recorded session replayed. run / runs: "" (taken from the flows).
  std::string session;
  // live: the two sides (each carries its target and its own replay options). Default: empty
  // targets (invalid_argument for live).
  replay::ReplayOptions side_a;
  replay::ReplayOptions side_b;
  // Only pairs whose A flow matches this filter expression (live and learning: only these
  // recorded flows are replayed). Default: "" (all).
  std::string filter;
  diff::CompareOptions compare;  // Default: the engine's defaults
  diff::BatchOptions batch;      // Default: the engine's defaults (Diffy's thresholds)
  NoiseOptions noise;
  // Most pairs compared; more is resource_exhausted. Default: 1,000,000.
  size_t max_pairs = 1'000'000;
};

struct DiffProgress {
  enum class Phase : uint8_t { learning, replaying_a, replaying_b, comparing };
  Phase phase = Phase::comparing;
  uint64_t done = 0;   // flows replayed / pairs compared so far in this phase
  uint64_t total = 0;  // 0 when unknown
  std::string run;     // the run being replayed (replay phases)
};
const char* diff_phase_name(DiffProgress::Phase phase) noexcept;

// What run_diff did besides the result, for people and for the API.
struct DiffInfo {
  std::string session;             // the recorded session the flows come from
  std::string run_a, run_b;        // the runs compared ("" for the recording side of run mode)
  std::string noise_name;          // the model's name in the store
  bool noise_learned = false;      // learned in this call (and stored)
  bool noise_used = false;         // a model classified the batch
  uint64_t noise_comparisons = 0;  // baseline pairs in the model used
  std::string noise_run_a, noise_run_b;  // the baseline runs made while learning
  uint64_t unpaired = 0;                 // flows without a partner (origin gone, replay failed)
};

// Runs the whole operation. progress (may be null) is called on the calling thread, at most
// ~20 times a second during replays and every 1000 pairs while comparing. cancel (may be null)
// is polled as often: once set, replays stop (in-flight requests get 2 s) and the call
// returns cancelled; runs already replayed stay stored.
// Errors: invalid_argument (mode without its runs/targets, bad compare options, bad filter:
// parse_error), not_found (a run or session with no flows), resource_exhausted (max_pairs),
// cancelled, and whatever the store reports. A run with no pair at all is not an error: the
// result then has compared == 0.
Result<diff::BatchResult> run_diff(store::FlowStore& store, const DiffRequest& request,
                                   const std::function<void(const DiffProgress&)>& progress = {},
                                   const std::atomic<bool>* cancel = nullptr,
                                   DiffInfo* info = nullptr);

// The stored model of that name, nullopt when none. parse_error for a damaged value.
Result<std::optional<diff::NoiseModel>> load_noise(store::FlowStore& store, std::string_view name);
// Stores (replaces) the model. Errors from the store (read-only, sizes).
Status save_noise(store::FlowStore& store, std::string_view name, const diff::NoiseModel& model);

}  // namespace retake::ops
