"""The SIP helpers: E.164 numbers, the called party's time zones and calling hours (the stricter
zone wins when an area code spans several), dialing out (answered, busy, no answer, rejected,
failed, from the SIP status LiveKit returns in a Twirp error) and SIP REFER transfers (success, a
raised error, a response whose status is not successful) against a local fake LiveKit server.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from livekit.api import LiveKitAPI
from livekit.protocol import sip as sip_proto

from backend.calls.hours import within_calling_hours
from backend.calls.numbers import InvalidPhoneNumber, normalize_e164, redact_number, timezones_for_number
from backend.calls.sip_results import OUTBOUND_END_REASONS, DialResult
from backend.livekit import sip
from tests.fakes.livekit_twirp import API_KEY, API_SECRET, FakeTwirpServer, TwirpError

pytestmark = pytest.mark.store_free  # touches no store

# The contract's end reasons (section 1).
CONTRACT_REASONS = {
    "customer_qualified_transfer",
    "customer_qualified_callback",
    "transfer_failed",
    "customer_not_qualified",
    "customer_not_interested",
    "do_not_call_request",
    "wrong_number",
    "voicemail",
    "caller_hung_up",
    "agent_error",
    "completed",
}

NYC = "+12125551234"
LOS_ANGELES = "+13105551234"
IDAHO = "+12085550100"  # area code 208: Mountain (Boise) and Pacific (northern Idaho)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- E.164 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+12125551234", "+12125551234"),
        ("+1 (212) 555-1234", "+12125551234"),
        (" +1.212.555.1234 ", "+12125551234"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_normalize_e164_accepts_valid_numbers_in_any_punctuation(raw, expected):
    assert normalize_e164(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "2125551234", "+1212555123", "+15551234567", "+1 212 555 12345", "call me", "+"],
)
def test_normalize_e164_refuses_invalid_numbers(raw):
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_e164(raw)
    assert isinstance(info.value, ValueError)
    assert str(info.value)  # a sentence the API can return


def test_normalize_e164_refuses_non_strings():
    with pytest.raises(InvalidPhoneNumber):
        normalize_e164(None)  # type: ignore[arg-type]


def test_normalize_e164_reads_national_form_only_with_a_region():
    with pytest.raises(InvalidPhoneNumber):
        normalize_e164("(212) 555-1234")
    assert normalize_e164("(212) 555-1234", default_region="US") == NYC


def test_redact_number_hides_all_but_the_last_two_digits():
    shown = redact_number(NYC)
    assert "5551234" not in shown and "2125" not in shown
    assert shown.endswith("34") and shown.startswith("+1")


# --- time zones --------------------------------------------------------------------------------


def test_timezones_come_from_the_area_code():
    assert timezones_for_number(NYC) == ["America/New_York"]
    assert timezones_for_number(LOS_ANGELES) == ["America/Los_Angeles"]
    assert timezones_for_number("+18085550100") == ["Pacific/Honolulu"]


def test_ambiguous_area_code_gives_every_candidate_zone():
    assert timezones_for_number(IDAHO) == ["America/Boise", "America/Los_Angeles"]


def test_timezones_for_an_invalid_number_raise():
    with pytest.raises(InvalidPhoneNumber):
        timezones_for_number("+15551234567")


def test_a_number_without_a_known_zone_gives_none():
    assert timezones_for_number("+80012345678") == []  # international freephone


# --- calling hours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utc", "allowed"),
    [
        ("2026-11-22T12:59", False),  # 07:59 in New York (EST)
        ("2026-11-22T13:00", True),  # 08:00: the window includes its start
        ("2026-11-23T01:59", True),  # 20:59
        ("2026-11-23T02:00", False),  # 21:00: the window excludes its end
    ],
)
def test_calling_hours_in_the_called_partys_zone(utc, allowed):
    ok, details = within_calling_hours(NYC, "08:00-21:00", now=at(utc))
    assert ok is allowed
    assert details["timezones"] == ["America/New_York"]
    assert details["reason"] == ("within_hours" if allowed else "outside_hours")


def test_calling_hours_follow_daylight_saving_time():
    assert within_calling_hours(NYC, now=at("2026-07-01T12:30"))[0] is True  # 08:30 EDT
    assert within_calling_hours(NYC, now=at("2026-11-22T12:30"))[0] is False  # 07:30 EST


def test_calling_hours_are_those_of_the_callee_not_the_business():
    # 15:30 UTC is 10:30 in New York but 07:30 in Los Angeles.
    assert within_calling_hours(NYC, now=at("2026-11-22T15:30"))[0] is True
    ok, details = within_calling_hours(LOS_ANGELES, now=at("2026-11-22T15:30"))
    assert ok is False
    assert details["local_times"] == {"America/Los_Angeles": "07:30"}


def test_ambiguous_number_uses_the_stricter_zone_in_the_morning():
    # 15:30 UTC: 08:30 in Boise (allowed alone) but 07:30 in Los Angeles.
    ok, details = within_calling_hours(IDAHO, now=at("2026-11-22T15:30"))
    assert ok is False
    assert details["outside"] == ["America/Los_Angeles"]
    assert details["local_times"] == {"America/Boise": "08:30", "America/Los_Angeles": "07:30"}
    assert within_calling_hours(IDAHO, now=at("2026-11-22T16:00"))[0] is True  # 09:00 / 08:00


def test_ambiguous_number_uses_the_stricter_zone_in_the_evening():
    # 04:30 UTC: 21:30 in Boise (outside) though 20:30 in Los Angeles.
    ok, details = within_calling_hours(IDAHO, now=at("2026-11-23T04:30"))
    assert ok is False
    assert details["outside"] == ["America/Boise"]
    assert within_calling_hours(IDAHO, now=at("2026-11-23T03:30"))[0] is True


def test_unknown_zone_is_refused():
    ok, details = within_calling_hours("+80012345678", now=at("2026-11-22T15:00"))
    assert ok is False
    assert details["reason"] == "unknown_timezone"


def test_naive_now_is_taken_as_utc():
    naive = datetime(2026, 11, 22, 12, 59)
    assert within_calling_hours(NYC, now=naive)[0] is False
    assert within_calling_hours(NYC, now=naive.replace(minute=0, hour=13))[0] is True


def test_window_across_midnight():
    assert within_calling_hours(NYC, "22:00-06:00", now=at("2026-11-23T04:00"))[0] is True  # 23:00
    assert within_calling_hours(NYC, "22:00-06:00", now=at("2026-11-22T16:00"))[0] is False  # 11:00


def test_now_defaults_to_the_current_time():
    ok, details = within_calling_hours(NYC, "00:00-23:59")
    assert set(details["local_times"]) == {"America/New_York"}
    assert isinstance(ok, bool)


@pytest.mark.parametrize("bad", ["", "8-21", "08:00", "25:00-26:00", "08:00-08:00", "morning"])
def test_malformed_calling_hours_raise(bad):
    with pytest.raises(ValueError, match="CALLING_HOURS"):
        within_calling_hours(NYC, bad, now=at("2026-11-22T15:00"))


# --- end reasons ---------------------------------------------------------------------------------


def test_outbound_end_reasons_are_contract_reasons():
    assert set(OUTBOUND_END_REASONS) == {"busy", "no_answer", "rejected", "failed"}
    assert set(OUTBOUND_END_REASONS.values()) <= CONTRACT_REASONS


@pytest.mark.parametrize(
    ("outcome", "code", "reason"),
    [
        ("answered", None, None),
        ("busy", 486, "voicemail"),
        ("no_answer", 480, "voicemail"),
        ("rejected", 603, "caller_hung_up"),
        ("failed", 500, "agent_error"),
        ("failed", None, "agent_error"),
        ("failed", 404, "wrong_number"),
        ("failed", 604, "wrong_number"),
    ],
)
def test_dial_result_end_reason(outcome, code, reason):
    result = DialResult(outcome=outcome, sip_status_code=code)
    assert result.end_reason == reason
    assert result.call_state == ("answered" if outcome == "answered" else "failed")
    assert result.to_dict()["sip_status_code"] == code


# --- dialing out and transferring, against a local fake LiveKit server ----------------------------

SIP_ERRORS = {  # SIP status -> the Twirp code and HTTP status LiveKit answers with
    486: ("unavailable", 503, "Busy Here"),
    600: ("unavailable", 503, "Busy Everywhere"),
    408: ("deadline_exceeded", 504, "Request Timeout"),
    480: ("unavailable", 503, "Temporarily Unavailable"),
    487: ("canceled", 408, "Request Terminated"),
    403: ("permission_denied", 403, "Forbidden"),
    603: ("permission_denied", 403, "Decline"),
    500: ("internal", 500, "Server Internal Error"),
    404: ("not_found", 404, "Not Found"),
}


@pytest.fixture
async def lkapi(twirp):
    client = LiveKitAPI(twirp.url, API_KEY, API_SECRET)
    yield client
    await client.aclose()


def sip_error(code: int) -> TwirpError:
    twirp_code, http_status, phrase = SIP_ERRORS[code]
    return TwirpError(
        twirp_code,
        f"SIP call failed: {code} {phrase}",
        http_status,
        {"sip_status_code": str(code), "sip_status": phrase},
    )


async def dial(lkapi, number="+1 (212) 555-1234"):
    return await sip.dial_out(
        lkapi, room_name="call-42", trunk_id="ST_out", phone_number=number, participant_identity="callee"
    )


async def test_dial_out_answered_sends_the_request_and_reports_the_participant(twirp, lkapi):
    def answer(req):
        return sip_proto.SIPParticipantInfo(
            participant_id="PA_1",
            participant_identity=req.participant_identity,
            room_name=req.room_name,
            sip_call_id="SCL_1",
        )

    twirp.on("SIP", "CreateSIPParticipant", answer)
    result = await dial(lkapi)
    assert result.outcome == "answered" and result.answered
    assert (result.participant_id, result.sip_call_id, result.participant_identity) == ("PA_1", "SCL_1", "callee")
    assert result.end_reason is None and result.call_state == "answered"
    [call] = twirp.calls_to("SIP", "CreateSIPParticipant")
    req = call.request
    assert req.sip_trunk_id == "ST_out"
    assert req.sip_call_to == NYC  # normalized to E.164
    assert (req.room_name, req.participant_identity) == ("call-42", "callee")
    assert req.wait_until_answered is True
    assert call.claims.sip.call is True


@pytest.mark.parametrize(
    ("code", "outcome", "reason"),
    [
        (486, "busy", "voicemail"),
        (600, "busy", "voicemail"),
        (408, "no_answer", "voicemail"),
        (480, "no_answer", "voicemail"),
        (487, "no_answer", "voicemail"),
        (403, "rejected", "caller_hung_up"),
        (603, "rejected", "caller_hung_up"),
        (500, "failed", "agent_error"),
        (404, "failed", "wrong_number"),
    ],
)
async def test_dial_out_maps_the_sip_status_of_a_twirp_error(twirp, lkapi, code, outcome, reason):
    def refuse(req):
        raise sip_error(code)

    twirp.on("SIP", "CreateSIPParticipant", refuse)
    result = await dial(lkapi)
    assert result.outcome == outcome
    assert result.sip_status_code == code
    assert result.sip_status == SIP_ERRORS[code][2]
    assert result.end_reason == reason
    assert result.call_state == "failed"
    assert result.error and SIP_ERRORS[code][0] in result.error


async def test_dial_out_without_a_sip_status_is_failed(twirp, lkapi):
    def no_trunk(req):
        raise TwirpError("not_found", "outbound trunk ST_out not found", 404)

    twirp.on("SIP", "CreateSIPParticipant", no_trunk)
    result = await dial(lkapi)
    assert (result.outcome, result.sip_status_code, result.end_reason) == ("failed", None, "agent_error")
    assert "not_found" in result.error


async def test_dial_out_to_an_unreachable_server_is_failed():
    with FakeTwirpServer() as server:
        url = server.url  # a port that is closed once the server stops
    client = LiveKitAPI(url, API_KEY, API_SECRET)
    try:
        result = await dial(client)
    finally:
        await client.aclose()
    assert result.outcome == "failed" and result.sip_status_code is None and result.error


async def test_dial_out_refuses_an_invalid_number_before_dialing(twirp, lkapi):
    with pytest.raises(InvalidPhoneNumber):
        await dial(lkapi, number="+15551234567")
    assert twirp.calls_to("SIP", "CreateSIPParticipant") == []


async def transfer(lkapi, to="+1 617 555 0123"):
    return await sip.transfer_to_specialist(lkapi, room_name="call-42", participant_identity="caller", transfer_to=to)


async def test_transfer_success_needs_a_successful_status(twirp, lkapi):
    twirp.on(
        "SIP",
        "TransferSIPParticipant",
        lambda req: sip_proto.TransferSIPParticipantResponse(
            transfer_id="TR_1",
            status=sip_proto.STS_TRANSFER_SUCCESSFUL,
            reason=sip_proto.STR_COMPLETED,
            sip_status=sip_proto.SIPStatus(code=200, status="OK"),
        ),
    )
    result = await transfer(lkapi)
    assert result.ok and result.status == "successful" and result.end_reason is None
    assert (result.transfer_id, result.sip_status_code, result.reason) == ("TR_1", 200, "STR_COMPLETED")
    [call] = twirp.calls_to("SIP", "TransferSIPParticipant")
    assert call.request.transfer_to == "tel:+16175550123"
    assert (call.request.room_name, call.request.participant_identity) == ("call-42", "caller")
    assert call.claims.sip.call is True


async def test_transfer_to_a_sip_uri_passes_it_through(twirp, lkapi):
    twirp.on(
        "SIP",
        "TransferSIPParticipant",
        lambda req: sip_proto.TransferSIPParticipantResponse(status=sip_proto.STS_TRANSFER_SUCCESSFUL),
    )
    assert (await transfer(lkapi, to="sip:specialists@pbx.example.com")).ok
    [call] = twirp.calls_to("SIP", "TransferSIPParticipant")
    assert call.request.transfer_to == "sip:specialists@pbx.example.com"


async def test_transfer_raised_error_is_reported_not_raised(twirp, lkapi):
    def decline(req):
        raise TwirpError(
            "unavailable",
            "transfer failed",
            503,
            {
                "sip_status_code": "603",
                "sip_status": "Decline",
                "sip_transfer_reason": "STR_REJECTED",
                "sip_transfer_id": "TR_2",
            },
        )

    twirp.on("SIP", "TransferSIPParticipant", decline)
    result = await transfer(lkapi)
    assert not result.ok
    assert (result.status, result.reason, result.sip_status_code, result.sip_status) == (
        "failed",
        "STR_REJECTED",
        603,
        "Decline",
    )
    assert result.transfer_id == "TR_2"
    assert result.end_reason == "transfer_failed"


async def test_transfer_error_without_sip_status_is_reported(twirp, lkapi):
    def forbidden(req):
        raise TwirpError("permission_denied", "transfer not allowed on this trunk", 403)

    twirp.on("SIP", "TransferSIPParticipant", forbidden)
    result = await transfer(lkapi)
    assert (result.ok, result.status, result.end_reason) == (False, "error", "transfer_failed")
    assert "permission_denied" in result.error


@pytest.mark.parametrize(
    ("response", "status", "reason", "code"),
    [
        (
            sip_proto.TransferSIPParticipantResponse(
                status=sip_proto.STS_TRANSFER_FAILED,
                reason=sip_proto.STR_RINGING_TIMEOUT,
                sip_status=sip_proto.SIPStatus(code=408, status="Request Timeout"),
            ),
            "failed",
            "STR_RINGING_TIMEOUT",
            408,
        ),
        (
            sip_proto.TransferSIPParticipantResponse(
                status=sip_proto.STS_TRANSFER_FAILED, reason=sip_proto.STR_REJECTED
            ),
            "failed",
            "STR_REJECTED",
            None,
        ),
        (None, "ongoing", None, None),  # an empty answer: status ONGOING, never confirmed
    ],
)
async def test_transfer_with_a_non_successful_status_is_not_ok(twirp, lkapi, response, status, reason, code):
    twirp.on("SIP", "TransferSIPParticipant", lambda req: response)
    result = await transfer(lkapi)
    assert (result.ok, result.status, result.reason, result.sip_status_code) == (False, status, reason, code)
    assert result.end_reason == "transfer_failed"


async def test_transfer_to_an_unreachable_server_is_reported():
    with FakeTwirpServer() as server:
        url = server.url
    client = LiveKitAPI(url, API_KEY, API_SECRET)
    try:
        result = await transfer(client)
    finally:
        await client.aclose()
    assert (result.ok, result.status) == (False, "error")


async def test_transfer_to_an_invalid_number_is_reported_without_a_request(twirp, lkapi):
    result = await transfer(lkapi, to="not a number")
    assert (result.ok, result.status) == (False, "error")
    assert result.error.startswith("invalid_transfer_number")
    assert twirp.calls_to("SIP", "TransferSIPParticipant") == []
