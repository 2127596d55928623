"""The PostgreSQL store: the same `Store` for many machines (`STORE_URL=postgresql://...`).

Every entry is one row of `entries`, keyed by its `seq`, with its JSON line as `body` (the same
line the JSON store writes) and the few columns the queries filter on. Side tables kept in the
same transaction answer the rest without scanning: `sessions` (each session's state), `calls`
(the call logs' figures), `disclosures`, `jobs` (each job's merged state), `counters`, `leases`.

How `seq` stays strictly increasing in commit order, across every process and machine: a write
transaction starts by locking the one row of `store_head` (`SELECT ... FOR UPDATE`), takes the
next seqs from it, and holds that lock until it commits. A second writer waits on the row until
the first has committed, so no seq becomes visible after a higher one: a reader following
`after_seq` never misses a record that commits late. The same lock makes the rules (the
duplicate guard, one call log per session, the caller's active session) race-free, as the JSON
store's file lock does; a unique index on `calls.session_id` backs the second.

Faults: a write whose connection fails (the server restarting, a dropped connection) runs its
rule again in a new transaction for up to `RETRY_SECONDS`; if the failure hit the COMMIT itself,
it first looks whether its first entry is there (the commit went through) so nothing is written
twice. Past that, or when no connection frees up in the pool within `POOL_TIMEOUT_SECONDS`, the
write raises `StoreUnavailable` (the tools report `store_unavailable`): it is never silently lost.

The schema is created and upgraded by `migrate()` (`python -m backend migrate`); a store refuses
to open on a database whose schema is missing or older than this code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from backend.store.index import searchable, session_view
from backend.store.interface import CallFigures, Store
from backend.store.leases import Lease
from backend.store.records import (
    CATEGORIES,
    DISCLOSURES,
    JOBS,
    Entry,
    SessionFacts,
    StoreError,
    StoreUnavailable,
    WriteView,
    epoch,
    iso,
    line_of,
    public,
    utc_now,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
RETRY_SECONDS = 3.0  # how long a write keeps trying through a lost connection
POOL_TIMEOUT_SECONDS = 2.0  # how long a write waits for a free connection of a full pool
CONNECT_TIMEOUT_SECONDS = 2
ENDED_JOB_STATES = ("done", "skipped", "gave_up")

# Each migration takes the schema from the version before it to its own; never edit one that
# has shipped, add the next.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE store_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_seq bigint NOT NULL
);
INSERT INTO store_head VALUES (true, 0);
CREATE TABLE entries (
    seq bigint PRIMARY KEY,
    type text NOT NULL,
    session_id text,
    caller_id text,
    category text,
    ts double precision,
    digest bigint,
    kind text,
    key text,
    body text NOT NULL
);
CREATE INDEX entries_info_session ON entries (session_id, seq) WHERE type = 'info';
CREATE INDEX entries_info_digest ON entries (session_id, digest) WHERE type = 'info';
CREATE INDEX entries_info_caller ON entries (caller_id, seq) WHERE type = 'info';
CREATE INDEX entries_info_category ON entries (category, seq) WHERE type = 'info';
CREATE INDEX entries_info ON entries (seq) WHERE type = 'info';
CREATE INDEX entries_turn ON entries (session_id, seq) WHERE type = 'turn';
CREATE INDEX entries_event ON entries (kind, key, seq) WHERE type = 'event';
CREATE TABLE sessions (
    session_id text PRIMARY KEY,
    seq bigint NOT NULL UNIQUE,
    caller_id text NOT NULL,
    started_ts double precision NOT NULL,
    call_seq bigint
);
CREATE INDEX sessions_caller ON sessions (caller_id, seq);
CREATE INDEX sessions_active ON sessions (seq) WHERE call_seq IS NULL;
CREATE TABLE calls (
    seq bigint PRIMARY KEY,
    session_id text NOT NULL UNIQUE,
    caller_id text NOT NULL,
    outcome text NOT NULL,
    ended_ts double precision NOT NULL,
    duration double precision NOT NULL,
    cost_usd double precision
);
CREATE INDEX calls_caller ON calls (caller_id, seq);
CREATE INDEX calls_outcome ON calls (outcome, seq);
CREATE INDEX calls_ended ON calls (ended_ts);
CREATE TABLE disclosures (
    session_id text PRIMARY KEY,
    seq bigint NOT NULL,
    missing boolean NOT NULL
);
CREATE TABLE jobs (
    job_id text PRIMARY KEY,
    first_seq bigint NOT NULL UNIQUE,
    kind text,
    state text,
    data text NOT NULL,
    payload_seq bigint,
    result_seq bigint,
    open boolean NOT NULL
);
CREATE INDEX jobs_kind ON jobs (kind, first_seq);
CREATE INDEX jobs_open ON jobs (first_seq) WHERE open;
CREATE TABLE counters (
    name text PRIMARY KEY,
    n bigint NOT NULL,
    total double precision NOT NULL DEFAULT 0
);
CREATE TABLE leases (
    session_id text PRIMARY KEY,
    caller_id text NOT NULL,
    pid integer NOT NULL,
    process_start text,
    host text NOT NULL,
    touched double precision NOT NULL
);
""",
    # Two indexes fewer for every record written (bench/backends_bench.py): the duplicate guard
    # reads the session's few records through entries_info_session, and the newest records or
    # those after a seq come from the primary key (most entries are records).
    2: """
DROP INDEX entries_info_digest;
DROP INDEX entries_info;
""",
}

