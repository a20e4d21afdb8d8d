#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <doctest/doctest.h>

#include <ctime>
#include <set>
#include <thread>

#include "net/tls/certificate_authority.h"
#include "tls_test_support.h"

using namespace retake;
using namespace retake::tls;

namespace {

struct Fixture {
  test::TempDir tmp;
  CertificateAuthority ca = [this] {
    auto r = CertificateAuthority::load_or_create(tmp.path());
    REQUIRE(r.ok());
    return *r;
  }();
  std::shared_ptr<LeafCertCache> cache(LeafOptions options = {}) {
    auto r = LeafCertCache::create(ca, options);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    return *r;
  }
};

std::string cn_of(X509* cert) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

std::vector<std::string> sans_of(X509* cert, int type) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* gen = sk_GENERAL_NAME_value(names, i);
    if (gen->type != type) continue;
    ASN1_STRING* s = type == GEN_DNS ? gen->d.dNSName : gen->d.iPAddress;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace

TEST_CASE("server names are normalized and hostile or malformed names are rejected") {
  auto n = parse_server_name("Foo.Example.COM.");
  REQUIRE(n.ok());
  CHECK(n->text == "foo.example.com");
  CHECK_FALSE(n->is_ip);
  CHECK(parse_server_name("under_score.test")->text == "under_score.test");

  CHECK(parse_server_name("127.0.0.1")->is_ip);
  CHECK(parse_server_name("[::1]")->text == "::1");
  CHECK(parse_server_name("0:0:0:0:0:0:0:1")->text == "::1");
  CHECK(parse_server_name("2001:DB8::1")->text == "2001:db8::1");
  CHECK(parse_server_name("2001:db8::1")->is_ip);

  for (std::string bad :
       {std::string(""), std::string("a b"), std::string("a..b"), std::string(".a"),
        std::string("[foo.test]"), std::string("[127.0.0.1]"), std::string("foo,DNS:evil.test"),
        std::string("foo\0bar", 7), std::string("x/y"), std::string(64, 'a') + ".test",
        std::string(300, 'a')}) {
    auto r = parse_server_name(bad);
    CHECK_MESSAGE(!r.ok(), bad);
    if (!r.ok()) CHECK(r.status().code() == Errc::invalid_argument);
  }
}

TEST_CASE("a leaf for a DNS name verifies against the CA for that name and no other") {
  Fixture f;
  auto cache = f.cache();
  auto leaf = cache->get("Foo.Test");
  REQUIRE_MESSAGE(leaf.ok(), leaf.status().to_string());
  X509* cert = (*leaf)->x509();
  CHECK(test::verify_leaf(f.ca.x509(), cert, "foo.test", "") == X509_V_OK);
  CHECK(test::verify_leaf(f.ca.x509(), cert, "bar.test", "") == X509_V_ERR_HOSTNAME_MISMATCH);
  CHECK(cn_of(cert) == "foo.test");
  CHECK(sans_of(cert, GEN_DNS) == std::vector<std::string>{"foo.test"});
  CHECK(sans_of(cert, GEN_IPADD).empty());
  CHECK((X509_get_extended_key_usage(cert) & XKU_SSL_SERVER) != 0);
  CHECK(X509_check_ca(cert) == 0);
  // authorityKeyIdentifier names the CA's key.
  REQUIRE(X509_get0_authority_key_id(cert) != nullptr);
  CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert),
                              X509_get0_subject_key_id(f.ca.x509())) == 0);
  CHECK(X509_get0_subject_key_id(cert) != nullptr);
  CHECK(X509_verify(cert, X509_get0_pubkey(f.ca.x509())) == 1);
  // The leaf key is the cache's one key.
  CHECK(X509_check_private_key(cert, cache->leaf_key()) == 1);
}

TEST_CASE("leaves for IPv4 and IPv6 literals carry IP SANs that verify") {
  Fixture f;
  auto cache = f.cache();
  auto v4 = cache->get("127.0.0.1");
  REQUIRE(v4.ok());
  CHECK(test::verify_leaf(f.ca.x509(), (*v4)->x509(), "", "127.0.0.1") == X509_V_OK);
  CHECK(test::verify_leaf(f.ca.x509(), (*v4)->x509(), "", "127.0.0.2") ==
        X509_V_ERR_IP_ADDRESS_MISMATCH);
  CHECK(sans_of((*v4)->x509(), GEN_IPADD) ==
        std::vector<std::string>{std::string("\x7f\0\0\x01", 4)});
  CHECK(sans_of((*v4)->x509(), GEN_DNS).empty());
  CHECK(cn_of((*v4)->x509()) == "127.0.0.1");

  auto v6 = cache->get("[::1]");
  REQUIRE(v6.ok());
  CHECK(test::verify_leaf(f.ca.x509(), (*v6)->x509(), "", "::1") == X509_V_OK);
  CHECK(test::verify_leaf(f.ca.x509(), (*v6)->x509(), "", "0:0::1") == X509_V_OK);
  CHECK(test::verify_leaf(f.ca.x509(), (*v6)->x509(), "", "::2") == X509_V_ERR_IP_ADDRESS_MISMATCH);
  CHECK(sans_of((*v6)->x509(), GEN_IPADD).front().size() == 16);
}

