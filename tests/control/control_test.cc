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
#include <functional>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control/services.h"
#include "retake/v1/diff.grpc.pb.h"
#include "retake/v1/flows.grpc.pb.h"
#include "retake/v1/recorder.grpc.pb.h"
#include "retake/v1/replay.grpc.pb.h"

extern char** environ;

namespace {

namespace v1 = retake::v1;
using namespace std::chrono_literals;

// A child process with its stdout (and stderr, merged) on a pipe and its stdin on another, so
// that it ends when this process does (upstream.py exits when stdin closes).
class Child {
 public:
  // `cwd`: the directory the child starts in; "" keeps this process's.
  explicit Child(const std::vector<std::string>& argv, const std::string& cwd = "") {
    int out[2], in[2];
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(pipe2(in, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, out[1], 2);
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
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

// A recorder started in the daemon behind `recorders`: a reverse proxy to `upstream` on an
// ephemeral loopback port, recording into `session`.
v1::StartRecorderResponse start_reverse_recorder(v1::Recorder::Stub& recorders,
                                                 const Upstream& upstream,
                                                 const std::string& session) {
  v1::StartRecorderRequest start;
  start.set_mode("reverse:http://127.0.0.1:" + std::to_string(upstream.port));
  start.set_listen("127.0.0.1:0");
  start.set_session(session);
  v1::StartRecorderResponse started;
  auto status = recorders.Start(context().get(), start, &started);
  REQUIRE_MESSAGE(status.ok(), status.error_message());
  return started;
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

  auto started = start_reverse_recorder(*recorders, upstream, "loop");
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

namespace {

// Runs `retake <args>` to completion; its exit code and output (stdout and stderr).
// A shell command's exit code and standard output.
std::pair<int, std::string> run_command(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::pair<int, std::string> run_retake(std::vector<std::string> args) {
  args.insert(args.begin(), RETAKE_BINARY);
  Child child(args);
  std::string output;
  while (auto line = child.read_line(20s)) output += *line + "\n";
  return {child.wait_exit(), output};
}

}  // namespace

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

  // Every service checks: Replay (unary and streaming) and Diff as well.
  auto replays = v1::Replay::NewStub(daemon.channel);
  v1::ListServerReplaysResponse servers;
  CHECK(replays->ListServerReplays(context().get(), {}, &servers).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  v1::StartClientReplayRequest replay_request;
  replay_request.set_session("any");
  auto unauthenticated_replay = context();
  auto replay_stream = replays->StartClientReplay(unauthenticated_replay.get(), replay_request);
  v1::ClientReplayEvent replay_event;
  CHECK_FALSE(replay_stream->Read(&replay_event));
  CHECK(replay_stream->Finish().error_code() == grpc::StatusCode::UNAUTHENTICATED);
  v1::CompareRequest compare;
  compare.set_run("any");
  auto unauthenticated_diff = context();
  auto diff_stream =
      v1::Diff::NewStub(daemon.channel)->Compare(unauthenticated_diff.get(), compare);
  v1::DiffEvent diff_event;
  CHECK_FALSE(diff_stream->Read(&diff_event));
  CHECK(diff_stream->Finish().error_code() == grpc::StatusCode::UNAUTHENTICATED);

  auto right = context();
  right->AddMetadata("authorization", "Bearer s3cret-token");
  auto status = flows->ListSessions(right.get(), v1::ListSessionsRequest(), &sessions);
  CHECK_MESSAGE(status.ok(), status.error_message());

  // retake replay --remote sends the token from --remote-token-file.
  auto [no_token_code, no_token] =
      run_retake({"replay", "--session", "none", "--remote", daemon.address});
  CHECK(no_token_code == 1);
  CHECK(no_token.find("--remote-token-file") != std::string::npos);
  auto [token_code, with_token] =
      run_retake({"replay", "--session", "none", "--remote", daemon.address, "--remote-token-file",
                  token_file.string()});
  CHECK(token_code == 1);
  CHECK(with_token.find("no session named 'none'") != std::string::npos);
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE("the CLI's flows list/show/delete and sessions work through a daemon with --remote") {
  Upstream upstream;
  Daemon daemon;
  auto recorders = v1::Recorder::NewStub(daemon.channel);
  auto started = start_reverse_recorder(*recorders, upstream, "remote-cli");
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

  // Export through the daemon is what a local export of the same store writes; importing it
  // back through the daemon creates a new session with the same flows.
  auto [export_code, exported] = run_retake(
      {"flows", "export", "--json", "-", "--session", "remote-cli", "--remote", daemon.address});
  CHECK(export_code == 0);
  CHECK(exported.find("remote-body") != std::string::npos);
  auto [har_code, har] =
      run_retake({"flows", "export", "--har", "-", "~c 503", "--remote", daemon.address});
  CHECK(har_code == 0);
  CHECK(har.find("\"log\"") != std::string::npos);
  CHECK(har.find("/status/503") != std::string::npos);
  CHECK(har.find("/json") == std::string::npos);
  const auto dump = daemon.dir.path / "export.json";
  { std::ofstream(dump) << exported; }
  auto [import_code, imported] = run_retake({"flows", "import", dump.string(), "--session",
                                             "copied", "--remote", daemon.address});
  CHECK(import_code == 0);
  CHECK(imported.find("imported 3 flows (retake-json) into session 'copied'") !=
        std::string::npos);
  auto [again_code, again] = run_retake({"flows", "import", dump.string(), "--session",
                                         "copied", "--remote", daemon.address});
  CHECK(again_code == 1);
  CHECK(again.find("already has 3 flows") != std::string::npos);
  auto [copied_code, copied] =
      run_retake({"flows", "list", "--session", "copied", "--remote", daemon.address});
  CHECK(copied_code == 0);
  CHECK(std::count(copied.begin(), copied.end(), '\n') == 3);
  {
    // Straight over gRPC: a bad format names the field; garbage is INVALID_ARGUMENT and
    // writes nothing.
    auto flows = v1::Flows::NewStub(daemon.channel);
    v1::ExportFlowsRequest bad_format;
    bad_format.set_format("xml");
    auto ctx = context();
    auto reader = flows->Export(ctx.get(), bad_format);
    v1::ExportChunk chunk;
    while (reader->Read(&chunk)) {
    }
    auto st = reader->Finish();
    CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(st.error_message().rfind("format:", 0) == 0);
    auto ictx = context();
    v1::ImportFlowsResponse response;
    auto writer = flows->Import(ictx.get(), &response);
    v1::ImportChunk garbage;
    garbage.set_session("garbage");
    garbage.set_data("{ this is not a capture");
    writer->Write(garbage);
    writer->WritesDone();
    CHECK(writer->Finish().error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    auto [none_code, none] =
        run_retake({"flows", "list", "--session", "garbage", "--remote", daemon.address});
    CHECK(none_code == 0);
    CHECK(none.empty());
  }

  auto [delete_code, deleted] = run_retake({"flows", "delete", id, "--remote", daemon.address});
  CHECK(delete_code == 0);
  auto [gone_code, gone] = run_retake({"flows", "show", id, "--remote", daemon.address});
  CHECK(gone_code == 1);
  CHECK(gone.find("remote: no flow " + id) != std::string::npos);
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE("retake record --remote runs the recorder in the daemon and shows its flows") {
  Upstream upstream;
  Daemon daemon;
  Child record({RETAKE_BINARY, "record", "--remote", daemon.address, "--mode",
                "reverse:http://127.0.0.1:" + std::to_string(upstream.port), "--listen",
                "127.0.0.1:0", "--session", "via-daemon"});
  std::string bound;
  const std::string marker = "listening on http://";
  for (;;) {
    auto line = record.read_line();
    REQUIRE_MESSAGE(line, "record --remote did not say where the daemon listens");
    if (auto at = line->find(marker); at != std::string::npos) {
      bound = line->substr(at + marker.size());
      bound = bound.substr(0, bound.find(' '));
      break;
    }
  }
  REQUIRE(curl("http://" + bound + "/json") == 0);
  REQUIRE(curl("http://" + bound + "/status/404") == 0);
  // Each committed flow is printed as a local recording prints it (line-buffered only on a
  // terminal, so read them after the stop here).
  CHECK(record.stop() == 0);
  std::vector<std::string> lines;
  bool summary = false;
  while (auto line = record.read_line(2s)) {
    if (line->find(" -> ") != std::string::npos) lines.push_back(*line);
    summary |= line->find("recorded 2 flows into session 'via-daemon'") != std::string::npos;
  }
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "GET http://127.0.0.1:" + std::to_string(upstream.port) + "/json -> 200");
  CHECK(lines[1].find("/status/404 -> 404") != std::string::npos);
  CHECK(summary);
  // The recorder is gone from the daemon; the flows are in its store.
  v1::ListRecordersResponse running;
  REQUIRE(v1::Recorder::NewStub(daemon.channel)
              ->List(context().get(), v1::ListRecordersRequest(), &running)
              .ok());
  CHECK(running.recorders_size() == 0);
  v1::ListFlowsRequest list;
  list.set_session("via-daemon");
  v1::ListFlowsResponse page;
  REQUIRE(v1::Flows::NewStub(daemon.channel)->List(context().get(), list, &page).ok());
  CHECK(page.flows_size() == 2);
  // The same recorder with --server-replay: the daemon answers from the session it just
  // recorded (X-Retake-Match says so) and stores what it served.
  Child mock({RETAKE_BINARY, "record", "--remote", daemon.address, "--mode",
              "reverse:http://127.0.0.1:" + std::to_string(upstream.port), "--listen",
              "127.0.0.1:0", "--session", "mocked", "--server-replay", "via-daemon", "-q"});
  std::string mock_bound;
  for (;;) {
    auto line = mock.read_line();
    REQUIRE_MESSAGE(line, "record --remote --server-replay did not start");
    if (auto at = line->find(marker); at != std::string::npos) {
      mock_bound = line->substr(at + marker.size());
      mock_bound = mock_bound.substr(0, mock_bound.find(' '));
      break;
    }
  }
  auto [hit_code, hit] = run_command("curl -sS -i --max-time 10 http://" + mock_bound + "/json");
  CHECK(hit_code == 0);
  CHECK(hit.find("widget") != std::string::npos);
  CHECK(hit.find("X-Retake-Match: ") != std::string::npos);
  auto [miss_code, miss] = run_command("curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "
                                       "http://" + mock_bound + "/never-recorded");
  CHECK(miss == "404");
  CHECK(mock.stop() == 0);
  list.set_session("mocked");
  v1::ListFlowsResponse mocked;
  REQUIRE(v1::Flows::NewStub(daemon.channel)->List(context().get(), list, &mocked).ok());
  CHECK(mocked.flows_size() == 2);

  // A bad flag value the daemon checks comes back naming the flag.
  auto [bad_code, bad] = run_retake({"record", "--remote", daemon.address, "--mode", "explicit",
                                     "--listen", "127.0.0.1:0", "--ignore-hosts", "(unclosed"});
  CHECK(bad_code == 2);
  CHECK(bad.find("ignore") != std::string::npos);

  // --cert/--key: the daemon serves HTTPS with the given files (relative paths are made
  // absolute by the CLI); curl trusts that self-signed certificate.
  auto [gen_code, gen] =
      run_command("cd " + daemon.dir.path.string() +
                  " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                  "-keyout own.key -out own.pem -days 1 -subj /CN=localhost "
                  "-addext subjectAltName=DNS:localhost 2>&1");
  REQUIRE_MESSAGE(gen_code == 0, gen);
  Child tls({RETAKE_BINARY, "record", "--remote", daemon.address, "--mode",
             "reverse:http://127.0.0.1:" + std::to_string(upstream.port), "--listen", "127.0.0.1:0",
             "--session", "own-cert", "--cert", (daemon.dir.path / "own.pem").string(), "--key",
             (daemon.dir.path / "own.key").string(), "-q"});
  std::string tls_bound;
  const std::string https_marker = "listening on https://";
  for (;;) {
    auto line = tls.read_line();
    REQUIRE_MESSAGE(line, "record --remote --cert did not start");
    if (auto at = line->find(https_marker); at != std::string::npos) {
      tls_bound = line->substr(at + https_marker.size());
      tls_bound = tls_bound.substr(0, tls_bound.find(' '));
      break;
    }
  }
  std::string tls_port = tls_bound.substr(tls_bound.rfind(':') + 1);
  auto [tls_code, tls_out] = run_command(
      "curl -sS --max-time 10 --cacert " + (daemon.dir.path / "own.pem").string() +
      " --resolve localhost:" + tls_port + ":127.0.0.1 https://localhost:" + tls_port + "/json");
  CHECK(tls_code == 0);
  CHECK(tls_out.find("widget") != std::string::npos);
  CHECK(tls.stop() == 0);
  auto [mixed_code, mixed] = run_retake({"record", "--remote", daemon.address, "--mode",
                                         "reverse:http://127.0.0.1:1", "--listen", "127.0.0.1:0",
                                         "--tls", "--cert", (daemon.dir.path / "own.pem").string(),
                                         "--key", (daemon.dir.path / "own.key").string()});
  CHECK(mixed_code == 2);
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

// ---- Replay service ----

namespace {

// Records `paths` (GET; "POST:/echo" posts) through a reverse recorder in front of `upstream`
// into `session` and stops the recorder, so every flow is in the store.
// Records `paths` with curl through a reverse-mode recorder started over gRPC. With `watch`,
// the flows must also arrive on WatchFlows, in order, as they are recorded.
void record_session(Daemon& daemon, const Upstream& upstream, const std::string& session,
                    const std::vector<std::string>& paths, bool watch = false) {
  auto recorders = v1::Recorder::NewStub(daemon.channel);
  auto started = start_reverse_recorder(*recorders, upstream, session);
  auto watch_context = context(60s);
  std::unique_ptr<grpc::ClientReader<v1::FlowEvent>> watched;
  if (watch) {
    v1::WatchFlowsRequest subscribe;
    subscribe.set_session(session);
    watched = recorders->WatchFlows(watch_context.get(), subscribe);
    watched->WaitForInitialMetadata();
  }
  const std::string proxy = "http://" + started.bound_address();
  for (const auto& p : paths) {
    if (p.rfind("POST:", 0) == 0)
      REQUIRE(curl("-X POST --data-binary replay-body " + proxy + p.substr(5)) == 0);
    else
      REQUIRE(curl(proxy + p) == 0);
    if (!watched) continue;
    v1::FlowEvent event;
    REQUIRE(watched->Read(&event));
    CHECK(event.lost() == 0);
    CHECK(event.flow().session() == session);
    CHECK(event.flow().url().ends_with(p.rfind("POST:", 0) == 0 ? p.substr(5) : p));
  }
  if (watched) {
    watch_context->TryCancel();
    CHECK(watched->Finish().error_code() == grpc::StatusCode::CANCELLED);
  }
  v1::RecorderRef ref;
  ref.set_recorder_id(started.recorder_id());
  v1::RecorderStatus stopped;
  REQUIRE(recorders->Stop(context().get(), ref, &stopped).ok());
  REQUIRE(stopped.stats().flows() == paths.size());
}

struct ReplayStream {
  std::vector<v1::ClientReplayEvent> events;
  grpc::Status status;
  const v1::ReplayFinished* finished() const {
    for (const auto& e : events)
      if (e.has_finished()) return &e.finished();
    return nullptr;
  }
  std::vector<v1::ReplayFlowResult> results() const {
    std::vector<v1::ReplayFlowResult> out;
    for (const auto& e : events)
      for (const auto& r : e.results().results()) out.push_back(r);
    return out;
  }
};

ReplayStream replay_all(v1::Replay::Stub& stub, const v1::StartClientReplayRequest& request,
                        std::chrono::seconds timeout = 60s) {
  ReplayStream out;
  auto ctx = context(timeout);
  auto reader = stub.StartClientReplay(ctx.get(), request);
  v1::ClientReplayEvent event;
  while (reader->Read(&event)) out.events.push_back(event);
  out.status = reader->Finish();
  return out;
}

grpc::StatusCode start_code(v1::Replay::Stub& stub, const v1::StartClientReplayRequest& request,
                            std::string* message = nullptr) {
  auto stream = replay_all(stub, request, 20s);
  if (message) *message = stream.status.error_message();
  return stream.status.error_code();
}

}  // namespace

TEST_CASE(
    "a client replay over gRPC streams its run id, progress and results, and stores the run") {
  Upstream recorded_against;
  Upstream target;
  Daemon daemon;
  record_session(daemon, recorded_against, "rp", {"/json", "/json", "/status/404", "POST:/echo"});
  auto replays = v1::Replay::NewStub(daemon.channel);

  v1::StartClientReplayRequest request;
  request.set_session("rp");
  request.set_target("http://127.0.0.1:" + std::to_string(target.port));
  request.set_pace("asap");
  request.set_run_id("run-one");
  auto stream = replay_all(*replays, request);
  REQUIRE_MESSAGE(stream.status.ok(), stream.status.error_message());
  REQUIRE(stream.events.size() >= 3);
  REQUIRE(stream.events.front().has_started());
  CHECK(stream.events.front().started().run_id() == "run-one");
  CHECK(stream.events.front().started().total() == 4);
  REQUIRE(stream.events.back().has_finished());
  const auto& finished = stream.events.back().finished();
  CHECK(finished.run_id() == "run-one");
  CHECK(finished.session() == "rp");
  CHECK_FALSE(finished.interrupted());
  CHECK(finished.total() == 4);
  CHECK(finished.completed() == 4);
  CHECK(finished.mismatches() == 0);
  CHECK(finished.transport_errors() == 0);
  CHECK(finished.exit_code() == 0);
  CHECK(finished.results_dropped() == 0);
  CHECK(finished.report_text().rfind("run run-one\n  sent 4 of 4, completed 4", 0) == 0);
  CHECK(finished.report_json().find("\"run\":\"run-one\"") != std::string::npos);
  auto results = stream.results();
  REQUIRE(results.size() == 4);
  int not_found = 0;
  for (const auto& r : results) {
    CHECK(r.status_match());
    CHECK(r.origin() != 0);
    CHECK(r.error_kind().empty());
    not_found += r.status() == 404;
  }
  CHECK(not_found == 1);

  // Once `finished` arrived every replayed flow is readable, linked to its origin.
  v1::ListFlowsRequest list;
  list.set_run("run-one");
  v1::ListFlowsResponse page;
  REQUIRE(v1::Flows::NewStub(daemon.channel)->List(context().get(), list, &page).ok());
  REQUIRE(page.flows_size() == 4);
  v1::GetFlowRequest get;
  get.set_id(page.flows(0).id());
  v1::Flow replayed;
  REQUIRE(v1::Flows::NewStub(daemon.channel)->Get(context().get(), get, &replayed).ok());
  CHECK(replayed.run() == "run-one");
  CHECK(replayed.origin() != 0);
  CHECK(replayed.request().authority() == "127.0.0.1:" + std::to_string(target.port));

  // The run is listed with its summary, alone under its session and not under another.
  auto flows_stub = v1::Flows::NewStub(daemon.channel);
  v1::ListRunsRequest runs_request;
  runs_request.set_session("rp");
  v1::ListRunsResponse runs;
  REQUIRE(flows_stub->ListRuns(context().get(), runs_request, &runs).ok());
  REQUIRE(runs.runs_size() == 1);
  CHECK(runs.runs(0).run_id() == "run-one");
  CHECK(runs.runs(0).session() == "rp");
  CHECK(runs.runs(0).target() == request.target());
  CHECK(runs.runs(0).total() == 4);
  CHECK(runs.runs(0).completed() == 4);
  CHECK(runs.runs(0).status_mismatches() == 0);
  CHECK_FALSE(runs.runs(0).interrupted());
  CHECK(runs.runs(0).ended_ns() >= runs.runs(0).started_ns());
  CHECK(runs.runs(0).summary_json().find("\"run\":\"run-one\"") != std::string::npos);
  runs_request.set_session("other");
  REQUIRE(flows_stub->ListRuns(context().get(), runs_request, &runs).ok());
  CHECK(runs.runs_size() == 0);

  // The run id is now taken.
  std::string message;
  CHECK(start_code(*replays, request, &message) == grpc::StatusCode::ALREADY_EXISTS);
  CHECK(message.rfind("run_id:", 0) == 0);
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE("a client replay stops on CancelClientReplay and when its caller goes away") {
  Upstream recorded_against;
  Daemon daemon;
  record_session(daemon, recorded_against, "slow",
                 {"/json", "/json", "/json", "/json", "/json", "/json"});
  auto replays = v1::Replay::NewStub(daemon.channel);
  v1::StartClientReplayRequest request;
  request.set_session("slow");
  request.set_pace("asap");
  request.set_rate(0.5);  // one request every 2 s: the run lasts 10 s unless stopped
  request.set_progress_interval_ms(50);

  SUBCASE("an explicit cancel by run id") {
    request.set_run_id("run-cancel");
    auto ctx = context(60s);
    auto reader = replays->StartClientReplay(ctx.get(), request);
    v1::ClientReplayEvent event;
    REQUIRE(reader->Read(&event));
    REQUIRE(event.has_started());
    v1::ClientReplayRef ref;
    ref.set_run_id("run-cancel");
    v1::ClientReplayStatus running;
    REQUIRE(replays->GetClientReplay(context().get(), ref, &running).ok());
    CHECK(running.progress().total() == 6);
    v1::ListClientReplaysResponse listed;
    REQUIRE(replays->ListClientReplays(context().get(), {}, &listed).ok());
    REQUIRE(listed.replays_size() == 1);
    CHECK(listed.replays(0).run_id() == "run-cancel");
    // Comparing a run that is still being written would report on half of it.
    {
      auto diffs = v1::Diff::NewStub(daemon.channel);
      v1::CompareRequest compare;
      compare.set_run("run-cancel");
      auto c = context(20s);
      auto r = diffs->Compare(c.get(), compare);
      v1::DiffEvent e;
      while (r->Read(&e)) {
      }
      auto st = r->Finish();
      CHECK(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
      CHECK(st.error_message().find("still replaying") != std::string::npos);
    }
    v1::ClientReplayStatus cancelling;
    REQUIRE(replays->CancelClientReplay(context().get(), ref, &cancelling).ok());
    CHECK(cancelling.cancelling());
    std::optional<v1::ReplayFinished> finished;
    while (reader->Read(&event))
      if (event.has_finished()) finished = event.finished();
    CHECK(reader->Finish().ok());
    REQUIRE(finished);
    CHECK(finished->interrupted());
    CHECK(finished->sent() < 6);
    CHECK(finished->report_text().find("(interrupted)") != std::string::npos);
    CHECK(replays->GetClientReplay(context().get(), ref, &running).error_code() ==
          grpc::StatusCode::NOT_FOUND);
  }

  SUBCASE("the caller cancels the call") {
    request.set_run_id("run-dropped");
    auto ctx = context(60s);
    auto reader = replays->StartClientReplay(ctx.get(), request);
    v1::ClientReplayEvent event;
    REQUIRE(reader->Read(&event));
    REQUIRE(event.has_started());
    ctx->TryCancel();
    while (reader->Read(&event)) {
    }
    CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);
    // The daemon notices, stops the run and forgets it well before the run would have ended.
    v1::ClientReplayRef ref;
    ref.set_run_id("run-dropped");
    v1::ClientReplayStatus running;
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      gone = replays->GetClientReplay(context().get(), ref, &running).error_code() ==
             grpc::StatusCode::NOT_FOUND;
      if (!gone) std::this_thread::sleep_for(50ms);
    }
    CHECK(gone);
    // What completed before the stop was kept, with the run's metadata: the id is taken.
    CHECK(start_code(*replays, request) == grpc::StatusCode::ALREADY_EXISTS);
  }
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE(
    "bad replay requests get INVALID_ARGUMENT naming the field, NOT_FOUND or ALREADY_EXISTS") {
  Upstream upstream;
  Daemon daemon;
  record_session(daemon, upstream, "ok", {"/json"});
  auto replays = v1::Replay::NewStub(daemon.channel);

  struct Case {
    const char* field;
    std::function<void(v1::StartClientReplayRequest&)> spoil;
  } cases[] = {
      {"speed:", [](auto& r) { r.set_speed(-1); }},
      {"pace:", [](auto& r) { r.set_pace("sideways"); }},
      {"concurrency:", [](auto& r) { r.set_concurrency(1'000'000); }},
      {"loop:", [](auto& r) { r.set_loop(1'000'000'000); }},
      {"filter:", [](auto& r) { r.set_filter("~c"); }},
      {"map_host:", [](auto& r) { r.add_map_host("no-equals-sign"); }},
      {"shift_time:", [](auto& r) { r.set_shift_time("soon"); }},
      {"shift_time:",
       [](auto& r) {
         r.set_shift_time("+1h");
         r.set_no_shift(true);
       }},
      {"bind:", [](auto& r) { r.set_bind("sometimes"); }},
      {"timeout_ms:", [](auto& r) { r.set_timeout_ms(4'000'000); }},
      {"threads:", [](auto& r) { r.set_threads(1000); }},
      {"run_id:", [](auto& r) { r.set_run_id(std::string(300, 'x')); }},
      {"session:", [](auto& r) { r.clear_session(); }},
      {"progress_interval_ms:", [](auto& r) { r.set_progress_interval_ms(1); }},
      {"rules:", [](auto& r) { r.set_rules_text("rules: [ {"); }},
  };
  for (const auto& c : cases) {
    CAPTURE(c.field);
    v1::StartClientReplayRequest request;
    request.set_session("ok");
    c.spoil(request);
    std::string message;
    CHECK(start_code(*replays, request, &message) == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(message.rfind(c.field, 0) == 0);
  }
  // A rules name without its text never makes the daemon open a path of its own.
  v1::StartClientReplayRequest named;
  named.set_session("nope");
  named.set_rules_name("/etc/shadow");
  std::string message;
  CHECK(start_code(*replays, named, &message) == grpc::StatusCode::NOT_FOUND);
  CHECK(message.find("nope") != std::string::npos);
  // The daemon's file layout stays its own.
  CHECK(message.find(daemon.dir.path.string()) == std::string::npos);
  CHECK(message.find("the daemon's store") != std::string::npos);
  v1::StartClientReplayRequest unknown_flow;
  unknown_flow.add_flow(999'999);
  CHECK(start_code(*replays, unknown_flow) == grpc::StatusCode::NOT_FOUND);

  v1::ClientReplayRef ref;
  ref.set_run_id("never-ran");
  v1::ClientReplayStatus status;
  CHECK(replays->CancelClientReplay(context().get(), ref, &status).error_code() ==
        grpc::StatusCode::NOT_FOUND);

  // Server replays: an unknown session, bad words, relative paths, a port in use.
  v1::StartServerReplayRequest serve;
  v1::ServerReplayStatus served;
  serve.set_session("nope");
  CHECK(replays->StartServerReplay(context().get(), serve, &served).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  serve.set_session("ok");
  serve.set_on_miss("shrug");
  auto bad = replays->StartServerReplay(context().get(), serve, &served);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(bad.error_message().rfind("on_miss:", 0) == 0);
  serve.clear_on_miss();
  serve.set_cert("cert.pem");
  serve.set_key("key.pem");
  bad = replays->StartServerReplay(context().get(), serve, &served);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(bad.error_message().rfind("cert:", 0) == 0);
  serve.clear_cert();
  serve.clear_key();
  serve.set_listen("127.0.0.1:" + std::to_string(upstream.port));  // taken by the upstream
  bad = replays->StartServerReplay(context().get(), serve, &served);
  CHECK(bad.error_code() == grpc::StatusCode::ALREADY_EXISTS);
  CHECK(bad.error_message().rfind("listen:", 0) == 0);
  v1::ServerReplayRef server_ref;
  server_ref.set_server_id("s999");
  CHECK(replays->StopServerReplay(context().get(), server_ref, &served).error_code() ==
        grpc::StatusCode::NOT_FOUND);

  // After all that the daemon still serves.
  CHECK(health_status(daemon.channel) == 1);
  v1::StartClientReplayRequest good;
  good.set_session("ok");
  good.set_target("http://127.0.0.1:" + std::to_string(upstream.port));
  auto stream = replay_all(*replays, good);
  REQUIRE_MESSAGE(stream.status.ok(), stream.status.error_message());
  REQUIRE(stream.finished());
  CHECK(stream.finished()->completed() == 1);
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE(
    "a server replay over gRPC answers from the recording and reports what it served and missed") {
  Upstream upstream;
  Daemon daemon;
  record_session(daemon, upstream, "mock", {"/json", "/status/404", "/other"});
  auto replays = v1::Replay::NewStub(daemon.channel);
  v1::StartServerReplayRequest serve;
  serve.set_session("mock");
  v1::ServerReplayStatus started;
  auto status = replays->StartServerReplay(context().get(), serve, &started);
  REQUIRE_MESSAGE(status.ok(), status.error_message());
  CHECK(started.running());
  CHECK(started.scheme() == "http");
  CHECK(started.flows_loaded() == 3);
  REQUIRE(started.bound_address().rfind("127.0.0.1:", 0) == 0);
  const std::string base = "http://" + started.bound_address();

  std::string body_file = (daemon.dir.path / "body").string();
  REQUIRE(std::system(("curl -sS --max-time 10 -o " + body_file + " " + base + "/json").c_str()) ==
          0);
  std::ifstream body(body_file);
  std::string served_body((std::istreambuf_iterator<char>(body)), {});
  CHECK(served_body.find("{") != std::string::npos);
  REQUIRE(curl(base + "/never-recorded") == 0);

  v1::ServerReplayRef ref;
  ref.set_server_id(started.server_id());
  v1::ServerReplayStatus now;
  REQUIRE(replays->GetServerReplay(context().get(), ref, &now).ok());
  CHECK(now.requests() == 2);
  CHECK(now.hits() == 1);
  CHECK(now.misses() == 1);
  v1::ListServerReplaysResponse listed;
  REQUIRE(replays->ListServerReplays(context().get(), {}, &listed).ok());
  REQUIRE(listed.servers_size() == 1);
  CHECK(listed.servers(0).server_id() == started.server_id());

  v1::ServerReplayStatus report;
  REQUIRE(replays->StopServerReplay(context().get(), ref, &report).ok());
  CHECK_FALSE(report.running());
  CHECK(report.served_flows_size() == 1);
  CHECK(report.unserved_flows_size() == 2);
  REQUIRE(report.missed_size() == 1);
  CHECK(report.missed(0).request_line().find("/never-recorded") != std::string::npos);
  CHECK(report.missed(0).reason() == "no_match");
  CHECK_FALSE(report.missed(0).explanation().empty());
  CHECK_FALSE(report.report_text().empty());
  CHECK(replays->GetServerReplay(context().get(), ref, &now).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(curl("--retry 0 " + base + "/json") != 0);  // no longer listening

  // A session whose only flow failed (the upstream was down) has nothing to answer with.
  {
    auto recorders = v1::Recorder::NewStub(daemon.channel);
    v1::StartRecorderRequest start;
    start.set_mode("reverse:http://127.0.0.1:1");
    start.set_session("all-failed");
    v1::StartRecorderResponse recording;
    REQUIRE(recorders->Start(context().get(), start, &recording).ok());
    CHECK(curl("http://" + recording.bound_address() + "/json") == 0);  // a 502 from retake
    v1::RecorderRef recorder;
    recorder.set_recorder_id(recording.recorder_id());
    v1::RecorderStatus stopped;
    REQUIRE(recorders->Stop(context().get(), recorder, &stopped).ok());
    REQUIRE(stopped.stats().flows() == 1);
  }
  v1::StartServerReplayRequest empty;
  empty.set_session("all-failed");
  status = replays->StartServerReplay(context().get(), empty, &started);
  CHECK(status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(status.error_message().find("response") != std::string::npos);
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE("retake replay --remote runs through the daemon and prints what a local replay prints") {
  Upstream upstream;
  Daemon daemon;
  record_session(daemon, upstream, "cli", {"/json", "/status/500"});
  const std::string target = "http://127.0.0.1:" + std::to_string(upstream.port);
  auto [code, out] = run_retake({"replay", "--session", "cli", "--target", target, "--pace", "asap",
                                 "--run-id", "cli-run", "--remote", daemon.address});
  CHECK(code == 0);
  CHECK(out.rfind("run cli-run\n  sent 2 of 2, completed 2, status mismatches 0, "
                  "transport errors 0\n",
                  0) == 0);
  CHECK(out.find("  latency p50 ") != std::string::npos);
  CHECK(out.find("  bindings applied ") != std::string::npos);

  auto [json_code, json] = run_retake(
      {"replay", "--session", "cli", "--target", target, "--json", "--remote", daemon.address});
  CHECK(json_code == 0);
  CHECK(json.rfind("{", 0) == 0);
  CHECK(json.find("\"completed\":2") != std::string::npos);

  // The same checks as in-process: a usage error names the flag and exits 2.
  auto [bad_code, bad] =
      run_retake({"replay", "--session", "cli", "--speed", "0", "--remote", daemon.address});
  CHECK(bad_code == 2);
  CHECK(bad.find("--speed") != std::string::npos);
  auto [missing_code, missing] =
      run_retake({"replay", "--session", "nope", "--remote", daemon.address});
  CHECK(missing_code == 1);
  CHECK(missing.find("nope") != std::string::npos);

  // The replayed flows are in the daemon's store, in the run.
  auto [list_code, listed] =
      run_retake({"flows", "list", "--json", "--remote", daemon.address, "~run cli-run"});
  CHECK(list_code == 0);
  CHECK(std::count(listed.begin(), listed.end(), '\n') == 2);
  // Both runs are listed, through the daemon and from the store directly, alike.
  auto [runs_code, runs] = run_retake({"runs", "--remote", daemon.address});
  CHECK(runs_code == 0);
  CHECK(runs.find("cli-run  cli -> " + target) != std::string::npos);
  CHECK(runs.find("2/2 answered") != std::string::npos);
  CHECK(std::count(runs.begin(), runs.end(), '\n') == 2);
  auto [runs_json_code, runs_json] =
      run_retake({"runs", "--json", "--session", "nope", "--remote", daemon.address});
  CHECK(runs_json_code == 0);
  CHECK(runs_json.empty());
  // retake diff --remote: the daemon compares and renders; exit code and report as local.
  auto [diff_code, remote_diff] = run_retake(
      {"diff", "--run", "cli-run", "--format", "json", "-q", "--remote", daemon.address});
  CHECK(diff_code == 0);
  CHECK(remote_diff.find("\"compared\":2") != std::string::npos);
  auto [tol_code, tol] =
      run_retake({"diff", "--run", "cli-run", "--tolerance", "1", "--remote", daemon.address});
  CHECK(tol_code == 2);
  CHECK(tol.find("--tolerance is not available with --remote") != std::string::npos);
  auto [nodiff_code, nodiff] =
      run_retake({"diff", "--run", "no-such-run", "--remote", daemon.address});
  CHECK(nodiff_code == 1);
  CHECK(nodiff.find("no-such-run") != std::string::npos);
  CHECK(daemon.child->stop() == 0);
  auto [local_diff_code, local_diff] =
      run_retake({"diff", "--run", "cli-run", "--format", "json", "-q", "--db",
                  (daemon.dir.path / "db").string()});
  CHECK(local_diff_code == diff_code);
  CHECK(local_diff == remote_diff);
  auto [local_runs_code, local_runs] =
      run_retake({"runs", "--json", "--db", (daemon.dir.path / "db").string()});
  CHECK(local_runs_code == 0);
  CHECK(local_runs.find("\"run\":\"cli-run\"") != std::string::npos);
  CHECK(std::count(local_runs.begin(), local_runs.end(), '\n') == 2);
  // And a local replay of the same store (now that the daemon let go of it) prints the same
  // lines, but for the numbers that vary between runs.
  auto [local_code, local] =
      run_retake({"replay", "--session", "cli", "--target", target, "--pace", "asap", "--run-id",
                  "local-run", "--db", (daemon.dir.path / "db").string()});
  CHECK(local_code == 0);
  CHECK(local.rfind("run local-run\n  sent 2 of 2, completed 2, status mismatches 0, "
                    "transport errors 0\n",
                    0) == 0);
  auto line_starts = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line.substr(0, 12));
    return out;
  };
  CHECK(line_starts(local).size() == line_starts(out).size());
}

// ---- Diff service ----

TEST_CASE("the Diff service compares a run with its origins, streams the differences and reports") {
  Upstream recorded_against;
  Upstream target;
  Daemon daemon;
  // The whole loop over gRPC: record (watching the flows arrive), replay against a second
  // server instance until the stream finishes, compare.
  // /echo answers with the request's headers: replayed to another port, its Host differs.
  record_session(daemon, recorded_against, "d", {"/json", "/echo"}, /*watch=*/true);
  auto replays = v1::Replay::NewStub(daemon.channel);
  v1::StartClientReplayRequest replay_request;
  replay_request.set_session("d");
  replay_request.set_target("http://127.0.0.1:" + std::to_string(target.port));
  replay_request.set_pace("asap");
  replay_request.set_run_id("run-d");
  auto replayed = replay_all(*replays, replay_request);
  REQUIRE_MESSAGE(replayed.status.ok(), replayed.status.error_message());
  REQUIRE(replayed.finished());
  CHECK(replayed.finished()->completed() == 2);
  bool progressed = false;
  for (const auto& e : replayed.events)
    progressed |= e.has_progress() && e.progress().completed() == 2;
  CHECK(progressed);

  auto diffs = v1::Diff::NewStub(daemon.channel);
  v1::CompareRequest compare;
  compare.set_run("run-d");
  compare.set_format("junit");
  auto ctx = context(60s);
  auto reader = diffs->Compare(ctx.get(), compare);
  std::vector<v1::DiffEvent> events;
  v1::DiffEvent event;
  while (reader->Read(&event)) events.push_back(event);
  auto status = reader->Finish();
  REQUIRE_MESSAGE(status.ok(), status.error_message());
  REQUIRE(events.size() >= 2);
  CHECK(events.front().has_started());
  CHECK(events.front().started().diff_id().rfind("d", 0) == 0);
  REQUIRE(events.back().has_report());
  const auto& report = events.back().report();
  CHECK(report.compared() == 2);
  CHECK(report.identical() == 1);
  CHECK(report.different() == 1);
  CHECK(report.exit_code() == 1);
  CHECK(report.session() == "d");
  CHECK(report.format() == "junit");
  CHECK(report.content().find("<testsuite") != std::string::npos);
  CHECK(report.report_json().find("\"compared\":2") != std::string::npos);
  std::vector<v1::PairDifference> pairs;
  for (const auto& e : events)
    if (e.has_difference()) pairs.push_back(e.difference());
  REQUIRE(pairs.size() == 1);
  CHECK(pairs[0].request_line().find("/echo") != std::string::npos);
  bool host_differs = false;
  for (const auto& d : pairs[0].differences())
    host_differs |= d.path().rfind("$.headers", 0) == 0 &&
                    d.value_b().find(std::to_string(target.port)) != std::string::npos;
  CHECK(host_differs);

  // Ignoring the echoed headers leaves nothing unexplained.
  compare.add_ignore("$.headers");
  compare.set_format("text");
  auto quiet = context(60s);
  auto again = diffs->Compare(quiet.get(), compare);
  std::optional<v1::DiffReport> second;
  while (again->Read(&event))
    if (event.has_report()) second = event.report();
  REQUIRE(again->Finish().ok());
  REQUIRE(second);
  CHECK(second->different() == 0);
  CHECK(second->exit_code() == 0);
  CHECK_FALSE(second->content().empty());

  // Bad input: the field is named; an unknown run is NOT_FOUND; the daemon keeps serving.
  auto code_of = [&](const v1::CompareRequest& request, std::string* message) {
    auto c = context(20s);
    auto r = diffs->Compare(c.get(), request);
    v1::DiffEvent e;
    while (r->Read(&e)) {
    }
    auto st = r->Finish();
    *message = st.error_message();
    return st.error_code();
  };
  std::string message;
  CHECK(code_of(v1::CompareRequest(), &message) == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(message.rfind("run:", 0) == 0);
  v1::CompareRequest bad = compare;
  bad.set_format("pdf");
  CHECK(code_of(bad, &message) == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(message.rfind("format:", 0) == 0);
  bad = compare;
  bad.add_normalizer("sometimes");
  CHECK(code_of(bad, &message) == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(message.rfind("normalizer:", 0) == 0);
  bad = compare;
  bad.set_filter("~c");
  CHECK(code_of(bad, &message) == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(message.rfind("filter:", 0) == 0);
  bad = v1::CompareRequest();
  bad.set_session("d");
  bad.set_a_target("http://127.0.0.1:1");
  CHECK(code_of(bad, &message) == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(message.rfind("b_target:", 0) == 0);
  bad = v1::CompareRequest();
  bad.set_run("no-such-run");
  CHECK(code_of(bad, &message) == grpc::StatusCode::NOT_FOUND);
  // Live A/B: the daemon replays the session against both sides (two runs), then compares.
  v1::CompareRequest live;
  live.set_session("d");
  live.set_a_target("http://127.0.0.1:" + std::to_string(recorded_against.port));
  live.set_b_target("http://127.0.0.1:" + std::to_string(target.port));
  live.mutable_replay()->set_pace("asap");
  auto live_ctx = context(60s);
  auto live_reader = diffs->Compare(live_ctx.get(), live);
  std::optional<v1::DiffReport> live_report;
  while (live_reader->Read(&event))
    if (event.has_report()) live_report = event.report();
  auto live_status = live_reader->Finish();
  REQUIRE_MESSAGE(live_status.ok(), live_status.error_message());
  REQUIRE(live_report);
  CHECK(live_report->compared() == 2);
  CHECK(live_report->different() == 1);  // /echo: each side saw its own Host
  CHECK_FALSE(live_report->run_a().empty());
  CHECK_FALSE(live_report->run_b().empty());
  CHECK(live_report->run_a() != live_report->run_b());

  // A slow live A/B stops on CancelDiff: its stream ends CANCELLED.
  live.mutable_replay()->set_rate(0.5);
  live.mutable_replay()->set_loop(10);
  auto slow_ctx = context(60s);
  auto slow = diffs->Compare(slow_ctx.get(), live);
  REQUIRE(slow->Read(&event));
  REQUIRE(event.has_started());
  v1::DiffRef running;
  running.set_diff_id(event.started().diff_id());
  v1::CancelDiffResponse cancel_response;
  REQUIRE(diffs->CancelDiff(context().get(), running, &cancel_response).ok());
  while (slow->Read(&event)) {
  }
  // Had the stop not reached the replays, the run would end after 20 s with OK and a report.
  CHECK(slow->Finish().error_code() == grpc::StatusCode::CANCELLED);

  v1::DiffRef ref;
  ref.set_diff_id("d999");
  v1::CancelDiffResponse cancelled;
  CHECK(diffs->CancelDiff(context().get(), ref, &cancelled).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(health_status(daemon.channel) == 1);
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE("retake serve --remote has the daemon serve a session until the command is stopped") {
  Upstream upstream;
  Daemon daemon;
  record_session(daemon, upstream, "mock-cli", {"/json", "/other"});
  // A rules file named relative to the command's directory, which is not the daemon's: the
  // command sends the daemon an absolute path.
  TempDir here;
  {
    std::ofstream rules(here.path / "rules.yaml");
    rules << "match:\n  - name: json\n    when: \"~u /json\"\n    ignore_param: [ts]\n";
  }
  Child serve({RETAKE_BINARY, "serve", "--session", "mock-cli", "--listen", "127.0.0.1:0",
               "--match-rules", "rules.yaml", "--remote", daemon.address},
              here.path.string());
  std::string address;
  const std::string marker = "listening on http://";
  while (auto line = serve.read_line()) {
    if (auto at = line->find(marker); at != std::string::npos) {
      address = line->substr(at + marker.size());
      address = address.substr(0, address.find(' '));
      break;
    }
  }
  REQUIRE_FALSE(address.empty());
  REQUIRE(curl("http://" + address + "/json?ts=5") == 0);  // a hit only under the rule
  auto replays = v1::Replay::NewStub(daemon.channel);
  v1::ListServerReplaysResponse listed;
  REQUIRE(replays->ListServerReplays(context().get(), {}, &listed).ok());
  REQUIRE(listed.servers_size() == 1);
  CHECK(listed.servers(0).hits() == 1);
  CHECK(serve.stop() == 0);  // SIGTERM: the command stops the daemon's server replay
  std::string report;
  while (auto line = serve.read_line(5s)) report += *line + "\n";
  CHECK(report.find("1 requests: 1 served from recordings") != std::string::npos);
  REQUIRE(replays->ListServerReplays(context().get(), {}, &listed).ok());
  CHECK(listed.servers_size() == 0);

  auto [bad_code, bad] = run_retake(
      {"serve", "--session", "mock-cli", "--on-miss", "418", "--remote", daemon.address});
  CHECK(bad_code == 2);
  CHECK(bad.find("--on-miss") != std::string::npos);
  CHECK(daemon.child->stop() == 0);
}

TEST_CASE("a recorder's status shows flows waiting while the daemon's disk is short of space") {
  Upstream upstream;
  // A reserve no disk has: writing pauses at the first flow.
  Daemon daemon({"--min-free-space", "1000000GiB"});
  auto recorders = v1::Recorder::NewStub(daemon.channel);
  auto flows = v1::Flows::NewStub(daemon.channel);
  auto started = start_reverse_recorder(*recorders, upstream, "short");
  const std::string proxy = "http://" + started.bound_address();
  REQUIRE(curl(proxy + "/json") == 0);  // the proxy answers while recording is paused
  REQUIRE(curl(proxy + "/json") == 0);

  v1::RecorderRef ref;
  ref.set_recorder_id(started.recorder_id());
  v1::RecorderStatus status;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    REQUIRE(recorders->Status(context().get(), ref, &status).ok());
    if (status.stats().flows_waiting_for_space() == 2) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  CHECK(status.stats().flows() == 2);
  CHECK(status.stats().flows_waiting_for_space() == 2);
  CHECK(status.stats().disk_space_pauses() == 1);
  v1::ListFlowsRequest list;
  list.set_session("short");
  v1::ListFlowsResponse page;
  REQUIRE(flows->List(context().get(), list, &page).ok());
  CHECK(page.flows_size() == 0);  // nothing written while paused
}
