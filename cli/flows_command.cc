// `retake flows ...` and `retake sessions`: read (and delete) what the store holds.
// Reads open the store read-only, so they work while `retake record` writes to it.
#include <boost/json.hpp>

#include <fstream>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include "cli/command.h"
#include "cli/remote.h"
#include "control/client.h"
#include "interop/interop.h"
#include "ops/select.h"
#include "ops/transfer.h"
#include "replay/client/run_store.h"
#include "store/flow_store.h"

namespace retake::cli {

namespace {

Result<std::unique_ptr<store::FlowStore>> open_store(const std::string& db, bool read_only) {
  store::StoreOptions options;
  options.path = resolve_db(db);
  options.read_only = read_only;
  options.create_if_missing = !read_only;
  return store::FlowStore::open(options);
}

// --remote: act through a `retake daemon` instead of opening the store; the daemon runs the
// same operations (ops::select_flows, FlowStore) on its store.
std::unique_ptr<control::RemoteFlows> connect_remote(const RemoteArgs& remote) {
  return connected(control::RemoteFlows::connect(remote_options(remote)));
}

uint64_t response_size(const flow::Flow& f) { return f.response ? f.response->body.size : 0; }

std::string status_text(const flow::Flow& f) {
  if (f.kind == flow::FlowKind::tunnel) return "tunnel";
  if (f.kind == flow::FlowKind::tls_failed) return "tls-failed";
  if (f.response) return std::to_string(f.response->status);
  if (f.error) return "error";
  return "-";
}

boost::json::object summary_json(const flow::Flow& f) {
  boost::json::object o;
  o["id"] = std::to_string(f.id);
  o["session"] = f.session;
  o["time_ns"] = f.timing.request_started ? f.timing.request_started : f.timing.client_connected;
  o["method"] = f.request.method;
  o["url"] = f.request.url();
  if (f.response) o["status"] = f.response->status;
  else o["status"] = nullptr;
  o["size"] = response_size(f);
  o["duration_ns"] = f.duration();
  if (f.error) {
    o["error"] = {{"kind", flow::error_kind_name(f.error->kind)}, {"message", f.error->message}};
  }
  if (!f.run.empty()) o["run"] = f.run;
  if (f.origin) o["origin"] = std::to_string(f.origin);
  return o;
}

struct ListArgs {
  std::string db;
  RemoteArgs remote;
  std::string filter;
  std::string session;
  size_t limit = 0;
  bool json = false;
  bool reverse = false;
};

int run_list(const ListArgs& args) {
  ops::Selection selection;
  selection.filter = args.filter;
  selection.session = args.session;
  selection.limit = args.limit;
  selection.reverse = args.reverse;
  if (auto st = ops::validate(selection); !st.ok()) throw UsageError("filter: " + st.message());
  auto print = [&](const flow::Flow& f) {
    if (args.json) {
      std::cout << boost::json::serialize(summary_json(f)) << '\n';
    } else {
      std::cout << f.id << "  "
                << format_time_ns(f.timing.request_started ? f.timing.request_started
                                                           : f.timing.client_connected)
                << "  " << f.request.method << ' ' << f.request.url() << "  " << status_text(f)
                << "  " << format_size(response_size(f)) << "  " << format_duration_ns(f.duration());
      if (f.error) std::cout << "  [" << flow::error_kind_name(f.error->kind) << "]";
      std::cout << '\n';
    }
    return static_cast<bool>(std::cout);
  };
  if (!args.remote.address.empty()) {
    if (auto status = connect_remote(args.remote)->select(selection, print); !status.ok())
      return fail(status);
    return kExitOk;
  }
  auto store = open_store(args.db, true);
  if (!store) return fail(store.status());
  auto status = ops::select_flows(**store, selection, print);
  if (!status.ok()) return fail(status);
  return kExitOk;
}

bool printable(std::string_view data) {
  for (unsigned char c : data)
    if (c == 0 || (c < 0x20 && c != '\n' && c != '\r' && c != '\t')) return false;
  return true;
}

void print_headers(const flow::Headers& headers) {
  for (const auto& h : headers) std::cout << h.name << ": " << h.value << "\r\n";
}

void print_body(const flow::Body& body, bool raw) {
  if (body.data.empty() && body.size == 0) return;
  if (raw || printable(body.data)) {
    std::cout << body.data;
    if (!body.data.empty() && body.data.back() != '\n') std::cout << '\n';
  } else {
    std::cout << "[" << body.data.size() << " bytes of binary body; --raw prints them]\n";
  }
  if (body.truncated)
    std::cout << "[body truncated: " << body.data.size() << " of " << body.size
              << " bytes stored]\n";
}

struct ShowArgs {
  std::string db;
  RemoteArgs remote;
  uint64_t id = 0;
  bool raw = false;
  bool json = false;
};

Result<flow::Flow> get_flow(const std::string& db, const RemoteArgs& remote, uint64_t id) {
  if (!remote.address.empty()) return connect_remote(remote)->get(id);
  auto store = open_store(db, true);
  if (!store) return store.status();
  return (*store)->get(id);
}

int run_show(const ShowArgs& args) {
  auto found = get_flow(args.db, args.remote, args.id);
  if (!found) return fail(found.status());
  const flow::Flow& f = *found;
  if (args.json) {
    std::cout << interop::flow_to_json(f, interop::JsonOptions{}) << '\n';
    return kExitOk;
  }
  bool raw = args.raw || !isatty(STDOUT_FILENO);
  std::cout << "# flow " << f.id << "  session " << f.session << "  mode " << f.mode
            << "  client " << f.client_address;
  if (!f.upstream_address.empty()) std::cout << "  upstream " << f.upstream_address;
  if (!f.run.empty()) std::cout << "  run " << f.run << "  origin " << f.origin;
  std::cout << "\n";
  for (auto [side, t] : {std::pair{"client", &f.client_tls}, std::pair{"upstream", &f.upstream_tls}}) {
    if (!t->present && t->sni.empty()) continue;
    std::cout << "# " << side << " TLS:";
    if (!t->version.empty()) std::cout << ' ' << t->version;
    if (!t->cipher.empty()) std::cout << ' ' << t->cipher;
    if (!t->sni.empty()) std::cout << "  sni " << t->sni;
    if (!t->alpn.empty()) std::cout << "  alpn " << t->alpn;
    if (!t->peer_subject.empty()) std::cout << "  cert " << t->peer_subject;
    if (!t->peer_issuer.empty()) std::cout << "  issuer " << t->peer_issuer;
    std::cout << '\n';
  }
  const auto& rq = f.request;
  if (f.kind == flow::FlowKind::tls_failed)
    std::cout << "# TLS handshake with the client failed (" << rq.authority << ")\n";
  if (f.kind == flow::FlowKind::tunnel) {
    std::cout << "# tunnel to " << rq.authority << ": " << f.bytes_from_client
              << " bytes from client, " << f.bytes_from_upstream << " bytes from upstream\n";
  }
  if (!rq.method.empty()) {
    std::cout << rq.method
              << ' '
              // A tunnel's target is its authority; an extended CONNECT (WebSocket over
              // HTTP/2) has a path like any request.
              << (rq.method == "CONNECT" && rq.path.empty() ? rq.authority
                                                            : (rq.path.empty() ? "/" : rq.path))
              << ' ' << (rq.http_version.empty() ? "HTTP/1.1" : rq.http_version) << "\r\n";
    print_headers(rq.headers);
    std::cout << "\r\n";
    print_body(rq.body, raw);
  }
  if (f.response) {
    const auto& rs = *f.response;
    std::cout << "\n"
              << (rs.http_version.empty() ? "HTTP/1.1" : rs.http_version) << ' ' << rs.status
              << ' ' << rs.reason << "\r\n";
    print_headers(rs.headers);
    std::cout << "\r\n";
    print_body(rs.body, raw);
    if (!rs.trailers.empty()) {
      std::cout << "# trailers\n";
      print_headers(rs.trailers);
    }
  }
  if (f.websocket) {
    std::cout << "\n# websocket: " << f.websocket->messages.size() << " messages\n";
    for (const auto& m : f.websocket->messages) {
      std::cout << (m.from_client ? "> " : "< ") << format_time_ns(m.timestamp) << " opcode "
                << int(m.opcode) << ": ";
      if (printable(m.payload) || raw) std::cout << m.payload;
      else std::cout << "[" << m.payload.size() << " bytes binary]";
      if (m.truncated) std::cout << " [truncated at the body cap]";
      if (m.compressed) std::cout << " [permessage-deflate]";
      std::cout << '\n';
    }
    if (f.websocket->close_code)
      std::cout << "# closed by " << (f.websocket->closed_by_client ? "client" : "server")
                << ": " << f.websocket->close_code << ' ' << f.websocket->close_reason << '\n';
  }
  if (f.error) {
    std::cout << "\n# error: " << flow::error_kind_name(f.error->kind) << ": " << f.error->message
              << '\n';
  }
  return kExitOk;
}

struct ImportArgs {
  std::string db;
  RemoteArgs remote;
  std::string path;
  std::string session;
  bool skip_bad = false;
};

int run_import(const ImportArgs& args) {
  ops::ImportRequest request{args.path, args.session, args.skip_bad};
  Result<ops::ImportReport> report = Status(Errc::internal, "not run");
  if (!args.remote.address.empty()) {
    // The file is read here and uploaded: the daemon never opens a client's path.
    auto bytes = ops::read_import_input(args.path);
    if (!bytes) return fail(bytes.status());
    report = connect_remote(args.remote)->import_flows(request, *bytes);
  } else {
    auto store = open_store(args.db, false);
    if (!store) return fail(store.status());
    report = ops::import_file(**store, request);
  }
  if (!report) return fail(report.status());
  for (const auto& skipped : report->skipped) std::cerr << "retake: skipped " << skipped << '\n';
  for (const auto& [kind, count] : report->unsupported)
    std::cerr << "retake: skipped " << count << " " << kind << " flow(s) (not supported)\n";
  std::cerr << "retake: imported " << report->imported << " flows (" << report->format
            << ") into session '" << report->session << "'\n";
  return kExitOk;
}

struct ExportArgs {
  std::string db;
  RemoteArgs remote;
  std::string filter;
  std::string session;
  std::vector<uint64_t> ids;
  std::string har;
  std::string json;
  bool curl = false;
  bool raw = false;
};

int run_export(const ExportArgs& args) {
  int formats = !args.har.empty() + !args.json.empty() + args.curl + args.raw;
  if (formats != 1) throw UsageError("flows export: choose one of --har FILE, --json FILE, --curl, --raw");
  ops::Selection selection;
  selection.filter = args.filter;
  selection.session = args.session;
  selection.ids = args.ids;
  if (auto st = ops::validate(selection); !st.ok()) throw UsageError("filter: " + st.message());
  auto format = !args.har.empty() ? ops::ExportFormat::har
                : !args.json.empty() ? ops::ExportFormat::json
                : args.curl         ? ops::ExportFormat::curl
                                    : ops::ExportFormat::raw;
  Result<std::string> text = std::string();
  if (!args.remote.address.empty()) {
    text = connect_remote(args.remote)->export_flows(selection, format);
  } else {
    auto store = open_store(args.db, true);
    if (!store) return fail(store.status());
    text = ops::export_flows(**store, selection, format);
  }
  if (!text) return fail(text.status());
  std::string out = !args.har.empty() ? args.har : args.json;
  if (out.empty() || out == "-") {
    std::cout << *text;
    if (!text->empty() && text->back() != '\n') std::cout << '\n';
    return std::cout ? kExitOk : kExitFailure;
  }
  std::ofstream file(out, std::ios::binary | std::ios::trunc);
  file << *text;
  file.close();
  if (!file) return fail("cannot write " + out);
  return kExitOk;
}

struct DeleteArgs {
  std::string db;
  RemoteArgs remote;
  std::vector<uint64_t> ids;
};

int run_delete(const DeleteArgs& args) {
  if (!args.remote.address.empty()) {
    if (auto st = connect_remote(args.remote)->remove(args.ids); !st.ok()) return fail(st);
    std::cerr << "retake: deleted " << args.ids.size() << " flow(s)\n";
    return kExitOk;
  }
  auto store = open_store(args.db, false);
  if (!store) return fail(store.status());
  for (auto id : args.ids) {
    auto found = (*store)->get(id, false);
    if (!found) return fail(found.status());
  }
  if (auto st = (*store)->remove(args.ids); !st.ok()) return fail(st);
  std::cerr << "retake: deleted " << args.ids.size() << " flow(s)\n";
  return kExitOk;
}

struct SessionsArgs {
  std::string db;
  RemoteArgs remote;
  bool json = false;
};

Result<std::vector<store::SessionInfo>> list_sessions(const SessionsArgs& args) {
  if (!args.remote.address.empty()) return connect_remote(args.remote)->sessions();
  auto store = open_store(args.db, true);
  if (!store) return store.status();
  return (*store)->sessions();
}

int run_sessions(const SessionsArgs& args) {
  auto sessions = list_sessions(args);
  if (!sessions) return fail(sessions.status());
  for (const auto& s : *sessions) {
    if (args.json) {
      boost::json::object o{{"name", s.name},
                            {"flows", s.flow_count},
                            {"first_ns", s.first_ns},
                            {"last_ns", s.last_ns}};
      std::cout << boost::json::serialize(o) << '\n';
    } else {
      std::cout << s.name << "  " << s.flow_count << " flows  " << format_time_ns(s.first_ns)
                << " .. " << format_time_ns(s.last_ns) << '\n';
    }
  }
  return kExitOk;
}

struct RunsArgs {
  std::string db;
  RemoteArgs remote;
  std::string session;
  bool json = false;
};

Result<std::vector<replay::RunSummary>> list_runs(const RunsArgs& args) {
  if (!args.remote.address.empty()) return connect_remote(args.remote)->runs(args.session);
  auto store = open_store(args.db, true);
  if (!store) return store.status();
  return replay::list_runs(**store, args.session);
}

int run_runs(const RunsArgs& args) {
  auto runs = list_runs(args);
  if (!runs) return fail(runs.status());
  for (const auto& r : *runs) {
    if (args.json) {
      std::cout << replay::run_summary_json(r) << '\n';
      continue;
    }
    std::cout << r.run_id << "  " << r.session << " -> " << r.target << "  "
              << format_time_ns(r.started_ns) << "  "
              << format_duration_ns(r.ended_ns - r.started_ns) << "  " << r.completed << '/'
              << r.total << " answered";
    if (r.mismatches) std::cout << ", " << r.mismatches << " status mismatches";
    if (r.transport_errors) std::cout << ", " << r.transport_errors << " transport errors";
    if (r.interrupted) std::cout << "  (interrupted)";
    std::cout << '\n';
  }
  return kExitOk;
}

}  // namespace

void add_flows_commands(CLI::App& app, Action& action) {
  auto* flows = app.add_subcommand("flows", "List, show and manage recorded flows");
  flows->require_subcommand(1);

  auto list_args = std::make_shared<ListArgs>();
  auto* list = flows->add_subcommand("list", "One line per flow: id, time, method, URL, status, size, duration");
  list->add_option("filter", list_args->filter,
                   "Filter expression (mitmproxy syntax: ~m POST & ~c 5xx, ~d example.com, ...)")
      ->type_name("FILTER");
  add_db_option(*list, list_args->db);
  add_remote_options(*list, list_args->remote);
  list->add_option("--session", list_args->session, "Only flows of this session")->type_name("NAME");
  list->add_option("--limit", list_args->limit, "At most N flows")->type_name("N");
  list->add_flag("--json", list_args->json, "One JSON object per line (JSON Lines)");
  list->add_flag("--reverse", list_args->reverse, "Newest first");
  list->callback([list_args, &action] { action = [list_args] { return run_list(*list_args); }; });

  auto show_args = std::make_shared<ShowArgs>();
  auto* show = flows->add_subcommand("show", "Print one flow's request and response as raw HTTP");
  add_db_option(*show, show_args->db);
  add_remote_options(*show, show_args->remote);
  show->add_option("id", show_args->id, "Flow id (from `retake flows list`)")->required();
  show->add_flag("--raw", show_args->raw, "Print binary bodies as they are");
  show->callback([show_args, &action] { action = [show_args] { return run_show(*show_args); }; });

  show->add_flag("--json", show_args->json, "The whole flow as one JSON document");

  auto import_args = std::make_shared<ImportArgs>();
  auto* imp = flows->add_subcommand(
      "import", "Import a HAR file, a mitmproxy flow file (mitmdump -w) or retake JSON into a new session");
  add_db_option(*imp, import_args->db);
  add_remote_options(*imp, import_args->remote);
  imp->add_option("file", import_args->path, "File to import (- for standard input)")->required();
  imp->add_option("--session", import_args->session,
                  "Session to create (default: import-<file>-<time>)")
      ->type_name("NAME");
  imp->add_flag("--skip-bad", import_args->skip_bad,
                "Import the good entries of a partly bad file and list the bad ones");
  imp->callback([import_args, &action] { action = [import_args] { return run_import(*import_args); }; });

  auto export_args = std::make_shared<ExportArgs>();
  auto* exp = flows->add_subcommand("export", "Export flows as HAR or JSON, or one flow as a curl command or raw HTTP");
  add_db_option(*exp, export_args->db);
  add_remote_options(*exp, export_args->remote);
  exp->add_option("filter", export_args->filter, "Filter expression choosing the flows")
      ->type_name("FILTER");
  exp->add_option("--session", export_args->session, "Only flows of this session")->type_name("NAME");
  exp->add_option("--id", export_args->ids, "Only this flow (repeatable)")->type_name("ID");
  exp->add_option("--har", export_args->har, "Write HAR 1.2 to FILE (- for standard output)")->type_name("FILE");
  exp->add_option("--json", export_args->json, "Write retake JSON to FILE (- for standard output)")->type_name("FILE");
  exp->add_flag("--curl", export_args->curl, "Print one flow as a curl command");
  exp->add_flag("--raw", export_args->raw, "Print one flow as raw HTTP");
  exp->callback([export_args, &action] { action = [export_args] { return run_export(*export_args); }; });

  auto delete_args = std::make_shared<DeleteArgs>();
  auto* del = flows->add_subcommand("delete", "Delete flows by id");
  add_db_option(*del, delete_args->db);
  add_remote_options(*del, delete_args->remote);
  del->add_option("ids", delete_args->ids, "Flow ids")->required();
  del->callback([delete_args, &action] { action = [delete_args] { return run_delete(*delete_args); }; });
}

void add_sessions_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<SessionsArgs>();
  auto* cmd = app.add_subcommand("sessions", "List sessions with their flow counts and times");
  add_db_option(*cmd, args->db);
  add_remote_options(*cmd, args->remote);
  cmd->add_flag("--json", args->json, "One JSON object per line");
  cmd->callback([args, &action] { action = [args] { return run_sessions(*args); }; });
}

void add_runs_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<RunsArgs>();
  auto* cmd = app.add_subcommand("runs", "List client replay runs with their results");
  add_db_option(*cmd, args->db);
  add_remote_options(*cmd, args->remote);
  cmd->add_option("--session", args->session, "Only runs that replayed this session")
      ->type_name("NAME");
  cmd->add_flag("--json", args->json, "One JSON object per line (the stored run summary)");
  cmd->callback([args, &action] { action = [args] { return run_runs(*args); }; });
}

}  // namespace retake::cli
