"""A gevent worker is not stalled by the journal lock: while another process holds it and a write
of the worker waits for it, the worker's reads answer; a write killed while it waits leaves the
lock free; greenlets writing alongside another process keep seq strictly increasing and one call
log per session. The first test runs a real gunicorn with ./gunicorn.conf.py; the others run
`JournalStore` in a process that gevent has monkey-patched, as gunicorn's gevent worker does."""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from backend.store.journal import JOURNAL, LOCK, JournalStore
from backend.store.lock import JournalLock

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "gevent-lock-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Only bounds how long a failing run waits; nothing is asserted about durations.
PATIENCE = 20

pytestmark = [pytest.mark.slow, pytest.mark.json_store_only]  # the JSON store's file lock under gevent


def waiters(lock_path: Path) -> set[int]:
    """The pids of processes blocked on the lock file's flock (`->` lines in /proc/locks)."""
    ino = os.stat(lock_path).st_ino
    with open("/proc/locks") as fh:
        return {int(line.split()[5]) for line in fh if "->" in line and "FLOCK" in line and f":{ino} " in line}


def wait_for_waiter(lock_path: Path, pids: set[int] | None = None) -> None:
    """Until some process (every one of `pids`) is blocked on the lock."""
    deadline = time.monotonic() + PATIENCE
    while not (pids <= waiters(lock_path) if pids else waiters(lock_path)):
        assert time.monotonic() < deadline, "nobody waits for the lock"
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """One gunicorn gevent worker (./gunicorn.conf.py) over a fresh store: every request below
    lands in the same worker. Yields the base URL."""
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "API_TOKENS": TOKEN,
        "STORE_FSYNC": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--no-control-socket",
            "backend.api_server:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def share(base: str, information: str) -> requests.Response:
    body = {
        "function": "share_information",
        "arguments": {"information": information, "category": "debt_info", "caller_id": "+15550004444"},
    }
    return requests.post(f"{base}/api/test_function", json=body, headers=AUTH, timeout=PATIENCE + 30)


def test_reads_answer_while_a_write_of_the_worker_waits_for_the_lock(server, tmp_path):
    assert share(server, "Owes $1,000").status_code == 200
    lock = JournalLock(tmp_path / LOCK)
    lock.acquire()  # another process (this one) holds the writers' lock, as a slow writer would
    held = True
    try:
        written: list[requests.Response] = []
        writer = threading.Thread(target=lambda: written.append(share(server, "Owes $2,000")))
        writer.start()
        wait_for_waiter(tmp_path / LOCK)  # the worker's write is blocked on the lock

        reads: dict[str, requests.Response] = {}
        answered = threading.Event()

        def read() -> None:
            reads["health"] = requests.get(f"{server}/api/health", timeout=PATIENCE + 30)
            reads["information"] = requests.get(f"{server}/api/information", headers=AUTH, timeout=PATIENCE + 30)
            answered.set()

        reader = threading.Thread(target=read)
        reader.start()
        answered.wait(PATIENCE)
        # still held (this process has not let go) and the write still waiting for it
        write_still_waiting = writer.is_alive() and bool(waiters(tmp_path / LOCK))
        lock.release()
        held = False
        assert answered.is_set(), "the worker answered no read while the lock was held"
        assert write_still_waiting
    finally:
        if held:
            lock.release()
    reader.join()
    writer.join()
    assert reads["health"].status_code == 200 and reads["health"].json() == {"status": "ok"}
    assert reads["information"].status_code == 200
    before = reads["information"].json()["information"]
    assert [r["information"] for r in before] == ["Owes $1,000"]  # not the write that was waiting
    assert written[0].status_code == 200, written[0].text
    after = requests.get(f"{server}/api/information", headers=AUTH, timeout=10).json()["information"]
    assert [r["information"] for r in after] == ["Owes $2,000", "Owes $1,000"]
    assert after[0]["seq"] > after[1]["seq"] == before[0]["seq"]


