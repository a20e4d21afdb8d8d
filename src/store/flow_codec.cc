#include "store/flow_codec.h"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "flow.capnp.h"

namespace retake::store {
namespace {

namespace sc = schema;

// Our schema is at most 4 structs deep; anything deeper is damage, not data.
constexpr int kNestingLimit = 16;
// 64 MiB unpacked: far above any flow record (bodies live elsewhere; WebSocket payloads are
// capped by the recorder), small enough that a damaged value cannot exhaust memory.
constexpr uint64_t kMaxFlowWords = 8u << 20;

capnp::Data::Reader as_data(std::string_view s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

std::string as_string(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

template <class InitFn>
void encode_headers(const flow::Headers& headers, InitFn init) {
  if (headers.empty()) return;
  auto list = init(static_cast<unsigned>(headers.size()));
  unsigned i = 0;
  for (const auto& h : headers) {
    list[i].setName(as_data(h.name));
    list[i].setValue(as_data(h.value));
    ++i;
  }
}

flow::Headers decode_headers(capnp::List<sc::Header>::Reader list) {
  flow::Headers headers;
  headers.fields().reserve(list.size());
  for (auto h : list) headers.add(as_string(h.getName()), as_string(h.getValue()));
  return headers;
}

void encode_body(const flow::Body& body, std::string_view digest, sc::BodyRef::Builder out) {
  out.setDigest(as_data(digest));
  out.setStoredSize(body.data.size());
  out.setWireSize(body.size);
  out.setTruncated(body.truncated);
}

// Body::data stays empty; the caller loads the bytes by digest.
flow::Body decode_body(sc::BodyRef::Reader in, std::string& digest, uint64_t& stored) {
  digest = as_string(in.getDigest());
  stored = in.getStoredSize();
  if (!digest.empty() && digest.size() != kDigestSize)
    throw std::runtime_error("body digest of " + std::to_string(digest.size()) + " bytes");
  if (digest.empty() && in.getStoredSize() != 0)
    throw std::runtime_error("body with stored bytes but no digest");
  flow::Body body;
  body.size = in.getWireSize();
  body.truncated = in.getTruncated();
  return body;
}

void encode_tls(const flow::TlsInfo& tls, sc::TlsInfo::Builder out) {
  out.setPresent(tls.present);
  out.setSni(as_data(tls.sni));
  out.setAlpn(as_data(tls.alpn));
  out.setVersion(as_data(tls.version));
  out.setCipher(as_data(tls.cipher));
  out.setPeerSubject(as_data(tls.peer_subject));
  out.setPeerIssuer(as_data(tls.peer_issuer));
}

flow::TlsInfo decode_tls(sc::TlsInfo::Reader in) {
  flow::TlsInfo tls;
  tls.present = in.getPresent();
  tls.sni = as_string(in.getSni());
  tls.alpn = as_string(in.getAlpn());
  tls.version = as_string(in.getVersion());
  tls.cipher = as_string(in.getCipher());
  tls.peer_subject = as_string(in.getPeerSubject());
  tls.peer_issuer = as_string(in.getPeerIssuer());
  return tls;
}

}  // namespace

std::string sha256(std::string_view bytes) {
  // Fetched once: with EVP_sha256() OpenSSL 3 looks the implementation up in its provider
  // tables on every call, which costs more than hashing a small body.
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int out_size = 0;
  if (!md || EVP_Digest(bytes.data(), bytes.size(), out, &out_size, md, nullptr) != 1 ||
      out_size != kDigestSize)
    throw std::runtime_error("EVP_Digest(sha256) failed");  // OpenSSL broken: not expected
  return std::string(reinterpret_cast<const char*>(out), out_size);
}

static void build_flow(capnp::MessageBuilder& message, const flow::Flow& f,
                       std::string_view request_digest, std::string_view response_digest);

namespace {

// Packed bytes appended straight to the string that is returned (no second copy).
class StringOutput final : public kj::OutputStream {
 public:
  explicit StringOutput(std::string& out) : out_(out) {}
  void write(const void* buffer, size_t size) override {
    out_.append(static_cast<const char*>(buffer), size);
  }

 private:
  std::string& out_;
};

// The first segment of every message this thread encodes: big enough for a typical flow, so
// encoding allocates nothing for the message itself (it was an 8 KiB calloc per flow).
constexpr size_t kScratchWords = 1024;
thread_local std::unique_ptr<capnp::word[]> scratch;

}  // namespace

std::string encode_flow(const flow::Flow& f, std::string_view request_digest,
                        std::string_view response_digest) {
  if (!scratch) scratch.reset(new capnp::word[kScratchWords]());
  kj::ArrayPtr<capnp::word> first(scratch.get(), kScratchWords);
  std::string encoded;
  {
    capnp::MallocMessageBuilder message(first);
    build_flow(message, f, request_digest, response_digest);
    // Packed: a flow is mostly short strings, whose pointers and padding are zero bytes;
    // packing halves what the WAL and the memtable copy.
    size_t words = 0;
    auto segments = message.getSegmentsForOutput();
    for (auto seg : segments) words += seg.size();
    encoded.reserve(words * sizeof(capnp::word) / 2 + 64);
    StringOutput out(encoded);
    capnp::writePackedMessage(out, message);
  }  // the builder's destructor zeroes what it used of scratch, ready for the next flow
  return encoded;
}

static void build_flow(capnp::MessageBuilder& message, const flow::Flow& f,
                       std::string_view request_digest, std::string_view response_digest) {
  auto out = message.initRoot<sc::Flow>();
  out.setId(f.id);
  out.setSession(as_data(f.session));
  out.setRun(as_data(f.run));
  out.setOrigin(f.origin);
  out.setKind(static_cast<uint8_t>(f.kind));
  out.setMode(as_data(f.mode));
  out.setClientAddress(as_data(f.client_address));
  out.setUpstreamAddress(as_data(f.upstream_address));

  auto req = out.initRequest();
  req.setMethod(as_data(f.request.method));
  req.setScheme(as_data(f.request.scheme));
  req.setAuthority(as_data(f.request.authority));
  req.setPath(as_data(f.request.path));
  req.setHttpVersion(as_data(f.request.http_version));
  encode_headers(f.request.headers, [&](unsigned n) { return req.initHeaders(n); });
  encode_body(f.request.body, request_digest, req.initBody());
  encode_headers(f.request.trailers, [&](unsigned n) { return req.initTrailers(n); });

  if (f.response) {
    auto resp = out.initResponse();
    resp.setStatus(f.response->status);
    resp.setReason(as_data(f.response->reason));
    resp.setHttpVersion(as_data(f.response->http_version));
    encode_headers(f.response->headers, [&](unsigned n) { return resp.initHeaders(n); });
    encode_body(f.response->body, response_digest, resp.initBody());
    encode_headers(f.response->trailers, [&](unsigned n) { return resp.initTrailers(n); });
  }
  if (f.error) {
    auto err = out.initError();
    err.setKind(static_cast<uint16_t>(f.error->kind));
    err.setMessage(as_data(f.error->message));
  }
  auto t = out.initTiming();
  t.setClientConnected(f.timing.client_connected);
  t.setRequestStarted(f.timing.request_started);
  t.setRequestEnded(f.timing.request_ended);
  t.setUpstreamConnected(f.timing.upstream_connected);
  t.setResponseStarted(f.timing.response_started);
  t.setResponseEnded(f.timing.response_ended);
  if (f.client_tls != flow::TlsInfo{}) encode_tls(f.client_tls, out.initClientTls());
  if (f.upstream_tls != flow::TlsInfo{}) encode_tls(f.upstream_tls, out.initUpstreamTls());
  if (f.websocket) {
    auto ws = out.initWebsocket();
    auto list = ws.initMessages(static_cast<unsigned>(f.websocket->messages.size()));
    unsigned i = 0;
    for (const auto& m : f.websocket->messages) {
      list[i].setFromClient(m.from_client);
      list[i].setOpcode(m.opcode);
      list[i].setPayload(as_data(m.payload));
      list[i].setTimestamp(m.timestamp);
      list[i].setTruncated(m.truncated);
      list[i].setCompressed(m.compressed);
      ++i;
    }
    ws.setCloseCode(f.websocket->close_code);
    ws.setCloseReason(as_data(f.websocket->close_reason));
    ws.setClosedByClient(f.websocket->closed_by_client);
  }
  out.setBytesFromClient(f.bytes_from_client);
  out.setBytesFromUpstream(f.bytes_from_upstream);
  out.setMarked(as_data(f.marked));
  out.setComment(as_data(f.comment));
  if (!f.tags.empty()) {
    auto tags = out.initTags(static_cast<unsigned>(f.tags.size()));
    for (unsigned i = 0; i < f.tags.size(); ++i) tags.set(i, as_data(f.tags[i]));
  }
}

Result<DecodedFlow> decode_flow(std::string_view bytes, uint64_t id) {
  auto fail = [id](const std::string& why) {
    return Result<DecodedFlow>(Errc::corruption,
                               "flow " + std::to_string(id) + " does not decode: " + why);
  };
  if (bytes.empty()) return fail("empty value");
  capnp::ReaderOptions options;
  // Packed input can expand a lot (runs of zero words), so the bound is absolute: no flow
  // record needs more than kMaxFlowWords once unpacked; the reader refuses to allocate more.
  options.traversalLimitInWords = kMaxFlowWords;
  options.nestingLimit = kNestingLimit;
  try {
    kj::ArrayInputStream input(kj::ArrayPtr<const kj::byte>(
        reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
    capnp::PackedMessageReader reader(input, options);
    auto in = reader.getRoot<sc::Flow>();
    DecodedFlow out;
    flow::Flow& f = out.flow;
    f.id = in.getId();
    if (f.id != id) return fail("it says it is flow " + std::to_string(f.id));
    f.session = as_string(in.getSession());
    f.run = as_string(in.getRun());
    f.origin = in.getOrigin();
    uint8_t kind = in.getKind();
    if (kind > static_cast<uint8_t>(flow::FlowKind::tls_failed))
      return fail("unknown flow kind " + std::to_string(kind));
    f.kind = static_cast<flow::FlowKind>(kind);
    f.mode = as_string(in.getMode());
    f.client_address = as_string(in.getClientAddress());
    f.upstream_address = as_string(in.getUpstreamAddress());

    auto req = in.getRequest();
    f.request.method = as_string(req.getMethod());
    f.request.scheme = as_string(req.getScheme());
    f.request.authority = as_string(req.getAuthority());
    f.request.path = as_string(req.getPath());
    f.request.http_version = as_string(req.getHttpVersion());
    f.request.headers = decode_headers(req.getHeaders());
    f.request.body = decode_body(req.getBody(), out.request_digest, out.request_stored);
    f.request.trailers = decode_headers(req.getTrailers());

    if (in.hasResponse()) {
      auto resp = in.getResponse();
      flow::Response r;
      r.status = resp.getStatus();
      r.reason = as_string(resp.getReason());
      r.http_version = as_string(resp.getHttpVersion());
      r.headers = decode_headers(resp.getHeaders());
      r.body = decode_body(resp.getBody(), out.response_digest, out.response_stored);
      r.trailers = decode_headers(resp.getTrailers());
      f.response = std::move(r);
    }
    if (in.hasError()) {
      auto err = in.getError();
      uint16_t k = err.getKind();
      if (k > static_cast<uint16_t>(flow::ErrorKind::internal))
        return fail("unknown error kind " + std::to_string(k));
      f.error = flow::Error{static_cast<flow::ErrorKind>(k), as_string(err.getMessage())};
    }
    auto t = in.getTiming();
    f.timing.client_connected = t.getClientConnected();
    f.timing.request_started = t.getRequestStarted();
    f.timing.request_ended = t.getRequestEnded();
    f.timing.upstream_connected = t.getUpstreamConnected();
    f.timing.response_started = t.getResponseStarted();
    f.timing.response_ended = t.getResponseEnded();
    if (in.hasClientTls()) f.client_tls = decode_tls(in.getClientTls());
    if (in.hasUpstreamTls()) f.upstream_tls = decode_tls(in.getUpstreamTls());
    if (in.hasWebsocket()) {
      auto ws = in.getWebsocket();
      flow::WebSocket w;
      auto messages = ws.getMessages();
      w.messages.reserve(messages.size());
      for (auto m : messages)
        w.messages.push_back({m.getFromClient(), m.getOpcode(), as_string(m.getPayload()),
                              m.getTimestamp(), m.getTruncated(), m.getCompressed()});
      w.close_code = ws.getCloseCode();
      w.close_reason = as_string(ws.getCloseReason());
      w.closed_by_client = ws.getClosedByClient();
      f.websocket = std::move(w);
    }
    f.bytes_from_client = in.getBytesFromClient();
    f.bytes_from_upstream = in.getBytesFromUpstream();
    f.marked = as_string(in.getMarked());
    f.comment = as_string(in.getComment());
    auto tags = in.getTags();
    f.tags.reserve(tags.size());
    for (auto tag : tags) f.tags.push_back(as_string(tag));
    return out;
  } catch (const kj::Exception& e) {
    return fail(e.getDescription().cStr());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

}  // namespace retake::store
