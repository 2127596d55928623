"""The end-of-call webhook: each ended call (`call.ended`) and each summary (`call.summary`) is
POSTed to `WEBHOOK_URL` as a JSON event signed per the Standard Webhooks specification, from the
durable job queue (`jobs.py`, kind `webhook`): at least once, retried with backoff for 24 h, and
never lost across restarts, since the queue lives in the store.

- `event_for_call`, `event_for_summary`: the events. An event's id is stable per call and type
  (`evt_call_<session_id>`, `evt_summary_<session_id>`), so a receiver recognises a retry (or a
  second delivery after a worker died mid-attempt) as the same event and can drop it.
- `deliver(backend, job)`: one attempt, the job's handler. It POSTs the event with `webhook-id`
  (the event id, the same at every attempt), `webhook-timestamp` and `webhook-signature` (both
  made afresh at each attempt, as the specification says). A 2xx answer is done; any other
  status, a timeout, a refused connection raise `jobs.Retry` with a clear error, which the job
  queue records with the attempt (`jobs.fail`).
- `delivery_view(job_id, job, events)`: what the API and the dashboard show of one delivery.

No Flask, no LiveKit: it is handed the backend functions (`BackendAgent`), never imports them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import math
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from backend.postcall import jobs
from backend.store.records import iso, utc_now

if TYPE_CHECKING:
    from backend.backend_agent import BackendAgent
    from backend.settings import Settings

log = logging.getLogger(__name__)

KIND = "webhook"  # the job kind
CALL_ENDED = "call.ended"
CALL_SUMMARY = "call.summary"
EVENT_TYPES = (CALL_ENDED, CALL_SUMMARY)
_ID_PREFIX = {CALL_ENDED: "evt_call_", CALL_SUMMARY: "evt_summary_"}
# Retried with backoff (5 s, 10 s, 20 s, ... capped at 1 h, with jitter) until 24 h after the
# event was queued; the attempts are many enough that the deadline is what ends them.
POLICY = jobs.Policy(max_attempts=1000, first_delay=5.0, max_delay=3600.0, deadline_seconds=24 * 3600.0)
# An attempt must end well before its claim runs out (jobs.CLAIM_SECONDS), or a second worker
# could start the same delivery while the first is still waiting.
MAX_TIMEOUT_SECONDS = 60.0
USER_AGENT = "debt-relief-agent-webhooks/1"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64  # what the specification asks of a secret
STATES = ("queued", "delivering", "retrying", "done", "gave_up", "skipped")  # what a delivery shows
_JOB_STATE = {"delivering": "claimed"}  # ... and the job queue's name for it, where it differs
_MAX_READ = 64 * 1024  # of a receiver's answer body, which is read and dropped
_SAFE_REF = re.compile(r"[A-Za-z0-9._~:-]{1,80}")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


# ---- events ------------------------------------------------------------------------------------
def session_ref(session_id: str) -> str:
    """The session id as event and job ids carry it: itself when short and plain, else `sha256-`
    and 32 hex digits of it (ids go into an HTTP header and the store's 128-character keys)."""
    if _SAFE_REF.fullmatch(session_id):
        return session_id
    return "sha256-" + hashlib.sha256(session_id.encode()).hexdigest()[:32]


def event_id(event_type: str, session_id: str) -> str:
    return _ID_PREFIX[event_type] + session_ref(session_id)


def job_id(event_type: str, session_id: str) -> str:
    """The delivery job of one event: `webhook:call.ended:<session_id>`; queued once."""
    return f"{KIND}:{event_type}:{session_ref(session_id)}"


def event_for_call(call_log: dict[str, Any], session: dict[str, Any] | None) -> dict[str, Any]:
    """`call.ended`: the call log and the session as the API shows them."""
    sid = call_log["session_id"]
    return {
        "id": event_id(CALL_ENDED, sid),
        "type": CALL_ENDED,
        "timestamp": call_log["ended_at"],
        "data": {"session_id": sid, "call": call_log, "session": session},
    }


def event_for_summary(session_id: str, summary_result: dict[str, Any]) -> dict[str, Any]:
    """`call.summary`: the summary job's result, when it is ready (timestamp: now)."""
    return {
        "id": event_id(CALL_SUMMARY, session_id),
        "type": CALL_SUMMARY,
        "timestamp": iso(utc_now()),
        "data": {"session_id": session_id, "summary": summary_result},
    }


# ---- settings ----------------------------------------------------------------------------------
def enabled(settings: Settings) -> bool:
    """Events are queued only when both WEBHOOK_URL and WEBHOOK_SECRET are set."""
    return bool(settings.webhook_url and settings.webhook_secret)


def problems(settings: Settings) -> list[str]:
    """What is wrong with the webhook settings, in sentences that never quote the secret."""
    url, secret = settings.webhook_url, settings.webhook_secret
    if not url and not secret:
        return []
    out = []
    if not url:
        out.append("WEBHOOK_SECRET is set but WEBHOOK_URL is not: no webhook events are queued.")
    elif not _url_ok(url):
        out.append("WEBHOOK_URL must be an http:// or https:// URL.")
    if not secret:
        out.append("WEBHOOK_URL is set but WEBHOOK_SECRET is not: no webhook events are queued.")
    elif _signer(secret) is None:
        out.append("WEBHOOK_SECRET is not a Standard Webhooks secret (whsec_ followed by base64).")
    elif not MIN_SECRET_BYTES <= _secret_bytes(secret) <= MAX_SECRET_BYTES:
        out.append(
            f"WEBHOOK_SECRET is {_secret_bytes(secret)} bytes once decoded; Standard Webhooks asks for "
            f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} (it is used as it is)."
        )
    timeout = settings.webhook_timeout_seconds
    if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        out.append(
            f"WEBHOOK_TIMEOUT_SECONDS must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g}; "
            f"{_timeout(settings):g} is used."
        )
    return out