KILLED = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import json, select, sys
    import gevent
    from backend.store import JournalStore

    def next_line():  # cooperative (select is patched): the greenlets run meanwhile
        select.select([sys.stdin], [], [])
        sys.stdin.readline()

    store = JournalStore(sys.argv[1])
    print("open", flush=True)
    next_line()  # the test holds the lock now
    g = gevent.spawn(store.add_information, information="killed while waiting", category="debt_info",
                     caller_id="+15550005555")
    print("spawned", flush=True)
    next_line()  # the test saw this process wait for the lock
    g.kill(block=False)
    gevent.sleep(0.2)
    print(json.dumps({"alive_after_kill": not g.dead}), flush=True)
    next_line()  # the test let go of the lock
    g.join()
    record, _ = store.add_information(information="after the kill", category="debt_info", caller_id="+15550005555")
    print(json.dumps({"killed_by": type(g.value).__name__, "seq": record["seq"],
                      "texts": [r["information"] for r in store.query_information()[0]]}), flush=True)
    next_line()  # the test checked the lock is free while this process still runs
    """
)


def readline(proc: subprocess.Popen, timeout: float = PATIENCE) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), "the child did not answer"
    return proc.stdout.readline().strip()


def gevent_child(script: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STORE_FSYNC": "1"}
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env, text=True, **kw)


def test_a_write_killed_while_it_waits_for_the_lock_leaves_the_lock_free(data_dir):
    child = gevent_child(KILLED, str(data_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lock = JournalLock(data_dir / LOCK)
    try:
        assert readline(child) == "open"
        lock.acquire()
        child.stdin.write("\n")
        child.stdin.flush()
        assert readline(child) == "spawned"
        wait_for_waiter(data_dir / LOCK, {child.pid})
        child.stdin.write("\n")
        child.stdin.flush()
        # killed, the greenlet still waits for the pool thread that waits for the lock
        assert json.loads(readline(child)) == {"alive_after_kill": True}
        lock.release()
        child.stdin.write("\n")
        child.stdin.flush()
        result = json.loads(readline(child))
        # the killed write appended nothing: seq 1 is the session the later write opened
        assert result == {"killed_by": "GreenletExit", "seq": 2, "texts": ["after the kill"]}
        fd = os.open(data_dir / LOCK, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the child, still running, holds nothing
        finally:
            os.close(fd)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=PATIENCE) == 0
    finally:
        child.kill()
        child.wait()


GREENLETS = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import os, sys, time
    import gevent
    from backend.store import JournalStore
    store = JournalStore(sys.argv[1])
    name, greenlets, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    while not os.path.exists(sys.argv[5]):
        time.sleep(0.001)

    def write(k):
        for i in range(count):
            store.add_information(information=f"{name}-{k} fact {i}", category="debt_info",
                                  caller_id=f"+1555{k:07d}", session_id=f"{name}-{k}")
            store.end_session(reason="completed", caller_id="+15550000000", session_id="shared")

    gevent.joinall([gevent.spawn(write, k) for k in range(greenlets)], raise_error=True)
    """
)


def test_greenlets_and_another_process_write_in_strict_order_and_end_a_session_once(data_dir):
    JournalStore(data_dir).close()
    go = data_dir / "go"
    lock = JournalLock(data_dir / LOCK)
    lock.acquire()  # both writers start by waiting for the lock, so the waits go through the pool
    try:
        children = [gevent_child(GREENLETS, str(data_dir), name, "6", "15", str(go)) for name in ("a", "b")]
        go.touch()
        wait_for_waiter(data_dir / LOCK, {c.pid for c in children})
    finally:
        lock.release()
    assert [c.wait(timeout=120) for c in children] == [0, 0]
    entries = [json.loads(line) for line in (data_dir / JOURNAL).read_bytes().splitlines()]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    infos = [e for e in entries if e["type"] == "info"]
    assert len(infos) == 2 * 6 * 15 == len({e["information"] for e in infos})
    assert [e["session_id"] for e in entries if e["type"] == "call"] == ["shared"]
    assert JournalStore(data_dir).verify()["healthy"]
