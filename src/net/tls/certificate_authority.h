// retake::tls (src/net/tls): retake's own certificate authority and the leaf certificates it
// mints, one per server name, so the recording proxy can terminate a client's TLS for any host.
//
// Depends on src/flow (Status/Result) and OpenSSL. This header names OpenSSL's opaque types
// only (X509, EVP_PKEY); it must not depend on sockets, Asio, the store or the proxy.
// The OpenSSL contexts built on these (SNI selection, upstream verification) live in
// tls_context.h.
#pragma once

#include <openssl/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "flow/status.h"

namespace retake::tls {

// retake's home directory: $RETAKE_HOME when set and non-empty, otherwise "$HOME/.retake"
// (HOME from the environment, else from the password database). Fails with not_found when
// neither gives a home. Does not create anything.
Result<std::filesystem::path> retake_home();

// retake_home() / "ca": where the CA lives unless the caller names another directory.
Result<std::filesystem::path> default_ca_dir();

// retake's CA: a key pair and a self-signed certificate (CN "retake CA", O "retake",
// basicConstraints critical CA:TRUE, keyUsage critical keyCertSign+cRLSign, subjectKeyIdentifier,
// about 10 years, random 128-bit serial), stored as two PEM files in one directory.
//
// The key is ECDSA P-256. Why not RSA 2048 as mitmproxy: minting a leaf signs with this key once
// per new host, and a P-256 signature costs tens of microseconds where an RSA-2048 signature
// costs about a millisecond; every TLS 1.3 client and every TLS 1.2 client of the last decade
// verifies ECDSA chains. (Leaf keys can still be RSA for old clients: see LeafOptions.)
// A CA with any key type that the user placed in the directory is loaded as is.
//
// A cheap, copyable, immutable handle: copies share the same OpenSSL objects, and every method
// is safe to call from any thread.
class CertificateAuthority {
 public:
  static constexpr const char* kCertificateFile = "retake-ca.pem";
  static constexpr const char* kKeyFile = "retake-ca-key.pem";

  // Loads the CA from `dir`, creating it first when neither file exists.
  // - Creates `dir` (mode 0700) and its parents when missing.
  // - The key file is created with mode 0600 from the start (O_CREAT|O_EXCL), never chmod'ed.
  // - Both files are written under temporary names and linked into place (key first, then
  //   certificate), and creation holds an flock on "<dir>/.retake-ca.lock": concurrent first use
  //   by several processes or threads yields one CA; the losers load the winner's files.
  // - A file that exists but does not parse, a key that does not match the certificate, or a
  //   certificate that is not a CA is an error naming the file (corruption / failed_precondition);
  //   nothing is ever regenerated over an existing file. Unreadable files are io_error.
  // - Waiting for another process's lock is bounded (10 s, then timeout).
  static Result<CertificateAuthority> load_or_create(const std::filesystem::path& dir);

