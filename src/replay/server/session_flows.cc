#include "replay/server/session_flows.h"

namespace retake::replay::server {

Result<std::vector<flow::Flow>> load_session_flows(store::FlowStore& store,
                                                   const std::string& session,
                                                   const query::Filter* filter, size_t max_flows) {
  auto sessions = store.sessions();
  if (!sessions.ok()) return sessions.status();
  bool known = false;
  std::string names;
  for (size_t i = 0; i < sessions->size(); ++i) {
    const auto& s = (*sessions)[i];
    if (s.name == session) known = true;
    if (i < 5) names += (i ? ", " : "") + s.name;
  }
  if (!known) {
    std::string message = "no session '" + session + "' in the store at " + store.path();
    message += sessions->empty()
                   ? " (it holds no sessions)"
                   : " (sessions: " + names + (sessions->size() > 5 ? ", ..." : "") + ")";
    return Status(Errc::not_found, message);
  }
  std::vector<flow::Flow> flows;
  size_t with_response = 0;
  bool too_many = false;
  store::ScanOptions scan;
  scan.session = session;
  // A replay run's flows live in the session they replayed (Flow::run set): they are what a
  // target answered to retake, not what the recorded server said. Never serve them.
  scan.recorded_only = true;
  auto status = store.scan(scan, [&](flow::Flow& f) {
    if (filter && !filter->matches(f)) return true;
    if (flows.size() >= max_flows) {
      too_many = true;
      return false;
    }
    if (f.response) ++with_response;
    flows.push_back(std::move(f));
    return true;
  });
  if (!status.ok()) return status;
  if (too_many)
    return Status(Errc::resource_exhausted, "session '" + session + "' has more than " +
                                                std::to_string(max_flows) +
                                                " flows to serve; narrow it with a filter");
  if (with_response == 0)
    return Status(Errc::failed_precondition,
                  "session '" + session + "' has no recorded response to serve" +
                      (filter ? " among the flows the filter keeps (" +
                                    std::to_string(flows.size()) + " kept)"
                              : ""));
  return flows;
}

Result<std::unique_ptr<ServerReplay>> serve_session(store::FlowStore& store,
                                                    const std::string& session,
                                                    ServeOptions options,
                                                    const query::Filter* filter) {
  auto flows = load_session_flows(store, session, filter);
  if (!flows.ok()) return flows.status();
  return ServerReplay::create(std::move(flows.value()), std::move(options));
}

}  // namespace retake::replay::server
