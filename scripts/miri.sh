#!/usr/bin/env bash
# Miri on the parts of larder that can run under it: the in-crate unit tests over heap
# memory (client/src/protocol/layout.rs, ops.rs, testkit.rs and the every-kill-point crash tests in
# crash_tests.rs), which drive the real protocol code over a `VecMem` of atomics instead of
# a mapped file. Nothing that maps or locks a file runs here (the arena, `Cache`, OFD
# locks): miri cannot execute mmap or fcntl; those are covered by the integration tests.
#
#   scripts/miri.sh          the quick set (CI, a few minutes): layout, ops, and the
#                            insert-lock stealing test (writes, CAS, a dead holder)
#   scripts/miri.sh --all    every test: the other testkit tests (3-5 minutes each under
#                            miri) and the crash tests (each re-runs an operation killed at
#                            every step: hours)
#   scripts/miri.sh FILTER…  the tests whose names contain a FILTER
#
# Needs a nightly toolchain with the miri component
# (rustup toolchain install nightly --component miri); without one it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "miri: skipped (no nightly toolchain with miri here;" \
    "install it with: rustup toolchain install nightly --component miri)"
  exit 0
fi
cargo +nightly miri --version

# The engine reads the wall clock (TTL arithmetic), which miri's isolation forbids.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"

# Modules that touch files, mappings or locks, should they grow unit tests.
skips=(--skip arena:: --skip cache:: --skip patterns:: --skip ofd:: --skip fork::)

if [[ "${1:-}" == "--all" ]]; then
  filters=()
elif [[ $# -gt 0 ]]; then
  filters=("$@")
else
  filters=(layout:: ops:: testkit::tests::a_dead_holders_insert_lock_is_stolen_a_live_ones_is_not)
fi

echo "miri: cargo +nightly miri test -p larder --lib -- ${filters[*]:-(all)} ${skips[*]}"
cargo +nightly miri test -p larder --lib -- "${filters[@]}" "${skips[@]}"
