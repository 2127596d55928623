"""What a provisioning run found and did, step by step, printed as it goes; and how a step fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO


class SetupError(Exception):
    """A provisioning step failed; `step` names it and `reason` says why."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step} failed: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class StepResult:
    step: str
    action: str  # unchanged, created, updated, would create, would update
    detail: str
    resource_id: str | None = None


class Plan:
    """Collects what each step found or did, and prints it as it goes."""

    def __init__(self, dry_run: bool, out: TextIO) -> None:
        self.dry_run = dry_run
        self.out = out
        self.results: list[StepResult] = []

    def record(self, step: str, action: str, detail: str, resource_id: str | None = None) -> None:
        if self.dry_run and action in {"created", "updated"}:
            action = "would " + action[:-1]
        result = StepResult(step, action, detail, resource_id)
        self.results.append(result)
        suffix = f" [{resource_id}]" if resource_id else ""
        print(f"{step:<29} {action:<13} {detail}{suffix}", file=self.out)

    def changes(self) -> list[StepResult]:
        return [r for r in self.results if r.action != "unchanged"]


def only_one(items: list[Any], what: str, step_name: str) -> Any | None:
    """The one resource found by name, or None; two or more is an error, not a guess."""
    if len(items) > 1:
        raise SetupError(step_name, f"{len(items)} {what} match; delete or rename all but one")
    return items[0] if items else None
