// Import of mitmproxy flow files: a stream of tnetstring dicts, one per flow, in the shape of
// mitmproxy's get_state() (mitmproxy/http.py, connection.py, websocket.py). Field names and
// version differences follow mitmproxy/io/compat.py: we read versions 7..17 directly (the
// differences that matter are a few renamed keys) and later versions tolerantly.
#include <cmath>
#include <unordered_map>

#include "interop/codec.h"
#include "interop/interop.h"
#include "interop/tnetstring.h"

namespace retake::interop {

using detail::BadInput;
using detail::TValue;

namespace {

// Oldest flow format we read: mitmproxy 5.0 (version 7). Older files used tuple versions and
// different shapes; mitmproxy itself can upgrade them (`mitmdump -nr old -w new`).
constexpr int64_t kOldestVersion = 7;

// A TValue with its path inside the record, for error messages.
struct TAt {
  const TValue* v;
  std::string path;  // "request.headers[2]"; "" for the record itself
  size_t record = 0;

  // Errors read "byte 1234, record 2, request.method: expected bytes or text, found ...".
  [[noreturn]] void fail(const std::string& message) const {
    throw BadInput("byte " + std::to_string(v->offset) + ", record " + std::to_string(record) +
                       (path.empty() ? "" : ", " + path),
                   message);
  }
  std::string wrong(const char* expected) const {
    return std::string("expected ") + expected + ", found " + detail::tvalue_type_name(v->type);
  }
  std::optional<TAt> find(std::string_view key) const {
    if (v->type != TValue::Type::dict) fail(wrong("a dict"));
    const TValue* item = v->find(key);
    if (!item || item->type == TValue::Type::null) return std::nullopt;
    return TAt{item, path.empty() ? std::string(key) : path + "." + std::string(key), record};
  }
  TAt get(std::string_view key) const {
    auto f = find(key);
    if (!f) {
      if (v->find(key)) fail(std::string(key) + " is null");
      fail("missing " + std::string(key));
    }
    return *f;
  }
  std::string_view text() const {
    if (!v->is_text()) fail(wrong("bytes or text"));
    return v->data;
  }
  int64_t integer() const {
    if (v->type != TValue::Type::integer) fail(wrong("an integer"));
    return v->integer;
  }
  double number() const {
    if (v->type == TValue::Type::integer) return static_cast<double>(v->integer);
    if (v->type != TValue::Type::floating) fail(wrong("a number"));
    return v->floating;
  }
  bool boolean() const {
    if (v->type == TValue::Type::boolean) return v->boolean;
    if (v->type == TValue::Type::integer) return v->integer != 0;
    fail(wrong("a boolean"));
  }
  const std::vector<TValue>& list() const {
    if (v->type != TValue::Type::list) fail(wrong("a list"));
    return v->items;
  }
  TAt item(size_t i) const { return TAt{&list()[i], path + "[" + std::to_string(i) + "]", record}; }
};

std::string opt_text(const TAt& at, std::string_view key) {
  auto f = at.find(key);
  return f ? std::string(f->text()) : std::string();
}

// mitmproxy timestamps are float seconds since the epoch; we keep ns.
int64_t opt_time(const TAt& at, std::string_view key) {
  auto f = at.find(key);
  if (!f) return 0;
  double s = f->number();
  if (!std::isfinite(s) || s < 0 || s > 9.0e9) f->fail("timestamp out of range");
  return detail::seconds_to_ns(s);
}

flow::Headers read_headers(const std::optional<TAt>& at) {
  flow::Headers out;
  if (!at) return out;
  const auto& list = at->list();
  for (size_t i = 0; i < list.size(); ++i) {
    auto pair = at->item(i);
    if (pair.list().size() != 2) pair.fail("expected [name, value]");
    out.add(std::string(pair.item(0).text()), std::string(pair.item(1).text()));
  }
  return out;
}

flow::Body read_body(const TAt& msg) {
  flow::Body body;
  if (auto content = msg.find("content")) body.data = std::string(content->text());
  body.size = body.data.size();
  return body;
}

std::string address(const std::optional<TAt>& at) {
  if (!at) return {};
  const auto& list = at->list();
  if (list.size() < 2) at->fail("expected [host, port]");
  auto host = at->item(0).text();
  auto port = at->item(1).integer();
  if (port < 0 || port > 65535) at->item(1).fail("port out of range");
  return detail::host_port(host, port);
}

// mitmproxy keeps only the error text; the kind is inferred from the wording its layers use.
flow::ErrorKind error_kind_from_message(std::string_view msg) {
  auto has = [&](std::string_view needle) {
    if (needle.size() > msg.size()) return false;
    for (size_t i = 0; i + needle.size() <= msg.size(); ++i)
      if (flow::iequals(msg.substr(i, needle.size()), needle)) return true;
    return false;
  };
  if (has("connect call failed") || has("connection refused") || has("name or service") ||
      has("no address") || has("unreachable") || has("getaddrinfo"))
    return flow::ErrorKind::upstream_unreachable;
  if (has("timeout") || has("timed out")) return flow::ErrorKind::upstream_timeout;
  if (has("client disconnected") || has("client closed")) return flow::ErrorKind::client_closed;
  if (has("tls") || has("ssl") || has("certificate")) return flow::ErrorKind::upstream_tls_failed;
  if (has("server disconnected") || has("connection closed") || has("peer closed") ||
      has("reset by peer"))
    return flow::ErrorKind::upstream_closed;
  if (has("killed")) return flow::ErrorKind::policy;
  // mitmproxy's remaining errors are protocol errors on either side; the upstream is likelier.
  return flow::ErrorKind::upstream_protocol;
}

flow::TlsInfo read_tls(const std::optional<TAt>& conn) {
  flow::TlsInfo tls;
  if (!conn) return tls;
  bool established = false;
  if (auto f = conn->find("tls_established"))
    established = f->boolean();
  else if (auto g = conn->find("tls"))
    established = g->boolean();
  tls.present = established;
  if (!established) return tls;
  tls.sni = opt_text(*conn, "sni");
  tls.alpn = opt_text(*conn, "alpn");
  if (tls.alpn.empty()) tls.alpn = opt_text(*conn, "alpn_proto_negotiated");  // versions < 11
  tls.version = opt_text(*conn, "tls_version");
  tls.cipher = opt_text(*conn, "cipher_name");
  // The peer's leaf certificate (PEM); versions < 10 kept one in "cert".
  std::optional<TAt> leaf;
  if (auto list = conn->find("certificate_list"); list && !list->list().empty())
    leaf = list->item(0);
  else if (auto cert = conn->find("cert"))
    leaf = cert;
  if (leaf) {
    // A certificate we cannot read is not worth failing the flow over: the names stay empty.
    if (auto names = detail::certificate_names(leaf->text())) {
      tls.peer_subject = std::move(names->subject);
      tls.peer_issuer = std::move(names->issuer);
    }
  }
  return tls;
}

std::string normalize_version(std::string_view v) {
  return detail::normalize_http_version(v);
}

flow::Flow read_http_flow(const TAt& rec, const ImportOptions& options) {
  flow::Flow f;
  f.kind = flow::FlowKind::http;
  f.mode = "import";
  f.session = options.session;

  auto client = rec.find("client_conn");
  auto server = rec.find("server_conn");
  if (client) {
    // mitmproxy 9 renamed the peer's address to "peername".
    auto peer = client->find("peername");
    f.client_address = address(peer ? peer : client->find("address"));
    f.timing.client_connected = opt_time(*client, "timestamp_start");
  }
  if (server) {
    // The address actually connected: "ip_address" up to mitmproxy 8, "peername" since 9;
    // "address" is the target as named (possibly a host name).
    auto ip = server->find("ip_address");
    if (!ip) ip = server->find("peername");
    f.upstream_address = ip ? address(ip) : address(server->find("address"));
    f.timing.upstream_connected = opt_time(*server, "timestamp_tcp_setup");
  }
  f.client_tls = read_tls(client);
  f.upstream_tls = read_tls(server);

  auto rq = rec.get("request");
  f.request.method = std::string(rq.get("method").text());
  f.request.scheme = std::string(rq.get("scheme").text());
  f.request.path = opt_text(rq, "path");
  f.request.http_version = normalize_version(opt_text(rq, "http_version"));
  f.request.headers = read_headers(rq.find("headers"));
  f.request.trailers = read_headers(rq.find("trailers"));
  f.request.body = read_body(rq);
  f.request.authority = opt_text(rq, "authority");
  if (f.request.authority.empty()) {
    // HTTP/1 requests carry the authority in Host; fall back to host:port as mitmproxy does.
    if (auto host = f.request.headers.get("Host")) {
      f.request.authority = std::string(*host);
    } else {
      auto host_name = opt_text(rq, "host");
      int64_t port = 0;
      if (auto p = rq.find("port")) port = p->integer();
      if (port < 0 || port > 65535) rq.get("port").fail("port out of range");
      bool default_port = (port == 80 && f.request.scheme == "http") ||
                          (port == 443 && f.request.scheme == "https");
      f.request.authority = detail::host_port(host_name, default_port ? 0 : port);
    }
  }
  f.timing.request_started = opt_time(rq, "timestamp_start");
  f.timing.request_ended = opt_time(rq, "timestamp_end");

  if (auto rs = rec.find("response")) {
    flow::Response r;
    auto status = rs->get("status_code").integer();
    if (status < 0 || status > 999) rs->get("status_code").fail("status out of range");
    r.status = static_cast<int>(status);
    r.reason = opt_text(*rs, "reason");
    r.http_version = normalize_version(opt_text(*rs, "http_version"));
    r.headers = read_headers(rs->find("headers"));
    r.trailers = read_headers(rs->find("trailers"));
    r.body = read_body(*rs);
    f.timing.response_started = opt_time(*rs, "timestamp_start");
    f.timing.response_ended = opt_time(*rs, "timestamp_end");
    f.response = std::move(r);
  }
  if (auto err = rec.find("error")) {
    flow::Error e;
    e.message = opt_text(*err, "msg");
    e.kind = error_kind_from_message(e.message);
    f.error = std::move(e);
  }
  if (auto ws = rec.find("websocket")) {
    flow::WebSocket w;
    if (auto msgs = ws->find("messages")) {
      const auto& list = msgs->list();
      for (size_t i = 0; i < list.size(); ++i) {
        // (type, from_client, content, timestamp[, dropped[, injected]])
        auto m = msgs->item(i);
        const auto& parts = m.list();
        if (parts.size() < 4) m.fail("expected [type, from_client, content, timestamp, ...]");
        flow::WebSocketMessage msg;
        auto opcode = m.item(0).integer();
        if (opcode < 0 || opcode > 15) m.item(0).fail("opcode out of range");
        msg.opcode = static_cast<uint8_t>(opcode);
        msg.from_client = m.item(1).boolean();
        msg.payload = std::string(m.item(2).text());
        double ts = m.item(3).number();
        if (!std::isfinite(ts) || ts < 0 || ts > 9.0e9) m.item(3).fail("timestamp out of range");
        msg.timestamp = detail::seconds_to_ns(ts);
        w.messages.push_back(std::move(msg));
      }
    }
    if (auto code = ws->find("close_code")) {
      auto c = code->integer();
      if (c < 0 || c > 65535) code->fail("close code out of range");
      w.close_code = static_cast<uint16_t>(c);
    }
    w.close_reason = opt_text(*ws, "close_reason");
    if (auto by = ws->find("closed_by_client")) w.closed_by_client = by->boolean();
    f.websocket = std::move(w);
  }
  if (auto marked = rec.find("marked")) {
    // Versions < 13 stored a boolean; later ones the marker text.
    if (marked->v->type == TValue::Type::boolean)
      f.marked = marked->v->boolean ? ":default:" : "";
    else
      f.marked = std::string(marked->text());
  }
  f.comment = opt_text(rec, "comment");
  return f;
}

}  // namespace

Result<ImportResult> import_mitmproxy(std::string_view bytes, const ImportOptions& options) {
  if (bytes.size() > options.max_input_bytes)
    return Result<ImportResult>(Errc::resource_exhausted,
                                "input of " + std::to_string(bytes.size()) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(options.max_input_bytes));
  ImportResult result;
  result.format = Format::mitmproxy;
  detail::TLimits limits;
  limits.max_depth = options.max_depth;
  // Old files (< version 12) stored WebSocket messages as flows of their own that name the
  // handshake flow's id; we attach them to that flow.
  std::unordered_map<std::string, size_t> flow_index_by_id;
  size_t pos = 0;
  size_t record = 0;
  while (pos < bytes.size()) {
    // Whitespace around records (a hand-edited or concatenated file) is not a record.
    pos = bytes.find_first_not_of(" \t\r\n", pos);
    if (pos == std::string_view::npos) break;
    if (record >= options.max_flows)
      return Result<ImportResult>(
          Errc::resource_exhausted,
          "more than " + std::to_string(options.max_flows) + " records (limit)");
    // Framing errors leave no way to find the next record: always fatal.
    detail::TFrame frame;
    try {
      frame = detail::read_tnetstring_frame(bytes, pos);
    } catch (const BadInput& e) {
      return Result<ImportResult>(Errc::parse_error,
                                  e.where + ", record " + std::to_string(record) + ": " + e.what());
    }
    size_t next = frame.end + 1;
    try {
      auto value = detail::parse_tnetstring(bytes, pos, limits);
      TAt rec{&value, "", record};
      if (value.type != TValue::Type::dict) rec.fail(rec.wrong("a dict"));
      auto version_at = rec.get("version");
      if (version_at.v->type == TValue::Type::list)
        version_at.fail(
            "flow format of mitmproxy < 4 is not supported; upgrade the file with "
            "a newer mitmproxy (mitmdump -nr old -w new)");
      auto version = version_at.integer();
      if (version < kOldestVersion)
        version_at.fail("flow format version " + std::to_string(version) +
                        " (mitmproxy < 5) is not supported; upgrade the file with a newer "
                        "mitmproxy (mitmdump -nr old -w new)");
      std::string type(rec.get("type").text());
      if (type == "http") {
        auto f = read_http_flow(rec, options);
        if (auto id = rec.find("id"))
          flow_index_by_id[std::string(id->text())] = result.flows.size();
        result.flows.push_back(std::move(f));
      } else if (type == "websocket" && version < 12) {
        auto meta = rec.find("metadata");
        auto handshake = meta ? meta->find("websocket_handshake") : std::nullopt;
        auto it = handshake ? flow_index_by_id.find(std::string(handshake->text()))
                            : flow_index_by_id.end();
        if (it == flow_index_by_id.end()) {
          ++result.unsupported["websocket (handshake flow missing)"];
        } else {
          flow::WebSocket w;
          if (auto msgs = rec.find("messages")) {
            for (size_t i = 0; i < msgs->list().size(); ++i) {
              auto m = msgs->item(i);
              if (m.list().size() < 4) m.fail("expected [type, from_client, content, timestamp]");
              flow::WebSocketMessage msg;
              auto opcode = m.item(0).integer();
              if (opcode < 0 || opcode > 15) m.item(0).fail("opcode out of range");
              msg.opcode = static_cast<uint8_t>(opcode);
              msg.from_client = m.item(1).boolean();
              msg.payload = std::string(m.item(2).text());
              double ts = m.item(3).number();
              if (!std::isfinite(ts) || ts < 0 || ts > 9.0e9)
                m.item(3).fail("timestamp out of range");
              msg.timestamp = detail::seconds_to_ns(ts);
              w.messages.push_back(std::move(msg));
            }
          }
          if (auto code = rec.find("close_code")) {
            auto c = code->integer();
            if (c < 0 || c > 65535) code->fail("close code out of range");
            w.close_code = static_cast<uint16_t>(c);
          }
          w.close_reason = opt_text(rec, "close_reason");
          w.closed_by_client = opt_text(rec, "close_sender") == "client";
          result.flows[it->second].websocket = std::move(w);
        }
      } else {
        ++result.unsupported[type];
      }
    } catch (const BadInput& e) {
      // Errors from the tnetstring parser name only the byte.
      std::string where = e.where.find(", record ") == std::string::npos
                              ? e.where + ", record " + std::to_string(record)
                              : e.where;
      if (!options.skip_bad)
        return Result<ImportResult>(Errc::parse_error, where + ": " + e.what());
      result.errors.push_back({record, where, e.what()});
    }
    pos = next;
    ++record;
  }
  return result;
}

}  // namespace retake::interop
