#!/usr/bin/env python3
"""End-to-end test of `retake diff`: record a session through the reverse proxy, then compare a
baseline instance of the test application with a candidate that has injected regressions (a
changed field, a removed field, a new status) while both emit random ids and timestamps.

Usage: test_diff_cli.py RETAKE_BINARY   (ctest passes it)
Everything runs on 127.0.0.1 with ephemeral ports and a temporary RETAKE_HOME.
"""
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
import urllib.request
import xml.etree.ElementTree as ET

RETAKE = None
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from ports import free_port, wait_port  # noqa: E402
APP = os.path.join(HERE, "..", "support", "app", "app.py")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

EXPECTED = {
    ("GET /products/{id}", "$.price", "value_changed"),
    ("GET /products/{id}", "$.currency", "field_missing"),
    ("GET /health", "status", "status_changed"),
    ("GET /health", "$.ok", "value_changed"),
}
NOISE = {"$.trace", "$.served_at", "header:x-trace-id", "$.time"}


class App:
    def __init__(self, *args):
        self.args = args

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, APP, *self.args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def found_differences(report):
    return {(p["endpoint"], d["pattern"], d["kind"])
            for p in report["differing"] for d in p["differences"]}


class DiffCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.home = tempfile.mkdtemp(prefix="retake-diff-cli-test-")
        cls.env = dict(os.environ, RETAKE_HOME=cls.home)
        cls.a = App().__enter__()
        cls.a2 = App().__enter__()
        cls.b = App("--regress").__enter__()
        # Record the session through the reverse proxy in front of the baseline.
        port = free_port()
        rec = subprocess.Popen([RETAKE, "record", "--listen", f"127.0.0.1:{port}", "--mode",
                                f"reverse:{cls.a.url}", "--session", "shop", "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cls.env)
        try:
            wait_port(port)
            for path in [f"/products/{n}" for n in range(1, 7)] + ["/health"]:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    r.read()
        finally:
            rec.send_signal(signal.SIGINT)
            rec.communicate(timeout=20)
        cls.html = None

    @classmethod
    def tearDownClass(cls):
        for app in (cls.a, cls.a2, cls.b):
            app.__exit__(None, None, None)
        shutil.rmtree(cls.home, ignore_errors=True)

    def retake(self, *args, timeout=120):
        return subprocess.run([RETAKE, *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout)

    def live_diff(self, *extra):
        out = os.path.join(self.home, "live.json")
        r = self.retake("diff", "--a", self.a.url, "--b", self.b.url, "--session", "shop",
                        "--format", "json", "--output", out, *extra)
        with open(out) as f:
            report = json.load(f)
        runs = re.search(r"compared (\S+) with (\S+)", r.stderr)
        return r, report, runs.groups() if runs else None

    def test_1_live_diff_after_learning_reports_exactly_the_injected_regressions(self):
        r, report, runs = self.live_diff("--learn-noise")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("learned noise 'shop'", r.stderr)
        self.assertEqual(found_differences(report), EXPECTED)
        self.assertEqual(report["compared"], 7)
        self.assertEqual(report["different"], 7)
        noise = {p["pattern"] for e in report["endpoints"] for p in e["paths"] if p["noise"]}
        self.assertTrue(NOISE <= noise, noise)
        self.assertIsNotNone(runs)
        type(self).runs = runs

    def test_2_stored_noise_is_reused_and_no_noise_shows_it(self):
        ra, rb = self.runs
        r = self.retake("diff", "--runs", ra, rb, "--format", "json")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("using stored noise 'shop'", r.stderr)
        self.assertEqual(found_differences(json.loads(r.stdout)), EXPECTED)
        r = self.retake("diff", "--runs", ra, rb, "--format", "json", "--no-noise")
        self.assertEqual(r.returncode, 1, r.stderr)
        patterns = {d[1] for d in found_differences(json.loads(r.stdout))}
        self.assertTrue(NOISE <= patterns, patterns)
        # The baseline against itself, and the baseline run against the recording: no
        # unexplained difference, exit 0.
        r = self.retake("diff", "--runs", ra, ra)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.retake("diff", "--run", ra)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("7 compared", r.stdout)

    def test_3_ignore_filter_and_text_report(self):
        ra, rb = self.runs
        r = self.retake("diff", "--runs", ra, rb, "--ignore", "$.price", "--ignore", "$.nope",
                        "--filter", "~u /products", "--format", "json")
        self.assertEqual(r.returncode, 1, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual(report["compared"], 6)
        self.assertEqual(found_differences(report),
                         {("GET /products/{id}", "$.currency", "field_missing")})
        self.assertEqual(report["unused_rules"], ["$.nope"])
        r = self.retake("diff", "--runs", ra, rb, "--filter", "~u /health")
        self.assertEqual(r.returncode, 1)
        self.assertIn("GET /health", r.stdout)
        self.assertIn("status", r.stdout)

    def test_4_junit_is_valid_xml_with_a_failure_per_regressed_endpoint(self):
        ra, rb = self.runs
        out = os.path.join(self.home, "junit.xml")
        r = self.retake("diff", "--runs", ra, rb, "--format", "junit", "-o", out)
        self.assertEqual(r.returncode, 1, r.stderr)
        root = ET.parse(out).getroot()
        cases = root.findall(".//testcase")
        self.assertEqual({c.get("name") for c in cases}, {"GET /products/{id}", "GET /health"})
        self.assertTrue(all(c.find("failure") is not None for c in cases))

    def test_5_html_report_renders_in_headless_chromium(self):
        ra, rb = self.runs
        out = os.path.join(self.home, "report.html")
        r = self.retake("diff", "--runs", ra, rb, "--format", "html", "-o", out)
        self.assertEqual(r.returncode, 1, r.stderr)
        with open(out) as f:
            html = f.read()
        self.assertNotRegex(html, r"(src|href)=\"https?://")  # self-contained
        if not CHROMIUM:
            self.skipTest("chromium is not installed (apt-get install chromium)")
        profile = tempfile.mkdtemp(prefix="retake-chromium-", dir=self.home)
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                              "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr",
                              "--dump-dom",
                              "file://" + out], capture_output=True, text=True, timeout=90)
        self.assertEqual(dom.returncode, 0, dom.stderr[-2000:])
        self.assertIn('id="summary"', dom.stdout)
        # A rendered difference row for the changed price, and the side-by-side view.
        self.assertRegex(dom.stdout, r'<tr class="difference[^"]*"[^>]*data-path="\$\.price"')
        self.assertIn("side-by-side", dom.stdout)
        self.assertNotIn("Uncaught", dom.stderr)  # the report's script ran without errors

    def test_6_learning_alone_from_two_baseline_instances(self):
        r = self.retake("diff", "--learn-noise", "--a", self.a.url, "--a2", self.a2.url,
                        "--session", "shop", "--noise", "two-instances")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("learned noise 'two-instances'", r.stderr)
        ra, rb = self.runs
        r = self.retake("diff", "--runs", ra, rb, "--noise", "two-instances", "--format", "json")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(found_differences(json.loads(r.stdout)), EXPECTED)

    def test_7_usage_errors_exit_two(self):
        for args in (["diff"], ["diff", "--run", "x", "--runs", "a", "b"],
                     ["diff", "--run", "x", "--format", "pdf"],
                     ["diff", "--run", "x", "--ignore", "$.a[oops"],
                     ["diff", "--run", "x", "--filter", "~c abc"],
                     ["diff", "--b", "http://127.0.0.1:1", "--session", "shop"],
                     ["diff", "--a", "http://127.0.0.1:1", "--b", "http://127.0.0.1:2"]):
            r = self.retake(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
        r = self.retake("diff", "--run", "no-such-run")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no-such-run", r.stderr)
        r = self.retake("diff", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--learn-noise", r.stdout)


if __name__ == "__main__":
    RETAKE = sys.argv.pop(1)
    unittest.main(verbosity=2)
