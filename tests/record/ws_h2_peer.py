#!/usr/bin/python3
"""WebSocket over HTTP/2 (RFC 8441) peers for the recorder's tests, written with Debian's
python3-h2 (4.1) and python3-wsproto (1.2). Loopback only; every wait is bounded.

  ws_h2_peer.py client CASE (--h2c HOST:PORT | --proxy HOST:PORT --target HOST:PORT --cafile CA)
      Speaks HTTP/2 to retake: with prior knowledge (--h2c), or through the explicit proxy
      (CONNECT to --target, TLS with ALPN h2 trusting --cafile). Prints "ok ..." or "failed: ...".
      Cases:
        echo          SETTINGS_ENABLE_CONNECT_PROTOCOL=1 is required; an extended CONNECT to /chat
                      offering the subprotocols "chat, superchat" and permessage-deflate; then a
                      text "hello", a binary 00 01 02, a text sent as "frag1"+"frag2" and a
                      100000-byte binary message (past the initial flow-control windows), each
                      echo checked; a close 4001 "done" answered by the server's close, the
                      server's END_STREAM, then ours.
        bad-protocol  :protocol "bogus" and a plain CONNECT are both answered 501; a GET /plain on
                      the same connection still works.
        handshake     an extended CONNECT to --path PATH as echo sends it; prints the status and
                      the body of the answer ("ok 403 forbidden").
        reset         a WebSocket on /chat exchanges one message, then the client resets the
                      stream (CANCEL) and a GET /plain on the same connection still works.
        idle          a WebSocket on /chat left silent until retake resets it (CANCEL; the test
                      gives retake a short idle timeout); a GET /plain then still works.
        linger        as echo's close, but the client keeps its side open after the server's
                      END_STREAM until retake resets the stream with NO_ERROR; a GET /plain then
                      still works.
  ws_h2_peer.py server [--no-connect-protocol] [--tls CERT KEY]
      Prints its port on the first stdout line; serves until stdin closes or 60 s pass. HTTP/2
      (h2c prior knowledge, or ALPN h2) with SETTINGS_ENABLE_CONNECT_PROTOCOL=1 unless told not
      to: an extended CONNECT websocket is answered 200 (subprotocol "chat" when offered) and
      every message echoed; other requests get 200 "plain h2". Over TLS a client that offers only
      http/1.1 gets an HTTP/1.1 WebSocket echo server (wsproto) instead.
"""
import os
import socket
import ssl
import sys
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import wsproto
import wsproto.connection
import wsproto.events
import wsproto.extensions

DEADLINE_S = 15.0
BIG = bytes(i % 251 for i in range(100000))


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


# ---- client -------------------------------------------------------------------------------


class H2Client:
    """A blocking hyper-h2 client connection that collects events."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(DEADLINE_S)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                      validate_outbound_headers=False))  # a plain CONNECT
        self.conn.initiate_connection()
        self.flush()
        self.events = []
        self.settings = {}

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, until, what):
        """Reads until until() is true (checked first); fails after DEADLINE_S."""
        deadline = time.time() + DEADLINE_S
        while not until():
            check(time.time() < deadline, "timed out waiting for " + what)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise Failed("timed out waiting for " + what)
            check(data, "connection closed while waiting for " + what)
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    for code, change in ev.changed_settings.items():
                        self.settings[code] = change.new_value
                self.events.append(ev)
            self.flush()

    def of(self, stream_id, kind):
        return [e for e in self.events if isinstance(e, kind) and e.stream_id == stream_id]

    def ended(self, stream_id):
        return bool(self.of(stream_id, h2.events.StreamEnded) or
                    self.of(stream_id, h2.events.StreamReset))

    def head(self, stream_id):
        self.pump(lambda: self.of(stream_id, h2.events.ResponseReceived) or
                  self.of(stream_id, h2.events.StreamReset), "a response head")
        heads = self.of(stream_id, h2.events.ResponseReceived)
        check(heads, "stream %d reset instead of answered" % stream_id)
        return dict(heads[0].headers)

    def body(self, stream_id):
        self.pump(lambda: self.ended(stream_id), "the end of stream %d" % stream_id)
        return b"".join(e.data for e in self.of(stream_id, h2.events.DataReceived))

    def send_data(self, stream_id, data):
        """Sends all of data, waiting for the peer's flow-control windows as needed."""
        while data:
            room = min(self.conn.local_flow_control_window(stream_id),
                       self.conn.max_outbound_frame_size, len(data))
            if room == 0:
                before = len(self.events)
                self.pump(lambda: len(self.events) > before, "a WINDOW_UPDATE")
                continue
            self.conn.send_data(stream_id, data[:room])
            data = data[room:]
            self.flush()

    def get(self, stream_id, path):
        self.conn.send_headers(stream_id, [(":method", "GET"), (":scheme", self.scheme),
                                           (":authority", self.authority), (":path", path)],
                               end_stream=True)
        self.flush()
        return self.head(stream_id).get(":status"), self.body(stream_id)

    def extended_connect(self, stream_id, path, protocol="websocket", extra=()):
        self.conn.send_headers(stream_id, [(":method", "CONNECT"), (":protocol", protocol),
                                           (":scheme", self.scheme), (":authority", self.authority),
                                           (":path", path), ("sec-websocket-version", "13")] +
                               list(extra))
        self.flush()
        return self.head(stream_id)