_SESSION_VIEW = """
SELECT st.session_id, st.caller_id, s.body, c.body,
       (SELECT count(*) FROM entries i WHERE i.type = 'info' AND i.session_id = st.session_id),
       d.body
FROM sessions st
JOIN entries s ON s.seq = st.seq
LEFT JOIN entries c ON c.seq = st.call_seq
LEFT JOIN disclosures dd ON dd.session_id = st.session_id
LEFT JOIN entries d ON d.seq = dd.seq
"""


def _IDLE():
    return _psycopg().pq.TransactionStatus.IDLE


def _psycopg():
    import psycopg

    return psycopg


def redact_url(url: str) -> str:
    """`url` without its password (in the user part or as a `password=` parameter), for logs
    and messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, qmark, query = rest.partition("?")
    if "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user = userinfo.split(":", 1)[0]
        rest = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    if qmark:
        params = ["password=***" if p.split("=", 1)[0].lower() == "password" else p for p in query.split("&")]
        query = "&".join(params)
    return f"{scheme}://{rest}{qmark}{query}"


def _connect(url: str):
    psycopg = _psycopg()
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"The database at {redact_url(url)} cannot be reached ({_reason(exc)}).") from exc


def schema_version(url: str) -> int:
    """The schema version of the database at `url` (0: no schema yet)."""
    with _connect(url) as conn:
        return _version(conn)


def _version(conn) -> int:
    exists = conn.execute("SELECT to_regclass('store_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = conn.execute("SELECT max(version) FROM store_schema").fetchone()
    return int(row[0] or 0)


def migrate(url: str) -> dict[str, Any]:
    """Create or upgrade the schema of the database at `url` to `SCHEMA_VERSION`; safe to run
    again, and by several processes at once (they take turns on an advisory lock). Returns
    `{"from": version before, "to": version after, "applied": [versions applied]}`."""
    psycopg = _psycopg()
    with _connect(url) as conn:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("store migrate"),))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS store_schema ("
                    " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                before = _version(conn)
                if before > SCHEMA_VERSION:
                    raise StoreError(
                        f"The database's schema is version {before}, newer than this code's {SCHEMA_VERSION}.",
                        "schema_too_new",
                    )
                applied = []
                for version in range(before + 1, SCHEMA_VERSION + 1):
                    conn.execute(MIGRATIONS[version])
                    conn.execute("INSERT INTO store_schema (version) VALUES (%s)", (version,))
                    applied.append(version)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"Migrating the database failed ({_reason(exc)}).") from exc
    if applied:
        log.info("store: database schema migrated from version %d to %d", before, SCHEMA_VERSION)
    return {"from": before, "to": SCHEMA_VERSION, "applied": applied}


def _lock_key(name: str) -> int:
    """A stable 63-bit advisory lock key for `name` (crc32 is enough: a handful of names)."""
    return 0x5354_0000_0000 | zlib.crc32(name.encode())


def _digest(category: str, information: str) -> int:
    """A stable signed 64-bit digest of a record's category and text, for the duplicate guard."""
    raw = hashlib.blake2b(f"{category}\n{information}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big", signed=True)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


