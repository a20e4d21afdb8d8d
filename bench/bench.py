#!/usr/bin/env python3
"""Recording throughput of retake beside its peers, in one run on one machine.

Starts a local nginx backend that serves a small body, then measures with wrk:
  direct      wrk -> backend
  nginx       wrk -> nginx as a plain reverse proxy (keep-alive upstream, no access log)
  retake      wrk -> `retake record --mode reverse:...` (recording every flow to its store)
  mitmdump    wrk -> `mitmdump --mode reverse:...` (Debian's mitmproxy)
at 1 and 50 connections, and prints req/s, latency, the ratios retake/nginx and
retake/mitmdump, the latency each proxy adds at 1 connection, and retake's RSS idle and after
recording at least 100k flows. The targets are measured in turn, --rounds times over: this
machine's speed drifts by tens of percent between minutes, so each ratio is taken within a
round (peers measured seconds apart) and the median of the rounds' ratios is reported, with
every round's value beside it. The table shows each target's median round.

Usage: bench/bench.py [--duration 6] [--rounds 3] [--retake build/cli/retake] [--skip-mitmdump]
                      [--https | --h2 | --serve]
Needs: nginx-light, wrk, mitmproxy (scripts/install-deps.sh --bench installs them).

--https measures HTTPS through the explicit proxy instead (TLS intercepted, flows recorded):
an nginx HTTPS backend with a self-signed certificate, hey (Debian's `hey`) with keep-alive and
with -disable-keepalive (a new connection, so two TLS handshakes, per request), direct vs
`retake record` (explicit, --upstream-ca) vs `mitmdump` (explicit, ssl_insecure), and prints the
ratios retake/direct and retake/mitmdump. hey does not verify certificates, so the client side
needs no CA set-up.
--h2 measures HTTP/2 through reverse mode with h2load (nghttp2-client), prior knowledge (h2c),
10 streams per connection, at 1 and 10 connections: h2load -> nginx (listen http2, proxy_pass to
the HTTP/1.1 backend) vs h2load -> `retake record --mode reverse:http://backend` (h2 -> HTTP/1.1,
recording) vs `retake record --mode reverse:h2c://backend-h2` (h2 -> h2, recording, against an
nginx h2c backend) vs h2load -> the h2c backend directly; prints ratios retake/nginx.
mitmdump has no h2c listener, so it is not part of this run.
--serve measures server replay: wrk at 1 and 50 connections against nginx serving the body
itself (the static baseline), `retake serve` answering from a session recorded from it, and
`mitmdump -S` (reverse mode, server_replay_nopop, server_replay_kill_extra) answering from
its own recording of the same request; prints the ratios retake/nginx and retake/mitmdump.
Only loopback addresses are used; every process started here is stopped at the end.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree_rss_kb(pid):
    """RSS of a process and its children (nginx master + workers)."""
    total = rss_kb(pid)
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                             text=True).stdout.split()
        total += sum(rss_kb(int(p)) for p in out)
    except Exception:
        pass
    return total


NGINX_BACKEND = """
daemon off; worker_processes {workers}; pid {dir}/{name}.pid; error_log {dir}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
}}
"""

NGINX_PROXY = """
daemon off; worker_processes {workers}; pid {dir}/proxy.pid; error_log {dir}/proxy-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def parse_wrk(text):
    def num(pattern, conv=float):
        m = re.search(pattern, text)
        return conv(m.group(1)) if m else None

    def to_ms(value, unit):
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    result = {"rps": num(r"Requests/sec:\s+([\d.]+)"), "requests": num(r"(\d+) requests in", int)}
    m = re.search(r"Latency\s+([\d.]+)(us|ms|s)", text)
    result["lat_avg_ms"] = to_ms(*m.groups()) if m else None
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", text)
        result[f"p{pct}_ms"] = to_ms(*m.groups()) if m else None
    result["errors"] = num(r"Non-2xx or 3xx responses: (\d+)", int) or 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        result["errors"] += sum(int(x) for x in m.groups())
    return result


