"""Outbound calls: the compliance gates and the call's record (the agent dispatch that places a
call is LiveKit's: `backend/livekit/dispatch.py`).

A call is a series of store events (kind `outbound_call`, keyed by the call id) whose `state` is
`queued` (accepted here, agent dispatched), `dialing` and `answered` or `failed` (written by the
agent, `backend/voice/dial.py`), then `completed` (the agent's call log is written). Its view
(`call_view`) folds them together; a call whose session already has its call log is shown
completed (or failed) even if the agent died before saying so, and one that stopped moving long
ago (no agent picked it up, a worker crashed) is shown failed with `stale: true`.

`place_call` checks, in the contract's order: a valid E.164 number (400), not on the do-not-call
list (403), within calling hours at the called party (409), under MAX_CONCURRENT_OUTBOUND calls
at once (429), outbound configured (503). Every refusal is an event too (kind
`outbound_refused`, keyed by the number, or `invalid`). The concurrency check and the new call's
first event happen under one lock shared by every process on the store (`Store.exclusive`), so
two workers cannot both take the last free line.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from backend.calls import dnc
from backend.calls.hours import within_calling_hours
from backend.calls.numbers import InvalidPhoneNumber, normalize_e164, redact_number
from backend.settings import Settings
from backend.store.interface import Store
from backend.store.records import parse_iso

log = logging.getLogger(__name__)

CALL_KIND = "outbound_call"
REFUSAL_KIND = "outbound_refused"
STATES = ("queued", "dialing", "answered", "completed", "failed")
ACTIVE_STATES = ("queued", "dialing", "answered")
# How long a call may stay in a state before it is shown failed (stale): an agent picks up a
# dispatch within seconds and a dial ends within its ringing timeout; a call longer than the
# last is not a debt-relief qualification call.
STALE_AFTER_SECONDS = {"queued": 120.0, "dialing": 300.0, "answered": 4 * 3600.0}
OLDEST_ACTIVE_SECONDS = max(STALE_AFTER_SECONDS.values())


class CallRefused(Exception):
    """A refused (or failed to start) outbound call: HTTP status, code and one sentence."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


# ---- the call record -------------------------------------------------------------------------
def record_state(store: Store, call_id: str, state: str | None, **data: Any) -> dict[str, Any]:
    """Append an event to call `call_id`: a new `state` (or None for facts only) and `data`."""
    if state is not None and state not in STATES:
        raise ValueError(f"unknown outbound call state {state!r}")
    payload = {"state": state, **data} if state else dict(data)
    return store.append_event(CALL_KIND, call_id, payload)


def _age(timestamp: str, now: datetime) -> float:
    return (now - parse_iso(timestamp)).total_seconds()


def call_view(store: Store, call_id: str, now: datetime | None = None) -> dict[str, Any] | None:
    """The state of outbound call `call_id` for `GET /api/calls/<id>`, or None when unknown."""
    events = store.events(CALL_KIND, call_id) if 0 < len(call_id) <= 128 else []
    if not events:
        return None
    now = now or datetime.now(UTC)
    merged: dict[str, Any] = {}
    history = []
    for event in events:
        merged.update({k: v for k, v in event["data"].items() if v is not None})
        if event["data"].get("state"):
            history.append({"state": event["data"]["state"], "at": event["timestamp"]})
    view = {
        "id": call_id,
        "state": history[-1]["state"] if history else "queued",
        "phone_number": merged.get("phone_number"),
        "room": merged.get("room"),
        "session_id": merged.get("session_id"),
        "dispatch_id": merged.get("dispatch_id"),
        "created_at": events[0]["timestamp"],
        "updated_at": events[-1]["timestamp"],
        "dial_outcome": merged.get("dial_outcome"),
        "sip_status_code": merged.get("sip_status_code"),
        "sip_status": merged.get("sip_status"),
        "end_reason": merged.get("end_reason"),
        "twilio_status": merged.get("twilio_status"),
        "error": merged.get("error"),
        "stale": False,
        "history": history,
    }
    _settle(store, view, history[-1]["at"] if history else events[0]["timestamp"], now)
    return view


