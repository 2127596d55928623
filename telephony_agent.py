"""The telephony agent: Gemini Live on LiveKit, capturing a debt-relief caller's details through
the backend functions while it talks.

    python telephony_agent.py console   # talk to it from this machine (needs GOOGLE_API_KEY)
    python telephony_agent.py dev       # a worker for a LiveKit server, reloading on changes
    python telephony_agent.py start     # a production worker

Importing this module has no side effects; everything happens in `entrypoint`, once per call.
"""

from __future__ import annotations

import logging
import uuid

from livekit import rtc
from livekit.agents import (
    NOT_GIVEN,
    Agent,
    AgentSession,
    JobContext,
    JobProcess,
    TurnHandlingOptions,
    WorkerOptions,
    cli,
    room_io,
)
from livekit.agents.llm import LLM, RealtimeModel

from backend.backend_agent import BackendAgent, freeze_loaded_heap
from backend.calls.numbers import redact_number
from backend.calls.recording import RecordingStart
from backend.livekit.rooms import RoomHangup
from backend.settings import Settings, get_settings
from backend.voice import call, dial
from backend.voice import recording as call_recording
from backend.voice.caller import call_details, dispatch_call_id, dispatch_phone_number
from backend.voice.model import build_realtime_model, gemini_tls_context, warm_up_gemini_types
from backend.voice.prompts import call_instructions, disclosure_check, greeting, raw_prompt
from backend.voice.tools import CallTools, Userdata
from backend.voice.transcript import record_transcript

log = logging.getLogger("telephony_agent")
PROMPTS = ("call_script", "greeting", "outbound_greeting", "returning_caller", "transfer_failed")
# read by the code, never sent to the model
CHECK_FILES = ("disclosure_phrases",)


class DebtReliefAgent(CallTools, Agent):
    """The qualifier. Its tools come from `CallTools`; its script from `prompts/`."""

    async def on_enter(self) -> None:
        ud = self.session.userdata
        self.session.generate_reply(instructions=greeting(outbound=ud.direction == "outbound", recorded=ud.recorded))


def build_agent_session(
    *,
    session_id: str,
    caller_id: str,
    backend: BackendAgent | None = None,
    llm: LLM | RealtimeModel | None = None,
    called_number: str | None = None,
    direction: str = "inbound",
    room_name: str | None = None,
    settings: Settings | None = None,
    participant_identity: str | None = None,
    recording: RecordingStart | None = None,
) -> tuple[AgentSession[Userdata], DebtReliefAgent]:
    """The session and agent of one call, exactly as the entrypoint runs them.

    Opens the session in the store and reads the caller's earlier records (once, at connect,
    before any audio flows). With `room_name` and LiveKit credentials in `settings`, `end_call`
    hangs up by deleting that room; with a SIP `participant_identity` and TRANSFER_NUMBER too,
    `customer_qualified_transfer` transfers the caller to a specialist. `recording` is what
    starting the call's recording gave (`open_call`); the opening disclosure says the call is
    recorded only when it started, and it is saved on the session and stopped when the call ends.
    """
    settings = settings or get_settings()
    backend = backend or BackendAgent(settings=settings, lean=True)
    started = backend.start_session(session_id, caller_id, direction, called_number)
    if not started.get("success"):
        raise RuntimeError(f"could not open session {session_id}: {started.get('message')}")
    earlier = backend.get_shared_information(caller_id=caller_id, limit=20)
    ud = Userdata(
        session_id=session_id,
        caller_id=caller_id,
        backend=backend,
        called_number=called_number,
        direction=direction,
        room_name=room_name,
        hangup=RoomHangup.for_room(room_name, settings),
        participant_identity=participant_identity,
        transfer_to=settings.transfer_number,
        settings=settings,
        recording=recording,
    )
    ud.disclosures = disclosure_check(settings, recording=ud.recorded)
    call.claim_lease(ud)
    call_recording.begin(ud)
    model = llm if llm is not None else build_realtime_model(settings)
    # Gemini detects turns server-side (tuned in backend/voice/model.py); no local VAD needed.
    turns = TurnHandlingOptions(turn_detection="realtime_llm" if isinstance(model, RealtimeModel) else "manual")
    session = AgentSession[Userdata](llm=model, vad=None, userdata=ud, turn_handling=turns)
    call.watch_for_failure(session, ud)
    ud.usage_source = lambda: [u.model_dump() for u in session.usage.model_usage]
    record_transcript(session, ud)
    agent = DebtReliefAgent(instructions=call_instructions(settings, earlier.get("records", []), recorded=ud.recorded))
    return session, agent


