"""Replays an oracleGeneral trace through libCacheSim's policies for `larder-bench eviction`.

    python3 bench/libcachesim_replay.py TRACE WARMUP REQUESTS CAPACITY POLICY[,POLICY...]

Each policy (a libCacheSim class name: LRU, Sieve, S3FIFO, ...) gets a cache of CAPACITY
objects (every object has size 1), processes the first WARMUP requests, then the next
REQUESTS; one line per policy, "<name> <miss ratio over the REQUESTS>". libCacheSim is GPL:
a test tool here, run as a separate process, never linked.
"""

import sys

EXPECTED = "0.3.5"


def main(argv):
    if len(argv) != 6:
        sys.exit(__doc__)
    trace, warmup, requests, capacity = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    try:
        import libcachesim as lcs
    except ImportError as e:
        sys.exit(f"libcachesim is not installed for {sys.executable}: {e}")
    if getattr(lcs, "__version__", EXPECTED) != EXPECTED:
        print(f"note: libcachesim {lcs.__version__}, the tables were made with {EXPECTED}",
              file=sys.stderr)
    for name in argv[5].split(","):
        policy = getattr(lcs, name, None)
        if policy is None:
            sys.exit(f"libcachesim has no policy {name!r}")
        reader = lcs.TraceReader(trace, lcs.TraceType.ORACLE_GENERAL_TRACE)
        cache = policy(cache_size=capacity)
        cache.process_trace(reader, 0, warmup)
        miss, _ = cache.process_trace(reader, warmup, requests)
        print(name, miss, flush=True)


if __name__ == "__main__":
    main(sys.argv)
