// Internal to src/control: the gRPC service implementations and what they share with the
// Daemon. Includes generated code; only daemon.cc and services.cc include it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "flow/flow.h"
#include "flow/status.h"
#include "ops/replay_run.h"
#include "record/recorder.h"
#include "retake/v1/diff.grpc.pb.h"
#include "retake/v1/flows.grpc.pb.h"
#include "retake/v1/recorder.grpc.pb.h"
#include "retake/v1/replay.grpc.pb.h"
#include "store/flow_store.h"

namespace retake::control {

inline constexpr size_t kMaxRecorders = 64;
inline constexpr size_t kMaxWatchers = 64;
inline constexpr size_t kWatchQueueCapacity = 1024;  // events per watcher before it loses some
inline constexpr size_t kMaxNameBytes = 256;         // session / run names
inline constexpr uint32_t kDefaultPageSize = 100;
inline constexpr uint32_t kMaxPageSize = 1000;
inline constexpr size_t kMaxDeleteIds = 10000;

// Maps a project Status onto a gRPC status; `field` (when not empty) prefixes the message so
// the caller sees which request field was wrong.
// Messages name the daemon's store path (ops errors say "no session named 'x' in PATH"), which a
// remote caller has no business knowing: to_grpc replaces every path registered here with
// "the daemon's store". Daemons register their store path at start; thread-safe.
grpc::Status to_grpc(const Status& status, const std::string& field = "");
void register_private_path(const std::string& path);

// Bearer-token check run first in every Recorder and Flows call. With an empty token every
// call passes (loopback or mutual TLS). Constant-time comparison of SHA-256 digests.
class TokenCheck {
 public:
  explicit TokenCheck(std::string token) : token_(std::move(token)) {}
  grpc::Status check(const grpc::ServerContext& context) const;

 private:
  std::string token_;
};

// Flow -> proto.
void to_proto(const flow::Flow& f, v1::Flow& out);
void to_summary(const flow::Flow& f, v1::FlowSummary& out);

// One WatchFlows subscriber's bounded queue.
struct Watcher {
  std::string session;  // "" for every session
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<v1::FlowSummary> queue;
  uint64_t lost = 0;
  bool closed = false;
};

// Fans committed flows out to the watchers. publish() runs on the store writer's thread and
// never waits for a watcher: a full queue counts a loss.
class FlowHub {
 public:
  // nullptr when kMaxWatchers are subscribed or the hub is closed.
  std::shared_ptr<Watcher> subscribe(std::string session);
  void unsubscribe(const std::shared_ptr<Watcher>& watcher);
  void publish(const flow::Flow& f);
  // Ends every stream; later subscribe() calls get nullptr.
  void close();

 private:
  std::mutex mutex_;
  std::vector<std::shared_ptr<Watcher>> watchers_;
  bool closed_ = false;
};

class RecorderService final : public v1::Recorder::Service {
 public:
  RecorderService(const TokenCheck& auth, store::FlowWriter& writer, FlowHub& hub,
                  store::FlowStore& store)
      : auth_(auth), writer_(writer), hub_(hub), store_(store) {}
  ~RecorderService() override { stop_all(); }

  grpc::Status Start(grpc::ServerContext* context, const v1::StartRecorderRequest* request,
                     v1::StartRecorderResponse* response) override;
  grpc::Status Stop(grpc::ServerContext* context, const v1::RecorderRef* request,
                    v1::RecorderStatus* response) override;
  grpc::Status Status(grpc::ServerContext* context, const v1::RecorderRef* request,
                      v1::RecorderStatus* response) override;
  grpc::Status List(grpc::ServerContext* context, const v1::ListRecordersRequest* request,
                    v1::ListRecordersResponse* response) override;
  grpc::Status WatchFlows(grpc::ServerContext* context, const v1::WatchFlowsRequest* request,
                          grpc::ServerWriter<v1::FlowEvent>* writer) override;

  // Stops every recorder and refuses new ones (daemon shutdown). Idempotent.
  void stop_all();

 private:
  struct Running {
    std::string id;
    std::string mode;
    std::string bound_address;
    std::string session;
    // Server replay inside the proxy; destroyed after the recorder (declared before it).
    std::unique_ptr<replay::server::ServerReplay> server_replay;
    std::unique_ptr<record::Responder> responder;
    std::unique_ptr<record::Recorder> recorder;
  };
  void describe(const Running& r, bool running, v1::RecorderStatus& out) const;

  const TokenCheck& auth_;
  store::FlowWriter& writer_;
  FlowHub& hub_;
  store::FlowStore& store_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Running>> recorders_;
  uint64_t next_id_ = 0;
  bool stopping_ = false;
};

class FlowsService final : public v1::Flows::Service {
 public:
  FlowsService(const TokenCheck& auth, store::FlowStore& store) : auth_(auth), store_(store) {}

