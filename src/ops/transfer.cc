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

// already_exists unless `session` is new: imports always create their session.
static Status check_new_session(store::FlowStore& store, const std::string& session) {
  store::ScanOptions scope;
  scope.session = session;
  auto existing = store.count(scope);
  if (!existing) return existing.status();
  if (*existing > 0)
    return Status(Errc::already_exists, "session '" + session + "' already has " +
                                            std::to_string(*existing) +
                                            " flows; imports go into a new session");
  return {};
}

Result<ImportReport> import_file(store::FlowStore& store, const ImportRequest& request) {
  ImportRequest named = request;
  if (named.session.empty()) named.session = default_session(request.path);
  // Before reading a file of up to 1 GiB: a taken name fails at once.
  if (auto st = check_new_session(store, named.session); !st.ok()) return st;
  auto bytes = read_input(request.path);
  if (!bytes) return bytes.status();
  return import_bytes(store, named, *bytes);
}

Result<ImportReport> import_bytes(store::FlowStore& store, const ImportRequest& request,
                                  std::string_view bytes) {
  if (bytes.size() > kMaxImportBytes)
    return Status(Errc::resource_exhausted, request.path + " is larger than 1 GiB");
  ImportReport report;
  report.session = request.session.empty() ? default_session(request.path) : request.session;
  if (auto st = check_new_session(store, report.session); !st.ok()) return st;
  interop::ImportOptions options;
  options.skip_bad = request.skip_bad;
  options.session = report.session;
  auto parsed = interop::import_any(bytes, options);
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

Result<std::string> read_import_input(const std::string& path) {
  return read_input(path);
}

const char* export_format_name(ExportFormat format) {
  switch (format) {
    case ExportFormat::har: return "har";
    case ExportFormat::json: return "json";
    case ExportFormat::curl: return "curl";
    case ExportFormat::raw: return "raw";
  }
  return "?";
}

Result<ExportFormat> parse_export_format(std::string_view name) {
  if (name == "har") return ExportFormat::har;
  if (name == "json") return ExportFormat::json;
  if (name == "curl") return ExportFormat::curl;
  if (name == "raw") return ExportFormat::raw;
  return Status(Errc::invalid_argument,
                "unknown export format '" + std::string(name) + "' (har, json, curl, raw)");
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
