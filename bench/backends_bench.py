"""The two store backends side by side: the JSON journal and PostgreSQL, same data, same code path.

    python bench/backends_bench.py                          # 1k, 100k and 1M records
    python bench/backends_bench.py --sizes 1000             # quicker
    python bench/backends_bench.py --json /tmp/backends.json

It starts a throw-away PostgreSQL server of its own (`tests/postgres.py`, `PgCluster(durable=True)`:
fsync on, `synchronous_commit = on`), stopped and removed at the end. For each size it fills a
JSON store with synthetic calls (`bench/fill.py`), copies it into a new database of that server
with `copy_store` (the same as `python -m backend copy`: migrate, copy, verify; its time is
printed), checks that both answer the same reads, and then measures both stores through the
backend functions (`BackendAgent` over a `JournalStore(fsync=True)` or a `PgStore`):

- a tool call's durable write (`share_information`, the session already open as at call
  connect), one writer, p50/p99, in rounds that alternate the two backends;
- four writer processes at once: acknowledged writes per second, p50/p99 and the longest wait;
- a returning caller's history (`get_shared_information(caller_id=..., limit=20)`, what the agent
  reads at connect; it is `query_information(caller_id=...)`), a caller's sessions
  (`query_sessions(caller_id=...)`) and `summary()`, p50/p99;
- pages of `GET /api/information` under gunicorn on loopback (./gunicorn.conf.py, 2 gevent
  workers, bearer token; `DATA_DIR` for the JSON store, `STORE_URL` too for PostgreSQL),
  sequential requests on one keep-alive connection, p50/p99; the pages that hold only copied
  records are compared between the two servers.

Two floors are measured in the same run: writing 8 KiB and `fdatasync` on the bench's folder (the
least any durable write costs on this disk) and a one-row INSERT + COMMIT on the same server.
It prints a table per size with the ratio PostgreSQL / JSON, and whether PostgreSQL keeps a tool
call's write under 5 ms p99 (the goal). Figures depend on the machine: compare within one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import TOKEN, latencies, pct, request, serve, stop, wait_ready  # noqa: E402
from bench.fill import caller_for, fill  # noqa: E402

KINDS = ("json", "pg")
# the same two without waiting for the disk: a diagnostic of what that wait costs, not a durable store
LAZY = ("json_lazy", "pg_lazy")
LABEL = {
    "json": "JSON",
    "pg": "PostgreSQL",
    "json_lazy": "JSON without fsync",
    "pg_lazy": "PostgreSQL with synchronous_commit=off",
}
GOAL_P99_MS = 5.0
WRITE_CATEGORY = "debt_info"
APP = "backend.api_server:create_app()"


# ---- the two backends --------------------------------------------------------------------------
def open_backend(kind: str, location: str):
    """The backend functions over the JSON store in folder `location` (fsync on) or the
    PostgreSQL store at URL `location`, or (`*_lazy`) the same not waiting for the disk; the
    loaded heap frozen as the agent's prewarm does."""
    from backend.backend_agent import BackendAgent
    from backend.store import JournalStore, freeze_loaded_heap
    from backend.store.postgres import PgStore

    if kind.startswith("json"):
        store = JournalStore(location, fsync=kind == "json")
    else:
        store = PgStore(location if kind == "pg" else no_wal_wait(location), pool_size=10)
    freeze_loaded_heap()
    return BackendAgent(store=store)


def open_calls(backend, tag: str, writes: int) -> list[tuple[str, str]]:
    """Open one session per 7 writes (as at call connect, before any tool call), not timed;
    returns (session_id, caller_id) per write."""
    out = []
    for c in range((writes + 6) // 7):
        sid, caller = f"bench-{tag}-{c}", f"+1555999{c % 10000:04d}"
        started = backend.start_session(sid, caller)
        assert started["success"], started
        out += [(sid, caller)] * 7
    return out[:writes]


def timed_writes(backend, calls: list[tuple[str, str]], tag: str) -> list[float]:
    lat = []
    for i, (sid, caller) in enumerate(calls):
        text = f"Has ${1000 + i:,} of card debt, {tag} {i}"
        t = time.perf_counter()
        result = backend.share_information(text, WRITE_CATEGORY, caller, sid)
        lat.append(time.perf_counter() - t)
        assert result["success"] and not result.get("duplicate"), result
    return lat


WRITER_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from bench.backends_bench import writer_child; writer_child(*sys.argv[2:])"
)


