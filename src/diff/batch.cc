#include "diff/batch.h"

#include <map>
#include <set>

#include "diff/internal.h"

namespace retake::diff {

uint64_t BatchResult::unexplained_differences() const {
  uint64_t n = 0;
  for (const auto& p : differing) n += p.differences.size();
  return n;
}

void Batch::add(const flow::Flow& a, const flow::Flow& b, const Comparison& comparison) {
  std::string endpoint = comparison.endpoint.empty() ? endpoint_of(a.request) : comparison.endpoint;
  std::string line = a.request.method + " " + a.request.path;
  add(std::move(endpoint), a.id, b.id, comparison, a.response ? &*a.response : nullptr,
      b.response ? &*b.response : nullptr, std::move(line));
}

void Batch::add(std::string endpoint, uint64_t flow_a, uint64_t flow_b,
                const Comparison& comparison, const flow::Response* a, const flow::Response* b,
                std::string request_line) {
  ++added_;
  if (comparison.identical()) {
    ++identical_[endpoint];
    return;
  }
  PairResult p;
  p.endpoint = std::move(endpoint);
  p.flow_a = flow_a;
  p.flow_b = flow_b;
  p.request_line = std::move(request_line);
  p.differences = comparison.differences;
  p.truncated = comparison.truncated;
  if (kept_examples_ < options_.max_examples && (a || b)) {
    ++kept_examples_;
    if (a) p.a = snapshot(*a);
    if (b) p.b = snapshot(*b);
  }
  pairs_.push_back(std::move(p));
}

ResponseSnapshot Batch::snapshot(const flow::Response& r) const {
  ResponseSnapshot s;
  s.status = r.status;
  s.headers = r.headers.fields();
  s.content_type = std::string(r.headers.get("content-type").value_or(""));
  auto decoded = codec::decode_content(r.body.data, r.headers.get("content-encoding").value_or(""),
                                options_.decoding);
  if (!decoded.ok()) {
    s.body_binary = true;
    s.body = "undecodable (" + decoded.status().message() + "), " +
             std::to_string(r.body.data.size()) + " bytes";
    return s;
  }
  const std::string& body = *decoded;
  auto media = media_type(s.content_type);
  bool text = is_json_media(media) || is_text_media(media);
  if (!text && media.empty()) {
    text = true;
    for (size_t i = 0; i < std::min<size_t>(body.size(), 8192); ++i)
      if (body[i] == '\0') text = false;
  }
  if (!text) {
    s.body_binary = true;
    s.body = std::to_string(body.size()) + " bytes, sha256 " + sha256_hex(body);
    return s;
  }
  if (body.size() > options_.max_snapshot_body) {
    s.body = truncate_utf8(body, options_.max_snapshot_body);
    s.body_truncated = true;
  } else {
    s.body = body;
  }
  return s;
}

BatchResult Batch::finish(const NoiseModel* noise, std::vector<std::string> unused_rules) const {
  BatchResult out;
  out.unused_rules = std::move(unused_rules);

  struct Acc {
    uint64_t compared = 0, identical = 0;
    std::map<std::string, uint64_t, std::less<>> pattern_counts;
    std::map<std::string, bool, std::less<>> noise;  // verdict per pattern
  };
  std::map<std::string, Acc, std::less<>> acc;
  for (const auto& [ep, n] : identical_) {
    acc[ep].compared += n;
    acc[ep].identical += n;
  }
  for (const auto& p : pairs_) {
    auto& a = acc[p.endpoint];
    ++a.compared;
    std::set<std::string_view> seen;
    for (const auto& d : p.differences)
      if (seen.insert(d.pattern).second) ++a.pattern_counts[d.pattern];
  }

  // Verdicts by rates over the whole endpoint. Without baseline evidence for an endpoint
  // (no model, or no comparisons for it) nothing there is noise.
  for (auto& [ep, a] : acc) {
    EndpointResult er;
    er.endpoint = ep;
    er.compared = a.compared;
    er.identical = a.identical;
    uint64_t baseline = noise ? noise->comparisons(ep) : 0;
    for (const auto& [pattern, k] : a.pattern_counts) {
      PathVerdict v;
      v.pattern = pattern;
      v.candidate_differences = k;
      v.candidate_rate = static_cast<double>(k) / static_cast<double>(a.compared);
      v.noise_comparisons = baseline;
      v.noise_rate = baseline ? noise->rate(ep, pattern) : 0.0;
      v.noise = baseline > 0 && is_noise(v.candidate_rate, v.noise_rate, options_.thresholds);
      a.noise[pattern] = v.noise;
      er.paths.push_back(std::move(v));
    }
    out.endpoints.push_back(std::move(er));
  }

  auto endpoint_result = [&](std::string_view ep) -> EndpointResult& {
    auto it = std::lower_bound(
        out.endpoints.begin(), out.endpoints.end(), ep,
        [](const EndpointResult& e, std::string_view k) { return e.endpoint < k; });
    return *it;
  };
  for (const auto& p : pairs_) {
    const auto& verdicts = acc.find(p.endpoint)->second.noise;
    PairResult r = p;
    r.differences.clear();
    for (const auto& d : p.differences) {
      auto v = verdicts.find(d.pattern);
      if (v != verdicts.end() && v->second)
        ++r.noise_differences;
      else
        r.differences.push_back(d);
    }
    auto& er = endpoint_result(p.endpoint);
    if (r.differences.empty()) {
      ++er.noise_suppressed;
    } else {
      ++er.different;
      out.differing.push_back(std::move(r));
    }
  }
  for (const auto& e : out.endpoints) {
    out.compared += e.compared;
    out.identical += e.identical;
    out.different += e.different;
    out.noise_suppressed += e.noise_suppressed;
  }
  return out;
}

}  // namespace retake::diff
