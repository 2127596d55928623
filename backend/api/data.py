"""The data of every page, built once: the API renders it as JSON (or NDJSON / CSV), the
dashboard as HTML. Each function takes the backend functions (`BackendAgent`, the one door to
the store) and parsed parameters and returns its data.

This module is the dashboard's one door to the data (failures come from `backend.api.errors`):
besides the pages it passes on what reading them takes, listed in `__all__` (the parameters
and cursors, the CSV format, the app's backend, the token check of sign-in, the records'
vocabularies and timestamps), so the dashboard imports neither the backend functions nor the
records module nor other API modules itself."""

from __future__ import annotations

import json
import math
import operator
from bisect import bisect_left
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from backend.api import get_backend
from backend.api.auth import check_token
from backend.api.errors import ApiError
from backend.api.formats import csv_response
from backend.api.params import (
    ANALYTICS_MAX_DAYS,
    AnalyticsParams,
    CallParams,
    InformationParams,
    SessionParams,
    WebhookParams,
    analytics_params,
    decode_cursor,
    encode_cursor,
    webhook_params,
)
from backend.backend_agent import WEBHOOK_STATES, BackendAgent
from backend.calls.numbers import caller_filter_number
from backend.calls.recording import media_type
from backend.store.records import CATEGORIES, OUTCOMES, epoch, iso, parse_iso

__all__ = [  # the pages, what only the dashboard shows, and what is passed on for it
    "ANALYTICS_MAX_DAYS",
    "CATEGORIES",
    "OUTCOMES",
    "WEBHOOK_STATES",
    "AnalyticsParams",
    "BackendAgent",
    "CallParams",
    "InformationParams",
    "SessionParams",
    "WebhookParams",
    "active_sessions",
    "analytics_page",
    "analytics_params",
    "caller_filter_number",
    "calls_ended_since",
    "calls_page",
    "check_token",
    "cost_and_qualification",
    "csv_response",
    "decode_cursor",
    "epoch",
    "find_session",
    "get_backend",
    "information_page",
    "last_seq",
    "parse_iso",
    "recording_file",
    "recording_media_type",
    "session_detail",
    "session_recording",
    "sessions_page",
    "summary_page",
    "transcript_page",
    "transcript_text",
    "webhook_deliveries_page",
    "webhook_params",
]


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
        missing_disclosure=p.missing_disclosure,
        limit=p.limit,
        before_seq=p.before_seq,
    )
    cursor = encode_cursor("sessions", before=next_before) if next_before is not None else None
    return {"sessions": sessions, "next_cursor": cursor}


def session_detail(backend: BackendAgent, session_id: str) -> dict[str, Any]:
    """`{"session", "information": [oldest first], "call": call|None, "recording":
    recording|None}`; ApiError 404 if unknown. `recording` (RECORDING=on) is `{"egress_id",
    "status", "location", "started_at", "ended_at", "error"}`; null when none was started."""
    found = backend.session(session_id)
    if found is None:
        raise ApiError(404, "session_not_found", "There is no session with that id.")
    session, information, call = found
    return {
        "session": session,
        "information": information,
        "call": call,
        "recording": backend.session_recording(session_id),
        "transcript": backend.transcript(session_id),
        "summary": summary_view(backend.summary_of(session_id)),
    }


def summary_view(job: dict[str, Any] | None) -> dict[str, Any] | None:
    """The post-call summary as the API shows it: the job's state (queued, claimed, retrying,
    done, skipped, gave_up), its last error, and once done the summary, lead and qualification."""
    if job is None:
        return None
    view = {
        "state": job.get("state"),
        "attempts": job.get("attempts", 0),
        "error": job.get("error"),
        "reason": job.get("reason"),
    }
    result = job.get("result") or {}
    for key in ("summary", "lead", "lead_valid", "errors", "rule", "model_decision", "disagreement", "model", "raw"):
        if key in result:
            view[key] = result[key]
    return view


def transcript_page(backend: BackendAgent, session_id: str) -> dict[str, Any]:
    """`{"session_id", "turns": [oldest first], "count"}`; ApiError 404 if the session is unknown."""
    turns = backend.transcript(session_id)
    if turns is None:
        raise ApiError(404, "session_not_found", "There is no session with that id.")
    return {"session_id": session_id, "turns": turns, "count": len(turns)}


