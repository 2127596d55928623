"""The telephony routes: outbound calls (`POST /api/calls`, `GET /api/calls/<id>`), the
do-not-call list (`GET, POST, DELETE /api/dnc`) and Twilio's status callback
(`POST /api/webhooks/twilio/status`, checked by Twilio's signature instead of a bearer token).

The rules live in `backend/calls/` behind the backend functions; this module turns HTTP into
calls of them and their refusals into the API's error envelope.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request
from twilio.request_validator import RequestValidator
from werkzeug.urls import iri_to_uri

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.errors import ApiError
from backend.calls.numbers import InvalidPhoneNumber
from backend.calls.outbound import CallRefused
from backend.settings import Settings

bp = Blueprint("api_sip", __name__, url_prefix="/api")
bp.before_request(require_token)
webhook_bp = Blueprint("api_twilio_webhook", __name__, url_prefix="/api/webhooks")  # no bearer token

MAX_NOTE = 500
# A removal's reason travels in the query string, and gunicorn refuses a request line over 4094
# bytes (414): 300 characters fit even when each is 4 bytes of UTF-8, percent-encoded to 12.
MAX_REASON = 300


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
        call = get_backend().place_call(body.get("phone_number"))
    except CallRefused as exc:
        headers = {"Retry-After": "30"} if exc.status in (429, 503) else {}
        raise ApiError(exc.status, exc.code, exc.message, headers) from None
    return call, 202, {"Location": f"/api/calls/{call['id']}"}


@bp.get("/calls/<call_id>")
def call_state(call_id: str):
    view = get_backend().outbound_call(call_id)
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
    return raw


@bp.get("/dnc")
def dnc_list():
    if request.args:
        raise ApiError(400, "unknown_parameter", "This route takes no parameters.")
    entries = get_backend().do_not_call_list()
    return {"dnc": entries, "count": len(entries)}


@bp.post("/dnc")
def dnc_add():
    body = _body({"phone_number", "note"})
    note = _note(body.get("note"), "note")
    try:
        entry, created = get_backend().add_to_do_not_call(body.get("phone_number") or "", source="api", note=note)
    except InvalidPhoneNumber as exc:
        raise ApiError(400, "invalid_phone_number", str(exc)) from None
    return {"entry": entry, "created": created}, 201 if created else 200


@bp.delete("/dnc")
def dnc_remove():
    raw = _query_number()
    reason = _note(request.args.get("reason"), "reason", MAX_REASON)
    who = f"api ({request.remote_addr or 'unknown address'})"
    try:
        removed = get_backend().remove_from_do_not_call(raw, by=who, reason=reason)
    except InvalidPhoneNumber as exc:
        raise ApiError(400, "invalid_phone_number", str(exc)) from None
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


@webhook_bp.post("/twilio/status")
def twilio_status():
    settings = _settings()
    _check_signature(settings)
    call_id = request.args.get("call_id") or None
    return get_backend().record_carrier_status(request.form.to_dict(), call_id)
