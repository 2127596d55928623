"""Outbound calls: `POST /api/calls` checks the compliance gates in the contract's order (E.164
400, do-not-call 403, calling hours at the called party 409, concurrency 429, configuration 503),
records every refusal, and dispatches the agent into a fresh room with the number and call id in
the metadata (decoded by a local fake LiveKit Twirp server); the agent dials through
SIP_OUTBOUND_TRUNK_ID, and answered / busy / no-answer (a Twirp error carrying the SIP status)
give the right call state, end reason and SIP status, shown by `GET /api/calls/<id>`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from livekit.protocol import agent_dispatch
from livekit.protocol import sip as sip_proto

import telephony_agent
from backend.api_server import create_app
from backend.backend_agent import BackendAgent
from backend.calls import dnc, outbound
from backend.livekit import rooms
from backend.settings import Settings
from backend.voice import dial
from backend.voice.caller import call_details, dispatch_call_id, dispatch_phone_number
from tests.fakes.livekit_twirp import TwirpError
from tests.fakes.scripted_llm import ScriptedLLM, turn
from tests.postgres import store_env

TOKEN = "outbound-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NYC = "+12125551234"
LA = "+13105559876"


def hours_around_now(zone="America/New_York", before=2, after=2) -> str:
    """A calling window from `before` hours ago to `after` hours ahead in `zone` (negative
    `before` puts the window wholly in the future)."""
    now = datetime.now(ZoneInfo(zone))
    return f"{now - timedelta(hours=before):%H:%M}-{now + timedelta(hours=after):%H:%M}"


@pytest.fixture
def livekit(twirp):
    twirp.on("AgentDispatchService", "CreateDispatch", _dispatch_answer)
    return twirp


def _dispatch_answer(req):
    return agent_dispatch.AgentDispatch(id="AD_test", agent_name=req.agent_name, room=req.room, metadata=req.metadata)


def make_settings(tmp_path, livekit=None, **env) -> Settings:
    base = {
        **store_env(),
        "DATA_DIR": str(tmp_path / "data"),
        "STORE_FSYNC": "0",
        "CALLING_HOURS": hours_around_now(),
        "MAX_CONCURRENT_OUTBOUND": "2",
        "AGENT_NAME": "debt-relief-test",
        "SIP_OUTBOUND_TRUNK_ID": "ST_outbound",
    }
    if livekit is not None:
        base |= livekit.env()
    return Settings.from_env(base | env, dotenv=False)


def make_client(settings):
    app = create_app({"SETTINGS": settings, "DATA_DIR": str(settings.data_dir), "API_TOKENS": [TOKEN]})
    return app, app.test_client()


def place(client, number):
    return client.post("/api/calls", json={"phone_number": number}, headers=AUTH)


def error_code(response):
    return response.get_json()["error"]["code"]


# ---- the dispatch ------------------------------------------------------------------------------
def test_a_call_dispatches_the_agent_into_a_fresh_room_with_the_number(tmp_path, livekit):
    _app, client = make_client(make_settings(tmp_path, livekit))
    response = place(client, "+1 (212) 555-1234")
    assert response.status_code == 202, response.get_json()
    call = response.get_json()
    assert call["state"] == "queued" and call["phone_number"] == NYC and call["dispatch_id"] == "AD_test"
    assert response.headers["Location"] == f"/api/calls/{call['id']}"

    [sent] = livekit.calls_to("AgentDispatchService", "CreateDispatch")
    assert sent.request.agent_name == "debt-relief-test"
    assert sent.request.room == call["room"] == f"outbound-{call['id']}"
    metadata = json.loads(sent.request.metadata)
    assert metadata["phone_number"] == NYC and metadata["call_id"] == call["id"]
    assert sent.claims.video.room_admin and sent.claims.video.room == call["room"]
    # what the agent's job reads from that metadata
    assert (dispatch_phone_number(sent.request.metadata), dispatch_call_id(sent.request.metadata)) == (NYC, call["id"])
    details = call_details("customer", {"sip.phoneNumber": "12125551234"}, sent.request.metadata)
    assert (details.direction, details.caller_id, details.called_number) == ("outbound", NYC, NYC)

    shown = client.get(f"/api/calls/{call['id']}", headers=AUTH).get_json()
    assert shown["state"] == "queued" and shown["sip_status_code"] is None
    assert [h["state"] for h in shown["history"]] == ["queued"]

    second = place(client, NYC).get_json()
    assert second["room"] != call["room"]  # every call its own room


def test_a_refused_dispatch_fails_the_call_with_503(tmp_path, livekit):
    livekit.on("AgentDispatchService", "CreateDispatch", lambda req: TwirpError("internal", "no workers", 500))
    app, client = make_client(make_settings(tmp_path, livekit))
    response = place(client, NYC)
    assert response.status_code == 503 and error_code(response) == "dispatch_failed"
    [call_id] = app.extensions["backend"].store.event_keys(outbound.CALL_KIND)
    shown = client.get(f"/api/calls/{call_id}", headers=AUTH).get_json()
    assert shown["state"] == "failed" and "no workers" in shown["error"]
    assert outbound.active_calls(app.extensions["backend"].store) == []  # a failed call frees its line


def test_unknown_call_id_is_404_and_the_route_needs_a_token(tmp_path, livekit):
    _app, client = make_client(make_settings(tmp_path, livekit))
    assert client.get("/api/calls/nope", headers=AUTH).status_code == 404
    assert client.get("/api/calls/nope").status_code == 401
    assert client.post("/api/calls", json={"phone_number": NYC}).status_code == 401
    assert livekit.calls == []


# ---- the gates, in the contract's order --------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "listed", "env", "busy_lines", "status", "code"),
    [
        ("+1212555123", False, {}, 0, 400, "invalid_phone_number"),
        ("+15551234567", True, {}, 2, 400, "invalid_phone_number"),  # not a real number: 400 first
        (NYC, True, {"CALLING_HOURS": hours_around_now(before=-3, after=5)}, 2, 403, "do_not_call"),
        (NYC, False, {"CALLING_HOURS": hours_around_now(before=-3, after=5)}, 2, 409, "outside_calling_hours"),
        (NYC, False, {"SIP_OUTBOUND_TRUNK_ID": ""}, 2, 429, "too_many_outbound_calls"),
        (NYC, False, {"SIP_OUTBOUND_TRUNK_ID": ""}, 1, 503, "outbound_not_configured"),
    ],
)
def test_each_gate_refuses_with_its_status_in_order(tmp_path, livekit, number, listed, env, busy_lines, status, code):
    app, client = make_client(make_settings(tmp_path, livekit, **env))
    store = app.extensions["backend"].store
    if listed:
        dnc.add(store, number, source="api")
    for i in range(busy_lines):
        outbound.record_state(store, f"busy-{i}", "dialing", phone_number=LA, session_id=f"s-{i}")
    response = place(client, number)
    assert response.status_code == status, response.get_json()
    assert error_code(response) == code
    assert livekit.calls_to("AgentDispatchService", "CreateDispatch") == []
    refusals = store.events(outbound.REFUSAL_KIND)
    assert [(r["data"]["status"], r["data"]["code"]) for r in refusals] == [(status, code)]  # recorded


def test_outbound_without_livekit_credentials_is_not_configured(tmp_path):
    _app, client = make_client(make_settings(tmp_path))
    response = place(client, NYC)
    assert response.status_code == 503 and error_code(response) == "outbound_not_configured"


def test_hours_are_the_called_partys_not_ours(tmp_path, livekit):
    ny_now = datetime.now(ZoneInfo("America/New_York"))
    la_now = datetime.now(ZoneInfo("America/Los_Angeles"))
    window = f"{ny_now - timedelta(minutes=30):%H:%M}-{ny_now + timedelta(minutes=30):%H:%M}"
    _app, client = make_client(make_settings(tmp_path, livekit, CALLING_HOURS=window))
    assert place(client, NYC).status_code == 202
    refused = place(client, LA)
    assert refused.status_code == 409
    assert f"{la_now:%H}:" in refused.get_json()["error"]["message"]  # LA's local time is quoted


def test_the_concurrency_limit_counts_only_calls_in_progress(tmp_path, livekit):
    app, client = make_client(make_settings(tmp_path, livekit))
    store = app.extensions["backend"].store
    first, second = place(client, NYC).get_json(), place(client, NYC).get_json()
    assert error_code(place(client, NYC)) == "too_many_outbound_calls"
    outbound.record_state(store, first["id"], "failed", dial_outcome="busy", sip_status_code=486)
    third = place(client, NYC)
    assert third.status_code == 202
    # a call whose session has its call log is over, even before the agent says so
    outbound.record_state(store, second["id"], "answered", session_id="sess-2")
    assert error_code(place(client, NYC)) == "too_many_outbound_calls"
    BackendAgent(store=store).end_call("completed", NYC, session_id="sess-2")
    assert client.get(f"/api/calls/{second['id']}", headers=AUTH).get_json()["state"] == "completed"
    assert place(client, NYC).status_code == 202


def test_a_call_that_stops_moving_is_shown_failed_and_frees_its_line(tmp_path):
    settings = make_settings(tmp_path)
    app, _client = make_client(settings)
    store = app.extensions["backend"].store
    outbound.record_state(store, "c1", "queued", phone_number=NYC, room="outbound-c1")
    assert outbound.call_view(store, "c1")["state"] == "queued"
    later = datetime.now(UTC) + timedelta(seconds=outbound.STALE_AFTER_SECONDS["queued"] + 1)
    view = outbound.call_view(store, "c1", later)
    assert (view["state"], view["stale"]) == ("failed", True)
    assert outbound.active_calls(store, later) == []
    assert len(outbound.active_calls(store)) == 1


# ---- the agent dials ----------------------------------------------------------------------------
SIP_ERRORS = {486: ("unavailable", 503, "Busy Here"), 480: ("unavailable", 503, "Temporarily Unavailable")}


def sip_error(code: int) -> TwirpError:
    twirp_code, http_status, phrase = SIP_ERRORS[code]
    meta = {"sip_status_code": str(code), "sip_status": phrase}
    return TwirpError(twirp_code, f"SIP call failed: {code} {phrase}", http_status, meta)


def answer(req):
    return sip_proto.SIPParticipantInfo(
        participant_id="PA_1",
        participant_identity=req.participant_identity,
        room_name=req.room_name,
        sip_call_id="SCL_1",
    )


async def place_and_dial(tmp_path, livekit, handler):
    """The API queues and dispatches a call; the agent job, from the dispatch the fake LiveKit
    decoded, opens the session and dials. Returns (client, call id, dial result, backend)."""
    settings = make_settings(tmp_path, livekit)
    app, client = make_client(settings)
    livekit.on("SIP", "CreateSIPParticipant", handler)
    response = await asyncio.to_thread(place, client, NYC)
    assert response.status_code == 202
    [dispatch] = livekit.calls_to("AgentDispatchService", "CreateDispatch")
    metadata = dispatch.request.metadata
    backend = BackendAgent(store=app.extensions["backend"].store, settings=settings)
    async with rooms.livekit_api(settings) as lkapi:
        result = await dial.dial_customer(
            lkapi,
            backend,
            settings=settings,
            room_name=dispatch.request.room,
            session_id="sess-out",
            phone_number=dispatch_phone_number(metadata),
            call_id=dispatch_call_id(metadata),
        )
    return client, response.get_json()["id"], result, backend


def shown(client, call_id):
    return client.get(f"/api/calls/{call_id}", headers=AUTH).get_json()


async def test_an_answered_call_runs_as_an_outbound_session(tmp_path, livekit):
    client, call_id, result, backend = await place_and_dial(tmp_path, livekit, answer)
    assert result.answered and result.participant_identity == dial.CUSTOMER_IDENTITY
    [sent] = livekit.calls_to("SIP", "CreateSIPParticipant")
    req = sent.request
    assert (req.sip_trunk_id, req.sip_call_to, req.room_name) == ("ST_outbound", NYC, f"outbound-{call_id}")
    assert req.wait_until_answered is True and req.ringing_timeout.seconds == rooms.RINGING_TIMEOUT_S
    session = backend.store.get_session("sess-out")
    assert (session["direction"], session["caller_id"], session["called_number"]) == ("outbound", NYC, NYC)
    assert session["status"] == "active"
    # in progress on this machine: were this process to die now, the next one would close it
    assert [x.session_id for x in backend.store.leases()] == ["sess-out"]
    view = shown(client, call_id)
    assert view["state"] == "answered" and view["session_id"] == "sess-out"
    assert [h["state"] for h in view["history"]] == ["queued", "dialing", "answered"]

    ended = backend.end_call("customer_not_interested", NYC, session_id="sess-out")
    await dial.record_completion(backend, call_id, ended["call"])
    view = shown(client, call_id)
    assert (view["state"], view["end_reason"]) == ("completed", "customer_not_interested")
    assert view["history"][-1]["state"] == "completed"


@pytest.mark.parametrize(
    ("sip_code", "outcome", "reason"),
    [(486, "busy", "voicemail"), (480, "no_answer", "voicemail")],
)
async def test_busy_and_no_answer_end_the_session_with_the_sip_status(tmp_path, livekit, sip_code, outcome, reason):
    def refuse(req):
        raise sip_error(sip_code)

    client, call_id, result, backend = await place_and_dial(tmp_path, livekit, refuse)
    assert (result.outcome, result.sip_status_code) == (outcome, sip_code)
    log = backend.store.session_call("sess-out")
    assert (log["reason"], log["outcome"]) == (reason, "no_contact")
    assert log["details"]["sip_status_code"] == sip_code and log["details"]["dial_outcome"] == outcome
    assert log["details"]["sip_status"] == SIP_ERRORS[sip_code][2]
    assert backend.store.get_session("sess-out")["status"] == "completed"
    view = shown(client, call_id)
    assert (view["state"], view["sip_status_code"], view["dial_outcome"]) == ("failed", sip_code, outcome)
    assert view["end_reason"] == reason
    assert [h["state"] for h in view["history"]] == ["queued", "dialing", "failed"]
    assert backend.store.query_calls(caller_id=NYC)[0] == [log]  # exactly one call log
    assert backend.store.leases() == []  # ended: nothing left for a sweep


async def test_a_number_listed_after_queueing_is_not_dialed(tmp_path, livekit):
    settings = make_settings(tmp_path, livekit)
    app, _client = make_client(settings)
    store = app.extensions["backend"].store
    livekit.on("SIP", "CreateSIPParticipant", answer)
    dnc.add(store, NYC, source="opt_out", session_id="other-call")
    backend = BackendAgent(store=store, settings=settings)
    async with rooms.livekit_api(settings) as lkapi:
        result = await dial.dial_customer(
            lkapi, backend, settings=settings, room_name="r", session_id="s", phone_number=NYC, call_id="c"
        )
    assert not result.answered and result.error == "do_not_call"
    assert livekit.calls_to("SIP", "CreateSIPParticipant") == []
    assert store.session_call("s")["reason"] == "do_not_call_request"


async def test_without_an_outbound_trunk_nothing_is_dialed(tmp_path, livekit):
    settings = make_settings(tmp_path, livekit, SIP_OUTBOUND_TRUNK_ID="")
    backend = BackendAgent(settings=settings)
    try:
        async with rooms.livekit_api(settings) as lkapi:
            result = await dial.dial_customer(
                lkapi, backend, settings=settings, room_name="r", session_id="s", phone_number=NYC, call_id="c"
            )
        assert (result.outcome, result.end_reason) == ("failed", "agent_error")
        assert livekit.calls_to("SIP", "CreateSIPParticipant") == []
        assert backend.store.session_call("s")["details"]["error"] == "SIP_OUTBOUND_TRUNK_ID is not set"
        assert outbound.call_view(backend.store, "c")["state"] == "failed"
    finally:
        backend.close()


# ---- the conversation once answered ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("direction", "opening"), [("outbound", "You placed this call"), ("inbound", "Greet the caller")]
)
async def test_an_answered_outbound_call_opens_as_a_call_we_placed(tmp_path, direction, opening):
    settings = make_settings(tmp_path, BUSINESS_NAME="Acme Debt Help", CALLBACK_NUMBER="+18005550100")
    backend = BackendAgent(settings=settings)
    model = ScriptedLLM(turn("Hi, this is Acme Debt Help returning your call."))
    try:
        session, agent = telephony_agent.build_agent_session(
            session_id="sess-out", caller_id=NYC, backend=backend, llm=model, settings=settings, direction=direction
        )
        await session.start(agent)
        await session.aclose()
    finally:
        backend.close()
    seen = " ".join(item.text_content or "" for item in model.seen[0].items if hasattr(item, "text_content"))
    assert opening in seen
    assert ("Greet the caller now" in seen) is (direction == "inbound")
