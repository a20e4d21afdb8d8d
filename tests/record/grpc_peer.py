#!/usr/bin/python3
"""A gRPC server and client (Debian's python3-grpcio) for the recorder's HTTP/2 tests.

Usage: grpc_peer.py server          prints its port (127.0.0.1, plaintext h2c), serves until
                                    stdin closes or 120 s pass
       grpc_peer.py client PORT     calls the server (through the proxy) and prints one line per
                                    call: "Say <status> <reply> <trailing metadata x-trail>",
                                    "Fail <status> <details>", "Stream <status> <replies joined>"

Methods (no .proto: raw bytes in and out):
  /test.Echo/Say     unary: replies b"echo:" + request, trailing metadata x-trail: yes
  /test.Echo/Fail    unary: aborts with NOT_FOUND "no such thing"
  /test.Echo/Stream  server streaming: three replies "r0" "r1" "r2"
"""
import sys
import threading
import time
from concurrent import futures

import grpc


def identity(b):
    return b


def say(request, context):
    context.set_trailing_metadata((("x-trail", "yes"),))
    return b"echo:" + request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def stream(request, context):
    for i in range(3):
        yield ("r%d" % i).encode()


def serve():
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say, identity, identity),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, identity, identity),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, identity, identity),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    done = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait(120)
    server.stop(0)


def client(port):
    # No proxy from the environment: the target is the recorder itself.
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel("127.0.0.1:%s" % port, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        say_rpc = channel.unary_unary("/test.Echo/Say", identity, identity)
        reply, call = say_rpc.with_call(b"hi", timeout=10)
        trail = dict(call.trailing_metadata()).get("x-trail", "-")
        print("Say %s %s %s" % (call.code().name, reply.decode(), trail), flush=True)
        fail_rpc = channel.unary_unary("/test.Echo/Fail", identity, identity)
        try:
            fail_rpc(b"x", timeout=10)
            print("Fail OK unexpected", flush=True)
        except grpc.RpcError as e:
            print("Fail %s %s" % (e.code().name, e.details()), flush=True)
        stream_rpc = channel.unary_stream("/test.Echo/Stream", identity, identity)
        replies = stream_rpc(b"", timeout=10)
        got = [r.decode() for r in replies]
        print("Stream %s %s" % (replies.code().name, ",".join(got)), flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "server":
        serve()
    elif len(sys.argv) == 3 and sys.argv[1] == "client":
        client(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
