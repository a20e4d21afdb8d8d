// Internal to src/net/tls: RAII owners for OpenSSL objects and small formatting helpers.
// Not a public header; nothing outside src/net/tls includes it (tests may).
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "flow/status.h"

namespace retake::tls::detail {

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const noexcept {
    Fn(p);
  }
};

using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using Asn1IntPtr = std::unique_ptr<ASN1_INTEGER, Deleter<ASN1_INTEGER_free>>;
using Asn1OctetPtr = std::unique_ptr<ASN1_OCTET_STRING, Deleter<ASN1_OCTET_STRING_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME_free>>;
using NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;

// Takes a new reference on `p` and returns an owner of it.
inline X509Ptr up_ref(X509* p) {
  X509_up_ref(p);
  return X509Ptr(p);
}
inline PkeyPtr up_ref(EVP_PKEY* p) {
  EVP_PKEY_up_ref(p);
  return PkeyPtr(p);
}

// Drains OpenSSL's thread-local error queue into one line ("" when empty), so an error never
// leaks into the next, unrelated operation on this thread.
std::string drain_openssl_errors();

// `what` plus the drained OpenSSL error queue, as an Errc::internal Status (or `code`).
Status openssl_failure(std::string_view what, Errc code = Errc::internal);

// A name in RFC 2253 one-line form ("CN=foo,O=bar"); control characters escaped, at most
// `max_len` bytes (names come from peers and may be hostile).
std::string name_rfc2253(const X509_NAME* name, size_t max_len = 512);

// PEM / DER encodings of a certificate.
std::string to_pem(X509* cert);
std::string to_der(X509* cert);

// A fresh random positive serial number of `bytes` random bytes (never zero).
Asn1IntPtr random_serial(int bytes = 16);

// The key types retake generates.
enum class KeyKind { ec_p256, rsa_2048 };
Result<PkeyPtr> generate_key(KeyKind kind);

// The RFC 5280 method-1 key identifier: SHA-1 over the subjectPublicKey bit string.
Result<Asn1OctetPtr> key_identifier(X509_PUBKEY* pubkey);

// Adds a DER-encodable extension built from its internal structure.
bool add_ext(X509* cert, int nid, void* value, bool critical);

}  // namespace retake::tls::detail
