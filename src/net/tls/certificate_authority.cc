#include "net/tls/certificate_authority.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "net/tls/openssl_util.h"

namespace retake::tls {

using namespace detail;
namespace fs = std::filesystem;

struct CertificateAuthority::State {
  fs::path dir;
  bool created = false;
  X509Ptr cert;
  PkeyPtr key;
  std::string pem;
  std::string der;
};

namespace {

constexpr const char* kLockFile = ".retake-ca.lock";
constexpr size_t kMaxFileBytes = 1 << 20;  // a CA file is a few KB; refuse anything absurd
constexpr auto kLockWait = std::chrono::seconds(10);
constexpr long kCaValidityDays = 3650;
constexpr long kCaBackdateSeconds = 2 * 86400;

std::string errno_text(int err) {
  return std::strerror(err);
}

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Reads a whole file of at most kMaxFileBytes. not_found when it does not exist.
Result<std::string> read_file(const fs::path& path, const char* what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT)
      return Status(Errc::not_found, std::string(what) + " " + path.string() + " does not exist");
    return Status(Errc::io_error, "cannot read " + std::string(what) + " " + path.string() + ": " +
                                      errno_text(err));
  }
  Fd guard(fd);
  std::string out;
  std::array<char, 8192> buf{};
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(Errc::io_error, "cannot read " + std::string(what) + " " + path.string() +
                                        ": " + errno_text(errno));
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
    if (out.size() > kMaxFileBytes)
      return Status(Errc::corruption, std::string(what) + " " + path.string() +
                                          " is larger than 1 MiB; it is not a CA file");
  }
  return out;
}

Status write_all(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(Errc::io_error, "cannot write " + path.string() + ": " + errno_text(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd) != 0)
    return Status(Errc::io_error, "cannot sync " + path.string() + ": " + errno_text(errno));
  return {};
}

std::string random_hex(size_t bytes) {
  std::array<unsigned char, 16> buf{};
  bytes = std::min(bytes, buf.size());
  if (RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) {
    drain_openssl_errors();
    // Uniqueness also comes from the pid; this is only a temp-file suffix.
    auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    std::memcpy(buf.data(), &t, std::min(sizeof t, bytes));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    out += kHex[buf[i] >> 4];
    out += kHex[buf[i] & 15];
  }
  return out;
}

// Parses and checks the two files. Every failure names the file at fault and says that
// retake will not replace it.
Result<std::shared_ptr<CertificateAuthority::State>> load_files(const fs::path& dir) {
  fs::path cert_path = dir / CertificateAuthority::kCertificateFile;
  fs::path key_path = dir / CertificateAuthority::kKeyFile;
  auto cert_text = read_file(cert_path, "CA certificate");
  if (!cert_text) return cert_text.status();
  auto key_text = read_file(key_path, "CA key");
  if (!key_text) {
    if (key_text.status().code() == Errc::not_found)
      return Status(Errc::failed_precondition,
                    "CA certificate " + cert_path.string() + " exists but its key " +
                        key_path.string() +
                        " is missing; restore the key or remove the directory to create a new CA");
    return key_text.status();
  }
  const char* keep = "; retake will not replace it: fix or remove it to create a new CA";

  auto state = std::make_shared<CertificateAuthority::State>();
  state->dir = dir;
  {
    BioPtr bio(BIO_new_mem_buf(cert_text->data(), static_cast<int>(cert_text->size())));
    state->cert.reset(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!state->cert)
      return openssl_failure(
          "CA certificate " + cert_path.string() + " is not a PEM X.509 certificate" + keep,
          Errc::corruption);
  }
  {
    BioPtr bio(BIO_new_mem_buf(key_text->data(), static_cast<int>(key_text->size())));
    // An empty passphrase callback result: an encrypted key fails here instead of prompting.
    auto no_pass = [](char*, int, int, void*) -> int { return 0; };
    state->key.reset(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_pass, nullptr) : nullptr);
    if (!state->key)
      return openssl_failure(
          "CA key " + key_path.string() + " is not an unencrypted PEM private key" + keep,
          Errc::corruption);
  }
  if (X509_check_private_key(state->cert.get(), state->key.get()) != 1)
    return openssl_failure("CA key " + key_path.string() + " does not match CA certificate " +
                               cert_path.string() + keep,
                           Errc::corruption);
  if (X509_check_ca(state->cert.get()) < 1)
    return Status(Errc::failed_precondition,
                  "CA certificate " + cert_path.string() + " is not a CA certificate" + keep);
  state->pem = to_pem(state->cert.get());
  state->der = to_der(state->cert.get());
  if (state->pem.empty() || state->der.empty())
    return openssl_failure("encoding CA certificate " + cert_path.string() + " failed");
  drain_openssl_errors();
  return state;
}

