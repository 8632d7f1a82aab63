"""The exceptions larder raises. Each is a ``larder.Error`` and also what Python code already
catches for that kind of problem: a key that is too long is a ``ValueError``, a missing
arena an ``OSError`` (``FileNotFoundError``)."""


class Error(Exception):
    """Base of every larder error."""


class OpenError(Error, OSError):
    """The arena could not be opened."""


class ArenaNotFound(OpenError, FileNotFoundError):
    """No arena at the path (is larderd running?)."""


class NotAnArena(OpenError):
    """The file is not a usable larder arena (not one, damaged, or another layout version)."""


class TooManyProcesses(Error):
    """Every process slot of the arena is held by a live process."""


class KeyTooLong(Error, ValueError):
    """The key is empty or longer than the arena's limit (``Cache.limits``)."""


class ValueTooLarge(Error, ValueError):
    """The value is longer than the arena's limit (``Cache.limits``)."""


class InvalidTTL(Error, ValueError):
    """A TTL, stale grace or lease time the arena cannot store."""


class NotANumber(Error, ValueError):
    """``incr``/``decr`` of a value that is not a decimal unsigned 64-bit number."""


class TooManyTags(Error, ValueError):
    """More tags than an item may carry (8)."""


class ArenaFull(Error):
    """No space could be found right now; nothing was stored. Retry."""


class ObserverOnly(Error):
    """The handle only observes the arena."""
