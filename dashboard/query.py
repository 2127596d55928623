"""The filters of a dashboard view, read from the URL query so that a view can be shared.

Caller number and date range narrow both the information feed and the call log; free text and
category narrow the feed (records have them, call logs do not); outcome narrows the call log;
"missing disclosure" narrows both lists of calls (in progress and ended) to the flagged ones,
whose agent did not give a required disclosure in its first two turns. With it, the call log
is read as the API's `/api/sessions?missing_disclosure=true` (its cursor is a sessions cursor).
Dates are whole days in the viewer's time zone (the `tz` cookie set by the page's script, else
`BUSINESS_TIMEZONE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.api.data import (
    CATEGORIES,
    OUTCOMES,
    CallParams,
    InformationParams,
    SessionParams,
    caller_filter_number,
    decode_cursor,
)
from backend.api.errors import ApiError

MAX_TEXT = 200


@dataclass(frozen=True)
class ViewFilters:
    caller: str = ""
    q: str = ""
    category: str = ""
    outcome: str = ""
    date_from: str = ""
    date_to: str = ""
    missing_disclosure: bool = False
    caller_id: str | None = None
    since: float | None = None
    until: float | None = None
    cursor: str | None = None
    calls_cursor: str | None = None
    errors: tuple[str, ...] = field(default=())

    @property
    def active(self) -> bool:
        return any(
            (self.caller, self.q, self.category, self.outcome, self.date_from, self.date_to, self.missing_disclosure)
        )

    def information_params(
        self, limit: int, *, after_seq: int | None = None, before_seq: int | None = None
    ) -> InformationParams:
        """The feed as the API's `/api/information` parameters: this view's page (its `cursor`),
        or the records after `after_seq`, or before `before_seq`."""
        before = before_seq
        if before is None and after_seq is None and self.cursor:
            before = decode_cursor("information", self.cursor)[0]
        return InformationParams(
            categories=(self.category,) if self.category else None,
            caller_id=self.caller_id,
            since=self.since,
            until=self.until,
            q=self.q or None,
            limit=limit,
            before_seq=before,
            after_seq=after_seq,
        )

    def call_params(self, limit: int) -> CallParams:
        """The call log as the API's `/api/calls` parameters."""
        before = decode_cursor("calls", self.calls_cursor)[0] if self.calls_cursor else None
        return CallParams(self.caller_id, self.outcome or None, self.since, self.until, limit, before)

    def flagged_params(self, limit: int) -> SessionParams:
        """The ended flagged calls as the API's `/api/sessions?missing_disclosure=true` parameters
        (the dates narrow them by when the call started)."""
        before = decode_cursor("sessions", self.calls_cursor)[0] if self.calls_cursor else None
        return SessionParams(
            status="completed",
            caller_id=self.caller_id,
            outcome=self.outcome or None,
            since=self.since,
            until=self.until,
            missing_disclosure=True,
            limit=limit,
            before_seq=before,
        )

    def url_args(self, **changes: Any) -> dict[str, Any]:
        """The URL query of this view (filters and cursors), with `changes` applied."""
        args = {
            "caller": self.caller,
            "q": self.q,
            "category": self.category,
            "outcome": self.outcome,
            "from": self.date_from,
            "to": self.date_to,
            "missing_disclosure": "1" if self.missing_disclosure else None,
            "cursor": self.cursor,
            "calls_cursor": self.calls_cursor,
        }
        args.update(changes)
        return {k: v for k, v in args.items() if v not in (None, "")}


def parse_filters(args, zone: ZoneInfo) -> ViewFilters:
    """Filters from a request's query; a bad value is dropped and named in `errors`."""
    errors: list[str] = []
    caller = _text(args, "caller")
    category = _text(args, "category")
    if category and category not in CATEGORIES:
        errors.append("Unknown category; showing every category.")
        category = ""
    outcome = _text(args, "outcome")
    if outcome and outcome not in OUTCOMES:
        errors.append("Unknown outcome; showing every outcome.")
        outcome = ""
    date_from, since = _day(args, "from", zone, errors, "From")
    date_to, until = _day(args, "to", zone, errors, "To")
    flagged = _text(args, "missing_disclosure")
    if flagged not in ("", "1", "true"):
        errors.append("Unknown missing-disclosure choice; showing every call.")
        flagged = ""
    if until is not None:
        until += 86400 - 0.001  # through the end of that day
    return ViewFilters(
        caller=caller,
        q=_text(args, "q"),
        category=category,
        outcome=outcome,
        date_from=date_from,
        date_to=date_to,
        missing_disclosure=bool(flagged),
        caller_id=caller_filter_number(caller) if caller else None,
        since=since,
        until=until,
        cursor=_cursor(args, "cursor", "information", errors),
        calls_cursor=_cursor(args, "calls_cursor", "sessions" if flagged else "calls", errors),
        errors=tuple(errors),
    )


def zone_named(name: str | None, fallback: str) -> ZoneInfo:
    try:
        if name and len(name) <= 64:
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    return ZoneInfo(fallback)


def start_of_today(zone: ZoneInfo) -> float:
    today = datetime.now(zone).date()
    return datetime.combine(today, time(), zone).timestamp()


def _text(args, name: str) -> str:
    return (args.get(name) or "").strip()[:MAX_TEXT]


def _day(args, name: str, zone: ZoneInfo, errors: list[str], label: str) -> tuple[str, float | None]:
    text = _text(args, name)
    if not text:
        return "", None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        errors.append(f"{label} date must look like 2026-11-22; it was ignored.")
        return "", None
    return text, datetime.combine(day, time(), zone).timestamp()


def _cursor(args, name: str, kind: str, errors: list[str]) -> str | None:
    text = _text(args, name)
    if not text:
        return None
    try:
        decode_cursor(kind, text)
    except ApiError:
        errors.append("That page link is broken; showing the newest page.")
        return None
    return text
