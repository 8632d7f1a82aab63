"""larder.django.LarderCache against Django's BaseCache contract, as Django's own backends
honour it (the cases follow Django's cache tests: zero and negative timeouts, versions, key
prefixes, invalid keys, incr/decr, the *_many calls, get_or_set, the async variants)."""

import asyncio
import pickle

import pytest

django = pytest.importorskip("django")
from django.conf import settings  # noqa: E402

import larder  # noqa: E402


@pytest.fixture
def caches(arena):
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    from django.core.cache import CacheHandler

    handler = CacheHandler(
        {
            "default": {"BACKEND": "larder.django.LarderCache", "LOCATION": str(arena)},
            "prefixed": {
                "BACKEND": "larder.django.LarderCache",
                "LOCATION": str(arena),
                "KEY_PREFIX": "site2",
                "TIMEOUT": 60,
            },
            "v2": {"BACKEND": "larder.django.LarderCache", "LOCATION": str(arena), "VERSION": 2},
        }
    )
    return handler


@pytest.fixture
def cache(caches):
    return caches["default"]


def test_simple_values_round_trip_pickled_and_ints_as_decimal(cache, arena):
    for v in ["str", 1.5, None, True, False, -3, 2**70, {"a": [1, 2]}, b"raw", (1, "x")]:
        cache.set("k", v)
        assert cache.get("k") == v and type(cache.get("k")) is type(v)
    cache.set("n", 42)
    raw = larder.Cache(str(arena)).get(":1:n")
    assert raw == b"42", "ints are decimal text, readable from every language"
    larder.Cache(str(arena)).set(":1:from-elsewhere", b"plain bytes")
    assert cache.get("from-elsewhere") == b"plain bytes"


def test_get_default_add_delete_has_key(cache):
    assert cache.get("absent") is None and cache.get("absent", "dflt") == "dflt"
    assert cache.add("a", "first") is True and cache.add("a", "second") is False
    assert cache.get("a") == "first"
    assert cache.has_key("a") and not cache.has_key("absent")
    assert cache.delete("a") is True and cache.delete("a") is False


def test_zero_and_negative_timeouts_do_not_keep_the_value(cache):
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get("key3") is None and cache.get("key4") is None
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None
    cache.set("neg", "x", -1)
    assert cache.get("neg") is None
    cache.set("k", "v", timeout=None)
    assert cache.add("k", "w", 0) is False, "a live value stays"


def test_touch_and_forever(cache, arena):
    cache.set("t", "v", timeout=1)
    assert cache.touch("t", timeout=None) is True
    assert larder.Cache(str(arena)).ttl(":1:t") == float("inf")
    assert cache.touch("absent") is False


def test_incr_decr(cache):
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    assert cache.decr("answer") == 41
    assert cache.decr("answer", -10) == 51
    assert cache.decr("answer", 1000) == 0, "decr floors at 0, as memcached"
    with pytest.raises(ValueError):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError):
        cache.decr("does_not_exist")
    cache.set("text", "not a number")
    with pytest.raises(ValueError):
        cache.incr("text")


def test_many(cache):
    assert cache.set_many({"a": 1, "b": "two", "c": [3]}) == []
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": "two", "c": [3]}
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "c"]) == {"c": [3]}


def test_versions_and_prefixes_keep_keys_apart(caches):
    d, p, v2 = caches["default"], caches["prefixed"], caches["v2"]
    d.set("k", "default")
    p.set("k", "prefixed")
    v2.set("k", "v2")
    assert (d.get("k"), p.get("k"), v2.get("k")) == ("default", "prefixed", "v2")
    assert d.get("k", version=2) == "v2"
    d.incr_version("k")
    assert d.get("k") is None and d.get("k", version=2) == "default"


def test_invalid_keys_raise(cache):
    from django.core.cache.backends.base import InvalidCacheKey

    with pytest.raises(InvalidCacheKey):
        cache.set("x" * 300, "v")
    with pytest.raises(InvalidCacheKey):
        cache.get("x" * 300)


def test_get_or_set_and_clear(cache):
    assert cache.get_or_set("g", "value") == "value"
    assert cache.get_or_set("g", "other") == "value"
    assert cache.get_or_set("c", lambda: 42) == 42
    cache.clear()
    assert cache.get("g") is None


def test_pickle_protocol_option(arena):
    from larder.django import LarderCache

    c = LarderCache(str(arena), {"OPTIONS": {"PICKLE_PROTOCOL": 2}})
    c.set("p", {"x": 1})
    raw = larder.Cache(str(arena)).get(":1:p")
    assert raw[:2] == b"\x80\x02" and pickle.loads(raw) == {"x": 1}


def test_async_variants(cache):
    async def go():
        await cache.aset("a", "async")
        assert await cache.aget("a") == "async"
        assert await cache.aadd("a", "again") is False
        assert await cache.aget_many(["a", "b"]) == {"a": "async"}
        assert await cache.adelete("a") is True
        assert await cache.aget_or_set("b", "set") == "set"

    asyncio.run(go())
