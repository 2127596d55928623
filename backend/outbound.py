"""Outbound calls: the compliance gates, the call's record, and the agent dispatch that places it.

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
first event happen under one lock shared by every process on the data directory, so two
workers cannot both take the last free line.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError

from backend import dnc
from backend.records import parse_iso
from backend.settings import Settings
from backend.sip import InvalidPhoneNumber, normalize_e164, redact_number, within_calling_hours
from backend.store import Store

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
DISPATCH_TIMEOUT_SECONDS = 15.0


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


_thread_lock = threading.Lock()


@contextmanager
def outbound_lock(lock_dir: str | Path | None) -> Iterator[None]:
    """Exclusive across threads, and across processes sharing `lock_dir` (the data directory)."""
    with _thread_lock:
        if lock_dir is None:
            yield
            return
        path = Path(lock_dir)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / "outbound.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def queue_call(
    store: Store,
    settings: Settings,
    raw_number: Any,
    *,
    requested_by: str = "api",
    now: datetime | None = None,
    lock_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the gates in order and record the call as queued; returns its view. Raises CallRefused.

    `now` is the moment whose calling hours count (default: the current time)."""
    now = now or datetime.now(UTC)
    number = check_number(store, settings, raw_number, now)
    with outbound_lock(lock_dir):
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


async def create_dispatch(settings: Settings, call: dict[str, Any]) -> str:
    """Ask LiveKit to send agent AGENT_NAME into the call's fresh room; returns the dispatch id."""
    timeout = aiohttp.ClientTimeout(total=DISPATCH_TIMEOUT_SECONDS)
    async with api.LiveKitAPI(
        settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret, timeout=timeout
    ) as lkapi:
        request = api.CreateAgentDispatchRequest(
            agent_name=settings.agent_name, room=call["room"], metadata=dispatch_metadata(call)
        )
        dispatch = await lkapi.agent_dispatch.create_dispatch(request)
    return dispatch.id


def dispatch_call(store: Store, settings: Settings, call: dict[str, Any]) -> dict[str, Any]:
    """Create the agent dispatch of a queued call; returns the call's view.

    A dispatch LiveKit refuses or cannot be reached for marks the call failed and raises
    CallRefused(503, "dispatch_failed")."""
    try:
        dispatch_id = asyncio.run(create_dispatch(settings, call))
    except (ServerError, aiohttp.ClientError, TimeoutError) as exc:
        error = f"{exc.code}: {exc.message}" if isinstance(exc, ServerError) else repr(exc)
        record_state(store, call["id"], "failed", error=f"dispatch failed: {error}")
        log.error("outbound call %s: the agent dispatch failed: %s", call["id"], error)
        raise CallRefused(503, "dispatch_failed", "LiveKit did not accept the agent dispatch; try again.") from None
    record_state(store, call["id"], None, dispatch_id=dispatch_id)
    log.info("outbound call %s to %s dispatched (%s)", call["id"], redact_number(call["phone_number"]), dispatch_id)
    return call_view(store, call["id"])


def place_call(
    store: Store,
    settings: Settings,
    raw_number: Any,
    *,
    requested_by: str = "api",
    now: datetime | None = None,
    lock_dir: str | Path | None = None,
) -> dict[str, Any]:
    """`POST /api/calls`: the gates, the queued record, the dispatch. Raises CallRefused."""
    call = queue_call(store, settings, raw_number, requested_by=requested_by, now=now, lock_dir=lock_dir)
    return dispatch_call(store, settings, call)
