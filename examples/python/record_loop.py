#!/usr/bin/env python3
"""Drive `retake daemon` from Python over its gRPC control API (proto/retake/v1).

The loop: start the daemon (or use one given with --daemon), start a reverse-mode recorder
in front of an upstream, send traffic with curl, receive the flows on WatchFlows as they are
recorded, stop the recorder, list flows with a filter and paging, read one with its bodies,
list sessions, delete a flow.

Stubs are generated at run time with grpc_tools.protoc (Debian: python3-grpc-tools) into a
temporary directory, so nothing generated is checked in. Needs python3-grpcio.

  record_loop.py --retake build/cli/retake --proto-dir proto --upstream tests/support/upstream.py

Every step has a deadline; the script exits non-zero on the first failed expectation (it is
also the ctest test `control_python`).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc

DEADLINE = 20  # seconds, per call


def generate_stubs(proto_dir, out_dir):
    files = ["retake/v1/flows.proto", "retake/v1/recorder.proto", "retake/v1/replay.proto"]
    code = protoc.main(["grpc_tools.protoc", "-I" + proto_dir, "--python_out=" + out_dir,
                        "--grpc_python_out=" + out_dir] + files)
    if code != 0:
        sys.exit("protoc failed with %d" % code)
    sys.path.insert(0, out_dir)


def expect(condition, what):
    if not condition:
        sys.exit("FAILED: " + what)
    print("ok:", what)


def start_process(argv, marker, timeout=20):
    """Starts argv, waits for a stdout line containing marker, returns (process, line)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    found = []

    def read():
        for line in proc.stdout:
            if marker in line:
                found.append(line.strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        sys.exit("no '%s' line from %s" % (marker, argv[0]))
    return proc, found[0]


def curl(*args):
    subprocess.run(["curl", "-sS", "--max-time", "10", "-o", os.devnull] + list(args),
                   check=True, timeout=15)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retake", required=True, help="the retake binary")
    parser.add_argument("--proto-dir", required=True, help="directory holding retake/v1/*.proto")
    parser.add_argument("--upstream", required=True, help="tests/support/upstream.py")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="retake-pyloop-") as tmp:
        generate_stubs(args.proto_dir, tmp)
        from retake.v1 import flows_pb2, flows_pb2_grpc, recorder_pb2, recorder_pb2_grpc

        upstream, line = start_process([sys.executable, args.upstream], "PORT ")
        upstream_port = int(line.split()[1])
        daemon, line = start_process(
            [args.retake, "daemon", "--control", "127.0.0.1:0", "--db", os.path.join(tmp, "db")],
            "control API listening on ")
        address = line.split("listening on ")[1].split()[0]
        try:
            run_loop(address, upstream_port, flows_pb2, flows_pb2_grpc, recorder_pb2,
                     recorder_pb2_grpc)
        finally:
            daemon.terminate()
            code = daemon.wait(timeout=20)
            upstream.kill()
            upstream.wait(timeout=10)
        expect(code == 0, "the daemon stops cleanly on SIGTERM")


def run_loop(address, upstream_port, flows_pb2, flows_pb2_grpc, recorder_pb2, recorder_pb2_grpc):
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=DEADLINE)
        health = channel.unary_unary("/grpc.health.v1.Health/Check",
                                     request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        expect(health(b"", timeout=DEADLINE) == b"\x08\x01", "health check says SERVING")
        # Server reflection, raw: a ServerReflectionRequest with list_services (field 7) = "".
        reflection = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        listing = b"".join(reflection(iter([b"\x3a\x00"]), timeout=DEADLINE))
        expect(b"retake.v1.Flows" in listing and b"retake.v1.Recorder" in listing,
               "server reflection lists the Flows and Recorder services")

        recorders = recorder_pb2_grpc.RecorderStub(channel)
        flows = flows_pb2_grpc.FlowsStub(channel)

        try:
            recorders.Start(recorder_pb2.StartRecorderRequest(mode="sideways"), timeout=DEADLINE)
            expect(False, "a bad mode is refused")
        except grpc.RpcError as e:
            expect(e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details().startswith("mode:"),
                   "a bad mode is INVALID_ARGUMENT naming the field")

        started = recorders.Start(recorder_pb2.StartRecorderRequest(
            mode="reverse:http://127.0.0.1:%d" % upstream_port, listen="127.0.0.1:0",
            session="py-loop"), timeout=DEADLINE)
        expect(started.bound_address.startswith("127.0.0.1:"), "recorder started")

        stream = recorders.WatchFlows(recorder_pb2.WatchFlowsRequest(session="py-loop"),
                                      timeout=60)
        stream.initial_metadata()  # the subscription is in place once this arrives

        proxy = "http://" + started.bound_address
        for _ in range(3):
            curl(proxy + "/json")
        curl("-X", "POST", "--data-binary", "from-python", proxy + "/echo")

        seen = []
        for event in stream:
            seen.append(event.flow)
            if len(seen) == 4:
                break
        stream.cancel()
        expect(sorted(f.method for f in seen) == ["GET", "GET", "GET", "POST"],
               "WatchFlows streamed the four flows as they were recorded")

        final = recorders.Stop(recorder_pb2.RecorderRef(recorder_id=started.recorder_id),
                               timeout=DEADLINE)
        expect(not final.running and final.stats.flows == 4, "recorder stopped after 4 flows")

        ids, token = [], 0
        while True:
            page = flows.List(flows_pb2.ListFlowsRequest(filter="~m GET & ~c 200", page_size=2,
                                                         page_token=token), timeout=DEADLINE)
            ids += [f.id for f in page.flows]
            token = page.next_page_token
            if token == 0:
                break
        expect(len(ids) == 3 and ids == sorted(ids), "paged through the 3 GETs, 2 per page")

        post = flows.List(flows_pb2.ListFlowsRequest(filter="~m POST"), timeout=DEADLINE).flows
        expect(len(post) == 1, "one POST")
        flow = flows.Get(flows_pb2.GetFlowRequest(id=post[0].id, with_bodies=True),
                         timeout=DEADLINE)
        expect(flow.request.body.data == b"from-python", "the request body came back")
        expect(b"from-python" in flow.response.body.data, "the echoed response body came back")

        sessions = flows.ListSessions(flows_pb2.ListSessionsRequest(), timeout=DEADLINE).sessions
        expect([(s.name, s.flow_count) for s in sessions] == [("py-loop", 4)], "one session of 4")

        deleted = flows.Delete(flows_pb2.DeleteFlowsRequest(ids=[flow.id]), timeout=DEADLINE)
        expect(deleted.deleted == 1, "deleted one flow")
        try:
            flows.Get(flows_pb2.GetFlowRequest(id=flow.id), timeout=DEADLINE)
            expect(False, "a deleted flow is gone")
        except grpc.RpcError as e:
            expect(e.code() == grpc.StatusCode.NOT_FOUND, "a deleted flow is NOT_FOUND")


if __name__ == "__main__":
    main()