  // Loads an existing CA from `dir`; not_found when the certificate file is missing.
  static Result<CertificateAuthority> load(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const;
  std::filesystem::path certificate_path() const;  // <dir>/retake-ca.pem
  std::filesystem::path key_path() const;          // <dir>/retake-ca-key.pem
  // True when this handle's load_or_create() call created the files.
  bool created() const;

  // The certificate as PEM text (what retake-ca.pem holds) and as DER bytes (for
  // `retake ca export --der`, Android and Windows imports).
  const std::string& certificate_pem() const;
  const std::string& certificate_der() const;
  // Subject in RFC 2253 form ("O=retake,CN=retake CA").
  std::string subject() const;
  // SHA-256 of the DER certificate as upper-case hex pairs joined by ':' (as browsers show it).
  std::string sha256_fingerprint() const;

  // The OpenSSL objects, owned by this handle (do not free; up-ref to keep them longer).
  X509* x509() const;
  EVP_PKEY* private_key() const;

  struct State;  // defined in certificate_authority.cc

 private:
  explicit CertificateAuthority(std::shared_ptr<const State> state) : state_(std::move(state)) {}
  std::shared_ptr<const State> state_;
};

// A server name as the leaf cache keys it.
struct ServerName {
  std::string text;    // lower-case host without trailing dot, or canonical IP text ("::1")
  bool is_ip = false;  // IPv4 or IPv6 literal
  bool operator==(const ServerName&) const = default;
};

// Normalizes what a client sent as SNI or a CONNECT host: lower-cases, drops one trailing dot
// and IPv6 brackets, canonicalizes IP literals. invalid_argument for empty text, more than 253
// characters, labels longer than 63, or characters other than letters, digits, '-', '_' and '.'.
Result<ServerName> parse_server_name(std::string_view name);

enum class LeafKeyType {
  ec_p256,   // ECDSA P-256: cheap handshakes; all current clients.
  rsa_2048,  // RSA 2048: for clients that offer no ECDSA cipher suites (old TLS 1.2 stacks).
};

// Options of a LeafCertCache. Plain struct; every field says its default.
struct LeafOptions {
  // Most leaf certificates kept (least recently used evicted). Default: 10000. 0 counts as 1.
  size_t capacity = 10000;
  // The one key pair shared by every leaf. Default: ec_p256.
  LeafKeyType key_type = LeafKeyType::ec_p256;
  // Validity after now; clamped to [1, 397] days (Apple and Chrome reject longer leaves) and to
  // the CA's own end. Validity starts one day before now to tolerate clock skew. Default: 365.
  int validity_days = 365;
};

// One minted leaf certificate. Immutable; shared by every connection for that name.
class LeafCertificate {
 public:
  LeafCertificate(ServerName name, X509* cert);  // takes ownership of `cert`
  ~LeafCertificate();
  LeafCertificate(const LeafCertificate&) = delete;
  LeafCertificate& operator=(const LeafCertificate&) = delete;

  const ServerName& name() const { return name_; }
  // Owned by this object; up-ref to keep it longer.
  X509* x509() const { return cert_; }
  std::string pem() const;

 private:
  ServerName name_;
  X509* cert_;
};

// Mints and caches leaf certificates signed by a CertificateAuthority: SAN DNS:<name> for host
// names, SAN IP:<addr> for IPv4/IPv6 literals, CN = the name (cut to 64 characters), random
// 128-bit serial, extendedKeyUsage serverAuth, authorityKeyIdentifier, subjectKeyIdentifier.
// One leaf key pair is generated at creation and reused for every leaf (as mitmproxy does), so
// minting is one signature by the CA key.
//
// Thread-safe: get() may be called from any thread. Minting happens outside the lock; two
// threads racing on a new name may both mint, and both get the one that was cached first.
class LeafCertCache {
 public:
  // Generates the leaf key. Fails (internal) only when OpenSSL does.
  static Result<std::shared_ptr<LeafCertCache>> create(CertificateAuthority ca,
                                                       LeafOptions options = {});
  ~LeafCertCache();
  LeafCertCache(const LeafCertCache&) = delete;
  LeafCertCache& operator=(const LeafCertCache&) = delete;

  // The certificate for `server_name` (see parse_server_name), minted on first use.
  // invalid_argument for a name parse_server_name rejects; internal if OpenSSL fails.
  Result<std::shared_ptr<const LeafCertificate>> get(std::string_view server_name);

  // The private key of every leaf; owned by the cache.
  EVP_PKEY* leaf_key() const { return leaf_key_; }
  const CertificateAuthority& authority() const { return ca_; }
  const LeafOptions& options() const { return options_; }
  size_t size() const;
  // How many certificates were minted since creation (cache misses), for tests and stats.
  uint64_t minted() const { return minted_.load(std::memory_order_relaxed); }

  struct Precomputed;  // defined in leaf_cert_cache.cc

 private:
  LeafCertCache(CertificateAuthority ca, LeafOptions options, EVP_PKEY* key,
                std::unique_ptr<Precomputed> pre);
  Result<std::shared_ptr<const LeafCertificate>> mint(const ServerName& name) const;

  using Lru = std::list<std::shared_ptr<const LeafCertificate>>;
  CertificateAuthority ca_;
  LeafOptions options_;
  EVP_PKEY* leaf_key_;
  std::unique_ptr<Precomputed> pre_;
  mutable std::mutex mutex_;
  Lru lru_;  // front: most recently used
  std::unordered_map<std::string, Lru::iterator> index_;
  std::atomic<uint64_t> minted_{0};
};

}  // namespace retake::tls
