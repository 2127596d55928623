"""Recording a call (RECORDING=on): as the call connects, and before the agent's instructions and
greeting are built, the agent asks LiveKit Egress (a local fake of its Twirp service, protobuf
bodies, signed tokens) for an audio-only room composite recording to RECORDING_FILE_DIR (or an S3
bucket); it stops it once when the call ends, by the hang-up or by the shutdown path, and the
session keeps the recording's id, location, start and end. The opening disclosure says the call is
recorded only when the egress really started: a refused, unreachable or timed-out Egress leaves
the call going on, unrecorded, with no claim of recording, and the session says why. With
RECORDING off, no egress is asked for and nothing claims one."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from livekit.protocol import egress as egress_proto
from livekit.protocol import room

import telephony_agent
from backend.livekit import egress
from backend.settings import Settings
from backend.voice import call
from backend.voice import recording as call_recording
from backend.voice.model import build_realtime_model
from backend.voice.prompts import NOT_RECORDED_RULE
from tests.fakes.gemini_live import speech, tool_call
from tests.fakes.livekit_twirp import TwirpError
from tests.fakes.scripted_llm import CALLER
from tests.test_agent_hangup import PhoneLine
from tests.test_prompts import CLAIMS

pytest_plugins = ["tests.conftest_agent"]
pytestmark = pytest.mark.slow

ROOM = "call-room-9"
EGRESS_ID = "EG_abc123"


@pytest.fixture
def recordings(tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(agent_env, twirp, recordings) -> Settings:
    """RECORDING on, to files in a temporary folder, LiveKit pointing at the fake server."""
    twirp.on("RoomService", "DeleteRoom", lambda request: room.DeleteRoomResponse())
    env = agent_env | twirp.env() | {"RECORDING": "on", "RECORDING_FILE_DIR": str(recordings)}
    return Settings.from_env(env, dotenv=False)


def egress_started(request):
    return egress_proto.EgressInfo(
        egress_id=EGRESS_ID, room_name=request.room_name, status=egress_proto.EGRESS_STARTING
    )


def egress_stopped(location: str, status=egress_proto.EGRESS_ENDING, error: str = ""):
    def answer(request):
        result = egress_proto.FileInfo(filename=location.rsplit("/", 1)[-1], location=location)
        return egress_proto.EgressInfo(egress_id=request.egress_id, status=status, error=error, file_results=[result])

    return answer


async def open_call(agent_backend, settings, gemini, *, room_name=ROOM, goodbye=True):
    """A call set up exactly as the entrypoint sets one up (`open_call`), on the fake Gemini
    Live server. With `goodbye`, the model ends it with end_call and says goodbye."""
    if goodbye:
        gemini.reply(tool_call("c1", "end_call", reason="customer_not_interested"))
        gemini.reply(speech("Thanks for calling Acme Debt Help. Goodbye!", seconds=0.3))
    began = time.monotonic()
    session, agent = await telephony_agent.open_call(
        session_id="sess-1",
        caller_id=CALLER,
        backend=agent_backend,
        llm=build_realtime_model(settings, http_options=gemini.http_options()),
        room_name=room_name,
        settings=settings,
    )
    set_up = time.monotonic() - began
    line = PhoneLine()
    session.output.audio = line
    closed = []
    session.on("close", closed.append)
    await session.start(agent)
    return session, agent, closed, set_up


def greeting_sent(gemini) -> str:
    """The text turns the agent sent the model (the greeting's instructions), whitespace collapsed."""
    texts = [
        part["text"]
        for content in gemini.received("clientContent")
        for turn in content.get("turns", [])
        for part in turn.get("parts", [])
        if "text" in part
    ]
    return " ".join(" ".join(texts).split())


def system_instructions(gemini) -> str:
    [setup] = gemini.received("setup")
    return " ".join(p["text"] for p in setup["systemInstruction"]["parts"])


def claims_recording(text: str) -> bool:
    return bool(CLAIMS.search(text.replace(NOT_RECORDED_RULE, "")))


def egress_calls(twirp) -> list[str]:
    return [c.method for c in twirp.calls if c.service == "Egress"]


async def test_a_recorded_call_is_disclosed_saved_and_stopped_once(
    agent_backend, settings, recordings, gemini, twirp, until
):
    location = f"{recordings}/sess-1.ogg"
    twirp.on("Egress", "StartRoomCompositeEgress", egress_started)
    twirp.on("Egress", "StopEgress", egress_stopped(location))
    session, agent, closed, _ = await open_call(agent_backend, settings, gemini)
    await until(lambda: closed, timeout=20)
    assert await call.finish_call(session.userdata) is None  # the shutdown path: no second stop

    [start] = twirp.calls_to("Egress", "StartRoomCompositeEgress")
    assert (start.request.room_name, start.request.audio_only) == (ROOM, True)
    [output] = start.request.file_outputs
    assert (output.file_type, output.filepath) == (egress_proto.OGG, location)
    assert not output.HasField("s3")
    assert start.claims.video.room_record  # a token that may record
    [stop] = twirp.calls_to("Egress", "StopEgress")
    assert stop.request.egress_id == EGRESS_ID
    [delete] = twirp.calls_to("RoomService", "DeleteRoom")
    assert start.at < stop.at <= delete.at, "the recording must end before the room is deleted"
    assert egress_calls(twirp) == ["StartRoomCompositeEgress", "StopEgress"]

    assert "- that the call is recorded;" in agent.instructions
    assert "- that the call is recorded;" in system_instructions(gemini)  # what the model got
    assert "that the call is recorded" in greeting_sent(gemini)
    recording = agent_backend.session_recording("sess-1")
    assert {k: recording[k] for k in ("egress_id", "status", "location", "error")} == {
        "egress_id": EGRESS_ID,
        "status": "completed",
        "location": location,
        "error": None,
    }
    assert recording["started_at"] < recording["ended_at"]
    assert agent_backend.store.session_call("sess-1")["reason"] == "customer_not_interested"


async def test_the_shutdown_path_stops_the_recording_of_a_caller_who_hung_up(
    agent_backend, settings, recordings, gemini, twirp, until
):
    """The caller hangs up (no end_call, no hang-up hook): `finish_call` stops the recording once,
    and what LiveKit says of it (here: it failed) is what the session shows."""
    twirp.on("Egress", "StartRoomCompositeEgress", egress_started)
    stopped = egress_stopped(f"{recordings}/sess-1.ogg", egress_proto.EGRESS_FAILED, "disk full")
    twirp.on("Egress", "StopEgress", stopped)
    gemini.reply(speech("Hi, thanks for calling Acme Debt Help.", seconds=0.2))
    session, _agent, _closed, _ = await open_call(agent_backend, settings, gemini, goodbye=False)
    await until(lambda: gemini.received("clientContent"))
    await session.aclose()  # the line drops
    first = await call.finish_call(session.userdata)
    assert first["call"]["reason"] == "caller_hung_up"
    assert [c.request.egress_id for c in twirp.calls_to("Egress", "StopEgress")] == [EGRESS_ID]
    assert (await call_recording.stop(session.userdata)).failed  # a later stop: the first's result
    assert len(twirp.calls_to("Egress", "StopEgress")) == 1

    recording = agent_backend.session_recording("sess-1")
    assert recording["status"] == "failed" and "disk full" in recording["error"]
    assert recording["ended_at"] is not None


async def test_a_refused_egress_leaves_the_call_going_unrecorded_and_says_why(
    agent_backend, settings, gemini, twirp, until
):
    twirp.on(
        "Egress",
        "StartRoomCompositeEgress",
        lambda request: TwirpError("permission_denied", "egress is not enabled for this project", 403),
    )
    session, agent, closed, set_up = await open_call(agent_backend, settings, gemini)
    await until(lambda: closed, timeout=20)
    await call.finish_call(session.userdata)

    assert egress_calls(twirp) == ["StartRoomCompositeEgress"]  # no stop, no sweep: it never started
    assert set_up < 2.0
    assert not claims_recording(agent.instructions)
    assert NOT_RECORDED_RULE in agent.instructions
    assert not claims_recording(system_instructions(gemini))
    assert not claims_recording(greeting_sent(gemini)) and "AI assistant" in greeting_sent(gemini)
    recording = agent_backend.session_recording("sess-1")
    assert recording["status"] == "failed" and recording["egress_id"] is None
    assert "permission_denied" in recording["error"] and "not enabled" in recording["error"]
    assert agent_backend.store.session_call("sess-1")["reason"] == "customer_not_interested"  # the call went on


async def test_an_unreachable_egress_leaves_the_call_going_unrecorded(agent_backend, agent_env, recordings, gemini):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = agent_env | {
        "LIVEKIT_URL": f"http://127.0.0.1:{port}",
        "LIVEKIT_API_KEY": "k",
        "LIVEKIT_API_SECRET": "s" * 40,
        "RECORDING": "on",
        "RECORDING_FILE_DIR": str(recordings),
    }
    settings = Settings.from_env(env, dotenv=False)
    gemini.reply(speech("Hi, thanks for calling Acme Debt Help.", seconds=0.2))
    session, agent, _closed, set_up = await open_call(agent_backend, settings, gemini, goodbye=False)
    assert set_up < 2.0
    assert not claims_recording(agent.instructions)
    await session.aclose()
    await call.finish_call(session.userdata)

    assert not claims_recording(greeting_sent(gemini))
    recording = agent_backend.session_recording("sess-1")
    assert recording["status"] == "failed" and "could not be reached" in recording["error"]
    assert agent_backend.store.session_call("sess-1")["reason"] == "caller_hung_up"


async def test_a_start_that_timed_out_is_not_claimed_and_a_late_egress_is_stopped(
    agent_backend, settings, gemini, twirp, until, monkeypatch
):
    """LiveKit answers too late: the call goes on unrecorded at once, and a moment later any
    egress the late start began in the room is stopped, so nobody is recorded undisclosed."""
    monkeypatch.setattr(egress, "START_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(call_recording, "SWEEP_DELAY_SECONDS", 0.2)

    def too_late(request):
        time.sleep(1.0)
        return egress_started(request)

    twirp.on("Egress", "StartRoomCompositeEgress", too_late)
    late = egress_proto.EgressInfo(egress_id="EG_late", room_name=ROOM, status=egress_proto.EGRESS_ACTIVE)
    twirp.on("Egress", "ListEgress", lambda request: egress_proto.ListEgressResponse(items=[late]))
    twirp.on("Egress", "StopEgress", egress_stopped("/elsewhere/x.ogg"))
    session, agent, closed, set_up = await open_call(agent_backend, settings, gemini)
    assert set_up < 1.5  # bounded by the timeout, not by LiveKit
    await until(lambda: closed, timeout=20)
    await call.finish_call(session.userdata)

    assert not claims_recording(agent.instructions) and not claims_recording(greeting_sent(gemini))
    [listed] = twirp.calls_to("Egress", "ListEgress")
    assert (listed.request.room_name, listed.request.active) == (ROOM, True)
    assert [c.request.egress_id for c in twirp.calls_to("Egress", "StopEgress")] == ["EG_late"]
    recording = agent_backend.session_recording("sess-1")
    assert recording["status"] == "failed"
    assert "did not answer in time" in recording["error"] and "EG_late" in recording["error"]


async def test_with_recording_off_no_egress_is_asked_for_and_nothing_claims_one(
    agent_backend, agent_env, twirp, gemini, until
):
    twirp.on("RoomService", "DeleteRoom", lambda request: room.DeleteRoomResponse())
    settings = Settings.from_env(agent_env | twirp.env(), dotenv=False)  # RECORDING unset: off
    assert settings.recording is False
    session, agent, closed, _ = await open_call(agent_backend, settings, gemini)
    await until(lambda: closed, timeout=20)
    await call.finish_call(session.userdata)

    assert [(c.service, c.method) for c in twirp.calls] == [("RoomService", "DeleteRoom")]
    assert not claims_recording(agent.instructions) and not claims_recording(system_instructions(gemini))
    assert not claims_recording(greeting_sent(gemini))
    assert agent_backend.session_recording("sess-1") is None
    assert agent_backend.store.events("recording") == []


async def test_a_console_call_with_recording_on_is_not_recorded_and_says_why(agent_backend, settings, gemini, twirp):
    session, agent, _closed, _ = await open_call(agent_backend, settings, gemini, room_name=None, goodbye=False)
    await session.aclose()
    await call.finish_call(session.userdata)

    assert egress_calls(twirp) == []
    assert not claims_recording(agent.instructions)
    assert "no LiveKit room" in agent_backend.session_recording("sess-1")["error"]


async def test_s3_output_carries_the_bucket_and_never_logs_its_secret(agent_env, twirp, caplog):
    twirp.on("Egress", "StartRoomCompositeEgress", egress_started)
    secret = "s3-secret-value-do-not-log"
    env = agent_env | twirp.env()
    env |= {
        "RECORDING": "on",
        "RECORDING_S3_BUCKET": "calls-bucket",
        "RECORDING_S3_REGION": "us-east-2",
        "RECORDING_S3_ENDPOINT": "https://minio.internal:9000",
        "RECORDING_S3_ACCESS_KEY": "AKIAEXAMPLE",
        "RECORDING_S3_SECRET": secret,
    }
    settings = Settings.from_env(env, dotenv=False)
    caplog.set_level(logging.DEBUG)
    started = await egress.start_recording(settings, ROOM, "sess/../7")

    assert started.ok and started.egress_id == EGRESS_ID
    assert started.location == "s3://calls-bucket/recordings/sess_.._7.ogg"
    [start] = twirp.calls_to("Egress", "StartRoomCompositeEgress")
    [output] = start.request.file_outputs
    assert output.filepath == "recordings/sess_.._7.ogg" and output.file_type == egress_proto.OGG
    s3 = output.s3
    assert (s3.bucket, s3.region, s3.endpoint, s3.access_key, s3.secret, s3.force_path_style) == (
        "calls-bucket",
        "us-east-2",
        "https://minio.internal:9000",
        "AKIAEXAMPLE",
        secret,
        True,
    )
    assert secret not in caplog.text and secret not in repr(settings)


async def test_an_egress_that_answers_without_starting_is_a_failure(settings, twirp):
    failed = egress_proto.EgressInfo(egress_id="EG_x", status=egress_proto.EGRESS_FAILED, error="no workers")
    twirp.on("Egress", "StartRoomCompositeEgress", lambda request: failed)
    started = await egress.start_recording(settings, ROOM, "sess-1")
    assert (started.ok, started.egress_id, started.uncertain) == (False, "EG_x", False)
    assert "no workers" in started.error
