"""The do-not-call list: an opt-out during a call puts the caller's number on it (with the time,
the session and the source); `GET/POST/DELETE /api/dnc` manage it, and every removal is logged
with who removed the number and why; an inbound caller on the list is still served, while an
outbound call to them is refused with 403."""

from __future__ import annotations

import logging

import pytest

from backend.api_server import create_app
from backend.backend_agent import BackendAgent
from backend.calls import dnc
from backend.calls.numbers import InvalidPhoneNumber
from backend.settings import Settings
from tests.fakes.scripted_llm import ScriptedLLM, opt_out_turns, start_call, tool, turn
from tests.faults import refuse_writes
from tests.postgres import store_env

pytest_plugins = ["tests.conftest_agent"]

TOKEN = "dnc-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NUMBER = "+12125551234"
OTHER = "+13105559876"


# ---- the list in the store (every store implementation) -------------------------------------
def test_add_contains_and_list(store):
    entry, created = dnc.add(store, "+1 (212) 555-1234", source="opt_out", session_id="s-1")
    assert created is True
    assert entry["phone_number"] == NUMBER and entry["source"] == "opt_out" and entry["session_id"] == "s-1"
    assert entry["added_at"].endswith("Z")
    assert dnc.contains(store, NUMBER) and dnc.contains(store, "+1 212-555-1234")
    assert not dnc.contains(store, OTHER)
    again, created = dnc.add(store, NUMBER, source="api")
    assert created is False and again == entry  # the first entry stands; nothing new written
    assert len(store.events(dnc.KIND, NUMBER)) == 1
    dnc.add(store, OTHER, source="api", note="asked by letter")
    assert [e["phone_number"] for e in dnc.listed(store)] == [OTHER, NUMBER]  # newest first


def test_remove_is_logged_and_keeps_the_history(store):
    dnc.add(store, NUMBER, source="opt_out", session_id="s-1")
    removed = dnc.remove(store, NUMBER, by="api (10.0.0.1)", reason="added by mistake")
    assert removed["phone_number"] == NUMBER
    assert not dnc.contains(store, NUMBER) and dnc.listed(store) == []
    assert dnc.remove(store, NUMBER, by="api") is None  # not listed: nothing written
    history = dnc.history(store, NUMBER)
    assert [h["action"] for h in history] == ["add", "remove"]
    assert history[1]["by"] == "api (10.0.0.1)" and history[1]["reason"] == "added by mistake"
    dnc.add(store, NUMBER, source="api")
    assert dnc.contains(store, NUMBER)  # listed again after a removal


def test_numbers_that_are_not_phone_numbers_are_refused(store):
    for bad in ("console", "web-user-7", "", "+1"):
        with pytest.raises(InvalidPhoneNumber):
            dnc.add(store, bad, source="opt_out")
    assert not dnc.contains(store, "console")
    # An E.164-shaped caller id unknown to phonenumbers' metadata is still listed, never dropped.
    dnc.add(store, "+15551234567", source="opt_out")
    assert dnc.contains(store, "+15551234567")


# ---- the API ------------------------------------------------------------------------------------
@pytest.fixture
def api_settings(tmp_path) -> Settings:
    return Settings.from_env(
        {**store_env(), "DATA_DIR": str(tmp_path / "api"), "STORE_FSYNC": "0", "CALLING_HOURS": "08:00-21:00"},
        dotenv=False,
    )


@pytest.fixture
def app(api_settings):
    return create_app({"SETTINGS": api_settings, "DATA_DIR": str(api_settings.data_dir), "API_TOKENS": [TOKEN]})


@pytest.fixture
def client(app):
    return app.test_client()


