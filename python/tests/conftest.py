"""Fixtures shared by the Python tests: a fresh arena per test, values that check themselves
(the format of larder-testkit's make_value, so Rust and Python verify each other's), and the
path of the Rust `cachectl` binary for a process in another language."""

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import larder

REPO = Path(__file__).resolve().parents[2]


def make_arena(path, capacity=16 << 20, **kw):
    kw.setdefault("max_value", 4096)
    kw.setdefault("segment_size", 64 << 10)
    kw.setdefault("huge_pages", False)
    return larder.Cache.create(str(path), capacity, **kw)


@pytest.fixture
def arena(tmp_path):
    path = tmp_path / "arena"
    make_arena(path)
    return path


@pytest.fixture
def cache(arena):
    return larder.Cache(str(arena))


def fnv(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def make_value(key, seq, length):
    """larder-testkit's make_value: key length, key, seq, filler, FNV-1a of all that."""
    length = max(length, len(key) + 18)
    v = bytearray(struct.pack("<H", len(key)) + key + struct.pack("<Q", seq))
    x = seq ^ 0x9E3779B97F4A7C15
    while len(v) < length - 8:
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        v.append(x >> 56)
    v += struct.pack("<Q", fnv(v))
    return bytes(v)


def check_value(key, v):
    """The sequence number of a value make_value made for key; AssertionError otherwise."""
    assert len(v) >= len(key) + 18, f"value of {len(v)} bytes too short for {key!r}"
    body, (total,) = v[:-8], struct.unpack("<Q", v[-8:])
    assert fnv(body) == total, f"checksum mismatch under {key!r} ({len(v)} bytes)"
    (klen,) = struct.unpack("<H", body[:2])
    assert body[2 : 2 + klen] == key, f"value of {body[2:2 + klen]!r} read under {key!r}"
    return struct.unpack("<Q", body[2 + klen : 10 + klen])[0]


def rust_binary(name, env):
    """The path of one of the repository's Rust binaries: $env if set, else target/debug or
    target/release, else built now."""
    given = os.environ.get(env)
    if given:
        return given
    for profile in ("debug", "release"):
        p = REPO / "target" / profile / name
        if p.exists():
            return str(p)
    cargo = shutil.which("cargo")
    assert cargo, f"{name} is not built and cargo is not on PATH"
    subprocess.run([cargo, "build", "-q", "--bin", name], cwd=REPO, check=True)
    return str(REPO / "target" / "debug" / name)


@pytest.fixture(scope="session")
def cachectl():
    """The Rust CLI: a process in another language on the same arena."""
    return rust_binary("cachectl", "LARDER_CACHECTL")
