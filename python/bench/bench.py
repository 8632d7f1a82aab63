"""Python clients of a host-local cache, in one run: larder's raw API against pymemcache ->
memcached and redis-py -> redis-server over Unix sockets, diskcache, and a plain dict (per
process: the floor); then larder's Django backend against Django's PyMemcacheCache,
RedisCache and LocMemCache. 100 B values, uniform random keys, one process and four, rounds
interleaved (the machine is noisy), medians, ratios to larder.

    python python/bench/bench.py [--rounds 3] [--ops 100000] [--procs 1,4]

memcached and redis-server are started by this script on sockets in a temporary directory
(a missing one is skipped, and said); the Python packages are pymemcache, redis, diskcache
and django.
"""

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NKEYS = 10_000
VALUE = bytes(range(100))


def keys():
    return [f"key:{i:08d}" for i in range(NKEYS)]


# -- the systems ------------------------------------------------------------------------------


class Servers:
    """memcached and redis-server on Unix sockets, for the life of the run."""

    def __init__(self, tmp):
        self.procs = []
        self.memcached = self.redis = None
        if shutil.which("memcached"):
            self.memcached = os.path.join(tmp, "memcached.sock")
            self.procs.append(subprocess.Popen(
                ["memcached", "-s", self.memcached, "-m", "256", "-U", "0"]
                # memcached refuses to run as root unless told which user to be.
                + (["-u", "root"] if os.geteuid() == 0 else []),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if shutil.which("redis-server"):
            self.redis = os.path.join(tmp, "redis.sock")
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", "0", "--unixsocket", self.redis, "--save", "",
                 "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 10
        for s in (self.memcached, self.redis):
            while s and not os.path.exists(s) and time.time() < deadline:
                time.sleep(0.05)

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait(10)


def raw_client(name, arena, servers, tmp):
    """(get, set) of a raw client of system `name`, connected in this process."""
    if name == "larder":
        import larder
        c = larder.Cache(arena)
        return c.get, c.set
    if name == "pymemcache":
        from pymemcache.client.base import Client
        c = Client(servers.memcached)
        return c.get, c.set
    if name == "redis-py":
        import redis
        c = redis.Redis(unix_socket_path=servers.redis)
        return c.get, c.set
    if name == "diskcache":
        import diskcache
        c = diskcache.Cache(os.path.join(tmp, "diskcache"))
        return c.get, c.set
    if name == "dict":
        d = {}
        return d.get, d.__setitem__
    raise ValueError(name)


DJANGO = {
    "larder": ("larder.django.LarderCache", lambda arena, s: arena),
    "PyMemcacheCache": ("django.core.cache.backends.memcached.PyMemcacheCache",
                        lambda arena, s: f"unix:{s.memcached}"),
    "RedisCache": ("django.core.cache.backends.redis.RedisCache",
                   lambda arena, s: f"unix://{s.redis}"),
    "LocMemCache": ("django.core.cache.backends.locmem.LocMemCache", lambda arena, s: "bench"),
}


def django_client(name, arena, servers, tmp):
    import django
    from django.conf import settings
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    from django.core.cache import CacheHandler
    backend, location = DJANGO[name]
    c = CacheHandler({"default": {"BACKEND": backend, "LOCATION": location(arena, servers),
                                  "TIMEOUT": None}})["default"]
    return c.get, c.set


def available(name, servers, django_mode):
    need = {"pymemcache": servers.memcached, "redis-py": servers.redis,
            "PyMemcacheCache": servers.memcached, "RedisCache": servers.redis}
    if name in need and not need[name]:
        return False
    try:
        __import__({"pymemcache": "pymemcache", "redis-py": "redis", "diskcache": "diskcache",
                    "RedisCache": "redis", "PyMemcacheCache": "pymemcache"}.get(name, "os"))
        if django_mode:
            __import__("django")
    except ImportError:
        return False
    return True


# -- one measurement -------------------------------------------------------------------------


def worker(kind, name, arena, servers, tmp, op, ops, seed, out):
    make = django_client if kind == "django" else raw_client
    get, set_ = make(name, arena, servers, tmp)
    ks = keys()
    for k in ks:  # each process fills what it reads (the dict and LocMem are per process)
        set_(k, VALUE)
    rnd = random.Random(seed)
    seq = [ks[rnd.randrange(NKEYS)] for _ in range(ops)]
    t0 = time.perf_counter()
    if op == "get":
        for k in seq:
            get(k)
    else:
        for k in seq:
            set_(k, VALUE)
    out.put(time.perf_counter() - t0)


def measure(kind, name, arena, servers, tmp, op, ops, procs):
    """Aggregate ops/s of `procs` processes doing `ops` each."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    ps = [ctx.Process(target=worker,
                      args=(kind, name, arena, servers, tmp, op, ops, 17 * i + 1, out))
          for i in range(procs)]
    for p in ps:
        p.start()
    times = []
    while len(times) < len(ps):
        try:
            times.append(out.get(timeout=1))
        except Exception:
            dead = [p for p in ps if p.exitcode not in (None, 0)]
            if dead:
                for p in ps:
                    p.kill()
                raise RuntimeError(f"a {name} worker failed (exit {dead[0].exitcode})")
    for p in ps:
        p.join()
        assert p.exitcode == 0, f"{name} worker failed"
    return sum(ops / t for t in times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ops", type=int, default=100_000)
    ap.add_argument("--procs", default="1,4")
    args = ap.parse_args()
    procs = [int(p) for p in args.procs.split(",")]
    import larder
    tmp = tempfile.mkdtemp(prefix="larder-pybench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    arena = os.path.join(tmp, "arena")
    larder.Cache.create(arena, 64 << 20)
    servers = Servers(tmp)
    try:
        suites = [("raw", ["larder", "pymemcache", "redis-py", "diskcache", "dict"]),
                  ("django", list(DJANGO))]
        results = {}
        for kind, names in suites:
            names = [n for n in names if available(n, servers, kind == "django")]
            skipped = set(DJANGO if kind == "django" else suites[0][1]) - set(names)
            if skipped:
                print(f"({kind}: skipped {', '.join(sorted(skipped))}: not installed)")
            for op in ("get", "set"):
                for p in procs:
                    rounds = {n: [] for n in names}
                    for _ in range(args.rounds):
                        for n in names:
                            rounds[n].append(measure(kind, n, arena, servers, tmp, op, args.ops, p))
                    results[(kind, op, p)] = {n: statistics.median(v) for n, v in rounds.items()}
        print(f"Python {sys.version.split()[0]}, {NKEYS} keys, 100 B values, uniform random keys, "
              f"{args.rounds} interleaved rounds x {args.ops} ops per process, medians; "
              "memcached and Redis over Unix sockets")
        for kind, _ in suites:
            print()
            print(f"| {kind} | op | processes | ops/s | larder ÷ |")
            print("|---|---|---|---|---|")
            for (k, op, p), by in results.items():
                if k != kind:
                    continue
                base = by.get("larder")
                for n, v in by.items():
                    ratio = f"{base / v:.2f}×" if base else "–"
                    print(f"| {n} | {op} | {p} | {v / 1e3:,.0f} k | {ratio} |")
    finally:
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
