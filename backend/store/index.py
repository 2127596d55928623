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

from backend.store.records import CATEGORIES, DISCLOSURES, JOBS, Entry, SessionFacts, epoch, public

SNAPSHOT_VERSION = 5  # 2: transcript turns; 3: call durations and costs; 4: jobs; 5: job payloads by offset
_MINUTES: dict[str, float] = {}


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
        """Index one entry found at `off` (raises KeyError/TypeError/ValueError when malformed)."""
        kind = entry["type"]
        seq = entry["seq"]
        if not isinstance(seq, int) or seq <= self.last_seq:
            raise ValueError(f"seq {seq!r} does not follow {self.last_seq}")
        if kind == "info":
            self._add_info(entry, off, seq)
        elif kind == "session":
            self._add_session(entry, off, seq)
        elif kind == "call":
            self._add_call(entry, off, seq)
        elif kind == "turn":
            _push(self.turns, entry["session_id"], off)
            self.turn_count += 1
        elif kind == "event":
            if entry["kind"] == JOBS:
                self._add_job(entry["key"], entry["data"], off)
            elif entry["kind"] == DISCLOSURES:
                self.disclosure_off[entry["key"]] = off
                (self.missing_disclosure.add if entry["data"].get("missing") else self.missing_disclosure.discard)(
                    entry["key"]
                )
            keyed = self.events.setdefault(entry["kind"], {})
            keyed.setdefault(entry["key"], []).append(off)
            self.event_count += 1
        else:
            raise ValueError(f"unknown entry type {kind!r}")
        self.last_seq = seq

    def _add_info(self, entry: Entry, off: int, seq: int) -> None:
        sid, caller, category = entry["session_id"], entry["caller_id"], entry["category"]
        ts = fast_epoch(entry["timestamp"])
        bucket = self.by_category[category]
        pos = len(self.info_off)
        self.info_off.append(off)
        self.info_seq.append(seq)
        self.info_ts.append(ts)
        self.info_hash.append(hash((category, entry["information"])))
        bucket.append(pos)
        _push(self.by_session, sid, pos)
        _push(self.by_caller, caller, pos)

    def _add_session(self, entry: Entry, off: int, seq: int) -> None:
        sid = entry["session_id"]
        if sid in self.sessions:
            raise ValueError("session started twice")
        state = SessionState(sid, entry["caller_id"], off, fast_epoch(entry["started_at"]), seq)
        self.sessions[sid] = state
        self.session_order.append(state)
        self.sessions_by_caller.setdefault(state.caller_id, []).append(state)
        self.active.add(sid)

    def _add_job(self, job_id: str, data: dict, off: int) -> None:
        """Each job's small fields; its payload and result (a webhook's call log and session, a
        summary) stay in the journal, fetched by offset: every process keeps this index."""
        job = self.jobs.setdefault(job_id, {})
        job.update({k: v for k, v in data.items() if k not in ("result", "payload")})
        for big in ("result", "payload"):
            if big in data:
                job[f"{big}_off"] = off
        (self.open_jobs.discard if job.get("state") in ("done", "skipped", "gave_up") else self.open_jobs.add)(job_id)

    def _add_call(self, entry: Entry, off: int, seq: int) -> None:
        state = self.sessions[entry["session_id"]]
        if state.call_pos >= 0:
            raise ValueError("session ended twice")
        outcome = entry["outcome"]
        state.call_pos = len(self.call_off)
        self.call_off.append(off)
        self.call_seq.append(seq)
        self.call_ts.append(fast_epoch(entry["ended_at"]))
        self.call_duration.append(float(entry["duration_seconds"]))
        cost = entry.get("cost")
        self.call_cost.append(float(cost["total_usd"]) if cost else -1.0)
        if cost:
            self.cost_total += float(cost["total_usd"])
            self.cost_count += 1
        self.call_session.append(state.session_id)
        self.call_outcome.append(outcome)
        self.by_outcome[outcome] += 1
        _push(self.calls_by_caller, entry["caller_id"], state.call_pos)
        self.active.discard(state.session_id)

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
        index.open_jobs = {k for k, j in index.jobs.items() if j.get("state") not in ("done", "skipped", "gave_up")}
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
        start = self.fetch(state.start_off)
        call = self.call(state.call_pos) if state.call_pos >= 0 else None
        return {
            "session_id": state.session_id,
            "caller_id": state.caller_id,
            "direction": start["direction"],
            "called_number": start.get("called_number"),
            "started_at": start["started_at"],
            "ended_at": call["ended_at"] if call else None,
            "status": "completed" if call else "active",
            "information_count": len(self.by_session.get(state.session_id, ())),
            "end_reason": call["reason"] if call else None,
            "outcome": call["outcome"] if call else None,
            "duration_seconds": call["duration_seconds"] if call else None,
            "disclosures": self.disclosure_evidence(state.session_id),
        }

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

    def query_info(
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
        restrict: list[int] | None = None,
    ) -> tuple[list[Entry], bool]:
        """Matching records, newest first (or in write order with `after_seq`), and whether
        more match beyond `limit`. `restrict`: ascending positions that alone may match."""
        cats = set(categories) if categories else None
        candidates = self.info_candidates(categories, caller_id, session_id)
        if restrict is not None and len(restrict) < len(candidates):
            candidates = restrict
        seqs = self.info_seq
        if after_seq is not None:
            start = _first_after(candidates, seqs, after_seq)
            order: Iterator[int] = (candidates[i] for i in range(start, len(candidates)))
        else:
            end = len(candidates) if before_seq is None else _first_at_or_after(candidates, seqs, before_seq)
            order = (candidates[i] for i in range(end - 1, -1, -1))
        needle = text.casefold() if text else None
        out: list[Entry] = []
        for pos in order:
            ts = self.info_ts[pos]
            if (since is not None and ts < since) or (until is not None and ts > until):
                continue
            record = self.info(pos)
            if cats is not None and record["category"] not in cats:
                continue
            if caller_id is not None and record["caller_id"] != caller_id:
                continue
            if session_id is not None and record["session_id"] != session_id:
                continue
            if needle is not None and needle not in searchable(record):
                continue
            if len(out) == limit:
                return out, True
            out.append(record)
        return out, False

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