class WebSocket:
    """wsproto's frame layer over one HTTP/2 stream."""

    def __init__(self, client, stream_id, extensions=()):
        self.client = client
        self.stream_id = stream_id
        self.ws = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT,
                                                extensions=list(extensions))
        self.seen = 0  # DataReceived events of this stream already fed to wsproto
        self.pending = []

    def send(self, event):
        self.client.send_data(self.stream_id, self.ws.send(event))

    def feed(self):
        data = self.client.of(self.stream_id, h2.events.DataReceived)
        for ev in data[self.seen:]:
            self.ws.receive_data(ev.data)
        self.seen = len(data)
        self.pending.extend(self.ws.events())

    def next(self, what):
        """The next WebSocket event (data messages reassembled)."""
        message = []

        def ready():
            self.feed()
            while self.pending:
                ev = self.pending[0]
                if isinstance(ev, wsproto.events.Message) and not ev.message_finished:
                    message.append(self.pending.pop(0).data)
                    continue
                return True
            return False

        self.client.pump(ready, what)
        ev = self.pending.pop(0)
        if isinstance(ev, wsproto.events.Message) and message:
            kind = type(ev)
            joined = ("" if kind is wsproto.events.TextMessage else b"").join(message + [ev.data])
            ev = kind(data=joined)
        return ev

    def echo(self, data, fragments=None):
        kind = wsproto.events.TextMessage if isinstance(data, str) else wsproto.events.BytesMessage
        for i, part in enumerate(fragments or [data]):
            last = i == len(fragments or [data]) - 1
            self.send(kind(data=part, message_finished=last))
        ev = self.next("the echo of %r" % (data[:20],))
        check(isinstance(ev, kind) and ev.data == data, "echo of %r came back as %r" %
              (data[:20], ev))


def connect(args):
    if "--h2c" in args:
        host, port = args[args.index("--h2c") + 1].rsplit(":", 1)
        client = H2Client(socket.create_connection((host, int(port)), timeout=DEADLINE_S))
        client.scheme, client.authority = "http", "%s:%s" % (host, port)
        return client
    phost, pport = args[args.index("--proxy") + 1].rsplit(":", 1)
    target = args[args.index("--target") + 1]
    sock = socket.create_connection((phost, int(pport)), timeout=DEADLINE_S)
    sock.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        check(chunk, "proxy closed during CONNECT")
        head += chunk
    check(b" 200 " in head.split(b"\r\n")[0], "CONNECT refused: %r" % head)
    context = ssl.create_default_context(cafile=args[args.index("--cafile") + 1])
    context.set_alpn_protocols(["h2"])
    host = target.rsplit(":", 1)[0]
    tls = context.wrap_socket(sock, server_hostname=host)
    check(tls.selected_alpn_protocol() == "h2", "ALPN chose %r" % tls.selected_alpn_protocol())
    client = H2Client(tls)
    client.scheme, client.authority = "https", target
    return client


# What a browser's handshake carries besides the pseudo-headers: subprotocols, the
# permessage-deflate offer (wsproto's defaults), an origin.
HANDSHAKE_FIELDS = [
    ("sec-websocket-protocol", "chat, superchat"),
    ("sec-websocket-extensions",
     "permessage-deflate; " + wsproto.extensions.PerMessageDeflate().offer()),
    ("origin", "http://retake.test")]


