#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "net/tls/certificate_authority.h"
#include "net/tls/openssl_util.h"

namespace retake::tls {

using namespace detail;

namespace {

constexpr int kMaxLeafDays = 397;  // Apple and Chrome: at most 398 days for a TLS leaf
constexpr long kBackdateSeconds = 86400;
constexpr size_t kMaxCommonName = 64;  // ub-common-name (RFC 5280)

bool valid_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;  // empty label: "a..b" or ".a"
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

// The same key pair held the pre-3.0 ("legacy") way. Why: OpenSSL 3.0's X509_PUBKEY_set, which
// X509_set_pubkey calls for every minted leaf, round-trips a provider-held key through an
// encoder and a decoder (about 70% of minting time, several hundred microseconds), while for a
// legacy-held key it encodes the public point directly. TLS handshakes accept either form.
// TODO(perf): drop once we require OpenSSL >= 3.1, whose decoder path is cached and fast.
Result<PkeyPtr> legacy_copy(EVP_PKEY* key) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  PkeyPtr out(EVP_PKEY_new());
  if (!out) return openssl_failure("allocating the leaf key");
  bool ok = false;
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: {
      EC_KEY* ec = EVP_PKEY_get1_EC_KEY(key);
      ok = ec != nullptr && EVP_PKEY_assign_EC_KEY(out.get(), ec) == 1;
      if (!ok) EC_KEY_free(ec);
      break;
    }
    case EVP_PKEY_RSA: {
      RSA* rsa = EVP_PKEY_get1_RSA(key);
      ok = rsa != nullptr && EVP_PKEY_assign_RSA(out.get(), rsa) == 1;
      if (!ok) RSA_free(rsa);
      break;
    }
    default:
      break;
  }
#pragma GCC diagnostic pop
  if (!ok) return openssl_failure("converting the leaf key");
  return out;
}

}  // namespace

