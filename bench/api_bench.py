"""API benchmark: the product's API under gunicorn against the seed's design, at 100k and 1M records.

    python bench/api_bench.py                       # 100k and 1M records (about 10 minutes)
    python bench/api_bench.py --sizes 10000         # quicker

For each size it fills a store folder (journal lines written directly by `bench/fill.py`, in
the exact format `JournalStore` writes; kept under --data-root and reused by later runs) and
writes the index snapshot a first open would write. Then, on loopback, one server at a time:
- the product: `gunicorn 'backend.api_server:create_app()'` with ./gunicorn.conf.py (2 gevent
  workers), bearer token and access log on;
- the baseline, implemented here only: the seed's design, a Flask app under the same gunicorn
  settings that loads the whole store file (the seed's `shared_information.json`, converted
  from the journal once) on every request and filters it in Python.
It measures p50/p99 of `/api/information?caller_id=...`, `/api/information?after_seq=...` and
`/api/summary` (sequential requests on one keep-alive connection), and requests per second on
`/api/summary` with 8 concurrent clients; then prints a table with the ratios.
Targets at 1M records: p50 <= 20 ms for each of the three, >= 200 requests/s on /api/summary.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fill import caller_for, fill  # noqa: E402

TOKEN = "bench-token"
SEED_FILE = "shared_information.json"


# ---- the baseline: the seed's design (the whole file loaded per request) -------------------------
def baseline_app():
    """The seed's design, for comparison only: every request loads the whole store file."""
    from flask import Flask, request

    app = Flask("baseline")
    path = Path(os.environ["DATA_DIR"]) / SEED_FILE

    def load() -> dict:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    @app.get("/api/health")
    def health():
        return {"status": "ok"}

    @app.get("/api/information")
    def information():
        records = load()["shared_information"]
        limit = int(request.args.get("limit", 100))
        if "after_seq" in request.args:
            after = int(request.args["after_seq"])
            out = [r for r in records if r["seq"] > after][:limit]
        else:
            caller = request.args.get("caller_id")
            out = [r for r in reversed(records) if caller is None or r["caller_id"] == caller][:limit]
        return {"information": out, "count": len(out), "next_cursor": None}

    @app.get("/api/summary")
    def summary():
        doc = load()
        records, calls, sessions = doc["shared_information"], doc["call_logs"], doc["sessions"]
        by_category: dict[str, int] = {}
        for r in records:
            by_category[r["category"]] = by_category.get(r["category"], 0) + 1
        by_outcome: dict[str, int] = {}
        for c in calls:
            by_outcome[c["outcome"]] = by_outcome.get(c["outcome"], 0) + 1
        ended = {c["session_id"] for c in calls}
        return {
            "total_sessions": len(sessions),
            "active_sessions": sum(1 for s in sessions if s["session_id"] not in ended),
            "total_calls": len(calls),
            "total_information": len(records),
            "by_category": by_category,
            "by_outcome": by_outcome,
            "recent_information": records[::-1][:10],
            "recent_calls": calls[::-1][:10],
        }

    return app


