"""LiveKit's SIP service: dialing a customer out through the trunk, and SIP REFER transfers.

Both wrap LiveKit's API and turn its answers (and its Twirp errors carrying a SIP status) into
the small result objects of `backend/calls/sip_results.py`; neither raises for a failed call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from livekit.api.twirp_client import ServerError
from livekit.protocol import sip as sip_proto

from backend.calls.numbers import InvalidPhoneNumber, normalize_e164, redact_number
from backend.calls.sip_results import DialResult, TransferResult, outcome_for_sip_status

logger = logging.getLogger(__name__)


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
