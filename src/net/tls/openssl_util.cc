#include "net/tls/openssl_util.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <array>

namespace retake::tls::detail {

std::string drain_openssl_errors() {
  std::string out;
  // Bounded: OpenSSL's queue holds at most 16 entries, but guard anyway.
  for (int i = 0; i < 32; ++i) {
    unsigned long e = ERR_get_error();
    if (e == 0) break;
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    if (!out.empty()) out += "; ";
    out += buf.data();
  }
  ERR_clear_error();
  return out;
}

Status openssl_failure(std::string_view what, Errc code) {
  std::string msg(what);
  std::string errs = drain_openssl_errors();
  if (!errs.empty()) msg += " (" + errs + ")";
  return Status(code, std::move(msg));
}

std::string name_rfc2253(const X509_NAME* name, size_t max_len) {
  if (name == nullptr) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return {};
  // XN_FLAG_RFC2253 escapes control characters and RFC 2253 specials; UTF-8 stays UTF-8.
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    drain_openssl_errors();
    return {};
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  std::string out(data, len > 0 ? static_cast<size_t>(len) : 0);
  if (out.size() > max_len) out.resize(max_len);
  return out;
}

std::string to_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return {};
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, len > 0 ? static_cast<size_t>(len) : 0);
}

std::string to_der(X509* cert) {
  unsigned char* buf = nullptr;
  int len = i2d_X509(cert, &buf);
  if (len <= 0) return {};
  std::string out(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  return out;
}

Asn1IntPtr random_serial(int bytes) {
  std::array<unsigned char, 32> buf{};
  if (bytes <= 0 || bytes > static_cast<int>(buf.size())) return nullptr;
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (RAND_bytes(buf.data(), bytes) != 1) return nullptr;
    // BN_bin2bn reads unsigned big-endian, so the serial is positive; DER adds a leading zero
    // byte when the top bit is set (17 octets, well under RFC 5280's 20).
    BnPtr bn(BN_bin2bn(buf.data(), bytes, nullptr));
    if (!bn) return nullptr;
    if (BN_is_zero(bn.get())) continue;
    return Asn1IntPtr(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  }
  return nullptr;
}

Result<PkeyPtr> generate_key(KeyKind kind) {
  EVP_PKEY* key = nullptr;
  switch (kind) {
    case KeyKind::ec_p256:
      key = EVP_EC_gen("P-256");
      break;
    case KeyKind::rsa_2048:
      key = EVP_RSA_gen(2048);
      break;
  }
  if (key == nullptr) return openssl_failure("key generation failed");
  return PkeyPtr(key);
}

Result<Asn1OctetPtr> key_identifier(X509_PUBKEY* pubkey) {
  const unsigned char* pk = nullptr;
  int pk_len = 0;
  if (pubkey == nullptr || X509_PUBKEY_get0_param(nullptr, &pk, &pk_len, nullptr, pubkey) != 1)
    return openssl_failure("reading the public key for its identifier failed");
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  if (EVP_Digest(pk, static_cast<size_t>(pk_len), md.data(), &md_len, EVP_sha1(), nullptr) != 1)
    return openssl_failure("hashing the public key failed");
  Asn1OctetPtr id(ASN1_OCTET_STRING_new());
  if (!id || ASN1_OCTET_STRING_set(id.get(), md.data(), static_cast<int>(md_len)) != 1)
    return openssl_failure("allocating a key identifier failed");
  return id;
}

bool add_ext(X509* cert, int nid, void* value, bool critical) {
  return X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0, X509V3_ADD_DEFAULT) == 1;
}

}  // namespace retake::tls::detail
