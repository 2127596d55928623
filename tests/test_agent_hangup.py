"""Hanging up: after `end_call` the agent lets its goodbye play out to the caller, then deletes
the call's LiveKit room through the server API (Twirp, protobuf bodies, a signed token); the
room is the call's own, and a room that is already gone is not an error."""

from __future__ import annotations

import asyncio
import time

import pytest
from livekit import rtc
from livekit.agents.voice import io
from livekit.protocol import room

import telephony_agent
from backend.voice.model import build_realtime_model
from tests.fakes.gemini_live import speech, tool_call
from tests.fakes.livekit_twirp import TwirpError
from tests.fakes.scripted_llm import CALLER

pytest_plugins = ["tests.conftest_agent"]
pytestmark = pytest.mark.slow

GOODBYE_SECONDS = 0.8


class PhoneLine(io.AudioOutput):
    """The caller's earpiece: plays each segment in real time and notes when it finished."""

    def __init__(self) -> None:
        super().__init__(label="phone-line", capabilities=io.AudioOutputCapabilities(pause=False))
        self.segment_seconds = 0.0
        self.finished: list[tuple[float, float]] = []  # (monotonic end time, seconds played)
        self._timer: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self.segment_seconds += frame.duration

    def flush(self) -> None:
        super().flush()
        seconds, self.segment_seconds = self.segment_seconds, 0.0
        self._timer = asyncio.get_running_loop().call_later(seconds, self._played, seconds)

    def _played(self, seconds: float) -> None:
        self.finished.append((time.monotonic(), seconds))
        self.on_playback_finished(playback_position=seconds, interrupted=False)

    def clear_buffer(self) -> None:
        if self._timer:
            self._timer.cancel()


async def run_call_that_ends(agent_backend, settings, gemini, room_name, hooks=()):
    gemini.reply(tool_call("c1", "end_call", reason="customer_not_interested"))
    gemini.reply(speech("Thanks for calling Acme Debt Help. Goodbye!", seconds=GOODBYE_SECONDS))
    session, agent = telephony_agent.build_agent_session(
        session_id="sess-1",
        caller_id=CALLER,
        backend=agent_backend,
        llm=build_realtime_model(settings, http_options=gemini.http_options()),
        room_name=room_name,
        settings=settings,
    )
    session.userdata.before_hangup.extend(hooks)
    line = PhoneLine()
    session.output.audio = line
    closed = []
    session.on("close", closed.append)
    await session.start(agent)
    return session, line, closed


async def test_room_is_deleted_after_the_goodbye_has_played(agent_backend, livekit_settings, gemini, twirp, until):
    twirp.on("RoomService", "DeleteRoom", lambda request: room.DeleteRoomResponse())
    hooked = []

    async def before_hangup(ud, reason):  # the seam a transfer uses
        hooked.append((time.monotonic(), ud.session_id, reason))

    _session, line, closed = await run_call_that_ends(
        agent_backend, livekit_settings, gemini, "call-room-42", hooks=[before_hangup]
    )
    await until(lambda: closed, timeout=15)

    [delete] = twirp.calls_to("RoomService", "DeleteRoom")
    assert delete.request.room == "call-room-42"
    assert delete.claims.video.room_create
    goodbye_end, goodbye_seconds = line.finished[-1]
    assert goodbye_seconds == pytest.approx(GOODBYE_SECONDS, abs=0.05)
    assert delete.at >= goodbye_end, "the room was deleted while the goodbye was still playing"
    [(hooked_at, session_id, reason)] = hooked
    assert goodbye_end <= hooked_at <= delete.at
    assert (session_id, reason) == ("sess-1", "customer_not_interested")
    log = agent_backend.store.session_call("sess-1")
    assert log["reason"] == "customer_not_interested"
    assert [(c.service, c.method) for c in twirp.calls] == [("RoomService", "DeleteRoom")]


async def test_room_already_gone_still_ends_the_session(agent_backend, livekit_settings, gemini, twirp, until):
    twirp.on("RoomService", "DeleteRoom", lambda request: TwirpError("not_found", "room not found", 404))
    _session, _line, closed = await run_call_that_ends(agent_backend, livekit_settings, gemini, "gone-room")
    await until(lambda: closed, timeout=15)

    assert [c.request.room for c in twirp.calls_to("RoomService", "DeleteRoom")] == ["gone-room"]
    assert agent_backend.store.session_call("sess-1")["outcome"] == "not_interested"
