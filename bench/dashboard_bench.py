"""Dashboard speed: the overview's first render and the live update's payload, at two store sizes.

For each size: fill a fresh store folder (bench/fill.py), add 20 calls in progress, build the
app (`create_app`, which opens the store and indexes it: timed apart), sign in, then time
`GET /` (the very first render, then the median of the next renders), and measure `GET
/live?after_seq=N` after one new call of 7 records and an end: its size must not grow with the
store. Runs in-process with Flask's test client (no network), on a JournalStore in a
temporary folder.

    python bench/dashboard_bench.py            # 1k and 100k records
    python bench/dashboard_bench.py --sizes 1000 100000 1000000
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.api_server import create_app  # noqa: E402
from backend.store import JournalStore  # noqa: E402
from bench.fill import fill  # noqa: E402

TOKEN = "bench-token"
RUNS = 20


def sign_in(client) -> None:
    page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"token": TOKEN, "csrf_token": csrf}).status_code == 302


def add_active_calls(data_dir: Path, n: int = 20) -> None:
    store = JournalStore(data_dir, fsync=False)
    for i in range(n):
        caller = f"+1666{i:07d}"
        store.start_session(f"active-{i}", caller)
        store.add_information(
            information="Name given", category="contact_details", caller_id=caller, session_id=f"active-{i}"
        )
    store.close()


def timed_get(client, url: str) -> tuple[float, int]:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, (url, response.status_code)
    return elapsed, len(response.get_data())


def one_call(store, caller: str = "+17770000001", session: str = "bench-new") -> None:
    for k, category in enumerate(
        (
            "contact_details",
            "debt_info",
            "personal_info",
            "qualification",
            "conversation_flow",
            "debt_info",
            "personal_info",
        )
    ):
        store.add_information(information=f"new fact {k}", category=category, caller_id=caller, session_id=session)
    store.end_session(reason="customer_qualified_transfer", caller_id=caller, session_id=session)


def measure(size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        fill(data_dir, size)
        add_active_calls(data_dir)
        start = time.perf_counter()
        app = create_app({"DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN], "STORE_FSYNC": False})
        open_s = time.perf_counter() - start
        client = app.test_client()
        sign_in(client)
        first_s, page_bytes = timed_get(client, "/")
        renders = [timed_get(client, "/")[0] for _ in range(RUNS)]
        caller_s = statistics.median(timed_get(client, "/?caller=%2B15550000042")[0] for _ in range(5))
        text_s = timed_get(client, "/?q=no-such-words")[0]  # a text search that matches nothing scans all
        store = app.extensions["backend"].store
        before = store.last_seq()
        quiet_s, quiet_bytes = timed_get(client, f"/live?after_seq={before}")
        one_call(store)
        live_s, live_bytes = timed_get(client, f"/live?after_seq={before}")
        return {
            "records": size,
            "open_s": open_s,
            "first_render_ms": first_s * 1000,
            "render_p50_ms": statistics.median(renders) * 1000,
            "render_max_ms": max(renders) * 1000,
            "caller_filter_p50_ms": caller_s * 1000,
            "text_miss_ms": text_s * 1000,
            "page_bytes": page_bytes,
            "live_quiet_bytes": quiet_bytes,
            "live_quiet_ms": quiet_s * 1000,
            "live_bytes": live_bytes,
            "live_ms": live_s * 1000,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    args = parser.parse_args()
    rows = [measure(n) for n in args.sizes]
    print(
        f"{'records':>9} {'open s':>7} {'first ms':>9} {'p50 ms':>7} {'max ms':>7} {'caller ms':>9} "
        f"{'q-miss ms':>9} {'page B':>7} {'live B':>7} {'live ms':>7} {'idle B':>6}"
    )
    for r in rows:
        print(
            f"{r['records']:>9} {r['open_s']:>7.2f} {r['first_render_ms']:>9.1f} {r['render_p50_ms']:>7.1f} "
            f"{r['render_max_ms']:>7.1f} {r['caller_filter_p50_ms']:>9.1f} {r['text_miss_ms']:>9.1f} "
            f"{r['page_bytes']:>7} {r['live_bytes']:>7} {r['live_ms']:>7.1f} {r['live_quiet_bytes']:>6}"
        )
    print("first/p50/max: GET / (signed in, no filter); caller: GET /?caller=...; q-miss: GET /?q=<text that")
    print("matches nothing> (scans every record); live B: GET /live after one new")
    print("call (7 records + its end); idle B: GET /live with nothing new. Times in-process (Flask test client).")


if __name__ == "__main__":
    main()