def open_websocket(client, stream_id, path):
    """An extended CONNECT offering permessage-deflate; the WebSocket once answered 200."""
    client.pump(lambda: h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL in client.settings,
                "SETTINGS_ENABLE_CONNECT_PROTOCOL")
    check(client.settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1,
          "SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1")
    deflate = wsproto.extensions.PerMessageDeflate()
    head = client.extended_connect(stream_id, path, extra=HANDSHAKE_FIELDS)
    check(head.get(":status") == "200", "handshake answered %r" % (head,))
    extensions = []
    accepted = head.get("sec-websocket-extensions", "")
    if "permessage-deflate" in accepted:
        deflate.finalize(accepted)
        extensions.append(deflate)
    return head, WebSocket(client, stream_id, extensions)


def case_echo(client):
    head, ws = open_websocket(client, 1, "/chat")
    check(head.get("sec-websocket-protocol") == "chat",
          "subprotocol not relayed: %r" % (head,))
    check("sec-websocket-accept" not in head and "upgrade" not in head,
          "HTTP/1.1 handshake fields leaked into the HTTP/2 answer: %r" % (head,))
    ws.echo("hello")
    ws.echo(b"\x00\x01\x02")
    ws.echo("frag1frag2", fragments=["frag1", "frag2"])
    ws.echo(BIG)
    ws.send(wsproto.events.CloseConnection(code=4001, reason="done"))
    ev = ws.next("the server's close")
    check(isinstance(ev, wsproto.events.CloseConnection) and ev.code == 4001 and
          ev.reason == "done", "close answered with %r" % (ev,))
    client.pump(lambda: client.ended(1), "the server's END_STREAM")
    check(client.of(1, h2.events.StreamEnded), "stream reset instead of ended: %r" %
          (client.of(1, h2.events.StreamReset),))
    client.conn.end_stream(1)
    client.flush()
    return "deflate=%s" % ("permessage-deflate" in head.get("sec-websocket-extensions", ""))


def case_bad_protocol(client):
    head = client.extended_connect(1, "/chat", protocol="bogus")
    body = client.body(1)
    check(head.get(":status") == "501" and b"only websocket" in body,
          "bogus :protocol answered %r %r" % (head, body))
    client.conn.send_headers(3, [(":method", "CONNECT"), (":authority", "example.test:443")])
    client.flush()
    head = client.head(3)
    body = client.body(3)
    check(head.get(":status") == "501" and b"plain CONNECT" in body,
          "plain CONNECT answered %r %r" % (head, body))
    status, body = client.get(5, "/plain")
    check(status == "200" and body == b"plain", "GET after them: %r %r" % (status, body))
    return "501 501 200"


def case_handshake(client):
    head = client.extended_connect(1, client.path, extra=HANDSHAKE_FIELDS)
    body = client.body(1)
    return "%s %s" % (head.get(":status"), body.decode(errors="replace"))


def case_reset(client):
    head, ws = open_websocket(client, 1, "/chat")
    ws.echo("before reset")
    client.conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    client.flush()
    status, body = client.get(3, "/plain")
    check(status == "200" and body == b"plain", "GET after the reset: %r %r" % (status, body))
    return "200"


def case_linger(client):
    _, ws = open_websocket(client, 1, "/chat")
    ws.echo("hello")
    ws.send(wsproto.events.CloseConnection(code=4001, reason="done"))
    ev = ws.next("the server's close")
    check(isinstance(ev, wsproto.events.CloseConnection), "close answered with %r" % (ev,))
    client.pump(lambda: client.of(1, h2.events.StreamReset), "retake's RST_STREAM")
    check(client.of(1, h2.events.StreamEnded), "no END_STREAM before the RST_STREAM")
    code = client.of(1, h2.events.StreamReset)[0].error_code
    check(code == h2.errors.ErrorCodes.NO_ERROR, "reset with %r" % (code,))
    status, body = client.get(3, "/plain")
    check(status == "200" and body == b"plain", "GET after the reset: %r %r" % (status, body))
    return "NO_ERROR"


def case_idle(client):
    open_websocket(client, 1, "/chat")
    client.pump(lambda: client.ended(1), "retake ending the idle WebSocket")
    resets = client.of(1, h2.events.StreamReset)
    check(resets and resets[0].error_code == h2.errors.ErrorCodes.CANCEL,
          "idle WebSocket not reset with CANCEL: %r" % (client.of(1, h2.events.StreamEnded),))
    status, body = client.get(3, "/plain")
    check(status == "200" and body == b"plain", "GET after the idle reset: %r %r" % (status, body))
    return "reset"


CASES = {"echo": case_echo, "bad-protocol": case_bad_protocol, "handshake": case_handshake,
         "reset": case_reset, "idle": case_idle, "linger": case_linger}


