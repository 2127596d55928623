"""The store: categorized, session-tagged records that many processes write at once.

`Store` is the interface every caller uses. Its rules (validation, the duplicate guard, one
call log per session) run inside `_write()`, which an implementation makes atomic across
processes; reads go through `_read()`, which returns up-to-date indexes.

`JournalStore` keeps an append-only JSON Lines journal, `DATA_DIR/journal.jsonl`. A write
takes the writers' lock (a blocking `flock`, see `JournalLock`), catches up on what other
processes appended, checks the rules, appends one line with one `write`, releases the lock and
`fsync`s (unless `STORE_FSYNC=0`) before it returns: its cost does not grow with the size of
the store. Readers follow the journal from the
offset they last read and keep compact indexes in memory. A torn last line (a writer killed
mid-write, a full disk) and corrupt lines are copied into `DATA_DIR/quarantine/` and blanked
in place with spaces, so offsets never move and live readers are never confused.

`MemoryStore` keeps the same entries in a list: for tests and development, one process only.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import hashlib
import json
import logging
import marshal
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.index import Entry, Index
from backend.records import (
    CATEGORIES,
    DUPLICATE_WINDOW_SECONDS,
    END_REASONS,
    MAX_INFORMATION_CHARS,
    InvalidRecord,
    StoreError,
    StoreUnavailable,
    check,
    epoch,
    iso,
    utc_now,
)

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
LOCK = "journal.lock"
QUARANTINE = "quarantine"
MAX_FIELDS_BYTES = 4000
SNAPSHOT = "index.snapshot"
SNAPSHOT_EVERY_BYTES = 16 << 20  # an open that indexes more than this refreshes the snapshot
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class Store(ABC):
    """Every store implementation offers these operations; callers use nothing else."""

    # ---- what an implementation provides ---------------------------------------------------
    @abstractmethod
    @contextmanager
    def _write(self) -> Iterator[tuple[Index, Callable[[Entry], Entry]]]:
        """Exclusive across processes: up-to-date indexes and an `append(entry)` that gives
        the entry its seq, makes it durable and indexes it."""

    @abstractmethod
    def _read(self) -> Index:
        """Indexes brought up to date with everything written so far."""

    def close(self) -> None:  # noqa: B027 - optional for implementations
        """Release files; the store may not be used afterwards."""

    # ---- writes ----------------------------------------------------------------------------
    def start_session(
        self,
        session_id: str,
        caller_id: str,
        direction: str = "inbound",
        called_number: str | None = None,
        started_at: str | None = None,
    ) -> tuple[Entry, bool]:
        """Open a session; returns (session, created). An existing session is returned as is."""
        entry = {
            "type": "session",
            "session_id": session_id,
            "caller_id": caller_id,
            "direction": direction,
            "called_number": called_number,
            "started_at": started_at or iso(utc_now()),
        }
        _validate("session", entry)
        with self._write() as (index, append):
            if session_id in index.sessions:
                return index.session(session_id), False
            append(entry)
            return index.session(session_id), True

    def add_information(
        self,
        *,
        information: str,
        category: str,
        caller_id: str,
        session_id: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> tuple[Entry, bool]:
        """Write one information record; returns (record, duplicate).

        Without `session_id` the record joins the caller's active session, or a new one.
        The same information, category and session within 60 s returns the first record."""
        information = _clean_information(information)
        if not isinstance(category, str) or category not in CATEGORIES:
            raise StoreError(f"Category must be one of: {', '.join(CATEGORIES)}.", "invalid_category")
        if fields is not None:
            if not isinstance(fields, dict):
                raise StoreError("fields must be an object.", "invalid_fields")
            check(f"fields/{category}", fields, "invalid_fields")
            if len(_dumps(fields)) > MAX_FIELDS_BYTES:
                raise StoreError(f"fields are larger than {MAX_FIELDS_BYTES} bytes.", "invalid_fields")
        now = utc_now()
        record: Entry = {
            "type": "info",
            "id": str(uuid.uuid4()),
            "session_id": session_id or "",
            "caller_id": caller_id,
            "category": category,
            "information": information,
            "timestamp": iso(now),
            "status": "received",
        }
        if fields:
            record["fields"] = fields
        _validate("information", record, seq=True, drop_empty_session=session_id is None)
        with self._write() as (index, append):
            sid = session_id or self._resolve_session(index, caller_id)
            if sid not in index.sessions:
                self._open_session(index, append, sid, caller_id, now)
            record["session_id"] = sid
            first = index.recent_duplicate(sid, category, information, now.timestamp(), DUPLICATE_WINDOW_SECONDS)
            if first is not None:
                return first, True
            return _public(append(record)), False

    def end_session(
        self,
        *,
        reason: str,
        caller_id: str,
        session_id: str | None = None,
        duration_seconds: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> tuple[Entry, bool]:
        """Write the call log of a session; returns (call, already_ended)."""
        if not isinstance(reason, str) or reason not in END_REASONS:
            raise StoreError(f"Reason must be one of: {', '.join(END_REASONS)}.", "invalid_reason")
        if duration_seconds is not None and (
            isinstance(duration_seconds, bool)
            or not isinstance(duration_seconds, int | float)
            or not 0 <= duration_seconds < 10**7
        ):
            raise StoreError("duration_seconds must be a non-negative number.", "invalid_duration")
        now = utc_now()
        with self._write() as (index, append):
            sid = session_id or self._resolve_session(index, caller_id)
            if sid not in index.sessions:
                self._open_session(index, append, sid, caller_id, now)
            state = index.sessions[sid]
            if state.call_pos >= 0:
                return index.call(state.call_pos), True
            if duration_seconds is None:
                duration_seconds = max(0.0, now.timestamp() - state.started_ts)
            call: Entry = {
                "type": "call",
                "id": str(uuid.uuid4()),
                "session_id": sid,
                "caller_id": state.caller_id,
                "reason": reason,
                "outcome": END_REASONS[reason],
                "duration_seconds": round(float(duration_seconds), 3),
                "information_count": len(index.by_session.get(sid, ())),
                "ended_at": iso(now),
            }
            if details:
                call["details"] = details
            _validate("call", call)
            return _public(append(call)), False

    def import_information(self, record: Entry, *, session_id: str, caller_id: str, timestamp: str) -> Entry:
        """Write a record carried over from elsewhere, keeping its id and timestamp."""
        entry: Entry = {
            "type": "info",
            "id": str(record.get("id") or uuid.uuid4()),
            "session_id": session_id,
            "caller_id": caller_id,
            "category": record.get("category"),
            "information": _clean_information(record.get("information")),
            "timestamp": timestamp,
            "status": "received",
        }
        if isinstance(record.get("fields"), dict) and record["fields"]:
            entry["fields"] = record["fields"]
        _validate("information", entry, seq=True)
        with self._write() as (_index, append):
            return _public(append(entry))

    def append_event(self, kind: str, key: str, data: dict[str, Any]) -> Entry:
        """Record an event (do-not-call change, outbound call state, carrier callback)."""
        entry = {"type": "event", "kind": kind, "key": key, "timestamp": iso(utc_now()), "data": data}
        _validate("event", entry)
        with self._write() as (_index, append):
            return _public(append(entry))

    def _resolve_session(self, index: Index, caller_id: str) -> str:
        state = index.active_session_for(caller_id)
        return state.session_id if state else str(uuid.uuid4())

    @staticmethod
    def _open_session(index: Index, append, sid: str, caller_id: str, now) -> None:
        entry = {
            "type": "session",
            "session_id": sid,
            "caller_id": caller_id,
            "direction": "inbound",
            "called_number": None,
            "started_at": iso(now),
        }
        _validate("session", entry)
        append(entry)

    # ---- reads -----------------------------------------------------------------------------
    def query_information(self, **filters: Any) -> tuple[list[Entry], bool]:
        """See `Index.query_info`: (records, more)."""
        index = self._read()
        text = filters.get("text")
        if text:
            filters["restrict"] = self._text_positions(index, text)
        return index.query_info(**filters)

    def _text_positions(self, index: Index, text: str) -> list[int] | None:
        """Positions of records that may contain `text`, or None to check every record."""
        return None

    def get_session(self, session_id: str) -> Entry | None:
        return self._read().session(session_id)

    def session_information(self, session_id: str) -> list[Entry]:
        """A session's records, oldest first."""
        index = self._read()
        return [index.info(p) for p in index.by_session.get(session_id, ())]

    def session_call(self, session_id: str) -> Entry | None:
        index = self._read()
        state = index.sessions.get(session_id)
        return index.call(state.call_pos) if state and state.call_pos >= 0 else None

    def query_sessions(
        self,
        *,
        status: str | None = None,
        caller_id: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> tuple[list[Entry], int | None]:
        """Sessions newest first, and the seq to continue before (None at the end)."""
        index = self._read()
        states = index.sessions_by_caller.get(caller_id, []) if caller_id else index.session_order
        end = len(states) if before_seq is None else bisect_left(states, before_seq, key=_seq_of)
        out: list[Entry] = []
        for state in reversed(states[:end] if end < len(states) else states):
            if (status == "active" and state.call_pos >= 0) or (status == "completed" and state.call_pos < 0):
                continue
            if outcome is not None and (state.call_pos < 0 or index.call_outcome[state.call_pos] != outcome):
                continue
            if (since is not None and state.started_ts < since) or (until is not None and state.started_ts > until):
                continue
            if len(out) == limit:
                return out, index.sessions[out[-1]["session_id"]].seq
            out.append(index.session_view(state))
        return out, None

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
        """Call logs newest first; (calls, more). Continue with the last call's seq."""
        index = self._read()
        positions = index.calls_by_caller.get(caller_id, ()) if caller_id else range(len(index.call_off))
        if before_seq is not None:
            positions = positions[: bisect_left(positions, before_seq, key=index.call_seq.__getitem__)]
        out: list[Entry] = []
        for pos in reversed(positions):
            if outcome is not None and index.call_outcome[pos] != outcome:
                continue
            ts = index.call_ts[pos]
            if (since is not None and ts < since) or (until is not None and ts > until):
                continue
            if len(out) == limit:
                return out, True
            out.append(index.call(pos))
        return out, False

    def count_calls(self, since: float) -> tuple[int, int]:
        """(call logs ended since `since`, how many of them `qualified`), from the index alone."""
        index = self._read()
        first = bisect_left(index.call_ts, since)
        recent = index.call_outcome[first:]
        return len(recent), recent.count("qualified")

    def events(self, kind: str, key: str | None = None) -> list[Entry]:
        """Events of `kind` (for one `key`, or all), in write order."""
        index = self._read()
        keyed = index.events.get(kind, {})
        offsets = keyed.get(key, []) if key is not None else sorted(o for offs in keyed.values() for o in offs)
        return [_public(index.fetch(o)) for o in offsets]

    def event_keys(self, kind: str) -> list[str]:
        return list(self._read().events.get(kind, {}))

    def summary(self, recent: int = 10) -> dict[str, Any]:
        index = self._read()
        n_info, n_calls = len(index.info_off), len(index.call_off)
        return {
            "total_sessions": len(index.sessions),
            "active_sessions": len(index.active),
            "total_calls": n_calls,
            "total_information": n_info,
            "by_category": {c: len(index.by_category[c]) for c in CATEGORIES},
            "by_outcome": dict(index.by_outcome),
            "recent_information": [index.info(p) for p in range(n_info - 1, max(-1, n_info - 1 - recent), -1)],
            "recent_calls": [index.call(p) for p in range(n_calls - 1, max(-1, n_calls - 1 - recent), -1)],
            "last_seq": index.last_seq,
        }

    def active_sessions(self) -> list[Entry]:
        index = self._read()
        return [index.session(sid) for sid in index.active]

    def last_seq(self) -> int:
        return self._read().last_seq

    def export(self) -> dict[str, Any]:
        """The whole store as one JSON document."""
        index = self._read()
        return {
            "exported_at": iso(utc_now()),
            "last_seq": index.last_seq,
            "sessions": [index.session_view(s) for s in index.session_order],
            "information": [index.info(p) for p in range(len(index.info_off))],
            "calls": [index.call(p) for p in range(len(index.call_off))],
            "events": [
                _public(index.fetch(o)) for o in sorted(o for k in index.events.values() for v in k.values() for o in v)
            ],
        }

    def stats(self) -> dict[str, Any]:
        s = self.summary(recent=0)
        for key in ("recent_information", "recent_calls"):
            s.pop(key)
        s["events"] = self._read().event_count
        return s


def _seq_of(state) -> int:
    return state.seq


def _public(entry: Entry) -> Entry:
    out = dict(entry)
    out.pop("type", None)
    return out


def _clean_information(information: Any) -> str:
    if not isinstance(information, str) or not information.strip():
        raise StoreError("Information must be a non-empty sentence.", "empty_information")
    information = information.strip()
    if len(information) > MAX_INFORMATION_CHARS:
        raise StoreError(
            f"Information is longer than {MAX_INFORMATION_CHARS} characters; split it into several facts.",
            "information_too_long",
        )
    return information


def _validate(schema: str, entry: Entry, *, seq: bool = False, drop_empty_session: bool = False) -> None:
    doc = {k: v for k, v in entry.items() if k != "type"}
    if seq:
        doc["seq"] = 1
    if drop_empty_session and not doc.get("session_id"):
        doc["session_id"] = "pending"
    check(schema, doc)


# ---- the journal ---------------------------------------------------------------------------


class JournalStore(Store):
    """Append-only JSON Lines journal under a file lock; see the module docstring."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        fsync: bool = True,
        read_only: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / JOURNAL
        self.fsync = fsync
        self.read_only = read_only
        self._mutex = threading.RLock()
        self._quarantined: list[dict[str, Any]] = []
        try:
            if not read_only:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            else:
                fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise StoreUnavailable(f"The store at {self.data_dir} cannot be opened ({exc.strerror}).") from exc
        self._fd = fd
        self._lock = JournalLock(self.data_dir / LOCK, read_only=read_only)
        self._read_off = 0
        self._appends = 0
        self._pending: list[tuple[int, int]] = []  # corrupt lines found by this reader, to quarantine
        self.index = Index(self._fetch)
        self._load_snapshot()
        self._snapshot_off = self._read_off
        self._catch_up()
        if self._read_off - self._snapshot_off > SNAPSHOT_EVERY_BYTES:
            self.write_snapshot()
        if not read_only:
            with self._locked():
                self._repair_tail()
                self._catch_up()
            self._quarantine_pending()

    # ---- Store primitives -----------------------------------------------------------------
    @contextmanager
    def _write(self):
        if self.read_only:
            raise StoreUnavailable("The store is open read-only.")
        with self._mutex, self._locked():
            self._repair_tail()
            self._catch_up()
            before = self._appends
            yield self.index, self._append
            appended = self._appends != before
        # Group commit: fsync after letting go of the lock, so the next writer appends while this
        # one waits for the disk; an fsync makes every earlier write of the file durable too, so
        # a record is acknowledged only once it and everything before it are on disk.
        if appended and self.fsync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                log.error("store fsync failed: %s", exc.strerror or exc)
                raise StoreUnavailable("The store cannot confirm the save right now (disk error).") from exc

    def _read(self) -> Index:
        with self._mutex:
            self._catch_up()
            if self._pending and not self.read_only:
                self._quarantine_pending()
        return self.index

    def close(self) -> None:
        """Close the journal; save the index snapshot first when it is far behind."""
        with self._mutex:
            if self._fd >= 0:
                if not self.read_only and self._read_off - self._snapshot_off > SNAPSHOT_EVERY_BYTES:
                    self.write_snapshot()
                os.close(self._fd)
                self._fd = -1

    # ---- internals ------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        try:
            self._lock.acquire()
        except OSError as exc:
            raise StoreUnavailable(f"The store cannot be locked ({exc.strerror}).") from exc
        try:
            yield
        finally:
            self._lock.release()

    def _append(self, entry: Entry) -> Entry:
        entry["seq"] = self.index.last_seq + 1
        line = _dumps(_ordered(entry)).encode("utf-8") + b"\n"
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            self._undo_to(size)
            entry.pop("seq", None)
            log.error("store write failed: %s", exc.strerror or exc)
            raise StoreUnavailable("The store cannot save right now (disk full or read-only).") from exc
        if self._read_off != size:  # nothing else can have written: we hold the lock
            self._catch_up()
        else:
            self.index.add(entry, size)
            self._read_off = size + len(line)
        self._appends += 1
        return entry

    def _undo_to(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            log.error("store: could not truncate a failed write; the next writer will quarantine it")

    def _fetch(self, off: int) -> Entry:
        chunk = os.pread(self._fd, 4096, off)
        end = chunk.find(b"\n")
        while end < 0:
            more = os.pread(self._fd, 65536, off + len(chunk))
            if not more:
                raise StoreError("A record ends before its line does.", "store_corrupt")
            chunk += more
            end = chunk.find(b"\n")
        return json.loads(chunk[:end])

    def _catch_up(self) -> None:
        """Index every complete line appended since the last call."""
        size = os.fstat(self._fd).st_size
        if size < self._read_off:  # truncated behind our back: start again
            log.warning("store journal shrank; re-reading it")
            self.index = Index(self._fetch)
            self._read_off = 0
        while self._read_off < size:
            want = min(size - self._read_off, 16 << 20)
            chunk = os.pread(self._fd, want, self._read_off)
            last_nl = chunk.rfind(b"\n")
            if last_nl < 0:
                return  # an incomplete last line: a write in progress, or torn
            self._index_chunk(chunk, last_nl + 1, self._read_off)
            self._read_off += last_nl + 1

    def _index_chunk(self, chunk: bytes, end: int, base: int) -> None:
        start = 0
        add = self.index.add
        loads = json.loads
        while start < end:
            nl = chunk.index(b"\n", start)
            if nl > start and not chunk[start:nl].isspace():
                try:
                    add(loads(chunk[start:nl]), base + start)
                except (ValueError, KeyError, TypeError, AttributeError):
                    self._pending.append((base + start, nl - start))
                    log.warning("store: corrupt line at byte %d of the journal; quarantining it", base + start)
            start = nl + 1

    def _repair_tail(self) -> None:
        """With the lock held: a last line without its newline is torn. Quarantine it."""
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        start = max(0, size - 65536)
        while True:
            tail = os.pread(self._fd, size - start, start)
            nl = tail.rfind(b"\n")
            if nl >= 0 or start == 0:
                break
            start = max(0, start - 65536)
        cut = start + nl + 1 if nl >= 0 else 0
        torn = os.pread(self._fd, size - cut, cut)
        self._save_quarantine(torn, cut, "torn")
        os.ftruncate(self._fd, cut)
        if self.fsync:
            os.fsync(self._fd)
        log.warning("store: torn last line (%d bytes at byte %d) moved to quarantine", len(torn), cut)

    def _quarantine_pending(self) -> None:
        if not self._pending:
            return
        with self._locked():
            # pwrite on an O_APPEND descriptor appends on Linux: blank through a second one
            wfd = os.open(self.path, os.O_WRONLY)
            try:
                for off, length in self._pending:
                    line = os.pread(self._fd, length, off)
                    if len(line) != length or line.isspace():
                        continue
                    self._save_quarantine(line, off, "corrupt")
                    os.pwrite(wfd, b" " * length, off)
                if self.fsync:
                    os.fsync(wfd)
            finally:
                os.close(wfd)
        self._pending.clear()

    def _save_quarantine(self, data: bytes, off: int, why: str) -> None:
        qdir = self.data_dir / QUARANTINE
        qdir.mkdir(exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{why}-at-{off}-{uuid.uuid4().hex[:8]}.bin"
        target = qdir / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._quarantined.append({"file": str(target), "offset": off, "bytes": len(data), "why": why})

    def _text_positions(self, index: Index, text: str) -> list[int] | None:
        """Scan the journal's bytes for the text (lower-cased, as JSON writes it): about a
        gigabyte a second, where fetching and parsing every record is a hundred times slower.
        Candidates are checked record by record afterwards, so a match in another key is harmless."""
        if not text.isascii():
            return None
        needle = json.dumps(text.lower())[1:-1].encode()
        found: list[int] = []
        offsets = index.info_off
        off, end = 0, self._read_off
        while off < end:
            chunk = os.pread(self._fd, min(end - off, 16 << 20), off)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                break
            low = chunk[:cut].lower()
            hit = low.find(needle)
            while hit >= 0:
                line_start = off + low.rfind(b"\n", 0, hit) + 1
                pos = bisect_left(offsets, line_start)
                if pos < len(offsets) and offsets[pos] == line_start and (not found or found[-1] != pos):
                    found.append(pos)
                next_nl = low.find(b"\n", hit)
                hit = low.find(needle, next_nl + 1) if next_nl >= 0 else -1
            off += cut
        return found

    # ---- index snapshots -------------------------------------------------------------------
    # Opening a store means indexing its journal: about 20 us a line in Python, so 20 s or more
    # at a million records. A snapshot of the indexes (plain values written with `marshal`, which
    # cannot run code) lets an open start from where the snapshot ends. It is only a cache: it
    # names the journal's inode and a hash of the bytes before its offset, and is ignored unless
    # both still match.
    def _snapshot_key(self, off: int) -> str:
        start = max(0, off - 4096)
        return hashlib.sha256(os.pread(self._fd, off - start, start)).hexdigest()

    def _load_snapshot(self) -> None:
        path = self.data_dir / SNAPSHOT
        try:
            with open(path, "rb") as fh:
                snap = marshal.load(fh)  # noqa: S302 - our own file in DATA_DIR (0600), plain values only
            st = os.fstat(self._fd)
            off = snap["offset"]
            if snap["ino"] != st.st_ino or off > st.st_size or snap["key"] != self._snapshot_key(off):
                log.info("store: index snapshot does not match the journal; indexing from the start")
                return
            self.index = Index.load_state(snap["index"], self._fetch)
            self._pending = list(snap.get("pending", []))
            self._read_off = off
        except FileNotFoundError:
            return
        except (OSError, EOFError, ValueError, TypeError, KeyError) as exc:
            log.warning("store: index snapshot unreadable (%s); indexing from the start", exc)
            self.index = Index(self._fetch)
            self._read_off = 0

    def write_snapshot(self) -> bool:
        """Save the indexes up to the current offset (atomically); False when the folder is read-only."""
        with self._mutex:
            snap = {
                "ino": os.fstat(self._fd).st_ino,
                "offset": self._read_off,
                "key": self._snapshot_key(self._read_off),
                "pending": self._pending,
                "index": self.index.dump_state(),
            }
            tmp = self.data_dir / f"{SNAPSHOT}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    marshal.dump(snap, fh)
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.data_dir / SNAPSHOT)
                self._snapshot_off = snap["offset"]
            except OSError as exc:
                log.warning("store: could not save the index snapshot (%s)", exc.strerror or exc)
                tmp.unlink(missing_ok=True)
                return False
            return True

    def verify(self) -> dict[str, Any]:
        """Re-read the whole journal, repair what can be repaired; report what was quarantined."""
        with self._mutex:
            if not self.read_only:
                with self._locked():
                    self._repair_tail()
            self.index = Index(self._fetch)
            self._read_off = 0
            self._catch_up()
            found = len(self._pending)
            if not self.read_only:
                self._quarantine_pending()
                self.write_snapshot()
            # what this process quarantined since it opened the store (or last verified it)
            quarantined, self._quarantined = self._quarantined, []
            return {
                "healthy": not quarantined and not found,
                "repaired": bool(quarantined),
                "quarantined": quarantined,
                "last_seq": self.index.last_seq,
                "entries_bytes": self._read_off,
            }


class JournalLock:
    """The writers' lock: a blocking `flock` on `DATA_DIR/journal.lock`.

    The kernel queues waiters and wakes them when the holder lets go, and releases the lock of a
    process that dies. `filelock.FileLock` polls instead; measured here with four writers
    hammering the journal, its polling let one writer wait 570 ms while the others took turns,
    where a blocking flock's longest wait was 29 ms. A holder holds it for one write and fsync.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._fd = -1
        self._read_only = read_only

    def acquire(self) -> None:
        if self._fd < 0:
            flags = os.O_RDONLY if self._read_only else os.O_RDWR | os.O_CREAT
            self._fd = os.open(self.path, flags, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


_ORDER = ("seq", "type")


def _ordered(entry: Entry) -> Entry:
    return {**{k: entry[k] for k in _ORDER}, **{k: v for k, v in entry.items() if k not in _ORDER}}


class MemoryStore(Store):
    """The same store in one process's memory (tests, development)."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._mutex = threading.RLock()
        self.index = Index(lambda off: json.loads(self._lines[off]))

    @contextmanager
    def _write(self):
        with self._mutex:
            yield self.index, self._append

    def _append(self, entry: Entry) -> Entry:
        entry["seq"] = self.index.last_seq + 1
        self._lines.append(_dumps(_ordered(entry)).encode("utf-8"))
        self.index.add(entry, len(self._lines) - 1)
        return entry

    def _read(self) -> Index:
        return self.index

    def verify(self) -> dict[str, Any]:
        return {"healthy": True, "repaired": False, "quarantined": [], "last_seq": self.index.last_seq}


IMPLEMENTATIONS: dict[str, Callable[..., Store]] = {"journal": JournalStore, "memory": MemoryStore}


def open_store(data_dir: str | os.PathLike[str] | None = None, *, fsync: bool | None = None) -> Store:
    """The store configured by settings (`DATA_DIR`, `STORE_FSYNC`)."""
    from backend.settings import get_settings

    settings = get_settings()
    return JournalStore(
        data_dir if data_dir is not None else settings.data_dir,
        fsync=settings.store_fsync if fsync is None else fsync,
    )


def freeze_loaded_heap() -> None:
    """Call once a long-running process has opened its store (the agent's prewarm, a gunicorn
    worker after loading the app): moves everything alive now out of the cyclic garbage
    collector's sight.

    A store's in-memory index is hundreds of thousands of long-lived objects; left in the
    collector's generations, every full collection walks them all while the event loop or the
    request waits: 124-220 ms with 100k records (bench/agent_bench.py prints it), enough to
    delay a tool call audibly. Records caught up later are few and young.
    """
    gc.collect()  # garbage made while loading is freed, not frozen
    gc.freeze()


def epoch_or_none(text: str | None) -> float | None:
    return None if text is None else epoch(text)


__all__ = [
    "IMPLEMENTATIONS",
    "InvalidRecord",
    "JournalStore",
    "MemoryStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]
