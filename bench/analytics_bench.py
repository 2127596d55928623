"""Analytics speed: `GET /api/analytics` and the dashboard's `/analytics` page for a 30-day and a
365-day range, against a same-run baseline that computes the same figures from the records.

For each size: fill a fresh store folder (bench/fill.py: one call log per 10 information
records, spread over the last 400 days, with varied durations, costs on most calls and a
missing disclosure on some), build the app (`create_app`, which opens the store and indexes
it: timed apart; then its heap is frozen out of the garbage collector's full collections, as a
gunicorn worker's is), then for each range time N sequential requests through Flask's test
client (no network): the API route (bearer token) and the dashboard page (signed in, its server-side
render; its charts' JSON is the same function). The baseline, run in the same process on the
same store, is what the figures would cost without the index columns: page through every call
log of the range with `backend.query_calls` (1,000 a page), read each record and aggregate the
same figures in Python. Both must agree (totals, outcomes, calls per day, cost and missing
disclosures), or the bench exits 1. Target: p99 < 1 s at 1M records for both routes.

    python bench/analytics_bench.py                        # 1M records (about 3 minutes)
    python bench/analytics_bench.py --sizes 100000 1000000
    python bench/analytics_bench.py --quick                # 20k records, few runs: a smoke test
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.api.params import AnalyticsParams  # noqa: E402
from backend.api_server import create_app  # noqa: E402
from backend.store import freeze_loaded_heap  # noqa: E402
from backend.store.records import OUTCOMES, epoch  # noqa: E402
from bench.fill import fill  # noqa: E402

TOKEN = "bench-token"
TZ = "America/New_York"
SPAN_DAYS = 400
PER_CALL = 10
TARGET_MS = 1000.0
TARGET_RECORDS = 1_000_000
RANGES = (30, 365)


def sign_in(client) -> None:
    page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"token": TOKEN, "csrf_token": csrf}).status_code == 302


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def p99(samples: list[float]) -> float:
    """Nearest rank: with fewer than 100 runs, the slowest run or close to it."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


# ---- the baseline: the same figures from every call log record of the range ----------------------
def scan_figures(backend, p: AnalyticsParams) -> dict:
    zone = ZoneInfo(p.tz)
    since = datetime.combine(p.since, datetime.min.time(), zone).timestamp()
    until = datetime.combine(p.until + timedelta(days=1), datetime.min.time(), zone).timestamp() - 1e-6
    calls, before = [], None
    while True:
        page, more = backend.query_calls(since=since, until=until, limit=1000, before_seq=before)
        calls.extend(page)
        if not more:
            break
        before = page[-1]["seq"]
    per_day: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    costs, missing, durations = [], 0, []
    for call in calls:
        per_day[datetime.fromtimestamp(epoch(call["ended_at"]), zone).date().isoformat()] += 1
        outcomes[call["outcome"]] += 1
        durations.append(call["duration_seconds"])
        if call.get("cost"):
            costs.append(call["cost"]["total_usd"])
        missing += bool(call.get("missing_disclosures"))
    days = [(p.since + timedelta(days=k)).isoformat() for k in range(p.days)]
    durations.sort()
    return {
        "calls": len(calls),
        "qualified": outcomes["qualified"],
        "outcomes": {o: outcomes[o] for o in OUTCOMES},
        "per_day": [per_day[d] for d in days],
        "cost_total": round(math.fsum(costs), 4),
        "calls_with_cost": len(costs),
        "missing": missing,
        "p90": round(durations[math.ceil(0.9 * len(durations)) - 1], 1) if durations else None,
    }


def same_as_scan(page: dict, scan: dict) -> bool:
    return (
        page["totals"]["calls"] == scan["calls"]
        and page["totals"]["qualified"] == scan["qualified"]
        and {o: page["outcomes"][o] for o in OUTCOMES} == scan["outcomes"]
        and [d["calls"] for d in page["per_day"]] == scan["per_day"]
        and abs(page["cost"]["total_usd"] - scan["cost_total"]) < 1e-3
        and page["cost"]["calls_with_cost"] == scan["calls_with_cost"]
        and page["missing_disclosures"]["calls"] == scan["missing"]
        and page["duration"]["p90_seconds"] == scan["p90"]
    )


