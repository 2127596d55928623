"""The call script: every prompt file loads, names only tools, categories, end reasons and fields
that exist, names every tool it relies on, fills every placeholder from settings, and keeps the
disclosures, opt-out and FTC rules the product depends on."""

from __future__ import annotations

import inspect
import json
import re
import typing

import pytest

from backend.settings import Settings
from backend.store.records import CATEGORIES, END_REASONS, SCHEMA_DIR
from backend.voice.prompts import PROMPT_DIR, placeholders, prompt, raw_prompt, script_values
from backend.voice.tools import TOOL_NAMES, CallTools, InformationFields

CHECK_FILES = {"disclosure_phrases"}  # read by the code, never sent to the model
PROMPTS = sorted(p.stem for p in PROMPT_DIR.glob("*.md") if p.stem not in CHECK_FILES)
SETTINGS = Settings.from_env({"BUSINESS_NAME": "Acme Debt Help", "CALLBACK_NUMBER": "+15550001111"}, dotenv=False)


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


@pytest.mark.parametrize("name", PROMPTS)
def test_every_placeholder_is_filled(name):
    values = {**script_values(SETTINGS), "records": "- [debt_info] Owes $9,000"}
    assert placeholders(name) <= set(values)
    assert "{{" not in prompt(name, **values)


def test_a_missing_value_fails_loudly():
    with pytest.raises(KeyError):
        prompt("call_script")


def test_threshold_and_disclosures_come_from_settings():
    settings = Settings.from_env({**vars_env(SETTINGS), "QUALIFY_MIN_UNSECURED_DEBT_USD": "25000"}, dotenv=False)
    text = prompt("call_script", **script_values(settings))
    assert "at least $25,000" in text
    assert "Acme Debt Help" in text and "+15550001111" in text


def test_disclosures_recorded_are_the_schemas_disclosures():
    schema = json.loads((SCHEMA_DIR / "fields" / "conversation_flow.json").read_text())
    allowed = schema["properties"]["disclosures"]["items"]["enum"]
    script = raw_prompt("call_script")
    listed = json.loads(re.search(r"`disclosures` =\s*(\[[^\]]*\])", script).group(1))
    assert sorted(listed) == sorted(allowed)


def test_opt_out_and_ftc_rules_are_in_the_script():
    script = raw_prompt("call_script").lower()
    for phrase in ("stop calling me", "take me off your list", "do_not_call_request"):
        assert phrase in script
    for rule in ("never promise or imply results", "never quote fees", "never guarantee savings"):
        assert rule in script
    for disclosure in ("business name", "ai assistant", "recorded", "callback number"):
        assert disclosure in script


def vars_env(settings: Settings) -> dict[str, str]:
    return {"BUSINESS_NAME": settings.business_name, "CALLBACK_NUMBER": settings.callback_number}


def test_the_disclosure_phrases_cover_exactly_the_schemas_disclosures():
    schema = json.loads((SCHEMA_DIR / "fields" / "conversation_flow.json").read_text())
    allowed = schema["properties"]["disclosures"]["items"]["enum"]
    headings = re.findall(r"^## ([a-z_]+)$", raw_prompt("disclosure_phrases"), re.M)
    assert sorted(headings) == sorted(allowed)
