#include "tls_test_support.h"

#include <openssl/pem.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "net/tls/tls_context.h"

namespace retake::tls::test {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using namespace std::chrono_literals;

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "retake-tls-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command) {
  CommandResult result;
  std::string full = "timeout 30 " + command + " </dev/null 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    if (result.output.size() < (1u << 20)) result.output.append(buf.data(), n);
  }
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

namespace {

void check(bool ok, const char* what) {
  if (!ok)
    throw std::runtime_error(std::string("test certificate: ") + what + ": " +
                             detail::drain_openssl_errors());
}

void add_conf_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  check(ext != nullptr, "extension");
  check(X509_add_ext(cert, ext, -1) == 1, "add extension");
  X509_EXTENSION_free(ext);
}

detail::X509Ptr new_cert(const std::string& cn, EVP_PKEY* key, long from_s, long to_s) {
  detail::X509Ptr cert(X509_new());
  auto serial = detail::random_serial(16);
  check(cert && serial, "alloc");
  X509_set_version(cert.get(), X509_VERSION_3);
  X509_set_serialNumber(cert.get(), serial.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), from_s);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), to_s);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

}  // namespace

KeyCert make_test_ca(const std::string& cn) {
  auto key = detail::generate_key(detail::KeyKind::ec_p256);
  check(key.ok(), "key");
  auto cert = new_cert(cn, key->get(), -86400, 30L * 86400);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  add_conf_ext(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_conf_ext(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_conf_ext(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  check(X509_sign(cert.get(), key->get(), EVP_sha256()) > 0, "sign");
  return {std::move(cert), std::move(*key)};
}

KeyCert make_test_leaf(const KeyCert& issuer, const std::string& cn, const std::string& san,
                       long from_s, long to_s) {
  auto key = detail::generate_key(detail::KeyKind::ec_p256);
  check(key.ok(), "key");
  auto cert = new_cert(cn, key->get(), from_s, to_s);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer.cert.get()));
  add_conf_ext(cert.get(), issuer.cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_conf_ext(cert.get(), issuer.cert.get(), NID_ext_key_usage, "serverAuth");
  add_conf_ext(cert.get(), issuer.cert.get(), NID_subject_alt_name, san);
  add_conf_ext(cert.get(), issuer.cert.get(), NID_authority_key_identifier, "keyid");
  check(X509_sign(cert.get(), issuer.key.get(), EVP_sha256()) > 0, "sign");
  return {std::move(cert), std::move(*key)};
}

void write_pem(const std::filesystem::path& path, X509* cert) {
  detail::BioPtr bio(BIO_new_file(path.c_str(), "w"));
  check(bio && PEM_write_bio_X509(bio.get(), cert) == 1, "write pem");
}

int verify_leaf(X509* ca, X509* leaf, const std::string& host, const std::string& ip) {
  detail::X509StorePtr store(X509_STORE_new());
  detail::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  check(store && ctx && X509_STORE_add_cert(store.get(), ca) == 1, "store");
  check(X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr) == 1, "store ctx");
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (!host.empty()) X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  if (!ip.empty()) X509_VERIFY_PARAM_set1_ip_asc(param, ip.c_str());
  X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  detail::drain_openssl_errors();
  return err;
}

// ------------------------------------------------------------------------------------------
// TestTlsServer

namespace {

asio::awaitable<void> serve_connection(tcp::socket socket, TestTlsServer* server) {
  ssl::stream<tcp::socket> stream(std::move(socket), server->context());
  if (server->prepare()) server->prepare()(stream.native_handle());
  asio::steady_timer deadline(stream.get_executor(), 10s);
  deadline.async_wait([&stream](boost::system::error_code ec) {
    if (!ec) stream.lowest_layer().close();
  });
  ServerOutcome outcome;
  auto [hs_ec] = co_await stream.async_handshake(ssl::stream_base::server,
                                                 asio::as_tuple(asio::use_awaitable));
  outcome.served_name = InterceptTlsContext::served_name(stream.native_handle());
  if (hs_ec) {
    outcome.error = hs_ec.message();
    server->record(std::move(outcome));
    deadline.cancel();
    co_return;
  }
  outcome.handshake_ok = true;
  outcome.tls = collect_tls_info(stream.native_handle());
  server->record(std::move(outcome));
  std::string head;
  auto [read_ec, n] =
      co_await asio::async_read_until(stream, asio::dynamic_buffer(head, 64 * 1024), "\r\n\r\n",
                                      asio::as_tuple(asio::use_awaitable));
  if (!read_ec) {
    static constexpr std::string_view kResponse =
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    co_await asio::async_write(stream, asio::buffer(kResponse),
                               asio::as_tuple(asio::use_awaitable));
    co_await stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
  }
  deadline.cancel();
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, TestTlsServer* server) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    asio::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket), server),
                   asio::detached);
  }
}

}  // namespace

TestTlsServer::TestTlsServer(ssl::context& context, Prepare prepare)
    : context_(context),
      prepare_(std::move(prepare)),
      acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, accept_loop(acceptor_, this), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

TestTlsServer::~TestTlsServer() {
  io_.stop();
  thread_.join();
}

void TestTlsServer::record(ServerOutcome outcome) {
  std::lock_guard lock(mutex_);
  outcomes_.push_back(std::move(outcome));
  cv_.notify_all();
}

std::vector<ServerOutcome> TestTlsServer::wait_outcomes(size_t n) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, 10s, [&] { return outcomes_.size() >= n; });
  return outcomes_;
}

// ------------------------------------------------------------------------------------------
// client_handshake

namespace {

asio::awaitable<void> run_client(ssl::stream<tcp::socket>& stream, unsigned short port,
                                 boost::system::error_code& out) {
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  auto [connect_ec] =
      co_await stream.lowest_layer().async_connect(ep, asio::as_tuple(asio::use_awaitable));
  if (connect_ec) {
    out = connect_ec;
    co_return;
  }
  auto [ec] = co_await stream.async_handshake(ssl::stream_base::client,
                                              asio::as_tuple(asio::use_awaitable));
  out = ec;
}

}  // namespace

ClientOutcome client_handshake(ssl::context& context, unsigned short port,
                               const std::function<void(SSL*)>& configure) {
  ClientOutcome result;
  asio::io_context io;
  ssl::stream<tcp::socket> stream(io, context);
  configure(stream.native_handle());
  result.ec = asio::error::timed_out;  // stays if the handshake does not end in time
  asio::co_spawn(io, run_client(stream, port, result.ec), asio::detached);
  io.run_for(10s);
  result.verify_reason = verify_failure_reason(stream.native_handle());
  if (!result.ec) result.tls = collect_tls_info(stream.native_handle());
  return result;
}

}  // namespace retake::tls::test
