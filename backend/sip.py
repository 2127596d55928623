"""SIP helpers for outbound calls and transfers: number checks, calling hours, dialing, SIP REFER.

Pure functions (`normalize_e164`, `timezones_for_number`, `within_calling_hours`) need no network.
`dial_out` and `transfer_to_specialist` wrap LiveKit's SIP service and turn its answers (and its
Twirp errors carrying a SIP status) into small result objects the agent and the API can act on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import aiohttp
import phonenumbers
from livekit.api.twirp_client import ServerError
from livekit.protocol import sip as sip_proto
from phonenumbers import timezone as pn_timezone

from backend.hours import in_window, parse_calling_hours

logger = logging.getLogger(__name__)

DialOutcome = Literal["answered", "busy", "no_answer", "rejected", "failed"]

# SIP final responses and what they mean for an outbound call.
BUSY_SIP_CODES = frozenset({486, 600})  # Busy Here, Busy Everywhere
NO_ANSWER_SIP_CODES = frozenset({408, 480, 487})  # Request Timeout, Temporarily Unavailable, Terminated
REJECTED_SIP_CODES = frozenset({403, 603})  # Forbidden, Decline

# How an outbound call that never became a conversation ends the session (contract section 1).
# busy / no answer: nobody was reached and a later attempt may reach them, like voicemail
# (outcome no_contact). rejected: the called party (or their carrier) declined the call, so the
# other side hung up before we spoke (outcome incomplete). failed: our side or the network
# failed (outcome incomplete). The SIP status travels with the result, so nothing is lost.
OUTBOUND_END_REASONS: dict[str, str] = {
    "busy": "voicemail",
    "no_answer": "voicemail",
    "rejected": "caller_hung_up",
    "failed": "agent_error",
}
# A failed call whose SIP status says the number does not exist is a wrong number (no_contact).
WRONG_NUMBER_SIP_CODES = frozenset({404, 484, 604})  # Not Found, Address Incomplete, Does Not Exist

DEFAULT_CALLING_HOURS = "08:00-21:00"


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number in E.164 form (`+` then country code and number)."""


def normalize_e164(number: str, default_region: str | None = None) -> str:
    """Return `number` in E.164 form (`+12125551234`), or raise InvalidPhoneNumber.

    Spaces, dashes, dots and brackets are accepted. Without `default_region` the number must
    start with `+` and its country code; with it (for example "US"), national forms are read in
    that region. The number must be valid for its region (phonenumbers' metadata), not only
    possible: `+1 555 123 4567` is refused, since 555 is no area code.
    """
    if not isinstance(number, str) or not number.strip():
        raise InvalidPhoneNumber("A phone number is required.")
    text = number.strip()
    if default_region is None and not text.startswith("+"):
        raise InvalidPhoneNumber("The phone number must be in E.164 form, starting with + and the country code.")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"The phone number cannot be read: {exc._msg}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("The phone number is not a valid number for its country.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def redact_number(number: str | None) -> str:
    """A phone number safe for INFO logs: country code kept, all but the last two digits masked."""
    if not number:
        return "<none>"
    digits = number.lstrip("+")
    if len(digits) <= 4:
        return "***"
    return f"+{digits[:1]}{'*' * (len(digits) - 3)}{digits[-2:]}"


def timezones_for_number(number: str) -> list[str]:
    """IANA time zones of the area the number belongs to (sorted; empty when unknown).

    From the area code via phonenumbers' geocoding data: `+12125551234` gives
    `["America/New_York"]`; an area code that spans zones (`+1 208` Idaho) gives all of them.
    Raises InvalidPhoneNumber for an invalid number.
    """
    parsed = phonenumbers.parse(normalize_e164(number), None)
    zones = pn_timezone.time_zones_for_number(parsed)
    return sorted(z for z in zones if z != pn_timezone.UNKNOWN_TIMEZONE)


