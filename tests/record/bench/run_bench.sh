#!/usr/bin/env bash
# Quick sanity benchmark of the recorder as a plain reverse proxy, next to nginx doing the same.
# Loopback only, a few seconds per run. Not part of ctest (timings are never asserted).
#   tests/record/bench/run_bench.sh [path/to/retake_record_bench] [seconds]
# Starts: nginx backend (1 worker, a small static file), nginx reverse proxy (2 workers,
# upstream keepalive), retake_record_bench (2 threads, counting sink); then wrk -c50 and -c1
# against each, and prints the recorder's idle RSS. Everything started is stopped by pid.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bench_bin="${1:-$here/../../../build/tests/record/retake_record_bench}"
secs="${2:-5}"
work="$(mktemp -d /tmp/retake_bench.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

read -r p_backend p_nginx p_retake < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])')

mkdir -p "$work/www"
head -c 100 /dev/urandom | base64 > "$work/www/small.txt"
common="access_log off; client_body_temp_path $work/b; proxy_temp_path $work/p;
  fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;"
cat > "$work/backend.conf" <<CONF
daemon off; worker_processes 1; pid $work/backend.pid; error_log $work/backend.err;
events { worker_connections 4096; }
http { $common
  server { listen 127.0.0.1:$p_backend; root $work/www; keepalive_requests 1000000; } }
CONF
cat > "$work/rproxy.conf" <<CONF
daemon off; worker_processes 2; pid $work/rproxy.pid; error_log $work/rproxy.err;
events { worker_connections 4096; }
http { $common
  upstream backend { server 127.0.0.1:$p_backend; keepalive 64; }
  server { listen 127.0.0.1:$p_nginx; keepalive_requests 1000000;
    location / { proxy_pass http://backend; proxy_http_version 1.1;
                 proxy_set_header Connection ""; } } }
CONF
nginx -c "$work/backend.conf" -p "$work" & pids+=($!)
nginx -c "$work/rproxy.conf" -p "$work" & pids+=($!)
"$bench_bin" "reverse:http://127.0.0.1:$p_backend" "$p_retake" 2 > "$work/retake.out" & pids+=($!)
retake_pid=$!
for _ in $(seq 50); do
  curl -sf -m 1 "http://127.0.0.1:$p_retake/small.txt" >/dev/null 2>&1 &&
    curl -sf -m 1 "http://127.0.0.1:$p_nginx/small.txt" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "recorder idle RSS: $(ps -o rss= -p "$retake_pid") kB"
for conns in 50 1; do
  for target in "direct:$p_backend" "nginx-proxy:$p_nginx" "retake:$p_retake"; do
    name="${target%%:*}"; port="${target##*:}"
    threads=$(( conns > 1 ? 2 : 1 ))
    out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/small.txt")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '%-12s c%-3s %10s req/s  p50 %-9s p99 %s\n' "$name" "$conns" "$rps" "$p50" "$p99"
  done
done
echo "recorder RSS after load: $(ps -o rss= -p "$retake_pid") kB"
