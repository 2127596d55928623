"""The call script: Markdown files in `prompts/`, loaded by name and cached.

Placeholders are written `{{name}}`. `prompt(name, **values)` fills them in; a placeholder with
no value raises `KeyError`, so a typo in a prompt file fails loudly instead of reaching a caller.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from backend.calls.disclosures import DisclosureCheck, phrases_from

PROMPT_DIR = Path(__file__).resolve().parents[2] / "prompts"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


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
        return str(values[match.group(1)])

    return _PLACEHOLDER.sub(fill, raw_prompt(name))


def script_values(settings) -> dict[str, str]:
    """The placeholder values of the call script, from settings (`backend.settings.Settings`)."""
    threshold = settings.qualify_min_unsecured_debt_usd
    return {
        "business_name": settings.business_name or "our debt relief team",
        "callback_number": settings.callback_number or "the number that called you",
        "qualify_min_unsecured_debt_usd": f"${threshold:,.0f}",
    }


def call_instructions(settings, earlier_records: list[dict]) -> str:
    """The agent's instructions for one call: the call script, plus, for a returning caller, what
    they told us on earlier calls (each note cut to 300 characters)."""
    text = prompt("call_script", **script_values(settings))
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