def within_calling_hours(
    number: str, calling_hours: str = DEFAULT_CALLING_HOURS, now: datetime | None = None
) -> tuple[bool, dict[str, Any]]:
    """Whether it is within `calling_hours` at the called party, using the stricter of zones.

    The number's candidate time zones come from its area code (`timezones_for_number`); the call
    is allowed only when the local time is inside the window in every candidate zone. A number
    whose zone is unknown is refused (we cannot show it is within hours). `now` defaults to the
    current time; a naive `now` is taken as UTC. Raises InvalidPhoneNumber for an invalid number
    and ValueError for a malformed `calling_hours`.

    Returns `(allowed, details)`; details has `calling_hours`, `timezones`, `local_times`
    (zone -> "HH:MM"), `outside` (zones where it is outside the window) and `reason`
    (`within_hours`, `outside_hours` or `unknown_timezone`).
    """
    start, end = parse_calling_hours(calling_hours)
    zones = timezones_for_number(number)
    current = now or datetime.now(UTC)
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    local_times = {zone: current.astimezone(ZoneInfo(zone)) for zone in zones}
    outside = [zone for zone, local in local_times.items() if not in_window(local.time(), start, end)]
    allowed = bool(zones) and not outside
    reason = "unknown_timezone" if not zones else ("within_hours" if allowed else "outside_hours")
    details = {
        "calling_hours": calling_hours,
        "timezones": zones,
        "local_times": {zone: local.strftime("%H:%M") for zone, local in local_times.items()},
        "outside": outside,
        "reason": reason,
    }
    return allowed, details


@dataclass(frozen=True)
class DialResult:
    """What became of an outbound dial. `outcome` is answered, busy, no_answer, rejected or failed."""

    outcome: DialOutcome
    sip_status_code: int | None = None
    sip_status: str | None = None
    participant_identity: str | None = None
    participant_id: str | None = None
    sip_call_id: str | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"

    @property
    def call_state(self) -> str:
        """The state for `GET /api/calls/<id>`: `answered` or `failed`."""
        return "answered" if self.answered else "failed"

    @property
    def end_reason(self) -> str | None:
        """The contract end reason for a call that did not connect (None when answered)."""
        return end_reason_for(self)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["call_state"] = self.call_state
        data["end_reason"] = self.end_reason
        return data


def end_reason_for(result: DialResult) -> str | None:
    """Map a dial result to the session's end reason (see OUTBOUND_END_REASONS)."""
    if result.answered:
        return None
    if result.outcome == "failed" and result.sip_status_code in WRONG_NUMBER_SIP_CODES:
        return "wrong_number"
    return OUTBOUND_END_REASONS[result.outcome]


def outcome_for_sip_status(code: int | None) -> DialOutcome:
    """Classify a SIP final response code of a call that was not answered."""
    if code in BUSY_SIP_CODES:
        return "busy"
    if code in NO_ANSWER_SIP_CODES:
        return "no_answer"
    if code in REJECTED_SIP_CODES:
        return "rejected"
    return "failed"


def _sip_status_of(err: ServerError) -> tuple[int | None, str | None]:
    meta = err.metadata or {}
    raw = meta.get("sip_status_code")
    try:
        code = int(raw) if raw is not None else None
    except (TypeError, ValueError):
        code = None
    return code, meta.get("sip_status")


async def dial_out(
    lkapi: Any,
    *,
    room_name: str,
    trunk_id: str,
    phone_number: str,
    participant_identity: str,
    wait_until_answered: bool = True,
    participant_name: str | None = None,
    ringing_timeout_s: int | None = None,
) -> DialResult:
    """Dial `phone_number` into `room_name` through outbound trunk `trunk_id` and wait for an answer.

    `lkapi` is a `livekit.api.LiveKitAPI`. A Twirp error that carries a SIP status becomes busy
    (486/600), no_answer (408/480/487), rejected (403/603) or failed (any other); other API and
    network errors become failed with no SIP status. Raises InvalidPhoneNumber for a bad number
    (callers validate first); any other exception is a bug and propagates.
    """
    number = normalize_e164(phone_number)
    request = sip_proto.CreateSIPParticipantRequest(
        sip_trunk_id=trunk_id,
        sip_call_to=number,
        room_name=room_name,
        participant_identity=participant_identity,
        participant_name=participant_name or "Caller",
        wait_until_answered=wait_until_answered,
    )
    if ringing_timeout_s:
        request.ringing_timeout.seconds = int(ringing_timeout_s)
    try:
        info = await lkapi.sip.create_sip_participant(request)
    except ServerError as err:
        code, status = _sip_status_of(err)
        outcome = outcome_for_sip_status(code)
        logger.info(
            "outbound call to %s not connected: %s (SIP %s %s, twirp %s)",
            redact_number(number),
            outcome,
            code,
            status,
            err.code,
        )
        return DialResult(
            outcome=outcome,
            sip_status_code=code,
            sip_status=status,
            participant_identity=participant_identity,
            error=f"{err.code}: {err.message}",
        )
    except (aiohttp.ClientError, TimeoutError) as err:
        logger.warning("outbound call to %s failed: %r", redact_number(number), err)
        return DialResult(outcome="failed", participant_identity=participant_identity, error=repr(err))
    logger.info("outbound call to %s answered (%s)", redact_number(number), info.sip_call_id)
    return DialResult(
        outcome="answered",
        participant_identity=info.participant_identity or participant_identity,
        participant_id=info.participant_id or None,
        sip_call_id=info.sip_call_id or None,
    )


