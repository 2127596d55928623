"""`python -m backend run | serve | work [--once] | stats | verify | export [-o FILE] | import-legacy PATH |
migrate [--url URL] | copy --to TARGET [--from SOURCE] | settings`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from backend.backend_agent import BackendAgent
from backend.settings import SETTINGS_TABLE, get_settings
from backend.store.records import StoreError


def _backend(args: argparse.Namespace) -> BackendAgent:
    return BackendAgent(args.data_dir) if args.data_dir else BackendAgent()


def cmd_stats(args: argparse.Namespace) -> int:
    print(json.dumps(_backend(args).stats(), indent=2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    # also closes the calls of agent processes that died without a call log (agent processes
    # do it too as they start), and lists opt-outs whose do-not-call write had failed
    report = _backend(args).verify()
    print(json.dumps(report, indent=2))
    for q in report["quarantined"]:
        print(f"quarantined {q['bytes']} bytes ({q['why']}) from byte {q['offset']} into {q['file']}", file=sys.stderr)
    for sid in report["closed_calls"]:
        print(f"closed call {sid}: its agent process died without a call log (agent_error)", file=sys.stderr)
    for sid in report["relisted_opt_outs"]:
        print(f"session {sid}: its caller's opt-out is now on the do-not-call list", file=sys.stderr)
    return 0 if report["healthy"] or report["repaired"] else 1


def cmd_export(args: argparse.Namespace) -> int:
    document = _backend(args).export()
    if args.output:
        tmp = Path(args.output).with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        tmp.replace(args.output)
        print(f"exported {len(document['information'])} records to {args.output}", file=sys.stderr)
    else:
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    return 0


def cmd_import_legacy(args: argparse.Namespace) -> int:
    print(json.dumps(_backend(args).import_legacy(args.path), indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.api_server import create_app

    settings = get_settings()
    create_app().run(host=settings.host, port=settings.port, debug=False)
    return 0


WORK_IDLE_SECONDS = 1.0  # how long the worker sleeps when no job is due
WORK_ERROR_SECONDS = 5.0  # ... and after an error it did not expect


def cmd_work(args: argparse.Namespace) -> int:
    """The job worker: runs the durable jobs (webhook deliveries, summaries) as they come due,
    one at a time, sleeping about a second when none is due. SIGTERM or Ctrl-C stops it once the
    attempt in progress is recorded (a second one stops it at once). `--once` runs what is due
    now and exits. Any number of workers may run: each job is claimed by one."""
    import signal
    import threading

    backend = _backend(args)
    for problem in backend.webhook_problems():
        print(f"warning: {problem}", file=sys.stderr)
    queued = backend.enqueue_missing_jobs()
    if queued:
        print(f"queued {queued} summary job(s) of calls that had none", file=sys.stderr)
    if args.once:
        print(f"ran {backend.run_jobs()} job(s)", file=sys.stderr)
        backend.close()
        return 0
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    print("job worker running (webhooks, summaries); stop with Ctrl-C", file=sys.stderr)
    while not stop.is_set():
        try:
            ran = backend.run_jobs(limit=1)
        except StoreError as exc:
            logging.getLogger("backend.work").error("store error: %s; trying again shortly", exc.message)
            stop.wait(WORK_ERROR_SECONDS)
            continue
        except Exception:  # a handler's bug: its claim runs out and another attempt comes later
            logging.getLogger("backend.work").exception("a job failed unexpectedly")
            stop.wait(WORK_ERROR_SECONDS)
            continue
        if not ran:
            stop.wait(WORK_IDLE_SECONDS)
    backend.close()
    print("job worker stopped", file=sys.stderr)
    return 0


AGENT_KEYS = ("GOOGLE_API_KEY", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")


def cmd_run(args: argparse.Namespace) -> int:
    """The product: the API and dashboard under gunicorn, the job worker (`work`: webhooks,
    summaries), and the agent worker when its credentials are set. Stops them all on Ctrl-C or
    SIGTERM."""
    import signal
    import subprocess
    import time

    root = Path(__file__).resolve().parent.parent
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.store_url:  # the database's schema first, so no process opens an old one
        from backend.backend_agent import describe_store, migrate_store

        report = migrate_store(settings.store_url)
        where = describe_store(settings.store_url)
        print(f"store: PostgreSQL at {where}, schema version {report['to']}", file=sys.stderr)
    else:
        print(f"store: JSON files in {settings.data_dir}", file=sys.stderr)
    procs = [
        subprocess.Popen([sys.executable, "-m", "gunicorn", "backend.api_server:create_app()"], cwd=root),
        subprocess.Popen([sys.executable, "-m", "backend", "work"], cwd=root),  # summaries, webhooks
    ]
    print(f"API and dashboard: http://{settings.host}:{settings.port}/", file=sys.stderr)
    missing = [k for k in AGENT_KEYS if not getattr(settings, k.lower())]
    if missing:
        print(f"agent worker not started: set {', '.join(missing)} to start it", file=sys.stderr)
    else:
        procs.append(subprocess.Popen([sys.executable, "telephony_agent.py", "start"], cwd=root))

    def stop(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    stop()
    codes = [p.wait(timeout=30) for p in procs]
    return max((c for c in codes if c and c > 0), default=0)


def _configured_store(args: argparse.Namespace) -> str:
    """Where the configured store is: STORE_URL, else --data-dir or DATA_DIR."""
    settings = get_settings()
    return getattr(settings, "store_url", None) or str(args.data_dir or settings.data_dir)


def cmd_migrate(args: argparse.Namespace) -> int:
    from backend.backend_agent import is_database_url, migrate_store

    url = args.url or _configured_store(args)
    if not is_database_url(url):
        print("the JSON store (DATA_DIR) has no schema to migrate; set STORE_URL or pass --url", file=sys.stderr)
        return 0
    print(json.dumps(migrate_store(url), indent=2))
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from backend.backend_agent import copy_store, describe_store

    source = args.source or _configured_store(args)
    if source == args.to:
        print("error: the source and the target are the same store", file=sys.stderr)
        return 2
    report = copy_store(source, args.to)
    report["from"], report["to"] = describe_store(source), describe_store(args.to)
    print(json.dumps(report, indent=2))
    if not report["verified"]:
        print("error: the copy does not match its source (see source and target above)", file=sys.stderr)
        return 1
    print(f"copied {report['copied']} entries; counts and checksums match", file=sys.stderr)
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    for name, default, help_text in SETTINGS_TABLE:
        print(f"{name:34} {default or '-':22} {help_text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    parser.add_argument("--data-dir", help="store folder (default: DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", help="counts of sessions, records, calls").set_defaults(func=cmd_stats)
    sub.add_parser("verify", help="check and repair the store").set_defaults(func=cmd_verify)
    export = sub.add_parser("export", help="the whole store as one JSON document")
    export.add_argument("-o", "--output", help="write to this file instead of standard output")
    export.set_defaults(func=cmd_export)
    legacy = sub.add_parser("import-legacy", help="import the seed's shared_information.json")
    legacy.add_argument("path")
    legacy.set_defaults(func=cmd_import_legacy)
    run_help = "API + dashboard (gunicorn), the job worker, and the agent worker when configured"
    sub.add_parser("run", help=run_help).set_defaults(func=cmd_run)
    sub.add_parser("serve", help="development server for the API and dashboard").set_defaults(func=cmd_serve)
    work = sub.add_parser("work", help="run the durable jobs (webhook deliveries, summaries) as they come due")
    work.add_argument("--once", action="store_true", help="run what is due now, then exit")
    work.set_defaults(func=cmd_work)
    sub.add_parser("settings", help="list every setting").set_defaults(func=cmd_settings)
    migrate = sub.add_parser("migrate", help="create or upgrade the PostgreSQL store's schema (STORE_URL)")
    migrate.add_argument("--url", help="the database (default: STORE_URL)")
    migrate.set_defaults(func=cmd_migrate)
    copy = sub.add_parser("copy", help="copy the whole store into another (JSON folder <-> PostgreSQL), verified")
    copy.add_argument("--to", required=True, help="target: a postgresql:// URL or a folder")
    copy.add_argument("--from", dest="source", help="source (default: the configured store)")
    copy.set_defaults(func=cmd_copy)
    args = parser.parse_args(argv)
    logging.basicConfig(level=get_settings().log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except StoreError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
