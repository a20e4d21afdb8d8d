#!/usr/bin/env bash
# Installs what is missing, builds, and starts recording: an explicit proxy on 127.0.0.1:8080
# writing to the embedded default store ($RETAKE_HOME/db, default ~/.retake/db).
# Extra arguments go to `retake record` (e.g. --mode reverse:http://127.0.0.1:3000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec build/cli/retake record "$@"