Result<ServerName> parse_server_name(std::string_view name) {
  if (name.empty()) return Status(Errc::invalid_argument, "server name is empty");
  if (name.size() > 255)
    return Status(Errc::invalid_argument, "server name is longer than 253 characters");
  bool bracketed = name.size() >= 2 && name.front() == '[' && name.back() == ']';
  std::string text(bracketed ? name.substr(1, name.size() - 2) : name);

  std::array<unsigned char, 16> addr{};
  std::array<char, INET6_ADDRSTRLEN> buf{};
  if (!bracketed && ::inet_pton(AF_INET, text.c_str(), addr.data()) == 1) {
    ::inet_ntop(AF_INET, addr.data(), buf.data(), buf.size());
    return ServerName{buf.data(), true};
  }
  if (::inet_pton(AF_INET6, text.c_str(), addr.data()) == 1) {
    ::inet_ntop(AF_INET6, addr.data(), buf.data(), buf.size());
    return ServerName{buf.data(), true};
  }
  if (bracketed)
    return Status(Errc::invalid_argument, "server name in brackets is not an IPv6 address");
  std::transform(text.begin(), text.end(), text.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (!text.empty() && text.back() == '.') text.pop_back();
  if (!valid_dns_name(text))
    return Status(Errc::invalid_argument, "server name is not a valid host name");
  return ServerName{std::move(text), false};
}

LeafCertificate::LeafCertificate(ServerName name, X509* cert)
    : name_(std::move(name)), cert_(cert) {}
LeafCertificate::~LeafCertificate() {
  X509_free(cert_);
}
std::string LeafCertificate::pem() const {
  return to_pem(cert_);
}

// What every leaf shares, computed once so minting is little more than one signature.
struct LeafCertCache::Precomputed {
  Asn1OctetPtr leaf_key_id;
  std::unique_ptr<AUTHORITY_KEYID, Deleter<AUTHORITY_KEYID_free>> authority_key_id;
  std::unique_ptr<BASIC_CONSTRAINTS, Deleter<BASIC_CONSTRAINTS_free>> basic_constraints;
  std::unique_ptr<ASN1_BIT_STRING, Deleter<ASN1_BIT_STRING_free>> key_usage;
  std::unique_ptr<EXTENDED_KEY_USAGE, Deleter<EXTENDED_KEY_USAGE_free>> ext_key_usage;
  Asn1TimePtr ca_not_after;
};

Result<std::shared_ptr<LeafCertCache>> LeafCertCache::create(CertificateAuthority ca,
                                                             LeafOptions options) {
  auto key = generate_key(options.key_type == LeafKeyType::rsa_2048 ? KeyKind::rsa_2048
                                                                    : KeyKind::ec_p256);
  if (!key) return key.status();
  key = legacy_copy(key->get());
  if (!key) return key.status();
  auto pre = std::make_unique<Precomputed>();

  // The leaf key's identifier, from a throwaway X509_PUBKEY.
  std::unique_ptr<X509_PUBKEY, Deleter<X509_PUBKEY_free>> pub;
  {
    X509_PUBKEY* raw = nullptr;
    if (X509_PUBKEY_set(&raw, key->get()) != 1) return openssl_failure("encoding the leaf key");
    pub.reset(raw);
  }
  auto leaf_id = key_identifier(pub.get());
  if (!leaf_id) return leaf_id.status();
  pre->leaf_key_id = std::move(*leaf_id);

  // authorityKeyIdentifier: the CA's subjectKeyIdentifier, or the hash of its key when a
  // user-supplied CA has none.
  Asn1OctetPtr ca_id;
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(ca.x509()); ski != nullptr) {
    ca_id.reset(ASN1_OCTET_STRING_dup(ski));
  } else {
    auto computed = key_identifier(X509_get_X509_PUBKEY(ca.x509()));
    if (!computed) return computed.status();
    ca_id = std::move(*computed);
  }
  pre->authority_key_id.reset(AUTHORITY_KEYID_new());
  if (!ca_id || !pre->authority_key_id) return openssl_failure("building authorityKeyIdentifier");
  pre->authority_key_id->keyid = ca_id.release();

  pre->basic_constraints.reset(BASIC_CONSTRAINTS_new());  // ca defaults to false
  pre->key_usage.reset(ASN1_BIT_STRING_new());
  pre->ext_key_usage.reset(sk_ASN1_OBJECT_new_null());
  if (!pre->basic_constraints || !pre->key_usage || !pre->ext_key_usage)
    return openssl_failure("building leaf extensions");
  bool ok = ASN1_BIT_STRING_set_bit(pre->key_usage.get(), 0, 1) == 1;  // digitalSignature
  // keyEncipherment: TLS 1.2 RSA key exchange encrypts the premaster secret to this key.
  if (options.key_type == LeafKeyType::rsa_2048)
    ok = ok && ASN1_BIT_STRING_set_bit(pre->key_usage.get(), 2, 1) == 1;
  ok = ok && sk_ASN1_OBJECT_push(pre->ext_key_usage.get(), OBJ_nid2obj(NID_server_auth)) > 0;
  if (!ok) return openssl_failure("building leaf extensions");
  pre->ca_not_after.reset(ASN1_TIME_dup(X509_get0_notAfter(ca.x509())));
  if (!pre->ca_not_after) return openssl_failure("reading the CA's validity");

  options.validity_days = std::clamp(options.validity_days, 1, kMaxLeafDays);
  options.capacity = std::max<size_t>(options.capacity, 1);
  EVP_PKEY* raw_key = key->release();
  return std::shared_ptr<LeafCertCache>(
      new LeafCertCache(std::move(ca), options, raw_key, std::move(pre)));
}

LeafCertCache::LeafCertCache(CertificateAuthority ca, LeafOptions options, EVP_PKEY* key,
                             std::unique_ptr<Precomputed> pre)
    : ca_(std::move(ca)), options_(options), leaf_key_(key), pre_(std::move(pre)) {}

LeafCertCache::~LeafCertCache() {
  EVP_PKEY_free(leaf_key_);
}

size_t LeafCertCache::size() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

Result<std::shared_ptr<const LeafCertificate>> LeafCertCache::get(std::string_view server_name) {
  auto name = parse_server_name(server_name);
  if (!name) return name.status();
  {
    std::lock_guard lock(mutex_);
    if (auto it = index_.find(name->text); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return *it->second;
    }
  }
  // Mint without the lock: other names stay served while this one is signed.
  auto leaf = mint(*name);
  if (!leaf) return leaf.status();
  minted_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mutex_);
  if (auto it = index_.find(name->text); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return *it->second;  // another thread cached one first; everyone shares that one
  }
  lru_.push_front(*leaf);
  index_.emplace(name->text, lru_.begin());
  while (lru_.size() > options_.capacity) {
    index_.erase(lru_.back()->name().text);
    lru_.pop_back();
  }
  return std::move(*leaf);
}