def writer_child(kind: str, location: str, n: str, go: str) -> None:
    """One of the four writer processes: open the store, open its calls, warm up, say `ready`,
    wait for the `go` file, then write `n` records and print their latencies."""
    backend = open_backend(kind, location)
    tag = f"w{os.getpid()}-{uuid.uuid4().hex[:6]}"
    calls = open_calls(backend, tag, int(n) + 10)
    timed_writes(backend, calls[:10], tag + "-warm")
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    start = time.time()
    lat = timed_writes(backend, calls[10:], tag)
    end = time.time()
    backend.close()
    print(json.dumps({"start": start, "end": end, "lat": lat}), flush=True)


def four_writers(kind: str, location: str, per_writer: int, scratch: Path) -> dict:
    go = scratch / f"go-{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_CHILD, str(ROOT), kind, location, str(per_writer), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for p in procs:
            line = p.stdout.readline().strip()
            assert line == "ready", f"writer did not start: {line!r}"
        go.touch()
        results = [json.loads(p.communicate(timeout=900)[0]) for p in procs]
        assert all(p.returncode == 0 for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        go.unlink(missing_ok=True)
    lat = [x for r in results for x in r["lat"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "writes": len(lat),
        "per_s": len(lat) / wall,
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
        "max": max(lat) * 1000,
    }


def timed(fn, args_list: list) -> list[float]:
    out = []
    for args in args_list:
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return out


def p50_p99(values: list[float]) -> tuple[float, float]:
    return pct(values, 0.5), pct(values, 0.99)


# ---- are they the same store? ------------------------------------------------------------------
def same_answers(backends: dict, callers: int, rng: random.Random, n: int = 50) -> list[str]:
    """Differences between the two stores' answers to the same reads (empty: none)."""
    problems = []
    a, b = backends["json"], backends["pg"]
    if a.summary() != b.summary():
        problems.append("summary() differs")
    for _ in range(n):
        caller = caller_for(rng.randrange(callers))
        if a.get_shared_information(caller_id=caller, limit=20) != b.get_shared_information(caller_id=caller, limit=20):
            problems.append(f"get_shared_information(caller_id={caller}) differs")
        if a.query_sessions(caller_id=caller, limit=20) != b.query_sessions(caller_id=caller, limit=20):
            problems.append(f"query_sessions(caller_id={caller}) differs")
        if a.query_calls(caller_id=caller, limit=20) != b.query_calls(caller_id=caller, limit=20):
            problems.append(f"query_calls(caller_id={caller}) differs")
    for cat in ("personal_info", "qualification"):
        if a.query_information(categories=[cat], limit=100) != b.query_information(categories=[cat], limit=100):
            problems.append(f"query_information(categories=[{cat}]) differs")
    return problems


def same_counts(location: dict[str, str]) -> list[str]:
    """After the writes (the same number on each): both stores healthy, with the same counts."""
    problems = []
    stats = {}
    for kind in KINDS:
        backend = open_backend(kind, location[kind])
        try:
            health = backend.store.verify()  # not BackendAgent.verify(): it repairs (writes)
            if not health["healthy"]:
                problems.append(f"{LABEL[kind]} verify(): {health}")
            stats[kind] = backend.stats()
        finally:
            backend.close()
    if stats["json"] != stats["pg"]:
        problems.append(f"stats() after the writes differ: {stats['json']} vs {stats['pg']}")
    return problems


def category_page(url: str, n: int) -> dict:
    """Has autovacuum analyzed `entries` yet, and the category page's p50/p99 through `PgStore`
    (right after the copy, which does not ANALYZE, the planner may have no statistics)."""
    import psycopg

    from backend.store.postgres import PgStore

    with psycopg.connect(url) as conn:
        analyzed = conn.execute(
            "SELECT last_autoanalyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'entries'"
        ).fetchone()[0]
    store = PgStore(url)
    try:
        lat = timed(lambda: store.query_information(categories=["personal_info"], limit=100), [()] * n)
    finally:
        store.close()
    return {"auto_analyzed": analyzed, "category_page": p50_p99(lat)}


def vacuum_analyze(url: str) -> None:
    """What autovacuum does a little after a bulk load, then a CHECKPOINT: done here so that
    neither runs in the middle of a measurement (their writes share the disk with both stores'
    fsyncs), and every figure below is of a database with planner statistics."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


def no_wal_wait(url: str) -> str:
    """`url` with `synchronous_commit = off` for its sessions: a diagnostic, not a durable store."""
    return url + ("&" if "?" in url else "?") + "options=" + quote("-c synchronous_commit=off")


# ---- floors ------------------------------------------------------------------------------------
def disk_floor(folder: Path, n: int) -> list[float]:
    """Append 8 KiB and fdatasync, `n` times: the least a durable write costs on this disk."""
    path = folder / "fdatasync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = os.urandom(8192)
    lat = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return lat


def pg_floor(url: str, n: int) -> list[float]:
    """A one-row INSERT and COMMIT (synchronous_commit on) in a scratch table, `n` times."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, body text)")
        lat = []
        for i in range(n + 20):
            t = time.perf_counter()
            with conn.transaction():
                conn.execute("INSERT INTO bench_floor (body) VALUES (%s)", (f"row {i}",))
            lat.append(time.perf_counter() - t)
        conn.execute("DROP TABLE bench_floor")
    return lat[20:]


def server_settings(url: str) -> dict:
    import psycopg

    names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "shared_buffers")
    with psycopg.connect(url) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}


