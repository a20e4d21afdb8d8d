#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "net/tls/certificate_authority.h"
#include "tls_test_support.h"

using namespace retake;
using namespace retake::tls;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

bool ext_critical(X509* cert, int nid) {
  int idx = X509_get_ext_by_NID(cert, nid, -1);
  REQUIRE(idx >= 0);
  return X509_EXTENSION_get_critical(X509_get_ext(cert, idx)) == 1;
}

}  // namespace

TEST_CASE("first use creates the CA with a 0600 key in a 0700 directory and later loads reuse it") {
  test::TempDir tmp;
  fs::path dir = tmp.path() / "home" / "ca";
  auto first = CertificateAuthority::load_or_create(dir);
  REQUIRE_MESSAGE(first.ok(), first.status().to_string());
  CHECK(first->created());
  CHECK(first->certificate_path() == dir / "retake-ca.pem");
  CHECK(first->key_path() == dir / "retake-ca-key.pem");
  CHECK(mode_of(first->key_path()) == 0600);
  CHECK(mode_of(dir) == 0700);
  CHECK(slurp(first->certificate_path()) == first->certificate_pem());
  CHECK(slurp(first->key_path()).find("-----BEGIN PRIVATE KEY-----") == 0);

  // No temporaries are left behind.
  for (const auto& entry : fs::directory_iterator(dir))
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);

  auto second = CertificateAuthority::load_or_create(dir);
  REQUIRE_MESSAGE(second.ok(), second.status().to_string());
  CHECK_FALSE(second->created());
  CHECK(second->certificate_pem() == first->certificate_pem());
  CHECK(second->certificate_der() == first->certificate_der());
  CHECK(second->sha256_fingerprint() == first->sha256_fingerprint());
  CHECK(first->sha256_fingerprint().size() == 32 * 3 - 1);

  auto loaded = CertificateAuthority::load(dir);
  REQUIRE(loaded.ok());
  CHECK(loaded->certificate_der() == first->certificate_der());
}

TEST_CASE(
    "the CA certificate has the subject, constraints, usages and lifetime the issue asks for") {
  test::TempDir tmp;
  auto ca = CertificateAuthority::load_or_create(tmp.path());
  REQUIRE(ca.ok());
  X509* cert = ca->x509();
  CHECK(ca->subject() == "CN=retake CA,O=retake");
  CHECK(X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)) == 0);
  CHECK(X509_check_ca(cert) >= 1);
  CHECK(ext_critical(cert, NID_basic_constraints));
  CHECK(ext_critical(cert, NID_key_usage));
  CHECK(X509_get_key_usage(cert) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  CHECK(X509_get0_subject_key_id(cert) != nullptr);
  CHECK(EVP_PKEY_get_base_id(ca->private_key()) == EVP_PKEY_EC);
  // Self-signature verifies.
  CHECK(X509_verify(cert, X509_get0_pubkey(cert)) == 1);

  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)) == 1);
  CHECK(days >= 3650);
  CHECK(days <= 3660);
  // 128 random bits: 16 or 17 DER content octets (a leading zero keeps it positive); a zero
  // top byte shortens it, so allow 15 (one in 256 CAs).
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  CHECK(ASN1_STRING_length(serial) >= 15);
  CHECK(ASN1_STRING_length(serial) <= 17);

  // The DER export is the same certificate.
  const auto& der = ca->certificate_der();
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* decoded = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  REQUIRE(decoded != nullptr);
  CHECK(X509_cmp(decoded, cert) == 0);
  X509_free(decoded);
}

TEST_CASE("two CAs created in different directories differ") {
  test::TempDir a, b;
  auto ca_a = CertificateAuthority::load_or_create(a.path());
  auto ca_b = CertificateAuthority::load_or_create(b.path());
  REQUIRE(ca_a.ok());
  REQUIRE(ca_b.ok());
  CHECK(ca_a->certificate_der() != ca_b->certificate_der());
}

TEST_CASE("a corrupt CA certificate is an error naming the file and is never replaced") {
  test::TempDir tmp;
  REQUIRE(CertificateAuthority::load_or_create(tmp.path()).ok());
  fs::path cert = tmp.path() / "retake-ca.pem";
  { std::ofstream(cert, std::ios::trunc) << "-----BEGIN CERTIFICATE-----\nnot base64\n"; }
  std::string before = slurp(cert);
  auto again = CertificateAuthority::load_or_create(tmp.path());
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == Errc::corruption);
  CHECK(again.status().message().find(cert.string()) != std::string::npos);
  CHECK(slurp(cert) == before);
}

