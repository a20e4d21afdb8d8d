#include "net/tls/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <filesystem>
#include <new>

#include "net/tls/openssl_util.h"

namespace retake::tls {

using namespace detail;

namespace {

// Per-connection state of an intercepted client handshake, owned by the SSL (ex_data).
struct InterceptState {
  std::string fallback_host;
  std::string alpn_wire;  // empty: the context's default
  std::string served_name;
};

// The first verification failure seen on an upstream connection, owned by the SSL (ex_data).
struct VerifyFailure {
  int code = X509_V_OK;
  int depth = -1;
  std::string subject;
};

template <class T>
void free_ex_data(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<T*>(ptr);
}

int intercept_index() {
  static const int index =
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_ex_data<InterceptState>);
  return index;
}

int verify_index() {
  static const int index =
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_ex_data<VerifyFailure>);
  return index;
}

// ALPN protocols in wire form: each prefixed by its one-byte length.
Result<std::string> encode_alpn(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255)
      return Status(Errc::invalid_argument, "ALPN protocol must be 1 to 255 bytes");
    wire += static_cast<char>(p.size());
    wire += p;
  }
  if (wire.size() > 65535) return Status(Errc::invalid_argument, "ALPN list too long");
  return wire;
}

int on_upstream_verify(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok) return 1;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl == nullptr || SSL_get_ex_data(ssl, verify_index()) != nullptr) return 0;
  auto* failure = new (std::nothrow) VerifyFailure;
  if (failure == nullptr) return 0;
  failure->code = X509_STORE_CTX_get_error(store);
  failure->depth = X509_STORE_CTX_get_error_depth(store);
  if (X509* cert = X509_STORE_CTX_get_current_cert(store); cert != nullptr)
    failure->subject = name_rfc2253(X509_get_subject_name(cert), 256);
  if (SSL_set_ex_data(ssl, verify_index(), failure) != 1) delete failure;
  return 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// InterceptTlsContext

InterceptTlsContext::InterceptTlsContext(std::shared_ptr<LeafCertCache> leaves,
                                         InterceptOptions options, std::string default_alpn_wire)
    : context_(boost::asio::ssl::context::tls_server),
      leaves_(std::move(leaves)),
      options_(std::move(options)),
      default_alpn_wire_(std::move(default_alpn_wire)) {}

InterceptTlsContext::~InterceptTlsContext() = default;

Result<std::unique_ptr<InterceptTlsContext>> InterceptTlsContext::create(
    std::shared_ptr<LeafCertCache> leaves, InterceptOptions options) {
  if (!leaves) return Status(Errc::invalid_argument, "leaf certificate cache is null");
  auto wire = encode_alpn(options.alpn);
  if (!wire) return wire.status();
  if (intercept_index() < 0) return openssl_failure("allocating SSL ex_data index");
  std::unique_ptr<InterceptTlsContext> self;
  try {
    self.reset(new InterceptTlsContext(std::move(leaves), std::move(options), std::move(*wire)));
  } catch (const boost::system::system_error& e) {
    return openssl_failure(std::string("creating the TLS server context failed: ") + e.what());
  }
  SSL_CTX* ctx = self->native_handle();
  // TLS 1.2 minimum, as mitmproxy; no compression (CRIME), no renegotiation (a client could
  // otherwise make us redo handshakes at will).
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Called for every ClientHello, with or without SNI (OpenSSL >= 1.1.1), before the cipher
  // and certificate are chosen: the place to install the leaf.
  SSL_CTX_set_tlsext_servername_callback(ctx, &InterceptTlsContext::on_servername);
  SSL_CTX_set_tlsext_servername_arg(ctx, self.get());
  SSL_CTX_set_alpn_select_cb(ctx, &InterceptTlsContext::on_alpn, self.get());
  return self;
}

Status InterceptTlsContext::prepare(SSL* ssl, const InterceptParams& params) const {
  if (ssl == nullptr) return Status(Errc::invalid_argument, "SSL is null");
  auto wire = encode_alpn(params.alpn);
  if (!wire) return wire.status();
  auto* state = new (std::nothrow) InterceptState{params.fallback_host, std::move(*wire), {}};
  if (state == nullptr) return Status(Errc::resource_exhausted, "out of memory");
  delete static_cast<InterceptState*>(SSL_get_ex_data(ssl, intercept_index()));
  if (SSL_set_ex_data(ssl, intercept_index(), state) != 1) {
    delete state;
    SSL_set_ex_data(ssl, intercept_index(), nullptr);
    return openssl_failure("attaching connection state to SSL");
  }
  return {};
}