NGINX_TLS_BACKEND = """
daemon off; worker_processes 1; pid {dir}/backend.pid; error_log {dir}/backend-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} ssl backlog=4096;
    ssl_certificate {dir}/up.pem; ssl_certificate_key {dir}/up.key;
    ssl_session_cache shared:tls:1m;
    keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
}}
"""


NGINX_H2_BACKEND = """
daemon off; worker_processes 1; pid {dir}/backend-h2.pid; error_log {dir}/backend-h2-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} http2 backlog=4096;
    keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
}}
"""

NGINX_H2_PROXY = """
daemon off; worker_processes {workers}; pid {dir}/proxy-h2.pid; error_log {dir}/proxy-h2-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} http2 backlog=4096;
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def run_h2load(port, connections, duration, streams=10):
    cmd = ["h2load", "-D", str(duration), "-c", str(connections), "-m", str(streams),
           f"http://127.0.0.1:{port}/api/items?id=1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed",
                   out)
    return {"rps": float(rps.group(1)) if rps else 0.0,
            "ok": int(ok.group(1)) if ok else 0, "failed": int(ok.group(2)) if ok else 0}


class Results(dict):
    """{(name, conns): result}: each target's median round by req/s. `rounds` keeps every
    round's {(name, conns): result}: ratios are taken within a round, where the peers ran
    seconds apart, because this machine's speed drifts by tens of percent between minutes."""

    def __init__(self):
        super().__init__()
        self.rounds = []