async def open_call(
    *,
    session_id: str,
    caller_id: str,
    settings: Settings,
    room_name: str | None,
    backend: BackendAgent | None = None,
    llm: LLM | RealtimeModel | None = None,
    called_number: str | None = None,
    direction: str = "inbound",
    participant_identity: str | None = None,
) -> tuple[AgentSession[Userdata], DebtReliefAgent]:
    """The entrypoint's call set-up: with RECORDING=on, start recording the call's room first
    (bounded by a few seconds; a refusal or failure leaves the call unrecorded and never fails
    it), then `build_agent_session` with what came of it, so the disclosure is the truth."""
    started = await call_recording.start(settings, room_name=room_name, session_id=session_id)
    return build_agent_session(
        session_id=session_id,
        caller_id=caller_id,
        backend=backend,
        llm=llm,
        called_number=called_number,
        direction=direction,
        room_name=room_name,
        settings=settings,
        participant_identity=participant_identity,
        recording=started,
    )


async def connect_participant(
    ctx: JobContext, backend: BackendAgent, settings: Settings, session_id: str
) -> rtc.RemoteParticipant | None:
    """The caller's participant, once they are in the room; None in console mode.

    When the dispatch metadata carries a phone number (`POST /api/calls`), dial it first
    (`backend/voice/dial.py`); an unanswered call ends its session and the job, and gives None.
    """
    if ctx.is_fake_job():
        return None
    await ctx.connect()
    number = dispatch_phone_number(ctx.job.metadata)
    if number is None:
        return await ctx.wait_for_participant()
    return await dial.connect_outbound(ctx, backend, settings, session_id, number)


async def entrypoint(ctx: JobContext) -> None:
    settings = ctx.proc.userdata.get("settings") or get_settings()
    backend = ctx.proc.userdata.get("backend") or BackendAgent(settings=settings, lean=True)
    session_id = str(uuid.uuid4())
    participant = await connect_participant(ctx, backend, settings, session_id)
    if participant is None and not ctx.is_fake_job():
        return  # an outbound call nobody answered: already recorded and ended
    details = call_details(
        participant.identity if participant else None,
        dict(participant.attributes) if participant else None,
        ctx.job.metadata,
    )
    log.info("call %s from %s (%s)", session_id, redact_number(details.caller_id), details.direction)
    session, agent = await open_call(
        session_id=session_id,
        caller_id=details.caller_id,
        backend=backend,
        called_number=details.called_number,
        direction=details.direction,
        room_name=None if ctx.is_fake_job() else ctx.room.name,  # console: no room to delete
        settings=settings,
        participant_identity=participant.identity if _is_sip(participant) else None,
    )
    ud = session.userdata

    async def write_final_call_log() -> None:
        await call.finish_call(ud)
        await dial.record_completion(backend, dispatch_call_id(ctx.job.metadata), ud.call_log)

    ctx.add_shutdown_callback(write_final_call_log)
    session.on("close", lambda ev: ctx.shutdown(reason=f"session closed: {ev.reason.value}"))
    room_options = room_io.RoomOptions(participant_identity=participant.identity if participant else NOT_GIVEN)
    await session.start(agent=agent, room=ctx.room, room_options=room_options)


def _is_sip(participant: rtc.RemoteParticipant | None) -> bool:
    return participant is not None and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def load_backend(settings: Settings) -> BackendAgent:
    """The store handle a worker process keeps for all its calls: lean (it indexes what a call
    writes and reads, not every record: `backend/store/lean.py`), frozen out of the garbage
    collector's full collections (`freeze_loaded_heap`)."""
    backend = BackendAgent(settings=settings, lean=True)
    freeze_loaded_heap()
    return backend


def prewarm(proc: JobProcess) -> None:
    """Once per worker process, before it takes a call: settings, the call script, the Gemini
    types' schemas and TLS context, and the store handle; then the call logs of calls whose
    agent process died without writing one (`backend/calls/leases.py`), and the opt-outs whose
    do-not-call write failed (`BackendAgent.reconcile_opt_outs`)."""
    settings = get_settings()
    proc.userdata["settings"] = settings
    for name in PROMPTS + CHECK_FILES:
        raw_prompt(name)
    warm_up_gemini_types()
    gemini_tls_context()
    proc.userdata["backend"] = backend = load_backend(settings)
    try:
        closed = backend.close_orphaned_calls()
        relisted = backend.reconcile_opt_outs()
    except Exception:  # a failed sweep must not keep the worker from taking calls
        log.exception("could not close the calls of dead agent processes or list failed opt-outs")
    else:
        if closed:
            log.warning("closed %d call(s) whose agent process died without a call log", len(closed))
        if relisted:
            log.warning("put %d caller(s) on the do-not-call list whose opt-out had failed", len(relisted))
    if not (settings.business_name and settings.callback_number):
        log.warning("BUSINESS_NAME or CALLBACK_NUMBER is not set; the opening disclosure will be generic")


if __name__ == "__main__":
    cli.run_app(
        WorkerOptions(
            entrypoint_fnc=entrypoint,
            prewarm_fnc=prewarm,
            agent_name=get_settings().agent_name,
            # prewarm opens the store: seconds at a million records (lean: no snapshot)
            initialize_process_timeout=120,
        )
    )