TEST_CASE("a corrupt or mismatched CA key is an error naming the key file") {
  test::TempDir tmp;
  REQUIRE(CertificateAuthority::load_or_create(tmp.path()).ok());
  fs::path key = tmp.path() / "retake-ca-key.pem";

  SUBCASE("garbage key") {
    { std::ofstream(key, std::ios::trunc) << "garbage"; }
    auto again = CertificateAuthority::load_or_create(tmp.path());
    REQUIRE_FALSE(again.ok());
    CHECK(again.status().code() == Errc::corruption);
    CHECK(again.status().message().find(key.string()) != std::string::npos);
  }
  SUBCASE("another CA's key") {
    test::TempDir other;
    REQUIRE(CertificateAuthority::load_or_create(other.path()).ok());
    fs::copy_file(other.path() / "retake-ca-key.pem", key, fs::copy_options::overwrite_existing);
    auto again = CertificateAuthority::load_or_create(tmp.path());
    REQUIRE_FALSE(again.ok());
    CHECK(again.status().message().find("does not match") != std::string::npos);
  }
  SUBCASE("missing key") {
    fs::remove(key);
    auto again = CertificateAuthority::load_or_create(tmp.path());
    REQUIRE_FALSE(again.ok());
    CHECK(again.status().code() == Errc::failed_precondition);
    CHECK(again.status().message().find(key.string()) != std::string::npos);
    CHECK_FALSE(fs::exists(key));
  }
  SUBCASE("key without certificate") {
    fs::remove(tmp.path() / "retake-ca.pem");
    std::string before = slurp(key);
    auto again = CertificateAuthority::load_or_create(tmp.path());
    REQUIRE_FALSE(again.ok());
    CHECK(again.status().message().find(key.string()) != std::string::npos);
    CHECK(slurp(key) == before);
  }
}

TEST_CASE("an unreadable CA file is an io_error naming the file") {
  if (::geteuid() == 0) return;  // root reads anything; nothing to check
  test::TempDir tmp;
  REQUIRE(CertificateAuthority::load_or_create(tmp.path()).ok());
  fs::path cert = tmp.path() / "retake-ca.pem";
  fs::permissions(cert, fs::perms::none);
  auto again = CertificateAuthority::load_or_create(tmp.path());
  fs::permissions(cert, fs::perms::owner_read | fs::perms::owner_write);
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == Errc::io_error);
  CHECK(again.status().message().find(cert.string()) != std::string::npos);
}

TEST_CASE("concurrent first use by several threads yields one CA") {
  test::TempDir tmp;
  fs::path dir = tmp.path() / "ca";
  constexpr int kThreads = 6;
  std::vector<std::string> ders(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<int> created(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto ca = CertificateAuthority::load_or_create(dir);
      if (!ca.ok()) {
        errors[i] = ca.status().to_string();
        return;
      }
      ders[i] = ca->certificate_der();
      created[i] = ca->created() ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  int creators = 0;
  for (int i = 0; i < kThreads; ++i) {
    CHECK_MESSAGE(errors[i].empty(), errors[i]);
    CHECK(ders[i] == ders[0]);
    creators += created[i];
  }
  CHECK(creators == 1);
}

TEST_CASE("concurrent first use by several processes yields one CA") {
  test::TempDir tmp;
  fs::path dir = tmp.path() / "ca";
  constexpr int kProcs = 4;
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcs; ++i) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      auto ca = CertificateAuthority::load_or_create(dir);
      if (!ca.ok()) ::_exit(2);
      std::ofstream(tmp.path() / ("fp-" + std::to_string(i))) << ca->sha256_fingerprint();
      ::_exit(ca->created() ? 10 : 11);
    }
    pids.push_back(pid);
  }
  int creators = 0;
  for (pid_t pid : pids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) != 2);
    creators += WEXITSTATUS(status) == 10;
  }
  CHECK(creators == 1);
  auto ca = CertificateAuthority::load(dir);
  REQUIRE(ca.ok());
  for (int i = 0; i < kProcs; ++i)
    CHECK(slurp(tmp.path() / ("fp-" + std::to_string(i))) == ca->sha256_fingerprint());
}

TEST_CASE("RETAKE_HOME picks the home directory and the CA lives in its ca subdirectory") {
  std::string saved_retake = std::getenv("RETAKE_HOME") ? std::getenv("RETAKE_HOME") : "";
  bool had_retake = std::getenv("RETAKE_HOME") != nullptr;
  bool had_home = std::getenv("HOME") != nullptr;
  std::string saved_home = had_home ? std::getenv("HOME") : "";

  ::setenv("RETAKE_HOME", "/tmp/some-retake-home", 1);
  auto home = retake_home();
  REQUIRE(home.ok());
  CHECK(*home == fs::path("/tmp/some-retake-home"));
  auto ca_dir = default_ca_dir();
  REQUIRE(ca_dir.ok());
  CHECK(*ca_dir == fs::path("/tmp/some-retake-home/ca"));

  ::unsetenv("RETAKE_HOME");
  ::setenv("HOME", "/home/someone", 1);
  home = retake_home();
  REQUIRE(home.ok());
  CHECK(*home == fs::path("/home/someone/.retake"));

  if (had_retake) ::setenv("RETAKE_HOME", saved_retake.c_str(), 1);
  if (had_home)
    ::setenv("HOME", saved_home.c_str(), 1);
  else
    ::unsetenv("HOME");
}
