#!/usr/bin/env python3
"""Drives a retake server replay with the standard library's http.client, on ONE keep-alive
connection, and prints one JSON line per request:
  {"status": 200, "body_hex": "...", "headers": {...}}  (header names lowercased, last one wins)
Usage: http_client.py HOST:PORT METHOD:PATH[:BODY] ...
Ends on its own: every socket operation has a 10 s timeout.
"""
import http.client
import json
import sys


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for spec in sys.argv[2:]:
        parts = spec.split(":", 2)
        method, path = parts[0], parts[1]
        body = parts[2].encode() if len(parts) > 2 else None
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        print(json.dumps({
            "status": resp.status,
            "body_hex": data.hex(),
            "headers": {k.lower(): v for k, v in resp.getheaders()},
        }), flush=True)
    conn.close()


if __name__ == "__main__":
    main()
