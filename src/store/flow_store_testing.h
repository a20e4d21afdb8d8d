// Test hooks for retake::store: reach under the store's checks to plant damage or hand-made
// state (a garbage flow value, a schema version from the future). Tests only; never call
// from product code.
#pragma once

#include <string>
#include <string_view>

#include "store/flow_store.h"

namespace retake::store::testing {

// Writes value under key in one column family ("flows", "bodies", "index" or "meta") of a
// store opened for writing, bypassing encoding and every invariant.
// invalid_argument for an unknown family; failed_precondition for a read-only store.
Status write_raw(FlowStore& store, std::string_view column_family, std::string_view key,
                 std::string_view value);

// Deletes key from one column family, bypassing every invariant (same errors as write_raw).
Status remove_raw(FlowStore& store, std::string_view column_family, std::string_view key);

// The `flows` key of an id (8 bytes, big-endian).
std::string flow_key(uint64_t id);

// The `index` key of one entry: <tag> \0 <value> \0 <be64 id> (see flow_store.h).
std::string index_key(char tag, std::string_view value, uint64_t id);

// The `meta` key holding the schema version.
std::string schema_version_key();

// How many index streams scans in this process have left out of an intersection because they
// were far wider than its narrowest stream (their conditions then checked on decoded flows).
uint64_t streams_left_out();

}  // namespace retake::store::testing
