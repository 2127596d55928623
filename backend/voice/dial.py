"""Placing an outbound call from inside the agent's job.

`POST /api/calls` dispatches the agent into a fresh room with `{"phone_number", "call_id"}` in
the job metadata. `dial_customer` opens the session (direction outbound), marks the call
`dialing`, dials the number through SIP_OUTBOUND_TRUNK_ID with `create_sip_participant` and waits
until it is answered. Answered: the call is marked `answered` and the conversation runs as for an
inbound caller. Busy, no answer, rejected or failed: the call is marked `failed` with the SIP
status, and the session ends at once with the matching reason (`DialResult.end_reason`) and the
SIP status in the call log's `details`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents import JobContext

from backend.calls.numbers import InvalidPhoneNumber, redact_number
from backend.calls.sip_results import DialResult
from backend.livekit import sip
from backend.livekit.rooms import RINGING_TIMEOUT_S, livekit_api
from backend.settings import Settings
from backend.voice.caller import dispatch_call_id

if TYPE_CHECKING:
    from backend.backend_agent import BackendAgent

log = logging.getLogger(__name__)

CUSTOMER_IDENTITY = "customer"
JOIN_TIMEOUT = 15.0  # seconds for the answered participant to show up in the room


async def dial_customer(
    lkapi: Any,
    backend: BackendAgent,
    *,
    settings: Settings,
    room_name: str,
    session_id: str,
    phone_number: str,
    call_id: str | None = None,
) -> DialResult:
    """Open the outbound session, dial, and record what became of it (see the module doc).

    Returns the DialResult; when it is not answered the session has already ended."""
    began = time.monotonic()

    async def record(state: str | None, **data: Any) -> None:
        if call_id:
            await asyncio.to_thread(backend.record_dial, call_id, state, **data)

    opened = await asyncio.to_thread(backend.start_session, session_id, phone_number, "outbound", phone_number)
    if not opened.get("success"):
        raise RuntimeError(f"could not open session {session_id}: {opened.get('message')}")
    # should this process die while dialing, the next one writes the call log
    await asyncio.to_thread(backend.claim_lease, session_id, phone_number)
    await record("dialing", session_id=session_id, room=room_name)
    result = await _dial(lkapi, backend, settings, room_name, phone_number)
    if result.answered:
        await record("answered", participant_identity=result.participant_identity, sip_call_id=result.sip_call_id)
        return result
    reason = "do_not_call_request" if result.error == "do_not_call" else result.end_reason
    details = {
        "dial_outcome": result.outcome,
        "sip_status_code": result.sip_status_code,
        "sip_status": result.sip_status,
        "error": result.error,
    }
    await record("failed", end_reason=reason, **details)
    ended = await asyncio.to_thread(
        backend.end_call,
        reason,
        phone_number,
        duration_seconds=round(time.monotonic() - began, 3),
        session_id=session_id,
        details={k: v for k, v in details.items() if v is not None},
    )
    if not ended.get("success"):
        log.error("could not write the call log of session %s: %s", session_id, ended.get("message"))
    return result


async def _dial(lkapi: Any, backend: BackendAgent, settings: Settings, room_name: str, number: str) -> DialResult:
    """Dial, unless the call cannot or must not be placed (then a failed result, not dialed)."""
    if not settings.sip_outbound_trunk_id:
        log.error("outbound call not placed: SIP_OUTBOUND_TRUNK_ID is not set")
        return DialResult(outcome="failed", error="SIP_OUTBOUND_TRUNK_ID is not set")
    if await asyncio.to_thread(backend.on_do_not_call_list, number):  # listed since the call was queued
        log.warning("outbound call to %s not placed: on the do-not-call list", redact_number(number))
        return DialResult(outcome="failed", error="do_not_call")
    try:
        return await sip.dial_out(
            lkapi,
            room_name=room_name,
            trunk_id=settings.sip_outbound_trunk_id,
            phone_number=number,
            participant_identity=CUSTOMER_IDENTITY,
            ringing_timeout_s=RINGING_TIMEOUT_S,
        )
    except InvalidPhoneNumber as exc:
        return DialResult(outcome="failed", error=f"invalid_phone_number: {exc}")


async def connect_outbound(
    ctx: JobContext, backend: BackendAgent, settings: Settings, session_id: str, phone_number: str
) -> rtc.RemoteParticipant | None:
    """In the job: dial `phone_number` and return the answered participant, or end the job
    (None) when nobody answered or the line dropped before the participant joined."""
    async with livekit_api(settings) as lkapi:
        result = await dial_customer(
            lkapi,
            backend,
            settings=settings,
            room_name=ctx.room.name,
            session_id=session_id,
            phone_number=phone_number,
            call_id=dispatch_call_id(ctx.job.metadata),
        )
    if result.answered:
        try:
            return await asyncio.wait_for(ctx.wait_for_participant(identity=result.participant_identity), JOIN_TIMEOUT)
        except TimeoutError:
            log.warning("the answered outbound call left before joining the room (session %s)", session_id)
            await asyncio.to_thread(
                backend.end_call, "caller_hung_up", phone_number, duration_seconds=None, session_id=session_id
            )
    ctx.delete_room()
    ctx.shutdown(reason=f"outbound call not connected: {result.outcome}")
    return None


async def record_completion(backend: BackendAgent, call_id: str | None, call_log: dict[str, Any] | None) -> None:
    """Mark an answered outbound call completed once its call log is written."""
    if call_id and call_log:
        await asyncio.to_thread(backend.record_dial, call_id, "completed", end_reason=call_log.get("reason"))
