#!/usr/bin/python3
"""WebSocket peers for the recorder's tests (Debian's python3-websockets 10.4; loopback only).

  ws_peer.py server [--tls CERT KEY]
      Prints its port on the first stdout line; echoes every message back; serves until stdin
      closes or 60 s pass. Selects the subprotocol "chat" when offered; plain HTTP requests
      (and handshakes) for /forbidden get 403 "forbidden", for /plain 200 "plain".
  ws_peer.py client URL [--proxy HOST:PORT] [--cafile FILE]
      Connects (through an explicit proxy with CONNECT when --proxy is given), sends a text
      message "hello", a binary message 00 01 02, a text message fragmented as "frag1"+"frag2",
      checks each echo, then closes with code 4001 reason "done". Prints "ok" or the failure.
"""
import asyncio
import os
import socket
import ssl
import sys
import threading
from urllib.parse import urlsplit

import websockets
from http import HTTPStatus


async def echo(ws, path=None):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


def answer_plain(path, request_headers):
    if path == "/forbidden":
        return HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain")], b"forbidden"
    if path == "/plain":
        return HTTPStatus.OK, [("Content-Type", "text/plain")], b"plain"
    return None


async def serve(context):
    async with websockets.serve(echo, "127.0.0.1", 0, ssl=context, subprotocols=["chat"],
                                process_request=answer_plain) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.sleep(60)


def connect_through(proxy, host, port):
    phost, pport = proxy.rsplit(":", 1)
    sock = socket.create_connection((phost, int(pport)), timeout=10)
    sock.sendall(b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                 % (host.encode(), port, host.encode(), port))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise RuntimeError("proxy closed during CONNECT")
        head += chunk
    if b" 200 " not in head.split(b"\r\n")[0]:
        raise RuntimeError("CONNECT refused: %r" % head)
    sock.settimeout(None)
    return sock


async def client(url, proxy, cafile):
    parts = urlsplit(url)
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    kwargs = {"open_timeout": 10, "close_timeout": 5}
    if tls:
        kwargs["ssl"] = ssl.create_default_context(cafile=cafile)
    if proxy:
        kwargs["sock"] = connect_through(proxy, parts.hostname, port)
        if tls:
            kwargs["server_hostname"] = parts.hostname
    async with websockets.connect(url, **kwargs) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01\x02")
        assert await ws.recv() == b"\x00\x01\x02"
        await ws.send(["frag1", "frag2"])
        assert await ws.recv() == "frag1frag2"
        await ws.close(code=4001, reason="done")
    print("ok", flush=True)


def main():
    threading.Timer(60, lambda: os._exit(3)).start()
    if sys.argv[1] == "server":
        context = None
        if len(sys.argv) == 5 and sys.argv[2] == "--tls":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[3], sys.argv[4])

        def watch_stdin():
            sys.stdin.read()
            os._exit(0)

        threading.Thread(target=watch_stdin, daemon=True).start()
        asyncio.run(serve(context))
    else:
        url = sys.argv[2]
        args = sys.argv[3:]
        proxy = args[args.index("--proxy") + 1] if "--proxy" in args else None
        cafile = args[args.index("--cafile") + 1] if "--cafile" in args else None
        try:
            asyncio.run(client(url, proxy, cafile))
        except Exception as e:  # the test prints what went wrong
            print("failed: %r" % (e,), flush=True)
        os._exit(0)


if __name__ == "__main__":
    main()
