// retake::diff noise learning (Diffy's rule): differences that also appear between two
// BASELINE responses to the same request (sent twice, or to two baseline instances) are noise
// (timestamps, random ids, load-balancer artefacts). The model records, per endpoint and per
// difference pattern, how often baselines differed; a candidate difference is real only when
// it happens clearly more often than that.
//
// Pure: no I/O. The store keeps the model as the JSON string of to_json(). Depends on diff.h.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "diff/diff.h"
#include "flow/status.h"

namespace retake::diff {

// When a candidate difference counts as real. With c the candidate rate and n the noise rate
// of one (endpoint, pattern), both in [0, 1] (differing comparisons / comparisons):
//   real  <=>  c - n >= absolute  AND  c / max(n, epsilon) >= relative
// and noise otherwise.
// Diffy (twitter/diffy) flags a field when |raw-noise|/total*100 > 0.03 ("threshold.absolute",
// percent of requests) and |raw-noise|/(raw+noise)*100 > 20 ("threshold.relative"). In rates:
// absolute 0.03% = 0.0003; and (c-n)/(c+n) >= 0.2 is the same as c/n >= 1.5. Those are the
// defaults here.
struct NoiseThresholds {
  double absolute = 0.0003;  // Default: 0.0003 (Diffy's 0.03 %)
  double relative = 1.5;     // Default: 1.5 (Diffy's 20 % relative difference)
  double epsilon = 1e-9;     // Default: 1e-9 (guards the division when n == 0)
};

// True when a difference seen at candidate rate c, against noise rate n, is noise.
bool is_noise(double candidate_rate, double noise_rate, const NoiseThresholds& thresholds);

// Baseline difference rates per endpoint and pattern. A plain value; not thread-safe for
// writes.
class NoiseModel {
 public:
  // Records one comparison of two baseline responses of `endpoint` (endpoint_of()). Each
  // distinct Difference::pattern (indexes already generalized to [*]) counts once per call.
  void add_baseline(std::string_view endpoint, const Comparison& baseline_pair);

  // Baseline comparisons seen for the endpoint (0 when unknown).
  uint64_t comparisons(std::string_view endpoint) const;
  // Baseline comparisons of the endpoint where `pattern` differed.
  uint64_t differences(std::string_view endpoint, std::string_view pattern) const;
  // differences / comparisons; 0 for an unknown endpoint or pattern.
  double rate(std::string_view endpoint, std::string_view pattern) const;

  // Adds another model's counts into this one.
  void merge(const NoiseModel& other);
  bool empty() const { return endpoints_.empty(); }

  // {"version":1,"endpoints":{"GET /a":{"comparisons":N,"paths":{"$.x":K,...}},...}}
  std::string to_json() const;
  // Errors: parse_error for text that is not such a document (wrong types, negative or
  // inconsistent counts, a newer version).
  static Result<NoiseModel> from_json(std::string_view text);

  struct EndpointNoise {
    uint64_t comparisons = 0;
    std::map<std::string, uint64_t, std::less<>> paths;
  };
  const std::map<std::string, EndpointNoise, std::less<>>& endpoints() const { return endpoints_; }

 private:
  std::map<std::string, EndpointNoise, std::less<>> endpoints_;
};

}  // namespace retake::diff