std::string InterceptTlsContext::served_name(const SSL* ssl) {
  if (ssl == nullptr) return {};
  auto* state = static_cast<const InterceptState*>(SSL_get_ex_data(ssl, intercept_index()));
  return state ? state->served_name : std::string();
}

int InterceptTlsContext::on_servername(SSL* ssl, int* alert, void* arg) {
  auto* self = static_cast<InterceptTlsContext*>(arg);
  auto* state = static_cast<InterceptState*>(SSL_get_ex_data(ssl, intercept_index()));
  if (state == nullptr) {
    // prepare() was not called: remember the served name anyway.
    state = new (std::nothrow) InterceptState;
    if (state != nullptr && SSL_set_ex_data(ssl, intercept_index(), state) != 1) {
      delete state;
      state = nullptr;
    }
  }
  Result<std::shared_ptr<const LeafCertificate>> leaf(Errc::not_found, "no usable server name");
  // SNI first; a missing or invalid SNI falls back to what the proxy knows about the target.
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (sni != nullptr && *sni != '\0') leaf = self->leaves_->get(sni);
  if (!leaf && state != nullptr && !state->fallback_host.empty())
    leaf = self->leaves_->get(state->fallback_host);
  if (!leaf && !self->options_.default_host.empty())
    leaf = self->leaves_->get(self->options_.default_host);
  if (!leaf) {
    drain_openssl_errors();
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  if (SSL_use_certificate(ssl, (*leaf)->x509()) != 1 ||
      SSL_use_PrivateKey(ssl, self->leaves_->leaf_key()) != 1) {
    drain_openssl_errors();
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  if (state != nullptr) state->served_name = (*leaf)->name().text;
  return SSL_TLSEXT_ERR_OK;
}

int InterceptTlsContext::on_alpn(SSL* ssl, const unsigned char** out, unsigned char* out_len,
                                 const unsigned char* in, unsigned int in_len, void* arg) {
  auto* self = static_cast<InterceptTlsContext*>(arg);
  auto* state = static_cast<const InterceptState*>(SSL_get_ex_data(ssl, intercept_index()));
  const std::string& ours =
      (state != nullptr && !state->alpn_wire.empty()) ? state->alpn_wire : self->default_alpn_wire_;
  // Our preference order wins; `out` must point into the client's buffer `in`.
  for (size_t i = 0; i < ours.size();) {
    size_t len = static_cast<unsigned char>(ours[i]);
    std::string_view want(ours.data() + i + 1, len);
    i += 1 + len;
    for (unsigned int j = 0; j < in_len;) {
      unsigned int offer_len = in[j];
      if (j + 1 + offer_len > in_len) break;  // malformed list: OpenSSL validates, but be safe
      if (std::string_view(reinterpret_cast<const char*>(in + j + 1), offer_len) == want) {
        *out = in + j + 1;
        *out_len = static_cast<unsigned char>(offer_len);
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1 + offer_len;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// ---------------------------------------------------------------------------------------------
// UpstreamTlsContext

UpstreamTlsContext::UpstreamTlsContext(UpstreamTlsOptions options)
    : context_(boost::asio::ssl::context::tls_client), options_(std::move(options)) {}

Result<std::unique_ptr<UpstreamTlsContext>> UpstreamTlsContext::create(UpstreamTlsOptions options) {
  auto wire = encode_alpn(options.alpn);
  if (!wire) return wire.status();
  if (verify_index() < 0) return openssl_failure("allocating SSL ex_data index");
  std::unique_ptr<UpstreamTlsContext> self;
  try {
    self.reset(new UpstreamTlsContext(std::move(options)));
  } catch (const boost::system::system_error& e) {
    return openssl_failure(std::string("creating the TLS client context failed: ") + e.what());
  }
  SSL_CTX* ctx = self->native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  const auto& opts = self->options_;
  if (opts.insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    if (!opts.lazy_system_roots) self->load_system_roots();
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, &on_upstream_verify);
  }
  if (!opts.extra_ca_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(opts.extra_ca_file, ec))
      return Status(Errc::not_found,
                    "upstream CA file " + opts.extra_ca_file + " does not exist or is not a file");
    if (SSL_CTX_load_verify_locations(ctx, opts.extra_ca_file.c_str(), nullptr) != 1)
      return openssl_failure(
          "upstream CA file " + opts.extra_ca_file + " holds no readable PEM certificate",
          Errc::parse_error);
  }
  // SSL_CTX_set_alpn_protos returns 0 on success (unlike most of OpenSSL).
  if (!wire->empty() &&
      SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire->data()),
                              static_cast<unsigned int>(wire->size())) != 0)
    return openssl_failure("setting upstream ALPN failed");
  return self;
}

void UpstreamTlsContext::load_system_roots() const {
  std::call_once(system_roots_, [this] {
    // A missing system store is not fatal: extra_ca_file may be all the user trusts. The
    // store is the context's, consulted when a handshake verifies, so roots loaded here serve
    // connections whose SSL already exists.
    SSL_CTX* ctx = const_cast<boost::asio::ssl::context&>(context_).native_handle();
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) drain_openssl_errors();
  });
}

Status UpstreamTlsContext::prepare(SSL* ssl, std::string_view host,
                                   const std::vector<std::string>* alpn) const {
  if (ssl == nullptr) return Status(Errc::invalid_argument, "SSL is null");
  if (!options_.insecure) load_system_roots();
  auto name = parse_server_name(host);
  if (!name) return name.status();
  if (alpn != nullptr) {
    auto wire = encode_alpn(*alpn);
    if (!wire) return wire.status();
    if (SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire->data()),
                            static_cast<unsigned int>(wire->size())) != 0)
      return openssl_failure("setting upstream ALPN failed");
  }
  if (name->is_ip) {
    // No SNI for IP literals (RFC 6066 section 3); verify the IP SAN instead.
    if (!options_.insecure &&
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name->text.c_str()) != 1)
      return openssl_failure("setting upstream IP verification failed");
    return {};
  }
  if (SSL_set_tlsext_host_name(ssl, name->text.c_str()) != 1)
    return openssl_failure("setting upstream SNI failed");
  if (!options_.insecure) {
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, name->text.c_str()) != 1)
      return openssl_failure("setting upstream host verification failed");
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Handshake facts

