// retake::diff batches: many candidate comparisons (baseline/origin A vs candidate/replay B),
// grouped by endpoint, classified against a NoiseModel by comparing RATES across all flows of
// an endpoint, summarized for the reports (report.h) and for an exit code.
//
// Pure: no I/O. Depends on diff.h and noise.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "diff/diff.h"
#include "diff/noise.h"
#include "flow/flow.h"

namespace retake::diff {

struct BatchOptions {
  NoiseThresholds thresholds;            // Default: Diffy's (see noise.h)
  size_t max_examples = 200;             // differing pairs whose responses are kept. Default: 200
  size_t max_snapshot_body = 256 << 10;  // decoded body bytes kept per response. Default: 256 KiB
  codec::CodingLimits decoding;                 // Default: 64 MiB
};

// What a report shows of one response.
struct ResponseSnapshot {
  int status = 0;
  std::vector<flow::Header> headers;
  std::string content_type;
  std::string body;             // decoded; at most max_snapshot_body bytes
  bool body_truncated = false;  // more bytes existed
  bool body_binary = false;     // `body` is a description ("123 bytes, sha256 ..."), not content
};

// How one difference pattern of an endpoint was classified.
struct PathVerdict {
  std::string pattern;
  uint64_t candidate_differences = 0;  // comparisons where it differed
  double candidate_rate = 0;           // candidate_differences / endpoint compared
  uint64_t noise_comparisons = 0;      // baseline comparisons of the endpoint in the model
  double noise_rate = 0;
  bool noise = false;
};

struct EndpointResult {
  std::string endpoint;
  uint64_t compared = 0;
  uint64_t identical = 0;          // no difference at all
  uint64_t different = 0;          // at least one unexplained difference
  uint64_t noise_suppressed = 0;   // differences, all of them noise
  std::vector<PathVerdict> paths;  // sorted by pattern
};

struct PairResult {
  std::string endpoint;
  uint64_t flow_a = 0;
  uint64_t flow_b = 0;
  std::string request_line;              // "GET /users/42?x=1" of A, for people
  std::vector<Difference> differences;   // the unexplained ones
  size_t noise_differences = 0;          // suppressed as noise
  bool truncated = false;                // the comparison hit max_differences
  std::optional<ResponseSnapshot> a, b;  // for the first max_examples differing pairs
};

struct BatchResult {
  std::vector<EndpointResult> endpoints;  // sorted by endpoint
  std::vector<PairResult> differing;      // pairs with unexplained differences, in add order
  std::vector<std::string> unused_rules;  // ignore rules that matched nothing
  uint64_t compared = 0, identical = 0, different = 0, noise_suppressed = 0;

  uint64_t unexplained_differences() const;
  // 0 when no unexplained difference, 1 when some.
  int exit_code() const { return different > 0 ? 1 : 0; }
};

// Collects comparisons, then classifies them all at once (the noise rule is about rates over
// every flow of an endpoint, so no verdict is possible before the batch is complete).
class Batch {
 public:
  explicit Batch(BatchOptions options = {}) : options_(std::move(options)) {}

  // Records one comparison of flow a (baseline) with flow b (candidate). Response snapshots
  // are kept for the first max_examples comparisons with differences.
  void add(const flow::Flow& a, const flow::Flow& b, const Comparison& comparison);
  // Same without flows: `endpoint` as from endpoint_of(); responses optional (for snapshots).
  void add(std::string endpoint, uint64_t flow_a, uint64_t flow_b, const Comparison& comparison,
           const flow::Response* a = nullptr, const flow::Response* b = nullptr,
           std::string request_line = {});

  // Comparisons added so far.
  size_t size() const { return added_; }

  // Classifies every (endpoint, pattern) with `noise` (nullptr: nothing is noise) and builds
  // the result. `unused_rules` (Comparator::unused_rules()) is carried into the reports.
  BatchResult finish(const NoiseModel* noise = nullptr,
                     std::vector<std::string> unused_rules = {}) const;

 private:
  ResponseSnapshot snapshot(const flow::Response& r) const;

  BatchOptions options_;
  std::vector<PairResult> pairs_;  // comparisons with differences, not yet classified
  std::map<std::string, uint64_t, std::less<>> identical_;  // per endpoint
  size_t kept_examples_ = 0;
  size_t added_ = 0;
};

}  // namespace retake::diff
