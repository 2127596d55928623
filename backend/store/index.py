"""In-memory indexes over the store's entries.

Entries are kept where they live (a journal file, or a list in memory) and only their position
is indexed here, in compact `array`s, so a million records fit in a few hundred MB. A record is
fetched by position when a query returns it. Every store implementation shares this code.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from backend.store.lines import CallLine, InfoLine, Line, SessionLine, TurnLine, as_line
from backend.store.records import CATEGORIES, DISCLOSURES, JOBS, Entry, SessionFacts, epoch, public

SNAPSHOT_VERSION = 5  # 2: transcript turns; 3: call durations and costs; 4: jobs; 5: job payloads by offset
ENDED_JOB_STATES = ("done", "skipped", "gave_up")
BIG_JOB_FIELDS = ("result", "payload")  # kept in the journal, fetched by offset
_MINUTES: dict[str, float] = {}
_CATEGORIES = frozenset(CATEGORIES)


def fast_epoch(text: str) -> float:
    """`epoch()` for the store's own `YYYY-MM-DDTHH:MM:SS.mmmZ` stamps, cached by the minute."""
    if len(text) == 24 and text[23] == "Z" and text[16] == ":":
        base = _MINUTES.get(text[:16])
        if base is None:
            if len(_MINUTES) > 100_000:
                _MINUTES.clear()
            base = _MINUTES[text[:16]] = epoch(text[:16] + ":00Z")
        return base + float(text[17:23])
    return epoch(text)


def entry_facts(line: Line, last_seq: int) -> tuple[type[Line], int, tuple]:
    """What the indexes read of one entry, checked: `(its Line class, seq, facts)`. Raises
    ValueError, KeyError, TypeError or AttributeError for an entry the store would not write.
    `Index` and the agent's `LeanIndex` both index exactly the entries this accepts (and what
    each adds to it: a session started twice, a call log for no session or a second one), so
    they agree on which lines are corrupt.

    facts: info (session_id, caller_id, category, timestamp as epoch, hash of category and
    text); session (session_id, caller_id, started_at as epoch); call (session_id, caller_id,
    outcome, ended_at as epoch, duration, total cost or -1); turn (session_id,); event (kind,
    key, and its data for a job, whether a disclosure is missing for disclosure evidence)."""
    kind = type(line)
    seq = line.seq
    if not isinstance(seq, int) or seq <= last_seq:
        raise ValueError(f"seq {seq!r} does not follow {last_seq}")
    if kind is InfoLine:
        sid, caller, category = line.session_id, line.caller_id, line.category
        if category not in _CATEGORIES:
            raise KeyError(category)
        hash((sid, caller))
        return kind, seq, (sid, caller, category, fast_epoch(line.timestamp), hash((category, line.information)))
    if kind is SessionLine:
        hash((line.session_id, line.caller_id))
        return kind, seq, (line.session_id, line.caller_id, fast_epoch(line.started_at))
    if kind is CallLine:
        hash((line.session_id, line.caller_id, line.outcome))
        cost = float(line.cost["total_usd"]) if line.cost else -1.0
        ended = fast_epoch(line.ended_at)
        return kind, seq, (line.session_id, line.caller_id, line.outcome, ended, float(line.duration_seconds), cost)
    if kind is TurnLine:
        hash(line.session_id)
        return kind, seq, (line.session_id,)
    hash((line.kind, line.key))
    data = None
    if line.kind == JOBS:
        data = line.data
        data.items()  # a job's state is an object
    elif line.kind == DISCLOSURES:
        data = bool(line.data.get("missing"))
    return kind, seq, (line.kind, line.key, data)


def merge_job(job: dict[str, Any], data: dict[str, Any], off: int) -> bool:
    """Apply one job event (`data`, at `off`) to the job's latest state: its small fields, and
    where its result or payload is (they stay in the journal). True while the job is open."""
    job.update({k: v for k, v in data.items() if k not in BIG_JOB_FIELDS})
    for big in BIG_JOB_FIELDS:
        if big in data:
            job[f"{big}_off"] = off
    return job.get("state") not in ENDED_JOB_STATES


def job_view(job: dict[str, Any], fetch: Callable[[int], Entry]) -> dict[str, Any]:
    """A job's latest state as `Store.job` returns it, its result and payload fetched."""
    out = {k: v for k, v in job.items() if k not in ("result_off", "payload_off")}
    for big in BIG_JOB_FIELDS:
        if f"{big}_off" in job:
            out[big] = fetch(job[f"{big}_off"])["data"][big]
    return out


