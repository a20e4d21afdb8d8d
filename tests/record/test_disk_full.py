#!/usr/bin/env python3
"""A full disk while recording, on a real filesystem: a small tmpfs in a private mount namespace.

Usage: test_disk_full.py RETAKE_BINARY   (ctest passes it)

The test re-runs itself under `unshare -m`, mounts a 64 MiB tmpfs there (invisible outside,
gone with the namespace) and records into a store on it. A filler file takes the free space
under retake's --min-free-space reserve while traffic flows: the proxy must keep answering,
recording must pause (nothing written while the disk is short), and once the filler is deleted
every flow must reach the store: none lost, none failed. Stopping while paused writes what is
queued into the reserve. Exits 77 (ctest: skipped) with the reason where a mount namespace
cannot be made (not root, no unshare).
"""
import json
import os
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
SKIP = 77
MIB = 1 << 20
RESERVE = 8 * MIB


def run(*args, timeout=30, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)


def post(port, path, body):
    """One POST over a fresh connection; returns (status, response body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


class DiskFullTest(unittest.TestCase):
    def setUp(self):
        self.mount = tempfile.mkdtemp(prefix="retake-diskfull-")
        r = run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", self.mount)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.db = os.path.join(self.mount, "db")
        self.filler = os.path.join(self.mount, "filler")
        self.env = dict(os.environ, RETAKE_HOME=os.path.join(self.mount, "home"))
        self.upstream = subprocess.Popen([sys.executable, UPSTREAM], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
        self.up_port = int(self.upstream.stdout.readline())
        self.port = free_port()
        self.err = open(os.path.join(tempfile.gettempdir(), f"retake-diskfull-{os.getpid()}.err"),
                        "w+")
        self.rec = subprocess.Popen(
            [RETAKE, "record", "--mode", f"reverse:http://127.0.0.1:{self.up_port}",
             "--listen", f"127.0.0.1:{self.port}", "--db", self.db, "--session", "full", "-q",
             "--min-free-space", f"{RESERVE // MIB}MiB"],
            stdout=subprocess.DEVNULL, stderr=self.err, env=self.env)
        wait_port(self.port)

    def tearDown(self):
        if self.rec.poll() is None:
            self.rec.kill()
            self.rec.wait()
        self.upstream.stdin.close()
        self.upstream.wait(timeout=10)
        self.err.close()
        os.unlink(self.err.name)
        run("umount", self.mount)
        os.rmdir(self.mount)

    def stderr(self):
        self.err.flush()
        with open(self.err.name) as f:
            return f.read()

    def fill(self):
        """Leaves 2 MiB free: under the reserve, room enough for RocksDB to go on."""
        st = os.statvfs(self.mount)
        size = st.f_bavail * st.f_frsize - 2 * MIB
        self.assertGreater(size, 0)
        with open(self.filler, "wb") as f:
            f.write(b"\0" * size)  # tmpfs: written pages are really taken

    def stored(self):
        r = run(RETAKE, "flows", "list", "--json", "--db", self.db, "--session", "full",
                env=self.env)
        if r.returncode != 0:
            self.assertIn("no session", r.stderr + r.stdout)  # nothing written yet
            return []
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def send(self, n, tag):
        for i in range(n):
            body = os.urandom(1024)
            status, answer = post(self.port, f"/sum?{tag}={i}", body)
            self.assertEqual(status, 200)
            self.assertEqual(answer.decode(), f"size=1024 sum={sum(body)}")

    def stop(self):
        self.rec.send_signal(signal.SIGINT)
        self.assertEqual(self.rec.wait(timeout=30), 0, self.stderr())
        return self.stderr()

    def test_recording_pauses_on_a_short_disk_and_loses_nothing_once_space_is_back(self):
        self.send(5, "before")
        deadline = time.time() + 10
        while len(self.stored()) < 5 and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(self.stored()), 5)

        self.fill()
        self.send(200, "short")  # the proxy keeps answering while the disk is short
        time.sleep(0.5)          # several space checks: still paused, nothing written
        self.assertIn("recording paused", self.stderr())
        self.assertEqual(len(self.stored()), 5, self.stderr())

        os.unlink(self.filler)
        deadline = time.time() + 15
        while len(self.stored()) < 205 and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn("recording resumed with 200 queued flows", self.stderr())
        self.send(10, "after")
        err = self.stop()
        self.assertIn("recorded 215 flows", err)
        self.assertIn("0 not recorded because the store queue was full, 0 failed to write", err)
        flows = self.stored()
        self.assertEqual(len(flows), 215)
        self.assertTrue(all(f["status"] == 200 for f in flows))
        urls = {f["url"].split("?", 1)[1] for f in flows}
        self.assertEqual(urls, {f"before={i}" for i in range(5)} |
                         {f"short={i}" for i in range(200)} | {f"after={i}" for i in range(10)})

    def test_stopping_while_paused_writes_the_queue_into_the_reserve(self):
        self.fill()
        self.send(50, "short")
        time.sleep(0.3)
        self.assertEqual(len(self.stored()), 0, self.stderr())
        err = self.stop()
        self.assertIn("writing the 50 queued flows into the reserve", err)
        self.assertIn("recorded 50 flows", err)
        self.assertEqual(len(self.stored()), 50)


def cannot_run():
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs in a private mount namespace"
    for tool in ("unshare", "mount"):
        if not any(os.path.exists(f"{d}/{tool}") for d in ("/usr/bin", "/bin", "/usr/sbin")):
            return f"{tool} not found"
    return None


if __name__ == "__main__":
    RETAKE = os.path.abspath(sys.argv.pop(1))
    if os.environ.get("RETAKE_TEST_MOUNTNS") != "1":
        why = cannot_run()
        if why:
            print(f"skipped: {why}")
            sys.exit(SKIP)
        probe = run("unshare", "-m", "true")
        if probe.returncode != 0:
            print(f"skipped: cannot create a mount namespace: {probe.stderr.strip()}")
            sys.exit(SKIP)
        env = dict(os.environ, RETAKE_TEST_MOUNTNS="1")
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                               os.path.abspath(__file__), RETAKE, *sys.argv[1:]], env)
    unittest.main()
