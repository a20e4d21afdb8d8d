#!/usr/bin/env bash
# Installs what building and testing retake needs on Debian 12, skipping what is already there.
# Usage: scripts/install-deps.sh [--bench]   (as root, or with sudo available)
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build pkg-config libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libnghttp2-dev librocksdb-dev libcapnp-dev capnproto libprotobuf-dev
  protobuf-compiler libgrpc++-dev protobuf-compiler-grpc doctest-dev libre2-dev libcli11-dev
  libyaml-cpp-dev libzstd-dev zlib1g-dev libbrotli-dev liburing-dev ccache
  # tests: real clients and servers
  curl nghttp2-client hey python3 python3-h2 python3-websockets python3-grpcio python3-grpc-tools
  openssl
  # a seccomp filter refuses io_uring as Docker's default profile does (the epoll fallback test)
  python3-seccomp
  # transparent mode's test redirects with iptables inside a private network namespace
  iptables
  # the diff test opens the HTML report in headless Chromium
  chromium
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(wrk nginx-light mitmproxy hey)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
