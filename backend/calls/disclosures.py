"""Disclosure evidence: whether the agent's own words (its transcribed speech, not what the
model claims in a tool call) gave each required disclosure within its first two turns.

The phrases live in `prompts/disclosure_phrases.md`; `phrases_from()` reads that text, and a
`DisclosureCheck` is fed the agent's turns as they end. Pure: no LiveKit, no store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

AGENT_TURNS_CHECKED = 2
_NUMBER_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_HUNDRED = {"hundred": "00", "thousand": "000"}
_HEADING = re.compile(r"^##\s+([a-z_]+)\s*$")


def normalise(text: str) -> str:
    """Lower case, words only, single spaces, spoken digits as digits: `Eight hundred` -> `800`."""
    words = re.sub(r"[^\w\s]", " ", text.casefold()).split()
    out: list[str] = []
    for word in words:
        if word in _NUMBER_WORDS:
            out.append(_NUMBER_WORDS[word])
        elif word in _HUNDRED and out and out[-1].isdigit():
            out[-1] += _HUNDRED[word]
        else:
            out.append(word)
    return " ".join(out)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", normalise(text))


def phrases_from(text: str, values: dict[str, str | None]) -> dict[str, tuple[str, ...]]:
    """The phrases of each disclosure in the phrase file `text`, with `{{name}}` filled from
    `values`; a phrase whose value is not set is left out, and a disclosure left with no phrase
    is not required."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        heading = _HEADING.match(line.strip())
        if heading:
            current = found.setdefault(heading.group(1), [])
            continue
        phrase = line.strip()
        if current is None or not phrase or phrase.startswith("#"):
            continue
        names = re.findall(r"\{\{\s*([a-z_]+)\s*\}\}", phrase)
        if any(not values.get(n) for n in names):
            continue
        current.append(re.sub(r"\{\{\s*([a-z_]+)\s*\}\}", lambda m: str(values[m.group(1)]), phrase))
    return {key: tuple(p) for key, p in found.items() if p}


def said(phrase: str, text: str) -> bool:
    """Whether `text` contains `phrase`: as words, or for a phone number, as its digits (the
    last ten of a longer number, so `1-800-…` and `800 …` both count)."""
    digits = _digits(phrase)
    if len(digits) >= 7 and len(digits) >= len(re.sub(r"\s", "", phrase)) // 2:
        return digits[-10:] in _digits(text)
    return f" {normalise(phrase)} " in f" {normalise(text)} "


@dataclass
class DisclosureCheck:
    """Fed the agent's turns as they end; `evidence()` says which required disclosures were
    heard (and when, in seconds from the start of the call) and which were not."""

    required: dict[str, tuple[str, ...]]
    heard: dict[str, float] = field(default_factory=dict)
    turns_seen: int = 0
    reported: bool = False

    def agent_turn(self, text: str, at_s: float) -> None:
        if self.turns_seen >= AGENT_TURNS_CHECKED:
            return
        self.turns_seen += 1
        for key, phrases in self.required.items():
            if key not in self.heard and any(said(p, text) for p in phrases):
                self.heard[key] = round(at_s, 3)

    def due(self) -> bool:
        """True once, when the evidence is complete: every disclosure heard, or two turns seen."""
        if self.reported or not (self.turns_seen >= AGENT_TURNS_CHECKED or set(self.heard) >= set(self.required)):
            return False
        self.reported = True
        return True

    def evidence(self) -> dict[str, Any]:
        missing = [k for k in self.required if k not in self.heard]
        return {
            "required": list(self.required),
            "heard": dict(self.heard),
            "missing": missing,
            "agent_turns_checked": self.turns_seen,
            "flagged": bool(missing),
        }

    def final(self) -> dict[str, Any] | None:
        """The evidence at the end of the call, when it was not reported yet (fewer than two
        agent turns); None when it was."""
        if self.reported:
            return None
        self.reported = True
        return self.evidence()
