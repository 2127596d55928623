"""Transfer to a specialist: when a call ends with `customer_qualified_transfer` and
TRANSFER_NUMBER is set, the agent tells the caller, lets that play out, transfers the SIP
participant (SIP REFER through LiveKit's `TransferSIPParticipant`, decoded by a local fake
Twirp server), and only then writes the call log: `customer_qualified_transfer` when LiveKit
reports the transfer successful; `transfer_failed`, followed by "a specialist will call you back",
when it raises an error or answers with a status other than successful. Exactly one call log."""

from __future__ import annotations

import time

import pytest
from livekit.protocol import room
from livekit.protocol import sip as sip_proto

import telephony_agent
from backend.settings import Settings
from backend.voice import call
from backend.voice.model import build_realtime_model
from tests.fakes.gemini_live import speech, tool_call
from tests.fakes.livekit_twirp import TwirpError
from tests.test_agent_hangup import PhoneLine

pytest_plugins = ["tests.conftest_agent"]
pytestmark = pytest.mark.slow

CALLER = "+12125551234"
SPECIALIST = "+16175550123"
CONNECTING = "I'm connecting you to a licensed specialist now, please hold."
CALL_BACK = "I couldn't connect you right now; a licensed specialist will call you back soon. Goodbye!"


@pytest.fixture
def settings(agent_env, twirp) -> Settings:
    """LiveKit pointing at the fake server (which deletes rooms) and a specialist to transfer to."""
    twirp.on("RoomService", "DeleteRoom", lambda request: room.DeleteRoomResponse())
    return Settings.from_env(agent_env | twirp.env() | {"TRANSFER_NUMBER": SPECIALIST}, dotenv=False)


async def qualified_call_ends(agent_backend, settings, gemini):
    """A qualified caller's call: the model ends it with customer_qualified_transfer and says it
    is connecting them; if asked to speak again (the fallback), it says the call-back sentence."""
    gemini.reply(tool_call("c1", "end_call", reason="customer_qualified_transfer"))
    gemini.reply(speech(CONNECTING, seconds=0.6))
    gemini.reply(speech(CALL_BACK, seconds=0.6))
    session, agent = telephony_agent.build_agent_session(
        session_id="sess-1",
        caller_id=CALLER,
        backend=agent_backend,
        llm=build_realtime_model(settings, http_options=gemini.http_options()),
        room_name="call-room-7",
        settings=settings,
        participant_identity="sip_caller",
    )
    line = PhoneLine()
    session.output.audio = line
    closed = []
    session.on("close", closed.append)
    await session.start(agent)
    return session, line, closed


def call_logs(agent_backend):
    calls, _more = agent_backend.store.query_calls(caller_id=CALLER)
    return calls


def transfer_response(status, reason=sip_proto.STR_COMPLETED, code=200, text="OK"):
    return lambda request: sip_proto.TransferSIPParticipantResponse(
        transfer_id="TR_1", status=status, reason=reason, sip_status=sip_proto.SIPStatus(code=code, status=text)
    )


def played(line: PhoneLine) -> list[tuple[float, float]]:
    """The segments the caller heard (end time, seconds), without empty flushes."""
    return [(end, seconds) for end, seconds in line.finished if seconds > 0]


def said(gemini) -> str:
    """Every text the agent sent the model (instructions, tool results), whitespace collapsed."""
    texts: list[str] = []

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                texts.append(item) if key in ("text", "output") and isinstance(item, str) else walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk([f for f in gemini.frames if "setup" not in f])
    return " ".join(" ".join(texts).split())


