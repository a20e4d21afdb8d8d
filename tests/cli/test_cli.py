#!/usr/bin/env python3
"""End-to-end tests of the `retake` binary with real curl against a local upstream.

Usage: test_cli.py RETAKE_BINARY   (ctest passes it)
Everything runs on 127.0.0.1 with ephemeral ports and a temporary RETAKE_HOME.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

RETAKE = None
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from ports import free_port, wait_port  # noqa: E402
UPSTREAM = os.path.join(HERE, "..", "support", "upstream.py")
RECORD_TESTS = os.path.join(HERE, "..", "record")
WITHOUT_IO_URING = os.path.join(HERE, "..", "support", "without_io_uring.py")


def curl(*args, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", "15", *args], capture_output=True,
                          timeout=timeout)


class Upstream:
    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, UPSTREAM], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class RetakeTest(unittest.TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="retake-cli-test-")
        self.env = dict(os.environ, RETAKE_HOME=self.home)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for pipe in (p.stdout, p.stderr):
                if pipe:
                    pipe.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def retake(self, *args, timeout=30, check=None):
        r = subprocess.run([RETAKE, *args], capture_output=True, text=True, env=self.env,
                           timeout=timeout)
        if check is not None:
            self.assertEqual(r.returncode, check, f"retake {args}: {r.stderr}")
        return r

    def start_listening(self, command, *args, wrapper=()):
        """`retake COMMAND --listen 127.0.0.1:PORT ARGS`, run through WRAPPER (a command that
        execs its arguments) if given; returns the process and the port once it listens."""
        port = free_port()
        p = subprocess.Popen([*wrapper, RETAKE, command, "--listen", f"127.0.0.1:{port}", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=self.env)
        self.procs.append(p)
        wait_port(port)
        return p, port

    def start_record(self, *args):
        return self.start_listening("record", *args)

    def stop(self, p):
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
        return p.returncode, out, err

    def list_json(self, *args):
        r = self.retake("flows", "list", "--json", *args, check=0)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    # --- usage -------------------------------------------------------------------------

    def test_help_on_every_command_exits_zero(self):
        for cmd in ([], ["record"], ["flows"], ["flows", "list"], ["flows", "show"],
                    ["flows", "delete"], ["sessions"], ["ca"], ["ca", "export"],
                    ["ca", "path"]):
            r = self.retake(*cmd, "--help")
            self.assertEqual(r.returncode, 0, cmd)
            self.assertIn("--", r.stdout)

    def test_usage_errors_exit_two_and_name_the_problem(self):
        r = self.retake("record", "--no-such-flag")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no-such-flag", r.stderr)
        r = self.retake("record", "--mode", "sideways")
        self.assertEqual(r.returncode, 2)
        self.assertIn("sideways", r.stderr)
        r = self.retake("record", "--listen", "127.0.0.1:99999")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--listen", r.stderr)
        # The same flag, the same check, in every command that records flows.
        for cmd in (["record"], ["daemon"], ["replay", "--session", "s", "--target",
                                             "http://127.0.0.1:9"]):
            r = self.retake(*cmd, "--min-free-space", "lots")
            self.assertEqual(r.returncode, 2, cmd)
            self.assertIn("--min-free-space: expected a size like 64MiB, got 'lots'", r.stderr, cmd)
        r = self.retake()
        self.assertEqual(r.returncode, 2)

    def test_remote_without_a_daemon_fails_clearly(self):
        port = free_port()  # nobody listens there
        for cmd in (["flows", "list"], ["sessions"], ["runs"],
                    ["replay", "--session", "s", "--target", "http://127.0.0.1:9"]):
            r = self.retake(*cmd, "--remote", f"127.0.0.1:{port}")
            self.assertEqual(r.returncode, 1, cmd)
            self.assertIn("no daemon answers there", r.stderr, cmd)
        env_remote = dict(self.env, RETAKE_REMOTE=f"127.0.0.1:{port}")
        r = subprocess.run([RETAKE, "sessions"], capture_output=True, text=True, env=env_remote,
                           timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no daemon answers there", r.stderr)

    def test_control_module_is_loaded_only_when_needed_and_missing_it_is_clear(self):
        # gRPC lives in retake-control.so beside the binary; a binary without it still records
        # and reads locally, and says what is missing when a command needs the daemon.
        alone = os.path.join(self.home, "alone")
        os.makedirs(alone)
        shutil.copy(RETAKE, alone)
        binary = os.path.join(alone, os.path.basename(RETAKE))
        r = subprocess.run([binary, "sessions"], capture_output=True, text=True, env=self.env,
                           timeout=30)
        self.assertNotIn("control module", r.stderr)
        for cmd in (["flows", "list", "--remote", "127.0.0.1:9"],
                    ["daemon", "--control", "127.0.0.1:0"]):
            r = subprocess.run([binary, *cmd], capture_output=True, text=True, env=self.env,
                               timeout=30)
            self.assertEqual(r.returncode, 1, cmd)
            self.assertIn("the control module (gRPC) is missing", r.stderr, cmd)
            self.assertIn(os.path.join(alone, "retake-control.so"), r.stderr, cmd)
        # The built binary does not map gRPC until a command needs it.
        out = subprocess.run(["ldd", RETAKE], capture_output=True, text=True, timeout=30).stdout
        self.assertNotIn("libgrpc", out)
        self.assertNotIn("libprotobuf", out)

    def test_reading_a_missing_store_fails_clearly(self):
        r = self.retake("flows", "list", "--db", os.path.join(self.home, "nope"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("nope", r.stderr)
        r = self.retake("flows", "show", "12345")
        self.assertEqual(r.returncode, 1)

    def test_ca_is_created_once_with_a_private_key_and_exports_pem_and_der(self):
        path = self.retake("ca", "path", check=0).stdout.strip()
        self.assertEqual(path, os.path.join(self.home, "ca", "retake-ca.pem"))
        key = os.path.join(self.home, "ca", "retake-ca-key.pem")
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        pem = self.retake("ca", "export", check=0).stdout
        self.assertTrue(pem.startswith("-----BEGIN CERTIFICATE-----"))
        with open(path) as f:
            self.assertEqual(f.read(), pem)  # reused, not regenerated
        der_file = os.path.join(self.home, "ca.der")
        self.retake("ca", "export", "--der", "-o", der_file, check=0)
        subject = subprocess.run(["openssl", "x509", "-inform", "der", "-in", der_file, "-noout",
                                  "-subject"], capture_output=True, text=True).stdout
        self.assertIn("retake CA", subject)

    def test_import_export_round_trip_and_failed_imports_change_nothing(self):
        fixtures = os.path.join(HERE, "..", "..", "fixtures", "interop")
        mitm = os.path.join(fixtures, "mitm", "http.mitm")
        r = self.retake("flows", "import", mitm, "--session", "m1", check=0)
        self.assertIn("imported 6 flows (mitmproxy)", r.stderr)
        # An import never lands in an existing session.
        r = self.retake("flows", "import", mitm, "--session", "m1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("already has 6 flows", r.stderr)
        # A bad file is refused and nothing is written.
        bad = os.path.join(fixtures, "har", "bad-entries.har")
        r = self.retake("flows", "import", bad, "--session", "bad")
        self.assertEqual(r.returncode, 1)
        self.assertIn("entries[", r.stderr)
        self.assertEqual(self.list_json("--session", "bad"), [])
        r = self.retake("flows", "import", bad, "--session", "bad", "--skip-bad", check=0)
        self.assertIn("skipped", r.stderr)
        self.assertGreater(len(self.list_json("--session", "bad")), 0)
        # HAR out and back in keeps methods, URLs and statuses.
        har = os.path.join(self.home, "out.har")
        self.retake("flows", "export", "--session", "m1", "--har", har, check=0)
        self.retake("flows", "import", har, "--session", "m2", check=0)
        key = lambda f: (f["method"], f["url"], f["status"])
        self.assertEqual([key(f) for f in self.list_json("--session", "m1")],
                         [key(f) for f in self.list_json("--session", "m2")])
        # One flow as curl, raw HTTP and JSON; a filter chooses it.
        first = self.list_json("--session", "m1", "~c 200")[0]
        curl_cmd = self.retake("flows", "export", "--id", first["id"], "--curl", check=0).stdout
        self.assertTrue(curl_cmd.startswith("curl"))
        self.assertIn(first["url"].split("?")[0], curl_cmd)
        raw = self.retake("flows", "export", "--id", first["id"], "--raw", check=0).stdout
        self.assertIn("HTTP/1.1 200", raw)
        doc = json.loads(self.retake("flows", "show", first["id"], "--json", check=0).stdout)
        self.assertEqual(doc["request"]["method"], "GET")
        # A bad filter is a usage error pointing at the column.
        r = self.retake("flows", "list", "~c abc")
        self.assertEqual(r.returncode, 2)
        self.assertIn("column 4", r.stderr)

    # --- recording ---------------------------------------------------------------------

    def test_reverse_proxy_records_and_flows_are_readable_while_recording(self):
        with Upstream() as up:
            rec, port = self.start_record("--mode", f"reverse:http://127.0.0.1:{up.port}",
                                          "--session", "rev", "-q")
            r = curl(f"http://127.0.0.1:{port}/json", f"http://127.0.0.1:{port}/status/404")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b'"widget"', r.stdout)
            r = curl("-X", "POST", "--data-binary", "payload=1", f"http://127.0.0.1:{port}/echo")
            self.assertEqual(r.returncode, 0)
            # Readable from another process while the recorder still holds the store.
            deadline = time.time() + 10
            flows = []
            while time.time() < deadline:
                flows = self.list_json("--session", "rev")
                if len(flows) >= 3:
                    break
                time.sleep(0.2)
            self.assertEqual([f["status"] for f in flows], [200, 404, 200])
            self.assertEqual(flows[2]["method"], "POST")
            code, _, err = self.stop(rec)
            self.assertEqual(code, 0, err)
            self.assertIn("recorded 3 flows", err)
        shown = self.retake("flows", "show", flows[2]["id"], check=0).stdout
        self.assertIn("POST /echo HTTP/1.1", shown)
        self.assertIn("payload=1", shown)
        self.assertIn("HTTP/1.1 200", shown)
        sessions = self.retake("sessions", "--json", check=0).stdout
        doc = [json.loads(l) for l in sessions.splitlines()]
        self.assertEqual([(s["name"], s["flows"]) for s in doc], [("rev", 3)])

    def test_explicit_proxy_records_with_curl_proxy_flag(self):
        with Upstream() as up:
            rec, port = self.start_record("--session", "exp")
            r = curl("-x", f"http://127.0.0.1:{port}", f"http://127.0.0.1:{up.port}/json")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"widget", r.stdout)
            code, out, err = self.stop(rec)
            self.assertEqual(code, 0, err)
            self.assertIn(f"GET http://127.0.0.1:{up.port}/json -> 200", out)
        flows = self.list_json("--session", "exp")
        self.assertEqual(len(flows), 1)
        self.assertEqual(flows[0]["url"], f"http://127.0.0.1:{up.port}/json")

    # --- network I/O backend --------------------------------------------------------------

    def epoll_build(self):
        """retake-epoll beside the binary (an io_uring build), or None (an epoll-only build)."""
        path = os.path.join(os.path.dirname(RETAKE), "retake-epoll")
        return os.path.realpath(path) if os.path.exists(path) else None

    def backend_line(self, **kwargs):
        out = self.retake("--version", check=0, **kwargs).stdout
        lines = [l for l in out.splitlines() if l.startswith("network I/O: ")]
        self.assertEqual(len(lines), 1, out)
        return lines[0]

    def record_one_flow(self, session, wrapper=()):
        """Records one GET through a reverse recorder; returns the recorder's executable."""
        with Upstream() as up:
            p, port = self.start_listening("record", "--mode",
                                           f"reverse:http://127.0.0.1:{up.port}", "--session",
                                           session, "-q", wrapper=wrapper)
            exe = os.readlink(f"/proc/{p.pid}/exe")
            r = curl(f"http://127.0.0.1:{port}/json")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b'"widget"', r.stdout)
            code, _, err = self.stop(p)
            self.assertEqual(code, 0, err)
            self.assertIn("recorded 1 flows", err)
        self.assertEqual(len(self.list_json("--session", session)), 1)
        return exe

    def test_version_names_the_network_backend(self):
        line = self.backend_line()
        if self.epoll_build():
            # io_uring where the kernel allows it, else the epoll build saying why.
            self.assertRegex(line, r"^network I/O: (io_uring|epoll \(instead of io_uring: "
                                   r"io_uring_(setup|enter): .+\))$")
        else:
            self.assertEqual(line, "network I/O: epoll")

    def test_bad_io_backend_names_the_variable_and_exits_two(self):
        self.env["RETAKE_IO_BACKEND"] = "kqueue"
        r = self.retake("sessions")
        self.assertEqual(r.returncode, 2)
        self.assertIn("RETAKE_IO_BACKEND=kqueue: expected auto, io_uring or epoll", r.stderr)

    def test_epoll_build_records_when_asked_for(self):
        epoll = self.epoll_build()
        if not epoll:
            self.skipTest("an epoll-only build has no retake-epoll")
        self.env["RETAKE_IO_BACKEND"] = "epoll"
        self.assertEqual(self.backend_line(),
                         "network I/O: epoll (instead of io_uring: RETAKE_IO_BACKEND=epoll)")
        # The recorder is the epoll build: the same process, its image replaced.
        self.assertEqual(self.record_one_flow("ep"), epoll)

    def test_serve_runs_on_epoll_unless_io_uring_is_asked_for(self):
        epoll = self.epoll_build()
        if not epoll:
            self.skipTest("an epoll-only build has no retake-epoll")
        self.record_one_flow("sv")
        for wish, expected in (("auto", epoll), ("io_uring", os.path.realpath(RETAKE))):
            self.env["RETAKE_IO_BACKEND"] = wish
            p, port = self.start_listening("serve", "--session", "sv", "-q")
            self.assertEqual(os.readlink(f"/proc/{p.pid}/exe"), expected, wish)
            r = curl(f"http://127.0.0.1:{port}/json")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b'"widget"', r.stdout)
            code, _, err = self.stop(p)
            self.assertEqual(code, 0, err)

    def test_io_uring_refused_by_seccomp_falls_back_to_the_epoll_build(self):
        # Docker's and Kubernetes' default seccomp profiles refuse the io_uring system calls
        # with EPERM; tests/support/without_io_uring.py does the same to retake here.
        epoll = self.epoll_build()
        if not epoll:
            self.skipTest("an epoll-only build has no retake-epoll")

        def refusing(names="io_uring_setup,io_uring_enter,io_uring_register"):
            return ["/usr/bin/python3", WITHOUT_IO_URING, "--refuse", names, "--"]

        for names, failing in (("io_uring_setup,io_uring_enter,io_uring_register",
                                "io_uring_setup"), ("io_uring_enter", "io_uring_enter")):
            r = subprocess.run([*refusing(names), RETAKE, "--version"], capture_output=True,
                               text=True, env=self.env, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"network I/O: epoll (instead of io_uring: {failing}: Operation not "
                          "permitted)", r.stdout)
        self.assertEqual(self.record_one_flow("sec", wrapper=refusing()), epoll)
        # Asking for io_uring where it is refused is an error, not a silent fallback.
        self.env["RETAKE_IO_BACKEND"] = "io_uring"
        r = subprocess.run([*refusing(), RETAKE, "sessions"], capture_output=True, text=True,
                           env=self.env, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("RETAKE_IO_BACKEND=io_uring, but io_uring_setup: Operation not permitted",
                      r.stderr)

    def start_script(self, *argv):
        """Starts a test server script that prints its port first; stopped by tearDown."""
        p = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        self.procs.append(p)
        return int(p.stdout.readline().split()[-1])

    def self_signed(self):
        cert, key = os.path.join(self.home, "up.pem"), os.path.join(self.home, "up.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=30)
        return cert, key

    def test_https_through_the_explicit_proxy_is_intercepted_and_shown_with_tls_facts(self):
        cert, key = self.self_signed()
        up = self.start_script(sys.executable, os.path.join(RECORD_TESTS, "http1_upstream.py"),
                               "--tls", cert, key)
        ca = os.path.join(self.home, "retake-ca.pem")
        self.retake("ca", "export", "-o", ca, check=0)
        rec, port = self.start_record("--session", "tls", "--upstream-ca", cert)
        r = curl("-4", "--cacert", ca, "-x", f"http://127.0.0.1:{port}",
                 f"https://localhost:{up}/size/10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), 10)
        # Without --cacert curl rejects retake's certificate: a tls_failed flow, not nothing.
        r = curl("-4", "-x", f"http://127.0.0.1:{port}", f"https://localhost:{up}/size/10")
        self.assertNotEqual(r.returncode, 0)
        code, out, err = self.stop(rec)
        self.assertEqual(code, 0, err)
        flows = self.list_json("--session", "tls")
        self.assertEqual(len(flows), 2)
        self.assertEqual(flows[0]["url"], f"https://localhost:{up}/size/10")
        shown = self.retake("flows", "show", flows[0]["id"], check=0).stdout
        self.assertIn("# client TLS: TLSv1.", shown)
        self.assertIn("sni localhost", shown)
        self.assertIn("# upstream TLS:", shown)
        self.assertIn("cert CN=localhost", shown)
        shown = self.retake("flows", "show", flows[1]["id"], check=0).stdout
        self.assertIn("TLS handshake with the client failed", shown)
        self.assertIn("tls_handshake_failed", shown)

    def test_record_with_server_replay_answers_from_a_session_without_the_upstream(self):
        cert, key = self.self_signed()
        ca = os.path.join(self.home, "retake-ca.pem")
        self.retake("ca", "export", "-o", ca, check=0)
        with Upstream() as up:
            tls_up = self.start_script(sys.executable,
                                       os.path.join(RECORD_TESTS, "http1_upstream.py"),
                                       "--tls", cert, key)
            rec, port = self.start_record("--session", "live", "--upstream-ca", cert, "-q")
            proxy = f"http://127.0.0.1:{port}"
            recorded_json = curl("-x", proxy, f"http://127.0.0.1:{up.port}/json").stdout
            recorded_echo = curl("-x", proxy, "-d", "one", f"http://127.0.0.1:{up.port}/echo")
            recorded_tls = curl("-4", "--cacert", ca, "-x", proxy,
                                f"https://localhost:{tls_up}/size/20").stdout
            self.assertEqual(len(recorded_tls), 20)
            code, _, err = self.stop(rec)
            self.assertEqual(code, 0, err)
        self.procs[0].kill()  # the TLS upstream too: nothing answers but the recordings
        self.procs[0].wait()

        rec, port = self.start_record("--session", "mocked", "--server-replay", "live",
                                      "--upstream-ca", cert, "-q")
        proxy = f"http://127.0.0.1:{port}"
        r = curl("-x", proxy, "-D", "-", f"http://127.0.0.1:{up.port}/json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.endswith(recorded_json), r.stdout)
        self.assertIn(b"X-Retake-Match: ", r.stdout)
        r = curl("-x", proxy, "-d", "one", f"http://127.0.0.1:{up.port}/echo")
        self.assertEqual(r.stdout, recorded_echo.stdout)
        # HTTPS through the CA, answered from the recording.
        r = curl("-4", "--cacert", ca, "-x", proxy, f"https://localhost:{tls_up}/size/20")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, recorded_tls)
        # A miss is 404 with the explanation, and no connection is tried.
        r = curl("-x", proxy, "-w", "%{http_code}", f"http://127.0.0.1:{up.port}/echo?x=1",
                 "-d", "two")
        self.assertTrue(r.stdout.endswith(b"404"), r.stdout)
        self.assertIn(b"retake: ", r.stdout)
        self.assertIn(b"query", r.stdout.lower())
        code, _, err = self.stop(rec)
        self.assertEqual(code, 0, err)
        self.assertIn("3 served from recordings, 1 missed", err)
        flows = self.list_json("--session", "mocked")
        self.assertEqual(len(flows), 4, flows)
        shown = [json.loads(self.retake("flows", "show", f["id"], "--json", check=0).stdout)
                 for f in flows]
        served = [f for f in shown if "served" in f.get("tags", [])]
        missed = [f for f in shown if "miss" in f.get("tags", [])]
        self.assertEqual(len(served), 3, shown)
        self.assertEqual(len(missed), 1, shown)
        live_ids = {f["id"] for f in self.list_json("--session", "live")}
        for f in served:
            self.assertIn(str(f["origin"]), {str(i) for i in live_ids})
        self.assertEqual(missed[0]["response"]["status"], 404)

        # Reverse mode, with an upstream that does not exist, and --on-miss 502.
        rec, port = self.start_record("--session", "mocked-rev", "--server-replay", "live",
                                      "--mode", f"reverse:http://127.0.0.1:{up.port}",
                                      "--on-miss", "502", "-q")
        r = curl(f"http://127.0.0.1:{port}/json")
        self.assertEqual(r.stdout, recorded_json)
        r = curl("-w", "%{http_code}", f"http://127.0.0.1:{port}/other")
        self.assertTrue(r.stdout.endswith(b"502"), r.stdout)
        self.stop(rec)

    def test_server_replay_flags_need_a_session_and_check_their_values(self):
        r = self.retake("record", "--on-miss", "502")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--server-replay", r.stderr)
        r = self.retake("record", "--server-replay", "x", "--on-miss", "maybe",
                        "--listen", "127.0.0.1:0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--on-miss", r.stderr)
        r = self.retake("record", "--server-replay", "same", "--session", "same")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot be the one recorded into", r.stderr)

    def test_bad_tls_flags_are_usage_errors(self):
        r = self.retake("record", "--ignore-hosts", "(unclosed")
        self.assertEqual(r.returncode, 2)
        self.assertIn("ignore_hosts", r.stderr)
        r = self.retake("record", "--tls")
        self.assertEqual(r.returncode, 2)
        r = self.retake("record", "--mode", "reverse:http://127.0.0.1:1", "--cert", "x.pem")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--key", r.stderr)

    def record_websocket(self, session, client, expected):
        """Records a WebSocket exchange through reverse mode to ws_peer.py's echo server:
        client(port) is the argv of a ws_peer.py-like client expected to print `expected`.
        Checks what `flows show` prints of it and returns the flow's id and that text."""
        ws = self.start_script("/usr/bin/python3", os.path.join(RECORD_TESTS, "ws_peer.py"),
                               "server")
        rec, port = self.start_record("--mode", f"reverse:http://127.0.0.1:{ws}",
                                      "--session", session, "-q")
        r = subprocess.run(client(port), capture_output=True, text=True, timeout=60)
        self.assertEqual(r.stdout, expected, r.stderr)
        code, _, err = self.stop(rec)
        self.assertEqual(code, 0, err)
        flows = self.list_json("--session", session)
        self.assertEqual(len(flows), 1)
        # Not a terminal: payloads are printed raw (the close frame's payload starts with the
        # code as two bytes), so read bytes.
        shown = subprocess.run([RETAKE, "flows", "show", flows[0]["id"]], capture_output=True,
                               env=self.env, timeout=30).stdout.decode(errors="replace")
        self.assertIn("# websocket: ", shown)
        self.assertIn("opcode 1: hello", shown)
        self.assertIn("opcode 1: frag1frag2", shown)
        self.assertIn("# closed by client: 4001 done", shown)
        return flows[0]["id"], shown

    def test_websocket_messages_are_recorded_and_shown(self):
        self.record_websocket("ws", lambda port: [
            "/usr/bin/python3", os.path.join(RECORD_TESTS, "ws_peer.py"), "client",
            f"ws://127.0.0.1:{port}/chat"], "ok\n")

    def test_websocket_over_http2_is_recorded_and_shown_like_http1(self):
        # python3-h2 + python3-wsproto speaking h2c with extended CONNECT (RFC 8441).
        flow_id, shown = self.record_websocket("ws2", lambda port: [
            "/usr/bin/python3", os.path.join(RECORD_TESTS, "ws_h2_peer.py"), "client", "echo",
            "--h2c", f"127.0.0.1:{port}"], "ok deflate=True\n")
        self.assertIn("CONNECT /chat HTTP/2\r\n:protocol: websocket\r\n", shown)
        self.assertIn("HTTP/1.1 101 Switching Protocols", shown)
        doc = json.loads(self.retake("flows", "show", "--json", flow_id, check=0).stdout)
        self.assertEqual(doc["request"]["method"], "CONNECT")
        self.assertEqual(doc["request"]["http_version"], "HTTP/2")
        self.assertEqual(doc["response"]["status"], 101)
        self.assertEqual(doc["response"]["http_version"], "HTTP/1.1")
        self.assertIsNone(doc["error"])
        ws_doc = doc["websocket"]
        self.assertEqual((ws_doc["close_code"], ws_doc["close_reason"], ws_doc["closed_by_client"]),
                         (4001, "done", True))
        texts = [(m["from_client"], m["payload"]) for m in ws_doc["messages"] if m["opcode"] == 1]
        self.assertEqual(texts, [(True, "hello"), (False, "hello"), (True, "frag1frag2"),
                                 (False, "frag1frag2")])

    def test_unreachable_upstream_is_a_502_and_an_error_flow(self):
        dead = free_port()
        rec, port = self.start_record("--mode", f"reverse:http://127.0.0.1:{dead}",
                                      "--session", "dead", "-q")
        r = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/x")
        self.assertEqual(r.stdout, b"502")
        self.stop(rec)
        flows = self.list_json("--session", "dead")
        self.assertEqual(len(flows), 1)
        self.assertEqual(flows[0]["error"]["kind"], "upstream_unreachable")

    def test_flows_survive_a_killed_recorder(self):
        with Upstream() as up:
            rec, port = self.start_record("--mode", f"reverse:http://127.0.0.1:{up.port}",
                                          "--session", "kill", "-q")
            for i in range(20):
                self.assertEqual(curl(f"http://127.0.0.1:{port}/n{i}").returncode, 0)
            # Wait until all 20 are visible to a reader, then kill -9 the recorder.
            deadline = time.time() + 10
            while time.time() < deadline and len(self.list_json("--session", "kill")) < 20:
                time.sleep(0.2)
            rec.send_signal(signal.SIGKILL)
            rec.wait()
        flows = self.list_json("--session", "kill")
        self.assertEqual(len(flows), 20)
        self.assertEqual(flows[19]["url"], f"http://127.0.0.1:{up.port}/n19")
        # The store reopens for writing after the kill.
        self.assertEqual(self.retake("flows", "delete", flows[0]["id"]).returncode, 0)
        self.assertEqual(len(self.list_json("--session", "kill")), 19)

    def test_second_recorder_on_a_busy_port_fails(self):
        rec, port = self.start_record("-q", "--db", os.path.join(self.home, "db1"))
        r = subprocess.run([RETAKE, "record", "--listen", f"127.0.0.1:{port}", "--db",
                            os.path.join(self.home, "db2")], capture_output=True, text=True,
                           env=self.env, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn(str(port), r.stderr)
        self.stop(rec)


if __name__ == "__main__":
    RETAKE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
