"""The disclosure flag as the dashboard shows it: which required disclosures were heard in the
agent's own words within its first two turns (and when), and which were not.

The evidence is the session's `disclosures` (`required`, `heard` {key: seconds from the start},
`missing`, `flagged`; None until the check has run); a call log carries the same `missing` as
`missing_disclosures`. This is what was *heard*; what the model *recorded* with share_information
is `pages.disclosures`, shown beside it."""

from __future__ import annotations

from typing import Any

from dashboard import formatting as fmt

PENDING = "Disclosures not checked yet"
NOT_CHECKED = "Disclosures not checked on this call"  # ended without evidence (e.g. before the check existed)
ALL_HEARD = "All required disclosures heard"


def missing_of(entry: dict[str, Any]) -> list[str]:
    """The disclosures a call log (`missing_disclosures`) or a session (`disclosures.missing`)
    names as not heard; empty when none is missing or the check has not run."""
    if "missing_disclosures" in entry:
        return list(entry.get("missing_disclosures") or [])
    return list((entry.get("disclosures") or {}).get("missing") or [])


def missing_text(entry: dict[str, Any]) -> str:
    """`Missing disclosure: AI assistant, Callback number`, or "" for a call not flagged."""
    missing = missing_of(entry)
    return "Missing disclosure: " + ", ".join(fmt.disclosure_label(k) for k in missing) if missing else ""


def heard_disclosures(session: dict[str, Any]) -> dict[str, Any]:
    """The session page's badge (`state` pending|ok|flagged and its `badge` text) and each
    required disclosure, heard (at `m:ss`) or not."""
    evidence = session.get("disclosures")
    if evidence is None:
        return {"state": "pending", "badge": PENDING if session.get("status") == "active" else NOT_CHECKED, "items": []}
    heard = evidence.get("heard") or {}
    items = [
        {
            "key": key,
            "label": fmt.disclosure_label(key),
            "heard": key in heard,
            "at_display": fmt.call_clock(heard[key]) if key in heard else "",
        }
        for key in evidence.get("required") or []
    ]
    missing = missing_text({"disclosures": evidence})
    return {"state": "flagged" if missing else "ok", "badge": missing or ALL_HEARD, "items": items}
