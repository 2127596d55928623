"""Real processes: several writers and a reader at once lose, double, reorder or tear nothing, and
writers killed with SIGKILL at any instant leave a store that opens with every acknowledged record."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from backend.store.journal import JOURNAL, JournalStore

pytestmark = pytest.mark.json_store_only  # processes sharing the JSON store's files (PostgreSQL's: test_postgres.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRITER = textwrap.dedent(
    """
    import sys
    from backend.backend_agent import BackendAgent
    name, count = sys.argv[1], int(sys.argv[2])
    agent = BackendAgent()
    for i in range(count):
        result = agent.share_information(f"{name} fact {i}", "debt_info", "+1555000" + name[-4:].zfill(4),
                                         f"session-{name}-{i // 7}")
        assert result["success"], result
        print(result["record"]["id"], flush=True)  # acknowledged
    """
)


def start_writer(data_dir, name, count):
    env = dict(os.environ, PYTHONPATH=ROOT, DATA_DIR=str(data_dir))
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, name, str(count)], env=env, stdout=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_many_writers_and_a_reader_lose_double_reorder_and_tear_nothing(data_dir):
    writers, per_writer = 4, 250
    reader = JournalStore(data_dir)
    procs = [start_writer(data_dir, f"w{k:04d}", per_writer) for k in range(writers)]
    seen, last = [], 0
    deadline = time.monotonic() + 240
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        page, _ = reader.query_information(after_seq=last, limit=1000)
        if page:
            seen.extend(page)
            last = page[-1]["seq"]
        time.sleep(0.005)
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    while True:
        page, _ = reader.query_information(after_seq=last, limit=1000)
        if not page:
            break
        seen.extend(page)
        last = page[-1]["seq"]

    acked = [i for out in outputs for i in out]
    assert len(acked) == writers * per_writer
    # the reader, following incrementally, saw every acknowledged record exactly once, in seq order
    assert sorted(r["id"] for r in seen) == sorted(acked)
    assert [r["seq"] for r in seen] == sorted({r["seq"] for r in seen})
    # each writer's records are in its own order
    for k in range(writers):
        mine = [int(r["information"].split()[-1]) for r in seen if r["information"].startswith(f"w{k:04d} ")]
        assert mine == list(range(per_writer))
    # every line of the journal is one whole JSON document with a strictly increasing seq
    seqs = [json.loads(line)["seq"] for line in (data_dir / JOURNAL).read_bytes().splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert JournalStore(data_dir).verify()["healthy"]


@pytest.mark.slow
def test_writers_killed_at_any_instant_lose_no_acknowledged_record(data_dir):
    rng = random.Random(1234)
    acked: list[str] = []
    for round_no in range(25):
        procs = [start_writer(data_dir, f"k{round_no:02d}{j}", 100000) for j in range(2)]
        time.sleep(rng.uniform(0.3, 0.9))
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            out, _ = p.communicate(timeout=30)
            acked.extend(out.split())
        store = JournalStore(data_dir)  # opens, and repairs a torn tail if a kill left one
        ids = {r["id"] for r in store.export()["information"]}
        missing = [a for a in acked if a not in ids]
        assert not missing, f"round {round_no}: {len(missing)} acknowledged records lost"
        store.close()
    assert len(acked) > 100  # the writers really wrote between kills
    report = JournalStore(data_dir).verify()
    assert report["healthy"] or report["repaired"]


def _hold_section(data_dir: str, entered, release) -> None:
    store = JournalStore(data_dir)
    with store.exclusive("outbound"):
        entered.set()
        release.wait(30)


def test_an_exclusive_section_is_exclusive_across_processes(data_dir):
    """Two API workers (processes) counting outbound calls take turns."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    entered, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_section, args=(str(data_dir), entered, release))
    holder.start()
    try:
        assert entered.wait(30)
        store = JournalStore(data_dir)
        got_in = threading.Event()
        waiter = threading.Thread(target=lambda: (store.exclusive("outbound").__enter__(), got_in.set()))
        waiter.start()
        assert not got_in.wait(0.5)  # the other process holds it
        release.set()
        assert got_in.wait(30)  # and now it is ours
    finally:
        release.set()
        holder.join(30)
