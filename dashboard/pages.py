"""The data of each dashboard page, rendered as HTML (first load) or JSON (live updates).

Everything comes through the API's page functions (`backend.api.data`, the dashboard's one
door to the data), so `/api/...` and the dashboard answer the same records for the same
filters; this module adds what only the dashboard shows (cards, active calls, debt totals,
disclosures, the transcript as a conversation) and the texts it shows them with. Every read is
one of the store's indexed queries: no page reads the whole backend, and a live update's size
depends on what changed since `after_seq` (and on the call's length), not on the store's size."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from backend.api.data import (
    CATEGORIES,
    BackendAgent,
    CallParams,
    InformationParams,
    SessionParams,
    WebhookParams,
    active_sessions,
    calls_ended_since,
    calls_page,
    cost_and_qualification,
    epoch,
    find_session,
    information_page,
    last_seq,
    recording_file,
    session_detail,
    session_recording,
    sessions_page,
    summary_page,
    webhook_deliveries_page,
)
from backend.api.errors import ApiError
from dashboard import formatting as fmt
from dashboard.after_call import after_call
from dashboard.after_call import usd as after_call_usd
from dashboard.conversation import conversation, items_after
from dashboard.disclosure_flag import heard_disclosures, missing_of, missing_text
from dashboard.query import ViewFilters, start_of_today

FEED_PAGE = 50
CALLS_PAGE = 25
ACTIVE_SHOWN = 50
LIVE_RECORDS = 100
LIVE_CALLS = 50
LIVE_TURNS = 100  # transcript items per live update; a page further behind catches up poll by poll
EARLIER_CALLS = 20
WEBHOOKS_PAGE = 100


def summary_counts(backend: BackendAgent, zone: ZoneInfo) -> dict[str, Any]:
    """The overview's cards and category chart."""
    summary = summary_page(backend, recent=0)
    today = calls_ended_since(backend, start_of_today(zone))
    money = cost_and_qualification(backend)
    rate = money["qualification_rate"]
    return {
        "qualification_rate": fmt.NONE if rate is None else f"{rate:.0%}",
        "cost_total": after_call_usd(money["cost_total_usd"]),
        "cost_per_qualified": after_call_usd(money["cost_per_qualified_usd"]),
        "calls_today": today["calls"],
        "qualified_today": today["qualified"],
        "active_sessions": summary["active_sessions"],
        "total_calls": summary["total_calls"],
        "qualified_total": summary["by_outcome"].get("qualified", 0),
        "total_information": summary["total_information"],
        "by_category": summary["by_category"],
        "last_seq": summary["last_seq"],
    }


def active_calls(backend: BackendAgent, filters: ViewFilters | None = None) -> dict[str, Any]:
    """Calls in progress, newest first, each with its newest captured fact (with the filter
    "missing disclosure", only those flagged)."""
    sessions = active_sessions(backend)
    if filters is not None and filters.missing_disclosure:
        sessions = [s for s in sessions if missing_of(s)]
    out = []
    for session in sessions[:ACTIVE_SHOWN]:
        newest = information_page(backend, InformationParams(session_id=session["session_id"], limit=1))["information"]
        out.append(shown({**session, "newest": shown(newest[0]) if newest else None}))
    return {"count": len(sessions), "sessions": out}


def overview(backend: BackendAgent, filters: ViewFilters, zone: ZoneInfo) -> dict[str, Any]:
    counts = summary_counts(backend, zone)  # first: its last_seq may repeat a record, never miss one
    feed = information_page(backend, filters.information_params(FEED_PAGE))
    calls, calls_next = call_log(backend, filters)
    return {
        "summary": counts,
        "last_seq": counts["last_seq"],
        "active": active_calls(backend, filters),
        "feed": feed["information"],
        "feed_next": feed["next_cursor"],
        "calls": calls,
        "calls_next": calls_next,
    }


def call_log(backend: BackendAgent, filters: ViewFilters) -> tuple[list[dict], str | None]:
    """The overview's page of call logs and the cursor of the next; with the filter "missing
    disclosure", the ended calls the store's index lists as flagged (`/api/sessions?
    missing_disclosure=true`), each shown as its call log."""
    if not filters.missing_disclosure:
        page = calls_page(backend, filters.call_params(CALLS_PAGE))
        return page["calls"], page["next_cursor"]
    page = sessions_page(backend, filters.flagged_params(CALLS_PAGE))
    return [ended_call(s) for s in page["sessions"]], page["next_cursor"]


