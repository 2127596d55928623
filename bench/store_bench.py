"""Store benchmark: the journal against the seed's design and TinyDB, at several store sizes.

    python bench/store_bench.py                      # 1k, 10k, 100k, 1M records (about 10 minutes)
    python bench/store_bench.py --sizes 1000,10000   # quicker

For each size it fills a fresh folder with synthetic calls, then measures, in this one run:
- opening the store in a new process (time and peak resident memory), first without an index
  snapshot (cold) and then with the snapshot that first open wrote (warm);
- durable writes with one writer (fsync on), and without fsync, p50/p99;
- four writer processes at once (fsync on): acknowledged writes per second, p99, longest wait;
- a warm reader: query by caller and the full summary, p50/p99; catching up on 100 new records;
- the baselines, implemented here: the seed's read-append-rewrite JSON file under a file lock,
  and TinyDB under a file lock (write latency, and a query by caller).
It prints a table and the ratios. Figures depend on the machine: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from filelock import FileLock  # noqa: E402

from backend.store import JournalStore  # noqa: E402
from bench.fill import FACTS, caller_for, fill  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


def ms(x: float) -> str:
    return f"{x:9.3f}"


# ---- the journal ---------------------------------------------------------------------------
OPEN_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[2])
    from backend.store import JournalStore
    t = time.perf_counter(); s = JournalStore(sys.argv[1]); took = time.perf_counter() - t
    print(json.dumps({"seconds": took, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "records": s.summary()["total_information"]}))
    """
)

WRITER_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, sys.argv[2])
    from backend.store import JournalStore
    s = JournalStore(sys.argv[1], fsync=True)
    n, go = int(sys.argv[3]), sys.argv[4]
    while not os.path.exists(go):
        time.sleep(0.001)
    lat, start = [], time.time()
    for i in range(n):
        t = time.perf_counter()
        s.add_information(information=f"writer {os.getpid()} fact {i}", category="debt_info",
                          caller_id="+15559990000", session_id=f"bench-{os.getpid()}-{i // 7}")
        lat.append(time.perf_counter() - t)
    print(json.dumps({"start": start, "end": time.time(), "lat": lat}))
    """
)


def open_in_child(folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", OPEN_CHILD, str(folder), str(ROOT)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def single_writer(store: JournalStore, n: int) -> list[float]:
    lat = []
    for i in range(n):
        t = time.perf_counter()
        store.add_information(
            information=f"single writer fact {i} {uuid.uuid4().hex[:6]}",
            category="debt_info",
            caller_id="+15558880000",
            session_id=f"single-{i // 7}-{store.fsync}",
        )
        lat.append(time.perf_counter() - t)
    return lat


def four_writers(folder: Path, per_writer: int) -> dict:
    go = folder / f"go-{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_CHILD, str(folder), str(ROOT), str(per_writer), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(3.0)  # let every writer open the store (and index it) before the start
    go.touch()
    results = [json.loads(p.communicate()[0]) for p in procs]
    go.unlink()
    lat = [x for r in results for x in r["lat"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"per_s": len(lat) / wall, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat) * 1000}


def reader_figures(folder: Path, reps: int = 200) -> dict:
    reader = JournalStore(folder)
    rng = random.Random(3)
    callers = sorted(reader.index.by_caller)
    by_caller = []
    for _ in range(reps):
        caller = rng.choice(callers)
        t = time.perf_counter()
        reader.query_information(caller_id=caller, limit=20)
        by_caller.append(time.perf_counter() - t)
    summary = []
    for _ in range(reps):
        t = time.perf_counter()
        reader.summary()
        summary.append(time.perf_counter() - t)
    writer = JournalStore(folder, fsync=False)
    catch_up = []
    for r in range(5):
        for i in range(100):
            writer.add_information(information=f"catch-up {r} {i}", category="qualification", caller_id="+15557770000")
        t = time.perf_counter()
        reader.summary()
        catch_up.append(time.perf_counter() - t)
    return {
        "caller_p50": pct(by_caller, 0.5),
        "caller_p99": pct(by_caller, 0.99),
        "summary_p50": pct(summary, 0.5),
        "summary_p99": pct(summary, 0.99),
        "catch_up_100": statistics.median(catch_up) * 1000,
    }


# ---- baselines -----------------------------------------------------------------------------
def legacy_record(i: int) -> dict:
    cat = list(FACTS)[i % 5]
    return {
        "id": str(uuid.uuid4()),
        "session_id": f"s{i // 7}",
        "information": f"{FACTS[cat][0]} #{i}",
        "category": cat,
        "caller_id": caller_for(i % 20000),
        "timestamp": "2026-11-22T10:00:00",
        "status": "received",
    }


class SeedJsonFile:
    """The seed's design: one JSON document, read whole, appended to and rewritten per write."""

    def __init__(self, folder: Path, n: int) -> None:
        self.path = folder / "shared_information.json"
        self.lock = FileLock(str(self.path) + ".lock")
        doc = {"shared_information": [legacy_record(i) for i in range(n)], "sessions": {}, "call_logs": []}
        self.path.write_text(json.dumps(doc, indent=2))

    def write(self, i: int) -> None:
        with self.lock:
            doc = json.loads(self.path.read_text())
            doc["shared_information"].append(legacy_record(i))
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=2))
            tmp.replace(self.path)

    def by_caller(self, caller: str) -> list[dict]:
        with self.lock:
            doc = json.loads(self.path.read_text())
        return [r for r in doc["shared_information"] if r["caller_id"] == caller][-20:]


