#!/usr/bin/env python3
"""A small stateful web application for replay tests (python3 stdlib only).

Every instance has its own secret: session tokens, CSRF tokens and item ids from one instance
mean nothing to another, so a replay against a fresh instance works only when the replayer
rebinds them. Requests carrying a timestamp (`ts` in a JSON or form body, the `X-Request-Time`
header) more than 5 minutes from the instance's clock are rejected with 400.

Options:
  --skew SECONDS     the instance's clock is time.time() + SECONDS (a negative skew makes an
                     instance that lives in the past: recordings made against it look old)
  --tls CERT KEY     serve HTTPS with this certificate and key
  --regress          inject the regressions a diff must find (see /products and /health)
Prints "PORT n" on stdout once listening; stops when stdin closes.

Endpoints:
  POST /login              {"user": U} -> 200 {"token": T, "user": U}, Set-Cookie: sid=T
  GET  /form               (session) -> HTML form with <input type="hidden" name="csrf" ...>
  POST /items              (session + CSRF header X-CSRF-Token or form field csrf;
                           JSON {"name": N, "ts": ISO-8601}) -> 201 {"id": ID}, Location
  GET  /items/<id>         (session) -> 200 item JSON, 404 unknown
  PUT  /items/<id>         (session + CSRF; X-Request-Time: epoch seconds or HTTP-date;
                           form or JSON body) -> 200 item JSON
  GET  /echo               echoes method, path, headers and body as JSON (no session needed)
  GET  /slow?ms=M          answers after M ms
  GET  /products/<n>       (no session) {"id": n, "name", "price", "currency", "stock", "trace",
                           "served_at"} with header X-Trace-Id; trace, served_at (microseconds)
                           and X-Trace-Id are random on every call (noise). --regress: price
                           changes (+1) and currency is removed.
  GET  /health             (no session) 200 {"ok": true, "time": now}; --regress: 503
Session: cookie `sid` or `Authorization: Bearer <token>`. Missing/invalid session -> 401,
bad CSRF -> 403.
"""
import argparse
import hashlib
import hmac
import json
import os
import ssl
import sys
import threading
import time
from datetime import datetime, timezone
from email.utils import formatdate, parsedate_to_datetime
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SECRET = os.urandom(16)
SKEW = 0.0
REGRESS = False
LOCK = threading.Lock()
SESSIONS = {}  # token -> {"user", "csrf"}
ITEMS = {}     # id -> dict
MAX_AGE = 300


def now():
    return time.time() + SKEW


def sign(value):
    return hmac.new(SECRET, value.encode(), hashlib.sha256).hexdigest()[:16]


def new_token():
    raw = os.urandom(12).hex()
    return raw + "." + sign(raw)


def parse_time(value):
    """Seconds since the epoch from ISO 8601, HTTP-date, epoch seconds or ms; None if unknown."""
    if isinstance(value, (int, float)):
        v = float(value)
        return v / 1000 if v > 1e11 else v
    if not isinstance(value, str):
        return None
    s = value.strip()
    try:
        v = float(s)
        return v / 1000 if v > 1e11 else v
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(s).timestamp()
    except (TypeError, ValueError):
        return None


