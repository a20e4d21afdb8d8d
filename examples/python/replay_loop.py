#!/usr/bin/env python3
"""Record, replay and diff through `retake daemon`, from Python, over its gRPC control API.

The loop (issue #7's integration test): start the daemon as a separate process; start a
reverse-mode recorder in front of an instance A of the test application
(tests/support/app/app.py); send a browser-like sequence (login, form, create, read, update)
with urllib; receive the flows on WatchFlows as they are recorded; stop the recorder; start a
client replay against a fresh instance B and read its progress stream to the end; ask the Diff
service to compare the run with its origins and check the report. Then: a run cancelled by id
and one cancelled by dropping the call; bad input gets the right status codes; a server replay
answers from the recording; and through all of that the daemon keeps serving other clients.

Stubs are generated at run time with grpc_tools.protoc (Debian: python3-grpc-tools) into a
temporary directory; needs python3-grpcio. Every call has a deadline; the script exits non-zero
on the first failed expectation (it is the ctest test `control_python_replay`).

  replay_loop.py --retake build/cli/retake --proto-dir proto --app tests/support/app/app.py
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone

import grpc
from grpc_tools import protoc

DEADLINE = 20  # seconds, per unary call


def generate_stubs(proto_dir, out_dir):
    files = [os.path.join("retake/v1", f) for f in sorted(os.listdir(
        os.path.join(proto_dir, "retake", "v1"))) if f.endswith(".proto")]
    code = protoc.main(["grpc_tools.protoc", "-I" + proto_dir, "--python_out=" + out_dir,
                        "--grpc_python_out=" + out_dir] + files)
    if code != 0:
        sys.exit("protoc failed with %d" % code)
    sys.path.insert(0, out_dir)
    return [os.path.basename(f)[:-len(".proto")] for f in files]


def expect(condition, what):
    if not condition:
        sys.exit("FAILED: " + what)
    print("ok:", what)


def expect_code(call, code, prefix, what):
    """Runs call(); it must fail with `code` and a message starting with `prefix`."""
    try:
        call()
    except grpc.RpcError as e:
        expect(e.code() == code and e.details().startswith(prefix),
               "%s (%s %r)" % (what, e.code().name, e.details()[:120]))
        return
    expect(False, what + " (the call succeeded)")


def start_process(argv, marker, timeout=20):
    """Starts argv, waits for a stdout line containing marker, returns (process, line)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    found = []

    def read():
        for line in proc.stdout:
            if marker in line:
                found.append(line.strip())
                break
        for _ in proc.stdout:  # keep draining so the child never blocks on a full pipe
            pass

    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + timeout
    while not found and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if not found:
        proc.kill()
        sys.exit("no '%s' line from %s" % (marker, argv[:2]))
    return proc, found[0]


def call(base, method, path, headers=None, body=None):
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def shop_sequence(base):
    """What a browser would do: log in, read the form, create an item, read it, update it."""
    s, b = call(base, "POST", "/login", {"Content-Type": "application/json"}, '{"user":"ann"}')
    expect(s == 200, "login through the recorder")
    token = json.loads(b)["token"]
    s, b = call(base, "GET", "/form", {"Cookie": "sid=" + token})
    csrf = re.search(r'name="csrf" value="([^"]+)"', b).group(1)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    s, b = call(base, "POST", "/items", {"Cookie": "sid=" + token, "X-CSRF-Token": csrf,
                                         "Content-Type": "application/json"},
                json.dumps({"name": "widget", "ts": now}))
    expect(s == 201, "item created through the recorder")
    item = json.loads(b)["id"]
    s, b = call(base, "GET", "/items/" + item, {"Authorization": "Bearer " + token})
    expect(s == 200, "item read through the recorder")
    s, b = call(base, "PUT", "/items/" + item,
                {"Cookie": "sid=" + token, "X-Request-Time": str(int(time.time())),
                 "Content-Type": "application/x-www-form-urlencoded"},
                "csrf=%s&name=gadget" % csrf)
    expect(s == 200, "item updated through the recorder")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retake", required=True, help="the retake binary")
    parser.add_argument("--proto-dir", required=True, help="directory holding retake/v1/*.proto")
    parser.add_argument("--app", required=True, help="tests/support/app/app.py")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="retake-pyreplay-") as tmp:
        protos = generate_stubs(args.proto_dir, tmp)
        import importlib
        pb = {name: importlib.import_module("retake.v1.%s_pb2" % name) for name in protos}
        rpc = {name: importlib.import_module("retake.v1.%s_pb2_grpc" % name) for name in protos}

        app_a, line = start_process([sys.executable, args.app], "PORT ")
        port_a = int(line.split()[1])
        app_b, line = start_process([sys.executable, args.app], "PORT ")
        port_b = int(line.split()[1])
        daemon, line = start_process(
            [args.retake, "daemon", "--control", "127.0.0.1:0", "--db", os.path.join(tmp, "db")],
            "control API listening on ")
        address = line.split("listening on ")[1].split()[0]
        try:
            with grpc.insecure_channel(address) as channel:
                grpc.channel_ready_future(channel).result(timeout=DEADLINE)
                loop = Loop(channel, pb, rpc, port_a, port_b)
                loop.record()
                run_id = loop.replay()
                loop.diff(run_id)
                loop.cancellation()
                loop.bad_input()
                loop.server_replay()
        finally:
            daemon.terminate()
            code = daemon.wait(timeout=20)
            for app in (app_a, app_b):
                app.stdin.close()
                app.kill()
                app.wait(timeout=10)
        expect(code == 0, "the daemon stops cleanly on SIGTERM")


