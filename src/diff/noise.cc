#include "diff/noise.h"

#include <boost/json.hpp>

#include <algorithm>
#include <set>

namespace retake::diff {

namespace json = boost::json;

bool is_noise(double c, double n, const NoiseThresholds& t) {
  bool real = (c - n >= t.absolute) && (c / std::max(n, t.epsilon) >= t.relative);
  return !real;
}

void NoiseModel::add_baseline(std::string_view endpoint, const Comparison& pair) {
  auto it = endpoints_.find(endpoint);
  if (it == endpoints_.end()) it = endpoints_.emplace(std::string(endpoint), EndpointNoise{}).first;
  auto& e = it->second;
  ++e.comparisons;
  // Each pattern once per comparison: ten differing elements of one array are one event.
  std::set<std::string_view> seen;
  for (const auto& d : pair.differences) {
    if (!seen.insert(d.pattern).second) continue;
    auto p = e.paths.find(d.pattern);
    if (p == e.paths.end())
      e.paths.emplace(d.pattern, 1);
    else
      ++p->second;
  }
}

uint64_t NoiseModel::comparisons(std::string_view endpoint) const {
  auto it = endpoints_.find(endpoint);
  return it == endpoints_.end() ? 0 : it->second.comparisons;
}

uint64_t NoiseModel::differences(std::string_view endpoint, std::string_view pattern) const {
  auto it = endpoints_.find(endpoint);
  if (it == endpoints_.end()) return 0;
  auto p = it->second.paths.find(pattern);
  return p == it->second.paths.end() ? 0 : p->second;
}

double NoiseModel::rate(std::string_view endpoint, std::string_view pattern) const {
  auto n = comparisons(endpoint);
  return n == 0 ? 0.0 : static_cast<double>(differences(endpoint, pattern)) / static_cast<double>(n);
}

void NoiseModel::merge(const NoiseModel& other) {
  for (const auto& [name, e] : other.endpoints_) {
    auto& mine = endpoints_[name];
    mine.comparisons += e.comparisons;
    for (const auto& [p, k] : e.paths) mine.paths[p] += k;
  }
}

std::string NoiseModel::to_json() const {
  json::object root;
  root["version"] = 1;
  json::object eps;
  for (const auto& [name, e] : endpoints_) {
    json::object o;
    o["comparisons"] = e.comparisons;
    json::object paths;
    for (const auto& [p, k] : e.paths) paths[p] = k;
    o["paths"] = std::move(paths);
    eps[name] = std::move(o);
  }
  root["endpoints"] = std::move(eps);
  return json::serialize(root);
}

namespace {
Status bad(std::string what) { return Status(Errc::parse_error, "noise model: " + what); }

std::optional<uint64_t> count_of(const json::value& v) {
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<uint64_t>(v.get_int64());
  return std::nullopt;
}
}  // namespace

Result<NoiseModel> NoiseModel::from_json(std::string_view text) {
  std::error_code ec;
  json::parse_options po;
  po.max_depth = 8;
  auto root = json::parse(text, ec, {}, po);
  if (ec) return bad("not JSON: " + ec.message());
  auto* obj = root.if_object();
  if (!obj) return bad("expected an object");
  auto* version = obj->if_contains("version");
  if (!version || !count_of(*version)) return bad("missing \"version\"");
  if (*count_of(*version) > 1)
    return bad("version " + std::to_string(*count_of(*version)) + " is newer than 1");
  auto* eps_v = obj->if_contains("endpoints");
  if (!eps_v || !eps_v->is_object()) return bad("missing \"endpoints\" object");
  NoiseModel model;
  for (const auto& kv : eps_v->get_object()) {
    std::string name(kv.key());
    auto* e = kv.value().if_object();
    if (!e) return bad("endpoint '" + name + "' is not an object");
    auto* cmp = e->if_contains("comparisons");
    auto comparisons = cmp ? count_of(*cmp) : std::nullopt;
    if (!comparisons) return bad("endpoint '" + name + "': \"comparisons\" must be a count");
    EndpointNoise en;
    en.comparisons = *comparisons;
    if (auto* paths = e->if_contains("paths")) {
      if (!paths->is_object()) return bad("endpoint '" + name + "': \"paths\" must be an object");
      for (const auto& p : paths->get_object()) {
        auto k = count_of(p.value());
        if (!k || *k > en.comparisons)
          return bad("endpoint '" + name + "', path '" + std::string(p.key()) +
                     "': count must be between 0 and comparisons");
        en.paths.emplace(std::string(p.key()), *k);
      }
    }
    model.endpoints_.emplace(std::move(name), std::move(en));
  }
  return model;
}

}  // namespace retake::diff
