"""The store interface: every implementation offers these operations, and callers use nothing
else (the backend functions in `backend/backend_agent.py` are its one caller outside the store).

The rules (validation, the duplicate guard, one call log per session) run here, inside
`_write()`, which an implementation makes atomic across processes and which shows them what is
written through a `WriteView` (`records.py`): the full `Index`, the agent's lean index, or a
PostgreSQL transaction. The reads below go through `_read()`, which returns up-to-date indexes
(`backend/store/index.py`), or, for those an agent makes, `_lookups()` (by default the same; a
lean JSON store's `LeanIndex`); an implementation without them (`postgres.py`) overrides every read.
Call leases (`backend/calls/leases.py` decides when one is dead) are kept by each implementation
in its own way.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.store.index import Index, job_view
from backend.store.leases import Lease
from backend.store.records import (
    CATEGORIES,
    DUPLICATE_WINDOW_SECONDS,
    END_REASONS,
    MAX_INFORMATION_CHARS,
    MAX_TURN_CHARS,
    SPEAKERS,
    Entry,
    InvalidRecord,
    StoreError,
    WriteView,
    check,
    dumps,
    iso,
    public,
    utc_now,
)

if TYPE_CHECKING:
    from backend.store.lean import LeanIndex

MAX_FIELDS_BYTES = 4000


@dataclass(frozen=True)
class CallFigures:
    """Column by column, the calls that ended in a time range, in the order they ended."""

    ended: list[float]  # epoch seconds
    outcome: list[str]
    duration: list[float]  # seconds
    cost: list[float]  # total USD, or -1 for a call without a cost
    missing_disclosure: list[bool]


class Store(ABC):
    """Every store implementation offers these operations; callers use nothing else."""

    # ---- what an implementation provides ---------------------------------------------------
    @abstractmethod
    @contextmanager
    def _write(self) -> Iterator[tuple[WriteView, Callable[[Entry], Entry]]]:
        """Exclusive across processes: a `WriteView` of everything written so far and an
        `append(entry)` that gives the entry the next seq and makes it durable (committed when
        the block ends) before any other writer's entry."""

    def _transact(self, rule: Callable[[WriteView, Callable[[Entry], Entry]], Any]) -> Any:
        """Run one write's `rule(view, append)` inside `_write()` and return what it returns.
        An implementation whose writes can fail halfway (a database connection lost) runs the
        rule again in a new transaction: a rule decides from the view alone, so that is safe."""
        with self._write() as (view, append):
            return rule(view, append)

    @abstractmethod
    def _read(self) -> Index:
        """Indexes brought up to date with everything written so far."""

    def _lookups(self) -> Index | LeanIndex:
        """What answers the reads an agent process makes (by session, caller, event key, job id,
        and the call logs of an outcome), up to date: `_read()`'s indexes, unless the
        implementation keeps a lean index for them (`backend/store/lean.py`)."""
        return self._read()

    def close(self) -> None:  # noqa: B027 - optional for implementations
        """Release files; the store may not be used afterwards."""

    @abstractmethod
    def verify(self) -> dict[str, Any]:
        """Check (and where possible repair) what is stored; a report with `healthy`, `repaired`,
        `quarantined` (what was moved aside) and `last_seq`."""

    @abstractmethod
    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """A section that one thread of one process at a time runs, across every process
        sharing this store (e.g. `outbound`: counting calls in progress and queueing a new one)."""

    # ---- call leases: a call in progress, until its call log is written ----------------------
    @abstractmethod
    def put_lease(self, lease: Lease) -> None:
        """Mark `lease.session_id` as in progress in the process `lease` names (again, if it is)."""

    @abstractmethod
    def touch_lease(self, session_id: str) -> None:
        """The call's heartbeat: now is the lease's last sign of life. Never raises for a lost lease."""

    @abstractmethod
    def drop_lease(self, session_id: str) -> None:
        """The call no longer needs its lease (its call log is written)."""

    @abstractmethod
    def leases(self) -> list[Lease]:
        """Every lease held now, with its last heartbeat in `touched`."""

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

        def rule(view: WriteView, append: Callable[[Entry], Entry]):
            existing = view.session(session_id)
            if existing is not None:
                return existing, False
            append(entry)
            return view.session(session_id), True

        return self._transact(rule)

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
            if len(dumps(fields)) > MAX_FIELDS_BYTES:
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

        def rule(view: WriteView, append: Callable[[Entry], Entry]):
            sid = session_id or view.active_session_id(caller_id) or str(uuid.uuid4())
            if view.session_facts(sid) is None:
                self._open_session(append, sid, caller_id, now)
            record["session_id"] = sid
            first = view.recent_duplicate(sid, category, information, now.timestamp(), DUPLICATE_WINDOW_SECONDS)
            if first is not None:
                return first, True
            return public(append(record)), False

        return self._transact(rule)

    def end_session(
        self,
        *,
        reason: str,
        caller_id: str,
        session_id: str | None = None,
        duration_seconds: float | None = None,
        details: dict[str, Any] | None = None,
        cost: dict[str, Any] | None = None,
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

        def rule(view: WriteView, append: Callable[[Entry], Entry]):
            sid = session_id or view.active_session_id(caller_id) or str(uuid.uuid4())
            facts = view.session_facts(sid)
            if facts is None:
                self._open_session(append, sid, caller_id, now)
                facts = view.session_facts(sid)
            if facts.call is not None:
                return facts.call, True
            duration = duration_seconds
            if duration is None:
                duration = max(0.0, now.timestamp() - facts.started_ts)
            call: Entry = {
                "type": "call",
                "id": str(uuid.uuid4()),
                "session_id": sid,
                "caller_id": facts.caller_id,
                "reason": reason,
                "outcome": END_REASONS[reason],
                "duration_seconds": round(float(duration), 3),
                "information_count": facts.information_count,
                "ended_at": iso(now),
            }
            if details:
                call["details"] = details
            if cost is not None:
                call["cost"] = cost
            evidence = facts.disclosures
            if evidence is not None:
                call["missing_disclosures"] = list(evidence.get("missing", []))
            _validate("call", call)
            return public(append(call)), False

        return self._transact(rule)

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

        def rule(_index: WriteView, append: Callable[[Entry], Entry]):
            return public(append(entry))

        return self._transact(rule)

    def add_turn(
        self,
        *,
        session_id: str,
        speaker: str,
        text: str,
        start_s: float,
        end_s: float,
        interrupted: bool = False,
        tool: dict[str, Any] | None = None,
    ) -> list[Entry]:
        """Save one transcript turn of an open (or ended) session; returns what was written: one
        entry, or consecutive parts of at most MAX_TURN_CHARS characters for a longer turn (a
        turn is never cut short). A turn saved after the call log is kept, marked so."""
        if speaker not in SPEAKERS:
            raise InvalidRecord(f"speaker must be one of: {', '.join(SPEAKERS)}.", "invalid_speaker")
        if not isinstance(text, str) or (not text.strip() and tool is None):
            raise InvalidRecord("A turn needs the words that were said.", "empty_turn")
        if not all(isinstance(t, int | float) and not isinstance(t, bool) and t >= 0 for t in (start_s, end_s)):
            raise InvalidRecord("start_s and end_s must be seconds from the start of the call.", "invalid_time")
        pieces = _split(text.strip()) if text.strip() else [""]
        now = iso(utc_now())
        entries: list[Entry] = []
        for number, piece in enumerate(pieces, 1):
            entry: Entry = {
                "type": "turn",
                "id": str(uuid.uuid4()),
                "session_id": session_id,
                "speaker": speaker,
                "text": piece,
                "start_s": round(float(start_s), 3),
                "end_s": round(float(max(end_s, start_s)), 3),
                "timestamp": now,
            }
            if interrupted:
                entry["interrupted"] = True
            if len(pieces) > 1:
                entry["part"], entry["parts"] = number, len(pieces)
            if tool is not None:
                entry["tool"] = tool
            _validate("turn", entry, seq=True)
            entries.append(entry)

        def rule(view: WriteView, append: Callable[[Entry], Entry]):
            facts = view.session_facts(session_id)
            if facts is None:
                raise InvalidRecord("There is no session with that id.", "unknown_session")
            out = []
            for entry in entries:
                if facts.call is not None:
                    entry["after_call_log"] = True
                out.append(public(append(entry)))
            return out

        return self._transact(rule)

    def session_transcript(self, session_id: str) -> list[Entry]:
        """A session's transcript turns, in the order they were saved."""
        index = self._read()
        return [public(index.fetch(off)) for off in index.turns.get(session_id, ())]

    def append_event(self, kind: str, key: str, data: dict[str, Any]) -> Entry:
        """Record an event (do-not-call change, outbound call state, carrier callback)."""
        entry = {"type": "event", "kind": kind, "key": key, "timestamp": iso(utc_now()), "data": data}
        _validate("event", entry)

        def rule(_index: WriteView, append: Callable[[Entry], Entry]):
            return public(append(entry))

        return self._transact(rule)

    @staticmethod
    def _open_session(append, sid: str, caller_id: str, now) -> None:
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
        """Matching records, newest first (oldest first after `after_seq`), and whether more
        match beyond `limit`. `since`/`until` are epoch seconds; `text` is a case-blind search."""
        index = self._lookups()
        return index.query_info(
            categories=categories,
            caller_id=caller_id,
            session_id=session_id,
            since=since,
            until=until,
            text=text,
            limit=limit,
            before_seq=before_seq,
            after_seq=after_seq,
            restrict=self._text_positions(index, text) if text else None,
        )

    def _text_positions(self, index: Index | LeanIndex, text: str) -> list[int] | None:
        """Positions of records that may contain `text`, or None to check every record."""
        return None

    def get_session(self, session_id: str) -> Entry | None:
        return self._lookups().session(session_id)

    def session_information(self, session_id: str) -> list[Entry]:
        """A session's records, oldest first."""
        return self._lookups().session_records(session_id)

    def session_call(self, session_id: str) -> Entry | None:
        return self._lookups().session_call(session_id)

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
        """Sessions newest first, and the seq to continue before (None at the end).
        `missing_disclosure=True`: only calls whose agent did not give a required disclosure."""
        index = self._read()
        states = index.sessions_by_caller.get(caller_id, []) if caller_id else index.session_order
        end = len(states) if before_seq is None else bisect_left(states, before_seq, key=_seq_of)
        out: list[Entry] = []
        for state in reversed(states[:end] if end < len(states) else states):
            if (status == "active" and state.call_pos >= 0) or (status == "completed" and state.call_pos < 0):
                continue
            if missing_disclosure is not None and (state.session_id in index.missing_disclosure) != missing_disclosure:
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
        return self._lookups().query_calls(
            caller_id=caller_id, outcome=outcome, since=since, until=until, limit=limit, before_seq=before_seq
        )

    def count_calls(self, since: float) -> tuple[int, int]:
        """(call logs ended since `since`, how many of them `qualified`), from the index alone."""
        index = self._read()
        first = bisect_left(index.call_ts, since)
        recent = index.call_outcome[first:]
        return len(recent), recent.count("qualified")

    def call_totals(self) -> dict[str, Any]:
        """Every call so far, kept up to date by the index (no per-call work): how many, how many
        qualified, and the sum and count of their costs."""
        index = self._read()
        return {
            "calls": len(index.call_off),
            "qualified": index.by_outcome.get("qualified", 0),
            "cost_total_usd": round(index.cost_total, 6),
            "calls_with_cost": index.cost_count,
        }

    def call_figures(self, since: float | None = None, until: float | None = None) -> CallFigures:
        """The figures of the calls that ended in [since, until] (epoch seconds), from the index
        alone: no record is read, so a year of calls at a million records answers at once."""
        index = self._read()
        first = 0 if since is None else bisect_left(index.call_ts, since)
        last = len(index.call_ts) if until is None else bisect_right(index.call_ts, until)
        flagged = index.missing_disclosure
        return CallFigures(
            ended=index.call_ts[first:last].tolist(),
            outcome=index.call_outcome[first:last],
            duration=index.call_duration[first:last].tolist(),
            cost=index.call_cost[first:last].tolist(),
            missing_disclosure=[sid in flagged for sid in index.call_session[first:last]],
        )

    def job(self, job_id: str) -> dict[str, Any] | None:
        """A durable job's latest state (`backend/postcall/jobs.py`), with its result; None if unknown."""
        return self._lookups().job(job_id)

    def jobs_of_kind(
        self, kind: str, *, states: Iterable[str] | None = None, limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """The newest `limit` jobs of `kind` (in `states`, when given), newest queued first, as
        `(job id, latest state with its result)`. Reads the index's job states, not the journal
        (only the results of the jobs returned); a filter that matches few jobs walks them all."""
        index = self._read()
        wanted = set(states) if states is not None else None
        out: list[tuple[str, dict[str, Any]]] = []
        for job_id in reversed(index.jobs):  # in the order they were queued
            job = index.jobs[job_id]
            if job.get("kind") != kind or (wanted is not None and job.get("state") not in wanted):
                continue
            out.append((job_id, job_view(job, index.fetch)))
            if len(out) >= limit:
                break
        return out

    def sessions_with_call_logs(self) -> list[str]:
        """The ids of every ended session, in the order their call logs were written."""
        return list(self._read().call_session)

    def due_jobs(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        """Jobs to run now, oldest first: queued or retrying and due, or claimed by a worker whose
        claim ran out (it died or hung)."""
        due = []
        index = self._read()
        for job_id in index.open_jobs:
            job = index.jobs[job_id]
            state = job.get("state")
            if (state in ("queued", "retrying") and job.get("not_before", 0) <= now) or (
                state == "claimed" and job.get("until", 0) < now
            ):
                due.append((job.get("created", 0), job_id, job))
        return [(job_id, dict(job)) for _created, job_id, job in sorted(due, key=lambda d: (d[0], d[1]))]

    def events(self, kind: str, key: str | None = None) -> list[Entry]:
        """Events of `kind` (for one `key`, or all), in write order."""
        return self._lookups().event_entries(kind, key)

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
        return self._lookups().last_seq

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
                public(index.fetch(o)) for o in sorted(o for k in index.events.values() for v in k.values() for o in v)
            ],
            "transcript": [public(index.fetch(o)) for o in sorted(o for offs in index.turns.values() for o in offs)],
        }

    def stats(self) -> dict[str, Any]:
        s = self.summary(recent=0)
        for key in ("recent_information", "recent_calls"):
            s.pop(key)
        index = self._read()
        s["events"], s["transcript_turns"] = index.event_count, index.turn_count
        return s


def _seq_of(state) -> int:
    return state.seq


def _split(text: str) -> list[str]:
    """`text` in pieces of at most MAX_TURN_CHARS, cut at a space where there is one."""
    pieces = []
    while len(text) > MAX_TURN_CHARS:
        cut = text.rfind(" ", MAX_TURN_CHARS // 2, MAX_TURN_CHARS)
        cut = cut if cut > 0 else MAX_TURN_CHARS
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text]


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