def transcript_text(page: dict[str, Any]) -> str:
    """The transcript as plain text: `[00:01.2-00:03.4] Caller: ...`, one line per turn, tool calls
    as `(tool name(arguments) -> result)`."""
    lines = []
    for turn in page["turns"]:
        when = f"[{_clock(turn['start_s'])}-{_clock(turn['end_s'])}]"
        if turn["speaker"] == "tool":
            tool = turn["tool"]
            args = json.dumps(tool["arguments"], ensure_ascii=False)
            lines.append(f"{when} (tool {tool['name']}({args}) -> {tool['result']})")
            continue
        mark = " [interrupted]" if turn.get("interrupted") else ""
        lines.append(f"{when} {turn['speaker'].capitalize()}{mark}: {turn['text']}")
    return "\n".join(lines) + ("\n" if lines else "")


def _clock(seconds: float) -> str:
    minutes, rest = divmod(float(seconds), 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


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


def webhook_deliveries_page(backend: BackendAgent, p: WebhookParams) -> dict[str, Any]:
    """`{"deliveries": [newest queued first], "count": n, "more": bool}`: the newest `limit`
    webhook deliveries (of `state`, of `session_id`), each with its attempts. No cursor: `more`
    says older ones match too (raise `limit`, up to 1000, or narrow the filter)."""
    found = backend.webhook_deliveries(state=p.state, session_id=p.session_id, limit=p.limit + 1)
    deliveries = found[: p.limit]
    return {"deliveries": deliveries, "count": len(deliveries), "more": len(found) > p.limit}


# ---- analytics ------------------------------------------------------------------------------
QUALIFIED = "qualified"
NO_CONTACT = "no_contact"  # wrong number or voicemail: nobody to qualify was reached


def analytics_page(backend: BackendAgent, p: AnalyticsParams) -> dict[str, Any]:
    """The figures of the calls that ended from the start of day `p.since` to the end of day
    `p.until` in the time zone `p.tz`, built from `backend.call_figures` alone (the store's
    index columns: no record is read, so a year at a million records answers at once).

    - `totals`: `calls`; `conversations`, the calls that reached someone to qualify (every
      outcome but `no_contact`, i.e. not a wrong number or a voicemail); `qualified`; and
      `qualification_rate` = qualified / conversations.
    - `per_day`: every day of the range in `p.tz` (days without calls with zeros): calls,
      qualified, missing disclosures, average and p90 duration.
    - `outcomes`: calls per outcome, every outcome listed (zeros too).
    - `duration`: average and p90 (nearest rank: the shortest duration that at least 90 % of
      the calls do not exceed) in seconds.
    - `cost`: `total_usd` over the calls that have a cost, `calls_with_cost`,
      `calls_without_cost`, `per_call_usd` = total / calls with a cost, `per_qualified_lead_usd`
      = total / qualified.
    - `missing_disclosures`: `calls` whose agent did not give a required disclosure in time,
      and their `share` of all calls.
    A figure whose denominator is zero (no calls, no cost, nobody qualified) is null, never a
    division error and never a made-up 0."""
    zone = ZoneInfo(p.tz)
    starts = [_day_start(p.since + timedelta(days=n), zone) for n in range(p.days + 1)]  # + the day after
    figures = backend.call_figures(starts[0], math.nextafter(starts[-1], -math.inf))
    ended, outcome, duration = figures.ended, figures.outcome, figures.duration
    cost, missing = figures.cost, figures.missing_disclosure
    if not all(map(operator.le, ended, ended[1:])):  # the index keeps write order; a clock step may swap two
        order = sorted(range(len(ended)), key=ended.__getitem__)
        ended, outcome, duration, cost, missing = (
            [col[i] for i in order] for col in (ended, outcome, duration, cost, missing)
        )
    n = len(ended)
    cuts = [bisect_left(ended, t) for t in starts]
    per_day, ordered = [], []
    for k in range(p.days):
        lo, hi = cuts[k], cuts[k + 1]
        spans = sorted(duration[lo:hi])
        ordered.extend(spans)  # sorted runs, one a day: sorting them all again merges the runs
        per_day.append(
            {
                "date": (p.since + timedelta(days=k)).isoformat(),
                "calls": hi - lo,
                "qualified": outcome[lo:hi].count(QUALIFIED),
                "missing_disclosures": sum(missing[lo:hi]),
                "average_duration_seconds": _ratio(sum(spans), len(spans), 1),
                "p90_duration_seconds": _p90(spans),
            }
        )
    outcomes = {o: outcome.count(o) for o in OUTCOMES}  # one pass in C each: faster than hashing every one
    if sum(outcomes.values()) != n:  # an outcome the vocabulary no longer has (an old record)
        outcomes |= {o: k for o, k in Counter(outcome).items() if o not in outcomes}
    qualified, conversations = outcomes[QUALIFIED], n - outcomes[NO_CONTACT]
    costs = [c for c in cost if c >= 0]
    total_cost = math.fsum(costs)
    flagged = sum(missing)
    return {
        "range": {
            "since": p.since.isoformat(),
            "until": p.until.isoformat(),
            "tz": p.tz,
            "days": p.days,
            "starts_at": iso(datetime.fromtimestamp(starts[0], UTC)),
            "ends_before": iso(datetime.fromtimestamp(starts[-1], UTC)),
        },
        "totals": {
            "calls": n,
            "conversations": conversations,
            "qualified": qualified,
            "qualification_rate": _ratio(qualified, conversations, 4),
        },
        "per_day": per_day,
        "outcomes": outcomes,
        "duration": {
            "average_seconds": _ratio(math.fsum(duration), n, 1),
            "p90_seconds": _p90(sorted(ordered)),
        },
        "cost": {
            "total_usd": round(total_cost, 4),
            "calls_with_cost": len(costs),
            "calls_without_cost": n - len(costs),
            "per_call_usd": _ratio(total_cost, len(costs), 4),
            "per_qualified_lead_usd": _ratio(total_cost, qualified, 4) if costs else None,
        },
        "missing_disclosures": {"calls": flagged, "share": _ratio(flagged, n, 4)},
    }


def _day_start(day, zone: ZoneInfo) -> float:
    """The first instant of `day` in `zone` (epoch seconds); where midnight does not exist
    (a clock moved forward at midnight), the instant the day begins."""
    return datetime.combine(day, time(), zone).timestamp()


def _ratio(part: float, whole: float, digits: int) -> float | None:
    return round(part / whole, digits) if whole else None


def _p90(ordered: list[float]) -> float | None:
    """Nearest-rank 90th percentile of an ascending list (None when empty)."""
    return round(ordered[math.ceil(0.9 * len(ordered)) - 1], 1) if ordered else None


# ---- what only the dashboard shows (its cards, calls in progress and live updates) ----------
def last_seq(backend: BackendAgent) -> int:
    """The newest seq written; follow the store from there with `after_seq`."""
    return backend.last_seq()


def cost_and_qualification(backend: BackendAgent) -> dict[str, Any]:
    """Every call so far, from the index's running totals (no per-call work, so the overview and
    its live updates cost the same at any size): the share qualified, what the calls cost in
    all, per call with a cost, and per qualified lead (None where there is nothing to divide by)."""
    t = backend.call_totals()
    calls, qualified, total, priced = t["calls"], t["qualified"], t["cost_total_usd"], t["calls_with_cost"]
    return {
        "qualification_rate": qualified / calls if calls else None,
        "cost_total_usd": total,
        "cost_per_call_usd": total / priced if priced else None,
        "cost_per_qualified_usd": total / qualified if qualified and priced else None,
    }


def calls_ended_since(backend: BackendAgent, since: float) -> dict[str, int]:
    """`{"calls": n, "qualified": m}`: call logs ended since `since` (epoch seconds), and how
    many of them `qualified`, counted from the store's index alone."""
    calls, qualified = backend.count_calls(since)
    return {"calls": calls, "qualified": qualified}


def active_sessions(backend: BackendAgent) -> list[dict[str, Any]]:
    """The sessions in progress, newest first."""
    return sorted(backend.active_sessions(), key=lambda s: s["started_at"], reverse=True)


def session_recording(backend: BackendAgent, session_id: str) -> dict[str, Any] | None:
    """The session's recording (as in `session_detail`), or None."""
    return backend.session_recording(session_id)


def recording_file(backend: BackendAgent, session_id: str) -> Path | None:
    """The file of the session's completed recording when it lies inside RECORDING_FILE_DIR on
    this machine (the path comes from the store, never from the request, and is checked to stay
    in that folder); None otherwise."""
    return backend.recording_file(session_id)


def recording_media_type(path: Path) -> str:
    return media_type(path)


def find_session(backend: BackendAgent, session_id: str) -> dict[str, Any] | None:
    """The session, or None when the store has none of that id (`session_detail` with its
    records and call log, for when those are needed too)."""
    found = backend.session(session_id)
    return found[0] if found else None
