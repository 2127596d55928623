"""The do-not-call list, kept in the store as events (kind `dnc`, keyed by the E.164 number).

Every change is an event: an addition carries the time, the source (`opt_out` from a call, `api`
from `POST /api/dnc`), the session it came from and a note; a removal carries who removed the
number and why. The list is the numbers whose latest event is an addition, so nothing is ever
erased: the history of a number stays in the journal. Inbound callers on the list are still
served; `backend.calls.outbound` refuses to call them.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.calls.numbers import InvalidPhoneNumber, listed_number, redact_number
from backend.store.interface import Store

log = logging.getLogger(__name__)

KIND = "dnc"
MAX_NOTE = 500


def _entry(number: str, event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    return {
        "phone_number": number,
        "added_at": event["timestamp"],
        "source": data.get("source"),
        "session_id": data.get("session_id"),
        "note": data.get("note"),
    }


def lookup(store: Store, number: str) -> dict[str, Any] | None:
    """The list entry of `number` (any accepted spelling), or None when it is not listed."""
    try:
        key = listed_number(number)
    except InvalidPhoneNumber:
        return None
    events = store.events(KIND, key)
    if not events or events[-1]["data"].get("action") != "add":
        return None
    return _entry(key, events[-1])


def contains(store: Store, number: str) -> bool:
    return lookup(store, number) is not None


def add(
    store: Store,
    number: str,
    *,
    source: str,
    session_id: str | None = None,
    note: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """List `number`; returns (entry, created). A number already listed keeps its first entry.

    Raises InvalidPhoneNumber when `number` is not a phone number."""
    key = listed_number(number)
    existing = lookup(store, key)
    if existing is not None:
        return existing, False
    data = {"action": "add", "source": source, "session_id": session_id, "note": (note or None) and note[:MAX_NOTE]}
    event = store.append_event(KIND, key, data)
    log.info("do-not-call: added %s (source %s, session %s)", redact_number(key), source, session_id)
    return _entry(key, event), True


def remove(store: Store, number: str, *, by: str, reason: str | None = None) -> dict[str, Any] | None:
    """Take `number` off the list, logging who and why; returns the removed entry, or None when
    it was not listed (nothing is written then). Raises InvalidPhoneNumber for no phone number."""
    existing = lookup(store, listed_number(number))
    if existing is None:
        return None
    data = {"action": "remove", "by": by, "reason": (reason or None) and reason[:MAX_NOTE]}
    store.append_event(KIND, existing["phone_number"], data)
    log.warning("do-not-call: removed %s by %s (reason: %s)", redact_number(existing["phone_number"]), by, reason)
    return existing


def history(store: Store, number: str) -> list[dict[str, Any]]:
    """Every change of `number`'s listing, oldest first."""
    try:
        key = listed_number(number)
    except InvalidPhoneNumber:
        return []
    return [{"at": e["timestamp"], **e["data"]} for e in store.events(KIND, key)]


def listed(store: Store) -> list[dict[str, Any]]:
    """The numbers on the list, most recently added first."""
    entries = []
    for key in store.event_keys(KIND):
        events = store.events(KIND, key)
        if events and events[-1]["data"].get("action") == "add":
            entries.append((events[-1]["seq"], _entry(key, events[-1])))
    return [entry for _, entry in sorted(entries, key=lambda pair: pair[0], reverse=True)]