def _settle(store: Store, view: dict[str, Any], since: str, now: datetime) -> None:
    """Finish an active view from the session's call log, or mark it stale."""
    if view["state"] not in ACTIVE_STATES:
        return
    call_log = store.session_call(view["session_id"]) if view["session_id"] else None
    if call_log is not None:
        view["state"] = "completed" if view["state"] == "answered" else "failed"
        view["end_reason"] = view["end_reason"] or call_log["reason"]
    elif _age(since, now) > STALE_AFTER_SECONDS[view["state"]]:
        view["error"] = view["error"] or f"no news from the agent since it was {view['state']}"
        view["state"], view["stale"] = "failed", True


def active_calls(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """Outbound calls queued, dialing or answered right now, newest first.

    Keys come in the order calls were created, so the scan stops at the first call older than
    the longest a call can stay active: the cost follows recent calls, not all calls ever."""
    now = now or datetime.now(UTC)
    active = []
    for call_id in reversed(store.event_keys(CALL_KIND)):
        view = call_view(store, call_id, now)
        if view is None:
            continue
        if _age(view["created_at"], now) > OLDEST_ACTIVE_SECONDS:
            break
        if view["state"] in ACTIVE_STATES:
            active.append(view)
    return active


# ---- the gates -------------------------------------------------------------------------------
def _refuse(store: Store, key: str, status: int, code: str, message: str, **details: Any) -> CallRefused:
    store.append_event(REFUSAL_KIND, key, {"status": status, "code": code, **details})
    log.info("outbound call to %s refused: %s", redact_number(key) if key != "invalid" else key, code)
    return CallRefused(status, code, message)


def check_number(store: Store, settings: Settings, raw: Any, now: datetime) -> str:
    """Gates 1-3: the E.164 number, or CallRefused (400, 403, 409)."""
    try:
        number = normalize_e164(raw if isinstance(raw, str) else "")
    except InvalidPhoneNumber as exc:
        given = raw[:64] if isinstance(raw, str) else None
        raise _refuse(store, "invalid", 400, "invalid_phone_number", str(exc), phone_number=given) from None
    if dnc.contains(store, number):
        raise _refuse(store, number, 403, "do_not_call", "This number is on the do-not-call list.", phone_number=number)
    try:
        allowed, hours = within_calling_hours(number, settings.calling_hours, now)
    except ValueError as exc:
        raise CallRefused(503, "calling_hours_invalid", str(exc)) from None
    if not allowed:
        local = ", ".join(f"{time} in {zone}" for zone, time in hours["local_times"].items()) or "unknown"
        message = f"It is outside calling hours ({settings.calling_hours}) at the called party: {local}."
        raise _refuse(store, number, 409, "outside_calling_hours", message, phone_number=number, hours=hours)
    return number


def outbound_configured(settings: Settings) -> bool:
    return bool(
        settings.sip_outbound_trunk_id
        and settings.livekit_url
        and settings.livekit_api_key
        and settings.livekit_api_secret
    )


def queue_call(
    store: Store,
    settings: Settings,
    raw_number: Any,
    *,
    requested_by: str = "api",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run the gates in order and record the call as queued; returns its view. Raises CallRefused.
    The concurrency count and the queued record are one step for every process sharing the store.

    `now` is the moment whose calling hours count (default: the current time)."""
    now = now or datetime.now(UTC)
    number = check_number(store, settings, raw_number, now)
    with store.exclusive("outbound"):
        active = len(active_calls(store))
        limit = settings.max_concurrent_outbound
        if active >= limit:
            raise _refuse(
                store,
                number,
                429,
                "too_many_outbound_calls",
                f"{active} outbound calls are in progress; the limit is {limit}.",
                phone_number=number,
                active=active,
                limit=limit,
            )
        if not outbound_configured(settings):
            raise _refuse(
                store,
                number,
                503,
                "outbound_not_configured",
                "Outbound calling is not configured: set SIP_OUTBOUND_TRUNK_ID and the LiveKit credentials.",
                phone_number=number,
            )
        call_id = uuid.uuid4().hex
        record_state(
            store, call_id, "queued", phone_number=number, room=f"outbound-{call_id}", requested_by=requested_by
        )
    return call_view(store, call_id)


# ---- the dispatch ----------------------------------------------------------------------------
def dispatch_metadata(call: dict[str, Any]) -> str:
    """What the agent reads from its job (`backend.voice.caller.dispatch_phone_number`)."""
    return json.dumps({"phone_number": call["phone_number"], "call_id": call["id"], "direction": "outbound"})
