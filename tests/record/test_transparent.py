#!/usr/bin/env python3
"""Transparent mode end to end: iptables REDIRECT inside a private network namespace.

Usage: test_transparent.py RETAKE_BINARY   (ctest passes it)

The test re-runs itself under `unshare -n`: a namespace with only its own loopback, so the
redirect rule touches nothing outside the test. Clients bind 127.0.0.2 and only their traffic to
the upstream port is redirected to retake (iptables -t nat OUTPUT ... REDIRECT); retake's own
connection to the original destination leaves from 127.0.0.1 and is not redirected again.
Exits 77 (ctest: skipped) with the reason when the machine cannot do this: not root, or no
unshare / iptables.
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
UPSTREAM = os.path.join(HERE, "http1_upstream.py")
CLIENT_ADDR = "127.0.0.2"
SKIP = 77


def run(*args, timeout=30, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)


def curl(*args):
    return run("curl", "-sS", "--max-time", "10", "--interface", CLIENT_ADDR, *args)


class Upstream:
    def __init__(self, tls=None):
        extra = ["--tls", *tls] if tls else []
        self.proc = subprocess.Popen([sys.executable, UPSTREAM, *extra], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class TransparentTest(unittest.TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="retake-transparent-")
        self.env = dict(os.environ, RETAKE_HOME=self.home)
        self.rules = []

    def tearDown(self):
        for rule in self.rules:
            run("iptables", "-t", "nat", "-D", *rule)
        shutil.rmtree(self.home, ignore_errors=True)

    def redirect(self, port, to_port):
        rule = ["OUTPUT", "-p", "tcp", "-s", CLIENT_ADDR, "-d", "127.0.0.1", "--dport", str(port),
                "-j", "REDIRECT", "--to-ports", str(to_port)]
        r = run("iptables", "-t", "nat", "-A", *rule)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.rules.append(rule)

    def record(self, *extra):
        port = free_port()
        p = subprocess.Popen([RETAKE, "record", "--mode", "transparent", "--listen",
                              f"127.0.0.1:{port}", "--session", "tp", "-q", *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=self.env)
        wait_port(port)
        return p, port

    def stop(self, p):
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 0, err)

    def flows(self):
        r = run(RETAKE, "flows", "list", "--json", "--session", "tp", env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def test_redirected_http_is_recorded_with_the_original_destination(self):
        up = Upstream()
        try:
            rec, port = self.record()
            self.redirect(up.port, port)
            r = curl(f"http://127.0.0.1:{up.port}/size/100", "-o", "/dev/null",
                     "-w", "%{http_code}")
            self.assertEqual(r.stdout, "200", r.stderr)
            r = curl("-H", "Host: app.test", f"http://127.0.0.1:{up.port}/headers")
            self.assertEqual(r.returncode, 0, r.stderr)
            # The upstream got the request through retake, from retake's address.
            self.assertIn("Host: app.test", r.stdout)
            # A connection that was not redirected has no original destination of its own.
            r = run("curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                    f"http://127.0.0.1:{port}/direct")
            self.assertEqual(r.stdout, "502", r.stderr)
            self.stop(rec)
        finally:
            up.close()
        flows = self.flows()
        errors = [f for f in flows if "error" in f]
        by_path = {f["url"].split("/", 3)[3]: f for f in flows if "error" not in f}
        self.assertEqual(set(by_path), {"size/100", "headers"}, flows)
        self.assertEqual(by_path["size/100"]["url"], f"http://127.0.0.1:{up.port}/size/100")
        self.assertEqual(by_path["size/100"]["status"], 200)
        self.assertEqual(by_path["size/100"]["size"], 100)
        # The Host header names the flow; the connection went to the original destination.
        self.assertEqual(by_path["headers"]["url"], "http://app.test/headers")
        self.assertEqual(len(errors), 1, flows)
        self.assertEqual(errors[0]["error"]["kind"], "upstream_unreachable")
        self.assertIn("not redirected", errors[0]["error"]["message"])

    def test_redirected_tls_is_intercepted_for_the_client_sni(self):
        key = os.path.join(self.home, "up.key")
        cert = os.path.join(self.home, "up.pem")
        r = run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost")
        self.assertEqual(r.returncode, 0, r.stderr)
        up = Upstream(tls=[cert, key])
        try:
            rec, port = self.record("--upstream-ca", cert)
            self.redirect(up.port, port)
            ca = run(RETAKE, "ca", "path", env=self.env).stdout.strip()
            self.assertTrue(os.path.exists(ca), ca)
            r = curl("--cacert", ca, "--resolve", f"localhost:{up.port}:127.0.0.1",
                     f"https://localhost:{up.port}/size/10", "-o", "/dev/null",
                     "-w", "%{http_code}")
            self.assertEqual(r.stdout, "200", r.stderr)
            self.stop(rec)
        finally:
            up.close()
        flows = self.flows()
        self.assertEqual(len(flows), 1, flows)
        self.assertEqual(flows[0]["url"], f"https://localhost:{up.port}/size/10")
        self.assertEqual(flows[0]["status"], 200)
        self.assertNotIn("error", flows[0])
        shown = run(RETAKE, "flows", "show", flows[0]["id"], env=self.env)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        # curl negotiated h2 with retake (ALPN); the HTTP/1.1 upstream got HTTP/1.1.
        self.assertIn("alpn h2", shown.stdout)
        self.assertIn("GET /size/10 HTTP/2", shown.stdout)
        self.assertIn("HTTP/1.1 200 OK", shown.stdout)


def cannot_run():
    if os.geteuid() != 0:
        return "needs root for a network namespace and iptables"
    for tool in ("unshare", "iptables", "ip", "curl", "openssl"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} not found (scripts/install-deps.sh installs it)"
    return None


if __name__ == "__main__":
    RETAKE = os.path.abspath(sys.argv.pop(1))
    if os.environ.get("RETAKE_TEST_NETNS") != "1":
        why = cannot_run()
        if why:
            print(f"skipped: {why}")
            sys.exit(SKIP)
        probe = run("unshare", "-n", "true")
        if probe.returncode != 0:
            print(f"skipped: cannot create a network namespace: {probe.stderr.strip()}")
            sys.exit(SKIP)
        env = dict(os.environ, RETAKE_TEST_NETNS="1")
        os.execvpe("unshare", ["unshare", "-n", sys.executable, os.path.abspath(__file__),
                               RETAKE, *sys.argv[1:]], env)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    probe = run("iptables", "-t", "nat", "-L", "OUTPUT")
    if probe.returncode != 0:
        print(f"skipped: iptables nat table unavailable: {probe.stderr.strip()}")
        sys.exit(SKIP)
    unittest.main()
