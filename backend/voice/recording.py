"""Recording a call (RECORDING=on): a LiveKit Egress of the call's room, audio only.

- `start`, as the call connects and before the agent's instructions and greeting are built: asks
  LiveKit for the recording (bounded by a few seconds, `backend/livekit/egress.py`) and returns
  what came of it. The opening disclosure says the call is recorded only when it really started
  (`Userdata.recorded`); a refused, unreachable or timed-out Egress leaves the call unrecorded,
  and the call goes on.
- `begin`, when the call's `Userdata` exists: saves the start (or why it failed) on the session,
  stops the recording just before the hang-up (a `before_hangup` hook), and, after a start that
  failed in a way that may have started an egress anyway (a timeout), stops whatever egress the
  room has a moment later, so no call is recorded without its disclosure.
- `stop`, from the hang-up hook and from the shutdown path (`call.finish_call`): stops the
  egress and saves the end, exactly once however many times and ways it is called.
"""

from __future__ import annotations

import asyncio
import logging

from backend.calls.recording import RecordingStart, RecordingStop
from backend.livekit import egress
from backend.settings import Settings
from backend.voice.state import Userdata

log = logging.getLogger(__name__)

SWEEP_DELAY_SECONDS = 2.0  # after an uncertain start: time for a late egress to show up in the room


async def start(settings: Settings, *, room_name: str | None, session_id: str) -> RecordingStart | None:
    """Start recording the call's room; None when RECORDING is off. Never raises."""
    if not settings.recording:
        return None
    if not room_name:
        log.warning("session %s not recorded: the call has no LiveKit room (console)", session_id)
        return RecordingStart(ok=False, error="The call has no LiveKit room to record (console mode).")
    return await egress.start_recording(settings, room_name, session_id)


def begin(ud: Userdata) -> None:
    """Save the call's recording start on its session and arrange its end (see the module doc).
    Runs at connect, with the session's other first writes; a failed save never fails the call."""
    rec = ud.recording
    if rec is None:
        return
    try:
        ud.backend.record_recording(ud.session_id, **rec.event())
    except Exception:
        log.exception("session %s: could not save the recording's start", ud.session_id)
    if rec.ok:
        ud.before_hangup.append(_stop_before_hangup)
    elif rec.uncertain and ud.room_name and ud.settings is not None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        ud.recording_stop = loop.create_task(_sweep(ud), name="recording-sweep")


async def stop(ud: Userdata) -> RecordingStop | None:
    """Stop the call's recording and save its end, once; later calls wait for and return the
    first stop's result. None when nothing was recording."""
    rec = ud.recording
    if ud.recording_stop is None:
        if rec is None or not rec.ok or not rec.egress_id or ud.settings is None:
            return None
        ud.recording_stop = asyncio.get_running_loop().create_task(_stop(ud, rec.egress_id), name="recording-stop")
    return await asyncio.shield(ud.recording_stop)


async def _stop_before_hangup(ud: Userdata, _reason: str) -> None:
    await stop(ud)


async def _stop(ud: Userdata, egress_id: str) -> RecordingStop:
    assert ud.settings is not None
    result = await egress.stop_recording(ud.settings, egress_id)
    await _save(ud, result.event())
    return result


async def _sweep(ud: Userdata) -> None:
    """Stop any egress of the call's room that a failed start may have begun after all."""
    assert ud.settings is not None and ud.room_name
    await asyncio.sleep(SWEEP_DELAY_SECONDS)
    stopped = await egress.stop_room_recordings(ud.settings, ud.room_name)
    if stopped:
        log.warning("session %s: stopped %d recording(s) LiveKit started after all", ud.session_id, len(stopped))
        await _save(ud, {"state": "stray_stopped", "egress_ids": stopped})


async def _save(ud: Userdata, data: dict) -> None:
    try:
        await ud.in_store_thread(ud.backend.record_recording, ud.session_id, **data)
    except Exception:
        log.exception("session %s: could not save the recording's end", ud.session_id)