def test_api_add_list_and_delete_with_the_deletion_logged(client, app, caplog):
    assert client.get("/api/dnc", headers=AUTH).get_json() == {"dnc": [], "count": 0}
    added = client.post("/api/dnc", json={"phone_number": "+1 212 555 1234", "note": "letter"}, headers=AUTH)
    assert added.status_code == 201
    assert added.get_json()["entry"] | {"added_at": None} == {
        "phone_number": NUMBER,
        "added_at": None,
        "source": "api",
        "session_id": None,
        "note": "letter",
    }
    assert client.post("/api/dnc", json={"phone_number": NUMBER}, headers=AUTH).status_code == 200  # already
    listing = client.get("/api/dnc", headers=AUTH).get_json()
    assert listing["count"] == 1 and listing["dnc"][0]["phone_number"] == NUMBER

    with caplog.at_level(logging.INFO, logger="backend.calls.dnc"):
        # "+" unencoded in a query string arrives as a space; it still names the number
        gone = client.delete(f"/api/dnc?phone_number={NUMBER}&reason=customer+asked", headers=AUTH)
    assert gone.status_code == 200 and gone.get_json()["removed"]["phone_number"] == NUMBER
    assert client.get("/api/dnc", headers=AUTH).get_json()["count"] == 0
    [removal] = [h for h in dnc.history(app.extensions["backend"].store, NUMBER) if h["action"] == "remove"]
    assert removal["reason"] == "customer asked" and removal["by"].startswith("api")
    logged = [r.getMessage() for r in caplog.records if "removed" in r.getMessage()]
    assert logged and all("5551234" not in m for m in logged)  # logged, with the number masked

    again = client.delete("/api/dnc", query_string={"phone_number": NUMBER}, headers=AUTH)
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "not_listed"


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "code"),
    [
        ("post", {"json": {"phone_number": "call me"}}, 400, "invalid_phone_number"),
        ("post", {"json": {"phone_number": NUMBER, "extra": 1}}, 400, "invalid_body"),
        ("post", {"data": "not json"}, 400, "invalid_json"),
        ("delete", {}, 400, "missing_phone_number"),
        ("delete", {"query_string": {"phone_number": NUMBER, "who": "x"}}, 400, "unknown_parameter"),
        ("get", {"query_string": {"limit": 5}}, 400, "unknown_parameter"),
    ],
)
def test_api_bad_requests_use_the_envelope(client, method, kwargs, status, code):
    response = getattr(client, method)("/api/dnc", headers=AUTH, **kwargs)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_api_needs_a_token(client):
    assert client.get("/api/dnc").status_code == 401
    assert client.post("/api/dnc", json={"phone_number": NUMBER}).status_code == 401
    assert client.delete("/api/dnc", query_string={"phone_number": NUMBER}).status_code == 401


def test_an_outbound_call_to_a_listed_number_is_refused_with_403(client, app):
    dnc.add(app.extensions["backend"].store, NUMBER, source="opt_out", session_id="s-1")
    response = client.post("/api/calls", json={"phone_number": NUMBER}, headers=AUTH)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "do_not_call"
    [refusal] = app.extensions["backend"].store.events("outbound_refused", NUMBER)
    assert refusal["data"]["code"] == "do_not_call"


# ---- opt-outs during a call, and listed inbound callers ---------------------------------------
OPENING = turn("Hi, this is Acme Debt Help, an AI assistant; this call is recorded. How can I help?")


async def test_opt_out_during_a_call_puts_the_number_on_the_list(agent_backend, agent_settings):
    model = ScriptedLLM(OPENING)
    session, agent = start_call(agent_backend, agent_settings, model, caller_id=NUMBER)
    await session.start(agent)
    assert not dnc.contains(agent_backend.store, NUMBER)
    model.add(*opt_out_turns("You won't be called again. Goodbye."))
    await session.run(user_input="Take me off your list.")
    await session.aclose()

    entry = dnc.lookup(agent_backend.store, NUMBER)
    assert entry is not None
    assert (entry["source"], entry["session_id"]) == ("opt_out", "sess-1")
    assert len(agent_backend.store.events(dnc.KIND, NUMBER)) == 1  # the field and the reason: one entry
    assert agent_backend.store.session_call("sess-1")["reason"] == "do_not_call_request"


async def test_the_end_reason_alone_is_an_opt_out(agent_backend, agent_settings):
    model = ScriptedLLM(OPENING)
    session, agent = start_call(agent_backend, agent_settings, model, caller_id=NUMBER)
    await session.start(agent)
    model.add(turn("", tool("end_call", reason="do_not_call_request")), turn("Goodbye."))
    await session.run(user_input="Never call me again.")
    await session.aclose()
    assert dnc.lookup(agent_backend.store, NUMBER)["session_id"] == "sess-1"


async def test_other_end_reasons_list_nobody(agent_backend, agent_settings):
    model = ScriptedLLM(OPENING)
    session, agent = start_call(agent_backend, agent_settings, model, caller_id=NUMBER)
    await session.start(agent)
    model.add(turn("", tool("end_call", reason="customer_not_interested")), turn("Goodbye."))
    await session.run(user_input="Not interested.")
    await session.aclose()
    assert dnc.listed(agent_backend.store) == []


async def test_an_opt_out_without_a_phone_number_ends_the_call_normally(agent_backend, agent_settings):
    model = ScriptedLLM(OPENING)
    session, agent = start_call(agent_backend, agent_settings, model, caller_id="console")
    await session.start(agent)
    model.add(turn("", tool("end_call", reason="do_not_call_request")), turn("Goodbye."))
    result = await session.run(user_input="Stop calling me.")
    result.expect.next_event().is_function_call(name="end_call")
    result.expect.next_event().is_function_call_output(is_error=False)
    await session.aclose()
    assert dnc.listed(agent_backend.store) == []
    assert agent_backend.store.session_call("sess-1")["reason"] == "do_not_call_request"


