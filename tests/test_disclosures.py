"""The disclosure check reads the agent's own words: each required disclosure must be said within
the agent's first two turns; `call_recorded` is required only while the call is recorded, and
`callback_number` only when one is set. Phrases come from prompts/disclosure_phrases.md."""

from __future__ import annotations

import pytest

from backend.calls.disclosures import DisclosureCheck, normalise, phrases_from, said
from backend.settings import Settings
from backend.voice.prompts import disclosure_check

pytestmark = pytest.mark.store_free  # touches no store

SETTINGS = Settings.from_env({"BUSINESS_NAME": "Acme Debt Help", "CALLBACK_NUMBER": "+18005550123"}, dotenv=False)


def test_words_and_numbers_are_matched_as_spoken():
    assert normalise("This call is RECORDED!") == "this call is recorded"
    assert said("call is recorded", "Just so you know, this call is recorded.")
    assert not said("call is recorded", "this call is not being recorded")
    assert said("+18005550123", "Call us back at 1-800-555-0123.")
    assert said("+18005550123", "our number is eight hundred, five five five, zero one two three")
    assert not said("+18005550123", "call 800 555 0124")
    assert not said("an AI", "we are a brand")  # whole words only


def test_required_disclosures_follow_the_call():
    unrecorded = disclosure_check(SETTINGS, recording=False).required
    recorded = disclosure_check(SETTINGS, recording=True).required
    assert sorted(unrecorded) == ["ai_assistant", "business_name", "callback_number"]
    assert sorted(recorded) == ["ai_assistant", "business_name", "call_recorded", "callback_number"]
    no_number = disclosure_check(Settings.from_env({"BUSINESS_NAME": "Acme"}, dotenv=False)).required
    assert "callback_number" not in no_number  # nothing to check it against


def test_only_the_first_two_agent_turns_count():
    check = disclosure_check(SETTINGS, recording=True)
    check.agent_turn("Hi, this is Acme Debt Help.", 0.5)
    assert not check.due()
    check.agent_turn("I'm an AI assistant and this call is recorded.", 4.0)
    assert check.due() and not check.due()  # reported once
    check.agent_turn("You can call us at 1 800 555 0123.", 9.0)  # too late
    evidence = check.evidence()
    assert evidence["missing"] == ["callback_number"] and evidence["flagged"] is True
    assert evidence["heard"] == {"business_name": 0.5, "ai_assistant": 4.0, "call_recorded": 4.0}
    assert check.final() is None  # already reported


def test_a_call_that_ends_early_is_judged_on_what_was_said():
    check = DisclosureCheck(phrases_from("## ai_assistant\nAI assistant\n", {}))
    check.agent_turn("Hello?", 1.0)
    assert not check.due()
    assert check.final()["missing"] == ["ai_assistant"]


def test_a_placeholder_without_a_value_drops_its_phrase():
    phrases = phrases_from("## business_name\n{{business_name}}\n## callback_number\n{{callback_number}}\n", {})
    assert phrases == {}
