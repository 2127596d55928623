"""Ending a call: the call log (exactly one per session), the goodbye, and the hang-up.

Two ways a call ends:
- the model calls `end_call`: `write_call_log` saves the outcome, `schedule_hangup` waits for the
  goodbye to play out, runs the `before_hangup` hooks, deletes the LiveKit room and closes the
  session;
- anything else (the caller hangs up, the line drops, the model session fails): the job's
  shutdown callback calls `finish_call`, which writes the call log with `caller_hung_up` or
  `agent_error` and the real duration, unless `end_call` already wrote it.
Either way a recorded call's recording (RECORDING=on) is stopped once, its end saved
(`backend/voice/recording.py`): by a `before_hangup` hook, else by `finish_call`.

A qualified caller who wants a specialist now (`customer_qualified_transfer`, with
TRANSFER_NUMBER set and a SIP caller) is the one case where the call log waits: the agent tells
the caller it is connecting them, the hang-up task transfers the SIP participant (SIP REFER) once
that has played, and only then writes the call log: `customer_qualified_transfer` when LiveKit
reports the transfer successful, else `transfer_failed`, after which the agent says a specialist
will call back. Exactly one call log either way, also when the caller hangs up mid-transfer.

An opt-out (`do_not_call_request`, or a fact saved with `opt_out` = true) puts the caller's
number on the do-not-call list (`BackendAgent.opt_out`, which retries). An opt-out that could not
be saved is never confirmed to the caller: the tool tells the model so, the failure is logged at
ERROR, the call log keeps `do_not_call_request`, and the next agent start lists the number from
that call log (`BackendAgent.reconcile_opt_outs`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from livekit.agents import AgentSession, CloseEvent, CloseReason, ErrorEvent, llm

from backend.calls.leases import HEARTBEAT_SECONDS
from backend.livekit.rooms import TRANSFER_TIMEOUT
from backend.voice import recording
from backend.voice.prompts import prompt
from backend.voice.state import Userdata

if TYPE_CHECKING:
    from livekit.agents.voice.events import SpeechCreatedEvent
    from livekit.agents.voice.speech_handle import SpeechHandle

log = logging.getLogger(__name__)

GOODBYE_TIMEOUT = 5.0  # seconds to wait for a realtime model's spoken reply to end_call
DRAIN_TIMEOUT = 5.0  # seconds to wait for in-flight store writes before the final call log
CALLBACK_SPEECH_TIMEOUT = 15.0  # seconds to wait for "a specialist will call you back" to play
TRANSFER_REASON = "customer_qualified_transfer"


def wants_transfer(ud: Userdata, reason: str) -> bool:
    """Whether ending with `reason` hands the caller to a specialist (see the module doc)."""
    return reason == TRANSFER_REASON and bool(ud.transfer_to and ud.participant_identity and ud.hangup)


async def write_call_log(ud: Userdata, reason: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write this call's log with `reason` and the real duration, once; a later call returns the
    first log with `already_ended`. `details` (e.g. the transfer's SIP status) go into the log.
    With `do_not_call_request` the result carries `opt_out`: whether the number is now listed."""
    await drain_writes(ud)
    async with ud.end_lock:
        if ud.call_ended:
            return {"success": True, "call": ud.call_log, "already_ended": True}
        evidence = ud.disclosures.final()  # fewer than two agent turns: what was heard so far
        if evidence is not None:
            await ud.backend_call("record_disclosures", session_id=ud.session_id, evidence=evidence)
        result = await ud.backend_call(
            "end_call",
            reason=reason,
            caller_id=ud.caller_id,
            duration_seconds=ud.duration_seconds(),
            session_id=ud.session_id,
            details=details,
            usage=ud.model_usage(),
        )
        if result.get("success"):  # the call log released the lease; stop renewing it
            ud.call_ended, ud.call_log, ud.leased = True, result["call"], False
            if ud.heartbeat is not None:
                ud.heartbeat.cancel()
    if result.get("success") and reason == "do_not_call_request":
        result = {**result, "opt_out": await record_opt_out(ud)}
    return result


def claim_lease(ud: Userdata) -> None:
    """Mark the call as in progress until its call log is written, and renew the mark while the
    call runs (`backend/calls/leases.py`), so that if this process dies without a call log, the
    next agent process writes it. Never fails the call."""
    ud.leased = ud.backend.claim_lease(ud.session_id, ud.caller_id)
    if not ud.leased:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # built outside an event loop: the session's records are its signs of life

    def beat() -> None:
        if not ud.leased:
            return
        try:  # off the event loop, in order with the call's store writes
            ud.executor.submit(ud.backend.touch_lease, ud.session_id)
        except RuntimeError:  # the call's store thread is shut down: the call is over
            return
        ud.heartbeat = loop.call_later(HEARTBEAT_SECONDS, beat)

    ud.heartbeat = loop.call_later(HEARTBEAT_SECONDS, beat)


async def record_opt_out(ud: Userdata) -> bool:
    """Put the caller's number on the do-not-call list (once per call); whether it is listed.
    A caller without a phone number (console, web) counts as done: there is nothing to list."""
    if ud.opted_out:
        return True
    result = await ud.backend_call("opt_out", caller_id=ud.caller_id, session_id=ud.session_id)
    if result.get("success"):
        ud.opted_out = True
        log.info(
            "session %s: caller %s the do-not-call list",
            ud.session_id,
            "added to" if result["created"] else "already on",
        )
        return True
    if result.get("error") == "no_phone_number":
        log.info("opt-out in session %s: the caller has no phone number to list", ud.session_id)
        ud.opted_out = True
        return True
    return False  # logged at ERROR by BackendAgent.opt_out; never confirmed to the caller