def ended_call(session: dict) -> dict[str, Any]:
    """An ended session as a call-log row (its view holds everything the row shows)."""
    keys = ("session_id", "caller_id", "ended_at", "outcome", "duration_seconds", "information_count")
    return {
        **{k: session[k] for k in keys},
        "reason": session["end_reason"],
        "missing_disclosures": missing_of(session),
    }


def overview_changes(backend: BackendAgent, filters: ViewFilters, zone: ZoneInfo, after_seq: int) -> dict[str, Any]:
    """What changed since `after_seq`: new feed records (write order), new call logs (newest
    first), the active calls and the counts. `*_more` says the page is too far behind."""
    counts = summary_counts(backend, zone)
    out: dict[str, Any] = {"last_seq": counts["last_seq"], "summary": counts}
    if counts["last_seq"] <= after_seq:
        return {**out, "changed": False}
    records = information_page(backend, filters.information_params(LIVE_RECORDS, after_seq=after_seq))
    calls, calls_more = new_calls(backend, filters, after_seq)
    return {
        **out,
        "changed": True,
        "records": [shown(r) for r in records["information"]],
        "records_more": records["next_cursor"] is not None,
        "calls": [shown(c) for c in calls],
        "calls_more": calls_more,
        "active": active_calls(backend, filters),
    }


def new_calls(backend: BackendAgent, filters: ViewFilters, after_seq: int) -> tuple[list[dict], bool]:
    """Call logs written after `after_seq` that match the view, newest first: reads at most
    LIVE_CALLS + 1 of the newest call logs, whatever the store's size."""
    newest = calls_page(backend, CallParams(limit=LIVE_CALLS + 1))["calls"]
    fresh = [c for c in newest if c["seq"] > after_seq]
    kept = [c for c in fresh[:LIVE_CALLS] if _call_matches(c, filters)]
    return kept, len(fresh) > LIVE_CALLS


def _call_matches(call: dict, f: ViewFilters) -> bool:
    if (f.caller_id and call["caller_id"] != f.caller_id) or (f.outcome and call["outcome"] != f.outcome):
        return False
    if f.missing_disclosure and not call.get("missing_disclosures"):
        return False
    ts = epoch(call["ended_at"])
    return not ((f.since is not None and ts < f.since) or (f.until is not None and ts > f.until))


def session_page(backend: BackendAgent, session_id: str) -> dict[str, Any] | None:
    """A call's review page, or None when the store has no such session."""
    seq = last_seq(backend)  # first: the page may then repeat a record in its live updates, never miss one
    try:
        detail = session_detail(backend, session_id)
    except ApiError:
        return None
    records = detail["information"]
    earlier = sessions_page(backend, SessionParams(caller_id=detail["session"]["caller_id"], limit=EARLIER_CALLS + 1))
    return {
        **detail,
        "last_seq": seq,
        "groups": [(c, [r for r in records if r["category"] == c]) for c in CATEGORIES],
        "debt": debt_summary(records),
        "disclosures": disclosures(records),
        "recording": recording_box(backend, session_id, detail["recording"]),
        "disclosure_flag": heard_disclosures(detail["session"]),
        "conversation": conversation(detail["transcript"] or [], records),
        "after_call": after_call(detail["summary"], detail["call"]),
        "earlier": [s for s in earlier["sessions"] if s["session_id"] != session_id][:EARLIER_CALLS],
        "webhooks": webhook_deliveries_page(backend, WebhookParams(session_id=session_id))["deliveries"],
    }


def webhooks_page(backend: BackendAgent, params: WebhookParams) -> dict[str, Any]:
    """The webhook deliveries, newest first (of the state chosen), each with its attempts."""
    page = webhook_deliveries_page(backend, WebhookParams(state=params.state, limit=min(params.limit, WEBHOOKS_PAGE)))
    return {"deliveries": page["deliveries"], "count": page["count"], "more": page["more"], "state": params.state}


