"""Agent memory benchmark: what the JSON store costs an agent job process, lean against full.

    python bench/agent_memory_bench.py                   # 1M records (about 4 minutes)
    python bench/agent_memory_bench.py --records 100000  # quicker
    python bench/agent_memory_bench.py --jobs            # and a summary job per call in the journal

Fills a folder with `--records` information records (`bench/fill.py`: about seven a call, call
logs with costs, some disclosure evidence), then lists the do-not-call requests among them (as
an agent's first prewarm would: afterwards a prewarm writes nothing). Then, each in a fresh
process, with no index snapshot in the folder and none written:
- opening the store lean (what the agent's processes open) and full (the API's index): wall
  and CPU seconds, `--repeat` times (the median is reported), and the resident memory after the
  open; the store's share is that minus a process that opened an empty store;
- reading a caller's history as the agent does at connect (`get_shared_information`, 20
  records): a returning caller, a new caller, p50 / p99;
- `share_information` with fsync on, p50 / p99 (these append to the journal: measured last);
- a real agent job process: `telephony_agent` imported and `prewarm` run (LiveKit, google-genai,
  the prompts, the store), its resident memory with the lean store, with the full index (prewarm
  given the full store), and with an empty store.
It prints the figures, the ratios lean / full, and whether the goals (issue 13: the store's share
of an agent job process <= 100 MB, a first open without a snapshot <= 5 s) are met. Figures
depend on the machine and on what else runs on it: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.backend_agent import BackendAgent  # noqa: E402
from backend.settings import Settings  # noqa: E402
from backend.store.journal import JOURNAL, SNAPSHOT  # noqa: E402
from backend.store.records import JOBS, iso, line_of, utc_now  # noqa: E402
from bench.fill import fill  # noqa: E402

GOAL_MB = 100.0
GOAL_OPEN_S = 5.0

STORE_CHILD = textwrap.dedent(
    """
    import gc, json, random, sys, time
    root, folder, kind, task, n, callers = sys.argv[1:7]
    sys.path.insert(0, root)
    import backend.store.journal as journal
    journal.SNAPSHOT_EVERY_BYTES = 1 << 62  # the open writes no snapshot: what is timed is the index
    from backend.backend_agent import BackendAgent
    from bench.fill import caller_for

    def memory():
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * q))] * 1000

    t, c = time.perf_counter(), time.process_time()
    agent = BackendAgent(folder, lean=kind == "lean")
    out = {"open_s": time.perf_counter() - t, "open_cpu_s": time.process_time() - c}
    gc.collect()
    out["rss_mb"], out["peak_mb"] = memory()
    rng = random.Random(5)
    if task == "reads":
        for who, pick in (("returning", lambda: caller_for(rng.randrange(int(callers)))),
                          ("new", lambda: f"+1444{rng.randrange(10**7):07d}")):
            lat = []
            for _ in range(int(n)):
                caller = pick()
                t = time.perf_counter()
                agent.get_shared_information(caller_id=caller, limit=20)
                lat.append(time.perf_counter() - t)
            out[who + "_p50_ms"], out[who + "_p99_ms"] = pct(lat, 0.5), pct(lat, 0.99)
        out["full_scans"] = agent.store.full_scans
    if task == "writes":
        lat = []
        for i in range(int(n)):
            if i % 7 == 0:
                sid, caller = f"bench-{kind}-{i}", f"+1666{i:07d}"
                agent.start_session(sid, caller)
            t = time.perf_counter()
            assert agent.share_information(f"Owes ${1000 + i}", "debt_info", caller, session_id=sid)["success"]
            lat.append(time.perf_counter() - t)
        out["write_p50_ms"], out["write_p99_ms"] = pct(lat, 0.5), pct(lat, 0.99)
    print(json.dumps(out))
    """
)

AGENT_CHILD = textwrap.dedent(
    """
    import gc, json, sys, time
    root, kind = sys.argv[1:3]
    sys.path.insert(0, root)
    import backend.store.journal as journal
    journal.SNAPSHOT_EVERY_BYTES = 1 << 62
    import telephony_agent
    from backend.backend_agent import BackendAgent, freeze_loaded_heap

    if kind == "full":  # the agent as it was: prewarm opens the full index
        def load_full(settings):
            backend = BackendAgent(settings=settings)
            freeze_loaded_heap()
            return backend
        telephony_agent.load_backend = load_full

    class Proc:  # the part of LiveKit's JobProcess that prewarm uses
        userdata = {}

    t = time.perf_counter()
    telephony_agent.prewarm(Proc())
    took = time.perf_counter() - t
    gc.collect()
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print(json.dumps({"prewarm_s": took, "rss_mb": int(status["VmRSS"].split()[0]) / 1024}))
    """
)


# As LiveKit runs job processes on Linux: a forkserver that imported the agent (and the plugins
# it preloads) once, each job process forked from it, its pages shared with the forkserver until
# written. A job process's own cost is then its private memory (Private_Clean + Private_Dirty of
# /proc/self/smaps_rollup); Pss splits the shared pages among the processes sharing them.
AGENT_FORKED = textwrap.dedent(
    """
    import gc, json, os, sys, time
    root, kind = sys.argv[1:3]
    sys.path.insert(0, root)
    import backend.store.journal as journal
    journal.SNAPSHOT_EVERY_BYTES = 1 << 62
    import telephony_agent  # the forkserver's imports: the agent, LiveKit, the Google plugin
    import livekit.plugins.google  # noqa: F401
    from backend.backend_agent import BackendAgent, freeze_loaded_heap

    if kind == "full":
        def load_full(settings):
            backend = BackendAgent(settings=settings)
            freeze_loaded_heap()
            return backend
        telephony_agent.load_backend = load_full

    class Proc:
        userdata = {}

    gc.collect()
    gc.freeze()  # as livekit.agents.ipc._preload_freeze does in the forkserver
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the job process
        os.close(read_end)
        telephony_agent.prewarm(Proc())
        gc.collect()
        rollup = {}
        for line in open("/proc/self/smaps_rollup"):
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                rollup[parts[0].rstrip(":")] = int(parts[1]) / 1024
        private = rollup["Private_Clean"] + rollup["Private_Dirty"]
        figures = {"private_mb": private, "pss_mb": rollup["Pss"], "rss_mb": rollup["Rss"]}
        os.write(write_end, json.dumps(figures).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        print(fh.read())
    os.waitpid(pid, 0)
    """
)


def run(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run a child (in the system's temporary folder: no developer's .env is read) and return
    the JSON it printed last."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "STORE_FSYNC": "1", "PYTHONPATH": str(ROOT), **(env or {})},
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(folder: Path, records: int, callers: int, with_jobs: bool) -> dict:
    t = time.perf_counter()
    filled = fill(folder, records, callers=callers, figures=True)
    if with_jobs:
        filled["job_events"] = add_summary_jobs(folder)
    settings = Settings.from_env({"DATA_DIR": str(folder), "STORE_FSYNC": "0"}, dotenv=False)
    agent = BackendAgent(folder, settings=settings)
    logging.getLogger("backend").setLevel(logging.ERROR)  # a warning for each caller listed
    filled["do_not_call_listed"] = len(agent.reconcile_opt_outs())  # what the first prewarm would do
    logging.getLogger("backend").setLevel(logging.NOTSET)
    agent.close()
    (folder / SNAPSHOT).unlink(missing_ok=True)
    filled["journal_mb"] = (folder / JOURNAL).stat().st_size / 1e6
    filled["lines"] = filled["last_seq"] + filled.get("job_events", 0) + filled["do_not_call_listed"]
    filled["build_s"] = time.perf_counter() - t
    return filled


def add_summary_jobs(folder: Path) -> int:
    """Append, for each call log, its summary job as the worker leaves it: queued, claimed, done
    with a result (a summary and a lead), as `backend/postcall/jobs.py` writes them."""
    path = folder / JOURNAL
    sessions, seq = [], 0
    with open(path, "rb") as fh:
        for line in fh:
            if b'"type":"call"' in line:
                sessions.append(json.loads(line)["session_id"])
            seq = int(line[7 : line.index(b",")])
    now, stamp = time.time(), iso(utc_now())
    with open(path, "ab", buffering=1 << 20) as fh:
        for sid in sessions:
            job = f"summary:{sid}"
            states = (
                {
                    "state": "queued",
                    "kind": "summary",
                    "payload": {"session_id": sid},
                    "not_before": now,
                    "created": now,
                },
                {"state": "claimed", "worker": "bench:1", "until": now + 120, "attempt": 1},
                {"state": "done", "result": {"summary": "Caller owes $12,500 on cards.", "lead": {"qualified": True}}},
            )
            for data in states:
                seq += 1
                entry = {"seq": seq, "type": "event", "kind": JOBS, "key": job, "timestamp": stamp, "data": data}
                fh.write(line_of(entry) + b"\n")
    return 3 * len(sessions)


def median_run(repeat: int, *args: str) -> dict:
    runs = [run(STORE_CHILD, *args) for _ in range(repeat)]
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {"open_s_all": [r["open_s"] for r in runs]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--callers", type=int, default=20_000, help="distinct callers in the journal")
    parser.add_argument("--jobs", action="store_true", help="a done summary job (3 events) per call too")
    parser.add_argument("--repeat", type=int, default=3, help="opens of each kind (median)")
    parser.add_argument("--reads", type=int, default=300, help="caller reads of each kind")
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--tmp", default=None, help="folder for the stores (default: the system's)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder, empty = Path(tmp) / "store", Path(tmp) / "empty"
        empty.mkdir()
        figures: dict = {"records": args.records, "jobs": args.jobs}
        figures["journal"] = build(folder, args.records, args.callers, args.jobs)
        j = figures["journal"]
        print(
            f"journal: {args.records:,} records, {j['lines']:,} lines, {j['journal_mb']:.0f} MB"
            f" ({j['do_not_call_listed']:,} do-not-call requests listed; built in {j['build_s']:.0f} s)"
        )
        base = [ROOT.as_posix()]
        n, callers = str(args.reads), str(args.callers)
        figures["empty"] = run(STORE_CHILD, *base, str(empty), "full", "open", "0", callers)
        for kind in ("lean", "full"):
            figures[kind] = median_run(args.repeat, *base, str(folder), kind, "reads", n, callers)
            figures[kind]["store_mb"] = figures[kind]["rss_mb"] - figures["empty"]["rss_mb"]
        for kind in ("lean", "full", "empty"):
            env = {"DATA_DIR": str(empty if kind == "empty" else folder), "LIVEKIT_URL": "", "GOOGLE_API_KEY": ""}
            figures["agent_" + kind] = run(AGENT_CHILD, *base, "lean" if kind == "empty" else kind, env=env)
            figures["forked_" + kind] = run(AGENT_FORKED, *base, "lean" if kind == "empty" else kind, env=env)
        for kind in ("lean", "full"):  # last: they append to the journal
            wrote = run(STORE_CHILD, *base, str(folder), kind, "writes", str(args.writes), callers)
            figures[kind].update({k: v for k, v in wrote.items() if k.startswith("write_")})
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def report(f: dict) -> None:
    lean, full = f["lean"], f["full"]
    rows = [
        ("first open, no snapshot (s, median)", "open_s", "{:.2f}"),
        ("  CPU time of that open (s)", "open_cpu_s", "{:.2f}"),
        ("resident memory after open (MB)", "rss_mb", "{:.0f}"),
        ("  the store's share (MB)", "store_mb", "{:.0f}"),
        ("  peak during the open (MB)", "peak_mb", "{:.0f}"),
        ("caller history, returning caller p50 (ms)", "returning_p50_ms", "{:.3f}"),
        ("caller history, returning caller p99 (ms)", "returning_p99_ms", "{:.3f}"),
        ("caller history, new caller p50 (ms)", "new_p50_ms", "{:.3f}"),
        ("share_information, fsync, p50 (ms)", "write_p50_ms", "{:.3f}"),
        ("share_information, fsync, p99 (ms)", "write_p99_ms", "{:.3f}"),
    ]
    print(f"\n{'':44} {'lean':>10} {'full':>10} {'lean/full':>10}")
    for label, key, fmt in rows:
        ratio = lean[key] / full[key] if full[key] else float("nan")
        print(f"{label:44} {fmt.format(lean[key]):>10} {fmt.format(full[key]):>10} {ratio:>10.2f}")
    opens = f"lean {lean['open_s_all']}, full {full['open_s_all']}"
    print(f"  opens (s): {opens}; a process with an empty store: {f['empty']['rss_mb']:.0f} MB")
    agent = {k: f["agent_" + k]["rss_mb"] for k in ("lean", "full", "empty")}
    print(
        f"\nagent job process after prewarm (MB): lean store {agent['lean']:.0f}, full index {agent['full']:.0f},"
        f" empty store {agent['empty']:.0f}; the store's share: lean {agent['lean'] - agent['empty']:.0f},"
        f" full {agent['full'] - agent['empty']:.0f}"
        f" (prewarm {f['agent_lean']['prewarm_s']:.1f} s lean, {f['agent_full']['prewarm_s']:.1f} s full)"
    )
    forked = {k: f["forked_" + k] for k in ("lean", "full", "empty")}
    print(
        "agent job process forked from a forkserver that imported the agent (as LiveKit runs them on Linux),"
        " after prewarm: its private memory (MB) "
        + ", ".join(f"{k} {forked[k]['private_mb']:.0f}" for k in ("lean", "full", "empty"))
        + "; its Pss "
        + ", ".join(f"{k} {forked[k]['pss_mb']:.0f}" for k in ("lean", "full", "empty"))
        + "; its RSS "
        + ", ".join(f"{k} {forked[k]['rss_mb']:.0f}" for k in ("lean", "full", "empty"))
    )
    print(
        f"goal: RSS per agent job process <= {GOAL_MB:.0f} MB: a process on its own {agent['lean']:.0f} MB,"
        f" {'met' if agent['lean'] <= GOAL_MB else 'NOT met'}; forked as LiveKit does, its own (private)"
        f" memory {forked['lean']['private_mb']:.0f} MB,"
        f" {'met' if forked['lean']['private_mb'] <= GOAL_MB else 'NOT met'}"
    )
    share = agent["lean"] - agent["empty"]
    print(
        f"goal: the store's share of an agent job process <= {GOAL_MB:.0f} MB: {share:.0f} MB,"
        f" {'met' if share <= GOAL_MB else 'NOT met'} (the whole process is {agent['lean']:.0f} MB:"
        f" {agent['empty']:.0f} MB of it are LiveKit, google-genai and Python without any store)"
    )
    print(
        f"goal: first open at {f['records']:,} records without a snapshot <= {GOAL_OPEN_S:.0f} s:"
        f" {lean['open_s']:.2f} s, {'met' if lean['open_s'] <= GOAL_OPEN_S else 'NOT met'}"
    )
    if lean.get("full_scans"):
        print(f"warning: the lean store indexed the whole journal {lean['full_scans']} time(s) for caller reads")


if __name__ == "__main__":
    sys.exit(main())
