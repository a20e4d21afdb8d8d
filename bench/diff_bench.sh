#!/usr/bin/env bash
# Diff engine throughput (issue #6 targets): structural JSON diff of large bodies in MB/s
# (target >= 200 MB/s) and 10k pairs of typical API responses (target < 1 s), plus the same
# 10k pairs through the whole `retake diff --run` operation on a temporary store.
# Usage: bench/diff_bench.sh [BUILD_DIR]   (default: build). CPU time is reported beside wall
# time because the build machines are shared.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
nice ninja -C "$build" -j2 retake_diff_bench >/dev/null
echo "targets: large JSON >= 200 MB/s (one body); 10k typical pairs < 1000 ms"
"$build/tests/diff/retake_diff_bench"
