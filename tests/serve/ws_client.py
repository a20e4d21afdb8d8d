#!/usr/bin/env python3
"""A minimal WebSocket client (RFC 6455) on the standard library, for replay tests where
python3-websockets is not installed. Prints the handshake status line, then one line per step:
  send:TEXT   sends a masked text frame
  recv        reads one frame and prints "recv <opcode> <payload>"
  close       reads frames until a close frame and prints "close <code>"
Usage: ws_client.py HOST:PORT PATH STEP...   Every socket operation has a 10 s timeout.
"""
import base64
import os
import socket
import struct
import sys


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def read_frame(sock):
    b0, b1 = read_exact(sock, 2)
    opcode = b0 & 0x0F
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exact(sock, 8))[0]
    mask = read_exact(sock, 4) if b1 & 0x80 else None
    payload = read_exact(sock, length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


def send_frame(sock, opcode, payload):
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", n)
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    path = sys.argv[2]
    sock = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += read_exact(sock, 1)
    print(head.split(b"\r\n")[0].decode(), flush=True)
    for step in sys.argv[3:]:
        if step.startswith("send:"):
            send_frame(sock, 1, step[5:].encode())
        elif step == "recv":
            opcode, payload = read_frame(sock)
            print(f"recv {opcode} {payload.decode(errors='replace')}", flush=True)
        elif step == "close":
            while True:
                opcode, payload = read_frame(sock)
                if opcode == 8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
                    print(f"close {code}", flush=True)
                    send_frame(sock, 8, payload[:2])
                    break
    sock.close()


if __name__ == "__main__":
    main()
