"""Carrier callbacks: Twilio's CallStatus changes, recorded on the matching outbound call or
session (the route that checks their signature is `backend/api/sip_routes.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.calls import outbound
from backend.calls.numbers import InvalidPhoneNumber, normalize_e164
from backend.store.interface import Store
from backend.store.records import InvalidRecord

TWILIO_KIND = "twilio_status"


def _customer_number(form: Mapping[str, str]) -> str | None:
    direction = form.get("Direction", "")
    raw = form.get("To") if direction.startswith("outbound") else form.get("From")
    raw = (raw or "").removeprefix("sip:").split("@")[0]
    try:
        return normalize_e164(raw)
    except InvalidPhoneNumber:
        return None


def _session_for(store: Store, number: str | None) -> str | None:
    """The caller's active session, else their latest one."""
    if number is None:
        return None
    active = [s for s in store.active_sessions() if s["caller_id"] == number]
    if active:
        return max(active, key=lambda s: s["started_at"])["session_id"]
    sessions, _next = store.query_sessions(caller_id=number, limit=1)
    return sessions[0]["session_id"] if sessions else None


def record_twilio_status(store: Store, form: Mapping[str, str], call_id: str | None) -> dict[str, Any]:
    """Record a CallStatus change on the matching outbound call / session; a repeat (Twilio
    retries) of the status already recorded for that CallSid writes nothing."""
    sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
    if not (0 < len(sid) <= 64 and 0 < len(status) <= 32):
        raise InvalidRecord("CallSid and CallStatus are required.", "invalid_callback")
    call = outbound.call_view(store, call_id) if call_id else None
    session_id = (call or {}).get("session_id") or _session_for(store, _customer_number(form))
    key = session_id or f"callsid:{sid}"
    earlier = [e["data"]["call_status"] for e in store.events(TWILIO_KIND, key) if e["data"].get("call_sid") == sid]
    changed = not earlier or earlier[-1] != status
    if changed:
        data = {
            "call_sid": sid,
            "call_status": status,
            "direction": form.get("Direction") or None,
            "sip_response_code": form.get("SipResponseCode") or None,
            "call_duration": form.get("CallDuration") or None,
            "sequence_number": form.get("SequenceNumber") or None,
            "session_id": session_id,
            "call_id": call["id"] if call else None,
        }
        store.append_event(TWILIO_KIND, key, {k: v for k, v in data.items() if v is not None})
        if call:
            outbound.record_state(store, call["id"], None, twilio_status=status, call_sid=sid)
    return {"recorded": changed, "session_id": session_id, "call_id": call["id"] if call else None}
