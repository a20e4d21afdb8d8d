#include "ops/transfer.h"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "interop/interop.h"

namespace retake::ops {

namespace {

constexpr uint64_t kMaxImportBytes = uint64_t{1} << 30;

Result<std::string> read_input(const std::string& path) {
  std::string bytes;
  if (path == "-") {
    std::ostringstream buffer;
    buffer << std::cin.rdbuf();
    bytes = std::move(buffer).str();
  } else {
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    if (ec) return Status(Errc::not_found, "cannot read " + path + ": " + ec.message());
    if (size > kMaxImportBytes)
      return Status(Errc::resource_exhausted, path + " is larger than 1 GiB");
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(Errc::io_error, "cannot open " + path);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) return Status(Errc::io_error, "error reading " + path);
  }
  if (bytes.size() > kMaxImportBytes)
    return Status(Errc::resource_exhausted, path + " is larger than 1 GiB");
  return bytes;
}

std::string default_session(const std::string& path) {
  std::string stem = path == "-" ? "stdin" : std::filesystem::path(path).stem().string();
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  return "import-" + stem + "-" + stamp;
}

}  // namespace

Result<ImportReport> import_file(store::FlowStore& store, const ImportRequest& request) {
  ImportReport report;
  report.session = request.session.empty() ? default_session(request.path) : request.session;
  auto existing = store.count(store::ScanOptions{.session = report.session});
  if (!existing) return existing.status();
  if (*existing > 0)
    return Status(Errc::already_exists, "session '" + report.session + "' already has " +
                                            std::to_string(*existing) +
                                            " flows; imports go into a new session");

  auto bytes = read_input(request.path);
  if (!bytes) return bytes.status();
  interop::ImportOptions options;
  options.skip_bad = request.skip_bad;
  options.session = report.session;
  auto parsed = interop::import_any(*bytes, options);
  if (!parsed) return Status(parsed.status().code(), request.path + ": " + parsed.status().message());

  report.format = interop::format_name(parsed->format);
  for (const auto& e : parsed->errors) report.skipped.push_back(e.to_string());
  report.unsupported = parsed->unsupported;
  if (!parsed->flows.empty()) {
    auto ids = store.put(parsed->flows);  // one batch: all or nothing
    if (!ids) return ids.status();
    report.imported = ids->size();
  }
  return report;
}

Result<std::string> export_flows(store::FlowStore& store, const Selection& selection,
                                 ExportFormat format) {
  Selection with_bodies = selection;
  with_bodies.with_bodies = true;
  std::vector<flow::Flow> flows;
  bool single = format == ExportFormat::curl || format == ExportFormat::raw;
  auto status = select_flows(store, with_bodies, [&](const flow::Flow& f) {
    flows.push_back(f);
    return !single || flows.size() < 2;
  });
  if (!status.ok()) return status;
  if (single) {
    if (flows.empty()) return Status(Errc::not_found, "no flow matches");
    if (flows.size() > 1)
      return Status(Errc::invalid_argument, "curl and raw export take exactly one flow");
  }
  switch (format) {
    case ExportFormat::har: return interop::export_har(flows);
    case ExportFormat::json: return interop::export_json(flows);
    case ExportFormat::curl: return interop::export_curl(flows.front());
    case ExportFormat::raw: return interop::export_raw_http(flows.front());
  }
  return Status(Errc::internal, "unknown export format");
}

}  // namespace retake::ops
