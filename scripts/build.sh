#!/usr/bin/env bash
# Configures and builds retake into ./build (Release with debug info). Usage: scripts/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
if command -v ccache >/dev/null; then
  # Rebuilds (and other clones on the same machine) reuse earlier compilations; paths are
  # hashed relative to this checkout so a fresh clone hits the cache too.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
# Two jobs: heavy Beast/gRPC translation units peak near 800 MB each. The epoll build of
# retake (a nested build, cli/CMakeLists.txt) takes its job count from the environment.
export CMAKE_BUILD_PARALLEL_LEVEL="${RETAKE_BUILD_JOBS:-2}"
cmake --build build -j "${RETAKE_BUILD_JOBS:-2}"
