"""larder: one shared-memory cache for every process on the host.

    import larder
    cache = larder.Cache()            # the arena larderd serves (larder.default_path())
    cache.set("user:42", b"...", ttl=300)
    cache.get("user:42")              # b"..." from any process on the host

Keys are ``bytes`` or ``str`` (UTF-8), values bytes-like in and ``bytes`` out, TTLs in
seconds. ``get_or_set(key, loader, ttl)`` runs ``loader`` once across every process on the
host. A ``Cache`` is thread-safe and fork-safe (open it before forking workers).
"""

from ._larder import Cache, KeyIter, __version__, default_path
from .errors import (
    ArenaFull,
    ArenaNotFound,
    Error,
    InvalidTTL,
    KeyTooLong,
    NotAnArena,
    NotANumber,
    ObserverOnly,
    OpenError,
    TooManyProcesses,
    TooManyTags,
    ValueTooLarge,
)

__all__ = [
    "ArenaFull",
    "ArenaNotFound",
    "Cache",
    "Error",
    "InvalidTTL",
    "KeyIter",
    "KeyTooLong",
    "NotAnArena",
    "NotANumber",
    "ObserverOnly",
    "OpenError",
    "TooManyProcesses",
    "TooManyTags",
    "ValueTooLarge",
    "__version__",
    "default_path",
]