  grpc::Status List(grpc::ServerContext* context, const v1::ListFlowsRequest* request,
                    v1::ListFlowsResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetFlowRequest* request,
                   v1::Flow* response) override;
  grpc::Status Delete(grpc::ServerContext* context, const v1::DeleteFlowsRequest* request,
                      v1::DeleteFlowsResponse* response) override;
  grpc::Status ListSessions(grpc::ServerContext* context, const v1::ListSessionsRequest* request,
                            v1::ListSessionsResponse* response) override;
  grpc::Status ListRuns(grpc::ServerContext* context, const v1::ListRunsRequest* request,
                        v1::ListRunsResponse* response) override;
  grpc::Status Export(grpc::ServerContext* context, const v1::ExportFlowsRequest* request,
                      grpc::ServerWriter<v1::ExportChunk>* writer) override;
  grpc::Status Import(grpc::ServerContext* context, grpc::ServerReader<v1::ImportChunk>* reader,
                      v1::ImportFlowsResponse* response) override;

 private:
  const TokenCheck& auth_;
  store::FlowStore& store_;
};

class ReplayService final : public v1::Replay::Service {
 public:
  ReplayService(const TokenCheck& auth, store::FlowStore& store, store::FlowWriter& writer)
      : auth_(auth), store_(store), writer_(writer) {}
  ~ReplayService() override { stop_all(); }

  grpc::Status StartClientReplay(grpc::ServerContext* context,
                                 const v1::StartClientReplayRequest* request,
                                 grpc::ServerWriter<v1::ClientReplayEvent>* writer) override;
  grpc::Status CancelClientReplay(grpc::ServerContext* context, const v1::ClientReplayRef* request,
                                  v1::ClientReplayStatus* response) override;
  grpc::Status GetClientReplay(grpc::ServerContext* context, const v1::ClientReplayRef* request,
                               v1::ClientReplayStatus* response) override;
  grpc::Status ListClientReplays(grpc::ServerContext* context,
                                 const v1::ListClientReplaysRequest* request,
                                 v1::ListClientReplaysResponse* response) override;
  grpc::Status StartServerReplay(grpc::ServerContext* context,
                                 const v1::StartServerReplayRequest* request,
                                 v1::ServerReplayStatus* response) override;
  grpc::Status StopServerReplay(grpc::ServerContext* context, const v1::ServerReplayRef* request,
                                v1::ServerReplayStatus* response) override;
  grpc::Status GetServerReplay(grpc::ServerContext* context, const v1::ServerReplayRef* request,
                               v1::ServerReplayStatus* response) override;
  grpc::Status ListServerReplays(grpc::ServerContext* context,
                                 const v1::ListServerReplaysRequest* request,
                                 v1::ListServerReplaysResponse* response) override;

  // Cancels every client replay, stops every server replay and refuses new ones (daemon
  // shutdown): the client replay streams end with `finished` (interrupted). Idempotent.
  void stop_all();

  // Whether a client replay is still writing `run` (its flows are not all stored yet).
  bool replaying(const std::string& run);

 private:
  struct RunningClient {
    std::string session;
    std::unique_ptr<replay::ClientReplay> replay;
    std::atomic<bool> cancelling{false};
  };
  struct RunningServer {
    std::string id;
    std::string session;
    std::string bound_address;
    std::string scheme;
    uint64_t loaded = 0;
    std::unique_ptr<replay::server::ServerReplay> server;
  };
  static void describe(const std::string& run_id, const RunningClient& r,
                       v1::ClientReplayStatus& out);
  static void describe(const RunningServer& r, bool running, bool with_lists,
                       v1::ServerReplayStatus& out);

  const TokenCheck& auth_;
  store::FlowStore& store_;
  store::FlowWriter& writer_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<RunningClient>> clients_;
  std::map<std::string, std::shared_ptr<RunningServer>> servers_;
  uint64_t next_server_id_ = 0;
  bool stopping_ = false;
};

inline constexpr size_t kMaxClientReplays = 16;
inline constexpr size_t kMaxServerReplays = 64;
inline constexpr int kMaxResultsPerEvent = 500;

class DiffService final : public v1::Diff::Service {
 public:
  // `replays` tells which runs are still being written: comparing one is FAILED_PRECONDITION.
  DiffService(const TokenCheck& auth, store::FlowStore& store, ReplayService& replays)
      : auth_(auth), store_(store), replays_(replays) {}

  grpc::Status Compare(grpc::ServerContext* context, const v1::CompareRequest* request,
                       grpc::ServerWriter<v1::DiffEvent>* writer) override;
  grpc::Status CancelDiff(grpc::ServerContext* context, const v1::DiffRef* request,
                          v1::CancelDiffResponse* response) override;

  // Cancels every running diff and refuses new ones (daemon shutdown). Idempotent.
  void stop_all();

 private:
  const TokenCheck& auth_;
  store::FlowStore& store_;
  ReplayService& replays_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> running_;  // by diff id
  uint64_t next_id_ = 0;
  bool stopping_ = false;
};

inline constexpr size_t kMaxDiffs = 16;

// proto <-> ops request translation, shared by the services and the client (client.cc).
ops::ReplayRequest from_proto(const v1::StartClientReplayRequest& request);
void to_proto(const ops::ReplayRequest& request, v1::StartClientReplayRequest& out);
ops::ServeRequest from_proto(const v1::StartServerReplayRequest& request);
void to_proto(const ops::ServeRequest& request, v1::StartServerReplayRequest& out);

}  // namespace retake::control