def _where(clauses: list[str]) -> str:
    """`WHERE a AND b` from fixed SQL fragments (values always go in as parameters)."""
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class _Tx:
    """One write transaction: the rules' `WriteView` and `append`."""

    def __init__(self, conn, store: PgStore) -> None:
        self.conn = conn
        self.store = store
        self.last_seq = 0
        self.appended: list[Entry] = []
        self.counts: dict[str, list[float]] = {}
        self.pending: list[tuple[str, tuple]] = []  # statements whose answer nobody reads
        self.committing = False

    def begin(self) -> None:
        """BEGIN and lock the head row, in one round trip."""
        cur = self.conn.execute("BEGIN; SELECT last_seq FROM store_head FOR UPDATE")
        cur.nextset()
        self.last_seq = cur.fetchone()[0]

    def later(self, sql: str, params: tuple) -> None:
        self.pending.append((sql, params))

    def flush(self) -> None:
        """Send the queued statements in one round trip (before a read that must see them)."""
        if self.pending:
            pending, self.pending = self.pending, []
            with self.conn.pipeline():
                for sql, params in pending:
                    self.conn.execute(sql, params)

    def commit(self) -> None:
        """The queued statements, the counters, the head and COMMIT, in one round trip."""
        if self.appended:
            names = sorted(self.counts)
            self.later(
                "INSERT INTO counters (name, n, total)"
                " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::float8[])"
                " ON CONFLICT (name) DO UPDATE SET n = counters.n + excluded.n,"
                " total = counters.total + excluded.total",
                (names, [int(self.counts[n][0]) for n in names], [float(self.counts[n][1]) for n in names]),
            )
            self.later("UPDATE store_head SET last_seq = %s", (self.last_seq,))
        self.committing = True
        with self.conn.pipeline():
            for sql, params in self.pending:
                self.conn.execute(sql, params)
            self.conn.execute("COMMIT")
        self.pending = []

    # ---- WriteView ------------------------------------------------------------------------
    def session(self, session_id: str) -> Entry | None:
        self.flush()
        views = _session_views(self.conn, "WHERE st.session_id = %s", (session_id,))
        return views[0] if views else None

    def session_facts(self, session_id: str) -> SessionFacts | None:
        self.flush()
        row = self.conn.execute(
            "SELECT st.caller_id, st.started_ts, c.body,"
            " (SELECT count(*) FROM entries i WHERE i.type = 'info' AND i.session_id = st.session_id), d.body"
            " FROM sessions st LEFT JOIN entries c ON c.seq = st.call_seq"
            " LEFT JOIN disclosures dd ON dd.session_id = st.session_id LEFT JOIN entries d ON d.seq = dd.seq"
            " WHERE st.session_id = %s",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        caller, started, call, count, disclosure = row
        return SessionFacts(
            caller_id=caller,
            started_ts=started,
            call=public(json.loads(call)) if call else None,
            information_count=count,
            disclosures=json.loads(disclosure)["data"] if disclosure else None,
        )

    def active_session_id(self, caller_id: str) -> str | None:
        self.flush()
        row = self.conn.execute(
            "SELECT session_id FROM sessions WHERE caller_id = %s AND call_seq IS NULL ORDER BY seq DESC LIMIT 1",
            (caller_id,),
        ).fetchone()
        return row[0] if row else None

    def recent_duplicate(
        self, session_id: str, category: str, information: str, now: float, window: float
    ) -> Entry | None:
        self.flush()
        rows = self.conn.execute(
            "SELECT body FROM entries WHERE type = 'info' AND session_id = %s AND digest = %s AND ts >= %s"
            " ORDER BY seq",
            (session_id, _digest(category, information), now - window),
        ).fetchall()
        for (body,) in rows:
            record = json.loads(body)
            if record["category"] == category and record["information"] == information:
                return public(record)
        return None

    # ---- append ---------------------------------------------------------------------------
    def append(self, entry: Entry) -> Entry:
        entry["seq"] = self.last_seq + 1
        self.insert(entry)
        self.last_seq = entry["seq"]
        self.appended.append(entry)
        return entry

    def count(self, name: str, n: int = 1, total: float = 0.0) -> None:
        c = self.counts.setdefault(name, [0, 0.0])
        c[0] += n
        c[1] += total

    def insert(self, entry: Entry) -> None:
        """Write `entry` (which has its seq) and keep the side tables in step."""
        kind, seq = entry["type"], entry["seq"]
        body = line_of(entry).decode("utf-8")
        sid = entry.get("session_id") if kind != "event" else None
        caller = entry.get("caller_id") if kind in ("info", "session", "call") else None
        category = entry.get("category") if kind == "info" else None
        ts = None
        if kind == "info":
            ts = epoch(entry["timestamp"])
        elif kind == "session":
            ts = epoch(entry["started_at"])
        elif kind == "call":
            ts = epoch(entry["ended_at"])
        ev_kind, ev_key = (entry["kind"], entry["key"]) if kind == "event" else (None, None)
        digest = _digest(category, entry["information"]) if kind == "info" else None
        self.later(
            "INSERT INTO entries (seq, type, session_id, caller_id, category, ts, digest, kind, key, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (seq, kind, sid, caller, category, ts, digest, ev_kind, ev_key, body),
        )
        if kind == "info":
            self.count("information")
            self.count(f"category:{category}")
        elif kind == "session":
            self.later(
                "INSERT INTO sessions (session_id, seq, caller_id, started_ts) VALUES (%s, %s, %s, %s)",
                (sid, seq, caller, ts),
            )
            self.count("sessions")
        elif kind == "call":
            cost = entry.get("cost")
            usd = float(cost["total_usd"]) if cost else None
            self.later(
                "INSERT INTO calls (seq, session_id, caller_id, outcome, ended_ts, duration, cost_usd)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (seq, sid, caller, entry["outcome"], ts, float(entry["duration_seconds"]), usd),
            )
            # the rule checked the session is open; the unique calls.session_id backs it up
            self.later("UPDATE sessions SET call_seq = %s WHERE session_id = %s", (seq, sid))
            self.count("calls")
            self.count(f"outcome:{entry['outcome']}")
            if usd is not None:
                self.count("cost", 1, usd)
        elif kind == "turn":
            self.count("turns")
        elif kind == "event":
            self.count("events")
            if ev_kind == DISCLOSURES:
                self.later(
                    "INSERT INTO disclosures (session_id, seq, missing) VALUES (%s, %s, %s)"
                    " ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, missing = excluded.missing",
                    (ev_key, seq, bool(entry["data"].get("missing"))),
                )
            elif ev_kind == JOBS:
                self._merge_job(ev_key, entry["data"], seq)
        else:
            raise StoreError(f"Unknown entry type {kind!r}.", "invalid_record")

    def _merge_job(self, job_id: str, data: dict[str, Any], seq: int) -> None:
        """As `Index._add_job`: the job's small fields merged, its payload and result by seq."""
        self.flush()
        row = self.conn.execute(
            "SELECT data, payload_seq, result_seq FROM jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
        job = json.loads(row[0]) if row else {}
        payload_seq, result_seq = (row[1], row[2]) if row else (None, None)
        job.update({k: v for k, v in data.items() if k not in ("result", "payload")})
        if "payload" in data:
            payload_seq = seq
        if "result" in data:
            result_seq = seq
        state = job.get("state")
        self.later(
            "INSERT INTO jobs (job_id, first_seq, kind, state, data, payload_seq, result_seq, open)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (job_id) DO UPDATE SET kind = excluded.kind, state = excluded.state,"
            " data = excluded.data, payload_seq = excluded.payload_seq, result_seq = excluded.result_seq,"
            " open = excluded.open",
            (
                job_id,
                seq,
                job.get("kind"),
                state,
                json.dumps(job, ensure_ascii=False),
                payload_seq,
                result_seq,
                state not in ENDED_JOB_STATES,
            ),
        )


def _session_views(conn, where: str, params: tuple, tail: str = "") -> list[Entry]:
    rows = conn.execute(_SESSION_VIEW + where + tail, params).fetchall()
    return [_session_view(*row) for row in rows]


def _session_view(sid, caller, start_body, call_body, count, disclosure_body) -> Entry:
    """The session as `get_session` returns it (`sid` and `caller` are those of its entry)."""
    call = json.loads(call_body) if call_body else None
    disclosures = json.loads(disclosure_body)["data"] if disclosure_body else None
    return session_view(json.loads(start_body), call, count, disclosures)


def _record(body: str) -> Entry:
    return public(json.loads(body))


class PgStore(Store):
    """The store in a PostgreSQL database; see the module docstring."""

    def __init__(self, url: str, *, pool_size: int = 10, check_schema: bool = True) -> None:
        self.url = url
        self.pool_size = max(2, int(pool_size))  # `exclusive` holds one while its section writes
        self._pool = None
        self._pool_pid = -1
        self._pool_mutex = threading.Lock()
        self._sections: dict[str, threading.Lock] = {}
        self._closed = False
        # test seam for faults at the network boundary: called with ("before_commit" |
        # "after_commit", tx) inside every write; may raise what a broken connection raises
        self.fault: Callable[[str, _Tx], None] | None = None
        if check_schema:
            version = schema_version(url)
            if version < SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"The database at {redact_url(url)} has schema version {version}, this code needs "
                    f"{SCHEMA_VERSION}: run `python -m backend migrate`."
                )
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"The database's schema (version {version}) is newer than this code ({SCHEMA_VERSION})."
                )

    # ---- connections ----------------------------------------------------------------------
    def _pool_(self):
        """This process's pool (a new one after a fork: connections cannot be shared)."""
        if self._closed:
            raise StoreUnavailable("The store is closed.")
        if self._pool is None or self._pool_pid != os.getpid():
            with self._pool_mutex:
                if self._pool is None or self._pool_pid != os.getpid():
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        timeout=POOL_TIMEOUT_SECONDS,
                        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
                        name="store",
                        open=True,
                    )
                    self._pool_pid = os.getpid()
        return self._pool

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        from psycopg_pool import PoolTimeout

        try:
            with self._pool_().connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(
                "The store is busy: no database connection came free in time.", "store_unavailable"
            ) from exc

    def _query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """One read statement (its own snapshot), retried once through a lost connection."""
        psycopg = _psycopg()
        for attempt in (1, 2):
            try:
                with self._connection() as conn:
                    return conn.execute(sql, params).fetchall()
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    log.error("store read failed: %s", _reason(exc))
                    raise StoreUnavailable("The store cannot be read right now (database unreachable).") from exc
            except psycopg.Error as exc:
                log.error("store read failed: %s", _reason(exc))
                raise StoreUnavailable("The store cannot be read right now.") from exc
        raise AssertionError("unreachable")

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """Several reads that must agree: one repeatable-read, read-only transaction."""
        psycopg = _psycopg()
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield conn
        except psycopg.Error as exc:
            log.error("store read failed: %s", _reason(exc))
            raise StoreUnavailable("The store cannot be read right now (database unreachable).") from exc

    # ---- Store primitives -----------------------------------------------------------------
    def _transact(self, rule):
        psycopg = _psycopg()
        deadline = time.monotonic() + RETRY_SECONDS
        delay = 0.05
        while True:
            tx: _Tx | None = None
            try:
                with self._connection() as conn:
                    tx = _Tx(conn, self)
                    try:
                        tx.begin()
                        result = rule(tx, tx.append)
                        if self.fault:
                            self.fault("before_commit", tx)
                        tx.commit()
                        if self.fault:
                            self.fault("after_commit", tx)
                        return result
                    except BaseException:
                        if not conn.closed and conn.info.transaction_status != _IDLE():
                            with suppress(psycopg.Error):
                                conn.execute("ROLLBACK")
                        raise
            except psycopg.errors.DiskFull as exc:
                log.error("store write failed: %s", _reason(exc))
                raise StoreUnavailable("The store cannot save right now (the database's disk is full).") from exc
            except psycopg.OperationalError as exc:
                if tx is not None and tx.committing and tx.appended and self._committed(tx.appended[0]):
                    return result
                if time.monotonic() + delay > deadline:
                    log.error("store write failed (database unreachable): %s", _reason(exc))
                    raise StoreUnavailable("The store cannot save right now (database unreachable).") from exc
                log.warning("store write: database connection lost (%s); trying again", _reason(exc))
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except psycopg.IntegrityError as exc:
                log.error("store write refused by the database: %s", _reason(exc))
                raise StoreError("The write conflicts with what is stored.", "store_conflict") from exc
            except psycopg.Error as exc:
                log.error("store write failed: %s", _reason(exc))
                raise StoreUnavailable("The store cannot save right now (database error).") from exc

    def _committed(self, entry: Entry) -> bool:
        """Whether `entry` (the first of a write whose COMMIT's answer was lost) is stored."""
        psycopg = _psycopg()
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                rows = self._query("SELECT body FROM entries WHERE seq = %s", (entry["seq"],))
                return bool(rows) and rows[0][0] == line_of(entry).decode("utf-8")
            except (StoreUnavailable, psycopg.Error):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @contextmanager
    def _write(self):
        raise NotImplementedError("PgStore writes go through _transact")
        yield  # pragma: no cover

    def _read(self):
        raise NotImplementedError("PgStore answers every read with SQL")

    def close(self) -> None:
        self._closed = True
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.close()
        self._pool = None

    def verify(self) -> dict[str, Any]:
        """Check the schema and that the side tables agree with the entries."""
        problems = []
        with self._snapshot() as conn:
            version = _version(conn)
            head = conn.execute("SELECT last_seq FROM store_head").fetchone()[0]
            top = conn.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0]
            counts = dict(conn.execute("SELECT type, count(*) FROM entries GROUP BY type").fetchall())
            sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
            calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            counters = {n: c for n, c, _t in conn.execute("SELECT name, n, total FROM counters").fetchall()}
        if version != SCHEMA_VERSION:
            problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
        if head != top:
            problems.append(f"store_head.last_seq {head} but the last entry is {top}")
        for name, table_count, kind in (("sessions", sessions, "session"), ("calls", calls, "call")):
            if table_count != counts.get(kind, 0):
                problems.append(f"{name}: {table_count} rows for {counts.get(kind, 0)} entries")
            if counters.get(name, 0) != table_count:
                problems.append(f"counter {name} is {counters.get(name, 0)}, not {table_count}")
        if counters.get("information", 0) != counts.get("info", 0):
            problems.append("counter information disagrees with the entries")
        return {
            "healthy": not problems,
            "repaired": False,
            "quarantined": [],
            "problems": problems,
            "last_seq": top,
            "schema_version": version,
        }

    @contextmanager
    def exclusive(self, name: str):
        """A session advisory lock on a connection held for the section (released by the server
        if this process dies), behind a thread lock for this process's own threads."""
        psycopg = _psycopg()
        with self._sections.setdefault(name, threading.Lock()):
            key = _lock_key(f"section {name}")
            try:
                with self._connection() as conn:
                    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                    try:
                        yield
                    finally:
                        if not conn.closed:
                            with suppress(psycopg.Error):  # a lost connection released it
                                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except psycopg.OperationalError as exc:
                raise StoreUnavailable("The store cannot be locked right now (database unreachable).") from exc

    # ---- leases ---------------------------------------------------------------------------
    def _lease_write(self, sql: str, params: tuple) -> None:
        psycopg = _psycopg()
        for attempt in (1, 2):
            try:
                with self._connection() as conn:
                    conn.execute(sql, params)
                    return
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise StoreUnavailable("The call's lease cannot be saved (database unreachable).") from exc

    def put_lease(self, lease: Lease) -> None:
        self._lease_write(
            "INSERT INTO leases (session_id, caller_id, pid, process_start, host, touched)"
            " VALUES (%s, %s, %s, %s, %s, extract(epoch FROM clock_timestamp()))"
            " ON CONFLICT (session_id) DO UPDATE SET caller_id = excluded.caller_id, pid = excluded.pid,"
            " process_start = excluded.process_start, host = excluded.host, touched = excluded.touched",
            (lease.session_id, lease.caller_id, lease.pid, lease.process_start, lease.host),
        )

    def touch_lease(self, session_id: str) -> None:
        try:
            self._lease_write(
                "UPDATE leases SET touched = extract(epoch FROM clock_timestamp()) WHERE session_id = %s",
                (session_id,),
            )
        except StoreUnavailable as exc:
            log.warning("could not touch the call's lease: %s", exc)

    def drop_lease(self, session_id: str) -> None:
        self._lease_write("DELETE FROM leases WHERE session_id = %s", (session_id,))

    def leases(self) -> list[Lease]:
        rows = self._query(
            "SELECT session_id, caller_id, pid, process_start, host, touched FROM leases ORDER BY session_id"
        )
        return [Lease(*row) for row in rows]

    # ---- reads ----------------------------------------------------------------------------
    def query_information(
        self,
        *,
        categories: Iterable[str] | None = None,
        caller_id: str | None = None,
        session_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        limit: int = 100,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[Entry], bool]:
        where, params = ["type = 'info'"], []
        cats = list(dict.fromkeys(categories or ()))
        if cats:
            where.append("category = ANY(%s)")
            params.append(cats)
        for column, value in (("caller_id", caller_id), ("session_id", session_id)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if since is not None:
            where.append("ts >= %s")
            params.append(since)
        if until is not None:
            where.append("ts <= %s")
            params.append(until)
        needle = text.casefold() if text else None
        if needle and text.isascii():
            # a case-blind prefilter on the JSON line; every candidate is checked below
            where.append("body ILIKE %s")
            params.append(
                "%" + json.dumps(text)[1:-1].replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
            )
        ascending = after_seq is not None
        cursor = after_seq if ascending else before_seq
        out: list[Entry] = []
        batch = limit + 1 if needle is None else max(200, limit + 1)
        while True:
            clause = list(where)
            args = list(params)
            if cursor is not None:
                clause.append("seq > %s" if ascending else "seq < %s")
                args.append(cursor)
            rows = self._query(
                f"SELECT seq, body FROM entries{_where(clause)}"  # noqa: S608 - fixed fragments
                f" ORDER BY seq {'ASC' if ascending else 'DESC'} LIMIT %s",
                (*args, batch),
            )
            for _seq, body in rows:
                record = _record(body)
                if needle is not None and needle not in searchable(record):
                    continue
                if len(out) == limit:
                    return out, True
                out.append(record)
            if len(rows) < batch:
                return out, False
            cursor = rows[-1][0]

    def get_session(self, session_id: str) -> Entry | None:
        with self._snapshot() as conn:
            views = _session_views(conn, "WHERE st.session_id = %s", (session_id,))
        return views[0] if views else None

    def session_information(self, session_id: str) -> list[Entry]:
        rows = self._query(
            "SELECT body FROM entries WHERE type = 'info' AND session_id = %s ORDER BY seq", (session_id,)
        )
        return [_record(b) for (b,) in rows]

    def session_call(self, session_id: str) -> Entry | None:
        rows = self._query(
            "SELECT e.body FROM calls c JOIN entries e ON e.seq = c.seq WHERE c.session_id = %s", (session_id,)
        )
        return _record(rows[0][0]) if rows else None

    def session_transcript(self, session_id: str) -> list[Entry]:
        rows = self._query(
            "SELECT body FROM entries WHERE type = 'turn' AND session_id = %s ORDER BY seq", (session_id,)
        )
        return [_record(b) for (b,) in rows]

    def query_sessions(
        self,
        *,
        status: str | None = None,
        caller_id: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        missing_disclosure: bool | None = None,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> tuple[list[Entry], int | None]:
        where, params = [], []
        if caller_id is not None:
            where.append("st.caller_id = %s")
            params.append(caller_id)
        if status == "active":
            where.append("st.call_seq IS NULL")
        elif status == "completed":
            where.append("st.call_seq IS NOT NULL")
        if outcome is not None:
            where.append("c.outcome = %s")
            params.append(outcome)
        if since is not None:
            where.append("st.started_ts >= %s")
            params.append(since)
        if until is not None:
            where.append("st.started_ts <= %s")
            params.append(until)
        if missing_disclosure is not None:
            where.append("coalesce(dd.missing, false) = %s")
            params.append(missing_disclosure)
        if before_seq is not None:
            where.append("st.seq < %s")
            params.append(before_seq)
        rows = self._query(
            "SELECT st.seq, st.session_id FROM sessions st LEFT JOIN calls c ON c.seq = st.call_seq"  # noqa: S608
            f" LEFT JOIN disclosures dd ON dd.session_id = st.session_id{_where(where)}"
            " ORDER BY st.seq DESC LIMIT %s",
            (*params, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        if not rows:
            return [], None
        with self._snapshot() as conn:
            views = {
                v["session_id"]: v
                for v in _session_views(conn, "WHERE st.session_id = ANY(%s)", ([sid for _s, sid in rows],))
            }
        return [views[sid] for _s, sid in rows if sid in views], (rows[-1][0] if more else None)

    def query_calls(
        self,
        *,
        caller_id: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> tuple[list[Entry], bool]:
        where, params = [], []
        for column, value in (("c.caller_id", caller_id), ("c.outcome", outcome)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if since is not None:
            where.append("c.ended_ts >= %s")
            params.append(since)
        if until is not None:
            where.append("c.ended_ts <= %s")
            params.append(until)
        if before_seq is not None:
            where.append("c.seq < %s")
            params.append(before_seq)
        rows = self._query(
            f"SELECT e.body FROM calls c JOIN entries e ON e.seq = c.seq{_where(where)}"  # noqa: S608
            " ORDER BY c.seq DESC LIMIT %s",
            (*params, limit + 1),
        )
        return [_record(b) for (b,) in rows[:limit]], len(rows) > limit

    def count_calls(self, since: float) -> tuple[int, int]:
        n, qualified = self._query(
            "SELECT count(*), count(*) FILTER (WHERE outcome = 'qualified') FROM calls WHERE ended_ts >= %s",
            (since,),
        )[0]
        return n, qualified

    def _counters(self, conn=None) -> dict[str, tuple[int, float]]:
        sql = "SELECT name, n, total FROM counters"
        rows = conn.execute(sql).fetchall() if conn is not None else self._query(sql)
        return {name: (n, total) for name, n, total in rows}

    def call_totals(self) -> dict[str, Any]:
        c = self._counters()
        return {
            "calls": c.get("calls", (0, 0))[0],
            "qualified": c.get("outcome:qualified", (0, 0))[0],
            "cost_total_usd": round(c.get("cost", (0, 0.0))[1], 6),
            "calls_with_cost": c.get("cost", (0, 0))[0],
        }

    def call_figures(self, since: float | None = None, until: float | None = None) -> CallFigures:
        where, params = [], []
        if since is not None:
            where.append("c.ended_ts >= %s")
            params.append(since)
        if until is not None:
            where.append("c.ended_ts <= %s")
            params.append(until)
        rows = self._query(
            "SELECT c.ended_ts, c.outcome, c.duration, coalesce(c.cost_usd, -1), coalesce(d.missing, false)"  # noqa: S608
            f" FROM calls c LEFT JOIN disclosures d ON d.session_id = c.session_id{_where(where)} ORDER BY c.seq",
            params,
        )
        return CallFigures(
            ended=[r[0] for r in rows],
            outcome=[r[1] for r in rows],
            duration=[r[2] for r in rows],
            cost=[r[3] for r in rows],
            missing_disclosure=[r[4] for r in rows],
        )

    def _job_view(self, conn, data: str, payload_seq: int | None, result_seq: int | None) -> dict[str, Any]:
        job = json.loads(data)
        for big, seq in (("payload", payload_seq), ("result", result_seq)):
            if seq is not None:
                body = conn.execute("SELECT body FROM entries WHERE seq = %s", (seq,)).fetchone()[0]
                job[big] = json.loads(body)["data"][big]
        return job

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._snapshot() as conn:
            row = conn.execute("SELECT data, payload_seq, result_seq FROM jobs WHERE job_id = %s", (job_id,)).fetchone()
            return None if row is None else self._job_view(conn, *row)

    def jobs_of_kind(
        self, kind: str, *, states: Iterable[str] | None = None, limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        wanted = list(states) if states is not None else None
        with self._snapshot() as conn:
            rows = conn.execute(
                "SELECT job_id, data, payload_seq, result_seq FROM jobs WHERE kind = %s"  # noqa: S608
                + (" AND state = ANY(%s)" if wanted is not None else "")
                + " ORDER BY first_seq DESC LIMIT %s",
                (kind, wanted, limit) if wanted is not None else (kind, limit),
            ).fetchall()
            return [(job_id, self._job_view(conn, data, p, r)) for job_id, data, p, r in rows]

    def sessions_with_call_logs(self) -> list[str]:
        return [sid for (sid,) in self._query("SELECT session_id FROM calls ORDER BY seq")]

    def due_jobs(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        due = []
        for job_id, data in self._query("SELECT job_id, data FROM jobs WHERE open ORDER BY first_seq"):
            job = json.loads(data)
            state = job.get("state")
            if (state in ("queued", "retrying") and job.get("not_before", 0) <= now) or (
                state == "claimed" and job.get("until", 0) < now
            ):
                due.append((job.get("created", 0), job_id, job))
        return [(job_id, job) for _created, job_id, job in sorted(due, key=lambda d: (d[0], d[1]))]

    def events(self, kind: str, key: str | None = None) -> list[Entry]:
        if key is None:
            rows = self._query("SELECT body FROM entries WHERE type = 'event' AND kind = %s ORDER BY seq", (kind,))
        else:
            rows = self._query(
                "SELECT body FROM entries WHERE type = 'event' AND kind = %s AND key = %s ORDER BY seq", (kind, key)
            )
        return [_record(b) for (b,) in rows]

    def event_keys(self, kind: str) -> list[str]:
        rows = self._query(
            "SELECT key FROM entries WHERE type = 'event' AND kind = %s GROUP BY key ORDER BY min(seq)", (kind,)
        )
        return [k for (k,) in rows]

    def summary(self, recent: int = 10) -> dict[str, Any]:
        with self._snapshot() as conn:
            c = self._counters(conn)
            active = conn.execute("SELECT count(*) FROM sessions WHERE call_seq IS NULL").fetchone()[0]
            last = conn.execute("SELECT last_seq FROM store_head").fetchone()[0]
            infos = conn.execute(
                "SELECT body FROM entries WHERE type = 'info' ORDER BY seq DESC LIMIT %s", (recent,)
            ).fetchall()
            calls = conn.execute(
                "SELECT e.body FROM calls c JOIN entries e ON e.seq = c.seq ORDER BY c.seq DESC LIMIT %s", (recent,)
            ).fetchall()
        return {
            "total_sessions": c.get("sessions", (0, 0))[0],
            "active_sessions": active,
            "total_calls": c.get("calls", (0, 0))[0],
            "total_information": c.get("information", (0, 0))[0],
            "by_category": {cat: c.get(f"category:{cat}", (0, 0))[0] for cat in CATEGORIES},
            "by_outcome": {
                name.split(":", 1)[1]: n for name, (n, _t) in c.items() if name.startswith("outcome:") and n
            },
            "recent_information": [_record(b) for (b,) in infos],
            "recent_calls": [_record(b) for (b,) in calls],
            "last_seq": last,
        }

    def active_sessions(self) -> list[Entry]:
        with self._snapshot() as conn:
            return _session_views(conn, "WHERE st.call_seq IS NULL", (), " ORDER BY st.seq")

    def last_seq(self) -> int:
        return self._query("SELECT last_seq FROM store_head")[0][0]

    def entries(self, after_seq: int = 0, batch: int = 5000) -> Iterator[Entry]:
        """Every entry with `type`, in seq order (for `export` and `copy`)."""
        cursor = after_seq
        while True:
            rows = self._query("SELECT seq, body FROM entries WHERE seq > %s ORDER BY seq LIMIT %s", (cursor, batch))
            for _seq, body in rows:
                yield json.loads(body)
            if len(rows) < batch:
                return
            cursor = rows[-1][0]

    def export(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exported_at": iso(utc_now()), "last_seq": self.last_seq()}
        with self._snapshot() as conn:
            out["sessions"] = _session_views(conn, "", (), " ORDER BY st.seq")
        groups: dict[str, list[Entry]] = {"info": [], "call": [], "event": [], "turn": []}
        for entry in self.entries():
            if entry["type"] in groups:
                groups[entry["type"]].append(public(entry))
        out.update(information=groups["info"], calls=groups["call"], events=groups["event"], transcript=groups["turn"])
        return out

    def stats(self) -> dict[str, Any]:
        s = self.summary(recent=0)
        for key in ("recent_information", "recent_calls"):
            s.pop(key)
        c = self._counters()
        s["events"], s["transcript_turns"] = c.get("events", (0, 0))[0], c.get("turns", (0, 0))[0]
        return s

    # ---- bulk load (`python -m backend copy`) ----------------------------------------------
    def load(self, entries: Iterable[Entry], *, batch: int = 2000) -> int:
        """Append entries that already have their seqs (each above the store's last), in
        transactions of `batch`; returns how many. The rules are not run again: the entries
        come from a store that applied them."""
        n = 0
        chunk: list[Entry] = []

        def flush() -> None:
            def rule(tx: WriteView, _append):
                assert isinstance(tx, _Tx)
                for entry in chunk:
                    if entry["seq"] <= tx.last_seq:
                        raise StoreError(
                            f"seq {entry['seq']} does not follow the store's last ({tx.last_seq}).", "seq_order"
                        )
                    tx.insert(dict(entry))
                    tx.last_seq = entry["seq"]
                    tx.appended.append(entry)

            self._transact(rule)

        for entry in entries:
            chunk.append(entry)
            if len(chunk) >= batch:
                flush()
                n += len(chunk)
                chunk = []
        if chunk:
            flush()
            n += len(chunk)
        if n:
            self._analyze()
        return n

    def _analyze(self) -> None:
        """Refresh the planner's statistics after a bulk load, so the first queries on a copied
        store use its indexes (a category page right after copying 100k records took 20 ms
        before it, 1 ms after: bench/backends_bench.py)."""
        psycopg = _psycopg()
        try:
            with self._connection() as conn:
                conn.execute("ANALYZE entries, sessions, calls, disclosures, jobs")
        except psycopg.Error as exc:  # only slower plans until autovacuum gets to it
            log.warning("store: ANALYZE after the copy failed: %s", _reason(exc))
