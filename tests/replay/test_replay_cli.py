#!/usr/bin/env python3
"""End-to-end tests of `retake replay`: a session recorded through `retake record` (reverse
proxy) against test-app instance A is replayed against a fresh instance B.

Usage: test_replay_cli.py RETAKE_BINARY   (ctest passes it)
Everything runs on 127.0.0.1 with ephemeral ports and a temporary RETAKE_HOME.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from datetime import datetime, timezone

RETAKE = None
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from ports import free_port, wait_port  # noqa: E402
APP = os.path.join(HERE, "..", "support", "app", "app.py")


class App:
    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, APP], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split()[1])
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def call(port, method, path, headers=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    out = (r.status, dict(r.getheaders()), data.decode())
    c.close()
    return out


def shop_sequence(port):
    """The five steps a browser would make, through the recording proxy on `port`."""
    s, h, b = call(port, "POST", "/login", {"Content-Type": "application/json"}, '{"user":"ann"}')
    assert s == 200, b
    token = json.loads(b)["token"]
    s, h, b = call(port, "GET", "/form", {"Cookie": f"sid={token}"})
    assert s == 200, b
    csrf = re.search(r'name="csrf" value="([^"]+)"', b).group(1)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    s, h, b = call(port, "POST", "/items", {"Cookie": f"sid={token}", "X-CSRF-Token": csrf,
                                            "Content-Type": "application/json"},
                   json.dumps({"name": "widget", "ts": now}))
    assert s == 201, b
    item = json.loads(b)["id"]
    s, h, b = call(port, "GET", f"/items/{item}", {"Authorization": f"Bearer {token}"})
    assert s == 200, b
    s, h, b = call(port, "PUT", f"/items/{item}",
                   {"Cookie": f"sid={token}", "X-Request-Time": str(int(time.time())),
                    "Content-Type": "application/x-www-form-urlencoded"},
                   f"csrf={csrf}&name=gadget")
    assert s == 200, b


class ReplayCliTest(unittest.TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="retake-replay-cli-")
        self.env = dict(os.environ, RETAKE_HOME=self.home)

    def tearDown(self):
        shutil.rmtree(self.home, ignore_errors=True)

    def retake(self, *args, timeout=60):
        return subprocess.run([RETAKE, *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout)

    def record(self, session, upstream_port, action):
        port = free_port()
        p = subprocess.Popen([RETAKE, "record", "--listen", f"127.0.0.1:{port}", "-q",
                              "--mode", f"reverse:http://127.0.0.1:{upstream_port}",
                              "--session", session],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=self.env)
        try:
            wait_port(port)
            action(port)
        finally:
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=20)

    def test_replay_against_a_fresh_instance_succeeds_and_is_stored_as_a_run(self):
        with App() as a:
            self.record("shop", a.port, shop_sequence)
        with App() as b:
            r = self.retake("replay", "--session", "shop", "--target", f"http://127.0.0.1:{b.port}",
                            "--pace", "asap", "--json", "--fail-on-mismatch")
            self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
            doc = json.loads(r.stdout)
            self.assertEqual(doc["completed"], 5)
            self.assertEqual(doc["status_mismatches"], 0)
            self.assertEqual(doc["transport_errors"], 0)
            self.assertEqual(doc["bindings_unresolved"], 0)
            self.assertGreaterEqual(doc["bindings_applied"], 8)
            self.assertTrue(doc["run"].startswith("run-"))
            listed = self.retake("flows", "list", "--json", "--session", "shop").stdout
            runs = {json.loads(l).get("run", "") for l in listed.splitlines() if l.strip()}
            self.assertIn(doc["run"], runs)

            r = self.retake("replay", "--session", "shop", "--target", f"http://127.0.0.1:{b.port}",
                            "--pace", "asap", "--bind", "none", "--fail-on-mismatch")
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("status mismatches 4", r.stdout)

            # --filter narrows the selection with the filter language (recorded flows only:
            # the runs above are replays, left out of a session's replay).
            r = self.retake("replay", "--session", "shop", "--filter", "~m POST", "--target",
                            f"http://127.0.0.1:{b.port}", "--pace", "asap", "--json",
                            "--bind", "none")
            doc = json.loads(r.stdout)
            self.assertEqual(doc["sent"], 2, r.stdout)

    def test_explicit_bindings_from_a_rules_file_replace_automatic_ones(self):
        # With --bind none only the rules file's scoped bindings (JSON path, hidden input)
        # carry the new instance's token, CSRF token and item id into later requests.
        with App() as a:
            self.record("explicit", a.port, shop_sequence)
        rules = os.path.join(self.home, "bindings.yaml")
        with open(rules, "w") as f:
            f.write('bindings:\n'
                    '  - name: token\n    from: "json:$.token"\n    when: "~u /login"\n'
                    '  - name: csrf\n    from: "hidden:csrf"\n    when: "~u /form"\n'
                    '  - name: item\n    from: "json:$.id"\n    when: "~m POST & ~u /items"\n')
        with App() as b:
            r = self.retake("replay", "--session", "explicit", "--target",
                            f"http://127.0.0.1:{b.port}", "--pace", "asap", "--bind", "none",
                            "--rules", rules, "--json", "--fail-on-mismatch")
            self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
            doc = json.loads(r.stdout)
            self.assertEqual(doc["completed"], 5)
            self.assertEqual(doc["status_mismatches"], 0)
            self.assertEqual(doc["bindings_unresolved"], 0)
            rules_used = {b["rule"] for b in doc["bindings"]}
            self.assertEqual(rules_used, {"token", "csrf", "item"}, doc["bindings"])
            # The run is listed with its results.
            listed = self.retake("runs", "--session", "explicit")
            self.assertEqual(listed.returncode, 0, listed.stderr)
            self.assertIn(doc["run"] + "  explicit -> http://127.0.0.1:", listed.stdout)
            self.assertIn("5/5 answered", listed.stdout)
        # A bad path in the rules file is a usage error naming the file, line and binding.
        with open(rules, "w") as f:
            f.write('bindings:\n  - name: token\n    from: "json:$.a["\n')
        r = self.retake("replay", "--session", "explicit", "--target", "http://127.0.0.1:9",
                        "--rules", rules)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("line 3: rule 'token'", r.stderr)
        self.assertIn("bad JSON path", r.stderr)

    def test_usage_errors_exit_2_and_missing_sessions_exit_1(self):
        r = self.retake("replay")
        self.assertEqual(r.returncode, 2)
        r = self.retake("replay", "--session", "x", "--at", "2030-01-01T00:00:00Z", "--no-shift")
        self.assertEqual(r.returncode, 2)
        self.assertIn("exclude each other", r.stderr)
        r = self.retake("replay", "--session", "x", "--pace", "fast")
        self.assertEqual(r.returncode, 2)
        r = self.retake("replay", "--session", "x", "--filter", "~c abc")
        self.assertEqual(r.returncode, 2)
        self.assertIn("column 4", r.stderr)
        with App() as a:
            self.record("one", a.port, lambda p: call(p, "GET", "/echo"))
        r = self.retake("replay", "--session", "nope")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no session named 'nope'", r.stderr)

    def test_a_target_that_is_down_gives_transport_errors_and_exit_1(self):
        with App() as a:
            self.record("down", a.port, lambda p: [call(p, "GET", "/echo") for _ in range(3)])
        r = self.retake("replay", "--session", "down", "--target", f"http://127.0.0.1:{free_port()}",
                        "--pace", "asap", "--json")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout)["transport_errors"], 3)

    def test_sigint_stops_the_run_and_keeps_what_was_replayed(self):
        with App() as a:
            self.record("slow", a.port, lambda p: call(p, "GET", "/slow?ms=100"))
            p = subprocess.Popen([RETAKE, "replay", "--session", "slow", "--loop", "200",
                                  "--target", f"http://127.0.0.1:{a.port}", "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=self.env)
            time.sleep(1.5)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20)
        doc = json.loads(out)
        self.assertTrue(doc["interrupted"])
        self.assertGreater(doc["completed"], 0)
        self.assertLess(doc["completed"], 200)


if __name__ == "__main__":
    RETAKE = sys.argv.pop(1)
    unittest.main(verbosity=2)
