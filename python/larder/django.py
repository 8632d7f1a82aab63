"""A Django cache backend on a larder arena: one cache shared by every worker process on the
host, read and written in shared memory.

    CACHES = {
        "default": {
            "BACKEND": "larder.django.LarderCache",
            "LOCATION": "",            # the arena path; empty: larder.default_path()
            "TIMEOUT": 300,
        }
    }

Values: integers in 0..2**64 (not bools) are stored as decimal text, so ``incr``/``decr``
work atomically across processes and other languages read them; bytes written by a
non-Python client (no pickle header) come back as ``bytes``; everything else is pickled.
``clear()`` flushes the whole arena, as Django's memcached and Redis backends flush their
server: every other user of the arena loses its items too.
"""

import pickle

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, InvalidCacheKey

import larder

# The first byte of a pickle of protocol 2 or later (the PROTO opcode).
_PICKLE_PROTO = 0x80
_U64_MAX = 2**64 - 1


class LarderCache(BaseCache):
    """``django.core.cache.backends.base.BaseCache`` over ``larder.Cache``."""

    def __init__(self, location, params):
        super().__init__(params)
        options = params.get("OPTIONS", {})
        self._location = location or None
        self._protocol = options.get("PICKLE_PROTOCOL", pickle.HIGHEST_PROTOCOL)
        self._cache = None

    @property
    def _arena(self):
        # Opened on first use, in the process that uses it (a handle also survives fork).
        if self._cache is None or self._cache.is_retired():
            self._cache = larder.Cache(self._location)
        return self._cache

    # -- keys, timeouts and values -------------------------------------------------------

    def validate_key(self, key):
        # As Django's memcached backends do: a key the store cannot take is an error, not a
        # warning (larder takes any bytes, so only the length is checked).
        max_key = self._arena.limits[0]
        n = len(key.encode())
        if n > max_key:
            raise InvalidCacheKey(f"Cache key is too long ({n} bytes > {max_key}): {key!r}")
        if n == 0:
            raise InvalidCacheKey("Cache key is empty")

    def _key(self, key, version):
        return self.make_and_validate_key(key, version=version)

    def get_backend_timeout(self, timeout=DEFAULT_TIMEOUT):
        """Seconds to keep the item, ``None`` for ever, or ``0`` for "do not keep it"."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        return 0 if timeout <= 0 else timeout

    def _encode(self, value):
        if type(value) is int and 0 <= value <= _U64_MAX:
            return str(value).encode()
        return pickle.dumps(value, self._protocol)

    def _decode(self, raw):
        if raw[:1] == bytes([_PICKLE_PROTO]):
            return pickle.loads(raw)
        if raw.isdigit() and raw.isascii():
            return int(raw)
        return raw

    # -- the BaseCache contract ----------------------------------------------------------

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self._key(key, version)
        t = self.get_backend_timeout(timeout)
        if t == 0:
            # Stored and expired at once, as memcached does: "added" if nothing was there.
            return key not in self._arena
        return self._arena.add(key, self._encode(value), ttl=t)

    def get(self, key, default=None, version=None):
        raw = self._arena.get(self._key(key, version))
        return default if raw is None else self._decode(raw)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self._key(key, version)
        t = self.get_backend_timeout(timeout)
        if t == 0:
            self._arena.delete(key)
            return
        self._arena.set(key, self._encode(value), ttl=t)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        key = self._key(key, version)
        t = self.get_backend_timeout(timeout)
        if t == 0:
            return self._arena.delete(key)
        return self._arena.touch(key, t)

    def delete(self, key, version=None):
        return self._arena.delete(self._key(key, version))

    def get_many(self, keys, version=None):
        by_key = {self._key(k, version): k for k in keys}
        found = self._arena.get_many(list(by_key))
        return {by_key[k]: self._decode(v) for k, v in found.items()}

    def has_key(self, key, version=None):
        return self._key(key, version) in self._arena

    def incr(self, key, delta=1, version=None):
        key = self._key(key, version)
        if delta < 0:
            value = self._arena.decr(key, -delta)
        else:
            value = self._arena.incr(key, delta)
        if value is None:
            raise ValueError(f"Key '{key}' not found")
        return value

    def decr(self, key, delta=1, version=None):
        return self.incr(key, -delta, version=version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        t = self.get_backend_timeout(timeout)
        keyed = {self._key(k, version): k for k in data}
        if t == 0:
            self._arena.delete_many(list(keyed))
            return []
        failed = self._arena.set_many(
            {k: self._encode(data[orig]) for k, orig in keyed.items()}, ttl=t
        )
        return [keyed[k] for k in failed]

    def delete_many(self, keys, version=None):
        self._arena.delete_many([self._key(k, version) for k in keys])

    def clear(self):
        self._arena.flush()
