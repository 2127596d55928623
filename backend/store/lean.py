"""The agent's index: what an agent process needs of the journal, and not every record's index.

An agent process writes one caller's records and reads that caller's history; the API process
lists, counts and sums every record. `LeanIndex` keeps, in arrays of plain integers, where in
the journal each record is, chained by session and by caller; each session's entry and call
log; the call logs' seqs, end times and outcomes; and the events chained by (kind, key). What a
read returns (a record, a session's fields, a job's state) is fetched from the journal by
offset, as the full `Index` does for whole records. That is what the write rules read (the
`WriteView`: `session`, `session_facts`, `active_session_id`, `recent_duplicate`) and what an
agent reads: a caller's or a session's records, a session and its call log, the events of one
key (the do-not-call list, a recording, an outbound call), a job by id, the call logs of an
outcome (`reconcile_opt_outs`).

Every other read (the summary, every session, the call figures, transcripts, jobs by kind) is
answered right, but slowly: by `full()`, a full `Index` of the journal built for that one read
(`JournalStore._read`). An agent makes none of them; the API process keeps the full index.

It accepts exactly the entries the full index accepts (`entry_facts` in `index.py`, and the
same checks of a session started twice or ended twice, or a call log without a session), so
both agree on which lines are corrupt. It keeps no snapshot: see `JournalStore`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from backend.store.index import (
    Index,
    entry_facts,
    fast_epoch,
    job_view,
    merge_job,
    select_calls,
    select_info,
    session_view,
)
from backend.store.lines import CallLine, InfoLine, Line, SessionLine, TurnLine, as_line
from backend.store.records import DISCLOSURES, JOBS, Entry, SessionFacts, public


class LeanIndex:
    """Offsets by session, caller and event key, in arrays; see the module docstring."""

    def __init__(self, fetch: Callable[[int], Entry], full: Callable[[], Index]) -> None:
        self.fetch = fetch
        self.full = full  # a full Index of what this one has read: for the reads it cannot narrow
        self.last_seq = 0
        # information records by position (in seq order): where each is, and the position of
        # the previous record of the same session and of the same caller (-1: none)
        self.info_off = array("q")
        self._info_before_in_session = array("i")
        self._info_before_of_caller = array("i")
        # a slot per session id seen, in a session entry or only in records
        self._slots: dict[Any, int] = {}
        self._start_off = array("q")  # its session entry, or -1
        self._call_pos = array("i")  # its call log's position, or -1
        self._last_info = array("i")
        self._session_before = array("i")  # the slot of its caller's previous session, or -1
        # a slot per caller id seen
        self._callers: dict[Any, int] = {}
        self._caller_last_info = array("i")
        self._caller_last_session = array("i")
        # call logs by position
        self.call_off = array("q")
        self.call_seq = array("q")
        self.call_ts = array("d")
        self._outcome_codes = array("i")
        self._outcomes: list[Any] = []  # the outcome of each code
        self._outcome_code: dict[Any, int] = {}
        self.call_outcome = _Decoded(self._outcome_codes, self._outcomes)
        # events: where each is, and the previous event of the same (kind, key), or -1. A key is
        # known by its hash (a job id or session id is not kept, at a million calls that is tens
        # of MB): keys of one hash share a chain, and readers keep the events of their own key
        self._event_off = array("q")
        self._event_before = array("i")
        self._last_event: dict[int, int] = {}  # hash((kind, key)) -> newest event

    # ---- building -------------------------------------------------------------------------
    def add(self, entry: Entry, off: int) -> None:
        """Index one entry found at `off` (raises as `Index.add` does, for the same entries)."""
        self.add_line(as_line(entry), off)

    def add_line(self, line: Line, off: int) -> None:
        kind, seq, facts = entry_facts(line, self.last_seq)
        if kind is InfoLine:  # the most frequent line, and what makes an open take seconds: inline
            n = self._slots.get(facts[0])
            if n is None:
                n = self._slot(facts[0])
            c = self._callers.get(facts[1])
            if c is None:
                c = self._caller(facts[1])
            pos = len(self.info_off)
            self.info_off.append(off)
            self._info_before_in_session.append(self._last_info[n])
            self._last_info[n] = pos
            self._info_before_of_caller.append(self._caller_last_info[c])
            self._caller_last_info[c] = pos
        elif kind is SessionLine:
            self._add_session(off, facts[0], facts[1])
        elif kind is CallLine:
            self._add_call(off, seq, facts[0], facts[2], facts[3])
        elif kind is not TurnLine:  # transcripts are read by the API and the worker only
            self._add_event(off, facts[0], facts[1])
        self.last_seq = seq

    def _slot(self, sid) -> int:
        n = self._slots[sid] = len(self._start_off)
        self._start_off.append(-1)
        self._call_pos.append(-1)
        self._last_info.append(-1)
        self._session_before.append(-1)
        return n

    def _caller(self, caller) -> int:
        c = self._callers[caller] = len(self._caller_last_info)
        self._caller_last_info.append(-1)
        self._caller_last_session.append(-1)
        return c

    def _add_session(self, off: int, sid, caller) -> None:
        n = self._slots.get(sid)
        if n is None:
            n = self._slot(sid)
        elif self._start_off[n] >= 0:
            raise ValueError("session started twice")
        c = self._callers.get(caller)
        if c is None:
            c = self._caller(caller)
        self._start_off[n] = off
        self._session_before[n] = self._caller_last_session[c]
        self._caller_last_session[c] = n

    def _add_call(self, off: int, seq: int, sid, outcome, ended_ts: float) -> None:
        n = self._slots.get(sid)
        if n is None or self._start_off[n] < 0:
            raise KeyError("a call log for no session")
        if self._call_pos[n] >= 0:
            raise ValueError("session ended twice")
        code = self._outcome_code.get(outcome)
        if code is None:
            code = self._outcome_code[outcome] = len(self._outcomes)
            self._outcomes.append(outcome)
        self._call_pos[n] = len(self.call_off)
        self.call_off.append(off)
        self.call_seq.append(seq)
        self.call_ts.append(ended_ts)
        self._outcome_codes.append(code)

    def _add_event(self, off: int, kind, key) -> None:
        h = hash((kind, key))
        self._event_before.append(self._last_event.get(h, -1))
        self._last_event[h] = len(self._event_off)
        self._event_off.append(off)

    # ---- walking the chains -----------------------------------------------------------------
    def _session_positions(self, n: int | None) -> list[int]:
        """The positions of a session slot's records, ascending."""
        return _walk(-1 if n is None else self._last_info[n], self._info_before_in_session)

    def _caller_positions(self, c: int | None) -> list[int]:
        return _walk(-1 if c is None else self._caller_last_info[c], self._info_before_of_caller)

    def _events(self, kind, key) -> list[tuple[int, Entry]]:
        """The events of (kind, key) with their offsets, in write order."""
        chain = _walk(self._last_event.get(hash((kind, key)), -1), self._event_before)
        fetched = ((self._event_off[i], self.fetch(self._event_off[i])) for i in chain)
        return [(off, e) for off, e in fetched if e["kind"] == kind and e["key"] == key]

    def _started(self, sid) -> int | None:
        """The slot of a session that has a session entry, or None."""
        n = self._slots.get(sid)
        return n if n is not None and self._start_off[n] >= 0 else None

    # ---- reading --------------------------------------------------------------------------
    def info(self, pos: int) -> Entry:
        return public(self.fetch(self.info_off[pos]))

    def call(self, pos: int) -> Entry:
        return public(self.fetch(self.call_off[pos]))

    def _call_of(self, n: int) -> Entry | None:
        return self.call(self._call_pos[n]) if self._call_pos[n] >= 0 else None

    def _disclosures(self, sid) -> Entry | None:
        events = self._events(DISCLOSURES, sid)
        return events[-1][1]["data"] if events else None

    def session(self, sid: str) -> Entry | None:
        n = self._started(sid)
        if n is None:
            return None
        start = self.fetch(self._start_off[n])
        count = len(self._session_positions(n))
        return session_view(start, self._call_of(n), count, self._disclosures(sid))

    def session_facts(self, sid: str) -> SessionFacts | None:
        n = self._started(sid)
        if n is None:
            return None
        start = self.fetch(self._start_off[n])
        return SessionFacts(
            caller_id=start["caller_id"],
            started_ts=fast_epoch(start["started_at"]),
            call=self._call_of(n),
            information_count=len(self._session_positions(n)),
            disclosures=self._disclosures(sid),
        )

    def active_session_id(self, caller_id: str) -> str | None:
        c = self._callers.get(caller_id)
        n = -1 if c is None else self._caller_last_session[c]
        while n >= 0:
            if self._call_pos[n] < 0:
                return self.fetch(self._start_off[n])["session_id"]
            n = self._session_before[n]
        return None

    def recent_duplicate(self, session_id: str, category: str, information: str, now: float, window: float):
        """The first record of this session with the same category and text within `window` s."""
        found = None
        for pos in reversed(self._session_positions(self._slots.get(session_id))):
            record = self.info(pos)
            if fast_epoch(record["timestamp"]) < now - window:
                break
            if record["category"] == category and record["information"] == information:
                found = record
        return found

    def session_records(self, sid: str) -> list[Entry]:
        return [self.info(p) for p in self._session_positions(self._slots.get(sid))]

    def session_call(self, sid: str) -> Entry | None:
        n = self._started(sid)
        return None if n is None else self._call_of(n)

    def query_info(self, *, restrict: list[int] | None = None, **query) -> tuple[list[Entry], bool]:
        """`Index.query_info`, narrowed by session, caller or `restrict`; without any of them,
        by the full index (see the module docstring)."""
        sid, caller = query.get("session_id"), query.get("caller_id")
        lists = [] if restrict is None else [restrict]
        if sid is not None:
            lists.append(self._session_positions(self._slots.get(sid)))
        if caller is not None:
            lists.append(self._caller_positions(self._callers.get(caller)))
        if not lists:
            return self.full().query_info(restrict=restrict, **query)
        return select_info(min(lists, key=len), _SeqOf(self), self.info, query)

    def query_calls(self, *, caller_id: str | None = None, **query) -> tuple[list[Entry], bool]:
        if caller_id:
            return self.full().query_calls(caller_id=caller_id, **query)
        return select_calls(self, range(len(self.call_off)), **query)

    def job(self, job_id: str) -> dict[str, Any] | None:
        events = self._events(JOBS, job_id)
        if not events:
            return None
        job: dict[str, Any] = {}
        for off, event in events:
            merge_job(job, event["data"], off)
        return job_view(job, self.fetch)

    def event_entries(self, kind: str, key: str | None) -> list[Entry]:
        if key is None:
            return self.full().event_entries(kind, None)
        return [public(event) for _off, event in self._events(kind, key)]


def _walk(last: int, before: array) -> list[int]:
    """Follow a chain back from `last`; the items, oldest first."""
    out = []
    while last >= 0:
        out.append(last)
        last = before[last]
    out.reverse()
    return out


class _SeqOf:
    """The seq of each record by position, read from the journal (for bisecting a few)."""

    __slots__ = ("index",)

    def __init__(self, index: LeanIndex) -> None:
        self.index = index

    def __getitem__(self, pos: int) -> int:
        return self.index.fetch(self.index.info_off[pos])["seq"]


class _Decoded:
    """The outcome of each call log by position, kept as small codes."""

    __slots__ = ("codes", "names")

    def __init__(self, codes: array, names: list[Any]) -> None:
        self.codes, self.names = codes, names

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, pos: int) -> Any:
        return self.names[self.codes[pos]]