def session_view(start: Entry, call: Entry | None, information_count: int, disclosures: Entry | None) -> Entry:
    """A session as `get_session` returns it, from its session entry and its call log."""
    return {
        "session_id": start["session_id"],
        "caller_id": start["caller_id"],
        "direction": start["direction"],
        "called_number": start.get("called_number"),
        "started_at": start["started_at"],
        "ended_at": call["ended_at"] if call else None,
        "status": "completed" if call else "active",
        "information_count": information_count,
        "end_reason": call["reason"] if call else None,
        "outcome": call["outcome"] if call else None,
        "duration_seconds": call["duration_seconds"] if call else None,
        "disclosures": disclosures,
    }


class SessionState:
    """What the indexes keep of a session; the rest is read from its entry."""

    __slots__ = ("call_pos", "caller_id", "seq", "session_id", "start_off", "started_ts")

    def __init__(self, session_id: str, caller_id: str, start_off: int, started_ts: float, seq: int) -> None:
        self.seq = seq
        self.session_id = session_id
        self.caller_id = caller_id
        self.start_off = start_off
        self.started_ts = started_ts
        self.call_pos = -1


class Index:
    """Indexes by session, caller, category, outcome and event key, built entry by entry."""

    def __init__(self, fetch: Callable[[int], Entry]) -> None:
        self.fetch = fetch
        self.last_seq = 0
        # information records, by position (positions follow seq order)
        self.info_off = array("q")
        self.info_seq = array("q")
        self.info_ts = array("d")
        self.info_hash = array("q")  # hash of (category, information), for the duplicate guard
        self.by_session: dict[str, array] = {}
        self.by_caller: dict[str, array] = {}
        self.by_category: dict[str, array] = {c: array("l") for c in CATEGORIES}
        # sessions, in start order
        self.sessions: dict[str, SessionState] = {}
        self.session_order: list[SessionState] = []
        self.sessions_by_caller: dict[str, list[SessionState]] = {}
        self.active: set[str] = set()
        # call logs, by position
        self.call_off = array("q")
        self.call_seq = array("q")
        self.call_ts = array("d")
        self.call_duration = array("d")
        self.call_cost = array("d")  # total_usd, or -1 for a call without a cost
        self.call_session: list[str] = []
        self.cost_total = 0.0  # the sum of call_cost over the calls that have one
        self.cost_count = 0
        self.call_outcome: list[str] = []
        self.by_outcome: Counter[str] = Counter()
        self.calls_by_caller: dict[str, array] = {}
        # events: kind -> key -> offsets
        self.events: dict[str, dict[str, list[int]]] = {}
        self.event_count = 0
        # transcript turns: session -> offsets, in write order
        self.turns: dict[str, array] = {}
        self.turn_count = 0
        # disclosure evidence (events of kind DISCLOSURES): the latest per session, and the
        # sessions whose agent did not give a required disclosure in time
        self.disclosure_off: dict[str, int] = {}
        self.missing_disclosure: set[str] = set()
        # durable jobs (events of kind JOBS): each job's latest state, its result by offset
        self.jobs: dict[str, dict] = {}
        self.open_jobs: set[str] = set()  # not done, skipped or given up

    # ---- building -------------------------------------------------------------------------
    def add(self, entry: Entry, off: int) -> None:
        """Index one entry found at `off` (raises KeyError/TypeError/ValueError when malformed);
        nothing is indexed of an entry that raises."""
        self.add_line(as_line(entry), off)

    def add_line(self, line: Line, off: int) -> None:
        """`add` for an entry as `lines.py` reads it from the journal."""
        kind, seq, facts = entry_facts(line, self.last_seq)
        if kind is InfoLine:
            self._add_info(off, seq, *facts)
        elif kind is SessionLine:
            self._add_session(off, seq, *facts)
        elif kind is CallLine:
            self._add_call(off, seq, *facts)
        elif kind is TurnLine:
            _push(self.turns, facts[0], off)
            self.turn_count += 1
        else:
            self._add_event(off, *facts)
        self.last_seq = seq

    def _add_info(self, off: int, seq: int, sid, caller, category: str, ts: float, digest: int) -> None:
        pos = len(self.info_off)
        self.info_off.append(off)
        self.info_seq.append(seq)
        self.info_ts.append(ts)
        self.info_hash.append(digest)
        self.by_category[category].append(pos)
        _push(self.by_session, sid, pos)
        _push(self.by_caller, caller, pos)

    def _add_session(self, off: int, seq: int, sid, caller, started_ts: float) -> None:
        if sid in self.sessions:
            raise ValueError("session started twice")
        state = SessionState(sid, caller, off, started_ts, seq)
        self.sessions[sid] = state
        self.session_order.append(state)
        self.sessions_by_caller.setdefault(caller, []).append(state)
        self.active.add(sid)

    def _add_event(self, off: int, kind, key, data) -> None:
        if kind == JOBS:
            open_ = merge_job(self.jobs.setdefault(key, {}), data, off)
            (self.open_jobs.add if open_ else self.open_jobs.discard)(key)
        elif kind == DISCLOSURES:
            self.disclosure_off[key] = off
            (self.missing_disclosure.add if data else self.missing_disclosure.discard)(key)
        keyed = self.events.setdefault(kind, {})
        keyed.setdefault(key, []).append(off)
        self.event_count += 1

    def _add_call(self, off: int, seq: int, sid, caller, outcome, ended_ts: float, duration: float, cost: float):
        state = self.sessions[sid]
        if state.call_pos >= 0:
            raise ValueError("session ended twice")
        state.call_pos = len(self.call_off)
        self.call_off.append(off)
        self.call_seq.append(seq)
        self.call_ts.append(ended_ts)
        self.call_duration.append(duration)
        self.call_cost.append(cost)
        if cost >= 0:
            self.cost_total += cost
            self.cost_count += 1
        self.call_session.append(sid)
        self.call_outcome.append(outcome)
        self.by_outcome[outcome] += 1
        _push(self.calls_by_caller, caller, state.call_pos)
        self.active.discard(sid)

    # ---- snapshots (see JournalStore) ----------------------------------------------------
    def dump_state(self) -> dict:
        """The indexes as plain values (for `marshal`)."""
        arrays = lambda table: {k: v.tobytes() for k, v in table.items()}  # noqa: E731
        return {
            "version": SNAPSHOT_VERSION,
            "last_seq": self.last_seq,
            "info": (self.info_off.tobytes(), self.info_seq.tobytes(), self.info_ts.tobytes()),
            "by_session": arrays(self.by_session),
            "by_caller": arrays(self.by_caller),
            "by_category": arrays(self.by_category),
            "sessions": [
                (s.session_id, s.caller_id, s.start_off, s.started_ts, s.seq, s.call_pos) for s in self.session_order
            ],
            "calls": (self.call_off.tobytes(), self.call_seq.tobytes(), self.call_ts.tobytes(), self.call_outcome),
            "call_figures": (self.call_duration.tobytes(), self.call_cost.tobytes(), self.call_session),
            "calls_by_caller": arrays(self.calls_by_caller),
            "events": self.events,
            "event_count": self.event_count,
            "turns": arrays(self.turns),
            "turn_count": self.turn_count,
            "disclosures": (self.disclosure_off, sorted(self.missing_disclosure)),
            "jobs": self.jobs,
        }

    @classmethod
    def load_state(cls, state: dict, fetch: Callable[[int], Entry]) -> Index:
        if state.get("version") != SNAPSHOT_VERSION:
            raise ValueError("snapshot version differs")
        index = cls(fetch)
        index.last_seq = state["last_seq"]
        for arr, raw in zip((index.info_off, index.info_seq, index.info_ts), state["info"], strict=True):
            arr.frombytes(raw)
        # str hashes differ between processes: the duplicate guard's hashes start empty (0) and
        # only the last minute matters, so recent ones are recomputed lazily by `recent_duplicate`.
        index.info_hash = array("q", bytes(8 * len(index.info_off)))
        for target, key in ((index.by_session, "by_session"), (index.by_caller, "by_caller")):
            target.update({k: _array("l", v) for k, v in state[key].items()})
        index.by_category.update({k: _array("l", v) for k, v in state["by_category"].items()})
        index.calls_by_caller = {k: _array("l", v) for k, v in state["calls_by_caller"].items()}
        call_off, call_seq, call_ts, outcomes = state["calls"]
        index.call_off.frombytes(call_off)
        index.call_seq.frombytes(call_seq)
        index.call_ts.frombytes(call_ts)
        index.call_outcome = list(outcomes)
        durations, costs, sessions = state["call_figures"]
        index.call_session = list(sessions)
        index.call_duration.frombytes(durations)
        index.call_cost.frombytes(costs)
        priced = [c for c in index.call_cost if c >= 0]
        index.cost_total, index.cost_count = float(sum(priced)), len(priced)
        index.by_outcome.update(outcomes)
        for sid, caller, start_off, started_ts, seq, call_pos in state["sessions"]:
            st = SessionState(sid, caller, start_off, started_ts, seq)
            st.call_pos = call_pos
            index.sessions[sid] = st
            index.session_order.append(st)
            index.sessions_by_caller.setdefault(caller, []).append(st)
            if call_pos < 0:
                index.active.add(sid)
        index.events = state["events"]
        index.event_count = state["event_count"]
        index.turns = {k: _array("l", v) for k, v in state["turns"].items()}
        index.turn_count = state["turn_count"]
        disclosure_off, missing = state["disclosures"]
        index.disclosure_off, index.missing_disclosure = dict(disclosure_off), set(missing)
        index.jobs = state["jobs"]
        index.open_jobs = {k for k, j in index.jobs.items() if j.get("state") not in ENDED_JOB_STATES}
        return index

    # ---- reading --------------------------------------------------------------------------
    def info(self, pos: int) -> Entry:
        return public(self.fetch(self.info_off[pos]))

    def call(self, pos: int) -> Entry:
        return public(self.fetch(self.call_off[pos]))

    def session(self, sid: str) -> Entry | None:
        state = self.sessions.get(sid)
        return None if state is None else self.session_view(state)

    def session_view(self, state: SessionState) -> Entry:
        call = self.call(state.call_pos) if state.call_pos >= 0 else None
        count = len(self.by_session.get(state.session_id, ()))
        return session_view(self.fetch(state.start_off), call, count, self.disclosure_evidence(state.session_id))

    def disclosure_evidence(self, sid: str) -> Entry | None:
        """The session's disclosure evidence (`backend/calls/disclosures.py`), or None before it."""
        off = self.disclosure_off.get(sid)
        return None if off is None else self.fetch(off)["data"]

    def active_session_for(self, caller_id: str) -> SessionState | None:
        for state in reversed(self.sessions_by_caller.get(caller_id, ())):
            if state.call_pos < 0:
                return state
        return None

    # ---- the write rules' view (`WriteView` in records.py) -------------------------------
    def active_session_id(self, caller_id: str) -> str | None:
        state = self.active_session_for(caller_id)
        return state.session_id if state else None

    def session_facts(self, sid: str) -> SessionFacts | None:
        state = self.sessions.get(sid)
        if state is None:
            return None
        return SessionFacts(
            caller_id=state.caller_id,
            started_ts=state.started_ts,
            call=self.call(state.call_pos) if state.call_pos >= 0 else None,
            information_count=len(self.by_session.get(sid, ())),
            disclosures=self.disclosure_evidence(sid),
        )

    def info_candidates(
        self, categories: Iterable[str] | None, caller_id: str | None, session_id: str | None
    ) -> Iterable[int]:
        """Positions (ascending) of records that may match; the smallest index wins."""
        lists: list[Iterable[int]] = []
        if session_id is not None:
            lists.append(self.by_session.get(session_id, ()))
        if caller_id is not None:
            lists.append(self.by_caller.get(caller_id, ()))
        cats = list(dict.fromkeys(categories or ()))
        if cats:
            if len(cats) == 1:
                lists.append(self.by_category[cats[0]])
            else:
                lists.append(sorted(p for c in cats for p in self.by_category[c]))
        if not lists:
            return range(len(self.info_off))
        return min(lists, key=len)

    def query_info(self, *, restrict: list[int] | None = None, **query) -> tuple[list[Entry], bool]:
        """`Store.query_information`: matching records, newest first (or in write order with
        `after_seq`), and whether more match beyond `limit`. `restrict`: ascending positions
        that alone may match."""
        candidates = self.info_candidates(query.get("categories"), query.get("caller_id"), query.get("session_id"))
        if restrict is not None and len(restrict) < len(candidates):
            candidates = restrict
        return select_info(candidates, self.info_seq, self.info, query, ts=self.info_ts)

    def session_records(self, sid: str) -> list[Entry]:
        """A session's records, oldest first."""
        return [self.info(p) for p in self.by_session.get(sid, ())]

    def session_call(self, sid: str) -> Entry | None:
        state = self.sessions.get(sid)
        return self.call(state.call_pos) if state and state.call_pos >= 0 else None

    def query_calls(self, *, caller_id: str | None = None, **query) -> tuple[list[Entry], bool]:
        """`Store.query_calls`: call logs newest first, and whether more match beyond `limit`."""
        positions = self.calls_by_caller.get(caller_id, ()) if caller_id else range(len(self.call_off))
        return select_calls(self, positions, **query)

    def job(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        return None if job is None else job_view(job, self.fetch)

    def event_entries(self, kind: str, key: str | None) -> list[Entry]:
        """Events of `kind` (for one `key`, or all), in write order."""
        keyed = self.events.get(kind, {})
        offsets = keyed.get(key, []) if key is not None else sorted(o for offs in keyed.values() for o in offs)
        return [public(self.fetch(o)) for o in offsets]

    def recent_duplicate(self, session_id: str, category: str, information: str, now: float, window: float):
        """The first record of this session with the same category and text within `window` s."""
        found = None
        wanted = hash((category, information))
        for pos in reversed(self.by_session.get(session_id, ())):
            if self.info_ts[pos] < now - window:
                break
            h = self.info_hash[pos]
            if h == 0:
                record = self.info(pos)
                h = self.info_hash[pos] = hash((record["category"], record["information"]))
            if h != wanted:
                continue
            record = self.info(pos)
            if record["category"] == category and record["information"] == information:
                found = record
        return found


def select_info(candidates, seqs, record: Callable[[int], Entry], query: dict, ts=None) -> tuple[list[Entry], bool]:
    """`query_info` over `candidates` (ascending positions) of any index: `seqs[pos]` is a
    record's seq, `record(pos)` the record; `ts[pos]`, its epoch when the index keeps it (else
    it is read from the record). `query`: the filters `Store.query_information` was given."""
    categories, caller_id, session_id = query.get("categories"), query.get("caller_id"), query.get("session_id")
    since, until, text, limit = query.get("since"), query.get("until"), query.get("text"), query.get("limit", 100)
    before_seq, after_seq = query.get("before_seq"), query.get("after_seq")
    cats = set(categories) if categories else None
    if after_seq is not None:
        start = _first_after(candidates, seqs, after_seq)
        order: Iterator[int] = (candidates[i] for i in range(start, len(candidates)))
    else:
        end = len(candidates) if before_seq is None else _first_at_or_after(candidates, seqs, before_seq)
        order = (candidates[i] for i in range(end - 1, -1, -1))
    needle = text.casefold() if text else None
    out: list[Entry] = []
    for pos in order:
        if ts is not None and not _within(ts[pos], since, until):
            continue
        found = record(pos)
        if ts is None and not _within(fast_epoch(found["timestamp"]), since, until):
            continue
        if cats is not None and found["category"] not in cats:
            continue
        if caller_id is not None and found["caller_id"] != caller_id:
            continue
        if session_id is not None and found["session_id"] != session_id:
            continue
        if needle is not None and needle not in searchable(found):
            continue
        if len(out) == limit:
            return out, True
        out.append(found)
    return out, False


def select_calls(
    index, positions, *, outcome=None, since=None, until=None, limit=100, before_seq=None
) -> tuple[list[Entry], bool]:
    """`query_calls` over `positions` (ascending) of any index with `call_seq`, `call_ts`,
    `call_outcome` (by position) and `call(pos)`."""
    if before_seq is not None:
        positions = positions[: bisect_left(positions, before_seq, key=index.call_seq.__getitem__)]
    out: list[Entry] = []
    for pos in reversed(positions):
        if outcome is not None and index.call_outcome[pos] != outcome:
            continue
        if not _within(index.call_ts[pos], since, until):
            continue
        if len(out) == limit:
            return out, True
        out.append(index.call(pos))
    return out, False


def _within(ts: float, since: float | None, until: float | None) -> bool:
    return (since is None or ts >= since) and (until is None or ts <= until)


def _array(code: str, raw: bytes) -> array:
    out = array(code)
    out.frombytes(raw)
    return out


def _push(table: dict[str, array], key: str, pos: int) -> None:
    bucket = table.get(key)
    if bucket is None:
        bucket = table[key] = array("l")
    bucket.append(pos)


def searchable(record: Entry) -> str:
    parts = [record["information"]]
    fields = record.get("fields")
    if fields:
        parts.extend(str(v) for v in fields.values())
    return " ".join(parts).casefold()


class _SeqView:
    """`candidates` mapped to their seqs, for bisect."""

    __slots__ = ("candidates", "seqs")

    def __init__(self, candidates, seqs) -> None:
        self.candidates = candidates
        self.seqs = seqs

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, i: int) -> int:
        return self.seqs[self.candidates[i]]


def _first_after(candidates, seqs, seq: int) -> int:
    return bisect_right(_SeqView(candidates, seqs), seq)


def _first_at_or_after(candidates, seqs, seq: int) -> int:
    return bisect_left(_SeqView(candidates, seqs), seq)
