#!/usr/bin/python3
"""Precise HTTP/2 cases against retake's H2ServerSession, written with Debian's python3-h2.

Usage: h2_cases.py CASE PORT      (client cases against the test server on 127.0.0.1:PORT)
       h2_cases.py goaway-server [--serve-more]
                                  (a server that prints its port, then answers one connection;
                                  with --serve-more, later connections get 200 "again" for
                                  every request, so a client's retry can be seen)

Each client case prints "PASS <case>: <details>" and exits 0, or prints "FAIL ..." and exits 1.
Everything is bounded: socket timeouts, deadlines and frame counts.
"""
import select
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hyperframe.frame as hf

DEADLINE_S = 10.0


def fail(msg):
    print("FAIL " + msg, flush=True)
    sys.exit(1)


def connect(port, send_preface=True):
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    if send_preface:
        sock.sendall(conn.data_to_send())
    return sock, conn


def pump(sock, conn, until, timeout=DEADLINE_S):
    """Reads and feeds events until until(events) is true; returns (events, closed)."""
    events = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return events, True
        if not data:
            return events, True
        for ev in conn.receive_data(data):
            events.append(ev)
            if isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                return events, True
        if until(events):
            return events, False
    fail("timed out waiting for the server")


def ended(stream_id):
    return lambda evs: any(
        isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == stream_id
        for e in evs)


def headers_of(events, stream_id, kind):
    for e in events:
        if isinstance(e, kind) and e.stream_id == stream_id:
            return dict(e.headers)
    return None


def body_of(events, stream_id):
    return b"".join(e.data for e in events
                    if isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id)


def get(port, path="/"):
    sock, conn = connect(port)
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                          (":authority", "127.0.0.1"), (":path", path)], end_stream=True)
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, ended(1))
    sock.close()
    return headers_of(events, 1, h2.events.ResponseReceived), body_of(events, 1)


def case_trailers(port):
    sock, conn = connect(port)
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
                          (":path", "/trailers"), ("content-type", "application/grpc"),
                          ("te", "trailers")])
    conn.send_data(1, b"\x00\x00\x00\x00\x03abc")
    conn.send_headers(1, [("x-req", "from-python")], end_stream=True)
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, ended(1))
    head = headers_of(events, 1, h2.events.ResponseReceived)
    trailers = headers_of(events, 1, h2.events.TrailersReceived)
    body = body_of(events, 1)
    if head is None or head.get(":status") != "200":
        fail("trailers: no 200 response head: %r" % (head,))
    if trailers is None or trailers.get("grpc-status") != "0":
        fail("trailers: grpc-status trailer missing: %r" % (trailers,))
    if trailers.get("x-request-trailer") != "from-python":
        fail("trailers: the server did not see the request trailer: %r" % (trailers,))
    if body != b"payload":
        fail("trailers: body %r" % body)
    print("PASS trailers: grpc-status=%s request-trailer=%s" %
          (trailers["grpc-status"], trailers["x-request-trailer"]), flush=True)


def case_rst_mid_body(port):
    sock, conn = connect(port)
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
                          (":path", "/count")])
    conn.send_data(1, b"x" * 1000)
    sock.sendall(conn.data_to_send())
    time.sleep(0.1)  # let the handler read the first bytes (not a timing assertion)
    conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    # The connection stays usable after a reset stream.
    conn.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"),
                          (":path", "/")], end_stream=True)
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, ended(3))
    head = headers_of(events, 3, h2.events.ResponseReceived)
    if head is None or head.get(":status") != "200" or body_of(events, 3) != b"hello":
        fail("rst-mid-body: the next stream did not succeed: %r" % (head,))
    sock.close()
    print("PASS rst-mid-body: next stream answered 200", flush=True)


def case_rapid_reset(port):
    sock, conn = connect(port)
    goaway = None
    sent = 0
    stream_id = 1
    closed = False
    while sent < 3000 and goaway is None and not closed:
        for _ in range(100):
            conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"),
                                          (":authority", "127.0.0.1"), (":path", "/slow")],
                              end_stream=True)
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            stream_id += 2
            sent += 1
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            closed = True
        # Drain whatever the server said so far without blocking.
        while True:
            r, _, _ = select.select([sock], [], [], 0.02)
            if not r:
                break
            try:
                data = sock.recv(65536)
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            try:
                evs = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                evs = []
            for e in evs:
                if isinstance(e, h2.events.ConnectionTerminated):
                    goaway = e
    sock.close()
    if goaway is None:
        fail("rapid-reset: no GOAWAY after %d reset streams (closed=%s)" % (sent, closed))
    if goaway.error_code != h2.errors.ErrorCodes.ENHANCE_YOUR_CALM:
        fail("rapid-reset: GOAWAY with %r" % (goaway.error_code,))
    head, body = get(port, "/")
    if head is None or head.get(":status") != "200":
        fail("rapid-reset: the server did not answer a new connection")
    print("PASS rapid-reset: GOAWAY ENHANCE_YOUR_CALM after %d reset streams; "
          "a new connection got 200" % sent, flush=True)


