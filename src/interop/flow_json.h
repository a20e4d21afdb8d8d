// Internal to src/interop: the Boost.JSON forms behind flow_to_json / flow_from_json, shared
// with the HAR exporter (which embeds parts of them under "_retake").
#pragma once

#include "interop/interop.h"
#include "interop/json_reader.h"

namespace retake::interop::detail {

boost::json::object flow_to_json_value(const flow::Flow& flow, const JsonOptions& options);
// Throws BadInput naming the path on a wrong type or value.
flow::Flow flow_from_json_value(const JsonAt& at);

}  // namespace retake::interop::detail