def session_changes(backend: BackendAgent, session_id: str, after_seq: int) -> dict[str, Any] | None:
    """What changed on one call since `after_seq`: its new records, its new transcript items (at
    most LIVE_TURNS; when more wait, `last_seq` is that of the last one sent, so the next update
    carries on from there), its state, disclosure flag and call log."""
    seq = last_seq(backend)
    session = find_session(backend, session_id)
    if session is None:
        return None
    out: dict[str, Any] = {"last_seq": seq, "session": shown(session), "changed": seq > after_seq}
    if not out["changed"]:
        return out
    page = information_page(backend, InformationParams(session_id=session_id, after_seq=after_seq, limit=LIVE_RECORDS))
    records = page["information"]
    detail = session_detail(backend, session_id)  # every record (for the totals), the transcript, the call log
    call = detail["call"]
    spoken = conversation(detail["transcript"] or [], detail["information"])
    items, items_more = items_after(spoken, after_seq, LIVE_TURNS)
    if items_more:
        out["last_seq"] = min(seq, items[-1]["last_seq"])
    return {
        **out,
        "records": [shown(r) for r in records],
        "records_more": page["next_cursor"] is not None,
        "transcript": items,
        "transcript_more": items_more,
        "disclosure_flag": heard_disclosures(detail["session"]),
        "call": shown(call) if call else None,
        "debt": debt_summary(detail["information"]) if records else None,
        "disclosures": disclosures(detail["information"]) if records else None,
        "recording": recording_box(backend, session_id, session_recording(backend, session_id)),
        "after_call": after_call(detail["summary"], call),
    }


def recording_box(backend: BackendAgent, session_id: str, recording: dict | None) -> dict | None:
    """The call's recording with its status text, and whether its file can be played from
    this server (`playable`: completed, and a file inside RECORDING_FILE_DIR); None when the
    call was not recorded (recording off)."""
    if recording is None:
        return None
    playable = recording["status"] == "completed" and recording_file(backend, session_id) is not None
    return {**recording, "status_label": fmt.RECORDING_STATUS_LABELS[recording["status"]], "playable": playable}


def debt_summary(records: list[dict]) -> dict[str, Any]:
    """The debts stated in `debt_info` fields, and their total (and unsecured part), with the
    texts the page shows."""
    items = []
    for record in records:
        fields = record.get("fields") or {}
        amount = fields.get("amount_usd")
        if record["category"] != "debt_info" or isinstance(amount, bool) or not isinstance(amount, int | float):
            continue
        secured = fields.get("secured") is True
        kind = fmt.debt_type(fields.get("debt_type")) + (" (secured)" if secured else "")
        items.append(
            {
                "seq": record["seq"],
                "amount_usd": amount,
                "secured": secured,
                "type_display": kind,
                "creditor_display": str(fields.get("creditor") or fmt.NONE),
                "amount_display": fmt.money(amount),
            }
        )
    total = sum(i["amount_usd"] for i in items)
    unsecured = sum(i["amount_usd"] for i in items if not i["secured"])
    return {
        "items": items,
        "total_usd": total,
        "unsecured_usd": unsecured,
        "total_display": fmt.money(total),
        "unsecured_display": fmt.money(unsecured),
    }


def disclosures(records: list[dict]) -> list[dict[str, Any]]:
    """Each opening disclosure, given when any `conversation_flow` record of the call lists it
    in `fields.disclosures` (how the call script has the agent record them)."""
    given: set[str] = set()
    for record in records:
        listed = (record.get("fields") or {}).get("disclosures")
        if record["category"] == "conversation_flow" and isinstance(listed, list):
            given.update(d for d in listed if isinstance(d, str))
    return [{"key": k, "label": label, "given": k in given} for k, label in fmt.DISCLOSURE_LABELS.items()]


def shown(entry: dict) -> dict:
    """An entry with the display texts the page's script puts in place (with textContent)."""
    out = {**entry, "caller_display": fmt.phone(entry.get("caller_id"))}
    if "category" in entry:
        out["category_label"] = fmt.FILTERS["category_label"](entry["category"])
        fields = entry.get("fields") or {}
        out["fields_display"] = [[fmt.field_name(k), fmt.field_value(v, k)] for k, v in fields.items()]
    if "outcome" in entry:
        out["outcome_label"] = fmt.FILTERS["outcome_label"](entry["outcome"])
    if "duration_seconds" in entry:
        out["duration_display"] = fmt.duration(entry["duration_seconds"])
    if "missing_disclosures" in entry or "disclosures" in entry:
        out["flag_display"] = missing_text(entry)
    return out
