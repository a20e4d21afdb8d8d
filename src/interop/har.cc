// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) in and out.
//
// Import reads what real writers produce (Chrome/Firefox devtools, Playwright's recordHar,
// Charles, Fiddler, Insomnia, mitmproxy's har_dump) and is strict only about what a flow cannot
// do without: a method, a URL, a start time and, for a response, a status. Export writes the
// spec's fields plus Chrome's `_webSocketMessages` and a `_retake` object per entry carrying
// what HAR has no place for, so our own files import back without loss.
#include <cmath>

#include "interop/codec.h"
#include "interop/flow_json.h"
#include "interop/interop.h"
#include "interop/json_reader.h"

namespace retake::interop {

using detail::BadInput;
using detail::JsonAt;
namespace json = boost::json;

namespace {

// Decoded bodies larger than this are exported still encoded (a zip bomb in a flow must not
// blow up an export).
constexpr size_t kMaxDecodedBody = size_t{256} << 20;

// ---------------------------------------------------------------------------------------------
// Export

double ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

json::array har_headers(const flow::Headers& headers) {
  json::array out;
  for (const auto& h : headers) out.push_back(json::object{{"name", h.name}, {"value", h.value}});
  return out;
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

json::array query_string(std::string_view path) {
  json::array out;
  auto q = path.find('?');
  if (q == std::string_view::npos) return out;
  auto query = path.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    if (!part.empty()) {
      auto eq = part.find('=');
      out.push_back(json::object{
          {"name", percent_decode(part.substr(0, eq))},
          {"value",
           eq == std::string_view::npos ? std::string() : percent_decode(part.substr(eq + 1))}});
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

json::array request_cookies(const flow::Headers& headers) {
  json::array out;
  for (auto value : headers.get_all("Cookie")) {
    while (!value.empty()) {
      auto semi = value.find(';');
      auto part = value.substr(0, semi);
      auto eq = part.find('=');
      if (eq != std::string_view::npos)
        out.push_back(
            json::object{{"name", trim(part.substr(0, eq))}, {"value", trim(part.substr(eq + 1))}});
      if (semi == std::string_view::npos) break;
      value.remove_prefix(semi + 1);
    }
  }
  return out;
}

json::array response_cookies(const flow::Headers& headers) {
  json::array out;
  for (auto value : headers.get_all("Set-Cookie")) {
    auto semi = value.find(';');
    auto pair = value.substr(0, semi);
    auto eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    json::object c{{"name", trim(pair.substr(0, eq))}, {"value", trim(pair.substr(eq + 1))}};
    auto rest = semi == std::string_view::npos ? std::string_view() : value.substr(semi + 1);
    while (!rest.empty()) {
      auto next = rest.find(';');
      auto attr = rest.substr(0, next);
      auto aeq = attr.find('=');
      auto name = trim(attr.substr(0, aeq));
      auto val = aeq == std::string_view::npos ? std::string() : trim(attr.substr(aeq + 1));
      if (flow::iequals(name, "path"))
        c["path"] = val;
      else if (flow::iequals(name, "domain"))
        c["domain"] = val;
      else if (flow::iequals(name, "expires"))
        c["expires"] = val;
      else if (flow::iequals(name, "httponly"))
        c["httpOnly"] = true;
      else if (flow::iequals(name, "secure"))
        c["secure"] = true;
      else if (flow::iequals(name, "samesite"))
        c["sameSite"] = val;
      if (next == std::string_view::npos) break;
      rest.remove_prefix(next + 1);
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::string server_ip(const std::string& address) {
  if (address.empty()) return {};
  if (address.front() == '[') {
    auto close = address.find(']');
    return close == std::string::npos ? address : address.substr(1, close - 1);
  }
  auto colon = address.rfind(':');
  if (colon != std::string::npos && address.find(':') == colon) return address.substr(0, colon);
  return address;
}

json::object tls_retake(const flow::TlsInfo& tls) {
  return json::object{
      {"present", tls.present},        {"sni", tls.sni},       {"alpn", tls.alpn},
      {"version", tls.version},        {"cipher", tls.cipher}, {"peer_subject", tls.peer_subject},
      {"peer_issuer", tls.peer_issuer}};
}

json::object export_entry(const flow::Flow& f) {
  const auto& t = f.timing;
  int64_t start = t.request_started ? t.request_started : t.client_connected;
  if (!start) start = t.response_started ? t.response_started : t.response_ended;
  double connect = (t.upstream_connected && start && t.upstream_connected >= start)
                       ? ms(t.upstream_connected - start)
                       : -1;
  int64_t base = connect >= 0 ? t.upstream_connected : start;
  double send =
      (t.request_ended && base && t.request_ended >= base) ? ms(t.request_ended - base) : -1;
  double wait = (t.response_started && t.request_ended && t.response_started >= t.request_ended)
                    ? ms(t.response_started - t.request_ended)
                    : -1;
  double receive =
      (t.response_ended && t.response_started && t.response_ended >= t.response_started)
          ? ms(t.response_ended - t.response_started)
          : -1;
  double total = 0;
  for (double v : {connect, send, wait, receive})
    if (v > 0) total += v;
  if (f.duration() > 0) total = ms(f.duration());

  json::object retake;
  retake["kind"] = f.kind == flow::FlowKind::http     ? "http"
                   : f.kind == flow::FlowKind::tunnel ? "tunnel"
                                                      : "tls_failed";
  retake["session"] = f.session;
  retake["run"] = f.run;
  retake["origin"] = f.origin;
  retake["mode"] = f.mode;
  retake["client_address"] = f.client_address;
  retake["upstream_address"] = f.upstream_address;
  retake["timing"] = json::object{
      {"client_connected", t.client_connected}, {"request_started", t.request_started},
      {"request_ended", t.request_ended},       {"upstream_connected", t.upstream_connected},
      {"response_started", t.response_started}, {"response_ended", t.response_ended}};
  retake["client_tls"] = tls_retake(f.client_tls);
  retake["upstream_tls"] = tls_retake(f.upstream_tls);
  retake["bytes_from_client"] = f.bytes_from_client;
  retake["bytes_from_upstream"] = f.bytes_from_upstream;
  retake["marked"] = f.marked;
  retake["comment"] = f.comment;
  json::array tags;
  for (const auto& tag : f.tags) tags.push_back(json::string(tag));
  retake["tags"] = std::move(tags);
  if (f.error)
    retake["error"] =
        json::object{{"kind", flow::error_kind_name(f.error->kind)}, {"message", f.error->message}};

  const auto& rq = f.request;
  bool ws = f.websocket.has_value();
  std::string scheme = rq.scheme;
  if (ws) scheme = flow::iequals(scheme, "https") ? "wss" : "ws";
  std::string url =
      scheme.empty() ? "https://" + rq.authority : scheme + "://" + rq.authority + rq.path;
  json::object req;
  req["method"] = rq.method;
  req["url"] = url;
  req["httpVersion"] = rq.http_version;
  req["cookies"] = request_cookies(rq.headers);
  req["headers"] = har_headers(rq.headers);
  req["queryString"] = query_string(rq.path);
  if (!rq.body.data.empty() || rq.body.size > 0) {
    json::object post;
    post["mimeType"] = std::string(rq.headers.get("Content-Type").value_or(""));
    if (detail::valid_utf8(rq.body.data)) {
      post["text"] = rq.body.data;
    } else {
      post["text"] = detail::base64_encode(rq.body.data);
      post["encoding"] = "base64";
    }
    post["params"] = json::array();
    req["postData"] = std::move(post);
  }
  req["headersSize"] = -1;
  req["bodySize"] = rq.body.size;
  retake["request"] = json::object{{"authority", rq.authority},
                                   {"scheme", rq.scheme},
                                   {"trailers", har_headers(rq.trailers)},
                                   {"body_size", rq.body.size},
                                   {"body_truncated", rq.body.truncated}};

  json::object res;
  if (f.response) {
    const auto& r = *f.response;
    res["status"] = r.status;
    res["statusText"] = r.reason;
    res["httpVersion"] = r.http_version;
    res["cookies"] = response_cookies(r.headers);
    res["headers"] = har_headers(r.headers);
    json::object content;
    std::string body = r.body.data;
    bool content_encoded = false;  // true: `body` holds wire bytes still content-encoded
    auto coding = r.headers.get("Content-Encoding");
    if (coding && !trim(*coding).empty() && !flow::iequals(trim(*coding), "identity")) {
      std::optional<std::string> decoded;
      if (!r.body.truncated && detail::zlib_coding(trim(*coding)))
        decoded = detail::content_decode(trim(*coding), r.body.data, kMaxDecodedBody);
      if (decoded)
        body = std::move(*decoded);
      else
        content_encoded = true;
    }
    content["size"] = body.size();
    if (!content_encoded && body.size() >= r.body.data.size())
      content["compression"] = body.size() - r.body.data.size();
    content["mimeType"] = std::string(r.headers.get("Content-Type").value_or("x-unknown"));
    if (detail::valid_utf8(body) && !content_encoded) {
      content["text"] = body;
    } else {
      content["text"] = detail::base64_encode(body);
      content["encoding"] = "base64";
    }
    res["content"] = std::move(content);
    res["redirectURL"] = std::string(r.headers.get("Location").value_or(""));
    res["headersSize"] = -1;
    res["bodySize"] = r.body.size;
    retake["response"] = json::object{{"trailers", har_headers(r.trailers)},
                                      {"body_size", r.body.size},
                                      {"body_truncated", r.body.truncated},
                                      {"content_encoded", content_encoded}};
  } else {
    // What Chrome writes for a request that got no response.
    res["status"] = 0;
    res["statusText"] = "";
    res["httpVersion"] = "";
    res["cookies"] = json::array();
    res["headers"] = json::array();
    res["content"] = json::object{{"size", 0}, {"mimeType", "x-unknown"}};
    res["redirectURL"] = "";
    res["headersSize"] = -1;
    res["bodySize"] = -1;
    if (f.error) res["_error"] = f.error->message;
  }

  json::object entry;
  entry["startedDateTime"] = detail::iso8601_ms(start);
  entry["time"] = total;
  entry["request"] = std::move(req);
  entry["response"] = std::move(res);
  entry["cache"] = json::object();
  entry["timings"] =
      json::object{{"blocked", -1}, {"dns", -1},    {"connect", connect}, {"ssl", -1},
                   {"send", send},  {"wait", wait}, {"receive", receive}};
  if (auto ip = server_ip(f.upstream_address); !ip.empty()) entry["serverIPAddress"] = ip;
  if (f.error) entry["_error"] = f.error->message;
  if (ws) {
    json::array msgs;
    for (const auto& m : f.websocket->messages) {
      bool text = m.opcode == 1 && detail::valid_utf8(m.payload);
      // Chrome: seconds since the epoch as a float; binary payloads (opcode 2) in base64.
      json::object jm{{"type", m.from_client ? "send" : "receive"},
                      {"time", static_cast<double>(m.timestamp) / 1e9},
                      {"opcode", m.opcode},
                      {"data", text ? m.payload : detail::base64_encode(m.payload)},
                      {"_timestamp_ns", m.timestamp}};
      if (!text && m.opcode == 1) jm["_encoding"] = "base64";
      msgs.push_back(std::move(jm));
    }
    entry["_webSocketMessages"] = std::move(msgs);
    retake["websocket"] = json::object{{"close_code", f.websocket->close_code},
                                       {"close_reason", f.websocket->close_reason},
                                       {"closed_by_client", f.websocket->closed_by_client}};
  }
  entry["_retake"] = std::move(retake);
  return entry;
}

// ---------------------------------------------------------------------------------------------
// Import

flow::Headers read_headers(const std::optional<JsonAt>& at, std::string* authority) {
  flow::Headers out;
  if (!at) return out;
  const auto& arr = at->array();
  for (size_t i = 0; i < arr.size(); ++i) {
    auto h = at->at(i);
    auto name = h.get("name").string();
    std::string value = h.string_or("value", "");
    // HTTP/2 pseudo-headers (Chrome lists them) live in Request fields, not in Headers; but
    // :protocol, which marks an extended CONNECT (RFC 8441), is a field of the flow model.
    if (!name.empty() && name.front() == ':' && name != ":protocol") {
      if (authority && name == ":authority") *authority = value;
      continue;
    }
    out.add(std::string(name), std::move(value));
  }
  return out;
}

// HAR's `-1` means unknown; so do missing values.
double timing_or(const std::optional<JsonAt>& timings, std::string_view key) {
  if (!timings) return -1;
  auto v = timings->number_or(key, -1);
  if (!std::isfinite(v) || v < 0) return -1;
  if (v > 1e12) timings->get(key).fail("timing out of range");
  return v;
}

int64_t ns_of_ms(double v) {
  return std::llround(v * 1e6);
}

std::string decode_text(const JsonAt& holder, std::string_view text_key) {
  auto text = holder.find(text_key);
  if (!text) return {};
  std::string_view enc;
  if (auto e = holder.find("encoding")) enc = e->string();
  if (enc.empty()) return std::string(text->string());
  if (!flow::iequals(enc, "base64"))
    holder.get("encoding").fail("unsupported encoding \"" + std::string(enc) + "\"");
  auto decoded = detail::base64_decode(text->string());
  if (!decoded) text->fail("invalid base64");
  return std::move(*decoded);
}

flow::ErrorKind error_kind_from_chrome(std::string_view msg) {
  auto has = [&](std::string_view s) { return msg.find(s) != std::string_view::npos; };
  if (has("NAME_NOT_RESOLVED") || has("CONNECTION_REFUSED") || has("ADDRESS_UNREACHABLE") ||
      has("CONNECTION_FAILED") || has("Connect call failed") || has("refused"))
    return flow::ErrorKind::upstream_unreachable;
  if (has("TIMED_OUT") || has("timeout")) return flow::ErrorKind::upstream_timeout;
  if (has("CERT") || has("SSL") || has("TLS")) return flow::ErrorKind::upstream_tls_failed;
  if (has("ABORTED") || has("BLOCKED")) return flow::ErrorKind::client_closed;
  return flow::ErrorKind::upstream_closed;
}

flow::TlsInfo read_tls(const JsonAt& at) {
  flow::TlsInfo tls;
  tls.present = at.boolean_or("present", false);
  tls.sni = at.string_or("sni", "");
  tls.alpn = at.string_or("alpn", "");
  tls.version = at.string_or("version", "");
  tls.cipher = at.string_or("cipher", "");
  tls.peer_subject = at.string_or("peer_subject", "");
  tls.peer_issuer = at.string_or("peer_issuer", "");
  return tls;
}

uint64_t u64_or(const JsonAt& at, std::string_view key, uint64_t fallback) {
  auto f = at.find(key);
  if (!f) return fallback;
  if (f->value().is_uint64()) return f->value().get_uint64();
  auto v = f->integer();
  if (v < 0) f->fail("expected a non-negative integer");
  return static_cast<uint64_t>(v);
}

flow::Flow import_entry(const JsonAt& e, const ImportOptions& options) {
  flow::Flow f;
  f.mode = "import";
  auto retake = e.find("_retake");
  if (retake) retake->object();

  // Request.
  auto rq = e.get("request");
  f.request.method = std::string(rq.get("method").string());
  if (f.request.method.empty()) rq.get("method").fail("empty method");
  auto url_at = rq.get("url");
  auto url = detail::split_url(url_at.string());
  if (!url)
    url_at.fail("not an absolute URL: \"" + std::string(url_at.string().substr(0, 200)) + "\"");
  bool ws_url = url->scheme == "ws" || url->scheme == "wss";
  f.request.scheme = url->scheme == "ws" ? "http" : url->scheme == "wss" ? "https" : url->scheme;
  f.request.authority = url->authority;
  f.request.path = url->path;
  f.request.http_version = detail::normalize_http_version(rq.string_or("httpVersion", ""));
  std::string pseudo_authority;
  f.request.headers = read_headers(rq.find("headers"), &pseudo_authority);
  if (!pseudo_authority.empty()) f.request.authority = pseudo_authority;
  // A tunnel's CONNECT names only an authority; an extended CONNECT keeps its path.
  if (f.request.method == "CONNECT" && !f.request.headers.contains(":protocol"))
    f.request.path.clear();
  if (auto post = rq.find("postData")) {
    if (post->find("text")) {
      f.request.body.data = decode_text(*post, "text");
    } else if (auto params = post->find("params")) {
      // Form posts written as params only (some writers): rebuild the urlencoded body.
      const auto& arr = params->array();
      for (size_t i = 0; i < arr.size(); ++i) {
        auto p = params->at(i);
        if (i) f.request.body.data += '&';
        f.request.body.data += std::string(p.get("name").string());
        if (auto v = p.find("value")) f.request.body.data += "=" + std::string(v->string());
      }
    }
  }
  f.request.body.size = f.request.body.data.size();

  // Time: startedDateTime plus the phases in `timings`.
  auto started_at = e.get("startedDateTime");
  auto started = detail::parse_iso8601(started_at.string());
  if (!started)
    started_at.fail("not an ISO 8601 date-time: \"" +
                    std::string(started_at.string().substr(0, 64)) + "\"");
  auto timings = e.find("timings");
  if (timings) timings->object();
  double blocked = timing_or(timings, "blocked"), dns = timing_or(timings, "dns"),
         connect = timing_or(timings, "connect"), send = timing_or(timings, "send"),
         wait = timing_or(timings, "wait"), receive = timing_or(timings, "receive");
  double total = e.number_or("time", -1);
  if (!std::isfinite(total) || total > 1e12) e.get("time").fail("time out of range");

  // Response.
  auto rs = e.get("response");
  auto status = rs.get("status").integer();
  if (status < 0 || status > 999) rs.get("status").fail("status out of range");
  std::string error_text = e.string_or("_error", "");
  if (error_text.empty()) error_text = rs.string_or("_error", "");
  if (status > 0) {
    flow::Response r;
    r.status = static_cast<int>(status);
    r.reason = rs.string_or("statusText", "");
    r.http_version = detail::normalize_http_version(rs.string_or("httpVersion", ""));
    r.headers = read_headers(rs.find("headers"), nullptr);
    if (auto content = rs.find("content")) {
      r.body.data = decode_text(*content, "text");
      bool content_encoded = false;
      if (retake)
        if (auto rr = retake->find("response"))
          content_encoded = rr->boolean_or("content_encoded", false);
      // HAR bodies are decoded; Body keeps what went over the wire.
      auto coding = r.headers.get("Content-Encoding");
      if (!content_encoded && coding && !trim(*coding).empty() &&
          !flow::iequals(trim(*coding), "identity")) {
        std::string c = trim(*coding);
        bool looks_encoded = flow::iequals(c, "gzip") && r.body.data.size() >= 2 &&
                             static_cast<unsigned char>(r.body.data[0]) == 0x1f &&
                             static_cast<unsigned char>(r.body.data[1]) == 0x8b;
        if (!looks_encoded && !r.body.data.empty()) {
          std::optional<std::string> encoded;
          if (detail::zlib_coding(c)) encoded = detail::content_encode(c, r.body.data);
          if (encoded)
            r.body.data = std::move(*encoded);
          else
            r.headers.remove("Content-Encoding");  // br, zstd: keep the body as identity
          // The header must describe the body we keep, or a replay would frame it wrong.
          if (r.headers.contains("Content-Length"))
            r.headers.set("Content-Length", std::to_string(r.body.data.size()));
        }
      }
      r.body.size = r.body.data.size();
      if (!content->find("text")) {
        // Writers that omit bodies (content: "omit") still say how big they were.
        auto size = content->integer_or("size", 0);
        auto wire = rs.integer_or("bodySize", -1);
        int64_t known = wire > 0 ? wire : size;
        if (known > 0) {
          r.body.size = static_cast<uint64_t>(known);
          r.body.truncated = true;
        }
      }
    }
    f.response = std::move(r);
  } else {
    flow::Error err;
    err.message = error_text.empty() ? "no response" : error_text;
    err.kind = error_kind_from_chrome(err.message);
    f.error = std::move(err);
  }

  int64_t start = *started;
  f.timing.request_started = start;
  double t = 0;
  for (double v : {blocked, dns})
    if (v > 0) t += v;
  if (connect >= 0) {
    t += connect;
    f.timing.upstream_connected = start + ns_of_ms(t);
  }
  if (send >= 0) {
    t += send;
    f.timing.request_ended = start + ns_of_ms(t);
  }
  if (f.response) {
    if (wait >= 0) {
      t += wait;
      f.timing.response_started = start + ns_of_ms(t);
    }
    if (receive >= 0) {
      t += receive;
      f.timing.response_ended = start + ns_of_ms(t);
    } else if (total > 0 && !f.timing.response_started) {
      f.timing.response_ended = start + ns_of_ms(total);
    }
  }

  if (auto ip = e.find("serverIPAddress"); ip && !ip->string().empty()) {
    int64_t port = e.integer_or("_serverPort", 0);
    if (port <= 0 || port > 65535) port = f.request.port();
    auto host = std::string(ip->string());
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    f.upstream_address = detail::host_port(host, port);
  }

  if (auto msgs = e.find("_webSocketMessages"); msgs || ws_url) {
    flow::WebSocket w;
    if (msgs) {
      const auto& arr = msgs->array();
      for (size_t i = 0; i < arr.size(); ++i) {
        auto m = msgs->at(i);
        flow::WebSocketMessage msg;
        auto type = m.string_or("type", "receive");
        msg.from_client = type == "send";
        auto opcode = m.integer_or("opcode", 1);
        if (opcode < 0 || opcode > 15) m.get("opcode").fail("opcode out of range");
        msg.opcode = static_cast<uint8_t>(opcode);
        std::string data = m.string_or("data", "");
        if (msg.opcode != 1 || m.string_or("_encoding", "") == "base64") {
          // Chrome and Playwright write binary frames in base64.
          auto decoded = detail::base64_decode(data);
          if (!decoded) m.get("data").fail("invalid base64");
          data = std::move(*decoded);
        }
        msg.payload = std::move(data);
        if (auto exact = m.find("_timestamp_ns")) {
          msg.timestamp = exact->integer();
        } else {
          double time = m.number_or("time", 0);
          if (!std::isfinite(time) || time < 0 || time > 1e16)
            m.get("time").fail("time out of range");
          // Chrome writes seconds, Playwright milliseconds since the epoch.
          msg.timestamp =
              time > 1e11 ? detail::seconds_to_ns(time / 1e3) : detail::seconds_to_ns(time);
        }
        w.messages.push_back(std::move(msg));
      }
    }
    f.websocket = std::move(w);
  }

  if (retake) {
    // Our own export: restore what HAR could not hold.
    const auto& r = *retake;
    if (auto k = r.find("kind")) {
      auto kind = k->string();
      f.kind = kind == "tunnel"       ? flow::FlowKind::tunnel
               : kind == "tls_failed" ? flow::FlowKind::tls_failed
                                      : flow::FlowKind::http;
    }
    f.session = r.string_or("session", "");
    f.run = r.string_or("run", "");
    f.origin = u64_or(r, "origin", 0);
    f.mode = r.string_or("mode", f.mode);
    f.client_address = r.string_or("client_address", "");
    if (auto up = r.find("upstream_address")) f.upstream_address = std::string(up->string());
    if (auto tm = r.find("timing")) {
      f.timing.client_connected = tm->integer_or("client_connected", 0);
      f.timing.request_started = tm->integer_or("request_started", 0);
      f.timing.request_ended = tm->integer_or("request_ended", 0);
      f.timing.upstream_connected = tm->integer_or("upstream_connected", 0);
      f.timing.response_started = tm->integer_or("response_started", 0);
      f.timing.response_ended = tm->integer_or("response_ended", 0);
    }
    if (auto tls = r.find("client_tls")) f.client_tls = read_tls(*tls);
    if (auto tls = r.find("upstream_tls")) f.upstream_tls = read_tls(*tls);
    f.bytes_from_client = u64_or(r, "bytes_from_client", 0);
    f.bytes_from_upstream = u64_or(r, "bytes_from_upstream", 0);
    f.marked = r.string_or("marked", "");
    f.comment = r.string_or("comment", "");
    if (auto tags = r.find("tags")) {
      const auto& arr = tags->array();
      for (size_t i = 0; i < arr.size(); ++i) f.tags.push_back(std::string(tags->at(i).string()));
    }
    if (auto err = r.find("error")) {
      auto kind_at = err->get("kind");
      auto kind = flow::error_kind_from_name(kind_at.string());
      if (!kind) kind_at.fail("unknown error kind");
      f.error = flow::Error{*kind, err->string_or("message", "")};
    } else if (!f.response) {
      f.error.reset();  // we wrote status 0 because there was no response, not an error
    }
    if (auto rr = r.find("request")) {
      if (auto a = rr->find("authority")) f.request.authority = std::string(a->string());
      if (auto s = rr->find("scheme")) f.request.scheme = std::string(s->string());
      if (f.request.scheme.empty()) f.request.path.clear();
      if (auto tr = rr->find("trailers")) f.request.trailers = read_headers(tr, nullptr);
      f.request.body.size = u64_or(*rr, "body_size", f.request.body.size);
      f.request.body.truncated = rr->boolean_or("body_truncated", false);
    }
    if (auto rr = r.find("response"); rr && f.response) {
      if (auto tr = rr->find("trailers")) f.response->trailers = read_headers(tr, nullptr);
      f.response->body.size = u64_or(*rr, "body_size", f.response->body.size);
      f.response->body.truncated = rr->boolean_or("body_truncated", false);
    }
    if (auto w = r.find("websocket")) {
      if (!f.websocket) f.websocket.emplace();
      auto code = w->integer_or("close_code", 0);
      if (code < 0 || code > 65535) w->get("close_code").fail("close code out of range");
      f.websocket->close_code = static_cast<uint16_t>(code);
      f.websocket->close_reason = w->string_or("close_reason", "");
      f.websocket->closed_by_client = w->boolean_or("closed_by_client", false);
    }
  }
  if (!options.session.empty()) f.session = options.session;
  return f;
}

}  // namespace

std::string export_har(const std::vector<flow::Flow>& flows) {
  json::array entries;
  entries.reserve(flows.size());
  for (const auto& f : flows) entries.push_back(export_entry(f));
  json::object log{{"version", "1.2"},
                   {"creator", json::object{{"name", "retake"}, {"version", "0.1.0"}}},
                   {"pages", json::array()},
                   {"entries", std::move(entries)}};
  return json::serialize(json::object{{"log", std::move(log)}});
}

Result<ImportResult> import_har(std::string_view bytes, const ImportOptions& options) {
  auto parsed = detail::parse_import_json(bytes, options);
  if (!parsed) return parsed.status();
  ImportResult result;
  result.format = Format::har;
  std::optional<JsonAt> entries;
  try {
    JsonAt root(parsed.value(), "");
    root.object();
    auto log = root.get("log");
    entries = log.get("entries");
    entries->array();
  } catch (const BadInput& e) {
    return Result<ImportResult>(Errc::parse_error, e.where + ": " + e.what());
  }
  const auto& arr = entries->array();
  if (arr.size() > options.max_flows)
    return Result<ImportResult>(Errc::resource_exhausted, std::to_string(arr.size()) +
                                                              " entries exceed the limit of " +
                                                              std::to_string(options.max_flows));
  result.flows.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    try {
      auto entry = entries->at(i);
      entry.object();
      result.flows.push_back(import_entry(entry, options));
    } catch (const BadInput& e) {
      if (!options.skip_bad)
        return Result<ImportResult>(
            Errc::parse_error, "entry " + std::to_string(i) + ": " + e.where + ": " + e.what());
      result.errors.push_back({i, e.where, e.what()});
    }
  }
  return result;
}

}  // namespace retake::interop