async def drain_writes(ud: Userdata) -> None:
    """Wait (bounded) for store calls still running so their records count in the call log."""
    pending = list(ud.inflight)
    if pending:
        await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)


async def finish_call(ud: Userdata) -> dict[str, Any] | None:
    """The shutdown path: write the call log unless `end_call` did, then stop the call's
    recording unless the hang-up did. Returns the store's result, or None when the call had
    already ended."""
    await drain_writes(ud)
    try:
        if ud.pending_reason and ud.ending is not None and not ud.ending.done():
            await asyncio.wait({ud.ending}, timeout=TRANSFER_TIMEOUT + CALLBACK_SPEECH_TIMEOUT)
        if ud.call_ended:
            return None
        reason = "agent_error" if ud.agent_error else "caller_hung_up"
        if ud.pending_reason == TRANSFER_REASON:  # qualified, never handed over: call them back
            reason = "transfer_failed"
        result = await write_call_log(ud, reason)
        if not result.get("success"):
            log.error("could not write the call log of session %s: %s", ud.session_id, result.get("message"))
        return result
    finally:
        await recording.stop(ud)  # once: the hang-up may have stopped it already
        ud.executor.shutdown(wait=False)


def watch_for_failure(session: AgentSession, ud: Userdata) -> None:
    """Mark the call as failed when the model session fails, so it ends as `agent_error`."""

    def on_error(ev: ErrorEvent) -> None:
        error = ev.error
        if isinstance(error, llm.RealtimeModelError | llm.LLMError) and not error.recoverable:
            ud.agent_error = type(error.error).__name__

    def on_close(ev: CloseEvent) -> None:
        if ev.error is not None or ev.reason == CloseReason.ERROR:
            ud.agent_error = ud.agent_error or "session_error"

    session.on("error", on_error)
    session.on("close", on_close)


def _model_speaks_after_tools(session: AgentSession) -> bool:
    """A realtime model answers a tool result with a new turn of its own (a new SpeechHandle);
    a text LLM's reply is a step of the same SpeechHandle."""
    model = session.llm
    return isinstance(model, llm.RealtimeModel) and model.capabilities.auto_tool_reply_generation


def schedule_hangup(session: AgentSession, speech: SpeechHandle, ud: Userdata, reason: str) -> asyncio.Task:
    """Hang up once the goodbye has played out. `speech` is the turn that called end_call."""
    replies: asyncio.Future[SpeechHandle] = asyncio.get_running_loop().create_future()

    def on_speech_created(ev: SpeechCreatedEvent) -> None:
        if ev.speech_handle is not speech and not replies.done():
            replies.set_result(ev.speech_handle)

    session.on("speech_created", on_speech_created)  # before awaiting: the reply may come first
    task = asyncio.create_task(_hang_up(session, speech, replies, ud, reason), name="hang-up")
    task.add_done_callback(lambda _: session.off("speech_created", on_speech_created))
    ud.ending = task
    ud.tasks.add(task)
    task.add_done_callback(ud.tasks.discard)
    return task


async def _hang_up(
    session: AgentSession,
    speech: SpeechHandle,
    replies: asyncio.Future[SpeechHandle],
    ud: Userdata,
    reason: str,
) -> None:
    await speech.wait_for_playout()
    if _model_speaks_after_tools(session):
        try:
            goodbye = await asyncio.wait_for(replies, GOODBYE_TIMEOUT)
            await goodbye.wait_for_playout()
        except TimeoutError:
            log.warning("no goodbye after end_call within %.0fs; hanging up", GOODBYE_TIMEOUT)
    if ud.pending_reason == TRANSFER_REASON and not ud.call_ended:
        reason = await transfer_or_call_back(session, ud)
    for hook in ud.before_hangup:
        await hook(ud, reason)
    if ud.hangup is not None:
        try:
            await ud.hangup.delete_room()
        except Exception:  # the session still closes; the job's shutdown ends the call
            log.exception("could not delete the call's room (session %s)", ud.session_id)
    session.shutdown()


async def transfer_or_call_back(session: AgentSession, ud: Userdata) -> str:
    """Transfer the caller; write the call log with the reason that came true and return it.

    Success is LiveKit's successful status, nothing less (`sip.transfer_to_specialist`). On
    failure the caller hears that a specialist will call back before the line closes."""
    assert ud.hangup is not None and ud.participant_identity and ud.transfer_to
    result = await ud.hangup.transfer(ud.participant_identity, ud.transfer_to)
    reason = TRANSFER_REASON if result.ok else "transfer_failed"
    details = {"transfer": {k: v for k, v in result.to_dict().items() if v is not None}}
    logged = await write_call_log(ud, reason, details)
    if not logged.get("success"):
        log.error("could not write the call log of session %s: %s", ud.session_id, logged.get("message"))
    log.info("session %s: transfer %s (%s)", ud.session_id, result.status, reason)
    if not result.ok:
        await say_and_wait(session, prompt("transfer_failed"))
    return reason


async def say_and_wait(session: AgentSession, instructions: str) -> None:
    """Have the model say something now and wait (bounded) until it has played."""
    try:
        handle = session.generate_reply(instructions=instructions)
    except RuntimeError as exc:  # the session is already closing: the caller has gone
        log.info("not said, the session is closing: %s", exc)
        return
    try:
        await asyncio.wait_for(handle.wait_for_playout(), CALLBACK_SPEECH_TIMEOUT)
    except TimeoutError:
        log.warning("the call-back sentence did not finish playing within %.0fs", CALLBACK_SPEECH_TIMEOUT)
