"""larder.Cache: every method, its errors and its types."""

import math
import os
import time

import pytest

import larder
from conftest import make_arena


def test_set_get_delete_and_the_mapping_protocol(cache):
    assert cache.get("k") is None
    assert cache.get("k", b"dflt") == b"dflt"
    cache.set("k", b"v")
    assert cache.get("k") == b"v"
    assert cache.get(b"k") == b"v", "str keys are their UTF-8 bytes"
    assert cache["k"] == b"v" and "k" in cache and "nope" not in cache
    cache["m"] = bytearray(b"from a bytearray")
    assert cache["m"] == b"from a bytearray"
    cache.set("mv", memoryview(b"0123456789")[2:5])
    assert cache.get("mv") == b"234"
    del cache["m"]
    with pytest.raises(KeyError):
        del cache["m"]
    with pytest.raises(KeyError):
        cache["m"]
    assert cache.delete("k") is True and cache.delete("k") is False
    cache.set("é", b"unicode key")
    assert cache.get("é".encode()) == b"unicode key"


def test_values_of_every_size_up_to_the_limit_round_trip(cache):
    max_key, max_value = cache.limits
    for n in (0, 1, 7, 8, 9, 100, 2047, 2048, 2049, 3000, max_value):
        v = os.urandom(n)
        cache.set(f"size:{n}", v)
        assert cache.get(f"size:{n}") == v, n
    with pytest.raises(larder.ValueTooLarge):
        cache.set("big", b"x" * (max_value + 1))
    with pytest.raises(ValueError):
        cache.set("big", b"x" * (max_value + 1))
    assert cache.get("big") is None


def test_bad_keys_values_and_ttls_are_clear_errors(cache):
    with pytest.raises(larder.KeyTooLong):
        cache.set("x" * 251, b"v")
    with pytest.raises(ValueError):
        cache.get("")
    with pytest.raises(TypeError):
        cache.get(42)
    with pytest.raises(TypeError, match="encode"):
        cache.set("k", "a str value")
    with pytest.raises(TypeError):
        cache.set("k", 12)
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError):
            cache.set("k", b"v", ttl=bad)
    with pytest.raises(larder.InvalidTTL):
        cache.set("k", b"v", ttl=1e12)
    assert cache.get("k") is None, "nothing stored by a refused call"


def test_add_replace_gets_cas(cache):
    assert cache.add("k", b"1") is True and cache.add("k", b"2") is False
    assert cache.replace("absent", b"x") is False
    assert cache.replace("k", b"3") is True and cache.get("k") == b"3"
    value, token = cache.gets("k")
    assert value == b"3"
    cache.set("k", b"changed")
    assert cache.cas("k", b"lost", token) is False
    value, token = cache.gets("k")
    assert cache.cas("k", b"won", token) is True and cache.get("k") == b"won"
    assert cache.gets("absent") is None


def test_counters_ttl_touch(cache):
    cache.set("n", b"41")
    assert cache.incr("n") == 42 and cache.incr("n", 8) == 50
    assert cache.decr("n", 100) == 0, "decr stops at 0"
    assert cache.incr("absent") is None
    cache.set("word", b"abc")
    with pytest.raises(larder.NotANumber):
        cache.incr("word")
    assert cache.ttl("n") == math.inf
    assert cache.touch("n", 30) is True
    assert 28 < cache.ttl("n") <= 30
    assert cache.touch("absent", 30) is False and cache.ttl("absent") is None
    cache.set("short", b"v", ttl=1)
    time.sleep(2.1)
    assert cache.get("short") is None


def test_many_keys_flush_stats(cache):
    cache.set_many({"a": b"1", "b": b"2", b"c": b"3"})
    assert cache.get_many(["a", "b", "x", b"c"]) == {"a": b"1", "b": b"2", b"c": b"3"}
    assert sorted(cache.keys()) == [b"a", b"b", b"c"]
    assert sorted(cache.keys("[ab]")) == [b"a", b"b"]
    with pytest.raises(ValueError):
        cache.keys("[a")
    assert cache.delete_many(["a", "x"]) == 1
    s = cache.stats()
    assert s["sets"] == 3 and s["items"] == 2 and s["processes"] == 1
    assert cache.flush() == 2 and cache.get("b") is None


def test_stale_reads_tags_and_invalidation(cache):
    cache.set("s", b"old", ttl=1, stale_grace=60)
    time.sleep(2.1)
    assert cache.get("s") is None
    assert cache.get_stale("s") == (b"old", True)
    cache.set("t", b"tagged", tags=["user:1"])
    cache.invalidate_tag("user:1")
    assert cache.get("t") is None
    with pytest.raises(larder.TooManyTags):
        cache.set("t", b"v", tags=[f"t{i}" for i in range(9)])
    cache.set("i", b"v")
    assert cache.invalidate("i") is True and cache.get("i") is None


def test_get_or_set_loads_once_and_does_not_cache_failures(cache):
    calls = []

    def loader():
        calls.append(1)
        return b"loaded"

    assert cache.get_or_set("g", loader, ttl=60) == b"loaded"
    assert cache.get_or_set("g", loader, ttl=60) == b"loaded"
    assert len(calls) == 1

    def failing():
        raise RuntimeError("backend down")

    with pytest.raises(RuntimeError):
        cache.get_or_set("f", failing)
    assert cache.get("f") is None
    # The lease was given back: the next caller loads at once.
    assert cache.get_or_set("f", loader) == b"loaded"
    with pytest.raises(TypeError):
        cache.get_or_set("t", lambda: "not bytes")


def test_opening_errors(tmp_path):
    with pytest.raises(larder.ArenaNotFound):
        larder.Cache(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError):
        larder.Cache(str(tmp_path / "absent"))
    junk = tmp_path / "junk"
    junk.write_bytes(b"j" * 8192)
    with pytest.raises(larder.NotAnArena):
        larder.Cache(str(junk))
    one = tmp_path / "one"
    first = make_arena(one, max_processes=1)
    with pytest.raises(larder.TooManyProcesses):
        larder.Cache(str(one))
    del first
    with pytest.raises(larder.OpenError):
        make_arena(tmp_path / "tiny", capacity=1000)


def test_default_path_follows_larder_arena(monkeypatch, arena):
    monkeypatch.setenv("LARDER_ARENA", str(arena))
    assert str(larder.default_path()) == str(arena)
    c = larder.Cache()
    assert str(c.path) == str(arena)