def write_seed_file(data_dir: Path) -> None:
    """The journal converted once to the seed's single JSON document."""
    doc: dict[str, list] = {"shared_information": [], "sessions": [], "call_logs": []}
    key = {"info": "shared_information", "session": "sessions", "call": "call_logs"}
    with open(data_dir / "journal.jsonl", "rb") as fh:
        for line in fh:
            entry = json.loads(line)
            if entry.get("type") in key:
                doc[key[entry.pop("type")]].append(entry)
    tmp = data_dir / (SEED_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
    tmp.replace(data_dir / SEED_FILE)


# ---- preparing a store -----------------------------------------------------------------------
def prepare(root: Path, size: int) -> tuple[Path, dict]:
    data_dir = root / f"store-{size}"
    meta_path = data_dir / "bench-meta.json"
    if meta_path.exists():
        return data_dir, json.loads(meta_path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "journal.jsonl").unlink(missing_ok=True)
    t = time.perf_counter()
    meta = fill(data_dir, size)
    print(f"  filled {size} records in {time.perf_counter() - t:.1f} s", flush=True)
    from backend.store import JournalStore

    t = time.perf_counter()
    store = JournalStore(data_dir, fsync=False)
    store.write_snapshot()  # what the first worker to open the store would do
    store.close()
    print(f"  indexed and wrote the snapshot in {time.perf_counter() - t:.1f} s", flush=True)
    write_seed_file(data_dir)
    meta_path.write_text(json.dumps(meta))
    return data_dir, meta


# ---- serving -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app_spec: str, data_dir: Path, workers: int, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    """gunicorn with ./gunicorn.conf.py on a free loopback port; `env` adds to or overrides its
    environment (e.g. STORE_URL)."""
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "API_TOKENS": TOKEN,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "STORE_FSYNC": "0",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--no-control-socket", app_spec]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def wait_ready(proc: subprocess.Popen, port: int, workers: int, timeout: float = 300) -> float:
    """Seconds until /api/health answers and every worker has finished loading (idle CPU)."""
    start = time.monotonic()
    while True:
        assert proc.poll() is None, "server exited"
        assert time.monotonic() - start < timeout, "server not ready"
        try:
            if request(port, "/api/health")[1] == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    while True:
        kids = _children(proc.pid)
        before = _cpu_ticks(kids)
        time.sleep(0.5)
        if len(kids) >= workers and _cpu_ticks(kids) - before <= 5:
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, "workers still busy"


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- measuring -----------------------------------------------------------------------------
def request(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[float, int]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    response = conn.getresponse()
    response.read()
    took = time.perf_counter() - t
    if own:
        conn.close()
    return took, response.status


def latencies(port: int, paths: list[str]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    out = []
    for path in paths:
        took, status = request(port, path, conn)
        assert status == 200, (path, status)
        out.append(took)
    conn.close()
    return out


def throughput(port: int, path: str, clients: int, seconds: float) -> float:
    """Requests per second with `clients` concurrent keep-alive clients for about `seconds`."""
    counts = [0] * clients
    deadline = time.monotonic() + seconds
    start = time.monotonic()

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while time.monotonic() < deadline:
            assert request(port, path, conn)[1] == 200
            counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * q))] * 1000


def workload(meta: dict, n: int, rng: random.Random) -> dict[str, list[str]]:
    last = meta["last_seq"]
    return {
        "information?caller_id": [
            f"/api/information?caller_id=%2B{caller_for(rng.randrange(meta['callers']))[1:]}" for _ in range(n)
        ],
        "information?after_seq": [f"/api/information?after_seq={rng.randrange(last - 2000)}" for _ in range(n)],
        "summary": ["/api/summary"] * n,
    }


def measure(app_spec: str, data_dir: Path, meta: dict, n: int, seconds: float, workers: int) -> dict:
    proc, port = serve(app_spec, data_dir, workers)
    try:
        ready = wait_ready(proc, port, workers)
        rng = random.Random(1)
        results: dict = {"ready_s": ready}
        for name, paths in workload(meta, n + 3, rng).items():
            latencies(port, paths[:3])  # warm-up
            values = latencies(port, paths[3:])
            results[name] = (pct(values, 0.5), pct(values, 0.99), statistics.mean(values) * 1000)
        results["summary_rps"] = throughput(port, "/api/summary", 8, seconds)
        return results
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated record counts")
    parser.add_argument("--data-root", default="/tmp/api_bench_data", help="where filled stores are kept")
    parser.add_argument("--samples", type=int, default=300, help="requests per endpoint (product)")
    parser.add_argument("--baseline-samples", type=int, default=5, help="requests per endpoint (baseline)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"store with {size} records:", flush=True)
        data_dir, meta = prepare(Path(args.data_root), size)
        product = measure("backend.api_server:create_app()", data_dir, meta, args.samples, args.seconds, args.workers)
        print(f"  product measured (workers ready after {product['ready_s']:.1f} s)", flush=True)
        baseline = measure(
            "bench.api_bench:baseline_app()", data_dir, meta, args.baseline_samples, args.seconds, args.workers
        )
        print(f"  baseline measured (ready after {baseline['ready_s']:.1f} s)", flush=True)
        rows.append((size, product, baseline))
    print()
    print(
        f"{args.workers} gunicorn gevent workers on 127.0.0.1; latency: sequential requests on one keep-alive "
        f"connection ({args.samples} product, {args.baseline_samples} baseline); throughput: 8 clients, "
        f"{args.seconds:.0f} s"
    )
    print(
        f"{'records':>9} {'endpoint':<24} {'API p50 ms':>10} {'API p99 ms':>10} {'seed p50 ms':>11} "
        f"{'seed p99 ms':>11} {'p50 ratio':>10}"
    )
    for size, product, baseline in rows:
        for name in ("information?caller_id", "information?after_seq", "summary"):
            p, b = product[name], baseline[name]
            print(f"{size:>9} {name:<24} {p[0]:>10.2f} {p[1]:>10.2f} {b[0]:>11.1f} {b[1]:>11.1f} {b[0] / p[0]:>9.0f}x")
        p_rps, b_rps = product["summary_rps"], baseline["summary_rps"]
        print(
            f"{size:>9} {'summary req/s, 8 clients':<24} {p_rps:>10.0f} {'':>10} {b_rps:>11.2f} {'':>11} "
            f"{p_rps / b_rps:>9.0f}x"
        )
    for size, product, _ in rows:
        if size >= 1_000_000:
            ok = all(product[n][0] <= 20 for n in ("information?caller_id", "information?after_seq", "summary"))
            print(
                f"targets at {size}: p50 <= 20 ms each: {'met' if ok else 'NOT met'}; "
                f">= 200 req/s on /api/summary: {'met' if product['summary_rps'] >= 200 else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