async def test_an_inbound_caller_on_the_list_is_still_served(agent_backend, agent_settings):
    dnc.add(agent_backend.store, NUMBER, source="opt_out", session_id="earlier")
    model = ScriptedLLM(OPENING)
    session, agent = start_call(agent_backend, agent_settings, model, session_id="sess-2", caller_id=NUMBER)
    greeting = await session.start(agent, capture_run=True)
    greeting.expect.skip_next_event_if(type="agent_handoff")
    greeting.expect.next_event().is_message(role="assistant")
    model.add(
        turn("", tool("share_information", information="Owes $15,000 on cards", category="debt_info")),
        turn("Thanks. Anything else?"),
    )
    result = await session.run(user_input="I owe fifteen thousand on my cards.")
    result.expect.next_event().is_function_call(name="share_information")
    result.expect.next_event().is_function_call_output(output="Saved under debt_info.", is_error=False)
    await session.aclose()
    assert agent_backend.store.get_session("sess-2")["direction"] == "inbound"
    assert [r["information"] for r in agent_backend.store.session_information("sess-2")] == ["Owes $15,000 on cards"]
    assert dnc.contains(agent_backend.store, NUMBER)  # serving them does not take them off


# ---- an opt-out the store cannot save is never confirmed -----------------------------------------
def full_disk_for_dnc_writes(monkeypatch, failures: int | None = None) -> list[int]:
    """The store's disk refuses the do-not-call list's writes, `failures` times or always; every
    other write goes through. Returns the refused writes."""
    refused = refuse_writes(monkeypatch, b'"kind":"dnc"', failures)
    monkeypatch.setattr("backend.backend_agent.OPT_OUT_RETRY_SECONDS", 0.01)
    return refused


async def test_an_opt_out_that_was_not_saved_is_not_confirmed_and_is_listed_on_the_next_start(
    agent_backend, agent_settings, monkeypatch, caplog
):
    refused = full_disk_for_dnc_writes(monkeypatch)
    model = ScriptedLLM(OPENING)
    session, agent = start_call(agent_backend, agent_settings, model, caller_id=NUMBER)
    await session.start(agent)
    model.add(*opt_out_turns("Your request is noted. Goodbye."))
    with caplog.at_level(logging.ERROR):
        result = await session.run(user_input="Take me off your list.")
    outputs = [e.item.output for e in result.events if e.type == "function_call_output"]
    await session.aclose()

    assert len(outputs) == 2 and all("could NOT be saved" in o for o in outputs), outputs
    assert not any("will not be called again" in o and "Do not promise" not in o for o in outputs)
    assert len(refused) >= 3  # tried, and tried again, before giving up
    assert any(r.levelno == logging.ERROR and "NOT saved" in r.getMessage() for r in caplog.records)
    assert not dnc.contains(agent_backend.store, NUMBER)
    assert agent_backend.store.session_call("sess-1")["reason"] == "do_not_call_request"

    monkeypatch.undo()  # the disk has room again; the next agent process starts
    import telephony_agent

    proc = type("Proc", (), {"userdata": {}})()
    monkeypatch.setattr(telephony_agent, "get_settings", lambda: agent_settings)
    telephony_agent.prewarm(proc)
    entry = dnc.lookup(proc.userdata["backend"].store, NUMBER)
    assert (entry["source"], entry["session_id"]) == ("opt_out_retry", "sess-1")
    assert proc.userdata["backend"].reconcile_opt_outs() == []  # once listed, nothing more to do


async def test_a_passing_write_failure_is_retried_and_the_opt_out_confirmed(agent_backend, agent_settings, monkeypatch):
    refused = full_disk_for_dnc_writes(monkeypatch, failures=1)
    model = ScriptedLLM(OPENING)
    session, agent = start_call(agent_backend, agent_settings, model, caller_id=NUMBER)
    await session.start(agent)
    model.add(turn("", tool("end_call", reason="do_not_call_request")), turn("Goodbye."))
    result = await session.run(user_input="Never call me again.")
    result.expect.next_event().is_function_call(name="end_call")
    output = result.expect.next_event().is_function_call_output(is_error=False).event().item.output
    await session.aclose()
    assert refused == [refused[0]] and "Confirm they will not be called again" in output
    assert dnc.lookup(agent_backend.store, NUMBER)["source"] == "opt_out"


def test_verify_lists_an_opt_out_whose_write_had_failed(settings, monkeypatch):
    backend = BackendAgent(settings=settings)  # the configured store: its disk is what fills up
    full_disk_for_dnc_writes(monkeypatch)
    backend.start_session("s-9", NUMBER)
    assert backend.opt_out(NUMBER, "s-9")["error"] == "store_unavailable"
    assert backend.end_call("do_not_call_request", NUMBER, session_id="s-9")["success"]
    monkeypatch.undo()
    assert backend.verify()["relisted_opt_outs"] == ["s-9"]
    assert backend.on_do_not_call_list(NUMBER)