async def test_a_successful_transfer_is_logged_as_a_transfer(agent_backend, settings, gemini, twirp, until):
    twirp.on("SIP", "TransferSIPParticipant", transfer_response(sip_proto.STS_TRANSFER_SUCCESSFUL))
    _session, line, closed = await qualified_call_ends(agent_backend, settings, gemini)
    await until(lambda: closed, timeout=20)

    [transfer] = twirp.calls_to("SIP", "TransferSIPParticipant")
    assert transfer.request.transfer_to == f"tel:{SPECIALIST}"
    assert (transfer.request.room_name, transfer.request.participant_identity) == ("call-room-7", "sip_caller")
    [(connecting_end, seconds)] = played(line)  # no call-back sentence
    assert seconds == pytest.approx(0.6, abs=0.05)
    assert transfer.at >= connecting_end, "the transfer started while the caller was still being told"
    [delete] = twirp.calls_to("RoomService", "DeleteRoom")
    assert delete.at >= transfer.at
    [log] = call_logs(agent_backend)
    assert (log["reason"], log["outcome"]) == ("customer_qualified_transfer", "qualified")
    assert log["details"]["transfer"]["status"] == "successful"
    assert "connecting them to a licensed specialist" in said(gemini)  # what end_call told the model


async def test_a_raised_transfer_error_falls_back_to_a_call_back(agent_backend, settings, gemini, twirp, until):
    def decline(request):
        meta = {"sip_status_code": "603", "sip_status": "Decline", "sip_transfer_reason": "STR_REJECTED"}
        raise TwirpError("unavailable", "transfer failed", 503, meta)

    twirp.on("SIP", "TransferSIPParticipant", decline)
    await assert_falls_back(agent_backend, settings, gemini, twirp, until, sip_code=603)


async def test_a_transfer_not_successful_in_its_status_falls_back(agent_backend, settings, gemini, twirp, until):
    # HTTP 200, no error raised: only the response's status says the transfer did not happen.
    failed = transfer_response(sip_proto.STS_TRANSFER_FAILED, sip_proto.STR_REJECTED, 486, "Busy Here")
    twirp.on("SIP", "TransferSIPParticipant", failed)
    await assert_falls_back(agent_backend, settings, gemini, twirp, until, sip_code=486)


async def assert_falls_back(agent_backend, settings, gemini, twirp, until, sip_code):
    _session, line, closed = await qualified_call_ends(agent_backend, settings, gemini)
    await until(lambda: closed, timeout=20)

    [transfer] = twirp.calls_to("SIP", "TransferSIPParticipant")
    [delete] = twirp.calls_to("RoomService", "DeleteRoom")
    assert [round(s, 1) for _, s in played(line)] == [0.6, 0.6]  # "connecting you", then the call back
    call_back_end = played(line)[1][0]
    assert transfer.at < call_back_end <= delete.at, "the line closed before the caller heard the call back"
    assert "will call them back" in said(gemini)  # the fallback instructions reached the model
    [log] = call_logs(agent_backend)  # exactly one call log
    assert (log["reason"], log["outcome"]) == ("transfer_failed", "callback")
    assert log["details"]["transfer"]["sip_status_code"] == sip_code


async def test_the_caller_hanging_up_mid_transfer_still_gives_one_log(agent_backend, settings, gemini, twirp, until):
    def slow_success(request):
        time.sleep(0.5)
        return sip_proto.TransferSIPParticipantResponse(status=sip_proto.STS_TRANSFER_SUCCESSFUL)

    twirp.on("SIP", "TransferSIPParticipant", slow_success)
    session, _line, closed = await qualified_call_ends(agent_backend, settings, gemini)
    await until(lambda: twirp.calls_to("SIP", "TransferSIPParticipant"), timeout=20)
    # the job's shutdown path runs while the transfer is in flight (the line dropped)
    result = await call.finish_call(session.userdata)
    assert result is None  # it waited for the transfer's own log instead of writing another
    [log] = call_logs(agent_backend)
    assert log["reason"] == "customer_qualified_transfer"
    await until(lambda: closed, timeout=20)


async def test_without_a_transfer_number_the_call_just_ends(agent_backend, settings, gemini, twirp, until):
    plain = Settings.from_env({**_env(settings), "TRANSFER_NUMBER": ""}, dotenv=False)
    _session, _line, closed = await qualified_call_ends(agent_backend, plain, gemini)
    await until(lambda: closed, timeout=20)
    assert twirp.calls_to("SIP", "TransferSIPParticipant") == []
    [log] = call_logs(agent_backend)
    assert log["reason"] == "customer_qualified_transfer" and "details" not in log


def _env(settings: Settings) -> dict[str, str]:
    return {k.upper(): str(v) for k, v in vars(settings).items() if v is not None and k != "api_tokens"}
