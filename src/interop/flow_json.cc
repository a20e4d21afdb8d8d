// retake's own JSON form of a flow: every field of flow::Flow, bytes as strings when they are
// UTF-8 and as {"base64": ...} when not, so that the round trip is exact.
#include "interop/flow_json.h"

#include "interop/interop.h"

namespace retake::interop {

using detail::bytes_value;
using detail::JsonAt;
using detail::read_bytes;
namespace json = boost::json;

namespace {

const char* kind_name(flow::FlowKind kind) {
  switch (kind) {
    case flow::FlowKind::http:
      return "http";
    case flow::FlowKind::tunnel:
      return "tunnel";
    case flow::FlowKind::tls_failed:
      return "tls_failed";
  }
  return "http";
}

json::array headers_json(const flow::Headers& headers) {
  json::array out;
  out.reserve(headers.size());
  for (const auto& h : headers)
    out.push_back(json::array{bytes_value(h.name), bytes_value(h.value)});
  return out;
}

json::object body_json(const flow::Body& body, bool with_bodies) {
  json::object out;
  out["size"] = body.size;
  out["truncated"] = body.truncated;
  if (with_bodies) {
    if (detail::valid_utf8(body.data))
      out["text"] = body.data;
    else
      out["base64"] = detail::base64_encode(body.data);
  } else {
    out["stored"] = body.data.size();
  }
  return out;
}

json::object tls_json(const flow::TlsInfo& tls) {
  return json::object{{"present", tls.present},
                      {"sni", bytes_value(tls.sni)},
                      {"alpn", bytes_value(tls.alpn)},
                      {"version", bytes_value(tls.version)},
                      {"cipher", bytes_value(tls.cipher)},
                      {"peer_subject", bytes_value(tls.peer_subject)},
                      {"peer_issuer", bytes_value(tls.peer_issuer)}};
}

flow::Headers read_headers(const JsonAt& at) {
  flow::Headers out;
  const auto& arr = at.array();
  for (size_t i = 0; i < arr.size(); ++i) {
    auto pair = at.at(i);
    if (pair.array().size() != 2) pair.fail("expected [name, value]");
    out.add(read_bytes(pair.at(0)), read_bytes(pair.at(1)));
  }
  return out;
}

flow::Body read_body(const JsonAt& at) {
  flow::Body body;
  if (auto text = at.find("text")) {
    body.data = std::string(text->string());
  } else if (auto b64 = at.find("base64")) {
    auto decoded = detail::base64_decode(b64->string());
    if (!decoded) b64->fail("invalid base64");
    body.data = std::move(*decoded);
  }
  auto size = at.integer_or("size", static_cast<int64_t>(body.data.size()));
  if (size < 0) at.get("size").fail("negative size");
  body.size = static_cast<uint64_t>(size);
  body.truncated = at.boolean_or("truncated", false);
  return body;
}

flow::TlsInfo read_tls(const JsonAt& at) {
  flow::TlsInfo tls;
  tls.present = at.boolean_or("present", false);
  auto str = [&](const char* key) {
    auto f = at.find(key);
    return f ? read_bytes(*f) : std::string();
  };
  tls.sni = str("sni");
  tls.alpn = str("alpn");
  tls.version = str("version");
  tls.cipher = str("cipher");
  tls.peer_subject = str("peer_subject");
  tls.peer_issuer = str("peer_issuer");
  return tls;
}

uint64_t read_u64(const JsonAt& at, std::string_view key) {
  auto f = at.find(key);
  if (!f) return 0;
  if (f->value().is_uint64()) return f->value().get_uint64();
  auto v = f->integer();
  if (v < 0) f->fail("expected a non-negative integer");
  return static_cast<uint64_t>(v);
}

std::string str_field(const JsonAt& at, std::string_view key) {
  auto f = at.find(key);
  return f ? read_bytes(*f) : std::string();
}

}  // namespace

namespace detail {

json::object flow_to_json_value(const flow::Flow& f, const JsonOptions& options) {
  json::object o;
  o["id"] = f.id;
  o["session"] = bytes_value(f.session);
  o["run"] = bytes_value(f.run);
  o["origin"] = f.origin;
  o["kind"] = kind_name(f.kind);
  o["mode"] = bytes_value(f.mode);
  o["client_address"] = bytes_value(f.client_address);
  o["upstream_address"] = bytes_value(f.upstream_address);
  o["url"] = bytes_value(f.request.url());  // convenience for readers; ignored on input
  o["duration_ns"] = f.duration();          // convenience for readers; ignored on input

  json::object rq;
  rq["method"] = bytes_value(f.request.method);
  rq["scheme"] = bytes_value(f.request.scheme);
  rq["authority"] = bytes_value(f.request.authority);
  rq["path"] = bytes_value(f.request.path);
  rq["http_version"] = bytes_value(f.request.http_version);
  rq["headers"] = headers_json(f.request.headers);
  rq["body"] = body_json(f.request.body, options.with_bodies);
  rq["trailers"] = headers_json(f.request.trailers);
  o["request"] = std::move(rq);

  if (f.response) {
    const auto& r = *f.response;
    json::object rs;
    rs["status"] = r.status;
    rs["reason"] = bytes_value(r.reason);
    rs["http_version"] = bytes_value(r.http_version);
    rs["headers"] = headers_json(r.headers);
    rs["body"] = body_json(r.body, options.with_bodies);
    rs["trailers"] = headers_json(r.trailers);
    o["response"] = std::move(rs);
  } else {
    o["response"] = nullptr;
  }
  if (f.error)
    o["error"] = json::object{{"kind", flow::error_kind_name(f.error->kind)},
                              {"message", bytes_value(f.error->message)}};
  else
    o["error"] = nullptr;

  const auto& t = f.timing;
  o["timing"] = json::object{
      {"client_connected", t.client_connected}, {"request_started", t.request_started},
      {"request_ended", t.request_ended},       {"upstream_connected", t.upstream_connected},
      {"response_started", t.response_started}, {"response_ended", t.response_ended}};
  o["client_tls"] = tls_json(f.client_tls);
  o["upstream_tls"] = tls_json(f.upstream_tls);
  if (f.websocket) {
    json::array msgs;
    msgs.reserve(f.websocket->messages.size());
    for (const auto& m : f.websocket->messages) {
      json::object jm{{"from_client", m.from_client},
                      {"opcode", m.opcode},
                      {"timestamp", m.timestamp},
                      {"size", m.payload.size()},
                      {"truncated", m.truncated},
                      {"compressed", m.compressed}};
      if (options.with_bodies) jm["payload"] = bytes_value(m.payload);
      msgs.push_back(std::move(jm));
    }
    o["websocket"] = json::object{{"messages", std::move(msgs)},
                                  {"close_code", f.websocket->close_code},
                                  {"close_reason", bytes_value(f.websocket->close_reason)},
                                  {"closed_by_client", f.websocket->closed_by_client}};
  } else {
    o["websocket"] = nullptr;
  }
  o["bytes_from_client"] = f.bytes_from_client;
  o["bytes_from_upstream"] = f.bytes_from_upstream;
  o["marked"] = bytes_value(f.marked);
  o["comment"] = bytes_value(f.comment);
  json::array tags;
  for (const auto& tag : f.tags) tags.push_back(bytes_value(tag));
  o["tags"] = std::move(tags);
  return o;
}

flow::Flow flow_from_json_value(const JsonAt& at) {
  flow::Flow f;
  at.object();
  f.id = read_u64(at, "id");
  f.session = str_field(at, "session");
  f.run = str_field(at, "run");
  f.origin = read_u64(at, "origin");
  if (auto kind = at.find("kind")) {
    auto k = kind->string();
    if (k == "http")
      f.kind = flow::FlowKind::http;
    else if (k == "tunnel")
      f.kind = flow::FlowKind::tunnel;
    else if (k == "tls_failed")
      f.kind = flow::FlowKind::tls_failed;
    else
      kind->fail("unknown flow kind \"" + std::string(k) + "\"");
  }
  f.mode = str_field(at, "mode");
  f.client_address = str_field(at, "client_address");
  f.upstream_address = str_field(at, "upstream_address");

  auto rq = at.get("request");
  f.request.method = str_field(rq, "method");
  f.request.scheme = str_field(rq, "scheme");
  f.request.authority = str_field(rq, "authority");
  f.request.path = str_field(rq, "path");
  f.request.http_version = str_field(rq, "http_version");
  if (auto h = rq.find("headers")) f.request.headers = read_headers(*h);
  if (auto b = rq.find("body")) f.request.body = read_body(*b);
  if (auto h = rq.find("trailers")) f.request.trailers = read_headers(*h);

  if (auto rs = at.find("response")) {
    flow::Response r;
    auto status = rs->get("status").integer();
    if (status < 0 || status > 999) rs->get("status").fail("status out of range");
    r.status = static_cast<int>(status);
    r.reason = str_field(*rs, "reason");
    r.http_version = str_field(*rs, "http_version");
    if (auto h = rs->find("headers")) r.headers = read_headers(*h);
    if (auto b = rs->find("body")) r.body = read_body(*b);
    if (auto h = rs->find("trailers")) r.trailers = read_headers(*h);
    f.response = std::move(r);
  }
  if (auto e = at.find("error")) {
    flow::Error err;
    auto kind_at = e->get("kind");
    auto kind = flow::error_kind_from_name(kind_at.string());
    if (!kind) kind_at.fail("unknown error kind \"" + std::string(kind_at.string()) + "\"");
    err.kind = *kind;
    err.message = str_field(*e, "message");
    f.error = std::move(err);
  }
  if (auto t = at.find("timing")) {
    f.timing.client_connected = t->integer_or("client_connected", 0);
    f.timing.request_started = t->integer_or("request_started", 0);
    f.timing.request_ended = t->integer_or("request_ended", 0);
    f.timing.upstream_connected = t->integer_or("upstream_connected", 0);
    f.timing.response_started = t->integer_or("response_started", 0);
    f.timing.response_ended = t->integer_or("response_ended", 0);
  }
  if (auto t = at.find("client_tls")) f.client_tls = read_tls(*t);
  if (auto t = at.find("upstream_tls")) f.upstream_tls = read_tls(*t);
  if (auto ws = at.find("websocket")) {
    flow::WebSocket w;
    if (auto msgs = ws->find("messages")) {
      const auto& arr = msgs->array();
      w.messages.reserve(arr.size());
      for (size_t i = 0; i < arr.size(); ++i) {
        auto m = msgs->at(i);
        flow::WebSocketMessage msg;
        msg.from_client = m.boolean_or("from_client", false);
        auto opcode = m.integer_or("opcode", 1);
        if (opcode < 0 || opcode > 15) m.get("opcode").fail("opcode out of range");
        msg.opcode = static_cast<uint8_t>(opcode);
        if (auto p = m.find("payload")) msg.payload = read_bytes(*p);
        msg.timestamp = m.integer_or("timestamp", 0);
        msg.truncated = m.boolean_or("truncated", false);
        msg.compressed = m.boolean_or("compressed", false);
        w.messages.push_back(std::move(msg));
      }
    }
    auto code = ws->integer_or("close_code", 0);
    if (code < 0 || code > 65535) ws->get("close_code").fail("close code out of range");
    w.close_code = static_cast<uint16_t>(code);
    w.close_reason = str_field(*ws, "close_reason");
    w.closed_by_client = ws->boolean_or("closed_by_client", false);
    f.websocket = std::move(w);
  }
  f.bytes_from_client = read_u64(at, "bytes_from_client");
  f.bytes_from_upstream = read_u64(at, "bytes_from_upstream");
  f.marked = str_field(at, "marked");
  f.comment = str_field(at, "comment");
  if (auto tags = at.find("tags")) {
    const auto& arr = tags->array();
    for (size_t i = 0; i < arr.size(); ++i) f.tags.push_back(read_bytes(tags->at(i)));
  }
  return f;
}

}  // namespace detail

std::string flow_to_json(const flow::Flow& flow, const JsonOptions& options) {
  return json::serialize(detail::flow_to_json_value(flow, options));
}

Result<flow::Flow> flow_from_json(std::string_view text) {
  auto parsed = detail::parse_json(text, 64);
  if (!parsed) return parsed.status();
  try {
    return detail::flow_from_json_value(JsonAt(parsed.value(), "flow"));
  } catch (const detail::BadInput& e) {
    return Result<flow::Flow>(Errc::parse_error, e.where + ": " + e.what());
  }
}

std::string flows_to_json(const std::vector<flow::Flow>& flows, const JsonOptions& options) {
  json::array arr;
  arr.reserve(flows.size());
  for (const auto& f : flows) arr.push_back(detail::flow_to_json_value(f, options));
  return json::serialize(arr);
}

std::string export_json(const std::vector<flow::Flow>& flows) {
  json::array arr;
  arr.reserve(flows.size());
  for (const auto& f : flows) arr.push_back(detail::flow_to_json_value(f, JsonOptions{}));
  return json::serialize(json::object{{"retake_flows", 1}, {"flows", std::move(arr)}});
}

Result<ImportResult> import_retake_json(std::string_view bytes, const ImportOptions& options) {
  auto parsed = detail::parse_import_json(bytes, options);
  if (!parsed) return parsed.status();
  ImportResult result;
  result.format = Format::retake_json;
  const json::value& root = parsed.value();
  std::optional<JsonAt> list;
  try {
    JsonAt top(root, "");
    if (root.is_array()) {
      list = top;
    } else if (root.is_object() && root.get_object().contains("retake_flows")) {
      auto version = top.get("retake_flows").integer();
      if (version != 1)
        return Result<ImportResult>(Errc::version_mismatch,
                                    "retake_flows version " + std::to_string(version) +
                                        " is not understood (this retake reads version 1)");
      list = top.get("flows");
      list->array();
    } else {
      auto f = detail::flow_from_json_value(JsonAt(root, "flow"));
      f.id = 0;  // ids belong to the store that assigned them
      if (!options.session.empty()) f.session = options.session;
      result.flows.push_back(std::move(f));
      return result;
    }
  } catch (const detail::BadInput& e) {
    return Result<ImportResult>(Errc::parse_error, e.where + ": " + e.what());
  }
  const auto& arr = list->array();
  if (arr.size() > options.max_flows)
    return Result<ImportResult>(Errc::resource_exhausted, std::to_string(arr.size()) +
                                                              " flows exceed the limit of " +
                                                              std::to_string(options.max_flows));
  for (size_t i = 0; i < arr.size(); ++i) {
    JsonAt item(arr[i], (list->path().empty() ? std::string() : list->path()) + "[" +
                            std::to_string(i) + "]");
    try {
      auto f = detail::flow_from_json_value(item);
      f.id = 0;  // ids belong to the store that assigned them
      if (!options.session.empty()) f.session = options.session;
      result.flows.push_back(std::move(f));
    } catch (const detail::BadInput& e) {
      if (!options.skip_bad)
        return Result<ImportResult>(Errc::parse_error,
                                    "flow " + std::to_string(i) + ": " + e.where + ": " + e.what());
      result.errors.push_back({i, e.where, e.what()});
    }
  }
  return result;
}

}  // namespace retake::interop