def measure(size: int, runs: int, scan_runs: int) -> tuple[dict, list[dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        start = time.perf_counter()
        filled = fill(data_dir, size, per_call=PER_CALL, span_seconds=SPAN_DAYS * 86400, figures=True)
        fill_s = time.perf_counter() - start
        start = time.perf_counter()
        app = create_app({"DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN], "STORE_FSYNC": False})
        open_s = time.perf_counter() - start
        freeze_loaded_heap()  # as gunicorn.conf.py's post_worker_init does in every worker
        backend = app.extensions["backend"]
        api, page = app.test_client(), app.test_client()
        sign_in(page)
        today = datetime.now(ZoneInfo(TZ)).date()
        total_calls = len(backend.call_figures().ended)
        rows = []
        for days in RANGES:
            p = AnalyticsParams(today - timedelta(days=days - 1), today, TZ)
            query = f"since={p.since}&until={p.until}&tz={TZ}"
            auth = {"Authorization": f"Bearer {TOKEN}"}

            def get_api(query=query, auth=auth):
                response = api.get(f"/api/analytics?{query}", headers=auth)
                assert response.status_code == 200, response.status_code
                return response.get_json()

            def get_page(query=query):
                response = page.get(f"/analytics?{query}")
                assert response.status_code == 200, response.status_code

            figures = get_api()  # once untimed: the first request also warms Flask's caches
            get_page()
            api_s = timed(get_api, runs)
            page_s = timed(get_page, runs)
            scan = scan_figures(backend, p)
            scan_s = timed(lambda p=p: scan_figures(backend, p), scan_runs)
            rows.append(
                {
                    "records": size,
                    "range": f"{days} days",
                    "calls": figures["totals"]["calls"],
                    "api_p50": statistics.median(api_s) * 1000,
                    "api_p99": p99(api_s) * 1000,
                    "page_p50": statistics.median(page_s) * 1000,
                    "page_p99": p99(page_s) * 1000,
                    "scan_p50": statistics.median(scan_s) * 1000,
                    "same": same_as_scan(figures, scan),
                    "runs": runs,
                }
            )
        meta = {
            "records": size,
            "calls": total_calls,
            "journal_lines": filled["last_seq"],
            "fill_s": fill_s,
            "open_s": open_s,
        }
        backend.close()
        return meta, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[TARGET_RECORDS])
    parser.add_argument("--runs", type=int, default=50, help="timed requests per route and range")
    parser.add_argument("--scan-runs", type=int, default=5, help="timed runs of the baseline per range")
    parser.add_argument("--quick", action="store_true", help="20k records, 5 runs: a smoke test of the bench")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.runs, args.scan_runs = [20_000], 5, 2
    print(
        f"analytics bench: {TZ}, calls spread over {SPAN_DAYS} days, one call log per {PER_CALL} records; "
        "Flask test client, sequential requests, heap frozen as in a gunicorn worker"
    )
    all_rows, ok = [], True
    for size in args.sizes:
        meta, rows = measure(size, args.runs, args.scan_runs)
        print(
            f"{meta['records']:,} records ({meta['calls']:,} calls, {meta['journal_lines']:,} journal lines): "
            f"filled in {meta['fill_s']:.1f} s, store opened and indexed in {meta['open_s']:.1f} s"
        )
        all_rows.extend(rows)
    print(
        f"{'records':>9} {'range':<9} {'calls':>7} {'api p50':>8} {'api p99':>8} {'page p50':>9} {'page p99':>9} "
        f"{'scan p50':>9} {'same':>5} {'scan/api':>9}"
    )
    for r in all_rows:
        ok = ok and r["same"]
        print(
            f"{r['records']:>9} {r['range']:<9} {r['calls']:>7} {r['api_p50']:>8.1f} {r['api_p99']:>8.1f} "
            f"{r['page_p50']:>9.1f} {r['page_p99']:>9.1f} {r['scan_p50']:>9.1f} {'yes' if r['same'] else 'NO':>5} "
            f"{r['scan_p50'] / r['api_p50']:>8.1f}x"
        )
    print(
        "(ms; p99 is the nearest rank of the runs; scan: the same figures from every call log of the range "
        "through backend.query_calls, in-process, no HTTP; scan/api: scan p50 / api p50)"
    )
    at_target = [r for r in all_rows if r["records"] >= TARGET_RECORDS]
    goal = f"target: p99 < {TARGET_MS:.0f} ms for /api/analytics and /analytics at {TARGET_RECORDS:,} records"
    if not at_target:
        print(f"{goal}: not measured (largest size {max(args.sizes):,})")
    else:
        met = all(max(r["api_p99"], r["page_p99"]) < TARGET_MS for r in at_target)
        print(f"{goal}: {'met' if met else 'NOT met'}")
    if not ok:
        print("the index's figures differ from the records' figures", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