def pg_size_mb(url: str) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


# ---- the API under gunicorn ----------------------------------------------------------------------
def api_paths(callers: int, filled_seq: int, n: int, rng: random.Random) -> dict[str, list[str]]:
    """Pages of /api/information; all but the first hold copied records only (comparable)."""
    return {
        "newest 100": ["/api/information?limit=100"] * n,
        "caller_id=...": [
            f"/api/information?caller_id={quote(caller_for(rng.randrange(callers)))}&limit=100" for _ in range(n)
        ],
        "category=personal_info": ["/api/information?category=personal_info&limit=100"] * n,
        "after_seq=...": [
            f"/api/information?after_seq={rng.randrange(max(1, filled_seq - 2000))}&limit=100" for _ in range(n)
        ],
    }


def body(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        assert response.status == 200, (path, response.status)
        return json.loads(response.read())
    finally:
        conn.close()


def api_figures(envs: dict[str, dict], paths: dict[str, list[str]], workers: int) -> tuple[dict, list[str]]:
    """p50/p99 per page and backend, the workers' start time, and the pages that differ."""
    out: dict[str, dict] = {kind: {} for kind in envs}
    pages: dict[str, list[dict]] = {}
    for kind, env in envs.items():
        proc, port = serve(APP, Path(env["DATA_DIR"]), workers, env)
        try:
            out[kind]["ready_s"] = wait_ready(proc, port, workers)
            for name, batch in paths.items():
                latencies(port, batch[:10])  # warm-up
                out[kind][name] = p50_p99(latencies(port, batch[10:]))
            assert request(port, "/api/health")[1] == 200
            pages[kind] = [body(port, batch[k]) for batch in list(paths.values())[1:] for k in range(10, 15)]
        finally:
            stop(proc)
    problems = []
    kinds = list(envs)
    for k, (a, b) in enumerate(zip(pages[kinds[0]], pages[kinds[1]], strict=True)):
        if a != b:
            problems.append(f"API page {k} differs ({len(a['information'])} vs {len(b['information'])} records)")
    return out, problems


# ---- one size ----------------------------------------------------------------------------------
def run_size(n: int, cluster, args, writes_only: bool = False) -> dict:
    from backend.backend_agent import copy_store
    from backend.store import JournalStore

    rng = random.Random(n)
    callers = min(20000, max(10, n // 7))
    row: dict = {"records": n, "callers": callers, "writes_only": writes_only, "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix=f"backends-bench-{n}-", dir=args.tmp) as tmp:
        folder = Path(tmp) / "journal"
        t = time.perf_counter()
        meta = fill(folder, n, callers=callers)
        row["fill_s"] = time.perf_counter() - t
        t = time.perf_counter()
        store = JournalStore(folder, fsync=False)
        store.write_snapshot()  # what the first open after a bulk load writes
        store.close()
        row["json_index_s"] = time.perf_counter() - t
        db = cluster.create_database(f"bench_{n}")
        url = cluster.url(db)
        t = time.perf_counter()
        report = copy_store(str(folder), url)
        row["copy_s"] = time.perf_counter() - t
        assert report["verified"], report
        row["copied_entries"] = report["copied"]
        row["before_analyze"] = category_page(url, args.reads)
        t = time.perf_counter()
        vacuum_analyze(url)
        row["analyze_s"] = time.perf_counter() - t
        row["after_analyze"] = category_page(url, args.reads)
        os.sync()  # the fill's and the copy's dirty pages on disk before any durable write is timed
        print(
            f"[{n:>9,}] filled in {row['fill_s']:.1f} s, indexed in {row['json_index_s']:.1f} s, "
            f"copied into PostgreSQL in {row['copy_s']:.1f} s ({report['copied']:,} entries, verified)",
            file=sys.stderr,
            flush=True,
        )
        row["size_mb"] = {"json": folder_mb(folder), "pg": pg_size_mb(url)}
        location = {"json": str(folder), "pg": url}
        open_s, backends = {}, {}
        for kind in KINDS:
            t = time.perf_counter()
            backends[kind] = open_backend(kind, location[kind])
            backends[kind].summary()  # the first read: the JSON index is loaded, a connection open
            open_s[kind] = time.perf_counter() - t
        row["open_s"] = open_s
        row["differences"] = same_answers(backends, callers, random.Random(5))

        # 1. one writer, in rounds alternating the backends, durable and (diagnostic) not: JSON
        # without fsync is the same JournalStore with fsync off for its rounds (a second store
        # in this process would read the first's writes at each round's first write)
        writers = {**backends, "json_lazy": backends["json"], "pg_lazy": open_backend("pg_lazy", url)}
        order = (*KINDS, *LAZY)
        per_round = max(1, args.writes // args.rounds)
        calls = {k: open_calls(writers[k], f"single-{k}", args.warmup + per_round * args.rounds) for k in order}
        single: dict[str, list[float]] = {k: [] for k in order}
        for r in range(-1, args.rounds):  # round -1: the warm-up, not timed
            for kind in order if r % 2 == 0 else order[::-1]:
                store = writers[kind].store
                if kind.startswith("json"):
                    store.fsync = kind == "json"
                lo, hi = (0, args.warmup) if r < 0 else (args.warmup + r * per_round, args.warmup + (r + 1) * per_round)
                lat = timed_writes(writers[kind], calls[kind][lo:hi], f"round {r}")
                if r >= 0:
                    single[kind] += lat
        backends["json"].store.fsync = True
        writers["pg_lazy"].close()
        row["write"] = {k: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "n": len(v)} for k, v in single.items()}
        print(f"[{n:>9,}] single writer done", file=sys.stderr, flush=True)

        if not writes_only:
            # 3, 4: reads, metric by metric, alternating
            ask = [caller_for(rng.randrange(callers)) for _ in range(args.reads)]
            reads: dict[str, dict] = {k: {} for k in KINDS}
            for kind in KINDS:
                b = backends[kind]
                reads[kind]["history"] = p50_p99(
                    timed(lambda c, b=b: b.get_shared_information(caller_id=c, limit=20), [(c,) for c in ask])
                )
            for kind in KINDS:
                b = backends[kind]
                reads[kind]["sessions"] = p50_p99(
                    timed(lambda c, b=b: b.query_sessions(caller_id=c, limit=20), [(c,) for c in ask])
                )
            for kind in KINDS:
                reads[kind]["summary"] = p50_p99(timed(backends[kind].summary, [()] * args.reads))
            row["reads"] = reads

        for b in backends.values():
            b.close()

        # 2. four writer processes
        row["four"] = {}
        for kind in (*KINDS, *LAZY):
            where = location[kind.removesuffix("_lazy")]
            row["four"][kind] = four_writers(kind, where, args.writer_writes, Path(tmp))
            print(f"[{n:>9,}] four writers on {LABEL[kind]} done", file=sys.stderr, flush=True)
        row["differences"] += same_counts(location)

        if not writes_only:
            # 5. the API under gunicorn
            pg_dir = Path(tmp) / "pg-data-dir"  # the dashboard's secret key; no store in it
            pg_dir.mkdir()
            envs = {
                "json": {"DATA_DIR": str(folder), "STORE_URL": "", "STORE_FSYNC": "1"},
                "pg": {"DATA_DIR": str(pg_dir), "STORE_URL": url, "STORE_FSYNC": "1"},
            }
            paths = api_paths(callers, meta["last_seq"], args.requests + 10, rng)
            row["api"], problems = api_figures(envs, paths, args.workers)
            row["differences"] += problems
            print(f"[{n:>9,}] API done", file=sys.stderr, flush=True)

        row["load_end"] = os.getloadavg()[0]
    return row


# ---- the report ----------------------------------------------------------------------------------
def line(name: str, a: float, b: float, unit: str = "ms", digits: int = 3) -> str:
    ratio = f"{b / a:9.2f}x" if a else f"{'-':>10}"
    return f"  {name:<52} {a:>12.{digits}f} {b:>12.{digits}f} {ratio}  {unit}"


def report(rows: list[dict], floors: dict, settings: dict, args) -> str:
    out = []
    say = out.append
    say(
        f"PostgreSQL {settings['server_version']} (own throw-away server): fsync={settings['fsync']}, "
        f"synchronous_commit={settings['synchronous_commit']}, wal_sync_method={settings['wal_sync_method']}, "
        f"full_page_writes={settings['full_page_writes']}, shared_buffers={settings['shared_buffers']}"
    )
    say("JSON: JournalStore(fsync=True). Both through BackendAgent. Times in ms; ratio = PostgreSQL / JSON.")
    d, p = floors["disk"], floors["pg"]
    say(
        f"floors: 8 KiB write + fdatasync on the bench's disk p50 {d[0]:.3f} / p99 {d[1]:.3f}; "
        f"one-row INSERT + COMMIT on the server p50 {p[0]:.3f} / p99 {p[1]:.3f}"
    )
    for r in rows:
        say("")
        say(
            f"== {r['records']:,} records ({r['callers']:,} callers; fill {r['fill_s']:.1f} s, JSON index "
            f"{r['json_index_s']:.1f} s, copy into PostgreSQL {r['copy_s']:.1f} s for {r['copied_entries']:,} "
            f"entries, verified; load average {r['load_start']:.1f} -> {r['load_end']:.1f}) =="
        )
        ba = r["before_analyze"]
        say(
            f"  right after the copy (autovacuum had {'already' if ba['auto_analyzed'] else 'not yet'} analyzed it): "
            f"query_information(categories=[personal_info], limit=100) p50 {ba['category_page'][0]:.3f} / "
            f"p99 {ba['category_page'][1]:.3f} ms; VACUUM (ANALYZE) + CHECKPOINT took {r['analyze_s']:.1f} s; after it "
            f"p50 {r['after_analyze']['category_page'][0]:.3f} / p99 {r['after_analyze']['category_page'][1]:.3f} ms"
        )
        if r.get("writes_only"):
            say("  (writes only: reads and API not measured at this size)")
        say(f"  {'':<52} {'JSON':>12} {'PostgreSQL':>12} {'ratio':>10}")
        say(line("on disk", r["size_mb"]["json"], r["size_mb"]["pg"], "MB", 1))
        say(line("open + first summary()", r["open_s"]["json"], r["open_s"]["pg"], "s", 3))
        w = r["write"]
        say(line(f"tool call write (share_information) p50, n={w['json']['n']}", w["json"]["p50"], w["pg"]["p50"]))
        say(line("tool call write (share_information) p99", w["json"]["p99"], w["pg"]["p99"]))
        f = r["four"]
        name = f"4 writer processes: writes/s ({f['json']['writes']} writes)"
        say(line(name, f["json"]["per_s"], f["pg"]["per_s"], "/s", 0))
        say(line("4 writer processes: p50", f["json"]["p50"], f["pg"]["p50"]))
        say(line("4 writer processes: p99", f["json"]["p99"], f["pg"]["p99"]))
        say(line("4 writer processes: longest wait", f["json"]["max"], f["pg"]["max"]))
        if "reads" in r:
            rd = r["reads"]
            for key, name in (
                ("history", "caller history get_shared_information(20)"),
                ("sessions", "caller's sessions query_sessions(20)"),
                ("summary", "summary()"),
            ):
                say(line(f"{name} p50", rd["json"][key][0], rd["pg"][key][0]))
                say(line(f"{name} p99", rd["json"][key][1], rd["pg"][key][1]))
        if "api" in r:
            api = r["api"]
            say(line(f"gunicorn: {args.workers} workers ready", api["json"]["ready_s"], api["pg"]["ready_s"], "s", 2))
            for name in ("newest 100", "caller_id=...", "category=personal_info", "after_seq=..."):
                say(line(f"GET /api/information {name} p50", api["json"][name][0], api["pg"][name][0]))
                say(line(f"GET /api/information {name} p99", api["json"][name][1], api["pg"][name][1]))
        say("  diagnostic, not durable: JSON without fsync | PostgreSQL with synchronous_commit=off")
        for kind in LAZY:
            w, f = r["write"][kind], r["four"][kind]
            say(
                f"    {LABEL[kind] + ':':<40} write p50 {w['p50']:.3f} / p99 {w['p99']:.3f} ms; "
                f"4 writers {f['per_s']:.0f}/s, p50 {f['p50']:.3f} / p99 {f['p99']:.3f} ms"
            )
        if r["differences"]:
            say("  ANSWERS DIFFER between the two stores: " + "; ".join(r["differences"][:10]))
        else:
            say("  same answers from both stores (summary, caller reads, pages; counts after the writes)")
    say("")
    for r in rows:
        p99 = r["write"]["pg"]["p99"]
        verdict = "met" if p99 < GOAL_P99_MS else "NOT met"
        say(
            f"goal at {r['records']:>9,} records: PostgreSQL tool call write p99 < {GOAL_P99_MS:g} ms: {verdict} "
            f"({p99:.3f} ms; p50 {r['write']['pg']['p50']:.3f} ms; JSON p99 {r['write']['json']['p99']:.3f} ms)"
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000", help="comma-separated record counts")
    parser.add_argument("--writes-only-sizes", default="", help="sizes measured for writes only (no reads, no API)")
    parser.add_argument("--writes", type=int, default=1000, help="timed single-writer writes per backend")
    parser.add_argument("--rounds", type=int, default=4, help="rounds the single-writer writes alternate in")
    parser.add_argument("--warmup", type=int, default=100, help="untimed writes first")
    parser.add_argument("--writer-writes", type=int, default=1000, help="writes per process of the four")
    parser.add_argument("--reads", type=int, default=300, help="samples per read")
    parser.add_argument("--requests", type=int, default=300, help="requests per API page")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--tmp", default=None, help="folder for the stores and the server (default: the system's)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    from tests.postgres import PgCluster

    sizes = [(int(s), False) for s in args.sizes.split(",") if s]
    sizes += [(int(s), True) for s in args.writes_only_sizes.split(",") if s]
    cluster = PgCluster(durable=True, root=args.tmp)
    try:
        settings = server_settings(cluster.url("postgres"))
        floor_db = cluster.create_database("bench_floor")
        with tempfile.TemporaryDirectory(prefix="backends-bench-floor-", dir=args.tmp) as tmp:
            floors = {
                "disk": p50_p99(disk_floor(Path(tmp), 1000)),
                "pg": p50_p99(pg_floor(cluster.url(floor_db), 1000)),
            }
        rows = []
        for n, writes_only in sizes:
            rows.append(run_size(n, cluster, args, writes_only))
    finally:
        cluster.close()
    text = report(rows, floors, settings, args)
    print(text)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"settings": settings, "floors": floors, "rows": rows, "report": text}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
