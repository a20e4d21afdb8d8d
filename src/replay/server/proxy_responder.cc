#include "replay/server/proxy_responder.h"

namespace retake::replay::server {

record::ReplayAnswer ProxyResponder::answer(const flow::Flow& flow) {
  using Action = record::ReplayAnswer::Action;
  auto decision = replay_.decide(flow.request, flow::now_ns());
  record::ReplayAnswer out;
  out.origin = decision.origin;
  if (!decision.miss) {
    out.action = Action::respond;
    out.response = std::move(decision.response);
    out.delay = decision.delay;
    out.tags = {"served"};
    return out;
  }
  out.tags = {"miss"};
  switch (decision.kind) {
    case ServerReplay::Decision::Kind::forward:
      out.action = Action::forward;
      out.tags.push_back("forwarded");
      break;
    case ServerReplay::Decision::Kind::kill:
      out.action = Action::kill;
      break;
    case ServerReplay::Decision::Kind::respond:
      out.action = Action::respond;
      out.response = std::move(decision.response);
      break;
  }
  return out;
}

}  // namespace retake::replay::server