class TinyDBFile:
    """TinyDB's JSON storage, opened per operation under a file lock (it is not multi-process safe)."""

    def __init__(self, folder: Path, n: int) -> None:
        self.path = folder / "tinydb.json"
        self.lock = FileLock(str(self.path) + ".lock")
        table = {str(i + 1): legacy_record(i) for i in range(n)}
        self.path.write_text(json.dumps({"_default": table}))

    def write(self, i: int) -> None:
        from tinydb import TinyDB

        with self.lock, TinyDB(self.path) as db:
            db.insert(legacy_record(i))

    def by_caller(self, caller: str) -> list[dict]:
        from tinydb import Query, TinyDB

        with self.lock, TinyDB(self.path) as db:
            return db.search(Query().caller_id == caller)[-20:]


def baseline_figures(cls, folder: Path, n: int, writes: int) -> dict:
    db = cls(folder, n)
    lat = []
    for i in range(writes):
        t = time.perf_counter()
        db.write(n + i)
        lat.append(time.perf_counter() - t)
    q = []
    for i in range(max(1, writes // 2)):
        t = time.perf_counter()
        db.by_caller(caller_for(i))
        q.append(time.perf_counter() - t)
    return {"write_p50": pct(lat, 0.5), "caller_p50": pct(q, 0.5), "writes": writes}


# ---- the run -------------------------------------------------------------------------------
def run_size(n: int, args) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"store-bench-{n}-", dir=args.tmp) as tmp:
        folder = Path(tmp) / "journal"
        t = time.perf_counter()
        fill(folder, n)
        # A store that grew over months is on disk: flush the fill's dirty pages first, or the
        # fsyncs measured below wait behind hundreds of megabytes of write-back.
        os.sync()
        print(f"[{n:>9,}] filled in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        cold = open_in_child(folder)
        warm = open_in_child(folder)
        store = JournalStore(folder, fsync=True)
        os.sync()
        durable = single_writer(store, args.writes)
        store.fsync = False
        fast = single_writer(store, args.writes)
        store.close()
        contended = four_writers(folder, args.writes)
        reads = reader_figures(folder)
        row = {
            "records": n,
            "open_cold_s": cold["seconds"],
            "open_cold_rss_mb": cold["rss_mb"],
            "open_warm_s": warm["seconds"],
            "open_warm_rss_mb": warm["rss_mb"],
            "write_p50": pct(durable, 0.5),
            "write_p99": pct(durable, 0.99),
            "nofsync_p50": pct(fast, 0.5),
            "nofsync_p99": pct(fast, 0.99),
            "four": contended,
            **reads,
        }
        for name, cls, limit in (("seed", SeedJsonFile, args.seed_max), ("tinydb", TinyDBFile, args.tinydb_max)):
            if n <= limit:
                writes = max(3, min(50, 300_000 // max(n, 1)))
                base_dir = Path(tmp) / name
                base_dir.mkdir()
                row[name] = baseline_figures(cls, base_dir, n, writes)
                print(f"[{n:>9,}] {name} baseline done", file=sys.stderr)
        return row


def report(rows: list[dict]) -> None:
    print("\nJournal store (all times in ms unless marked)")
    print(
        f"{'records':>9} {'open cold s':>11} {'MB':>6} {'open warm s':>11} {'MB':>6} {'write p50':>9} "
        f"{'write p99':>9} {'nofsync p50':>11} {'4w writes/s':>11} {'4w p99':>8} {'4w max':>8} "
        f"{'caller p50':>10} {'summary p50':>11} {'+100 catch-up':>13}"
    )
    for r in rows:
        f = r["four"]
        print(
            f"{r['records']:>9,} {r['open_cold_s']:>11.2f} {r['open_cold_rss_mb']:>6.0f} {r['open_warm_s']:>11.2f} "
            f"{r['open_warm_rss_mb']:>6.0f} {r['write_p50']:>9.3f} {r['write_p99']:>9.3f} {r['nofsync_p50']:>11.3f} "
            f"{f['per_s']:>11.0f} {f['p99']:>8.2f} {f['max']:>8.2f} {r['caller_p50']:>10.3f} "
            f"{r['summary_p50']:>11.3f} {r['catch_up_100']:>13.3f}"
        )
    print("\nBaselines (ms) and how many times faster the journal is")
    print(f"{'records':>9} {'seed write':>10} {'x':>8} {'seed query':>10} {'x':>8} {'tinydb write':>12} {'x':>8}")
    for r in rows:
        s, t = r.get("seed"), r.get("tinydb")
        cells = [f"{r['records']:>9,}"]
        cells += (
            [f"{s['write_p50']:>10.1f}", f"{s['write_p50'] / r['write_p50']:>8.0f}"]
            if s
            else [f"{'-':>10}", f"{'-':>8}"]
        )
        cells += (
            [f"{s['caller_p50']:>10.1f}", f"{s['caller_p50'] / r['caller_p50']:>8.0f}"]
            if s
            else [f"{'-':>10}", f"{'-':>8}"]
        )
        cells += (
            [f"{t['write_p50']:>12.1f}", f"{t['write_p50'] / r['write_p50']:>8.0f}"]
            if t
            else [f"{'-':>12}", f"{'-':>8}"]
        )
        print(" ".join(cells))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(
            f"\nwrite p99 at {last['records']:,} / at {first['records']:,}: "
            f"{last['write_p99'] / first['write_p99']:.2f}x (p50: {last['write_p50'] / first['write_p50']:.2f}x)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--writes", type=int, default=1000, help="writes per writer per measurement")
    parser.add_argument("--seed-max", type=int, default=1_000_000, help="largest size for the seed baseline")
    parser.add_argument("--tinydb-max", type=int, default=100_000, help="largest size for the TinyDB baseline")
    parser.add_argument("--tmp", default=None, help="folder for the stores (default: the system's)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rows = [run_size(int(n), args) for n in args.sizes.split(",")]
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