def measure(targets, connections, duration, run, label="", rounds=1):
    """Runs run(target, conns, seconds) for every (name, target) at every connection count,
    `rounds` times over (the targets alternate within a round): 1 s of warm-up (connections,
    pools, caches, certificates), then `duration` s measured. Prints each figure to stderr as
    it comes; returns Results."""
    results = Results()
    for i in range(rounds):
        this = {}
        for conns in connections:
            for name, target in targets:
                run(target, conns, 1)
                r = run(target, conns, duration)
                this[(name, conns)] = r
                extra = "".join(f" ({r[k]} {k})" for k in ("failed", "errors") if k in r)
                tag = f"round {i + 1} " if rounds > 1 else ""
                print(f"  measured {tag}{name:13s} {label}c={conns:<3d} {r['rps'] or 0:>10.0f} "
                      f"req/s{extra}", file=sys.stderr)
        results.rounds.append(this)
    for key in results.rounds[0]:
        ordered = sorted((r[key] for r in results.rounds), key=lambda r: r["rps"] or 0)
        results[key] = ordered[len(ordered) // 2]
    return results


def ratio(results, a, b, digits=2):
    """results[a] over results[b] as text ("0.77x"): the median of the ratios taken within
    each round, followed by every round's ratio when there were several."""
    values = [(r[a]["rps"] or 0) / r[b]["rps"] for r in results.rounds
              if r.get(b) and r[b]["rps"]]
    if not values:
        return "n/a"
    text = f"{statistics.median(values):.{digits}f}x"
    if len(values) > 1:
        text += " (rounds " + " ".join(f"{v:.{digits}f}" for v in values) + ")"
    return text


def h2_bench(args, nginx):
    work = tempfile.mkdtemp(prefix="retake-bench-h2-")
    procs = Procs()
    body = '{"id":1,"name":"item","tags":["a","b"],"price":12.5,"ok":true}' * 8
    try:
        backend = free_port()
        with open(f"{work}/backend.conf", "w") as f:
            f.write(NGINX_BACKEND.format(dir=work, port=backend, body=body, workers=1,
                                          name="backend"))
        procs.start([nginx, "-p", work, "-c", f"{work}/backend.conf"])
        backend_h2 = free_port()
        with open(f"{work}/backend-h2.conf", "w") as f:
            f.write(NGINX_H2_BACKEND.format(dir=work, port=backend_h2, body=body))
        procs.start([nginx, "-p", work, "-c", f"{work}/backend-h2.conf"])
        proxy = free_port()
        with open(f"{work}/proxy-h2.conf", "w") as f:
            f.write(NGINX_H2_PROXY.format(dir=work, port=proxy, backend=backend,
                                          workers=args.threads))
        procs.start([nginx, "-p", work, "-c", f"{work}/proxy-h2.conf"])
        env = dict(os.environ, RETAKE_HOME=f"{work}/home")
        rt_h1 = free_port()
        procs.start([args.retake, "record", "--mode", f"reverse:http://127.0.0.1:{backend}",
                     "--listen", f"127.0.0.1:{rt_h1}", "--db", f"{work}/db", "--session", "h2-h1",
                     "--threads", str(args.threads), "-q"], env=env)
        wait_port(rt_h1)
        rt_h2 = free_port()
        procs.start([args.retake, "record", "--mode", f"reverse:h2c://127.0.0.1:{backend_h2}",
                     "--listen", f"127.0.0.1:{rt_h2}", "--db", f"{work}/db2", "--session",
                     "h2-h2", "--threads", str(args.threads), "-q"], env=env)
        for p in (backend, backend_h2, proxy, rt_h2):
            wait_port(p)
        targets = [("direct-h2c", backend_h2), ("nginx", proxy), ("retake h2>h1", rt_h1),
                   ("retake h2>h2", rt_h2)]
        results = measure(targets, (1, 10), args.duration, run_h2load, rounds=args.rounds)
        print()
        print(f"retake HTTP/2 (reverse mode, h2c, recording) benchmark ({args.duration}s per run, "
              f"h2load -m 10, {args.threads} retake threads / nginx workers)")
        print(f"{'target':14s} {'conns':>5s} {'req/s':>10s} {'ok':>9s} {'failed':>7s}")
        for (name, conns), r in results.items():
            print(f"{name:14s} {conns:5d} {r['rps']:10.0f} {r['ok']:9d} {r['failed']:7d}")
        print()
        for conns in (1, 10):
            for name in ("retake h2>h1", "retake h2>h2"):
                print(f"c={conns:<3d} {name}: retake/nginx = "
                      f"{ratio(results, (name, conns), ('nginx', conns))}")
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def serve_bench(args, nginx, mitmdump):
    work = tempfile.mkdtemp(prefix="retake-bench-serve-")
    procs = Procs()
    body = '{"id":1,"name":"item","tags":["a","b"],"price":12.5,"ok":true}' * 8
    env = dict(os.environ, RETAKE_HOME=f"{work}/home")
    url_path = "/api/items?id=1"
    try:
        backend = free_port()
        with open(f"{work}/backend.conf", "w") as f:
            f.write(NGINX_BACKEND.format(dir=work, port=backend, body=body, workers=1,
                                          name="backend"))
        procs.start([nginx, "-p", work, "-c", f"{work}/backend.conf"])
        wait_port(backend)
        # One recorded exchange each, from the same backend.
        rec_port = free_port()
        rec = procs.start([args.retake, "record", "--mode", f"reverse:http://127.0.0.1:{backend}",
                           "--listen", f"127.0.0.1:{rec_port}", "--db", f"{work}/db",
                           "--session", "static", "-q"], env=env)
        wait_port(rec_port)
        subprocess.run(["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{rec_port}{url_path}"],
                       check=True)
        procs.stop(rec)
        serve_port = free_port()
        procs.start([args.retake, "serve", "--session", "static", "--db", f"{work}/db",
                     "--listen", f"127.0.0.1:{serve_port}", "--threads", str(args.threads),
                     "-q", "--no-refresh"], env=env)
        wait_port(serve_port)
        # The static peer runs as many workers as retake runs threads (--threads), like every
        # other comparison here; the backend that fed the recording stays at one.
        static = free_port()
        with open(f"{work}/static.conf", "w") as f:
            f.write(NGINX_BACKEND.format(dir=work, port=static, body=body, workers=args.threads,
                                         name="static"))
        procs.start([nginx, "-p", work, "-c", f"{work}/static.conf"])
        wait_port(static)
        targets = [("nginx", static), ("retake", serve_port)]
        if mitmdump and not args.skip_mitmdump:
            mp = free_port()
            m = procs.start([mitmdump, "-q", "--listen-host", "127.0.0.1", "-p", str(mp),
                             "--mode", f"reverse:http://127.0.0.1:{backend}", "-w",
                             f"{work}/flows.mitm", "--set", f"confdir={work}/mitm"])
            wait_port(mp, timeout=30)
            subprocess.run(["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{mp}{url_path}"],
                           check=True)
            procs.stop(m)
            ms = free_port()
            procs.start([mitmdump, "-q", "--listen-host", "127.0.0.1", "-p", str(ms),
                         "--mode", f"reverse:http://127.0.0.1:{backend}", "-S",
                         f"{work}/flows.mitm", "--set", "server_replay_nopop=true", "--set",
                         "server_replay_kill_extra=true", "--set", f"confdir={work}/mitm"])
            wait_port(ms, timeout=30)
            targets.append(("mitmdump", ms))
        results = measure(targets, (1, 50), args.duration, run_wrk, rounds=args.rounds)
        print()
        print(f"retake serve (server replay) benchmark ({args.duration}s per run, wrk, "
              f"{args.threads} retake threads, {args.threads} nginx workers serving the body "
              f"itself)")
        print(f"{'target':10s} {'conns':>5s} {'req/s':>10s} {'p50 ms':>8s} {'errors':>7s}")
        for (name, conns), r in results.items():
            print(f"{name:10s} {conns:5d} {r['rps'] or 0:10.0f} {r['p50_ms'] or 0:8.3f} "
                  f"{r['errors']:7d}")
        print()
        for conns in (1, 50):
            line = (f"c={conns:<3d} retake/nginx-static = "
                    f"{ratio(results, ('retake', conns), ('nginx', conns))}")
            if ("mitmdump", conns) in results:
                line += (f"  retake/mitmdump = "
                         f"{ratio(results, ('retake', conns), ('mitmdump', conns), 1)}")
            print(line)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def run_hey(url, connections, duration, proxy=None, keepalive=True):
    cmd = ["hey", "-z", f"{duration}s", "-c", str(connections)]
    if proxy:
        cmd += ["-x", proxy]
    if not keepalive:
        cmd.append("-disable-keepalive")
    out = subprocess.run(cmd + [url], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    codes = re.search(r"\[200\]\s+(\d+) responses", out)
    return {"rps": float(m.group(1)) if m else 0.0, "ok": int(codes.group(1)) if codes else 0}


def https_bench(args, nginx, mitmdump):
    work = tempfile.mkdtemp(prefix="retake-bench-https-")
    procs = Procs()
    body = '{"id":1,"name":"item","tags":["a","b"],"price":12.5,"ok":true}' * 8
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{work}/up.key",
                        "-out", f"{work}/up.pem", "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        backend = free_port()
        with open(f"{work}/backend.conf", "w") as f:
            f.write(NGINX_TLS_BACKEND.format(dir=work, port=backend, body=body))
        procs.start([nginx, "-p", work, "-c", f"{work}/backend.conf"])
        wait_port(backend)
        url = f"https://127.0.0.1:{backend}/api/items?id=1"

        rt_port = free_port()
        env = dict(os.environ, RETAKE_HOME=f"{work}/home")
        procs.start([args.retake, "record", "--listen", f"127.0.0.1:{rt_port}", "--db",
                     f"{work}/db", "--session", "bench", "--threads", str(args.threads),
                     "--upstream-ca", f"{work}/up.pem", "-q"], env=env)
        wait_port(rt_port)
        targets = [("direct", None), ("retake", f"http://127.0.0.1:{rt_port}")]
        if mitmdump and not args.skip_mitmdump:
            mitm_port = free_port()
            procs.start([mitmdump, "-q", "--listen-host", "127.0.0.1", "-p", str(mitm_port),
                         "--set", f"confdir={work}/mitm", "--set", "ssl_insecure=true"])
            wait_port(mitm_port, timeout=30)
            targets.append(("mitmdump", f"http://127.0.0.1:{mitm_port}"))

        results, parts = {}, {}
        for keepalive in (True, False):
            part = measure(targets, (1, 50), args.duration,
                           lambda proxy, c, d: run_hey(url, c, d, proxy, keepalive),
                           label="keep-alive " if keepalive else "new-conn   ",
                           rounds=args.rounds)
            parts[keepalive] = part
            results.update({(name, keepalive, c): r for (name, c), r in part.items()})
        print()
        print(f"retake HTTPS (explicit proxy, TLS intercepted, recording) benchmark "
              f"({args.duration}s per run, hey, {args.threads} retake threads)")
        print(f"{'target':10s} {'connection':>10s} {'conns':>5s} {'req/s':>10s} {'200s':>9s}")
        for (name, keepalive, conns), r in results.items():
            print(f"{name:10s} {'keep-alive' if keepalive else 'new':>10s} {conns:5d} "
                  f"{r['rps']:10.0f} {r['ok']:9d}")
        print()
        for keepalive in (True, False):
            for conns in (1, 50):
                part = parts[keepalive]
                line = (f"{'keep-alive' if keepalive else 'new conn':10s} c={conns:<3d} "
                        f"retake/direct = {ratio(part, ('retake', conns), ('direct', conns))}")
                if ("mitmdump", conns) in part:
                    line += (f"  retake/mitmdump = "
                             f"{ratio(part, ('retake', conns), ('mitmdump', conns), 1)}")
                print(line)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def run_wrk(port, connections, duration):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
           f"http://127.0.0.1:{port}/api/items?id=1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    return parse_wrk(out)


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, cmd, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=6, help="seconds per measured run")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds over all targets; ratios are the median of each round's")
    ap.add_argument("--retake", default=os.path.join(ROOT, "build", "cli", "retake"))
    ap.add_argument("--skip-mitmdump", action="store_true")
    ap.add_argument("--rss-only", action="store_true",
                    help="only retake's RSS: idle, then after recording 100k flows (no peers)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                    help="worker threads/processes for retake and nginx (same for both)")
    ap.add_argument("--https", action="store_true",
                    help="HTTPS through the explicit proxy with hey, instead of wrk over HTTP")
    ap.add_argument("--serve", action="store_true",
                    help="server replay: wrk against retake serve, nginx static, mitmdump -S")
    ap.add_argument("--h2", action="store_true",
                    help="HTTP/2 (h2c) through reverse mode with h2load, instead of wrk")
    args = ap.parse_args()

    for tool in ("nginx", "wrk"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"bench: {tool} not found; run scripts/install-deps.sh --bench")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(args.retake):
        sys.exit(f"bench: {args.retake} not found; run scripts/build.sh")
    mitmdump = shutil.which("mitmdump")
    if not mitmdump and not args.skip_mitmdump:
        sys.exit("bench: mitmdump not found; install mitmproxy or pass --skip-mitmdump")
    if args.serve:
        return serve_bench(args, nginx, mitmdump)
    if args.h2:
        if not shutil.which("h2load"):
            sys.exit("bench: h2load not found; apt-get install nghttp2-client")
        return h2_bench(args, nginx)
    if args.https:
        if not shutil.which("hey"):
            sys.exit("bench: hey not found; apt-get install hey")
        return https_bench(args, nginx, mitmdump)

    work = tempfile.mkdtemp(prefix="retake-bench-")
    procs = Procs()
    body = '{"id":1,"name":"item","tags":["a","b"],"price":12.5,"ok":true}' * 8
    try:
        backend = free_port()
        with open(f"{work}/backend.conf", "w") as f:
            f.write(NGINX_BACKEND.format(dir=work, port=backend, body=body, workers=1,
                                          name="backend"))
        procs.start([nginx, "-p", work, "-c", f"{work}/backend.conf"])
        wait_port(backend)

        proxy = free_port()
        with open(f"{work}/proxy.conf", "w") as f:
            f.write(NGINX_PROXY.format(dir=work, port=proxy, backend=backend,
                                       workers=args.threads))
        nginx_proxy = procs.start([nginx, "-p", work, "-c", f"{work}/proxy.conf"])
        wait_port(proxy)

        rt_port = free_port()
        env = dict(os.environ, RETAKE_HOME=f"{work}/home")
        retake = procs.start([args.retake, "record", "--mode",
                              f"reverse:http://127.0.0.1:{backend}", "--listen",
                              f"127.0.0.1:{rt_port}", "--db", f"{work}/db", "--session", "bench",
                              "--threads", str(args.threads), "-q"], env=env)
        wait_port(rt_port)
        time.sleep(0.5)
        retake_idle_kb = rss_kb(retake.pid)

        if args.rss_only:
            recorded = 0
            while recorded < 100_000:
                recorded += run_wrk(rt_port, 50, 5)["requests"] or 0
            time.sleep(1.0)
            loaded_kb = rss_kb(retake.pid)
            with open(f"/proc/{retake.pid}/status") as f:
                anon = next((l.split()[1] for l in f if l.startswith("RssAnon:")), "?")
            procs.stop(retake)
            err = retake.stderr.read().decode(errors="replace")
            m = re.search(r"recorded (\d+) flows", err)
            print(f"retake RSS: idle {retake_idle_kb / 1024:.1f} MB, after {recorded} requests "
                  f"({m.group(1) if m else '?'} flows stored) {loaded_kb / 1024:.1f} MB "
                  f"(anonymous {int(anon) / 1024:.1f} MB)")
            return

        targets = [("direct", backend), ("nginx", proxy), ("retake", rt_port)]
        mitm = None
        if not args.skip_mitmdump:
            mitm_port = free_port()
            mitm = procs.start([mitmdump, "-q", "--listen-host", "127.0.0.1", "-p", str(mitm_port),
                                "--mode", f"reverse:http://127.0.0.1:{backend}",
                                "--set", f"confdir={work}/mitm"])
            wait_port(mitm_port, timeout=30)
            targets.append(("mitmdump", mitm_port))

        results = measure(targets, (1, 50), args.duration, run_wrk, rounds=args.rounds)

        # Make sure retake has recorded at least 100k flows before reading its RSS.
        recorded = sum(r[("retake", c)]["requests"] or 0 for r in results.rounds for c in (1, 50))
        while recorded < 100_000:
            r = run_wrk(rt_port, 50, 5)
            recorded += r["requests"] or 0
        time.sleep(1.0)
        retake_loaded_kb = rss_kb(retake.pid)
        nginx_rss_kb = tree_rss_kb(nginx_proxy.pid)
        mitm_rss_kb = rss_kb(mitm.pid) if mitm else None
        procs.stop(retake)
        err = retake.stderr.read().decode(errors="replace")
        m = re.search(r"recorded (\d+) flows", err)
        stored = int(m.group(1)) if m else None

        print()
        print(f"retake recording benchmark ({args.duration}s per run, wrk -t1, "
              f"{args.threads} threads/workers for retake and nginx, body {len(body)} bytes)")
        print(f"{'target':10s} {'conns':>5s} {'req/s':>10s} {'avg ms':>8s} {'p50 ms':>8s} "
              f"{'p99 ms':>8s} {'errors':>7s}")
        for (name, conns), r in results.items():
            print(f"{name:10s} {conns:5d} {r['rps']:10.0f} {r['lat_avg_ms']:8.3f} "
                  f"{r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['errors']:7d}")
        print()
        for conns in (1, 50):
            rt = ("retake", conns)
            line = f"c={conns:<3d} retake/nginx = {ratio(results, rt, ('nginx', conns))}"
            line += f"  retake/direct = {ratio(results, rt, ('direct', conns))}"
            if mitm:
                line += f"  retake/mitmdump = {ratio(results, rt, ('mitmdump', conns), 1)}"
            print(line)
        direct_p50 = results[("direct", 1)]["p50_ms"]
        print(f"added latency at 1 connection (p50 over direct): "
              f"retake {results[('retake', 1)]['p50_ms'] - direct_p50:.3f} ms, "
              f"nginx {results[('nginx', 1)]['p50_ms'] - direct_p50:.3f} ms"
              + (f", mitmdump {results[('mitmdump', 1)]['p50_ms'] - direct_p50:.3f} ms" if mitm else ""))
        print(f"retake RSS: idle {retake_idle_kb / 1024:.1f} MB, after {recorded} requests "
              f"({stored} flows stored) {retake_loaded_kb / 1024:.1f} MB"
              f"; nginx proxy (all processes) {nginx_rss_kb / 1024:.1f} MB"
              + (f"; mitmdump {mitm_rss_kb / 1024:.1f} MB" if mitm_rss_kb else ""))
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
