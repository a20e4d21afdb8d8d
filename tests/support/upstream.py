#!/usr/bin/env python3
"""A small HTTP/1.1 test upstream on an ephemeral loopback port.

Prints "PORT <n>" on stdout once listening, serves until killed or stdin closes.
Endpoints:
  /json              a JSON document
  /echo              echoes method, path, headers and body as JSON
  /status/<code>     an empty response with that status
  /big?size=N        N bytes of a repeating pattern (Content-Length)
  /chunked?n=K       K chunks, then trailers (X-Checksum)
  /interim           a 100 and a 103 interim response, then 200 "final"
  /slow?ms=M         answers after M milliseconds
  anything else      "hello from upstream <path>"
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code, body=b"", ctype="text/plain", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        if code not in (204, 304) and self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(body)

    def handle_any(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = self._body()
        if url.path == "/json":
            self._send(200, json.dumps({"id": 7, "name": "widget", "tags": ["a", "b"]}).encode(),
                       "application/json")
        elif url.path == "/echo":
            doc = {"method": self.command, "path": self.path,
                   "headers": [[k, v] for k, v in self.headers.items()],
                   "body": body.decode("latin-1")}
            self._send(200, json.dumps(doc).encode(), "application/json")
        elif url.path.startswith("/status/"):
            self._send(int(url.path.split("/")[2]))
        elif url.path == "/big":
            size = int(query.get("size", ["1048576"])[0])
            pattern = bytes(range(256))
            data = (pattern * (size // 256 + 1))[:size]
            self._send(200, data, "application/octet-stream")
        elif url.path == "/chunked":
            n = int(query.get("n", ["3"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            for i in range(n):
                chunk = f"chunk {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\nX-Checksum: done\r\n\r\n")
        elif url.path == "/interim":
            # Interim responses first (RFC 9110 15.2), then the final one.
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n"
                             b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
            self._send(200, b"final")
        elif url.path == "/slow":
            import time
            time.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
            self._send(200, b"slow")
        else:
            self._send(200, f"hello from upstream {url.path}".encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Stop when the parent goes away (stdin closes), so a crashed test leaves nothing behind.
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