def _url_ok(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _port = parts.port  # a port that is not a number raises here, not mid-attempt
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _secret_bytes(secret: str) -> int:
    body = secret.removeprefix("whsec_")
    return len(base64.b64decode(body + "=" * (-len(body) % 4), validate=True))


def _signer(secret: str) -> Webhook | None:
    try:
        if not _B64.fullmatch(secret.removeprefix("whsec_")) or not _secret_bytes(secret):
            return None
        return Webhook(secret)
    except Exception:  # the library's own refusals: binascii.Error, EmptyWebhookSecretError, RuntimeError
        return None


def _timeout(settings: Settings) -> float:
    return min(max(settings.webhook_timeout_seconds, 0.1), MAX_TIMEOUT_SECONDS)


# ---- one attempt ---------------------------------------------------------------------------------
class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other non-2xx (urllib would turn the POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def body_of(event: dict[str, Any]) -> str:
    """The exact text that is signed and sent."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def signed_headers(signer: Webhook, msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    now = now or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(now.timestamp())),
        "webhook-signature": signer.sign(msg_id, now, body),
    }


def deliver(backend: BackendAgent, job: dict[str, Any]) -> dict[str, Any]:
    """POST the job's event to WEBHOOK_URL, signed; the result when the receiver answers 2xx,
    else `jobs.Retry` with the reason (the job queue records it and tries again later)."""
    settings = backend.settings
    event = (job.get("payload") or {}).get("event")
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise jobs.Skip("the job holds no event to send")
    if not settings.webhook_url or not _url_ok(settings.webhook_url):
        raise jobs.Retry("WEBHOOK_URL is not set, or is not an http:// or https:// URL.")
    signer = _signer(settings.webhook_secret or "")
    if signer is None:
        raise jobs.Retry("WEBHOOK_SECRET is not set, or is not a Standard Webhooks secret (whsec_ + base64).")
    timeout = _timeout(settings)
    body = body_of(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(signer, event["id"], body),
    }
    attempt = job.get("attempts", 0) + 1
    started = time.monotonic()
    status = _post(settings.webhook_url, body.encode(), headers, timeout)
    response_ms = round((time.monotonic() - started) * 1000, 1)
    if not 200 <= status < 300:
        note = " (redirects are not followed)" if 300 <= status < 400 else ""
        raise jobs.Retry(f"HTTP {status} from receiver{note}")
    log.info("webhook %s delivered: HTTP %d in %.0f ms (attempt %d)", event["id"], status, response_ms, attempt)
    return {
        "status": status,
        "attempts": attempt,
        "response_ms": response_ms,
        "webhook_id": event["id"],
        "delivered_at": iso(utc_now()),
    }


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """The receiver's HTTP status; `jobs.Retry` when there is none. The timeout bounds the
    connection and each read (a receiver that trickles bytes is not cut off at the total)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:  # a non-2xx answer
        with exc:
            _drain(exc)
        return exc.code
    except urllib.error.URLError as exc:
        raise jobs.Retry(_reason(exc.reason, timeout)) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise jobs.Retry(_reason(exc, timeout)) from None
    with response:
        _drain(response)  # the status is what counts: a body cut short changes nothing
        return response.status


def _drain(response: Any) -> None:
    with contextlib.suppress(OSError, http.client.HTTPException):
        response.read(_MAX_READ)


def _reason(exc: BaseException | str, timeout: float) -> str:
    """A failed attempt in words (never the URL, which may carry a token)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | http.client.RemoteDisconnected | BrokenPipeError):
        return "the receiver closed the connection without answering"
    if isinstance(exc, socket.gaierror):
        return "the receiver's host name could not be resolved"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the receiver's TLS certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, http.client.HTTPException):
        return f"the receiver's answer is not valid HTTP ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or type(exc).__name__}"
    return f"could not send the request ({type(exc).__name__})"  # its text may quote the URL


# ---- what the API and the dashboard show -------------------------------------------------------
def job_states(state: str | None) -> tuple[str, ...] | None:
    """The job queue's states for a delivery state filter (None: every state)."""
    return None if state is None else (_JOB_STATE.get(state, state),)


def delivery_view(job_id: str, job: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """One delivery: its event, state, attempts (each with when, which worker, and its error or
    answer), the last error, when it is tried next and when it was delivered."""
    payload = job.get("payload") or {}
    event = payload.get("event") or {}
    state = {v: k for k, v in _JOB_STATE.items()}.get(job.get("state", ""), job.get("state"))
    history = attempts(events)
    result = job.get("result") or {}
    not_before = job.get("not_before")
    return {
        "job_id": job_id,
        "event_id": event.get("id"),
        "type": event.get("type"),
        "session_id": payload.get("session_id"),
        "state": state,
        "attempts": len(history),
        "last_error": job.get("error") or job.get("reason"),
        "queued_at": _at(job.get("created")),
        "next_attempt_at": _at(not_before) if state in ("queued", "retrying") else None,
        "delivered_at": result.get("delivered_at") if state == "done" else None,
        "response_status": result.get("status"),
        "response_ms": result.get("response_ms"),
        "history": history,
    }


def attempts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attempts of one job, from its events in write order: each claim starts one; the next
    `retrying`, `gave_up`, `done` or `skipped` ends it. A claim followed by another claim is an
    attempt whose worker stopped before it could record an answer (its claim ran out)."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for entry in events:
        data, at = entry["data"], entry["timestamp"]
        state = data.get("state")
        if state == "claimed":
            if current is not None:
                current.update(ended_at=None, outcome="abandoned", error="the worker stopped before answering")
            current = {"attempt": len(out) + 1, "started_at": at, "worker": data.get("worker")}
            current.update(ended_at=None, outcome="in_progress", error=None, status=None, response_ms=None)
            out.append(current)
        elif state in ("retrying", "gave_up", "done", "skipped") and current is not None:
            current["ended_at"] = at
            if state == "done":
                result = data.get("result") or {}
                current.update(outcome="delivered", status=result.get("status"), response_ms=result.get("response_ms"))
            else:
                current.update(outcome="failed" if state != "skipped" else "skipped")
                current["error"] = data.get("error") or data.get("reason")
            current = None
    return out


def _at(epoch_seconds: float | None) -> str | None:
    return iso(datetime.fromtimestamp(epoch_seconds, UTC)) if isinstance(epoch_seconds, int | float) else None