@dataclass(frozen=True)
class TransferResult:
    """What became of a SIP REFER. `ok` only when LiveKit reports the transfer successful."""

    ok: bool
    status: str  # successful, failed, ongoing (not accepted in time) or error (the request failed)
    reason: str | None = None  # LiveKit's SIPTransferReason name, e.g. STR_REJECTED
    sip_status_code: int | None = None
    sip_status: str | None = None
    transfer_id: str | None = None
    error: str | None = None

    @property
    def end_reason(self) -> str | None:
        """None when the caller was handed over; else `transfer_failed` (the call-back fallback)."""
        return None if self.ok else "transfer_failed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["end_reason"] = self.end_reason
        return data


_TRANSFER_STATUS_NAMES = {
    sip_proto.STS_TRANSFER_SUCCESSFUL: "successful",
    sip_proto.STS_TRANSFER_FAILED: "failed",
    sip_proto.STS_TRANSFER_ONGOING: "ongoing",
}


def transfer_target(transfer_to: str) -> str:
    """The REFER target: `sip:`/`tel:` URIs pass through; a phone number becomes `tel:+E164`."""
    text = transfer_to.strip()
    if text.startswith(("sip:", "sips:", "tel:")):
        return text
    return f"tel:{normalize_e164(text)}"


async def transfer_to_specialist(
    lkapi: Any,
    *,
    room_name: str,
    participant_identity: str,
    transfer_to: str,
    play_dialtone: bool = False,
) -> TransferResult:
    """Transfer the caller to `transfer_to` with SIP REFER; never raises.

    Success needs LiveKit's response status STS_TRANSFER_SUCCESSFUL: a response with any other
    status (failed, or still ongoing) is reported as not ok, as is a raised API or network error
    and a `transfer_to` that is no valid number. Unexpected exceptions are logged with their
    traceback and reported as status `error`, so the caller can always fall back to a call-back.
    """
    try:
        target = transfer_target(transfer_to)
        request = sip_proto.TransferSIPParticipantRequest(
            room_name=room_name,
            participant_identity=participant_identity,
            transfer_to=target,
            play_dialtone=play_dialtone,
        )
        response = await lkapi.sip.transfer_sip_participant(request)
    except InvalidPhoneNumber as err:
        logger.error("transfer not attempted: TRANSFER_NUMBER is invalid (%s)", err)
        return TransferResult(ok=False, status="error", error=f"invalid_transfer_number: {err}")
    except ServerError as err:
        code, status = _sip_status_of(err)
        reason = (err.metadata or {}).get("sip_transfer_reason")
        logger.warning("transfer failed: twirp %s, SIP %s %s, reason %s", err.code, code, status, reason)
        return TransferResult(
            ok=False,
            status="failed" if (code or reason) else "error",
            reason=reason,
            sip_status_code=code,
            sip_status=status,
            transfer_id=(err.metadata or {}).get("sip_transfer_id"),
            error=f"{err.code}: {err.message}",
        )
    except asyncio.CancelledError:
        raise
    except Exception as err:  # a transfer must always fall back; the traceback is logged in full
        logger.exception("transfer failed with an unexpected error")
        return TransferResult(ok=False, status="error", error=repr(err))

    status_name = _TRANSFER_STATUS_NAMES.get(response.status, f"unknown({response.status})")
    sip_code = response.sip_status.code if response.HasField("sip_status") else None
    result = TransferResult(
        ok=response.status == sip_proto.STS_TRANSFER_SUCCESSFUL,
        status=status_name,
        reason=sip_proto.SIPTransferReason.Name(response.reason) if response.reason else None,
        sip_status_code=int(sip_code) if sip_code else None,
        sip_status=(response.sip_status.status or None) if response.HasField("sip_status") else None,
        transfer_id=response.transfer_id or None,
    )
    if not result.ok:
        logger.warning("transfer not accepted: status %s, reason %s", result.status, result.reason)
    return result
