// Internal to retake_store: the Cap'n Proto form of a Flow (src/store/flow.capnp).
//
// Bodies are not part of the encoding: the caller hashes them into `bodies` and passes the
// digests; decoding returns the digests so the caller can load the bytes. No RocksDB here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "flow/flow.h"
#include "flow/status.h"

namespace retake::store {

inline constexpr size_t kDigestSize = 32;

// The SHA-256 of bytes, raw (32 bytes).
std::string sha256(std::string_view bytes);

// A decoded flow whose Body::data fields are empty; the digests say where the bytes are
// ("" when the body stored no bytes).
struct DecodedFlow {
  flow::Flow flow;
  std::string request_digest;
  std::string response_digest;
  uint64_t request_stored = 0;  // how many bytes `bodies` must hold under the digest
  uint64_t response_stored = 0;
};

// Encodes flow with body references. request_digest/response_digest: sha256 of the
// corresponding Body::data, or "" when data is empty.
std::string encode_flow(const flow::Flow& flow, std::string_view request_digest,
                        std::string_view response_digest);

// Decodes untrusted bytes (a damaged file must not crash us): bounded traversal and nesting,
// every Cap'n Proto failure and every out-of-range enum becomes corruption naming `id`.
Result<DecodedFlow> decode_flow(std::string_view bytes, uint64_t id);

}  // namespace retake::store