def run_client(case, args):
    try:
        client = connect(args)
        client.path = args[args.index("--path") + 1] if "--path" in args else "/"
        detail = CASES[case](client)
        client.conn.close_connection()
        client.flush()
        client.sock.close()
        print("ok %s" % detail, flush=True)
    except Exception as e:  # the test prints what went wrong
        print("failed: %s: %r" % (type(e).__name__, e), flush=True)


# ---- server -------------------------------------------------------------------------------


def ws_echo(ws, send):
    """Echoes wsproto events of `ws` through send(bytes); True once the close is answered."""
    for ev in ws.events():
        if isinstance(ev, wsproto.events.Message):
            send(ws.send(type(ev)(data=ev.data, message_finished=ev.message_finished)))
        elif isinstance(ev, wsproto.events.Ping):
            send(ws.send(ev.response()))
        elif isinstance(ev, wsproto.events.CloseConnection):
            send(ws.send(ev.response()))
            return True
    return False


def serve_h2(sock, connect_protocol):
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    if connect_protocol:
        conn.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    sock.sendall(conn.data_to_send())
    sockets = {}  # stream id -> wsproto connection
    outbox = {}  # stream id -> [bytes not sent yet for want of window, end the stream after]

    def send(stream_id, data=b"", end=False):
        box = outbox.setdefault(stream_id, [bytearray(), False])
        box[0] += data
        box[1] = box[1] or end
        while box[0]:
            room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size,
                       len(box[0]))
            if room == 0:
                return
            conn.send_data(stream_id, bytes(box[0][:room]))
            del box[0][:room]
        if box[1]:
            conn.end_stream(stream_id)
            del outbox[stream_id]

    while True:
        data = sock.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                headers = dict(ev.headers)
                if headers.get(":method") == "CONNECT" and headers.get(":protocol") == "websocket":
                    fields = [(":status", "200")]
                    if "chat" in headers.get("sec-websocket-protocol", ""):
                        fields.append(("sec-websocket-protocol", "chat"))
                    conn.send_headers(ev.stream_id, fields)
                    sockets[ev.stream_id] = wsproto.connection.Connection(
                        wsproto.connection.ConnectionType.SERVER)
                else:
                    conn.send_headers(ev.stream_id, [(":status", "200")])
                    conn.send_data(ev.stream_id, b"plain h2", end_stream=True)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                ws = sockets.get(ev.stream_id)
                if ws is not None:
                    ws.receive_data(ev.data)
                    if ws_echo(ws, lambda b, sid=ev.stream_id: send(sid, b)):
                        send(ev.stream_id, end=True)
                        del sockets[ev.stream_id]
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in sockets:
                send(ev.stream_id, end=True)
                del sockets[ev.stream_id]
            elif isinstance(ev, h2.events.StreamReset):
                sockets.pop(ev.stream_id, None)
                outbox.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.WindowUpdated):
                for stream_id in list(outbox):
                    send(stream_id)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def serve_h1(sock):
    ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    while True:
        data = sock.recv(65536)
        if not data:
            return
        ws.receive_data(data)
        for ev in ws.events():
            if isinstance(ev, wsproto.events.Request):
                sub = "chat" if "chat" in ev.subprotocols else None
                sock.sendall(ws.send(wsproto.events.AcceptConnection(subprotocol=sub)))
            elif isinstance(ev, wsproto.events.Message):
                sock.sendall(ws.send(type(ev)(data=ev.data, message_finished=ev.message_finished)))
            elif isinstance(ev, wsproto.events.CloseConnection):
                sock.sendall(ws.send(ev.response()))
                return


def serve_one(sock, context, connect_protocol):
    try:
        sock.settimeout(DEADLINE_S * 2)
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True)
            if sock.selected_alpn_protocol() != "h2":
                serve_h1(sock)
                return
        serve_h2(sock, connect_protocol)
    except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
        pass
    finally:
        sock.close()


def run_server(args):
    context = None
    if "--tls" in args:
        i = args.index("--tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args[i + 1], args[i + 2])
        context.set_alpn_protocols(["h2", "http/1.1"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve_one,
                         args=(sock, context, "--no-connect-protocol" not in args),
                         daemon=True).start()


def main():
    threading.Timer(60, lambda: os._exit(3)).start()
    if sys.argv[1] == "server":
        run_server(sys.argv[2:])
    else:
        run_client(sys.argv[2], sys.argv[3:])
    os._exit(0)


if __name__ == "__main__":
    main()
