#include "ops/select.h"

#include "query/filter.h"

namespace retake::ops {

Status validate(const Selection& selection) {
  if (selection.filter.empty()) return {};
  auto parsed = query::Filter::parse(selection.filter);
  return parsed ? Status() : parsed.status();
}

Status select_flows(store::FlowStore& store, const Selection& selection,
                    const std::function<bool(flow::Flow&)>& visit) {
  std::optional<query::Filter> filter;
  if (!selection.filter.empty()) {
    auto parsed = query::Filter::parse(selection.filter);
    if (!parsed) return parsed.status();
    filter = std::move(parsed.value());
  }

  if (!selection.ids.empty()) {
    size_t matched = 0;
    for (uint64_t id : selection.ids) {
      auto found = store.get(id, true);
      if (!found) return found.status();
      if (filter && !filter->matches(*found)) continue;
      if (!selection.session.empty() && found->session != selection.session) continue;
      if (!selection.run.empty() && found->run != selection.run) continue;
      if (selection.recorded_only && !found->run.empty()) continue;
      ++matched;
      if (!visit(*found)) break;
      if (selection.limit && matched >= selection.limit) break;
    }
    return {};
  }

  store::ScanOptions scan;
  scan.session = selection.session;
  scan.run = selection.run;
  scan.recorded_only = selection.recorded_only;
  scan.after_id = selection.after_id;
  scan.reverse = selection.reverse;
  scan.with_bodies = selection.with_bodies || (filter && filter->needs_bodies());
  if (filter) {
    // A hint is a necessary condition: narrowing the scan by it never loses a match.
    const auto& hint = filter->hint();
    if (hint.session) {
      if (!scan.session.empty() && scan.session != *hint.session) return {};
      scan.session = *hint.session;
    }
    if (hint.run) {
      if (!scan.run.empty() && scan.run != *hint.run) return {};
      scan.run = *hint.run;
    }
    if (auto status = hint.exact_status()) {
      scan.status = *status;
    } else {
      scan.status_min = hint.status_min;
      scan.status_max = hint.status_max;
    }
    scan.since_ns = hint.since_ns;
    scan.until_ns = hint.until_ns;
    scan.host_test = filter->host_test();
    scan.method_test = filter->method_test();
  }

  size_t matched = 0;
  return store.scan(scan, [&](flow::Flow& f) {
    if (filter && !filter->matches(f)) return true;
    ++matched;
    if (!visit(f)) return false;
    return selection.limit == 0 || matched < selection.limit;
  });
}

}  // namespace retake::ops