def fresh(value):
    t = parse_time(value)
    return t is not None and abs(t - now()) <= MAX_AGE


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, doc=None, ctype="application/json", extra=()):
        body = b""
        if doc is not None:
            body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            try:
                return raw, json.loads(raw or b"{}")
            except ValueError:
                return raw, None
        if "x-www-form-urlencoded" in ctype:
            return raw, {k: v[0] for k, v in parse_qs(raw.decode("latin-1")).items()}
        return raw, {}

    def _session(self):
        token = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[7:].strip()
        elif self.headers.get("Cookie"):
            c = SimpleCookie()
            try:
                c.load(self.headers["Cookie"])
            except Exception:
                return None
            if "sid" in c:
                token = c["sid"].value
        if not token or "." not in token:
            return None
        raw, sig = token.rsplit(".", 1)
        if not hmac.compare_digest(sign(raw), sig):
            return None
        with LOCK:
            return SESSIONS.get(token)

    def _csrf_ok(self, session, fields):
        given = self.headers.get("X-CSRF-Token") or (fields or {}).get("csrf")
        return given is not None and hmac.compare_digest(str(given), session["csrf"])

    def handle_any(self):
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        raw, fields = self._read()
        if url.path == "/echo":
            return self._send(200, {"method": self.command, "path": self.path,
                                    "headers": [[k, v] for k, v in self.headers.items()],
                                    "body": raw.decode("latin-1")})
        if len(parts) == 2 and parts[0] == "products" and parts[1].isdigit():
            n = int(parts[1])
            doc = {"id": n, "name": f"product {n}", "price": 10 * n + (1 if REGRESS else 0),
                   "currency": "EUR", "stock": n % 7, "trace": os.urandom(8).hex(),
                   "served_at": datetime.fromtimestamp(now(), timezone.utc).isoformat()}
            if REGRESS:
                del doc["currency"]
            return self._send(200, doc, extra=[("X-Trace-Id", os.urandom(6).hex())])
        if url.path == "/health":
            return self._send(503 if REGRESS else 200, {"ok": not REGRESS, "time": now()})
        if url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["100"])[0]) / 1000)
            return self._send(200, {"slow": True})
        if url.path == "/login" and self.command == "POST":
            user = (fields or {}).get("user") or "anon"
            token = new_token()
            with LOCK:
                SESSIONS[token] = {"user": user, "csrf": os.urandom(16).hex()}
            return self._send(200, {"token": token, "user": user},
                              extra=[("Set-Cookie", f"sid={token}; Path=/; HttpOnly")])
        session = self._session()
        if session is None:
            return self._send(401, {"error": "no valid session"})
        if url.path == "/form" and self.command == "GET":
            html = ("<html><body><form method=\"post\" action=\"/items\">"
                    f"<input type=\"hidden\" name=\"csrf\" value=\"{session['csrf']}\">"
                    "<input name=\"name\"></form></body></html>")
            return self._send(200, html.encode(), "text/html")
        if parts == ["items"] and self.command == "POST":
            if fields is None:
                return self._send(400, {"error": "bad body"})
            if not self._csrf_ok(session, fields):
                return self._send(403, {"error": "bad csrf"})
            if not fresh(fields.get("ts")):
                return self._send(400, {"error": "stale or missing ts"})
            item_id = os.urandom(8).hex()
            with LOCK:
                ITEMS[item_id] = {"id": item_id, "name": fields.get("name"),
                                  "created": datetime.fromtimestamp(now(), timezone.utc).isoformat()}
            return self._send(201, {"id": item_id},
                              extra=[("Location", f"/items/{item_id}")])
        if len(parts) == 2 and parts[0] == "items":
            if self.command in ("PUT", "POST"):
                if fields is None:
                    return self._send(400, {"error": "bad body"})
                if not self._csrf_ok(session, fields):
                    return self._send(403, {"error": "bad csrf"})
                stamp = self.headers.get("X-Request-Time")
                if stamp is None or not fresh(stamp):
                    return self._send(400, {"error": "stale or missing X-Request-Time"})
            with LOCK:
                item = ITEMS.get(parts[1])
                if item is None:
                    return self._send(404, {"error": "no such item"})
                if self.command in ("PUT", "POST"):
                    item["name"] = fields.get("name", item["name"])
                return self._send(200, dict(item))
        return self._send(404, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


def main():
    global SKEW, REGRESS
    ap = argparse.ArgumentParser()
    ap.add_argument("--skew", type=float, default=0.0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--regress", action="store_true")
    args = ap.parse_args()
    SKEW = args.skew
    REGRESS = args.regress
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
