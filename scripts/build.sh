#!/usr/bin/env bash
# Configures and builds retake into ./build (Release with debug info). Usage: scripts/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# Two jobs: heavy Beast/gRPC translation units peak near 800 MB each.
cmake --build build -j "${RETAKE_BUILD_JOBS:-2}"