std::optional<std::string> verify_failure_reason(const SSL* ssl) {
  // With verification off (insecure) OpenSSL still records chain errors; they do not count.
  if (ssl == nullptr || (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) == 0) return std::nullopt;
  long result = SSL_get_verify_result(ssl);
  auto* failure = static_cast<const VerifyFailure*>(SSL_get_ex_data(ssl, verify_index()));
  if (result == X509_V_OK && failure == nullptr) return std::nullopt;
  int code = failure != nullptr ? failure->code : static_cast<int>(result);
  std::string out = "upstream certificate verify failed: ";
  out += X509_verify_cert_error_string(code);
  if (failure != nullptr) {
    out += " (depth " + std::to_string(failure->depth);
    if (!failure->subject.empty()) out += ", " + failure->subject;
    out += ")";
  }
  return out;
}

int select_h2_or_http11(SSL*, const unsigned char** out, unsigned char* out_len,
                        const unsigned char* in, unsigned int in_len, void*) {
  static constexpr unsigned char kOurs[] = "\x02h2\x08http/1.1";
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, kOurs, sizeof kOurs - 1, in, in_len) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

flow::TlsInfo collect_tls_info(const SSL* ssl) {
  flow::TlsInfo info;
  if (ssl == nullptr) return info;
  info.present = true;
  if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name); sni != nullptr)
    info.sni = sni;
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn != nullptr) info.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  if (const char* version = SSL_get_version(ssl); version != nullptr) info.version = version;
  if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl); cipher != nullptr)
    info.cipher = SSL_CIPHER_get_name(cipher);
  if (X509* peer = SSL_get0_peer_certificate(ssl); peer != nullptr) {
    info.peer_subject = name_rfc2253(X509_get_subject_name(peer));
    info.peer_issuer = name_rfc2253(X509_get_issuer_name(peer));
  }
  return info;
}

}  // namespace retake::tls
