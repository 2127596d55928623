"""The call script: every prompt file loads, names only tools, categories, end reasons and fields
that exist, names every tool it relies on, fills every placeholder from settings, and keeps the
disclosures, opt-out and FTC rules the product depends on. The opening disclosure says the call is
recorded only when its recording started: with recording off or failed, no prompt the model
receives claims it or asks for `call_recorded`."""

from __future__ import annotations

import inspect
import json
import re
import typing

import pytest

import telephony_agent
from backend.backend_agent import BackendAgent
from backend.calls.recording import RecordingStart
from backend.settings import Settings
from backend.store import MemoryStore
from backend.store.records import CATEGORIES, END_REASONS, SCHEMA_DIR
from backend.voice.prompts import (
    NOT_RECORDED_RULE,
    PROMPT_DIR,
    call_instructions,
    greeting,
    placeholders,
    prompt,
    raw_prompt,
    script_values,
)
from backend.voice.tools import TOOL_NAMES, CallTools, InformationFields
from tests.fakes.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.store_free  # touches no store

CHECK_FILES = {"disclosure_phrases"}  # read by the code, never sent to the model
PROMPTS = sorted(p.stem for p in PROMPT_DIR.glob("*.md") if p.stem not in CHECK_FILES)
SETTINGS = Settings.from_env({"BUSINESS_NAME": "Acme Debt Help", "CALLBACK_NUMBER": "+15550001111"}, dotenv=False)
# Any wording that could tell the caller the call is recorded (the prompts "save" facts, never
# "record" them, so this matches nothing else).
CLAIMS = re.compile(r"record(ed|ing|s)?\b|call_recorded", re.IGNORECASE)
EARLIER = [{"category": "debt_info", "information": "Owes $9,000 to Citi"}]


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", text))


def test_the_shipped_prompts_are_there():
    assert {"call_script", "greeting", "returning_caller"} <= set(PROMPTS)


def test_the_four_tools_are_the_agents_tools():
    assert {name for name in TOOL_NAMES if callable(getattr(CallTools, name, None))} == set(TOOL_NAMES)


@pytest.mark.parametrize("name", PROMPTS)
def test_prompt_names_only_things_that_exist(name):
    parameters = {p for t in TOOL_NAMES for p in inspect.signature(getattr(CallTools, t).typed).parameters}
    known = set(TOOL_NAMES) | parameters | set(CATEGORIES) | set(END_REASONS) | set(InformationFields.model_fields)
    text = raw_prompt(name)
    assert text
    assert backticked(text) <= known, backticked(text) - known


def test_call_script_names_every_tool_it_relies_on():
    assert set(TOOL_NAMES) <= backticked(raw_prompt("call_script"))
    assert "share_information" in backticked(raw_prompt("greeting"))
    assert "share_information" in backticked(raw_prompt("returning_caller"))


def test_call_script_offers_exactly_the_end_reasons_the_model_may_choose():
    model_reasons = set(typing.get_args(typing.get_type_hints(CallTools.end_call.typed)["reason"]))
    assert backticked(raw_prompt("call_script")) & set(END_REASONS) == model_reasons


@pytest.mark.parametrize("recorded", [True, False])
@pytest.mark.parametrize("name", PROMPTS)
def test_every_placeholder_is_filled(name, recorded):
    values = {**script_values(SETTINGS, recorded=recorded), "records": "- [debt_info] Owes $9,000"}
    assert placeholders(name) <= set(values)
    assert "{{" not in prompt(name, **values)


def test_a_value_is_never_searched_for_placeholders():
    """A returning caller's words go into the prompt as they are, even when they look like one."""
    text = call_instructions(SETTINGS, [{"category": "debt_info", "information": "Owes {{business_name}} {{x}}"}])
    assert "Owes {{business_name}} {{x}}" in text


def test_an_empty_placeholder_alone_on_its_line_takes_the_line():
    script = call_instructions(SETTINGS, [], recorded=True)
    assert "- that the caller is speaking with an AI assistant;\n- that the call is recorded;\n- the callback" in script
    assert "\n\n\n" not in script
    unrecorded = call_instructions(SETTINGS, [], recorded=False)
    assert "- that the caller is speaking with an AI assistant;\n- the callback number" in unrecorded


def test_a_missing_value_fails_loudly():
    with pytest.raises(KeyError):
        prompt("call_script")


