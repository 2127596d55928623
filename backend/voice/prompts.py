"""The call script: Markdown files in `prompts/`, loaded by name and cached.

Placeholders are written `{{name}}`. `prompt(name, **values)` fills them in; a placeholder with
no value raises `KeyError`, so a typo in a prompt file fails loudly instead of reaching a caller.
A placeholder alone on its line that is filled with nothing takes its line with it.

What the opening disclosure says about recording depends on whether the call's recording really
started (`recorded`): with it, the call script lists "the call is recorded" among the
disclosures and asks the agent to record `call_recorded`; without it (recording off, refused or
failed), no prompt says or asks for any of that, and the script tells the agent the call is not
recorded.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from backend.calls.disclosures import DisclosureCheck, phrases_from

PROMPT_DIR = Path(__file__).resolve().parents[2] / "prompts"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_FILL = re.compile(
    r"^[ \t]*\{\{\s*(?P<alone>[a-z_][a-z0-9_]*)\s*\}\}[ \t]*\n|\{\{\s*(?P<name>[a-z_][a-z0-9_]*)\s*\}\}",
    re.MULTILINE,
)


@cache
def raw_prompt(name: str) -> str:
    """The text of `prompts/<name>.md`, read once per process."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"bad prompt name {name!r}")
    return (PROMPT_DIR / f"{name}.md").read_text(encoding="utf-8").strip()


def placeholders(name: str) -> set[str]:
    """The placeholder names used by prompt `name`."""
    return set(_PLACEHOLDER.findall(raw_prompt(name)))


def prompt(name: str, **values: object) -> str:
    """Prompt `name` with its `{{placeholders}}` filled in from `values`."""

    def fill(match: re.Match[str]) -> str:
        if match.group("alone") is None:
            return str(values[match.group("name")])
        value = str(values[match.group("alone")])
        return value + "\n" if value else ""

    # one pass: a value is never searched for placeholders (a caller's words may hold `{{`)
    return _FILL.sub(fill, raw_prompt(name) + "\n").rstrip("\n")


# The opening disclosures in the order they are given: (key recorded in `disclosures`, words).
DISCLOSURES = (
    ("business_name", "the business name"),
    ("ai_assistant", "that they are speaking with an AI assistant"),
    ("call_recorded", "that the call is recorded"),
    ("callback_number", "the callback number"),
)
RECORDED_DISCLOSURE = "- that the call is recorded;"
NOT_RECORDED_RULE = (
    "This call is not recorded: never say or suggest that it is. If the caller asks, tell them it is not."
)


def disclosure_values(recorded: bool) -> dict[str, str]:
    """The placeholders of the opening disclosure, for a call recorded or not (see the module doc)."""
    given = [(key, words) for key, words in DISCLOSURES if recorded or key != "call_recorded"]
    words = [w for _, w in given]
    return {
        "disclosure_summary": ", ".join(words[:-1]) + ", and " + words[-1],
        "disclosure_keys": json.dumps([key for key, _ in given]),
        "recording_disclosure": RECORDED_DISCLOSURE if recorded else "",
        "recording_rule": "" if recorded else NOT_RECORDED_RULE,
    }


def script_values(settings, *, recorded: bool = False) -> dict[str, str]:
    """The placeholder values of the call script, from settings (`backend.settings.Settings`)
    and whether the call's recording started."""
    threshold = settings.qualify_min_unsecured_debt_usd
    return {
        "business_name": settings.business_name or "our debt relief team",
        "callback_number": settings.callback_number or "the number that called you",
        "qualify_min_unsecured_debt_usd": f"${threshold:,.0f}",
        **disclosure_values(recorded),
    }


def greeting(*, outbound: bool, recorded: bool) -> str:
    """What the agent is told to say first: the greeting with the call's opening disclosures."""
    return prompt("outbound_greeting" if outbound else "greeting", **disclosure_values(recorded))


def call_instructions(settings, earlier_records: list[dict], *, recorded: bool = False) -> str:
    """The agent's instructions for one call: the call script (its disclosures following
    `recorded`: whether the call's recording really started), plus, for a returning caller, what
    they told us on earlier calls (each note cut to 300 characters)."""
    text = prompt("call_script", **script_values(settings, recorded=recorded))
    if earlier_records:
        notes = "\n".join(f"- [{r['category']}] {r['information'][:300]}" for r in earlier_records)
        text += "\n\n" + prompt("returning_caller", records=notes)
    return text


def disclosure_check(settings, *, recording: bool = False) -> DisclosureCheck:
    """The disclosure check of one call: the phrases of `prompts/disclosure_phrases.md` for the
    disclosures this call requires (`call_recorded` only while it is recorded, `callback_number`
    only with CALLBACK_NUMBER set)."""
    values = {"business_name": settings.business_name or "debt relief", "callback_number": settings.callback_number}
    required = phrases_from(raw_prompt("disclosure_phrases"), values)
    if not recording:
        required.pop("call_recorded", None)
    return DisclosureCheck(required)