TEST_CASE("leaf validity starts a day early and stays within 397 days") {
  Fixture f;
  auto leaf = f.cache({.validity_days = 5000})->get("long.test");
  REQUIRE(leaf.ok());
  X509* cert = (*leaf)->x509();
  std::time_t now = std::time(nullptr);
  CHECK(X509_cmp_time(X509_get0_notBefore(cert), &now) < 0);
  std::time_t half_day_ago = now - 12 * 3600;
  CHECK(X509_cmp_time(X509_get0_notBefore(cert), &half_day_ago) < 0);
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)) == 1);
  CHECK(days <= 398);  // one day back-dated plus at most 397 ahead
  CHECK(days >= 397);

  auto normal = f.cache()->get("normal.test");
  REQUIRE(normal.ok());
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore((*normal)->x509()),
                         X509_get0_notAfter((*normal)->x509())) == 1);
  CHECK(days == 366);
}

TEST_CASE("a long host name is cut to 64 characters in CN but kept whole in the SAN") {
  Fixture f;
  std::string name = std::string(60, 'a') + "." + std::string(60, 'b') + ".test";
  auto leaf = f.cache()->get(name);
  REQUIRE(leaf.ok());
  CHECK(cn_of((*leaf)->x509()) == name.substr(0, 64));
  CHECK(sans_of((*leaf)->x509(), GEN_DNS) == std::vector<std::string>{name});
  CHECK(test::verify_leaf(f.ca.x509(), (*leaf)->x509(), name, "") == X509_V_OK);
}

TEST_CASE("the cache returns the same certificate for the same name and fresh serials otherwise") {
  Fixture f;
  auto cache = f.cache();
  auto a1 = cache->get("a.test");
  auto a2 = cache->get("A.TEST.");
  auto b = cache->get("b.test");
  REQUIRE(a1.ok());
  REQUIRE(a2.ok());
  REQUIRE(b.ok());
  CHECK(a1->get() == a2->get());
  CHECK(cache->minted() == 2);
  CHECK(cache->size() == 2);
  CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber((*a1)->x509()),
                         X509_get0_serialNumber((*b)->x509())) != 0);
  auto bad = cache->get("not a host");
  CHECK_FALSE(bad.ok());
  CHECK(cache->size() == 2);
}

TEST_CASE("the cache is bounded and evicts the least recently used name") {
  Fixture f;
  auto cache = f.cache({.capacity = 2});
  auto a = cache->get("a.test");
  REQUIRE(a.ok());
  REQUIRE(cache->get("b.test").ok());
  REQUIRE(cache->get("a.test").ok());  // a is now the most recent
  REQUIRE(cache->get("c.test").ok());  // evicts b
  CHECK(cache->size() == 2);
  CHECK(cache->minted() == 3);
  auto a_again = cache->get("a.test");
  REQUIRE(a_again.ok());
  CHECK(a_again->get() == a->get());
  CHECK(cache->minted() == 3);
  REQUIRE(cache->get("b.test").ok());  // was evicted: minted again
  CHECK(cache->minted() == 4);
  CHECK(cache->size() == 2);
}

TEST_CASE("many threads asking for the same names share one certificate per name") {
  Fixture f;
  auto cache = f.cache();
  constexpr int kThreads = 4;
  std::vector<std::vector<const LeafCertificate*>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto leaf = cache->get("host" + std::to_string(i) + ".test");
        seen[t].push_back(leaf.ok() ? leaf->get() : nullptr);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(cache->size() == 50);
  for (int t = 1; t < kThreads; ++t) CHECK(seen[t] == seen[0]);
  for (auto* p : seen[0]) CHECK(p != nullptr);
}

TEST_CASE("an RSA leaf key works too and carries keyEncipherment") {
  Fixture f;
  auto cache = f.cache({.key_type = LeafKeyType::rsa_2048});
  auto leaf = cache->get("rsa.test");
  REQUIRE(leaf.ok());
  CHECK(EVP_PKEY_get_base_id(cache->leaf_key()) == EVP_PKEY_RSA);
  CHECK((X509_get_key_usage((*leaf)->x509()) & KU_KEY_ENCIPHERMENT) != 0);
  CHECK(test::verify_leaf(f.ca.x509(), (*leaf)->x509(), "rsa.test", "") == X509_V_OK);
}