Result<X509Ptr> build_ca_certificate(EVP_PKEY* key) {
  X509Ptr cert(X509_new());
  if (!cert) return openssl_failure("allocating the CA certificate failed");
  Asn1IntPtr serial = random_serial(16);
  NamePtr name(X509_NAME_new());
  auto text = [](const char* s) { return reinterpret_cast<const unsigned char*>(s); };
  bool ok =
      serial && name && X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
      X509_set_serialNumber(cert.get(), serial.get()) == 1 &&
      X509_NAME_add_entry_by_txt(name.get(), "O", MBSTRING_UTF8, text("retake"), -1, -1, 0) == 1 &&
      X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8, text("retake CA"), -1, -1, 0) ==
          1 &&
      X509_set_subject_name(cert.get(), name.get()) == 1 &&
      X509_set_issuer_name(cert.get(), name.get()) == 1 &&
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kCaBackdateSeconds) != nullptr &&
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), kCaValidityDays, 0, nullptr) != nullptr &&
      X509_set_pubkey(cert.get(), key) == 1;
  if (!ok) return openssl_failure("building the CA certificate failed");

  std::unique_ptr<BASIC_CONSTRAINTS, Deleter<BASIC_CONSTRAINTS_free>> bc(BASIC_CONSTRAINTS_new());
  std::unique_ptr<ASN1_BIT_STRING, Deleter<ASN1_BIT_STRING_free>> usage(ASN1_BIT_STRING_new());
  auto ski = key_identifier(X509_get_X509_PUBKEY(cert.get()));
  if (!bc || !usage || !ski) return openssl_failure("building the CA extensions failed");
  bc->ca = 0xFF;                                           // ASN1_BOOLEAN true
  ok = ASN1_BIT_STRING_set_bit(usage.get(), 5, 1) == 1 &&  // keyCertSign
       ASN1_BIT_STRING_set_bit(usage.get(), 6, 1) == 1 &&  // cRLSign
       add_ext(cert.get(), NID_basic_constraints, bc.get(), true) &&
       add_ext(cert.get(), NID_key_usage, usage.get(), true) &&
       add_ext(cert.get(), NID_subject_key_identifier, ski->get(), false) &&
       X509_sign(cert.get(), key, EVP_sha256()) > 0;
  if (!ok) return openssl_failure("signing the CA certificate failed");
  return cert;
}

