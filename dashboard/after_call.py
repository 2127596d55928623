"""What the session page shows after the call: the post-call summary and lead, the call's
qualification by our rule beside the model's, and what the call cost, with its parts."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dashboard import formatting as fmt

STATE_LABELS = {
    "queued": "Waiting for the summary",
    "claimed": "Writing the summary",
    "retrying": "Retrying: the last attempt failed",
    "done": "Ready",
    "skipped": "Skipped",
    "gave_up": "Given up after repeated failures",
}
DECISIONS = {"qualified": "Qualified", "not_qualified": "Not qualified", "undecided": "Undecided", None: "—"}
LEAD_ROWS = (
    ("name", "Name"),
    ("state", "State"),
    ("total_debt_usd", "Total debt"),
    ("unsecured_debt_usd", "Unsecured debt"),
    ("creditors", "Creditors"),
    ("monthly_income_usd", "Monthly income"),
    ("hardship", "Hardship"),
    ("next_step", "Next step"),
    ("callback_time", "Callback time"),
)


def _value(key: str, value: Any) -> str:
    if value is None or value == []:
        return fmt.NONE
    if key.endswith("_usd") and isinstance(value, int | float):
        return fmt.money(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def usd(amount: float | None) -> str:
    """Costs are small: cents and their fractions, `$0.0123`."""
    return fmt.NONE if amount is None else f"${amount:,.4f}"


def after_call(summary: dict[str, Any] | None, call: dict[str, Any] | None) -> dict[str, Any]:
    """The after-the-call box's data; `key` changes whenever anything shown changes."""
    lead = (summary or {}).get("lead")
    rule = (summary or {}).get("rule")
    cost = (call or {}).get("cost")
    box = {
        "state": (summary or {}).get("state"),
        "state_label": STATE_LABELS.get((summary or {}).get("state"), "After the call ends"),
        "summary": summary,
        "lead_rows": [(label, _value(k, lead.get(k))) for k, label in LEAD_ROWS] if isinstance(lead, dict) else [],
        "model_decision": DECISIONS.get((summary or {}).get("model_decision"), "—"),
        "model_reason": ((lead or {}).get("qualification") or {}).get("reason") if isinstance(lead, dict) else None,
        "rule_decision": None if rule is None else ("Qualified" if rule["qualified"] else "Not qualified"),
        "rule_reason": None if rule is None else rule["reason"],
        "disagreement": bool((summary or {}).get("disagreement")),
        "cost": None
        if cost is None
        else {
            "total": usd(cost.get("total_usd")),
            "model": usd(cost.get("model_usd")),
            "telephony": usd(cost.get("telephony_usd")),
            "error": cost.get("error"),
        },
    }
    box["key"] = hashlib.sha256(json.dumps([summary, cost], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return box
