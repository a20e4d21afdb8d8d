// Import and export of flows between files and the store (HAR, mitmproxy flow files, retake
// JSON; curl and raw HTTP for one flow). Reached by the CLI and, later, the gRPC API.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "flow/status.h"
#include "ops/select.h"
#include "store/flow_store.h"

namespace retake::ops {

enum class ExportFormat { har, json, curl, raw };

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
// The same with the file's bytes in hand (a daemon receiving an upload): `request.path` only
// names the source in messages and the default session. At most kMaxImportBytes.
Result<ImportReport> import_bytes(store::FlowStore& store, const ImportRequest& request,
                                  std::string_view bytes);
inline constexpr size_t kMaxImportBytes = size_t{1} << 30;
// What import_file reads: the file (or standard input for "-"), at most kMaxImportBytes.
Result<std::string> read_import_input(const std::string& path);
// Export format by name: "har", "json", "curl", "raw"; invalid_argument otherwise.
Result<ExportFormat> parse_export_format(std::string_view name);
const char* export_format_name(ExportFormat format);


// Renders the selected flows. curl and raw take exactly one flow (invalid_argument otherwise,
// not_found when the selection is empty); har and json take any number.
Result<std::string> export_flows(store::FlowStore& store, const Selection& selection,
                                 ExportFormat format);

}  // namespace retake::ops
