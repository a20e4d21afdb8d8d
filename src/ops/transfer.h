// Import and export of flows between files and the store (HAR, mitmproxy flow files, retake
// JSON; curl and raw HTTP for one flow). Reached by the CLI and, later, the gRPC API.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "flow/status.h"
#include "ops/select.h"
#include "store/flow_store.h"

namespace retake::ops {

struct ImportRequest {
  std::string path;      // the file to import; "-" reads standard input
  // The session the flows land in. Default: "" = "import-<file name>-<YYYYmmdd-HHMMSS>".
  // Imports always create a new session: an existing name is already_exists.
  std::string session;
  // Import the good entries of a partly bad file and report the bad ones. Default: false
  // (the first bad entry fails the import and nothing is written).
  bool skip_bad = false;
};

struct ImportReport {
  std::string format;   // "har", "mitmproxy", "retake-json"
  std::string session;
  uint64_t imported = 0;
  std::vector<std::string> skipped;          // one message per bad entry (with skip_bad)
  std::map<std::string, size_t> unsupported; // flow kinds retake does not hold, counted
};

// Reads, detects the format, parses, and writes every flow in ONE store batch: a failed import
// leaves the store exactly as it was. Errors: not_found / io_error for the file,
// parse_error (with the position) for bad content, already_exists for the session name.
Result<ImportReport> import_file(store::FlowStore& store, const ImportRequest& request);

enum class ExportFormat { har, json, curl, raw };

// Renders the selected flows. curl and raw take exactly one flow (invalid_argument otherwise,
// not_found when the selection is empty); har and json take any number.
Result<std::string> export_flows(store::FlowStore& store, const Selection& selection,
                                 ExportFormat format);

}  // namespace retake::ops
