#!/usr/bin/env python3
"""A tiny HTTP/1.1 upstream for the recorder's end-to-end tests (loopback, ephemeral port).

Prints its port on the first stdout line, serves until stdin closes (the test process went
away) or 120 s pass. Raw sockets, so framing is exactly what each route says:
  GET  /size/N          N bytes (byte i is i % 251), Content-Length; HEAD: headers only
  GET  /size-close/N    the same, then closes the connection without saying so
  GET  /slow            answers "slow" after 0.4 s
  GET  /chunked         chunked body "abc" "defg" with trailer X-Trailer: done
  GET  /204, /304       no body
  GET  /interim         103 Early Hints, then 200 "ok"
  GET  /close           HTTP/1.0-style body delimited by closing the connection
  GET  /headers         echoes the request head it received as the body
  GET  /never           reads the request, never answers
  POST /sum[?...]       reads the body (CL or chunked), answers "size=N sum=S" (S = byte sum)
  GET  /bad             a malformed status line
  GET  /refuse-headers  403 with the request head it received as the body (a refused upgrade)
  GET  /bad-accept      101 to websocket with a Sec-WebSocket-Accept that fits no key, then closes
Every response carries X-Conn: <connection number> so tests can see connection reuse.
With "--tls CERT KEY" it serves HTTPS (TLS on every connection) with that PEM chain and key.
"""
import os
import socket
import ssl
import sys
import threading
import time

conn_counter = 0
lock = threading.Lock()


def pattern(n):
    block = bytes(i % 251 for i in range(251 * 64))
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])


def read_head(f):
    lines = []
    while True:
        line = f.readline(65536)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.rstrip(b"\r\n"))


def read_body(f, headers):
    te = headers.get("transfer-encoding", "")
    if "chunked" in te.lower():
        body = bytearray()
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            body += f.read(size)
            f.readline()
    n = int(headers.get("content-length", "0"))
    return f.read(n) if n else b""


def handle(sock, number):
    f = sock.makefile("rb")
    try:
        while True:
            lines = read_head(f)
            if not lines:
                return
            method, target, version = lines[0].decode().split(" ", 2)
            headers = {}
            for l in lines[1:]:
                k, v = l.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            if headers.get("expect", "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = read_body(f, headers)
            xc = ("X-Conn: %d\r\n" % number).encode()
            if target.startswith("/size/"):
                n = int(target[6:])
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + xc + b"Content-Length: %d\r\n\r\n" % n)
                if method != "HEAD":
                    data = pattern(n)
                    for i in range(0, n, 65536):
                        sock.sendall(data[i:i + 65536])
            elif target.startswith("/size-close/"):
                # Looks keep-alive (no Connection: close) but hangs up right after: what an
                # upstream does when its keep-alive timeout strikes between two requests.
                n = int(target[12:])
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + xc + b"Content-Length: %d\r\n\r\n" % n
                             + pattern(n))
                return
            elif target == "/slow":
                time.sleep(0.4)
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + xc + b"Content-Length: 4\r\n\r\nslow")
            elif target == "/chunked":
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + xc + b"Transfer-Encoding: chunked\r\n"
                             b"Trailer: X-Trailer\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n"
                             b"0\r\nX-Trailer: done\r\n\r\n")
            elif target == "/204":
                sock.sendall(b"HTTP/1.1 204 No Content\r\n" + xc + b"\r\n")
            elif target == "/304":
                sock.sendall(b"HTTP/1.1 304 Not Modified\r\n" + xc + b"ETag: \"v1\"\r\n\r\n")
            elif target == "/interim":
                sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + xc + b"Content-Length: 2\r\n\r\nok")
            elif target == "/close":
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + xc + b"Connection: close\r\n\r\n"
                             b"until the end")
                return
            elif target == "/headers":
                echo = b"\n".join(lines) + b"\n"
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + xc + b"Content-Length: %d\r\n\r\n"
                             % len(echo) + echo)
            elif target == "/never":
                deadline = time.time() + 30
                while time.time() < deadline and sock.recv(1024):
                    pass
                return
            elif target.split("?", 1)[0] == "/sum":  # a query only names the request
                text = b"size=%d sum=%d" % (len(body), sum(body))
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + xc + b"Content-Length: %d\r\n\r\n"
                             % len(text) + text)
            elif target == "/bad":
                sock.sendall(b"HTTP/1.1 2x0 Nope\r\n\r\n")
                return
            elif target == "/refuse-headers":
                echo = b"\n".join(lines) + b"\n"
                sock.sendall(b"HTTP/1.1 403 Forbidden\r\n" + xc + b"Content-Length: %d\r\n\r\n"
                             % len(echo) + echo)
            elif target == "/bad-accept":
                sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n")
                return
            else:
                sock.sendall(b"HTTP/1.1 404 Not Found\r\n" + xc + b"Content-Length: 0\r\n\r\n")
    except (OSError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def serve_tls(context, sock, number):
    try:
        sock.settimeout(10)
        tls = context.wrap_socket(sock, server_side=True)
        tls.settimeout(None)
    except (OSError, ValueError):
        sock.close()
        return
    handle(tls, number)


def main():
    global conn_counter
    context = None
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        context.set_alpn_protocols(["http/1.1"])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    print(srv.getsockname()[1], flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Timer(120, lambda: os._exit(0)).start()
    while True:
        sock, _ = srv.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with lock:
            conn_counter += 1
            number = conn_counter
        if context:
            threading.Thread(target=serve_tls, args=(context, sock, number), daemon=True).start()
        else:
            threading.Thread(target=handle, args=(sock, number), daemon=True).start()


if __name__ == "__main__":
    main()
