#!/usr/bin/env bash
# larder's eviction against libCacheSim's policies on the same trace (docs/performance.md):
# makes a venv with libcachesim (PyPI; GPL, a test tool run as a separate process) and runs
# `larder-bench eviction` with it. Arguments go to larder-bench, e.g.
#
#   bash bench/eviction.sh                          # the grid of docs/performance.md
#   bash bench/eviction.sh --quick                  # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-target/libcachesim-venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c "import libcachesim" 2>/dev/null \
    || "$VENV/bin/pip" install -q "libcachesim==0.3.5"
cargo build --release -q -p larder-bench
LARDER_BENCH_PYTHON="$VENV/bin/python" LARDER_REQUIRE_LIBCACHESIM=1 \
    target/release/larder-bench eviction "$@"