Result<std::shared_ptr<const LeafCertificate>> LeafCertCache::mint(const ServerName& name) const {
  X509Ptr cert(X509_new());
  Asn1IntPtr serial = random_serial(16);
  NamePtr subject(X509_NAME_new());
  if (!cert || !serial || !subject) return openssl_failure("allocating a leaf certificate");

  std::string cn = name.text.substr(0, kMaxCommonName);
  bool ok = X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
            X509_set_serialNumber(cert.get(), serial.get()) == 1 &&
            X509_NAME_add_entry_by_txt(subject.get(), "CN", MBSTRING_UTF8,
                                       reinterpret_cast<const unsigned char*>(cn.data()),
                                       static_cast<int>(cn.size()), -1, 0) == 1 &&
            X509_set_subject_name(cert.get(), subject.get()) == 1 &&
            X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_.x509())) == 1 &&
            X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) != nullptr &&
            X509_time_adj_ex(X509_getm_notAfter(cert.get()), options_.validity_days, 0, nullptr) !=
                nullptr &&
            X509_set_pubkey(cert.get(), leaf_key_) == 1;
  if (!ok) return openssl_failure("building a leaf certificate for " + name.text);
  // A leaf must not outlive its CA: verifiers would reject it at the end anyway.
  if (ASN1_TIME_compare(X509_get0_notAfter(cert.get()), pre_->ca_not_after.get()) > 0 &&
      X509_set1_notAfter(cert.get(), pre_->ca_not_after.get()) != 1)
    return openssl_failure("clamping leaf validity");

  GeneralNamesPtr sans(sk_GENERAL_NAME_new_null());
  GENERAL_NAME* gen = GENERAL_NAME_new();
  if (!sans || !gen) {
    GENERAL_NAME_free(gen);
    return openssl_failure("allocating subjectAltName");
  }
  sk_GENERAL_NAME_push(sans.get(), gen);  // sans owns gen from here
  if (name.is_ip) {
    std::array<unsigned char, 16> addr{};
    bool v6 = name.text.find(':') != std::string::npos;
    if (::inet_pton(v6 ? AF_INET6 : AF_INET, name.text.c_str(), addr.data()) != 1)
      return Status(Errc::internal, "canonical IP " + name.text + " does not parse");
    ASN1_OCTET_STRING* ip = ASN1_OCTET_STRING_new();
    if (!ip || ASN1_OCTET_STRING_set(ip, addr.data(), v6 ? 16 : 4) != 1) {
      ASN1_OCTET_STRING_free(ip);
      return openssl_failure("building an IP subjectAltName");
    }
    GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
  } else {
    // Built as an IA5String directly, never through OpenSSL's config syntax, so a hostile SNI
    // cannot smuggle in extra names.
    ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
    if (!dns || ASN1_STRING_set(dns, name.text.data(), static_cast<int>(name.text.size())) != 1) {
      ASN1_IA5STRING_free(dns);
      return openssl_failure("building a DNS subjectAltName");
    }
    GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
  }

  ok = add_ext(cert.get(), NID_basic_constraints, pre_->basic_constraints.get(), true) &&
       add_ext(cert.get(), NID_key_usage, pre_->key_usage.get(), true) &&
       add_ext(cert.get(), NID_ext_key_usage, pre_->ext_key_usage.get(), false) &&
       add_ext(cert.get(), NID_subject_alt_name, sans.get(), false) &&
       add_ext(cert.get(), NID_subject_key_identifier, pre_->leaf_key_id.get(), false) &&
       add_ext(cert.get(), NID_authority_key_identifier, pre_->authority_key_id.get(), false) &&
       X509_sign(cert.get(), ca_.private_key(), EVP_sha256()) > 0;
  if (!ok) return openssl_failure("signing a leaf certificate for " + name.text);
  return std::make_shared<const LeafCertificate>(name, cert.release());
}

}  // namespace retake::tls