// Generates a CA and links both files into `dir`. The caller holds the lock. Returns
// already_exists when a file appeared anyway (someone not using the lock won); the caller then
// loads what is there.
Status create_files(const fs::path& dir) {
  auto key = generate_key(KeyKind::ec_p256);
  if (!key) return key.status();
  auto cert = build_ca_certificate(key->get());
  if (!cert) return cert.status();

  std::string key_pem;
  {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio ||
        PEM_write_bio_PrivateKey(bio.get(), key->get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
      return openssl_failure("encoding the CA key failed");
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    key_pem.assign(data, static_cast<size_t>(len));
  }
  std::string cert_pem = to_pem(cert->get());
  if (cert_pem.empty()) return openssl_failure("encoding the CA certificate failed");

  std::string suffix = ".tmp-" + std::to_string(::getpid()) + "-" + random_hex(8);
  fs::path key_final = dir / CertificateAuthority::kKeyFile;
  fs::path cert_final = dir / CertificateAuthority::kCertificateFile;
  fs::path key_tmp = dir / ("." + std::string(CertificateAuthority::kKeyFile) + suffix);
  fs::path cert_tmp = dir / ("." + std::string(CertificateAuthority::kCertificateFile) + suffix);

  // The temporaries never outlive this function, whatever happens.
  struct Cleanup {
    const fs::path& a;
    const fs::path& b;
    ~Cleanup() {
      ::unlink(a.c_str());
      ::unlink(b.c_str());
    }
  } cleanup{key_tmp, cert_tmp};

  auto write_new = [](const fs::path& path, mode_t mode, std::string_view data) -> Status {
    // O_EXCL: the key is born with `mode`; no window where it is readable by others.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
      return Status(Errc::io_error, "cannot create " + path.string() + ": " + errno_text(errno));
    Fd guard(fd);
    return write_all(fd, data, path);
  };
  if (Status s = write_new(key_tmp, 0600, key_pem); !s) return s;
  if (Status s = write_new(cert_tmp, 0644, cert_pem); !s) return s;

  // link() never replaces an existing file, unlike rename(). Key first: a certificate file
  // in place always means its key is in place too.
  if (::link(key_tmp.c_str(), key_final.c_str()) != 0) {
    if (errno == EEXIST) return Status(Errc::already_exists, key_final.string());
    return Status(Errc::io_error, "cannot create " + key_final.string() + ": " + errno_text(errno));
  }
  if (::link(cert_tmp.c_str(), cert_final.c_str()) != 0) {
    if (errno == EEXIST) return Status(Errc::already_exists, cert_final.string());
    return Status(Errc::io_error,
                  "cannot create " + cert_final.string() + ": " + errno_text(errno));
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: make the new names durable
    ::close(dfd);
  }
  return {};
}

// Takes an exclusive flock on <dir>/.retake-ca.lock, waiting at most kLockWait.
Result<int> lock_dir(const fs::path& dir) {
  fs::path path = dir / kLockFile;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return Status(Errc::io_error,
                  "cannot open lock file " + path.string() + ": " + errno_text(errno));
  auto deadline = std::chrono::steady_clock::now() + kLockWait;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    int err = errno;
    if (err != EWOULDBLOCK && err != EINTR) {
      ::close(fd);
      return Status(Errc::io_error, "cannot lock " + path.string() + ": " + errno_text(err));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::close(fd);
      return Status(Errc::timeout, "another process holds " + path.string() +
                                       " for more than 10 s while creating the CA");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Status ensure_dir(const fs::path& dir) {
  std::error_code ec;
  if (dir.has_parent_path()) {
    fs::create_directories(dir.parent_path(), ec);
    if (ec)
      return Status(Errc::io_error,
                    "cannot create directory " + dir.parent_path().string() + ": " + ec.message());
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Status(Errc::io_error,
                  "cannot create directory " + dir.string() + ": " + errno_text(errno));
  if (!fs::is_directory(dir, ec))
    return Status(Errc::failed_precondition, dir.string() + " exists and is not a directory");
  return {};
}

bool path_exists(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

}  // namespace

Result<fs::path> retake_home() {
  if (const char* home = std::getenv("RETAKE_HOME"); home != nullptr && *home != '\0')
    return fs::path(home);
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return fs::path(home) / ".retake";
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::array<char, 4096> buf{};
  if (::getpwuid_r(::getuid(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr &&
      found->pw_dir != nullptr && *found->pw_dir != '\0')
    return fs::path(found->pw_dir) / ".retake";
  return Status(Errc::not_found, "neither RETAKE_HOME nor HOME is set and the user has no home");
}

Result<fs::path> default_ca_dir() {
  auto home = retake_home();
  if (!home) return home.status();
  return *home / "ca";
}

Result<CertificateAuthority> CertificateAuthority::load(const fs::path& dir) {
  auto state = load_files(dir);
  if (!state) return state.status();
  return CertificateAuthority(std::move(*state));
}

Result<CertificateAuthority> CertificateAuthority::load_or_create(const fs::path& dir) {
  if (dir.empty()) return Status(Errc::invalid_argument, "CA directory is empty");
  fs::path cert_path = dir / kCertificateFile;
  // Fast path without the lock: the certificate is linked last, so once it exists the pair is
  // complete and never changes. This also serves a read-only directory.
  if (path_exists(cert_path)) return load(dir);

  if (Status s = ensure_dir(dir); !s) return s;
  auto lock = lock_dir(dir);
  if (!lock) return lock.status();
  Fd lock_guard(*lock);  // closing the descriptor releases the flock

  if (path_exists(cert_path)) return load(dir);  // another process won while we waited
  fs::path key_path = dir / kKeyFile;
  if (path_exists(key_path))
    return Status(Errc::failed_precondition,
                  "CA key " + key_path.string() + " exists without its certificate " +
                      cert_path.string() +
                      "; retake will not replace it: remove it to create a new CA");
  Status created = create_files(dir);
  if (!created && created.code() != Errc::already_exists) return created;
  auto state = load_files(dir);
  if (!state) return state.status();
  (*state)->created = created.ok();
  return CertificateAuthority(std::move(*state));
}

const fs::path& CertificateAuthority::dir() const {
  return state_->dir;
}
fs::path CertificateAuthority::certificate_path() const {
  return state_->dir / kCertificateFile;
}
fs::path CertificateAuthority::key_path() const {
  return state_->dir / kKeyFile;
}
bool CertificateAuthority::created() const {
  return state_->created;
}
const std::string& CertificateAuthority::certificate_pem() const {
  return state_->pem;
}
const std::string& CertificateAuthority::certificate_der() const {
  return state_->der;
}
X509* CertificateAuthority::x509() const {
  return state_->cert.get();
}
EVP_PKEY* CertificateAuthority::private_key() const {
  return state_->key.get();
}

std::string CertificateAuthority::subject() const {
  return name_rfc2253(X509_get_subject_name(state_->cert.get()));
}

std::string CertificateAuthority::sha256_fingerprint() const {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (X509_digest(state_->cert.get(), EVP_sha256(), md.data(), &len) != 1) {
    drain_openssl_errors();
    return {};
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    if (i) out += ':';
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

}  // namespace retake::tls
