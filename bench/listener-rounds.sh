#!/usr/bin/env bash
# larderd's memcached listener against memcached, as issue-grade numbers: ROUNDS runs of
# `larder-bench compare` (each one interleaves the systems point by point), then the median
# of the rounds per point and the ratios (bench/median.py). The machine drifts between runs;
# medians of interleaved rounds are what docs/performance.md quotes.
#
#   bash bench/listener-rounds.sh            # 5 rounds, 1 s per point
#   ROUNDS=3 DURATION=0.5 bash bench/listener-rounds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-1}
PROCS=${PROCS:-1,4,16}
OUT=${OUT:-target/larder-bench/listener}
cargo build --release -q --bin larderd -p larderd
cargo build --release -q -p larder-bench
rm -rf "$OUT" && mkdir -p "$OUT"
for i in $(seq 1 "$ROUNDS"); do
    echo "round $i of $ROUNDS" >&2
    target/release/larder-bench compare --values 100 --dists uniform --mixes 100,90 \
        --procs "$PROCS" --duration "$DURATION" \
        --systems memcached/unix,larder-mc/unix,memcached/tcp,larder-mc/tcp \
        --out "$OUT/round-$i" > "$OUT/round-$i.log"
done
python3 bench/median.py "$OUT"/round-*/compare.csv | tee "$OUT/median.md"