def case_too_many_streams(port):
    sock, conn = connect(port, send_preface=False)
    # Everything goes out before we read the server's SETTINGS: 150 open streams against an
    # advertised limit of 100.
    for i in range(150):
        conn.send_headers(1 + 2 * i, [(":method", "POST"), (":scheme", "http"),
                                      (":authority", "127.0.0.1"), (":path", "/hold")])
    sock.sendall(conn.data_to_send())

    def enough(evs):
        return sum(1 for e in evs if isinstance(e, h2.events.StreamReset)) >= 50

    events, closed = pump(sock, conn, enough)
    refused = [e.stream_id for e in events if isinstance(e, h2.events.StreamReset)
               and e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM]
    sock.close()
    if len(refused) != 50:
        fail("too-many-streams: %d streams refused (closed=%s), want 50" % (len(refused), closed))
    if min(refused) != 201:
        fail("too-many-streams: first refused stream %d, want 201" % min(refused))
    print("PASS too-many-streams: %d refused with REFUSED_STREAM, first %d" %
          (len(refused), min(refused)), flush=True)


def case_big_header(port):
    sock, conn = connect(port)
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"),
                          (":path", "/"), ("x-big", "a" * (70 * 1024))], end_stream=True)
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, ended(1))
    head = headers_of(events, 1, h2.events.ResponseReceived)
    if head is None or head.get(":status") != "431":
        fail("big-header: want 431, got %r" % (head,))
    # Same connection, next stream: fine.
    conn.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"),
                          (":path", "/")], end_stream=True)
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, ended(3))
    head3 = headers_of(events, 3, h2.events.ResponseReceived)
    if head3 is None or head3.get(":status") != "200":
        fail("big-header: the connection did not survive: %r" % (head3,))
    sock.close()
    print("PASS big-header: 431 for a 70 KiB header, then 200 on the same connection", flush=True)


def case_continuation_flood(port):
    sock, conn = connect(port)
    block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"),
                                    (":authority", "127.0.0.1"), (":path", "/")])
    head = hf.HeadersFrame(1)
    head.data = block
    head.flags.add("END_STREAM")  # no END_HEADERS: CONTINUATION frames must follow
    frames = [head.serialize()]
    for _ in range(500):
        frames.append(hf.ContinuationFrame(1).serialize())  # empty, never END_HEADERS
    try:
        sock.sendall(b"".join(frames))
    except OSError:
        pass
    goaway = None
    deadline = time.time() + DEADLINE_S
    buf = b""
    while time.time() < deadline and goaway is None:
        try:
            data = sock.recv(65536)
        except OSError:
            break
        if not data:
            break
        buf += data
        # Parse raw frames: h2's state machine would not accept our broken header block.
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            if len(buf) < 9 + length:
                break
            frame, _ = hf.Frame.parse_frame_header(memoryview(buf[:9]))
            frame.parse_body(memoryview(buf[9:9 + length]))
            buf = buf[9 + length:]
            if isinstance(frame, hf.GoAwayFrame):
                goaway = frame
    sock.close()
    if goaway is None:
        fail("continuation-flood: no GOAWAY")
    if goaway.error_code != h2.errors.ErrorCodes.ENHANCE_YOUR_CALM:
        fail("continuation-flood: GOAWAY with %r" % goaway.error_code)
    print("PASS continuation-flood: GOAWAY ENHANCE_YOUR_CALM", flush=True)


def answer_all(sock):
    """Answers every request on `sock` with 200 "again" until the client closes or a deadline."""
    sock.settimeout(DEADLINE_S)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    deadline = time.time() + DEADLINE_S
    try:
        sock.sendall(conn.data_to_send())
        while time.time() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    conn.send_headers(ev.stream_id, [(":status", "200")])
                    conn.send_data(ev.stream_id, b"again", end_stream=True)
            sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError):
        pass
    sock.close()


