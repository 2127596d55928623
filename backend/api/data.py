"""The data of every page, built once: the API renders it as JSON (or NDJSON / CSV), the
dashboard as HTML. Each function takes the backend functions and parsed parameters and returns
a dict."""

from __future__ import annotations

from typing import Any

from backend.api.errors import ApiError
from backend.api.params import CallParams, InformationParams, SessionParams, encode_cursor
from backend.backend_agent import BackendAgent


def information_page(backend: BackendAgent, p: InformationParams) -> dict[str, Any]:
    """`{"information": [records], "count": n, "next_cursor": str|None}`, newest first; with
    `after_seq`, in write order plus `"next_after_seq"` (the `after_seq` of the next pull)."""
    records, more = backend.query_information(
        categories=p.categories,
        caller_id=p.caller_id,
        session_id=p.session_id,
        since=p.since,
        until=p.until,
        text=p.q,
        limit=p.limit,
        before_seq=p.before_seq,
        after_seq=p.after_seq,
    )
    page: dict[str, Any] = {"information": records, "count": len(records), "next_cursor": None}
    if p.after_seq is not None:
        page["next_after_seq"] = records[-1]["seq"] if records else p.after_seq
        if more:
            page["next_cursor"] = encode_cursor("information", after=records[-1]["seq"])
    elif more:
        page["next_cursor"] = encode_cursor("information", before=records[-1]["seq"])
    return page


def sessions_page(backend: BackendAgent, p: SessionParams) -> dict[str, Any]:
    """`{"sessions": [sessions newest first], "next_cursor": str|None}`."""
    sessions, next_before = backend.query_sessions(
        status=p.status,
        caller_id=p.caller_id,
        outcome=p.outcome,
        since=p.since,
        until=p.until,
        limit=p.limit,
        before_seq=p.before_seq,
    )
    cursor = encode_cursor("sessions", before=next_before) if next_before is not None else None
    return {"sessions": sessions, "next_cursor": cursor}


def session_detail(backend: BackendAgent, session_id: str) -> dict[str, Any]:
    """`{"session", "information": [oldest first], "call": call|None}`; ApiError 404 if unknown."""
    found = backend.session(session_id)
    if found is None:
        raise ApiError(404, "session_not_found", "There is no session with that id.")
    session, information, call = found
    return {"session": session, "information": information, "call": call}


def calls_page(backend: BackendAgent, p: CallParams) -> dict[str, Any]:
    """`{"calls": [call logs newest first], "next_cursor": str|None}`."""
    calls, more = backend.query_calls(
        caller_id=p.caller_id,
        outcome=p.outcome,
        since=p.since,
        until=p.until,
        limit=p.limit,
        before_seq=p.before_seq,
    )
    cursor = encode_cursor("calls", before=calls[-1]["seq"]) if more else None
    return {"calls": calls, "next_cursor": cursor}


def summary_page(backend: BackendAgent, recent: int = 10) -> dict[str, Any]:
    """Totals, counts by category and outcome, the `recent` newest records and call logs, and
    `last_seq` (the newest seq written, for following the store with `after_seq`)."""
    return backend.summary(recent=recent)
