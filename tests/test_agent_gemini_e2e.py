"""End to end through the shipped Gemini Live model (the real RealtimeModel and google-genai,
AUDIO modality) against a local fake Live server: the model is declared exactly the contract's
four tools, a tool call lands in the store and its answer goes back, a repeated call writes one
record, and each call ends with exactly one call log, also when the model session fails."""

from __future__ import annotations

import ssl

import pytest

import telephony_agent
from backend.store.records import CATEGORIES
from backend.voice import call
from backend.voice.model import build_realtime_model, gemini_tls_context
from tests.fakes.gemini_live import speech, tool_call
from tests.fakes.scripted_llm import CALLER

pytest_plugins = ["tests.conftest_agent"]
pytestmark = pytest.mark.slow

CONTRACT_PARAMETERS = {
    "share_information": ({"information", "category", "fields"}, {"information", "category"}),
    "get_shared_information": ({"category", "limit"}, set()),
    "end_call": ({"reason"}, {"reason"}),
    "get_current_time": ({"timezone"}, set()),
}
DEBT = {
    "information": "Owes $12,000 on a Chase card",
    "category": "debt_info",
    "fields": {"debt_type": "credit_card", "amount_usd": 12000, "creditor": "Chase"},
}


async def start(backend, settings, model, session_id="sess-1"):
    session, agent = telephony_agent.build_agent_session(
        session_id=session_id, caller_id=CALLER, backend=backend, llm=model, settings=settings
    )
    await session.start(agent)
    return session


def calls_of(backend, session_id):
    return [c for c in backend.store.query_calls(caller_id=CALLER)[0] if c["session_id"] == session_id]


async def test_setup_declares_the_contract_tools_and_phone_settings(
    agent_backend, agent_settings, gemini, realtime_model, until
):
    session = await start(agent_backend, agent_settings, realtime_model)
    await until(lambda: gemini.received("setup"))
    setup = gemini.received("setup")[0]
    declarations = {d["name"]: d for t in setup["tools"] for d in t.get("functionDeclarations", [])}
    assert set(declarations) == set(CONTRACT_PARAMETERS)
    for name, (params, required) in CONTRACT_PARAMETERS.items():
        schema = declarations[name]["parameters"]
        assert set(schema["properties"]) == params, name
        assert set(schema.get("required", [])) == required, name
    assert declarations["share_information"]["parameters"]["properties"]["category"]["enum"] == list(CATEGORIES)
    config = setup["generationConfig"]
    assert config["responseModalities"] == ["AUDIO"]
    assert setup["realtimeInputConfig"]["automaticActivityDetection"]["startOfSpeechSensitivity"] == (
        "START_SENSITIVITY_LOW"
    )
    assert setup["contextWindowCompression"]["slidingWindow"]["targetTokens"] == 16000
    assert "sessionResumption" in setup
    assert "Acme Debt Help" in setup["systemInstruction"]["parts"][0]["text"]
    assert gemini.paths[0].endswith("GenerativeService.BidiGenerateContent")
    await session.aclose()


async def test_tool_call_writes_the_record_and_answers_the_model(
    agent_backend, agent_settings, gemini, realtime_model, until
):
    gemini.reply(speech("Hi, this is Acme Debt Help."), tool_call("c1", "share_information", **DEBT))
    gemini.reply(speech("Got it. Anything else?"))
    session = await start(agent_backend, agent_settings, realtime_model)
    await until(lambda: gemini.tool_responses())

    [response] = gemini.tool_responses()
    assert response == {"id": "c1", "name": "share_information", "response": {"output": "Saved under debt_info."}}
    [record] = agent_backend.get_shared_information(session_id="sess-1")["records"]
    assert (record["caller_id"], record["information"]) == (CALLER, DEBT["information"])
    assert record["fields"] == DEBT["fields"]
    await session.aclose()