def goaway_server(serve_more=False):
    """Answers one connection: waits for 3 requests, sends GOAWAY(last_stream_id=first), answers
    the first stream only, then closes once the client is done (or after a deadline)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(DEADLINE_S)
    print(lsock.getsockname()[1], flush=True)
    sock, _ = lsock.accept()
    if serve_more:
        def more():
            while True:
                try:
                    s, _ = lsock.accept()
                except OSError:
                    return
                threading.Thread(target=answer_all, args=(s,), daemon=True).start()
        more_thread = threading.Thread(target=more, daemon=True)
        more_thread.start()
    sock.settimeout(DEADLINE_S)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    requests = []
    deadline = time.time() + DEADLINE_S
    while len(requests) < 3 and time.time() < deadline:
        data = sock.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                requests.append(ev.stream_id)
        sock.sendall(conn.data_to_send())
    first = min(requests)
    goaway = hf.GoAwayFrame(0)
    goaway.last_stream_id = first
    goaway.error_code = 0
    sock.sendall(goaway.serialize())
    conn.send_headers(first, [(":status", "200"), ("content-type", "text/plain")])
    conn.send_data(first, b"first", end_stream=True)
    sock.sendall(conn.data_to_send())
    while time.time() < deadline:
        try:
            data = sock.recv(65536)
        except OSError:
            break
        if not data:
            break
    sock.close()
    if serve_more:
        more_thread.join()  # until no connection came for DEADLINE_S (or we are killed)


def extended_connect_request(conn, stream_id, protocol):
    conn.send_headers(stream_id, [(":method", "CONNECT"), (":protocol", protocol),
                                  (":scheme", "http"), (":authority", "127.0.0.1"),
                                  (":path", "/tunnel")])


def case_extended_connect(port):
    """The server enables RFC 8441; DATA flows both ways on one open stream."""
    sock, conn = connect(port)
    events, _ = pump(sock, conn, lambda evs: any(
        isinstance(e, h2.events.RemoteSettingsChanged) for e in evs))
    settings = [e for e in events if isinstance(e, h2.events.RemoteSettingsChanged)][0]
    enabled = settings.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
    if enabled is None or enabled.new_value != 1:
        fail("extended-connect: SETTINGS_ENABLE_CONNECT_PROTOCOL not sent: %r" %
             (settings.changed_settings,))
    extended_connect_request(conn, 1, "websocket")
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, lambda evs: any(
        isinstance(e, (h2.events.ResponseReceived, h2.events.StreamReset)) for e in evs))
    head = headers_of(events, 1, h2.events.ResponseReceived)
    if head is None or head.get(":status") != "200" or head.get("x-protocol") != "websocket":
        fail("extended-connect: no 200 with x-protocol: %r" % (head,))
    for chunk in (b"ping-1", b"ping-2"):
        conn.send_data(1, chunk)
        sock.sendall(conn.data_to_send())
        events, _ = pump(sock, conn, lambda evs: body_of(evs, 1) == chunk)
    conn.end_stream(1)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, ended(1))
    sock.close()
    print("PASS extended-connect: setting 1, 200, echoes while the request stays open",
          flush=True)


def case_protocol_refused(port):
    """Without the setting, :protocol is a stream error; the connection goes on."""
    sock, conn = connect(port)
    extended_connect_request(conn, 1, "websocket")
    conn.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"),
                          (":path", "/")], end_stream=True)
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, lambda evs: ended(1)(evs) and ended(3)(evs))
    resets = [e for e in events if isinstance(e, h2.events.StreamReset) and e.stream_id == 1]
    if not resets or resets[0].error_code != h2.errors.ErrorCodes.PROTOCOL_ERROR:
        fail("protocol-refused: stream 1 not reset with PROTOCOL_ERROR: %r" % (events,))
    if body_of(events, 3) != b"hello":
        fail("protocol-refused: the next stream did not succeed")
    sock.close()
    print("PASS protocol-refused: RST_STREAM PROTOCOL_ERROR, next stream answered", flush=True)


def case_decline(port):
    """A request body the server declines: the whole response, then RST_STREAM(NO_ERROR)."""
    sock, conn = connect(port)
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
                          (":path", "/decline")])
    conn.send_data(1, b"more is coming")
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, lambda evs: any(
        isinstance(e, h2.events.StreamReset) and e.stream_id == 1 for e in evs))
    kinds = [type(e).__name__ for e in events if getattr(e, "stream_id", None) == 1]
    resets = [e for e in events if isinstance(e, h2.events.StreamReset) and e.stream_id == 1]
    if resets[0].error_code != h2.errors.ErrorCodes.NO_ERROR:
        fail("decline: reset with %r" % (resets[0].error_code,))
    if "StreamEnded" not in kinds or kinds.index("StreamEnded") > kinds.index("StreamReset"):
        fail("decline: the reset overtook the end of the response: %r" % (kinds,))
    if len(body_of(events, 1)) != 100000:
        fail("decline: body of %d bytes" % len(body_of(events, 1)))
    sock.close()
    print("PASS decline: 100000 bytes, END_STREAM, then RST_STREAM NO_ERROR", flush=True)


CASES = {
    "decline": case_decline,
    "extended-connect": case_extended_connect,
    "protocol-refused": case_protocol_refused,
    "trailers": case_trailers,
    "rst-mid-body": case_rst_mid_body,
    "rapid-reset": case_rapid_reset,
    "too-many-streams": case_too_many_streams,
    "big-header": case_big_header,
    "continuation-flood": case_continuation_flood,
}

if __name__ == "__main__":
    if sys.argv[1] == "goaway-server":
        goaway_server(serve_more="--serve-more" in sys.argv[2:])
    else:
        CASES[sys.argv[1]](int(sys.argv[2]))
