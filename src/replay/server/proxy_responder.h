// retake::replay::server::ProxyResponder: server replay inside the recording proxy
// (`retake record --server-replay SESSION`). The recorder asks it about every request once the
// request is read whole; it answers from a ServerReplay's index (built once at start, so no
// lookup touches the disk) and leaves misses to the ServerReplay's on-miss policy.
//
// Depends on src/record (the Responder seam) and the server replay. Thread-safe: the recorder
// calls it from its network threads.
#pragma once

#include "record/recorder.h"
#include "replay/server/server_replay.h"

namespace retake::replay::server {

class ProxyResponder final : public record::Responder {
 public:
  // `replay` must outlive the responder; it is never start()ed (the proxy does the I/O).
  explicit ProxyResponder(ServerReplay& replay) : replay_(replay) {}

  // Hit: respond with the refreshed recording; origin = its flow id; tag "served".
  // Miss: tag "miss", then per on-miss: 404/502 respond with the explanation, forward goes to
  // the request's real upstream (recorded like any forwarded flow), kill closes the connection.
  record::ReplayAnswer answer(const flow::Flow& flow) override;

 private:
  ServerReplay& replay_;
};

}  // namespace retake::replay::server