def test_threshold_and_disclosures_come_from_settings():
    settings = Settings.from_env({**vars_env(SETTINGS), "QUALIFY_MIN_UNSECURED_DEBT_USD": "25000"}, dotenv=False)
    text = prompt("call_script", **script_values(settings))
    assert "at least $25,000" in text
    assert "Acme Debt Help" in text and "+15550001111" in text


def disclosures_asked_for(script: str) -> list[str]:
    return json.loads(re.search(r"`disclosures` =\s*(\[[^\]]*\])", script).group(1))


def test_disclosures_recorded_are_the_schemas_disclosures():
    schema = json.loads((SCHEMA_DIR / "fields" / "conversation_flow.json").read_text())
    allowed = schema["properties"]["disclosures"]["items"]["enum"]
    assert disclosures_asked_for(call_instructions(SETTINGS, [], recorded=True)) == allowed
    unrecorded = disclosures_asked_for(call_instructions(SETTINGS, [], recorded=False))
    assert unrecorded == [d for d in allowed if d != "call_recorded"]


def test_a_recorded_call_discloses_its_recording():
    script = call_instructions(SETTINGS, EARLIER, recorded=True)
    assert "- that the call is recorded;" in script
    assert NOT_RECORDED_RULE not in script
    for outbound in (False, True):
        assert "that the call is recorded" in greeting(outbound=outbound, recorded=True)


def test_a_call_not_recorded_never_claims_it():
    script = call_instructions(SETTINGS, EARLIER, recorded=False)
    assert NOT_RECORDED_RULE in script  # the one mention: that it is not recorded
    assert not CLAIMS.search(script.replace(NOT_RECORDED_RULE, "")), CLAIMS.findall(script)
    for outbound in (False, True):
        text = greeting(outbound=outbound, recorded=False)
        assert not CLAIMS.search(text), text
        assert "the business name" in text and "AI assistant" in text and "callback number" in text
    values = {**script_values(SETTINGS, recorded=False), "records": "- [debt_info] Owes $9,000"}
    for name in PROMPTS:
        assert not CLAIMS.search(prompt(name, **values).replace(NOT_RECORDED_RULE, "")), name


@pytest.mark.parametrize(
    ("recording", "recorded"),
    [
        (None, False),  # RECORDING=off
        (RecordingStart(ok=True, egress_id="EG_1", location="/recordings/s-1.ogg"), True),
        (RecordingStart(ok=False, error="LiveKit Egress refused it (permission_denied: no)."), False),
    ],
    ids=["off", "started", "refused"],
)
async def test_the_instructions_built_for_a_call_follow_its_recording(recording, recorded):
    backend = BackendAgent(store=MemoryStore(), settings=SETTINGS)
    backend.start_session("old", "+15551234567")
    backend.share_information("Owes $9,000 to Citi", "debt_info", "+15551234567", session_id="old")
    _session, agent = telephony_agent.build_agent_session(
        session_id="s-1",
        caller_id="+15551234567",
        backend=backend,
        llm=ScriptedLLM(),
        settings=SETTINGS,
        recording=recording,
    )
    earlier = backend.get_shared_information(caller_id="+15551234567")["records"]
    assert agent.instructions == call_instructions(SETTINGS, earlier, recorded=recorded)
    assert bool(CLAIMS.search(agent.instructions.replace(NOT_RECORDED_RULE, ""))) is recorded
    assert ("call_recorded" in disclosures_asked_for(agent.instructions)) is recorded


def test_opt_out_and_ftc_rules_are_in_the_script():
    script = raw_prompt("call_script").lower()
    for phrase in ("stop calling me", "take me off your list", "do_not_call_request"):
        assert phrase in script
    for rule in ("never promise or imply results", "never quote fees", "never guarantee savings"):
        assert rule in script
    for disclosure in ("business name", "ai assistant", "callback number"):
        assert disclosure in script
    assert "the call is recorded" in call_instructions(SETTINGS, [], recorded=True)


def vars_env(settings: Settings) -> dict[str, str]:
    return {"BUSINESS_NAME": settings.business_name, "CALLBACK_NUMBER": settings.callback_number}


def test_the_disclosure_phrases_cover_exactly_the_schemas_disclosures():
    schema = json.loads((SCHEMA_DIR / "fields" / "conversation_flow.json").read_text())
    allowed = schema["properties"]["disclosures"]["items"]["enum"]
    headings = re.findall(r"^## ([a-z_]+)$", raw_prompt("disclosure_phrases"), re.M)
    assert sorted(headings) == sorted(allowed)
