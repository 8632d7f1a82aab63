"""One arena, many processes: Python processes (forked and spawned) and a Rust one writing
and reading checksummed values, a writer SIGKILLed mid-write, a handle used across fork, and
gunicorn workers serving a value another process set."""

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import larder
from conftest import check_value, make_value

NKEYS = 200


def writer(path, wid, rounds):
    c = larder.Cache(path)
    for seq in range(rounds):
        for i in range(NKEYS):
            k = f"shared:{i}".encode()
            c.set(k, make_value(k, wid * 1_000_000 + seq, 20 + (seq * 31 + i) % 600))
        c.set(f"done:{wid}", b"1")


def verify_shared(c):
    """Checks every shared key present; returns how many were."""
    present = 0
    for i in range(NKEYS):
        k = f"shared:{i}".encode()
        v = c.get(k)
        if v is not None:
            check_value(k, v)
            present += 1
    return present


def reader(path, seconds, out):
    c = larder.Cache(path)
    seen = 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        seen += verify_shared(c)
    out.put(seen)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_python_processes_share_one_arena_and_never_read_a_torn_value(arena, method):
    ctx = mp.get_context(method)
    out = ctx.Queue()
    readers = [ctx.Process(target=reader, args=(str(arena), 2.0, out)) for _ in range(2)]
    writers = [ctx.Process(target=writer, args=(str(arena), w, 30)) for w in range(3)]
    for p in readers + writers:
        p.start()
    for p in writers + readers:
        p.join(60)
        assert p.exitcode == 0, f"{p} exited {p.exitcode}"
    assert sum(out.get(timeout=5) for _ in readers) > 0
    c = larder.Cache(str(arena))
    for w in range(3):
        assert c.get(f"done:{w}") == b"1"
    for i in range(NKEYS):
        k = f"shared:{i}".encode()
        check_value(k, c[k])


def test_a_rust_process_reads_what_python_wrote_and_the_other_way_round(arena, cachectl):
    c = larder.Cache(str(arena))
    c.set("from:python", b"hello rust", ttl=60)
    got = subprocess.run(
        [cachectl, "--arena", str(arena), "get", "from:python"],
        capture_output=True,
        check=True,
    )
    assert got.stdout.rstrip(b"\n") == b"hello rust"
    subprocess.run([cachectl, "--arena", str(arena), "set", "from:rust", "hello python"], check=True)
    assert c.get("from:rust") == b"hello python"
    subprocess.run([cachectl, "--arena", str(arena), "set", "counter", "0"], check=True)
    for _ in range(5):
        c.incr("counter")
    subprocess.run([cachectl, "--arena", str(arena), "incr", "counter", "10"], check=True)
    assert c.get("counter") == b"15"


def endless_writer(path, ready):
    c = larder.Cache(path)
    seq = 0
    ready.set()
    while True:
        for i in range(NKEYS):
            k = f"shared:{i}".encode()
            c.set(k, make_value(k, seq, 20 + (seq + i) % 3000))
        seq += 1


def test_a_sigkilled_python_writer_leaves_every_value_whole(arena):
    ctx = mp.get_context("fork")
    for _ in range(5):
        ready = ctx.Event()
        p = ctx.Process(target=endless_writer, args=(str(arena), ready))
        p.start()
        assert ready.wait(10)
        time.sleep(0.05 + (os.getpid() % 7) / 100)
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert p.exitcode == -signal.SIGKILL
        c = larder.Cache(str(arena))
        assert verify_shared(c) > 0
        # The arena still takes writes from a new process.
        c.set("after", b"kill")
        assert c.get("after") == b"kill"


def test_a_handle_opened_before_fork_works_in_the_children(arena):
    c = larder.Cache(str(arena))
    c.set("parent", b"p")
    c.set("n", b"0")
    pids = []
    for k in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                assert c.get("parent") == b"p"
                for _ in range(100):
                    c.incr("n")
                c.set(f"child:{k}", str(os.getpid()).encode())
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert c.get("n") == b"400"
    assert [c.get(f"child:{k}") for k in range(4)] == [str(p).encode() for p in pids]


APP = '''
import os, larder
cache = larder.Cache(os.environ["LARDER_ARENA"])   # opened in the master (--preload)

def application(environ, start_response):
    body = (cache.get("greeting") or b"<none>") + b" " + str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gunicorn_workers_forked_from_a_preloaded_master_serve_a_shared_value(arena, tmp_path):
    pytest.importorskip("gunicorn")
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    env = dict(os.environ, LARDER_ARENA=str(arena))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "4", "-b", f"127.0.0.1:{port}",
         "--chdir", str(tmp_path), "app:application"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        larder.Cache(str(arena)).set("greeting", b"hello from another process")
        pids = set()
        deadline = time.time() + 30
        while time.time() < deadline and len(pids) < 2:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            except OSError:
                time.sleep(0.1)
                continue
            value, pid = body.rsplit(b" ", 1)
            assert value == b"hello from another process"
            pids.add(pid)
        assert len(pids) >= 2, f"answers from {len(pids)} worker(s) only"
    finally:
        server.terminate()
        server.wait(20)