class Loop:
    def __init__(self, channel, pb, rpc, port_a, port_b):
        self.pb, self.port_a, self.port_b = pb, port_a, port_b
        self.recorders = rpc["recorder"].RecorderStub(channel)
        self.flows = rpc["flows"].FlowsStub(channel)
        self.replays = rpc["replay"].ReplayStub(channel)
        self.differ = rpc["diff"].DiffStub(channel) if "diff" in rpc else None
        self.health = channel.unary_unary("/grpc.health.v1.Health/Check",
                                          request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)

    def serving(self):
        """The daemon still answers: health SERVING and a store read."""
        healthy = self.health(b"", timeout=DEADLINE) == b"\x08\x01"
        sessions = self.flows.ListSessions(self.pb["flows"].ListSessionsRequest(),
                                           timeout=DEADLINE).sessions
        return healthy and any(s.name == "py-shop" for s in sessions)

    def record(self):
        rec = self.pb["recorder"]
        started = self.recorders.Start(rec.StartRecorderRequest(
            mode="reverse:http://127.0.0.1:%d" % self.port_a, session="py-shop"),
            timeout=DEADLINE)
        stream = self.recorders.WatchFlows(rec.WatchFlowsRequest(session="py-shop"), timeout=60)
        stream.initial_metadata()  # subscribed once this arrives
        shop_sequence("http://" + started.bound_address)
        seen = []
        for event in stream:
            seen.append(event.flow)
            if len(seen) == 5:
                break
        stream.cancel()
        expect([f.method for f in seen] == ["POST", "GET", "POST", "GET", "PUT"],
               "WatchFlows streamed the five flows in order as they were recorded")
        final = self.recorders.Stop(rec.RecorderRef(recorder_id=started.recorder_id),
                                    timeout=DEADLINE)
        expect(final.stats.flows == 5, "recorder stopped after 5 flows")

    def replay(self):
        req = self.pb["replay"].StartClientReplayRequest(
            session="py-shop", target="http://127.0.0.1:%d" % self.port_b, pace="asap",
            fail_on_mismatch=True)
        started, progress, results, finished = None, [], [], None
        for event in self.replays.StartClientReplay(req, timeout=60):
            kind = event.WhichOneof("event")
            if kind == "started":
                started = event.started
            elif kind == "progress":
                progress.append(event.progress)
            elif kind == "results":
                results.extend(event.results.results)
            elif kind == "finished":
                finished = event.finished
        expect(started is not None and started.run_id.startswith("run-") and started.total == 5,
               "the stream opened with the run id and its size")
        expect(progress and progress[-1].completed == 5, "progress reached 5 of 5")
        expect(finished is not None and finished.run_id == started.run_id,
               "the stream ended with the run's result")
        expect(finished.completed == 5 and finished.mismatches == 0 and
               finished.transport_errors == 0 and finished.exit_code == 0,
               "all five replayed against instance B with the recorded statuses")
        expect(finished.bindings_applied >= 8 and finished.bindings_unresolved == 0,
               "session token, CSRF token and item id were rebound for instance B")
        expect(len(results) == 5 and all(r.status_match for r in results),
               "five per-flow results, all matching")
        summary = json.loads(finished.report_json)
        expect(summary["run"] == started.run_id and summary["completed"] == 5,
               "the JSON report is `retake replay --json`'s")
        listed = self.flows.List(self.pb["flows"].ListFlowsRequest(run=started.run_id),
                                 timeout=DEADLINE).flows
        expect(len(listed) == 5, "the five replayed flows are in the store, in the run")
        return started.run_id

    def diff(self, run_id):
        if self.differ is None:
            print("skip: this daemon has no Diff service (proto/retake/v1/diff.proto)")
            return
        d = self.pb["diff"]
        differences, report = [], None
        for event in self.differ.Compare(d.CompareRequest(run=run_id, format="json"),
                                         timeout=60):
            kind = event.WhichOneof("event")
            if kind == "difference":
                differences.append(event.difference)
            elif kind == "report":
                report = event.report
        expect(report is not None, "the diff stream ended with the report")
        expect(report.compared == 5, "the diff compared the five replayed flows with their origins")
        # Instance B mints its own token, CSRF token and item id: the bodies differ there, and
        # the report says where.
        expect(report.different + report.identical + report.noise_suppressed == 5,
               "every comparison is counted once")
        expect(len(differences) == report.different, "one streamed difference per differing pair")
        paths = {x.path for pair in differences for x in pair.differences}
        expect(any("token" in p or "id" in p for p in paths),
               "the differences name the rebound fields (%s)" % sorted(paths)[:5])
        doc = json.loads(report.content)
        expect(isinstance(doc, dict), "the JSON report parses")
        expect_code(lambda: list(self.differ.Compare(d.CompareRequest(run="no-such-run"),
                                                     timeout=DEADLINE)),
                    grpc.StatusCode.NOT_FOUND, "", "an unknown run is NOT_FOUND")

    def cancellation(self):
        r = self.pb["replay"]
        slow = dict(session="py-shop", target="http://127.0.0.1:%d" % self.port_b, pace="asap",
                    rate=0.5, loop=4, progress_interval_ms=50)
        stream = self.replays.StartClientReplay(r.StartClientReplayRequest(**slow), timeout=60)
        first = next(stream)
        expect(first.WhichOneof("event") == "started", "a slow run started")
        running = self.replays.ListClientReplays(r.ListClientReplaysRequest(), timeout=DEADLINE)
        expect([x.run_id for x in running.replays] == [first.started.run_id],
               "ListClientReplays shows it")
        self.replays.CancelClientReplay(r.ClientReplayRef(run_id=first.started.run_id),
                                        timeout=DEADLINE)
        finished = [e.finished for e in stream if e.WhichOneof("event") == "finished"]
        expect(len(finished) == 1 and finished[0].interrupted and finished[0].sent < 20,
               "CancelClientReplay stopped it early; the stream still ended with its result")

        stream = self.replays.StartClientReplay(r.StartClientReplayRequest(**slow), timeout=60)
        first = next(stream)
        stream.cancel()  # the caller goes away
        deadline = time.time() + 10
        while time.time() < deadline:
            running = self.replays.ListClientReplays(r.ListClientReplaysRequest(),
                                                     timeout=DEADLINE).replays
            if not running:
                break
            time.sleep(0.05)
        expect(not running, "dropping the call stopped the run (well before its 40 s)")

    def bad_input(self):
        r = self.pb["replay"]
        for fields, prefix in [(dict(speed=-1), "speed:"), (dict(pace="sideways"), "pace:"),
                               (dict(filter="~c"), "filter:"), (dict(loop=10 ** 9), "loop:"),
                               (dict(map_host=["x"]), "map_host:")]:
            req = r.StartClientReplayRequest(session="py-shop", **fields)
            expect_code(lambda: list(self.replays.StartClientReplay(req, timeout=DEADLINE)),
                        grpc.StatusCode.INVALID_ARGUMENT, prefix,
                        "%s is INVALID_ARGUMENT naming the field" % list(fields)[0])
        expect_code(lambda: list(self.replays.StartClientReplay(
            r.StartClientReplayRequest(session="nobody"), timeout=DEADLINE)),
            grpc.StatusCode.NOT_FOUND, "", "an unknown session is NOT_FOUND")
        expect_code(lambda: self.replays.StartServerReplay(r.StartServerReplayRequest(
            session="py-shop", listen="127.0.0.1:%d" % self.port_a), timeout=DEADLINE),
            grpc.StatusCode.ALREADY_EXISTS, "listen:", "a port in use is ALREADY_EXISTS")
        expect_code(lambda: self.replays.StopServerReplay(r.ServerReplayRef(server_id="s404"),
                                                          timeout=DEADLINE),
                    grpc.StatusCode.NOT_FOUND, "server_id:", "an unknown server is NOT_FOUND")
        expect_code(lambda: self.recorders.Start(self.pb["recorder"].StartRecorderRequest(
            mode="sideways"), timeout=DEADLINE),
            grpc.StatusCode.INVALID_ARGUMENT, "mode:", "a bad recorder mode is INVALID_ARGUMENT")
        expect(self.serving(), "after all that the daemon keeps serving other clients")

    def server_replay(self):
        r = self.pb["replay"]
        # The session now also holds the replayed flows (they keep their origin's session):
        # serve only the recording.
        started = self.replays.StartServerReplay(r.StartServerReplayRequest(
            session="py-shop", filter="!~replay"), timeout=DEADLINE)
        expect(started.flows_loaded == 5, "the mock loaded the five recorded flows")
        base = "http://" + started.bound_address
        s, b = call(base, "POST", "/login", {"Content-Type": "application/json"},
                    '{"user":"ann"}')
        expect(s == 200 and "token" in json.loads(b), "the mock answers login as recorded")
        s, _ = call(base, "GET", "/never-recorded")
        expect(s == 404, "a miss is 404")
        report = self.replays.StopServerReplay(r.ServerReplayRef(server_id=started.server_id),
                                               timeout=DEADLINE)
        expect(report.hits == 1 and report.misses == 1 and len(report.served_flows) == 1 and
               len(report.unserved_flows) == 4, "the report counts the hit, the miss and the rest")
        expect(b"/never-recorded" in report.missed[0].request_line,
               "the miss is explained by its request line")


if __name__ == "__main__":
    main()