async def test_repeated_tool_call_writes_one_record(agent_backend, agent_settings, gemini, realtime_model, until):
    gemini.reply(tool_call("c1", "share_information", **DEBT))
    gemini.reply(tool_call("c2", "share_information", **DEBT))
    gemini.reply(speech("Noted."))
    session = await start(agent_backend, agent_settings, realtime_model)
    await until(lambda: len(gemini.tool_responses()) == 2)

    first, second = gemini.tool_responses()
    assert first["response"] == {"output": "Saved under debt_info."}
    assert second["id"] == "c2" and "nothing new was written" in second["response"]["output"]
    assert agent_backend.get_shared_information(session_id="sess-1")["count"] == 1
    await session.aclose()


async def test_bad_arguments_from_the_model_go_back_as_an_error(
    agent_backend, agent_settings, gemini, realtime_model, until
):
    gemini.reply(tool_call("c1", "share_information", information="Owes money", category="banana"))
    gemini.reply(speech("Let me try that again."))
    session = await start(agent_backend, agent_settings, realtime_model)
    await until(lambda: gemini.tool_responses())
    [response] = gemini.tool_responses()
    assert "category" in response["response"]["error"]
    assert agent_backend.get_shared_information(session_id="sess-1")["count"] == 0
    await session.aclose()


async def test_end_call_writes_one_call_log(agent_backend, agent_settings, gemini, realtime_model, until):
    gemini.reply(tool_call("c1", "end_call", reason="customer_not_interested"))
    gemini.reply(speech("Thanks for calling. Goodbye!", seconds=0.2))
    closed = []
    session = await start(agent_backend, agent_settings, realtime_model)
    session.on("close", closed.append)
    await until(lambda: closed, timeout=15)  # end_call hangs up by itself after the goodbye

    assert gemini.tool_responses()[0]["response"]["output"].startswith("Call ended and saved.")
    assert await call.finish_call(session.userdata) is None  # the shutdown path adds nothing
    [log] = calls_of(agent_backend, "sess-1")
    assert (log["reason"], log["outcome"]) == ("customer_not_interested", "not_interested")
    assert agent_backend.store.get_session("sess-1")["status"] == "completed"


async def test_caller_hanging_up_is_logged_with_what_was_captured(
    agent_backend, agent_settings, gemini, realtime_model, until
):
    gemini.reply(tool_call("c1", "share_information", **DEBT))
    gemini.reply(speech("Got it."))
    session = await start(agent_backend, agent_settings, realtime_model)
    await until(lambda: gemini.tool_responses())
    await session.aclose()  # the line drops
    result = await call.finish_call(session.userdata)

    assert result["success"]
    [log] = calls_of(agent_backend, "sess-1")
    assert (log["reason"], log["outcome"], log["information_count"]) == ("caller_hung_up", "incomplete", 1)
    assert log["duration_seconds"] > 0


async def test_model_session_failure_is_logged_as_agent_error(
    agent_backend, agent_settings, gemini, realtime_model, until
):
    gemini.reject_connections = True
    closed = []
    session = await start(agent_backend, agent_settings, realtime_model)
    session.on("close", closed.append)
    await until(lambda: closed, timeout=15)
    await call.finish_call(session.userdata)

    [log] = calls_of(agent_backend, "sess-1")
    assert (log["reason"], log["outcome"]) == ("agent_error", "incomplete")


async def test_a_call_reuses_the_process_tls_context(
    agent_backend, agent_settings, gemini, until, monkeypatch, tmp_path
):
    """The shipped options, with Google's address swapped by the SDK's own environment: the call
    reaches the server over TLS, and nothing on the call's path builds a TLS context (google-genai
    would otherwise load the CA bundle three times per call, ~150 ms on the call's event loop)."""
    ca = tmp_path / "ca.pem"
    gemini.ca.cert_pem.write_to_path(str(ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
    gemini_tls_context.cache_clear()
    try:
        gemini_tls_context()  # the worker's prewarm
        built = []
        real = ssl.create_default_context
        monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: built.append(k) or real(*a, **k))
        gemini.reply(tool_call("c1", "share_information", **DEBT))
        gemini.reply(speech("Got it."))
        session = await start(agent_backend, agent_settings, build_realtime_model(agent_settings), "sess-tls")
        await until(lambda: gemini.tool_responses())
        assert gemini.tool_responses()[0]["response"] == {"output": "Saved under debt_info."}
        assert built == []
        await session.aclose()
    finally:
        gemini_tls_context.cache_clear()
