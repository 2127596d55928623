"""The telephony routes: outbound calls (`POST /api/calls`, `GET /api/calls/<id>`), the
do-not-call list (`GET, POST, DELETE /api/dnc`) and Twilio's status callback
(`POST /api/webhooks/twilio/status`, checked by Twilio's signature instead of a bearer token).

The rules live in `backend.outbound` and `backend.dnc`; this module turns HTTP into calls of
them and their refusals into the API's error envelope.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, request
from twilio.request_validator import RequestValidator
from werkzeug.urls import iri_to_uri

from backend import dnc, outbound
from backend.api import get_store
from backend.api.auth import require_token
from backend.api.errors import ApiError
from backend.settings import Settings
from backend.sip import InvalidPhoneNumber, normalize_e164
from backend.store import Store

bp = Blueprint("api_sip", __name__, url_prefix="/api")
bp.before_request(require_token)
webhook_bp = Blueprint("api_twilio_webhook", __name__, url_prefix="/api/webhooks")  # no bearer token

TWILIO_KIND = "twilio_status"
MAX_NOTE = 500
# A removal's reason travels in the query string, and gunicorn refuses a request line over 4094
# bytes (414): 300 characters fit even when each is 4 bytes of UTF-8, percent-encoded to 12.
MAX_REASON = 300
# A number as the API takes it: + and digits, with spaces, dashes, dots or brackets between them
# if one likes. phonenumbers reads more (letters as on a keypad, an extension, trailing junk such
# as "+12125551234*", which it drops), none of it a number to call or to list.
_NUMBER_TEXT = re.compile(r"\+[0-9 ().\-]*")


def _settings() -> Settings:
    return current_app.extensions["settings"]


def _body(allowed: set[str]) -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "invalid_body", f"Unknown field(s): {', '.join(unknown)}.")
    return body


def _number(value: Any) -> Any:
    """`value` unchanged; 400 invalid_phone_number for a string with more than a number in it."""
    if isinstance(value, str) and value.strip() and not _NUMBER_TEXT.fullmatch(value.strip()):
        raise ApiError(
            400,
            "invalid_phone_number",
            "The phone number must be in E.164 form: + and the digits (spaces, dashes, dots and brackets allowed).",
        )
    return value


def _note(value: Any, name: str, max_len: int = MAX_NOTE) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise ApiError(400, f"invalid_{name}", f"{name} must be a string of at most {max_len} characters.")
    return value.strip() or None


# ---- outbound calls ------------------------------------------------------------------------
@bp.post("/calls")
def place_call():
    body = _body({"phone_number"})
    try:
        call = outbound.place_call(
            get_store(), _settings(), _number(body.get("phone_number")), lock_dir=current_app.config["DATA_DIR"]
        )
    except outbound.CallRefused as exc:
        headers = {"Retry-After": "30"} if exc.status in (429, 503) else {}
        raise ApiError(exc.status, exc.code, exc.message, headers) from None
    return call, 202, {"Location": f"/api/calls/{call['id']}"}


@bp.get("/calls/<call_id>")
def call_state(call_id: str):
    view = outbound.call_view(get_store(), call_id)
    if view is None:
        raise ApiError(404, "not_found", "There is no outbound call with this id.")
    return view


# ---- the do-not-call list ------------------------------------------------------------------
def _query_number() -> str:
    unknown = sorted(set(request.args) - {"phone_number", "reason"})
    if unknown:
        raise ApiError(400, "unknown_parameter", "This route takes: phone_number, reason.")
    raw = request.args.get("phone_number", "")
    if raw.startswith(" "):  # an unencoded "+" in a query string arrives as a space
        raw = "+" + raw.lstrip()
    if not raw:
        raise ApiError(400, "missing_phone_number", "The phone_number parameter is required.")
    return _number(raw)


@bp.get("/dnc")
def dnc_list():
    if request.args:
        raise ApiError(400, "unknown_parameter", "This route takes no parameters.")
    entries = dnc.listed(get_store())
    return {"dnc": entries, "count": len(entries)}


@bp.post("/dnc")
def dnc_add():
    body = _body({"phone_number", "note"})
    note = _note(body.get("note"), "note")
    try:
        entry, created = dnc.add(get_store(), _number(body.get("phone_number")) or "", source="api", note=note)
    except InvalidPhoneNumber as exc:
        raise ApiError(400, "invalid_phone_number", str(exc)) from None
    return {"entry": entry, "created": created}, 201 if created else 200


@bp.delete("/dnc")
def dnc_remove():
    raw = _query_number()
    reason = _note(request.args.get("reason"), "reason", MAX_REASON)
    who = f"api ({request.remote_addr or 'unknown address'})"
    removed = dnc.remove(get_store(), raw, by=who, reason=reason)
    if removed is None:
        raise ApiError(404, "not_listed", "This number is not on the do-not-call list.")
    return {"removed": removed}


# ---- Twilio's status callback ----------------------------------------------------------------
def _signed_url(settings: Settings) -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL + path (+ query) behind a proxy, else this request's
    URL (which ProxyFix has already rebuilt from X-Forwarded-* when TRUST_PROXY is on)."""
    if settings.public_base_url:
        query = request.query_string.decode("latin-1")
        return settings.public_base_url.rstrip("/") + request.path + (f"?{query}" if query else "")
    return iri_to_uri(request.url)


def _check_signature(settings: Settings) -> None:
    if not settings.twilio_auth_token:  # nothing can match: refused like a wrong signature
        raise ApiError(403, "twilio_not_configured", "TWILIO_AUTH_TOKEN is not set; no callback can be checked.")
    signature = request.headers.get("X-Twilio-Signature", "")
    validator = RequestValidator(settings.twilio_auth_token)
    if not signature or not validator.validate(_signed_url(settings), request.form, signature):
        raise ApiError(403, "invalid_signature", "The X-Twilio-Signature header does not match this request.")


def _customer_number(form: Any) -> str | None:
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


def record_twilio_status(store: Store, form: Any, call_id: str | None) -> dict[str, Any]:
    """Record a CallStatus change on the matching outbound call / session; a repeat (Twilio
    retries) of the status already recorded for that CallSid writes nothing."""
    sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
    if not (0 < len(sid) <= 64 and 0 < len(status) <= 32):
        raise ApiError(400, "invalid_callback", "CallSid and CallStatus are required.")
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


@webhook_bp.post("/twilio/status")
def twilio_status():
    settings = _settings()
    _check_signature(settings)
    call_id = request.args.get("call_id") or None
    return record_twilio_status(get_store(), request.form, call_id)
