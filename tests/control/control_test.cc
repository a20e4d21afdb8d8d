// The control API end to end: `retake daemon` runs as a separate process on an ephemeral
// loopback port with a temporary store; this process drives it only over gRPC, with real curl
// traffic through a recorder to a local upstream (tests/support/upstream.py).
#include <doctest/doctest.h>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/services.h"
#include "retake/v1/flows.grpc.pb.h"
#include "retake/v1/recorder.grpc.pb.h"

extern char** environ;

namespace {

namespace v1 = retake::v1;
using namespace std::chrono_literals;

// A child process with its stdout (and stderr, merged) on a pipe and its stdin on another, so
// that it ends when this process does (upstream.py exits when stdin closes).
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int out[2], in[2];
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(pipe2(in, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, out[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    REQUIRE(posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    close(in[0]);
    out_ = out[0];
    in_ = in[1];
  }
  ~Child() {
    if (pid_ > 0) stop();
    close(out_);
  }

  // The next line of output, or nullopt at EOF or after `timeout`.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      ssize_t n = read(out_, chunk, sizeof chunk);
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Waits for the process to end by itself; its exit code, or -1 after `timeout`.
  int wait_exit(std::chrono::milliseconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }

  // SIGTERM, then SIGKILL if it has not ended within 15 s. Its exit code.
  int stop() {
    if (in_ >= 0) close(in_), in_ = -1;
    kill(pid_, SIGTERM);
    int code = wait_exit(15s);
    if (code == -1) {
      kill(pid_, SIGKILL);
      code = wait_exit(5s);
    }
    return code;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
  std::string buffer_;
};

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "retake-control-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// A running `retake daemon` and a channel to it.
struct Daemon {
  TempDir dir;
  std::unique_ptr<Child> child;
  std::string address;
  std::shared_ptr<grpc::Channel> channel;

  explicit Daemon(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{RETAKE_BINARY, "daemon", "--control",
                                  "127.0.0.1:0", "--db",   (dir.path / "db").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child = std::make_unique<Child>(argv);
    const std::string marker = "control API listening on ";
    for (;;) {
      auto line = child->read_line();
      REQUIRE_MESSAGE(line, "the daemon did not say where it listens");
      if (auto at = line->find(marker); at != std::string::npos) {
        address = line->substr(at + marker.size());
        address = address.substr(0, address.find(' '));
        break;
      }
    }
    channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  }
};

// tests/support/upstream.py on an ephemeral loopback port.
struct Upstream {
  Child child{{"/usr/bin/python3", RETAKE_SOURCE_DIR "/tests/support/upstream.py"}};
  int port = 0;
  Upstream() {
    auto line = child.read_line();
    REQUIRE(line);
    REQUIRE(line->rfind("PORT ", 0) == 0);
    port = std::stoi(line->substr(5));
  }
};

std::unique_ptr<grpc::ClientContext> context(std::chrono::seconds timeout = 20s) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + timeout);
  return c;
}

int curl(const std::string& args) {
  return std::system(("curl -sS --max-time 10 -o /dev/null " + args).c_str());
}

// grpc.health.v1.Health/Check for the whole server, over the generic stub: an empty request,
// and the response's field 1 (status) as its varint; 1 is SERVING.
int health_status(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::ByteBuffer request, response;
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  auto status = done.get_future().get();
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.empty()) return 0;  // proto3: UNKNOWN (0) is not sent
  if (bytes.size() != 2 || bytes[0] != 0x08) return -2;
  return bytes[1];
}

}  // namespace

TEST_CASE(
    "a client records through a reverse proxy, watches, pages, reads and deletes flows over gRPC") {
  Upstream upstream;
  Daemon daemon;
  CHECK(health_status(daemon.channel) == 1);
  auto recorders = v1::Recorder::NewStub(daemon.channel);
  auto flows = v1::Flows::NewStub(daemon.channel);

  v1::StartRecorderRequest start;
  start.set_mode("reverse:http://127.0.0.1:" + std::to_string(upstream.port));
  start.set_listen("127.0.0.1:0");
  start.set_session("loop");
  v1::StartRecorderResponse started;
  auto status = recorders->Start(context().get(), start, &started);
  REQUIRE_MESSAGE(status.ok(), status.error_message());
  CHECK(started.recorder_id() != "");
  CHECK(started.session() == "loop");
  REQUIRE(started.bound_address().rfind("127.0.0.1:", 0) == 0);

  auto watch_context = context(60s);
  v1::WatchFlowsRequest watch;
  watch.set_session("loop");
  auto stream = recorders->WatchFlows(watch_context.get(), watch);
  stream->WaitForInitialMetadata();  // the subscription is in place

  const std::string proxy = "http://" + started.bound_address();
  for (int i = 0; i < 3; ++i) REQUIRE(curl(proxy + "/json") == 0);
  REQUIRE(curl(proxy + "/status/404") == 0);
  REQUIRE(curl("-X POST --data-binary hello-body " + proxy + "/echo") == 0);

  std::vector<v1::FlowEvent> events(5);
  for (auto& event : events) REQUIRE(stream->Read(&event));
  int json = 0, not_found = 0, posts = 0;
  for (const auto& e : events) {
    CHECK(e.lost() == 0);
    CHECK(e.flow().session() == "loop");
    if (e.flow().url().ends_with("/json") && e.flow().status() == 200) ++json;
    if (e.flow().status() == 404) ++not_found;
    if (e.flow().method() == "POST") ++posts;
  }
  CHECK(json == 3);
  CHECK(not_found == 1);
  CHECK(posts == 1);
  watch_context->TryCancel();
  CHECK(stream->Finish().error_code() == grpc::StatusCode::CANCELLED);

  v1::RecorderRef ref;
  ref.set_recorder_id(started.recorder_id());
  v1::RecorderStatus recorder_status;
  REQUIRE(recorders->Status(context().get(), ref, &recorder_status).ok());
  CHECK(recorder_status.running());
  CHECK(recorder_status.stats().flows() == 5);
  CHECK(recorder_status.bound_address() == started.bound_address());
  v1::RecorderStatus stopped;
  REQUIRE(recorders->Stop(context().get(), ref, &stopped).ok());
  CHECK_FALSE(stopped.running());
  CHECK(recorders->Status(context().get(), ref, &recorder_status).error_code() ==
        grpc::StatusCode::NOT_FOUND);

  // Paging: 4 flows answered 200, two per page, the cursor is the last id of a page.
  std::vector<uint64_t> ids;
  v1::ListFlowsRequest list;
  list.set_filter("~c 200");
  list.set_session("loop");
  list.set_page_size(2);
  int pages = 0;
  do {
    v1::ListFlowsResponse page;
    REQUIRE(flows->List(context().get(), list, &page).ok());
    ++pages;
    CHECK(page.flows_size() <= 2);
    for (const auto& f : page.flows()) {
      CHECK(f.status() == 200);
      if (!ids.empty()) CHECK(f.id() > ids.back());
      ids.push_back(f.id());
    }
    if (page.next_page_token()) CHECK(page.next_page_token() == ids.back());
    list.set_page_token(page.next_page_token());
    REQUIRE(pages < 10);
  } while (list.page_token() != 0);
  CHECK(ids.size() == 4);
  CHECK(pages == 2);

  v1::ListFlowsRequest posts_only;
  posts_only.set_filter("~m POST");
  v1::ListFlowsResponse post_page;
  REQUIRE(flows->List(context().get(), posts_only, &post_page).ok());
  REQUIRE(post_page.flows_size() == 1);
  CHECK(post_page.next_page_token() == 0);
  uint64_t post_id = post_page.flows(0).id();

  v1::GetFlowRequest get;
  get.set_id(post_id);
  get.set_with_bodies(true);
  v1::Flow flow;
  REQUIRE(flows->Get(context().get(), get, &flow).ok());
  CHECK(flow.id() == post_id);
  CHECK(flow.mode() == "reverse");
  CHECK(flow.request().method() == "POST");
  CHECK(flow.request().path() == "/echo");
  CHECK(flow.request().body().data() == "hello-body");
  REQUIRE(flow.has_response());
  CHECK(flow.response().status() == 200);
  CHECK(flow.response().body().data().find("hello-body") != std::string::npos);
  bool has_host = false;
  for (const auto& h : flow.request().headers()) has_host |= (h.name() == "Host");
  CHECK(has_host);

  get.set_with_bodies(false);
  v1::Flow lean;
  REQUIRE(flows->Get(context().get(), get, &lean).ok());
  CHECK(lean.request().body().data().empty());
  CHECK(lean.request().body().size() == 10);

  v1::ListSessionsResponse sessions;
  REQUIRE(flows->ListSessions(context().get(), v1::ListSessionsRequest(), &sessions).ok());
  REQUIRE(sessions.sessions_size() == 1);
  CHECK(sessions.sessions(0).name() == "loop");
  CHECK(sessions.sessions(0).flow_count() == 5);

  v1::DeleteFlowsRequest del;
  del.add_ids(post_id);
  v1::DeleteFlowsResponse deleted;
  REQUIRE(flows->Delete(context().get(), del, &deleted).ok());
  CHECK(deleted.deleted() == 1);
  CHECK(flows->Get(context().get(), get, &lean).error_code() == grpc::StatusCode::NOT_FOUND);
  REQUIRE(flows->ListSessions(context().get(), v1::ListSessionsRequest(), &sessions).ok());
  CHECK(sessions.sessions(0).flow_count() == 4);

  CHECK(daemon.child->stop() == 0);  // SIGTERM stops it cleanly
}

TEST_CASE("bad requests get precise status codes and the daemon keeps serving other clients") {
  Upstream upstream;
  Daemon daemon;
  auto recorders = v1::Recorder::NewStub(daemon.channel);
  auto flows = v1::Flows::NewStub(daemon.channel);
  v1::StartRecorderResponse started;

  v1::StartRecorderRequest bad_mode;
  bad_mode.set_mode("sideways");
  auto status = recorders->Start(context().get(), bad_mode, &started);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(status.error_message().rfind("mode:", 0) == 0);

  v1::StartRecorderRequest bad_listen;
  bad_listen.set_mode("explicit");
  bad_listen.set_listen("nowhere");
  status = recorders->Start(context().get(), bad_listen, &started);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(status.error_message().rfind("listen:", 0) == 0);

  v1::StartRecorderRequest bad_timeout;
  bad_timeout.set_upstream_timeout_ms(7'200'000);
  status = recorders->Start(context().get(), bad_timeout, &started);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(status.error_message().rfind("upstream_timeout_ms:", 0) == 0);

  v1::StartRecorderRequest first;
  first.set_mode("reverse:http://127.0.0.1:" + std::to_string(upstream.port));
  REQUIRE(recorders->Start(context().get(), first, &started).ok());
  v1::StartRecorderRequest same_port = first;
  same_port.set_listen(started.bound_address());
  v1::StartRecorderResponse second;
  CHECK(recorders->Start(context().get(), same_port, &second).error_code() ==
        grpc::StatusCode::ALREADY_EXISTS);

  v1::RecorderRef unknown;
  unknown.set_recorder_id("r999");
  v1::RecorderStatus recorder_status;
  CHECK(recorders->Stop(context().get(), unknown, &recorder_status).error_code() ==
        grpc::StatusCode::NOT_FOUND);

  v1::ListFlowsResponse page;
  v1::ListFlowsRequest big_page;
  big_page.set_page_size(5000);
  status = flows->List(context().get(), big_page, &page);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(status.error_message().rfind("page_size:", 0) == 0);

  v1::ListFlowsRequest bad_filter;
  bad_filter.set_filter("~c 200 & (~m GET");
  status = flows->List(context().get(), bad_filter, &page);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(status.error_message().rfind("filter:", 0) == 0);
  CHECK(status.error_message().find("column") != std::string::npos);

  v1::GetFlowRequest get;
  get.set_id(12345);
  v1::Flow flow;
  status = flows->Get(context().get(), get, &flow);
  CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
  v1::DeleteFlowsRequest del;
  del.add_ids(12345);
  v1::DeleteFlowsResponse deleted;
  CHECK(flows->Delete(context().get(), del, &deleted).error_code() == grpc::StatusCode::NOT_FOUND);

  // Over the 16 MiB receive bound: refused by gRPC before the service sees it.
  v1::ListFlowsRequest huge;
  huge.set_filter(std::string(17u << 20, 'x'));
  CHECK(flows->List(context().get(), huge, &page).error_code() ==
        grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Under the transport bound but over the filter bound: the filter's own limit answers.
  huge.set_filter(std::string(20000, 'x'));
  CHECK(flows->List(context().get(), huge, &page).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);

  // The daemon still serves, on this channel and on a fresh one.
  auto fresh =
      v1::Flows::NewStub(grpc::CreateChannel(daemon.address, grpc::InsecureChannelCredentials()));
  v1::ListSessionsResponse sessions;
  CHECK(fresh->ListSessions(context().get(), v1::ListSessionsRequest(), &sessions).ok());
  v1::ListRecordersResponse running;
  REQUIRE(recorders->List(context().get(), v1::ListRecordersRequest(), &running).ok());
  CHECK(running.recorders_size() == 1);
  CHECK(health_status(daemon.channel) == 1);
  CHECK(daemon.child->stop() == 0);  // stops the running recorder too
}

TEST_CASE(
    "a non-loopback control address without a token or mutual TLS is refused before binding") {
  TempDir dir;
  // Port 0 on 0.0.0.0 only to see the refusal: the daemon must refuse before it binds.
  Child child(
      {RETAKE_BINARY, "daemon", "--control", "0.0.0.0:0", "--db", (dir.path / "db").string()});
  std::string output;
  while (auto line = child.read_line(10s)) output += *line + "\n";
  CHECK(child.wait_exit() == 2);
  CHECK(output.find("non-loopback") != std::string::npos);
  CHECK(output.find("--control-token-file") != std::string::npos);
  CHECK(output.find("listening") == std::string::npos);
}

TEST_CASE("with a token file, calls without the right bearer token are UNAUTHENTICATED") {
  TempDir secrets;
  auto token_file = secrets.path / "token";
  std::ofstream(token_file) << "s3cret-token\n";
  Daemon daemon({"--control-token-file", token_file.string()});
  auto flows = v1::Flows::NewStub(daemon.channel);
  auto recorders = v1::Recorder::NewStub(daemon.channel);
  v1::ListSessionsResponse sessions;

  auto none = context();
  CHECK(flows->ListSessions(none.get(), v1::ListSessionsRequest(), &sessions).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  auto wrong = context();
  wrong->AddMetadata("authorization", "Bearer s3cret-tokem");
  CHECK(flows->ListSessions(wrong.get(), v1::ListSessionsRequest(), &sessions).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  auto prefix = context();
  prefix->AddMetadata("authorization", "Bearer s3cret");
  CHECK(flows->ListSessions(prefix.get(), v1::ListSessionsRequest(), &sessions).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  auto wrong_start = context();
  wrong_start->AddMetadata("authorization", "Bearer nope");
  v1::StartRecorderResponse started;
  CHECK(recorders->Start(wrong_start.get(), v1::StartRecorderRequest(), &started).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);

  auto right = context();
  right->AddMetadata("authorization", "Bearer s3cret-token");
  auto status = flows->ListSessions(right.get(), v1::ListSessionsRequest(), &sessions);
  CHECK_MESSAGE(status.ok(), status.error_message());
  CHECK(daemon.child->stop() == 0);
}

namespace {

// Runs `retake <args>` to completion; its exit code and output (stdout and stderr).
std::pair<int, std::string> run_retake(std::vector<std::string> args) {
  args.insert(args.begin(), RETAKE_BINARY);
  Child child(args);
  std::string output;
  while (auto line = child.read_line(20s)) output += *line + "\n";
  return {child.wait_exit(), output};
}

}  // namespace

TEST_CASE("the CLI's flows list/show/delete and sessions work through a daemon with --remote") {
  Upstream upstream;
  Daemon daemon;
  auto recorders = v1::Recorder::NewStub(daemon.channel);
  v1::StartRecorderRequest start;
  start.set_mode("reverse:http://127.0.0.1:" + std::to_string(upstream.port));
  start.set_session("remote-cli");
  v1::StartRecorderResponse started;
  REQUIRE(recorders->Start(context().get(), start, &started).ok());
  const std::string proxy = "http://" + started.bound_address();
  REQUIRE(curl(proxy + "/json") == 0);
  REQUIRE(curl(proxy + "/status/503") == 0);
  REQUIRE(curl("-X POST --data-binary remote-body " + proxy + "/echo") == 0);
  v1::RecorderRef ref;
  ref.set_recorder_id(started.recorder_id());
  v1::RecorderStatus stopped;
  REQUIRE(recorders->Stop(context().get(), ref, &stopped).ok());  // its flows are written

  // The remote list is what a local read of the same store prints.
  auto [remote_code, remote_list] =
      run_retake({"flows", "list", "--json", "--remote", daemon.address});
  auto [local_code, local_list] =
      run_retake({"flows", "list", "--json", "--db", (daemon.dir.path / "db").string()});
  CHECK(remote_code == 0);
  CHECK(local_code == 0);
  CHECK(remote_list == local_list);
  CHECK(std::count(remote_list.begin(), remote_list.end(), '\n') == 3);

  auto [filtered_code, filtered] =
      run_retake({"flows", "list", "~c 503", "--remote", daemon.address});
  CHECK(filtered_code == 0);
  CHECK(filtered.find("/status/503") != std::string::npos);
  CHECK(filtered.find("/json") == std::string::npos);

  auto [bad_code, bad] = run_retake({"flows", "list", "~c", "--remote", daemon.address});
  CHECK(bad_code != 0);

  auto [sessions_code, sessions] = run_retake({"sessions", "--json", "--remote", daemon.address});
  CHECK(sessions_code == 0);
  CHECK(sessions.find("\"remote-cli\"") != std::string::npos);
  CHECK(sessions.find("\"flows\":3") != std::string::npos);

  v1::ListFlowsRequest posts;
  posts.set_filter("~m POST");
  v1::ListFlowsResponse page;
  REQUIRE(v1::Flows::NewStub(daemon.channel)->List(context().get(), posts, &page).ok());
  REQUIRE(page.flows_size() == 1);
  auto id = std::to_string(page.flows(0).id());
  auto [show_code, shown] = run_retake({"flows", "show", id, "--remote", daemon.address});
  CHECK(show_code == 0);
  CHECK(shown.find("POST /echo HTTP/1.1") != std::string::npos);
  CHECK(shown.find("remote-body") != std::string::npos);

  auto [delete_code, deleted] = run_retake({"flows", "delete", id, "--remote", daemon.address});
  CHECK(delete_code == 0);
  auto [gone_code, gone] = run_retake({"flows", "show", id, "--remote", daemon.address});
  CHECK(gone_code == 1);
  CHECK(gone.find("remote: no flow " + id) != std::string::npos);
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE("a watcher that does not read loses flows with a count and never holds up the writer") {
  retake::control::FlowHub hub;
  auto slow = hub.subscribe("");
  auto other_session = hub.subscribe("elsewhere");
  REQUIRE(slow);
  REQUIRE(other_session);
  retake::flow::Flow f;
  f.session = "busy";
  f.request.method = "GET";
  const size_t extra = 7;
  for (size_t i = 0; i < retake::control::kWatchQueueCapacity + extra; ++i) {
    f.id = i + 1;
    hub.publish(f);  // returns at once even though nobody reads
  }
  {
    std::lock_guard lock(slow->mutex);
    CHECK(slow->queue.size() == retake::control::kWatchQueueCapacity);
    CHECK(slow->lost == extra);
    CHECK(slow->queue.front().id() == 1);  // the oldest are kept, the newest are lost
    CHECK(slow->queue.back().id() == retake::control::kWatchQueueCapacity);
  }
  {
    std::lock_guard lock(other_session->mutex);
    CHECK(other_session->queue.empty());
    CHECK(other_session->lost == 0);
  }
  hub.close();
  CHECK(slow->closed);
  CHECK_FALSE(hub.subscribe(""));
}

TEST_CASE("no more than the bounded number of watchers subscribe at once") {
  retake::control::FlowHub hub;
  std::vector<std::shared_ptr<retake::control::Watcher>> watchers;
  for (size_t i = 0; i < retake::control::kMaxWatchers; ++i) {
    watchers.push_back(hub.subscribe(""));
    REQUIRE(watchers.back());
  }
  CHECK_FALSE(hub.subscribe(""));
  hub.unsubscribe(watchers.back());
  CHECK(hub.subscribe(""));
}

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("with mutual TLS, only a client with a certificate from the client CA gets through") {
  TempDir pki;
  auto p = [&](const char* name) { return (pki.path / name).string(); };
  // A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
  std::string script =
      "set -e; cd '" + pki.path.string() +
      "'; exec 2>/dev/null;"
      " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
      "  -subj /CN=test-ca -keyout ca.key -out ca.pem;"
      " for who in server client; do"
      "  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=$who"
      "   -keyout $who.key -out $who.csr;"
      "  printf 'subjectAltName=IP:127.0.0.1\\n' > $who.ext;"
      "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1"
      "   -extfile $who.ext -out $who.pem;"
      " done";
  REQUIRE(std::system(script.c_str()) == 0);

  Daemon daemon({"--control-tls-cert", p("server.pem"), "--control-tls-key", p("server.key"),
                 "--control-tls-client-ca", p("ca.pem")});
  grpc::SslCredentialsOptions with_cert{read_file(p("ca.pem")), read_file(p("client.key")),
                                        read_file(p("client.pem"))};
  auto good =
      v1::Flows::NewStub(grpc::CreateChannel(daemon.address, grpc::SslCredentials(with_cert)));
  v1::ListSessionsResponse sessions;
  auto status = good->ListSessions(context().get(), v1::ListSessionsRequest(), &sessions);
  CHECK_MESSAGE(status.ok(), status.error_message());

  grpc::SslCredentialsOptions without_cert{read_file(p("ca.pem")), "", ""};
  auto anonymous =
      v1::Flows::NewStub(grpc::CreateChannel(daemon.address, grpc::SslCredentials(without_cert)));
  CHECK_FALSE(
      anonymous->ListSessions(context(5s).get(), v1::ListSessionsRequest(), &sessions).ok());
  auto plaintext =
      v1::Flows::NewStub(grpc::CreateChannel(daemon.address, grpc::InsecureChannelCredentials()));
  CHECK_FALSE(
      plaintext->ListSessions(context(5s).get(), v1::ListSessionsRequest(), &sessions).ok());
  CHECK(daemon.child->stop() == 0);
}
