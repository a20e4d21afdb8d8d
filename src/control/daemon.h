// retake::control: the gRPC control API (proto/retake/v1: services Recorder, Flows, Replay, Diff)
// and the Daemon that hosts it. The daemon owns the flow store (opened for writing) and the one
// store writer that every recorder it starts shares; the services only translate, call the record,
// store and ops libraries, and stream.
//
// Depends on record, store, ops and flow. gRPC and protobuf types stay out of this header
// (the generated code lives in the `retake_proto` library, compiled once).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "flow/status.h"

namespace retake::control {

struct DaemonOptions {
  // "HOST:PORT" (or "[v6]:PORT") for the control API; port 0 picks an ephemeral port.
  // A host other than a loopback address (127.0.0.0/8, ::1, "localhost") is refused unless a
  // token or mutual TLS is configured. Default: 127.0.0.1:7070.
  std::string listen = "127.0.0.1:7070";
  // Directory of the flow store, opened for writing (created when missing). Required.
  std::string db_path;
  // Bearer token every call must carry ("authorization: Bearer <token>"); "" for none.
  // Compared in constant time. At most 4096 bytes, no whitespace. Default: "".
  std::string token;
  // PEM server certificate chain and private key: serve TLS instead of plaintext. Both or
  // neither. Default: "" (plaintext).
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // PEM CA bundle: with TLS, require and verify a client certificate signed by it (mutual
  // TLS). Default: "" (no client certificate asked).
  std::string tls_client_ca_pem;
  // Largest request message accepted; larger ones fail with RESOURCE_EXHAUSTED before any
  // service sees them. Default: 16 MiB.
  size_t max_receive_bytes = 16u << 20;
  // Disk space the flow writer keeps free (store::WriterOptions::min_free_bytes).
  // Default: 64 MiB.
  uint64_t min_free_bytes = 64u << 20;
};

// The control daemon: a gRPC server (Recorder, Flows, Replay, Diff, health, reflection)
// over one FlowStore and one FlowWriter. Thread-safe; calls run on gRPC's threads.
class Daemon {
 public:
  virtual ~Daemon() = default;

  // Validates the options, opens the store and starts serving on background threads.
  // Errors (nothing is bound when any is returned):
  //   invalid_argument     malformed listen address, certificate without key, bad token
  //   failed_precondition  a non-loopback address without token or mutual TLS (refused before
  //                        binding)
  //   unavailable          the address could not be bound (in use, not local)
  //   whatever FlowStore::open reports (io_error, version_mismatch, ...)
  static Result<std::unique_ptr<Daemon>> start(const DaemonOptions& options);

  // The bound "host:port" (the port chosen when 0 was asked).
  virtual const std::string& address() const = 0;

  // Stops every recorder (in-flight exchanges get a 2 s grace), drains the store writer, ends
  // the WatchFlows streams, then shuts the server down (calls in flight get 2 s) and closes the
  // store. Idempotent; also done by the destructor.
  virtual void stop() = 0;
};

// True for 127.0.0.0/8, ::1 (with or without brackets), ::ffff:127.x and "localhost".
bool is_loopback_host(std::string_view host);

}  // namespace retake::control
