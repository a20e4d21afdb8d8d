#!/usr/bin/env python3
"""Client replay throughput and timing fidelity of retake beside mitmdump, in one run.

1. Starts a local nginx backend (the same small JSON body as bench.py).
2. Records N requests (default 20000) through `retake record --mode reverse:...` and the same
   N through `mitmdump --mode reverse:... -w FILE` (hey drives both).
3. Throughput: `retake replay --pace asap --concurrency 50` of the recorded session against the
   backend, beside `mitmdump -n -C FILE` (mitmproxy's client replay, client_replay_concurrency
   -1, i.e. unbounded: Debian's 8.1 accepts only 1 or -1) of its own recording; prints req/s
   (the run's own span, and the command's wall time) and the ratio retake/mitmdump.
4. Timing fidelity: records 1000 requests paced 2 ms apart (a small python client), replays them
   with `--pace recorded` and prints retake's mean absolute scheduling error (planned start vs
   actual start, as `retake replay` reports it).

Usage: bench/replay_bench.py [--requests 20000] [--retake build/cli/retake] [--skip-mitmdump]
Needs: nginx-light, hey, mitmproxy (scripts/install-deps.sh --bench installs them).
Only loopback addresses are used; every process started here is stopped at the end.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (free_port, wait_port, Procs, NGINX_BACKEND)

ROOT = bench.ROOT


def hey(url, n, c=20):
    subprocess.run(["hey", "-n", str(n), "-c", str(c), url], capture_output=True, check=True,
                   timeout=600)


def replay(retake, env, db, session, target, *extra):
    cmd = [retake, "replay", "--db", db, "--session", session, "--target", target, "--json",
           *extra]
    start = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    elapsed = time.time() - start
    if out.returncode not in (0, 1):
        sys.exit(f"replay_bench: retake replay failed: {out.stderr.strip()}")
    return json.loads(out.stdout), elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--retake", default=os.path.join(ROOT, "build", "cli", "retake"))
    ap.add_argument("--skip-mitmdump", action="store_true")
    # retake replay's own default: one thread runs the scheduler and the I/O together, which
    # beats two threads handing every exchange across (16-19k vs 15.7k req/s, 2026-12-05).
    ap.add_argument("--threads", type=int, default=1,
                    help="retake replay network threads (default 1, the command's default)")
    args = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in ("hey",):
        if not shutil.which(tool):
            sys.exit(f"replay_bench: {tool} not found; run scripts/install-deps.sh --bench")
    mitmdump = None if args.skip_mitmdump else shutil.which("mitmdump")
    if not args.skip_mitmdump and not mitmdump:
        sys.exit("replay_bench: mitmdump not found; install mitmproxy or pass --skip-mitmdump")

    work = tempfile.mkdtemp(prefix="retake-replay-bench-")
    procs = bench.Procs()
    body = '{"id":1,"name":"item","tags":["a","b"],"price":12.5,"ok":true}' * 8
    env = dict(os.environ, RETAKE_HOME=f"{work}/home")
    db = f"{work}/db"
    try:
        backend = bench.free_port()
        with open(f"{work}/backend.conf", "w") as f:
            f.write(bench.NGINX_BACKEND.format(dir=work, port=backend, body=body, workers=1,
                                                name="backend"))
        procs.start([nginx, "-p", work, "-c", f"{work}/backend.conf"])
        bench.wait_port(backend)
        target = f"http://127.0.0.1:{backend}"

        # Record through retake.
        rt = bench.free_port()
        rec = procs.start([args.retake, "record", "--mode", f"reverse:{target}", "--listen",
                           f"127.0.0.1:{rt}", "--db", db, "--session", "load", "-q"], env=env)
        bench.wait_port(rt)
        hey(f"http://127.0.0.1:{rt}/api/items?id=1", args.requests)
        # Timing fidelity: 1000 requests, 2 ms apart, in their own session.
        procs.stop(rec)
        rec = procs.start([args.retake, "record", "--mode", f"reverse:{target}", "--listen",
                           f"127.0.0.1:{rt}", "--db", db, "--session", "paced", "-q"], env=env)
        bench.wait_port(rt)
        next_at = time.perf_counter()
        for i in range(1000):
            next_at += 0.002
            while time.perf_counter() < next_at:
                pass
            urllib.request.urlopen(f"http://127.0.0.1:{rt}/api/items?id={i}").read()
        procs.stop(rec)

        # Record the same load through mitmdump.
        mitm_file = f"{work}/flows.mitm"
        if mitmdump:
            mp = bench.free_port()
            m = procs.start([mitmdump, "-q", "--listen-host", "127.0.0.1", "-p", str(mp),
                             "--mode", f"reverse:{target}", "-w", mitm_file,
                             "--set", f"confdir={work}/mitm"])
            bench.wait_port(mp, timeout=30)
            hey(f"http://127.0.0.1:{mp}/api/items?id=1", args.requests)
            procs.stop(m)

        # Throughput.
        summary, elapsed = replay(args.retake, env, db, "load", target, "--pace", "asap",
                                  "--concurrency", "50", "--threads", str(args.threads))
        completed = summary.get("completed", 0)
        run_s = (summary.get("ended_ns", 0) - summary.get("started_ns", 0)) / 1e9
        retake_rps = completed / run_s if run_s > 0 else 0
        wall_rps = completed / elapsed if elapsed else 0
        mitm_rps = None
        if mitmdump:
            start = time.time()
            out = subprocess.run([mitmdump, "-q", "-n", "-C", mitm_file, "--set",
                                  "client_replay_concurrency=-1", "--set",
                                  f"confdir={work}/mitm"],
                                 capture_output=True, text=True, timeout=3600)
            mitm_elapsed = time.time() - start
            mitm_rps = args.requests / mitm_elapsed if mitm_elapsed else 0
            if out.returncode != 0:
                print(f"  mitmdump exited {out.returncode}: {out.stderr.strip()[:300]}",
                      file=sys.stderr)

        # Timing fidelity.
        paced, _ = replay(args.retake, env, db, "paced", target, "--pace", "recorded")
        sched_mean = paced.get("schedule_error_mean_ns", 0) / 1e6
        sched_max = paced.get("schedule_error_max_ns", 0) / 1e6

        print()
        print(f"retake client replay benchmark ({args.requests} recorded requests, nginx backend, "
              f"{args.threads} retake threads)")
        print(f"retake replay --pace asap --concurrency 50: {completed} completed in "
              f"{run_s:.2f}s = {retake_rps:.0f} req/s (the run); the whole command, start-up "
              f"and store included, {elapsed:.2f}s = {wall_rps:.0f} req/s")
        if mitm_rps is not None:
            print(f"mitmdump -n -C (client_replay_concurrency -1): {args.requests} in "
                  f"{args.requests / mitm_rps:.2f}s = {mitm_rps:.0f} req/s (the whole command)")
            print(f"retake/mitmdump = {retake_rps / mitm_rps:.1f}x (run), "
                  f"{wall_rps / mitm_rps:.1f}x (whole commands)")
        print(f"--pace recorded over {paced.get('completed', 0)} requests 2 ms apart: schedule "
              f"error mean {sched_mean:.3f} ms, max {sched_max:.3f} ms")
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
