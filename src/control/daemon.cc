// The Daemon: the store, its one writer, the services and the gRPC server around them.
#include "control/daemon.h"
#include "control/module.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <mutex>

#include "control/services.h"

namespace retake::control {

bool is_loopback_host(std::string_view host) {
  if (host == "localhost") return true;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(std::string(host), ec);
  if (ec) return false;
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6())
        .is_loopback();
  return address.is_loopback();
}

namespace {

constexpr int kMaxServerThreads = 256;

// Splits "HOST:PORT" / "[v6]:PORT"; host kept without brackets.
bool split_address(const std::string& text, std::string& host, std::string& port) {
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string::npos) return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5) return false;
  for (char c : port)
    if (c < '0' || c > '9') return false;
  return std::stoul(port) <= 65535;
}

class DaemonImpl final : public Daemon {
 public:
  DaemonImpl(std::unique_ptr<store::FlowStore> store, std::string token, uint64_t min_free_bytes)
      : store_(std::move(store)),
        writer_(*store_, {.min_free_bytes = min_free_bytes}),
        auth_(std::move(token)),
        recorders_(auth_, writer_, hub_, *store_),
        flows_(auth_, *store_),
        replays_(auth_, *store_, writer_),
        diffs_(auth_, *store_, replays_) {
    writer_.on_written([this](const flow::Flow& f) { hub_.publish(f); });
  }
  ~DaemonImpl() override { stop(); }

  Status serve(const DaemonOptions& options, const std::string& host) {
    std::shared_ptr<grpc::ServerCredentials> credentials;
    if (!options.tls_cert_pem.empty()) {
      grpc::SslServerCredentialsOptions ssl(
          options.tls_client_ca_pem.empty()
              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      ssl.pem_root_certs = options.tls_client_ca_pem;
      ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
      credentials = grpc::SslServerCredentials(ssl);
    } else {
      credentials = grpc::InsecureServerCredentials();
    }
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(options.listen, credentials, &port);
    // gRPC sets SO_REUSEPORT by default: a second daemon would then share the port silently.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_receive_bytes));
    // The synchronous server takes a thread per call in progress (a WatchFlows stream holds
    // one for its life): bound them, so a flood of calls is refused rather than served by
    // thousands of threads.
    grpc::ResourceQuota quota("retake-control");
    quota.SetMaxThreads(kMaxServerThreads);
    builder.SetResourceQuota(quota);
    builder.RegisterService(&recorders_);
    builder.RegisterService(&flows_);
    builder.RegisterService(&replays_);
    builder.RegisterService(&diffs_);
    server_ = builder.BuildAndStart();
    if (!server_ || port == 0)
      return {Errc::unavailable, "cannot listen on " + options.listen +
                                     " (address in use, not local, or bad TLS material)"};
    address_ = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
               std::to_string(port);
    return {};
  }

  const std::string& address() const override { return address_; }

  void stop() override {
    std::lock_guard lock(stop_mutex_);
    if (stopped_) return;
    stopped_ = true;
    // Recorders first, so their last flows are written and streamed to the watchers.
    recorders_.stop_all();
    replays_.stop_all();
    diffs_.stop_all();
    writer_.stop();
    hub_.close();
    if (server_) {
      if (auto* health = server_->GetHealthCheckService()) health->SetServingStatus(false);
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      server_->Wait();
    }
  }

 private:
  std::unique_ptr<store::FlowStore> store_;
  store::FlowWriter writer_;
  FlowHub hub_;
  TokenCheck auth_;
  RecorderService recorders_;
  FlowsService flows_;
  ReplayService replays_;
  DiffService diffs_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::mutex stop_mutex_;
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Daemon>> grpc_start_daemon(const DaemonOptions& options) {
  std::string host, port;
  if (options.listen.size() > 1024 || !split_address(options.listen, host, port))
    return Status(Errc::invalid_argument, "control address: expected HOST:PORT, got '" +
                                              options.listen.substr(0, 1024) + "'");
  if (options.token.size() > 4096)
    return Status(Errc::invalid_argument, "token: at most 4096 bytes");
  for (unsigned char c : options.token)
    if (c <= 0x20 || c >= 0x7f)
      return Status(Errc::invalid_argument, "token: only printable ASCII without spaces");
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty())
    return Status(Errc::invalid_argument,
                  "TLS: a certificate needs its key and a key its certificate");
  if (!options.tls_client_ca_pem.empty() && options.tls_cert_pem.empty())
    return Status(Errc::invalid_argument,
                  "TLS: a client CA (mutual TLS) needs the server's certificate and key");
  if (options.max_receive_bytes == 0 || options.max_receive_bytes > (1u << 30))
    return Status(Errc::invalid_argument, "max_receive_bytes: must be 1..1 GiB");
  bool mutual_tls = !options.tls_cert_pem.empty() && !options.tls_client_ca_pem.empty();
  // Decided before anything binds: an unauthenticated control API drives proxies and deletes
  // flows, so it stays on loopback unless callers must prove who they are.
  if (!is_loopback_host(host) && options.token.empty() && !mutual_tls)
    return Status(Errc::failed_precondition,
                  "refusing to serve the control API on non-loopback address '" + host +
                      "' without authentication: give a bearer token (--control-token-file) "
                      "or mutual TLS (--control-tls-cert, --control-tls-key, "
                      "--control-tls-client-ca)");
  if (options.db_path.empty()) return Status(Errc::invalid_argument, "db: a path is required");

  store::StoreOptions store_options;
  store_options.path = options.db_path;
  auto store = store::FlowStore::open(store_options);
  if (!store) return store.status();
  register_private_path((*store)->path());
  register_private_path(options.db_path);
  auto daemon =
      std::make_unique<DaemonImpl>(std::move(store.value()), options.token, options.min_free_bytes);
  if (auto st = daemon->serve(options, host); !st.ok()) return st;
  return std::unique_ptr<Daemon>(std::move(daemon));
}

}  // namespace retake::control
