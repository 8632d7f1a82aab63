"""larderd's memcached listener driven by pymemcache, a client nobody here wrote: every
command it offers, noreply, large values, many keys per get, its error handling — and the
items are the same ones larder.Cache sees in shared memory."""

import os
import subprocess
import time

import pytest

import larder
from conftest import rust_binary

pymemcache = pytest.importorskip("pymemcache")
from pymemcache.client.base import Client  # noqa: E402
from pymemcache.exceptions import (  # noqa: E402
    MemcacheClientError,
    MemcacheIllegalInputError,
    MemcacheServerError,
)


@pytest.fixture
def served(tmp_path):
    arena, sock = tmp_path / "arena", tmp_path / "memcached.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LARDER_")}
    proc = subprocess.Popen(
        [rust_binary("larderd", "LARDERD"), "--arena", str(arena), "--size", "32MiB", "--max-value", "1MiB",
         "--no-snapshot", "--huge-pages", "false", "--listen-memcached", str(sock)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 20
    while not sock.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "larderd's socket did not appear"
        time.sleep(0.05)
    yield Client(str(sock)), larder.Cache(str(arena))
    proc.terminate()
    proc.wait(20)
    assert not sock.exists(), "socket removed at SIGTERM"


def test_every_command_pymemcache_offers(served):
    mc, cache = served
    assert mc.set("k", b"v") is True
    assert mc.get("k") == b"v"
    assert cache.get("k") == b"v", "the same item in shared memory"
    cache.set("from-rust-side", b"linked")
    assert mc.get("from-rust-side") == b"linked"
    assert mc.add("k", b"x", noreply=False) is False
    assert mc.add("new", b"x", noreply=False) is True
    assert mc.replace("absent", b"x", noreply=False) is False
    assert mc.replace("new", b"y", noreply=False) is True
    assert mc.append("k", b"+a", noreply=False) is True
    assert mc.prepend("k", b"p+", noreply=False) is True
    assert mc.get("k") == b"p+v+a"
    value, token = mc.gets("k")
    assert value == b"p+v+a"
    assert mc.cas("k", b"changed", token) is True
    assert mc.cas("k", b"stale", token) is False
    assert mc.get("k") == b"changed"
    assert mc.set("n", b"10") is True
    assert mc.incr("n", 5) == 15
    assert mc.decr("n", 20) == 0
    assert mc.incr("absent", 1) is None
    assert mc.touch("n", 100, noreply=False) is True
    assert mc.touch("absent", 100, noreply=False) is False
    assert 90 < cache.ttl("n") <= 100
    assert mc.delete("n", noreply=False) is True
    assert mc.delete("n", noreply=False) is False
    assert mc.get_many(["k", "new", "absent"]) == {"k": b"changed", "new": b"y"}
    stats = mc.stats()
    assert stats[b"curr_items"] >= 2 and b"get_hits" in stats
    assert mc.version()
    assert mc.flush_all(noreply=False) is True
    assert mc.get("k") is None


def test_noreply_large_values_and_many_keys(served):
    mc, cache = served
    big = os.urandom(900_000)
    mc.set("big", big)  # noreply by default in pymemcache
    assert mc.get("big") == big
    keys = {f"many:{i}": f"v{i}".encode() for i in range(300)}
    assert mc.set_many(keys) == []
    assert mc.get_many(list(keys)) == keys
    mc.delete_many(list(keys))
    assert mc.get_many(list(keys)) == {}
    assert cache.get("big") == big


def test_errors_as_pymemcache_reports_them(served):
    mc, cache = served
    with pytest.raises(MemcacheIllegalInputError):
        mc.set("x" * 251, b"v")  # pymemcache refuses it before sending
    with pytest.raises(MemcacheServerError, match="too large"):
        mc.set("huge", b"x" * (2 << 20), noreply=False)
    assert mc.get("huge") is None
    mc.set("text", b"abc")
    with pytest.raises(MemcacheClientError, match="non-numeric"):
        mc.incr("text", 1)
    # The connection keeps working after every error.
    assert mc.set("after", b"ok", noreply=False) is True and mc.get("after") == b"ok"


def test_pymemcache_serde_types_come_back_through_client_flags(served, tmp_path):
    """pymemcache's pickle serde records each value's type in the client flags: an int, a str
    and a dict come back as themselves, while the linked library sees the stored bytes."""
    from pymemcache import serde
    mc, cache = served
    typed = Client(mc.server, serde=serde.pickle_serde)
    typed.set("n", 42)
    typed.set("s", "héllo")
    typed.set("d", {"a": [1, 2]})
    assert typed.get("n") == 42
    assert typed.get("s") == "héllo"
    assert typed.get("d") == {"a": [1, 2]}
    assert typed.get_many(["n", "s", "d"]) == {"n": 42, "s": "héllo", "d": {"a": [1, 2]}}
    # The bytes pymemcache wrote, unchanged for a linked reader; its flags are not in them.
    assert cache.get("n") == b"42"
    assert cache.get("s") == "héllo".encode()
    # gets/cas and append keep the flags.
    value, token = typed.gets("n")
    assert value == 42 and typed.cas("n", 43, token) is True and typed.get("n") == 43
    typed.append("s", "!")
    assert typed.get("s") == "héllo!"
    # An item set through the library has flags 0: plain bytes to pymemcache.
    cache.set("linked", b"raw")
    assert typed.get("linked") == b"raw"
